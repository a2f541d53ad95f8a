"""Shared fixtures: every test must leave no scheduler thread behind (autouse); ``fast_switching`` on request.

Factories, stubs and helpers shared by test modules live in ``support.py``, not here."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

SCHEDULER_THREAD_MARKERS = ("-dispatcher", "-worker")
# Threads of a pool shut down with wait=False (overdue workers) exit as soon as their function returns.
LEAK_GRACE_SECONDS = 10.0


def _scheduler_threads(baseline: set[threading.Thread]) -> list[threading.Thread]:
    return [
        thread
        for thread in threading.enumerate()
        if thread not in baseline and any(marker in thread.name for marker in SCHEDULER_THREAD_MARKERS)
    ]


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    baseline = set(threading.enumerate())
    yield
    for thread in _scheduler_threads(baseline):
        thread.join(LEAK_GRACE_SECONDS)
    leaked = _scheduler_threads(baseline)
    assert not leaked, f"leaked scheduler threads: {[thread.name for thread in leaked]}"


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads as often as possible so races actually interleave (reads overlap writes)."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)
