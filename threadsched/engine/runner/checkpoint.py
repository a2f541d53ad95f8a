"""The row-group checkpoint format: ``encode_checkpoint`` and the verifying reader ``read_checkpoint``.

A checkpoint (``OUT/row_groups/rg-NNNNN.jsonl``) is one header line and then the row group's dataset lines,
byte for byte as ``dataset.jsonl`` holds them (the dataset is the concatenation of the bodies, so neither its
bytes nor ``output_hash`` depend on the header)::

    {"checkpoint": "threadsched.checkpoint/1", "dropped": {"9": "..."}, "recipe_hash": "...", "row_group": 1,
     "rows": [7, 8, 10, 11, 12, 13], "sha256": "..."}
    {"_row": 7, ...}
    ...

The header names the row group, the rows it kept (in body order), the rows it dropped with their reasons
(kept and dropped rows are exactly the row group's range) and the recipe hash; ``sha256`` covers the
canonical header without it, a newline, and the body. The header is ASCII-only JSON. Body lines are JSON with
``ensure_ascii=False``, which escapes ``\\n`` but leaves U+2028, U+2029 and U+0085 raw (model output holds
them), so a file is split on ``b"\\n"`` only, never with ``str.splitlines()``.

``read_checkpoint`` trusts nothing it has not checked: the file ends with a newline (a cut line does not),
every line is UTF-8 and JSON, the header is this format's and names the expected row group and recipe, each
body line holds the row the header lists at its place, the checksum matches, and the rows cover the range.
Anything else is a ``CheckpointError`` naming the file and, where one is at fault, the line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = ["CHECKPOINT_FORMAT", "Checkpoint", "CheckpointError", "checkpoint_name", "encode_checkpoint", "read_checkpoint"]

CHECKPOINT_FORMAT = "threadsched.checkpoint/1"
_HEADER_FIELDS = frozenset({"checkpoint", "row_group", "recipe_hash", "rows", "dropped", "sha256"})


def checkpoint_name(row_group: int) -> str:
    return f"rg-{row_group:05d}.jsonl"


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted. ``str(error)`` is one line: ``FILE line N: reason``."""

    def __init__(self, path: Path, line: int | None, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        super().__init__(f"{path} line {line}: {reason}" if line is not None else f"{path}: {reason}")

    def __reduce__(self) -> tuple[type[CheckpointError], tuple[Path, int | None, str]]:
        return (type(self), (self.path, self.line, self.reason))


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What a verified checkpoint's header says: its row group, recipe hash, kept rows (ascending) and drops."""

    row_group: int
    recipe_hash: str
    rows: tuple[int, ...]
    dropped: Mapping[int, str]


def _canonical(header: Mapping[str, object]) -> bytes:
    return json.dumps(header, sort_keys=True, ensure_ascii=True).encode("ascii")


def _digest(header: Mapping[str, object], body: bytes) -> str:
    unsigned = {key: value for key, value in header.items() if key != "sha256"}
    return hashlib.sha256(_canonical(unsigned) + b"\n" + body).hexdigest()


def encode_checkpoint(recipe_hash: str, row_group: int, rows: Sequence[int], dropped: Mapping[int, str], body: bytes) -> bytes:
    """The bytes of a checkpoint: ``body`` holds one dataset line per kept row of ``rows``, in that order."""
    header: dict[str, object] = {
        "checkpoint": CHECKPOINT_FORMAT,
        "row_group": row_group,
        "recipe_hash": recipe_hash,
        "rows": list(rows),
        "dropped": {str(row): reason for row, reason in sorted(dropped.items())},
    }
    header["sha256"] = _digest(header, body)
    return _canonical(header) + b"\n" + body


def _decode(path: Path, number: int, line: bytes) -> Any:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(path, number, f"not UTF-8 (byte 0x{line[exc.start]:02x} at byte {exc.start + 1})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(path, number, f"not JSON ({exc.msg} at column {exc.colno})") from None


def _is_index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _header(path: Path, line: bytes) -> dict[str, Any]:
    header = _decode(path, 1, line)
    if not isinstance(header, dict) or header.get("checkpoint") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            path, 1, f"not a {CHECKPOINT_FORMAT} header (a checkpoint of another format, or no checkpoint at all)"
        )
    if set(header) != _HEADER_FIELDS:
        raise CheckpointError(path, 1, f"header fields are {sorted(header)}, expected {sorted(_HEADER_FIELDS)}")
    rows, dropped = header["rows"], header["dropped"]
    checks = (
        ("row_group", _is_index(header["row_group"]), "a row-group index"),
        ("recipe_hash", isinstance(header["recipe_hash"], str), "a string"),
        ("rows", isinstance(rows, list) and all(_is_index(row) for row in rows), "a list of row indices"),
        (
            "dropped",
            isinstance(dropped, dict)
            and all(key.isascii() and key.isdigit() and isinstance(why, str) for key, why in dropped.items()),
            "an object of row index -> reason",
        ),
        ("sha256", isinstance(header["sha256"], str), "a string"),
    )
    for name, ok, expected in checks:
        if not ok:
            raise CheckpointError(path, 1, f"header field {name!r} is not {expected}: {header[name]!r}")
    return header


def read_checkpoint(
    path: Path, *, recipe_hash: str, row_group: int, rows: range, verify_lines: bool = True
) -> tuple[Checkpoint, bytes]:
    """Read and verify the checkpoint of ``row_group`` (covering ``rows``) of recipe ``recipe_hash``: its
    header and its body (the dataset lines).

    ``verify_lines=False`` skips parsing the body lines (the checksum still covers them): for a file this
    process wrote or verified already."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(path, None, f"cannot read: {exc.strerror or exc}") from None
    if not data:
        raise CheckpointError(path, 1, "empty file (no checkpoint header)")
    lines = data.split(b"\n")
    if lines[-1]:
        raise CheckpointError(path, len(lines), "cut off (the file does not end with a newline)")
    lines.pop()
    header = _header(path, lines[0])
    if header["row_group"] != row_group:
        raise CheckpointError(
            path,
            1,
            f"belongs to row group {header['row_group']}, not {row_group} (copied from {checkpoint_name(header['row_group'])}?)",
        )
    if header["recipe_hash"] != recipe_hash:
        raise CheckpointError(path, 1, f"written by recipe {header['recipe_hash']}, this recipe is {recipe_hash}")
    listed: list[int] = header["rows"]
    if verify_lines:
        for number, (line, row) in enumerate(zip(lines[1:], listed, strict=False), start=2):
            record = _decode(path, number, line)
            found = record.get("_row") if isinstance(record, dict) else None
            if found != row:
                raise CheckpointError(path, number, f"holds row {found!r}, the header lists row {row} here")
    if len(lines) - 1 != len(listed):
        where = len(lines) + 1 if len(lines) - 1 < len(listed) else len(listed) + 2
        raise CheckpointError(path, where, f"the header lists {len(listed)} rows, the file holds {len(lines) - 1}")
    body = data[len(lines[0]) + 1 :]
    actual = _digest(header, body)
    if actual != header["sha256"]:
        raise CheckpointError(
            path,
            None,
            f"checksum mismatch (the header says {header['sha256']}, the content hashes to {actual}): edited or damaged",
        )
    dropped = {int(key): reason for key, reason in header["dropped"].items()}
    if listed != sorted(set(listed)) or set(listed) & set(dropped) or sorted([*listed, *dropped]) != list(rows):
        raise CheckpointError(
            path, 1, f"kept and dropped rows do not cover rows {rows.start}..{rows.stop - 1} exactly once, in order"
        )
    return Checkpoint(row_group, recipe_hash, tuple(listed), MappingProxyType(dropped)), body
