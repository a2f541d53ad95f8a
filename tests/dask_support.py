"""Functions the Dask backend tests run on the cluster: module level, so worker processes import them."""

from __future__ import annotations

import os


def worker_pid(value: object) -> tuple[int, object]:
    """``(pid of the process that ran it, value)``."""
    return os.getpid(), value


def fail(message: str) -> None:
    raise ValueError(message)


def keywords(**kwargs: object) -> dict[str, object]:
    return kwargs


def wait_for_event(started: str, release: str, timeout: float) -> int:
    """Set the cluster-wide ``distributed.Event`` ``started``, block until ``release`` is set; the pid."""
    from distributed import Event

    Event(started).set()
    if not Event(release).wait(timeout):
        raise TimeoutError(f"event {release!r} was not set within {timeout} s")
    return os.getpid()
