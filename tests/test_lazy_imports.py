"""``import threadsched`` loads the core only; the event log, engine, request admission, report and backends
(and the third-party modules they need) load on first use. Checked in a fresh interpreter, since this test
session has long since imported all of them."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap

import pytest

import threadsched

HEAVY_THIRD_PARTY = ("concurrent_log_handler", "httpx", "rich", "matplotlib", "dask", "distributed", "tomllib")
LAZY_SUBMODULES = tuple(
    f"threadsched.{name}" for name in ("engine", "requests", "report", "core.event_log", "backends", "cli", "mock")
)
PREFIXES = ("threadsched.", *HEAVY_THIRD_PARTY)


def _fresh(code: str) -> str:
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def _loaded_after_import() -> list[str]:
    code = f"import threadsched, sys; print(sorted(m for m in sys.modules if m.startswith({PREFIXES!r})))"
    return list(ast.literal_eval(_fresh(code)))


def _is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_import_loads_no_optional_subpackage_nor_heavy_dependency() -> None:
    loaded = _loaded_after_import()
    assert "threadsched.core.scheduler" in loaded and "threadsched.core.leased_executor" in loaded  # the probe itself works
    assert not [m for m in loaded if any(_is_within(m, package) for package in LAZY_SUBMODULES)], loaded
    assert not [m for m in loaded if any(_is_within(m, package) for package in HEAVY_THIRD_PARTY)], loaded


def test_lazy_names_load_on_first_access() -> None:
    code = textwrap.dedent(
        """
        import sys, threadsched
        assert "threadsched.core.event_log" not in sys.modules
        sink_class = threadsched.JsonlEventSink
        from threadsched import read_events
        from threadsched.core.event_log import JsonlEventSink, read_events as original
        assert sink_class is JsonlEventSink and read_events is original
        assert "concurrent_log_handler" in sys.modules
        print("ok")
        """
    )
    assert _fresh(code).strip() == "ok"


def test_dir_and_star_import_cover_every_public_name_before_any_is_loaded() -> None:
    code = textwrap.dedent(
        """
        import threadsched
        listed = set(dir(threadsched))
        from threadsched import *
        print(sorted(set(threadsched.__all__) - listed), sorted(set(threadsched.__all__) - set(globals())))
        """
    )
    assert _fresh(code).split() == ["[]", "[]"]


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        getattr(threadsched, "no_such_name")  # noqa: B009 - a literal attribute would need a type: ignore
