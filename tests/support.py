"""Factories, stubs, strategies and helpers shared by the test modules (no test functions here).

Test modules import it as ``support`` (``from support import ...``): pytest's default ``prepend`` import mode
puts ``tests/`` on ``sys.path``, as it does for ``conftest.py``. Fixtures stay in ``conftest.py``; a helper that
one test module alone uses stays in that module.

Sections:

* Waiting and events: ``GENEROUS``, ``SignalingSink``, ``resolve_all``, ``opened_on_exit``.
* Scheduler evidence and threads: ``check_lease_evidence``, ``scheduler_threads``, ``join_scheduler_threads``.
* Python processors for recipes (``support:NAME``): ``CALLS``, ``NOT_CALLABLE``, ``keep_even_rows``,
  ``keep_all_and_mutate``, ``record_and_keep_all``, ``returns_wrong_length``, ``returns_ints``, ``returns_tuple``,
  ``raises``, ``Holder``.
* Python columns for recipes (``support:NAME``): ``shout``, ``mutate_and_count``, ``topic_lengths``, ``one_short``,
  ``not_a_list``, ``broken``, ``Scorer``.
* Dask cluster functions (module level, so worker processes import them; ``distributed`` only inside them):
  ``worker_pid``, ``fail``, ``keywords``, ``wait_for_event``.
"""

from __future__ import annotations

import os
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, wait
from contextlib import contextmanager

from threadsched import MemoryEventSink, SchedulerEvent

# -- waiting and events ----------------------------------------------------------------------------

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


@contextmanager
def opened_on_exit(*gates: threading.Event) -> Iterator[None]:
    """Set ``gates`` however the block ends, so a failing assertion never leaves a worker parked
    (and the scheduler's shutdown waiting for it)."""
    try:
        yield
    finally:
        for gate in gates:
            gate.set()


# -- scheduler evidence and threads ----------------------------------------------------------------


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


# -- python processors for recipes (support:NAME) --------------------------------------------------


CALLS: list[list[dict[str, object]]] = []
"""Every argument ``record_and_keep_all`` received, so tests can check what a python processor is given."""

NOT_CALLABLE = 42
"""Not a function: loading ``support:NOT_CALLABLE`` as a processor or a python column is an error."""


def keep_even_rows(rows: list[dict[str, object]]) -> list[bool]:
    """Keeps rows whose ``n`` column is even."""
    flags = []
    for row in rows:
        value = row.get("n")
        flags.append(isinstance(value, int) and value % 2 == 0)
    return flags


def keep_all_and_mutate(rows: list[dict[str, object]]) -> list[bool]:
    """Keeps everything, vandalising its (copied) arguments on the way."""
    for row in rows:
        row.clear()
        row["vandal"] = True
    return [True] * len(rows)


def record_and_keep_all(rows: list[dict[str, object]]) -> list[bool]:
    CALLS.append(rows)
    return [True] * len(rows)


def returns_wrong_length(rows: list[dict[str, object]]) -> list[bool]:
    return [True] * (len(rows) + 1)


def returns_ints(rows: list[dict[str, object]]) -> list[int]:
    return [1] * len(rows)


def returns_tuple(rows: list[dict[str, object]]) -> tuple[bool, ...]:
    return (True,) * len(rows)


def raises(rows: list[dict[str, object]]) -> list[bool]:
    raise ValueError("boom from the user function")


class Holder:
    @staticmethod
    def drop_all(rows: list[dict[str, object]]) -> list[bool]:
        return [False] * len(rows)


# -- python columns for recipes (support:NAME) -----------------------------------------------------


def shout(row: dict[str, object]) -> str:
    """A python cell: the topic in capitals."""
    return str(row["topic"]).upper()


def mutate_and_count(row: dict[str, object]) -> int:
    """A python cell that scribbles on its argument (the executor must have passed a copy)."""
    row["topic"] = "scribbled"
    return len(row)


def topic_lengths(rows: list[dict[str, object]]) -> list[int]:
    """A python batch: one length per row, in order."""
    return [len(str(row["topic"])) for row in rows]


def one_short(rows: list[dict[str, object]]) -> list[int]:
    """A python batch that forgets the last row."""
    return [0] * (len(rows) - 1)


def not_a_list(rows: list[dict[str, object]]) -> str:
    return "oops"


def broken(row: dict[str, object]) -> object:
    raise RuntimeError("user code failed")


class Scorer:
    @staticmethod
    def score(row: dict[str, object]) -> int:
        return len(str(row["topic"])) % 5 + 1


# -- dask cluster functions ------------------------------------------------------------------------


def worker_pid(value: object) -> tuple[int, object]:
    """``(pid of the process that ran it, value)``."""
    return os.getpid(), value


def fail(message: str) -> None:
    raise ValueError(message)


def keywords(**kwargs: object) -> dict[str, object]:
    return kwargs


def wait_for_event(started: str, release: str, timeout: float) -> int:
    """Set the cluster-wide ``distributed.Event`` ``started``, block until ``release`` is set; the pid.

    ``distributed`` is optional: imported here, on the worker, never when this module is imported.
    """
    from distributed import Event

    Event(started).set()
    if not Event(release).wait(timeout):
        raise TimeoutError(f"event {release!r} was not set within {timeout} s")
    return os.getpid()
