"""Factories, stubs, strategies and helpers shared by the test modules (no test functions here).

Test modules import it as ``support`` (``from support import ...``): pytest's default ``prepend`` import mode
puts ``tests/`` on ``sys.path``, as it does for ``conftest.py``. Fixtures stay in ``conftest.py``; a helper that
one test module alone uses stays in that module.

Sections:

* Waiting and events: ``GENEROUS``, ``SignalingSink``, ``resolve_all``, ``opened_on_exit``, ``ParkingSink``
  (parks the dispatcher in ``emit``), ``RaisingSink``, ``scheduler_event``.
* Gated work and threads: ``park_workers`` (occupy workers until a gate opens), ``blocking``, ``raises_when_cancelled``,
  ``run_threads``.
* Scheduler evidence and threads: ``check_lease_evidence``, ``scheduler_threads``, ``join_scheduler_threads``.
* Python processors for recipes (``support:NAME``): ``CALLS``, ``NOT_CALLABLE``, ``keep_even_rows``,
  ``keep_all_and_mutate``, ``record_and_keep_all``, ``returns_wrong_length``, ``returns_ints``, ``returns_tuple``,
  ``raises``, ``Holder``.
* Python columns for recipes (``support:NAME``): ``shout``, ``mutate_and_count``, ``topic_lengths``, ``one_short``,
  ``not_a_list``, ``broken``, ``Scorer``.
* Dask cluster functions (module level, so worker processes import them; ``distributed`` only inside them):
  ``worker_pid``, ``fail``, ``keywords``, ``wait_for_event``.
* Engine runs: ``no_sleep``, ``small_recipe`` (a four-column mock recipe), ``PRE_FILTER``, ``assert_healthy``.
* Report event logs (hand-built event dicts with chosen times): ``Log``, ``LLM``, ``scenario``, ``RequestLog``,
  ``WRITER``, ``JUDGE``, ``request_scenario``.
* Counting semaphores: ``CountingSemaphore`` (fails on a loop over a lease's units), ``counting_semaphores``.
* Admission policies, tasks and a policy harness: ``PolicyStub`` (allows everything, changes nothing),
  ``RaisingPolicy``, ``make_task``, ``clamp``, ``empty_view``, ``reason``, ``strict_fair_outcome`` (a model of
  StrictFairPolicy), ``PolicyHarness``.
* Hypothesis strategies: ``per_group``, ``resource_amounts``, ``group_draws``; ``numbers_outside`` and
  ``numbers_inside`` (values a bounded numeric setting must refuse or take), ``NON_NUMBERS``.
* Fake clocks and executor kinds: ``FakeClock``, ``EXECUTOR_KINDS``.
* A provider that never finishes an answer: ``TrickleServer``, ``TRICKLE_MODES``.
* Package sources (for the static checks): ``PACKAGE_ROOT``, ``module_paths``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import socket
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from unittest.mock import patch

from hypothesis import strategies as st

import threadsched
from threadsched import LeasedExecutor, MemoryEventSink, Scheduler, SchedulerEvent, current_cancel_token
from threadsched.core.admission import TaskAdmissionController
from threadsched.core.contracts import SUBMISSION, SchedulableTask, SchedulerResourceRequest, TaskGroupSpec
from threadsched.core.events import SCHEDULER_STREAM
from threadsched.core.policy import ALLOW, NO_CHANGE, PolicyDecision, PolicyStateDelta, TaskAdmissionPolicy
from threadsched.core.queue import FairTaskQueue
from threadsched.core.values import QueueView, TaskAdmissionConfig, TaskAdmissionDenied, TaskAdmissionLease, TaskAdmissionView
from threadsched.engine import Recipe, parse_recipe
from threadsched.engine.runner import RunResult

T = TypeVar("T")

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


class ParkingSink(SignalingSink):
    """Parks the dispatcher thread inside ``emit`` at the first ``worker_spawned`` (so later submissions stay in
    the scheduler's inbox) until ``unpark`` is set; ``parked`` is set once it is parked."""

    def __init__(self) -> None:
        super().__init__()
        self.parked = threading.Event()
        self.unpark = threading.Event()

    def emit(self, event: SchedulerEvent) -> None:
        super().emit(event)
        if event.kind == "worker_spawned" and not self.parked.is_set():
            self.parked.set()
            self.unpark.wait(GENEROUS)


class RaisingSink:
    """An event sink that raises on every ``emit``; ``calls`` counts them (thread-safe)."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def emit(self, event: SchedulerEvent) -> None:
        with self._lock:
            self.calls += 1
        raise RuntimeError("sink is broken")


def scheduler_event(
    kind: str, sequence: int, at: float, task: str = "t1", lease: int | None = None, *, stream: str = SCHEDULER_STREAM
) -> SchedulerEvent:
    """A hand-made ``SchedulerEvent`` of group ``"g"``."""
    return SchedulerEvent(kind=kind, sequence=sequence, captured_at=at, task_id=task, lease_id=lease, group="g", stream=stream)


# -- gated work and threads ------------------------------------------------------------------------


def park_workers(sched: Scheduler, slots: int, gate: threading.Event) -> list[Future[Any]]:
    """Occupy ``slots`` workers with functions parked on ``gate`` (each returns ``"parked"``); their futures."""
    started = threading.Barrier(slots + 1)

    def parked() -> str:
        started.wait(GENEROUS)
        gate.wait(GENEROUS)
        return "parked"

    futures: list[Future[Any]] = [sched.submit(parked) for _ in range(slots)]
    started.wait(GENEROUS)
    return futures


def blocking(started: threading.Event, gate: threading.Event, result: Any = None) -> Callable[[], Any]:
    """A task function: sets ``started``, waits (at most ``GENEROUS``) for ``gate``, returns ``result``."""

    def run() -> Any:
        started.set()
        gate.wait(GENEROUS)
        return result

    return run


def raises_when_cancelled(started: threading.Event) -> Callable[[], None]:
    """A task function: sets ``started``, waits for its cancel token, then raises ``CancelledError``."""

    def run() -> None:
        token = current_cancel_token()
        assert token is not None
        started.set()
        token.wait(GENEROUS)
        token.raise_if_cancelled()

    return run


def run_threads(count: int, target: Callable[[int], None]) -> None:
    """Run ``target(0)`` ... ``target(count - 1)`` on ``count`` threads at once, join them all, re-raise the first error."""
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            target(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,), name=f"test-run-threads-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


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


# -- engine runs -----------------------------------------------------------------------------------


def no_sleep(_seconds: float) -> None:
    """A ``sleep`` for runs and endpoints that must not wait (retry back-off, mock latency)."""
    return None


def small_recipe(
    *,
    records: int = 60,
    buffer_size: int = 7,
    in_flight: int = 2,
    failure_rate: float = 0.0,
    fatal_rate: float = 0.0,
    salvage: int = 2,
    extra: str = "",
) -> Recipe:
    """The engine tests' recipe: ``topic`` (sampler) -> ``question`` -> ``answer`` (mock LLM calls, ``llm:mock/writer``
    limited to 3) -> ``label`` (template); ``extra`` is appended (processors, more columns)."""
    return parse_recipe(
        f"""
[run]
records = {records}
buffer_size = {buffer_size}
max_row_groups_in_flight = {in_flight}
max_workers = 4
seed = 11
max_salvage_rounds = {salvage}

[resources]
"llm:mock/writer" = 3

[providers.mock]
kind = "mock"
models = ["writer"]
failure_rate = {failure_rate}
fatal_rate = {fatal_rate}

[[columns]]
name = "topic"
kind = "sampler"
values = ["space", "food", "off-topic", "sport", "art", "war", "law", "sea"]

[[columns]]
name = "question"
kind = "llm"
model = "mock/writer"
prompt = "Ask about {{topic}} please."

[[columns]]
name = "answer"
kind = "llm"
model = "mock/writer"
prompt = "Answer: {{question}}"

[[columns]]
name = "label"
kind = "template"
template = "{{topic}} / {{answer}}"
{extra}
"""
    )


PRE_FILTER = """
[[processors]]
stage = "pre_batch"
kind = "filter"
column = "topic"
op = "!="
value = "off-topic"
"""
"""A pre-batch processor for ``small_recipe(extra=...)``: drops the ``off-topic`` rows."""


def assert_healthy(result: RunResult) -> None:
    assert result.hidden_waiters == 0
    assert result.final_active_leases == 0
    assert result.shutdown_clean


# -- report event logs -----------------------------------------------------------------------------


class Log:
    """Builds event dicts; ``sequence`` counts per stream in call order."""

    def __init__(self, run_id: str | None = "r1") -> None:
        self.events: list[dict[str, Any]] = []
        self._sequence: Counter[str] = Counter()
        self.run_id = run_id

    def add(self, kind: str, at: float, *, stream: str = "scheduler", **fields: Any) -> dict[str, Any]:
        event = {"kind": kind, "stream": stream, "sequence": self._sequence[stream], "captured_at": at, "run_id": self.run_id}
        event.update(fields)
        self._sequence[stream] += 1
        self.events.append(event)
        return event

    def engine(self, kind: str, at: float, **fields: Any) -> dict[str, Any]:
        return self.add(kind, at, stream="engine", **fields)

    def ready(self, task: str, group: str, at: float, resources: dict[str, int] | None = None, **fields: Any) -> None:
        self.add("ready_enqueued", at, task_id=task, group=group, resources=resources or {"submission": 1}, **fields)

    def lease(self, task: str, group: str, lease: int, at: float, resources: dict[str, int] | None = None) -> None:
        self.add("selected", at, task_id=task, group=group)
        self.add("task_lease_acquired", at, task_id=task, group=group, lease_id=lease, resources=resources or {"submission": 1})
        self.add("worker_spawned", at, task_id=task, group=group, lease_id=lease, execution_id=f"{task}.x")

    def done(self, task: str, group: str, lease: int, at: float, reason: str = "succeeded") -> None:
        self.add("task_lease_released", at, task_id=task, group=group, lease_id=lease, execution_id=f"{task}.x")
        self.add("task_completed", at, task_id=task, group=group, reason=reason, execution_id=f"{task}.x")


LLM = {"submission": 1, "llm": 2}
"""The resources of ``scenario``'s downstream task (``t3``)."""


def scenario() -> list[dict[str, Any]]:
    """Two slots; root column ``a`` keeps getting leases while downstream ``b`` (task t3) waits 1.0 → 3.0.

    Idle: 1.0 → 1.5 (one free slot, t3 and t4 queued, nothing leased). Leases (submission): L1 0-1, L2 0-2,
    L3 1.5-3, L4 2-4, L5 3-4 = 7.5 lease-s; t3 holds llm 2 for 1 s."""
    log = Log()
    diagnostics = {"workers": 2, "resource_limits": {"llm": 4}, "roots": ["a"], "recipe_hash": "abc123"}
    log.engine("scheduler_job_started", 0.0, diagnostics=diagnostics)
    log.engine("row_group_admitted", 0.0, correlation={"row_group": 0})
    log.engine("dependency_ready", 0.0, group="a", correlation={"row_group": 0, "column": "a"})
    log.ready("t1", "a", 0.0)
    log.ready("t2", "a", 0.0)
    log.lease("t1", "a", 1, 0.0)
    log.lease("t2", "a", 2, 0.0)
    log.done("t1", "a", 1, 1.0)
    log.engine("dependency_ready", 1.0, group="b", correlation={"row_group": 0, "column": "b"})
    log.engine("row_group_admitted", 1.0, correlation={"row_group": 1})
    log.ready("t3", "b", 1.0, LLM)
    log.ready("t4", "a", 1.0)
    log.add("selected", 1.25, task_id="t3", group="b")
    log.add("admission_denied", 1.25, task_id="t3", group="b", reason="policy_denial")
    log.lease("t4", "a", 3, 1.5)
    log.done("t2", "a", 2, 2.0)
    log.ready("t5", "a", 2.0)
    log.lease("t5", "a", 4, 2.0)
    log.done("t4", "a", 3, 3.0)
    log.add("task_lease_acquired", 3.0, task_id="t3", group="b", lease_id=5, resources=LLM)
    log.add("worker_spawned", 3.0, task_id="t3", group="b", lease_id=5)
    log.engine("row_group_checkpointed", 3.5, correlation={"row_group": 0}, diagnostics={"rows": 2})
    log.done("t5", "a", 4, 4.0)
    log.done("t3", "b", 5, 4.0)
    log.engine("scheduler_job_completed", 4.0)
    return log.events


WRITER = "p/writer:chat"
JUDGE = "p/judge:chat"


class RequestLog(Log):
    """``Log`` plus ``requests``-stream events of an attempt of a task (correlation as the engine makes it)."""

    def request(
        self, kind: str, at: float, resource: str, task: str, column: str, attempt: int = 1, **fields: Any
    ) -> dict[str, Any]:
        correlation = {"task_id": task, "execution_id": f"{task}#1", "column": column, "attempt": attempt}
        return self.add(
            kind, at, stream="requests", resources={resource: 1}, group=column, task_id=task, correlation=correlation, **fields
        )


def request_scenario() -> list[dict[str, Any]]:
    """Tasks t1, t2 (group q) call the writer, t3 (group s) the judge.

    writer: t1 leases at once (0.1) and is rate limited (0.7: limit 2 → 1); t2 leases at once (0.6), succeeds
    at 1.0; t1's retry waits 0.8 → 1.0 and succeeds at 1.5 (limit 1 → 2). judge: t3 waits 1.0 → 1.25 (lease
    without ``waited_s``: paired with its wait start), fails at 1.75, its retry times out after 0.5 s."""
    log = RequestLog()
    log.ready("t1", "q", 0.0)
    log.lease("t1", "q", 1, 0.0)
    log.ready("t2", "q", 0.0)
    log.lease("t2", "q", 2, 0.5)
    log.ready("t3", "s", 0.75)
    log.lease("t3", "s", 3, 0.75)
    log.request("request_lease_acquired", 0.1, WRITER, "t1", "q", lease_id=1, diagnostics={"waited_s": 0.0, "limit": 2})
    log.request("request_lease_acquired", 0.6, WRITER, "t2", "q", lease_id=2, diagnostics={"waited_s": 0.0, "limit": 2})
    log.request("request_rate_limited", 0.7, WRITER, "t1", "q", lease_id=1, diagnostics={"cooldown_s": 0.1})
    log.request("request_limit_decreased", 0.7, WRITER, "t1", "q", lease_id=1, diagnostics={"before": 2, "after": 1})
    released = {"held_s": 0.6, "in_flight": 1, "limit": 1}
    log.request("request_lease_released", 0.7, WRITER, "t1", "q", lease_id=1, reason="rate_limited", diagnostics=released)
    log.request("request_wait_started", 0.8, WRITER, "t1", "q", attempt=2, reason="cooldown")
    released = {"held_s": 0.4, "in_flight": 0, "limit": 1}
    log.request("request_lease_released", 1.0, WRITER, "t2", "q", lease_id=2, reason="success", diagnostics=released)
    log.request("request_wait_completed", 1.0, WRITER, "t1", "q", attempt=2, reason="granted", diagnostics={"waited_s": 0.2})
    waited = {"waited_s": 0.2, "limit": 1}
    log.request("request_lease_acquired", 1.0, WRITER, "t1", "q", attempt=2, lease_id=3, diagnostics=waited)
    log.request("request_limit_increased", 1.5, WRITER, "t1", "q", attempt=2, lease_id=3, diagnostics={"before": 1, "after": 2})
    released = {"held_s": 0.5, "in_flight": 0, "limit": 2}
    log.request("request_lease_released", 1.5, WRITER, "t1", "q", attempt=2, lease_id=3, reason="success", diagnostics=released)
    log.request("request_wait_started", 1.0, JUDGE, "t3", "s", reason="at_limit")
    log.request("request_lease_acquired", 1.25, JUDGE, "t3", "s", lease_id=4, diagnostics={"limit": 4})
    released = {"held_s": 0.5, "limit": 4}
    log.request("request_lease_released", 1.75, JUDGE, "t3", "s", lease_id=4, reason="provider_failure", diagnostics=released)
    log.request("request_wait_started", 2.0, JUDGE, "t3", "s", attempt=2, reason="at_limit")
    log.request("request_wait_completed", 2.5, JUDGE, "t3", "s", attempt=2, reason="timeout", diagnostics={"waited_s": 0.5})
    log.request("request_lease_released", 2.5, JUDGE, "t3", "s", lease_id=99, reason="success")  # foreign: ignored
    log.done("t1", "q", 1, 1.5)
    log.done("t2", "q", 2, 1.0)
    log.done("t3", "s", 3, 2.5)
    return log.events


# -- admission policies, tasks and a policy harness ------------------------------------------------


class PolicyStub:
    """A custom policy (so the controller always consults it): allows everything, changes nothing.

    Subclasses override the hook they are about."""

    def evaluate(self, item: SchedulableTask, queue_view: QueueView, admission_view: TaskAdmissionView) -> PolicyDecision:
        return ALLOW

    def on_acquire(self, lease: TaskAdmissionLease, decision: PolicyDecision) -> PolicyStateDelta:
        return NO_CHANGE

    def on_release(self, lease: TaskAdmissionLease) -> PolicyStateDelta:
        return NO_CHANGE


class RaisingPolicy(PolicyStub):
    """A policy with a bug: ``evaluate`` raises ``RuntimeError`` for the groups in ``evaluate_fails_for`` (and allows
    the others); ``on_acquire`` and ``on_release`` raise when ``hooks_fail``. Its repr is ``f"{label}()"``."""

    def __init__(
        self, *, evaluate_fails_for: Collection[Hashable] = (), hooks_fail: bool = False, label: str = "RaisingPolicy"
    ) -> None:
        self.evaluate_fails_for = frozenset(evaluate_fails_for)
        self.hooks_fail = hooks_fail
        self.label = label

    def evaluate(self, item: SchedulableTask, queue_view: QueueView, admission_view: TaskAdmissionView) -> PolicyDecision:
        if item.group.key in self.evaluate_fails_for:
            raise RuntimeError(f"policy bug for group {item.group.key!r}")
        return ALLOW

    def on_acquire(self, lease: TaskAdmissionLease, decision: PolicyDecision) -> PolicyStateDelta:
        if self.hooks_fail:
            raise RuntimeError("policy bug on acquire")
        return NO_CHANGE

    def on_release(self, lease: TaskAdmissionLease) -> PolicyStateDelta:
        if self.hooks_fail:
            raise RuntimeError("policy bug on release")
        return NO_CHANGE

    def __repr__(self) -> str:
        return f"{self.label}()"


_task_ids = itertools.count()


def make_task(group: TaskGroupSpec, amounts: Mapping[str, int] | None = None, task_id: str | None = None) -> SchedulableTask:
    """A schedulable task of ``group`` asking for ``amounts``; its id is ``task_id`` or a fresh ``"<group key>-<n>"``."""
    return SchedulableTask(task_id or f"{group.key}-{next(_task_ids)}", None, group, SchedulerResourceRequest(amounts))


def clamp(amounts: Mapping[str, int], limits: Mapping[str, int]) -> dict[str, int]:
    """``amounts`` cut down to ``limits`` (a drawn request that can fit at all)."""
    return {r: min(a, limits[r]) for r, a in amounts.items()}


def empty_view() -> QueueView:
    """A queue view with no peers in it (a lone group is always live)."""
    return FairTaskQueue().view()


def reason(outcome: TaskAdmissionLease | TaskAdmissionDenied) -> str:
    """``"lease"`` for a lease, otherwise the denial's reason."""
    return "lease" if isinstance(outcome, TaskAdmissionLease) else outcome.reason


def _contended(task: SchedulableTask) -> frozenset[str]:
    """A task contends on its resources other than submission, or on submission alone."""
    others = frozenset(r for r in task.resource_request.amounts if r != SUBMISSION)
    return others or frozenset({SUBMISSION})


def strict_fair_outcome(
    task: SchedulableTask, queue_view: QueueView, available: Mapping[str, int], running: Mapping[Hashable, int]
) -> str:
    """Independent model of capacity + StrictFairPolicy's group-cap rule: ``"lease"``, ``"no_capacity"`` or ``"group_cap"``.

    A group at its ``admitted_limit`` is capped while another group's head contends for one of the same resources
    and all of that peer's resources are available; a peer that is itself at its admitted_limit does not hold a
    capped group back (capped peers never block each other while capacity sits idle).
    """
    amounts = task.resource_request.amounts
    if any(available[r] < a for r, a in amounts.items()):
        return "no_capacity"
    limit = task.group.admitted_limit
    if limit is None or running.get(task.group.key, 0) < limit:
        return "lease"
    for peer_key, peer in queue_view.first_candidate_tasks_by_group.items():
        if peer_key == task.group.key or _contended(task).isdisjoint(_contended(peer)):
            continue
        peer_limit = peer.group.admitted_limit
        if peer_limit is not None and running.get(peer_key, 0) >= peer_limit:
            continue
        if all(available[r] >= a for r, a in peer.resource_request.amounts.items()):
            return "group_cap"
    return "lease"


class PolicyHarness:
    """One policy behind a real ``TaskAdmissionController`` (``submission`` plus ``limits``) and a real ``FairTaskQueue``.

    ``policy=None`` is the controller's default policy. Policy test modules subclass it with their ``attempt``.
    """

    def __init__(self, policy: TaskAdmissionPolicy | None, submission: int, limits: Mapping[str, int]) -> None:
        self.controller = TaskAdmissionController(TaskAdmissionConfig(submission, limits), policy)
        self.policy: Any = self.controller.policy
        self.queue = FairTaskQueue()

    def hold(self, group: TaskGroupSpec, amounts: Mapping[str, int] | None = None) -> TaskAdmissionLease:
        """Acquire with no peers in view (a lone group is always live)."""
        lease = self.controller.try_acquire(make_task(group, amounts), empty_view())
        assert isinstance(lease, TaskAdmissionLease), lease
        return lease

    def queue_task(self, group: TaskGroupSpec, amounts: Mapping[str, int] | None = None) -> SchedulableTask:
        item = make_task(group, amounts)
        assert self.queue.enqueue([item]) == (item.task_id,)
        return item

    def decide(
        self, group: TaskGroupSpec, amounts: Mapping[str, int] | None = None
    ) -> tuple[TaskAdmissionLease | TaskAdmissionDenied, PolicyDecision]:
        """A direct ``evaluate``, then ``is_eligible`` and ``try_acquire`` against the current queue view (which must
        agree with each other); the outcome and the direct decision."""
        item = make_task(group, amounts)
        view = self.queue.view()
        decision = self.policy.evaluate(item, view, self.controller.view())
        eligible = self.controller.is_eligible(item, view)
        outcome = self.controller.try_acquire(item, view)
        assert eligible is isinstance(outcome, TaskAdmissionLease)
        return outcome, decision


# -- counting semaphores ---------------------------------------------------------------------------

SEMAPHORE_CALLS_PER_RUN = 10_000
"""More acquires than any test makes of one semaphore by a wide margin (one per lease), and far fewer than a
loop over the units of one large lease would."""


class CountingSemaphore(threading.BoundedSemaphore):
    """A ``BoundedSemaphore`` that counts its calls and fails once they look like a loop over units: more than
    ``SEMAPHORE_CALLS_PER_RUN`` acquires, or one release of more than one unit (``release(n)`` itself loops
    ``n`` notifies)."""

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self.acquires = 0
        self.released_units = 0

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        self.acquires += 1
        assert self.acquires <= SEMAPHORE_CALLS_PER_RUN, "a semaphore acquired once per unit of a lease"
        return super().acquire(blocking) if timeout is None else super().acquire(blocking, timeout)

    def release(self, n: int = 1) -> None:
        assert n == 1, f"released {n} units of a semaphore at once: {n} notifies under the controller lock"
        self.released_units += n
        super().release(n)


@contextmanager
def counting_semaphores() -> Iterator[list[CountingSemaphore]]:
    """Every ``BoundedSemaphore`` built inside the block is a ``CountingSemaphore``, listed in what it yields."""
    built: list[CountingSemaphore] = []

    def build(value: int = 1) -> CountingSemaphore:
        semaphore = CountingSemaphore(value)
        built.append(semaphore)
        return semaphore

    with patch.object(threading, "BoundedSemaphore", build):
        yield built


# -- hypothesis strategies -------------------------------------------------------------------------


def per_group(values: st.SearchStrategy[T], groups: int) -> st.SearchStrategy[list[T]]:
    """One value per group (weights, caps, specs), ``groups`` of them."""
    return st.lists(values, min_size=groups, max_size=groups)


def resource_amounts(resources: Sequence[str], most: int) -> st.SearchStrategy[dict[str, int]]:
    """A task's resource request: up to two of ``resources``, 1 to ``most`` units each."""
    return st.dictionaries(st.sampled_from(resources), st.integers(1, most), max_size=2)


def group_draws(
    groups: int, values: st.SearchStrategy[T], *, min_size: int = 0, max_size: int
) -> st.SearchStrategy[list[tuple[int, T]]]:
    """A list of ``(group index, value)``: which of ``groups`` groups does what."""
    return st.lists(st.tuples(st.integers(0, groups - 1), values), min_size=min_size, max_size=max_size)


NON_NUMBERS: st.SearchStrategy[object] = st.one_of(
    st.booleans(),  # an int to Python, never a number to a setting
    st.text(alphabet="abc019 .-e", max_size=6),  # "1", "1e3", "nan": strings that look like numbers stay strings
    st.lists(st.integers(0, 9), max_size=2),
)
"""Values of the wrong type for any numeric setting (all of them writable as TOML literals)."""

_HUGE_INTS = st.integers(min_value=2**64, max_value=2**8000) | st.integers(min_value=-(2**8000), max_value=-(2**64))


def numbers_outside(
    minimum: float, maximum: float, *, integer: bool = False, exclusive_minimum: bool = False
) -> st.SearchStrategy[object]:
    """Values a setting taking numbers in ``[minimum, maximum]`` (``(minimum, ...`` when ``exclusive_minimum``;
    ints only when ``integer``) must refuse: NaN, +-inf, values just past either bound, 1e308, -0.0 where
    0 is excluded, ints past the bounds up to 8000 bits, any float for an integer setting, and ``NON_NUMBERS``."""

    def outside(value: float) -> bool:
        above_minimum = value > minimum if exclusive_minimum else value >= minimum
        return not (above_minimum and value <= maximum)  # NaN compares False: outside

    edges = [math.nan, math.inf, -math.inf, 1e308, -1e308, -0.0, 5e-324, math.nextafter(maximum, math.inf)]
    edges += [minimum, math.nextafter(minimum, -math.inf), float(maximum) * 2 + 1]
    ints = st.integers(max_value=math.ceil(minimum) - 1) | st.integers(min_value=math.floor(maximum) + 1) | _HUGE_INTS
    if integer:
        floats: st.SearchStrategy[float] = st.floats() | st.sampled_from([float(edge) for edge in edges])
        floats |= st.floats(float(minimum), float(maximum))  # 5.0 is no integer, however in range
    else:
        floats = st.sampled_from([edge for edge in edges if outside(edge)]) | st.floats().filter(outside)
        ints = ints.filter(outside)
    return st.one_of(floats, ints, NON_NUMBERS)


def numbers_inside(
    minimum: float, maximum: float, *, integer: bool = False, exclusive_minimum: bool = False
) -> st.SearchStrategy[float]:
    """Values such a setting takes: ints (and, unless ``integer``, floats) within the range, its bounds, and
    -0.0 where 0 is allowed."""
    low = math.ceil(minimum) + (1 if exclusive_minimum and float(minimum).is_integer() else 0)
    ints = st.integers(low, math.floor(maximum)) if low <= maximum else st.nothing()  # (0, 1) holds no int
    bounds = [maximum] if exclusive_minimum else [minimum, maximum]
    if integer:
        return ints | st.sampled_from([int(bound) for bound in bounds])
    if not exclusive_minimum and minimum <= 0 <= maximum:
        bounds.append(-0.0)
    floats = st.floats(minimum, maximum, exclude_min=exclusive_minimum)
    return st.one_of(ints, floats, st.sampled_from([float(bound) for bound in bounds]))


# -- fake clocks and executor kinds ----------------------------------------------------------------


class FakeClock:
    """A clock that moves only when told: ``advance(seconds)``, or ``sleep(delay)`` (recorded in ``slept``)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, delay: float) -> None:
        self.slept.append(delay)
        self.now += delay


EXECUTOR_KINDS: dict[str, Callable[..., ThreadPoolExecutor]] = {"stdlib": ThreadPoolExecutor, "leased": LeasedExecutor}
"""The executors a drop-in test runs against: the stdlib pool and ``LeasedExecutor``."""


# -- a provider that never finishes an answer -------------------------------------------------------

TRICKLE_MODES = ("body", "headers", "sse", "silent")
"""``TrickleServer`` modes that never finish an answer (``"answer"`` answers every request at once)."""

_COMPLETION = json.dumps({"object": "chat.completion", "choices": [{"index": 0, "message": {"content": "done"}}]}).encode()
_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(_COMPLETION), _COMPLETION)


class TrickleServer:
    """A raw HTTP/1.1 server on 127.0.0.1 whose answers never end, each piece ``interval`` seconds apart:

    * ``"body"``: a 200 with a JSON content type and a huge ``content-length``, then one byte of body per piece;
    * ``"headers"``: the status line, then one header line per piece, never the blank line that ends them;
    * ``"sse"``: a chunked ``text/event-stream`` 200, then one ``: keep-alive`` comment per piece;
    * ``"silent"``: reads the request and sends nothing;
    * ``"answer"``: answers every request at once with a small chat completion (keep-alive).

    The first ``answer_first`` requests of each connection are answered at once as in ``"answer"``, so a test
    can make the trickle start on a reused keep-alive connection. Use it as a context manager: on exit it stops
    trickling, joins every thread it started and fails if one is still alive. ``accepted`` counts
    connections, ``request_lines`` records each request's first line, and ``wait_for_hang_ups(n)`` waits until
    clients closed ``n`` connections (a closed connection is seen within one ``interval``)."""

    def __init__(self, mode: str, *, interval: float = 0.2, answer_first: int = 0) -> None:
        if mode not in (*TRICKLE_MODES, "answer"):
            raise ValueError(f"unknown trickle mode {mode!r}")
        self.mode = mode
        self.interval = interval
        self.answer_first = answer_first
        self.accepted = 0
        self.request_lines: list[str] = []
        self._hung_up = 0
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> TrickleServer:
        self._start(self._accept, "trickle-server-accept")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):  # accept() returns for this connection and then sees the stop
            socket.create_connection(("127.0.0.1", self.port), timeout=GENEROUS).close()
        with self._changed:
            threads = list(self._threads)
        for thread in threads:
            thread.join(GENEROUS)
        self._listener.close()
        alive = [thread.name for thread in threads if thread.is_alive()]
        assert not alive, f"trickle server threads still running: {alive}"

    def wait_for_hang_ups(self, count: int, timeout: float = GENEROUS) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._hung_up >= count, timeout)

    def _start(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._changed:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self._stop.is_set():
                conn.close()
                return
            with self._changed:
                self.accepted += 1
                number = self.accepted
            self._start(self._serve, f"trickle-server-conn-{number}", conn)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(self.interval)  # every wait is short, so a stop is seen within one interval
            pending = b""
            for answered in itertools.count():
                request, pending = self._read_request(conn, pending)
                if request is None:
                    return
                with self._changed:
                    self.request_lines.append(request.split(b"\r\n", 1)[0].decode("latin-1"))
                if self.mode == "answer" or answered < self.answer_first:
                    if not self._send(conn, _ANSWER):
                        return
                    continue
                for piece in self._pieces():
                    if (piece and not self._send(conn, piece)) or self._client_gone(conn) or self._stop.is_set():
                        return

    def _read_request(self, conn: socket.socket, pending: bytes) -> tuple[bytes | None, bytes]:
        while b"\r\n\r\n" not in pending or len(pending) < self._request_length(pending):
            data = self._recv(conn)
            if data is None:
                return None, b""
            pending += data
        length = self._request_length(pending)
        return pending[:length], pending[length:]

    @staticmethod
    def _request_length(pending: bytes) -> int:
        head, _, _ = pending.partition(b"\r\n\r\n")
        size = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                size = int(value)
        return len(head) + 4 + size

    def _recv(self, conn: socket.socket) -> bytes | None:
        """The next bytes from the client; None once it hung up (counted) or the server stops."""
        while not self._stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:
                self._count_hang_up()
                return None
            return data
        return None

    def _client_gone(self, conn: socket.socket) -> bool:
        """Waits up to one interval for the client to hang up (the pacing between pieces)."""
        try:
            data = conn.recv(65536)
        except TimeoutError:
            return False
        except OSError:
            data = b""
        if data:
            return False  # more bytes from the client (a next request) are not a hang-up
        self._count_hang_up()
        return True

    def _send(self, conn: socket.socket, data: bytes) -> bool:
        try:
            conn.sendall(data)
        except OSError:  # the client hung up while we wrote
            self._count_hang_up()
            return False
        return True

    def _count_hang_up(self) -> None:
        with self._changed:
            self._hung_up += 1
            self._changed.notify_all()

    def _pieces(self) -> Iterator[bytes]:
        if self.mode == "body":
            yield b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000000000\r\n\r\n{"
            while True:
                yield b" "
        elif self.mode == "headers":
            yield b"HTTP/1.1 200 OK\r\n"
            for number in itertools.count():
                yield b"x-trickle-%d: %d\r\n" % (number, number)
        elif self.mode == "sse":
            yield b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            comment = b": keep-alive\n\n"
            while True:
                yield b"%x\r\n%s\r\n" % (len(comment), comment)
        else:
            while True:
                yield b""


# -- package sources -------------------------------------------------------------------------------

PACKAGE_ROOT = Path(threadsched.__file__).resolve().parent
"""The installed package's directory (the one this interpreter imports, not necessarily the checkout)."""


def module_paths() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, not ``...__init__``)."""
    modules = {}
    for path in PACKAGE_ROOT.rglob("*.py"):
        parts = ["threadsched", *path.relative_to(PACKAGE_ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules
