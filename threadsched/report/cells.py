"""How one value is written into a Markdown table cell or list item of ``report.md``."""

from __future__ import annotations

__all__ = ["cell", "scalar"]


def scalar(value: object) -> str:
    """A number, flag or name as text; a container by its size (a report is read, not a dump)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, (bool, int, str)):
        return cell(str(value))
    return f"({type(value).__name__} of {len(value)})" if isinstance(value, (list, tuple, dict)) else "(…)"


def cell(text: str) -> str:
    """``text`` safe inside a table cell: pipes escaped, on one line."""
    return text.replace("|", "\\|").replace("\n", " ")
