"""Helpers shared by the scheduler test modules (no test functions here)."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, wait
from contextlib import contextmanager

from threadsched import MemoryEventSink, SchedulerEvent

GENEROUS = 20.0
"""Upper bound for waits on things that must happen; never reached unless something hangs."""


class SignalingSink(MemoryEventSink):
    """A ``MemoryEventSink`` that lets a test block until its events satisfy a predicate."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = threading.Condition()

    def emit(self, event: SchedulerEvent) -> None:
        super().emit(event)
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[list[SchedulerEvent]], bool], timeout: float = GENEROUS) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.events), timeout)

    def wait_for_count(self, kind: str, count: int, *, task_id: str | None = None, timeout: float = GENEROUS) -> bool:
        def enough(events: list[SchedulerEvent]) -> bool:
            hits = [e for e in events if e.kind == kind and (task_id is None or e.task_id == task_id)]
            return len(hits) >= count

        return self.wait_for(enough, timeout)


def resolve_all(futures: Iterable[Future[object]], timeout: float = GENEROUS) -> None:
    """Every future resolves within ``timeout`` (a hang shows up as a failure, not a stuck test)."""
    futures = list(futures)
    _done, not_done = wait(futures, timeout=timeout)
    assert not not_done, f"{len(not_done)} of {len(futures)} futures never resolved: {sorted(map(repr, not_done))[:10]}"


def check_lease_evidence(events: Sequence[SchedulerEvent]) -> dict[int, dict[str, list[SchedulerEvent]]]:
    """Lease accounting (each lease released exactly once, no worker before its lease), from the event stream alone.

    * every ``task_lease_acquired`` has a distinct ``lease_id`` and exactly one ``task_lease_released``
      with a later sequence number;
    * every ``worker_spawned`` names a lease that was acquired earlier (no hidden waiter) and is
      released after the spawn, with a release event naming the same execution;
    * at most one execution per lease.
    Returns the events grouped by lease id then kind.
    """
    sequences = [event.sequence for event in events]
    assert len(sequences) == len(set(sequences)), "event sequence numbers must be unique"
    by_lease: dict[int, dict[str, list[SchedulerEvent]]] = defaultdict(lambda: defaultdict(list))
    for event in events:
        if event.lease_id is not None:
            by_lease[event.lease_id][event.kind].append(event)
    acquired_ids = [event.lease_id for event in events if event.kind == "task_lease_acquired"]
    duplicates = [lease for lease, n in Counter(acquired_ids).items() if n > 1]
    assert not duplicates, f"lease ids acquired more than once: {duplicates}"
    for lease_id, kinds in by_lease.items():
        acquired = kinds.get("task_lease_acquired", [])
        released = kinds.get("task_lease_released", [])
        spawned = kinds.get("worker_spawned", [])
        assert len(acquired) == 1, f"lease {lease_id}: {len(acquired)} task_lease_acquired events ({dict(kinds)})"
        assert len(released) == 1, f"lease {lease_id}: {len(released)} task_lease_released events ({dict(kinds)})"
        assert acquired[0].sequence < released[0].sequence, f"lease {lease_id} released before it was acquired"
        assert len(spawned) <= 1, f"lease {lease_id} spawned {len(spawned)} workers"
        for spawn in spawned:
            assert acquired[0].sequence < spawn.sequence < released[0].sequence, (
                f"lease {lease_id}: expected acquired < worker_spawned < released, got "
                f"{acquired[0].sequence}, {spawn.sequence}, {released[0].sequence}"
            )
            assert spawn.execution_id is not None
            assert released[0].execution_id == spawn.execution_id, (
                f"lease {lease_id}: released for execution {released[0].execution_id!r}, spawned {spawn.execution_id!r}"
            )
            assert acquired[0].task_id == spawn.task_id == released[0].task_id
    executions = [event.execution_id for event in events if event.kind == "worker_spawned"]
    assert len(executions) == len(set(executions)), "an execution id was spawned twice"
    return by_lease


def scheduler_threads(name: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith(f"{name}-")]


def join_scheduler_threads(name: str, timeout: float = GENEROUS) -> None:
    for thread in scheduler_threads(name):
        thread.join(timeout)
    alive = [thread.name for thread in scheduler_threads(name)]
    assert not alive, f"scheduler threads still alive: {alive}"


@contextmanager
def opened_on_exit(*gates: threading.Event) -> Iterator[None]:
    """Set ``gates`` however the block ends, so a failing assertion never leaves a worker parked
    (and the scheduler's shutdown waiting for it)."""
    try:
        yield
    finally:
        for gate in gates:
            gate.set()
