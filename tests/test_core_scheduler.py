"""Scheduler public API: construction, validation, context, threads, events, snapshots, fairness."""

from __future__ import annotations

import contextvars
import dataclasses
import json
import math
import os
import re
import threading
from collections.abc import Hashable
from concurrent.futures import Future
from typing import Any

import pytest
from support import (
    GENEROUS,
    ParkingSink,
    RaisingSink,
    SignalingSink,
    blocking,
    check_lease_evidence,
    opened_on_exit,
    resolve_all,
    scheduler_threads,
)

import threadsched
from threadsched import (
    MemoryEventSink,
    RetryPolicy,
    Scheduler,
    SchedulerEvent,
    SchedulerSnapshot,
    ShutdownReport,
    TaskFuture,
    TaskGroup,
)

COUNTERS = (
    "submitted",
    "completed",
    "failed",
    "cancelled",
    "retried",
    "timed_out",
    "stale_selections",
    "spawn_failures",
    "sink_errors",
)


# -- basic API ------------------------------------------------------------------------------------


def test_submit_returns_task_future_with_result() -> None:
    with Scheduler(max_workers=2, name="api") as sched:
        future = sched.submit(lambda a, b=0: a + b, 2, b=3)
        assert isinstance(future, TaskFuture)
        assert isinstance(future, Future)
        assert isinstance(future.task_id, str) and future.task_id
        assert future.result(timeout=GENEROUS) == 5


def test_task_ids_are_unique() -> None:
    with Scheduler(max_workers=2, name="ids") as sched:
        futures = [sched.submit(int, i) for i in range(50)]
        resolve_all(futures)
        assert len({future.task_id for future in futures}) == 50
        assert [future.result() for future in futures] == list(range(50))


def test_group_submit_uses_group_and_returns_results() -> None:
    sink = MemoryEventSink()
    with Scheduler(max_workers=2, events=sink, name="grp") as sched:
        group = sched.group("tenant-a", weight=2.0)
        assert isinstance(group, TaskGroup)
        assert group.key == "tenant-a"
        future = group.submit(str.upper, "x")
        assert future.result(timeout=GENEROUS) == "X"
    spawned = [event for event in sink.events if event.kind == "worker_spawned"]
    assert [event.group for event in spawned] == ["tenant-a"]


def test_context_manager_shuts_down_and_rejects_new_work() -> None:
    with Scheduler(max_workers=1, name="ctx") as sched:
        future = sched.submit(lambda: "ran")
    # exit = shutdown(wait=True): the work ran, no scheduler thread survives.
    assert future.result(timeout=0) == "ran"
    assert scheduler_threads("ctx") == []
    with pytest.raises(RuntimeError):
        sched.submit(lambda: None)


def test_submit_capacity_equals_max_workers() -> None:
    with Scheduler(max_workers=3, name="cap") as sched:
        assert sched.submit_capacity == 3
        assert sched.snapshot().admission.resource_limits["submission"] == 3


def test_default_max_workers_like_stdlib() -> None:
    with Scheduler(name="dflt") as sched:
        assert sched.submit_capacity == min(32, (os.cpu_count() or 1) + 4)


def test_thread_names_and_dispatcher_thread_alive_while_running() -> None:
    started = threading.Event()
    release = threading.Event()
    seen: dict[str, Any] = {}

    def work() -> None:
        seen["worker"] = threading.current_thread().name
        started.set()
        release.wait(GENEROUS)

    with Scheduler(max_workers=2, name="naming") as sched, opened_on_exit(release):
        future = sched.submit(work)
        assert started.wait(GENEROUS)
        names = [thread.name for thread in threading.enumerate()]
        assert "naming-dispatcher" in names
        release.set()
        future.result(timeout=GENEROUS)
    assert re.fullmatch(r"naming-worker_\d+", seen["worker"]), seen["worker"]
    assert scheduler_threads("naming") == []


def test_contextvars_captured_at_submit() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    gate = threading.Event()
    started = threading.Event()

    blocker = blocking(started, gate)

    def read_and_write() -> str:
        value = var.get()
        var.set("changed-inside")
        return value

    with Scheduler(max_workers=1, name="ctxvar") as sched, opened_on_exit(gate):
        sched.submit(blocker)
        assert started.wait(GENEROUS)
        token = var.set("at-submit")
        try:
            future = sched.submit(read_and_write)  # queued behind the blocker
            var.set("after-submit")
        finally:
            var.reset(token)
        gate.set()
        assert future.result(timeout=GENEROUS) == "at-submit"
        assert var.get() == "unset"  # the function's writes stay in its own context copy


def test_current_cancel_token_visible_inside_task_only() -> None:
    assert threadsched.current_cancel_token() is None
    with Scheduler(max_workers=1, name="tok") as sched:
        future = sched.submit(threadsched.current_cancel_token)
        token = future.result(timeout=GENEROUS)
    assert token is future.cancel_token
    assert threadsched.current_cancel_token() is None


# -- validation -----------------------------------------------------------------------------------


def test_unknown_resource_key_rejected_at_group() -> None:
    with Scheduler(max_workers=2, resource_limits={"llm:x": 2}, name="val1") as sched:
        with pytest.raises(ValueError, match=r"unknown resource 'llm:y'"):
            sched.group("g", resources={"llm:y": 1})
        # the failed call registered nothing: the same key is still free
        assert sched.group("g", resources={"llm:x": 1}).key == "g"


def test_amount_above_limit_rejected_at_group() -> None:
    with (
        Scheduler(max_workers=2, resource_limits={"llm:x": 2}, name="val2") as sched,
        pytest.raises(ValueError, match=r"'llm:x'.*3.*limit 2"),
    ):
        sched.group("g", resources={"llm:x": 3})


@pytest.mark.parametrize(("amount", "error"), [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_bad_resource_amount_rejected(amount: object, error: type[Exception]) -> None:
    with (
        Scheduler(max_workers=2, resource_limits={"llm:x": 2}, name="val3") as sched,
        pytest.raises(error, match=re.escape("['llm:x'] must be") + ".*" + re.escape(f"got {amount!r}")),
    ):
        sched.group("g", resources={"llm:x": amount})  # type: ignore[dict-item]


def test_submission_amount_other_than_one_rejected() -> None:
    with Scheduler(max_workers=2, name="val4") as sched, pytest.raises(ValueError, match=r"submission.*got 2"):
        sched.group("g", resources={"submission": 2})


@pytest.mark.parametrize("fn", [None, 42, "not callable"])
def test_non_callable_fn_rejected(fn: object) -> None:
    with Scheduler(max_workers=1, name="val5") as sched:
        with pytest.raises(TypeError, match="callable"):
            sched.submit(fn)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="callable"):
            sched.group("g").submit(fn)  # type: ignore[arg-type]
        assert sched.snapshot().counters["submitted"] == 0


@pytest.mark.parametrize("weight", [0, -1.0, math.nan, math.inf])
def test_bad_weight_rejected(weight: float) -> None:
    with (
        Scheduler(max_workers=1, name="val6") as sched,
        pytest.raises(ValueError, match=rf"weight.*got {re.escape(repr(weight))}"),
    ):
        sched.group("g", weight=weight)


@pytest.mark.parametrize("limit", [0, -3])
def test_bad_admitted_limit_rejected(limit: int) -> None:
    with Scheduler(max_workers=1, name="val7") as sched, pytest.raises(ValueError, match=rf"admitted_limit.*got {limit}"):
        sched.group("g", admitted_limit=limit)


@pytest.mark.parametrize("timeout", [0, -0.5, math.nan, math.inf])
def test_bad_timeout_rejected(timeout: float) -> None:
    with (
        Scheduler(max_workers=1, name="val8") as sched,
        pytest.raises(ValueError, match=rf"timeout.*got {re.escape(repr(timeout))}"),
    ):
        sched.group("g", timeout=timeout)


@pytest.mark.parametrize("max_workers", [0, -1])
def test_bad_max_workers_rejected(max_workers: int) -> None:
    with pytest.raises(ValueError, match=rf"max_workers.*got {max_workers}"):
        Scheduler(max_workers=max_workers, name="val9")


class WithoutRelease:
    """Two of the three methods of a policy."""

    def evaluate(self, *args: object) -> object:
        raise AssertionError("never consulted")

    def on_acquire(self, *args: object) -> object:
        raise AssertionError("never consulted")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_workers": True}, TypeError, r"^max_workers must be an int, got True$"),
        ({"max_workers": 2.0}, TypeError, r"^max_workers must be an int, got 2.0$"),
        ({"max_workers": 10**12 + 1}, ValueError, r"^max_workers must be at most 1_000_000_000_000, got 1000000000001$"),
        ({"resource_limits": [("x", 1)]}, TypeError, r"^resource_limits must be a mapping of resource name to units, or None"),
        ({"resource_limits": {"x": 0}}, ValueError, r"resource_limits\['x'\] must be a positive int, got 0$"),
        ({"resource_limits": {"x": 5e6}}, TypeError, r"resource_limits\['x'\] must be an int, got 5000000.0$"),
        ({"resource_limits": {"x": True}}, TypeError, r"resource_limits\['x'\] must be an int, got True$"),
        ({"resource_limits": {"x": 10**13}}, ValueError, r"resource_limits\['x'\] must be at most 1_000_000_000_000"),
        ({"resource_limits": {3: 1}}, TypeError, r"resource_limits: key must be a non-empty str, got 3$"),
        ({"policy": object()}, TypeError, r"^policy must implement TaskAdmissionPolicy \(evaluate, on_acquire, on_release\); "),
        ({"policy": WithoutRelease()}, TypeError, r"^policy must implement TaskAdmissionPolicy .* lacks on_release$"),
        ({"policy": "drf"}, TypeError, r"^policy must implement TaskAdmissionPolicy .* lacks evaluate, on_acquire, on_release$"),
        ({"executor": object()}, TypeError, r"^executor must be a concurrent.futures.Executor or a distributed.Client, got "),
        ({"events": object()}, TypeError, r"^events must have an emit\(event\) method, got "),
        ({"events": MemoryEventSink}, TypeError, r"^events must have an emit\(event\) method, got <class"),
        ({"name": ""}, ValueError, r"^name must be a non-empty str, got ''$"),
        ({"name": 3}, TypeError, r"^name must be a non-empty str, got 3$"),
        ({"run_id": 7}, TypeError, r"^run_id must be a str or None, got 7$"),
        ({"owns_executor": 1}, TypeError, r"^owns_executor must be a bool or None, got 1$"),
    ],
)
def test_every_constructor_argument_is_checked_naming_it(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        Scheduler(**kwargs)


def test_a_class_for_events_is_refused_but_an_instance_is_taken() -> None:
    # MemoryEventSink.emit is a function on the class, so only the missing bound self tells them apart.
    with Scheduler(max_workers=1, events=MemoryEventSink(), name="sink-ok") as sched:
        assert sched.submit(int, 3).result(timeout=GENEROUS) == 3


@pytest.mark.parametrize("timeout", [True, "5", [5], None])
def test_a_group_timeout_that_is_not_a_number_is_a_type_error(timeout: Any) -> None:
    with Scheduler(max_workers=1, name="val8t") as sched:
        if timeout is None:
            assert sched.group("g", timeout=timeout).settings.timeout is None
            return
        with pytest.raises(TypeError, match=rf"^timeout must be a number, got {re.escape(repr(timeout))}$"):
            sched.group("g", timeout=timeout)


def test_group_again_with_different_settings_is_value_error() -> None:
    with Scheduler(max_workers=2, resource_limits={"llm:x": 2}, name="val10") as sched:
        sched.group("g", weight=2.0, resources={"llm:x": 1}, timeout=5.0)
        for changed in (
            {"weight": 3.0, "resources": {"llm:x": 1}, "timeout": 5.0},
            {"weight": 2.0, "resources": {"llm:x": 2}, "timeout": 5.0},
            {"weight": 2.0, "resources": {"llm:x": 1}, "timeout": 6.0},
            {"weight": 2.0, "resources": {"llm:x": 1}, "timeout": 5.0, "admitted_limit": 1},
            {"weight": 2.0, "resources": {"llm:x": 1}, "timeout": 5.0, "retry": RetryPolicy(max_attempts=2)},
        ):
            with pytest.raises(ValueError, match=r"'g' already exists"):
                sched.group("g", **changed)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"'default' already exists"):
            sched.group("default", weight=5.0)


def test_group_again_with_same_settings_returns_same_group() -> None:
    with Scheduler(max_workers=2, resource_limits={"llm:x": 2}, name="val11") as sched:
        retry = RetryPolicy(max_attempts=2, retry_on=(ValueError,))
        first = sched.group(("tenant", 1), weight=2.0, resources={"llm:x": 1}, retry=retry, timeout=5.0)
        again = sched.group(
            ("tenant", 1),
            weight=2,
            resources={"llm:x": 1, "submission": 1},
            retry=RetryPolicy(max_attempts=2, retry_on=(ValueError,)),
            timeout=5,
        )
        assert again is first
        assert sched.group("default") is sched.group("default")


def test_submit_after_shutdown_is_runtime_error() -> None:
    sched = Scheduler(max_workers=1, name="val12")
    group = sched.group("g")
    report = sched.shutdown()
    assert report.clean
    with pytest.raises(RuntimeError):
        sched.submit(lambda: None)
    with pytest.raises(RuntimeError):
        group.submit(lambda: None)


# -- shutdown(timeout=...) and its report -----------------------------------------------------------


@pytest.mark.parametrize(
    ("timeout", "error", "match"),
    [
        (math.nan, ValueError, r"^timeout must be a number >= 0, math.inf or None, got nan$"),
        (-0.5, ValueError, r"^timeout must be a number >= 0, math.inf or None, got -0.5$"),
        (-math.inf, ValueError, r"^timeout must be a number >= 0, math.inf or None, got -inf$"),
        pytest.param(
            -(10**400),
            ValueError,
            r"^timeout must be a number >= 0, math.inf or None, got an int of about 401 digits$",
            id="-10**400",
        ),
        (True, TypeError, r"^timeout must be a number, got True$"),
        ("1", TypeError, r"^timeout must be a number, got '1'$"),
        ([1], TypeError, r"^timeout must be a number, got \[1\]$"),
    ],
)
def test_a_bad_shutdown_timeout_is_refused_before_shutdown_begins(timeout: Any, error: type[Exception], match: str) -> None:
    """NaN used to pass ``timeout < 0`` and cancel the queued work at once; now nothing has begun when it raises."""
    started, gate = threading.Event(), threading.Event()
    with Scheduler(max_workers=1, name="sd-bad") as sched:
        with opened_on_exit(gate):
            running = sched.submit(blocking(started, gate, "ran"))
            queued = sched.submit(int, 7)
            assert started.wait(GENEROUS)
            with pytest.raises(error, match=match):
                sched.shutdown(timeout=timeout)
            later = sched.submit(int, 8)  # still accepting work: shutdown never began
        assert (running.result(timeout=GENEROUS), queued.result(timeout=GENEROUS), later.result(timeout=GENEROUS)) == (
            "ran",
            7,
            8,
        )


@pytest.mark.parametrize("timeout", [math.inf, threading.TIMEOUT_MAX, 1e300, pytest.param(10**400, id="10**400")])
def test_an_infinite_or_unwaitable_shutdown_timeout_is_no_deadline(timeout: float) -> None:
    """inf (and any wait longer than a lock can take) means "no deadline", like None: shutdown waits for all the
    work and cancels nothing. It used to raise OverflowError after shutdown had begun."""
    started, gate = threading.Event(), threading.Event()
    sched = Scheduler(max_workers=1, name="sd-inf")
    with opened_on_exit(gate):
        running = sched.submit(blocking(started, gate, "ran"))
        queued = sched.submit(int, 7)
        assert started.wait(GENEROUS)
        joined_with: list[float | None] = []
        join = sched._core.join

        def join_then_open(wait: float | None) -> bool:
            # Shutdown has begun and is about to wait for the dispatcher: now let the running task finish.
            joined_with.append(wait)
            gate.set()
            return join(wait)

        sched._core.join = join_then_open  # type: ignore[method-assign]
        report = sched.shutdown(timeout=timeout)
    assert joined_with == [None]
    assert report == ShutdownReport(clean=True, cancelled=0, overdue=(), active_leases=0, still_running=())
    assert (running.result(timeout=0), queued.result(timeout=0)) == ("ran", 7)


def test_a_worker_still_running_at_the_deadline_is_reported_as_still_running_not_overdue() -> None:
    """The issue's run: one running task without a timeout and shutdown(timeout=...) gave overdue=() beside
    active_leases=1, though the docstring promised it as overdue. Overdue is past its own group's timeout."""
    started, gate = threading.Event(), threading.Event()
    sched = Scheduler(max_workers=1, name="sd-running")
    with opened_on_exit(gate):
        running = sched.submit(blocking(started, gate, "ran"))
        queued = sched.submit(int, 7)
        assert started.wait(GENEROUS)
        report = sched.shutdown(timeout=0.05)
        assert report.still_running == (running.task_id,)
        assert report.overdue == ()
        assert report.active_leases == 1
        assert report.cancelled == 1 and queued.cancelled()  # queued at the deadline: cancelled
        assert report.clean is False
        assert not running.done()
    assert running.result(timeout=GENEROUS) == "ran"
    final = sched.shutdown()
    assert (final.clean, final.still_running, final.active_leases) == (True, (), 0)


def test_shutdown_without_waiting_reports_what_is_still_running() -> None:
    started, gate = threading.Event(), threading.Event()
    sched = Scheduler(max_workers=2, name="sd-nowait")
    with opened_on_exit(gate):
        first = sched.submit(blocking(started, gate, 1))
        assert started.wait(GENEROUS)
        second_started = threading.Event()
        second = sched.submit(blocking(second_started, gate, 2))
        assert second_started.wait(GENEROUS)
        report = sched.shutdown(wait=False)
        assert sorted(report.still_running) == sorted((first.task_id, second.task_id))
        assert (report.active_leases, report.overdue, report.clean) == (2, (), False)
    assert (first.result(timeout=GENEROUS), second.result(timeout=GENEROUS)) == (1, 2)
    assert sched.shutdown().still_running == ()


# -- events ---------------------------------------------------------------------------------------


def _mixed_run(sink: MemoryEventSink, name: str, group_key: Hashable = "g") -> list[Future[Any]]:
    def flaky(i: int, attempts: list[int]) -> int:
        attempts.append(i)
        if i % 5 == 0 and len(attempts) == 1:
            raise ValueError("retry me")
        if i % 7 == 0:
            raise KeyError(i)
        return i

    with Scheduler(max_workers=3, events=sink, name=name) as sched:
        group = sched.group(group_key, retry=RetryPolicy(max_attempts=2, retry_on=(ValueError,), backoff_initial=0))
        futures: list[Future[Any]] = [group.submit(flaky, i, []) for i in range(30)]
        futures += [sched.submit(int, i) for i in range(10)]
        resolve_all(futures)
    return futures


def test_events_lease_acquired_before_spawn_before_single_release() -> None:
    sink = MemoryEventSink()
    futures = _mixed_run(sink, "ev1")
    events = sink.events
    by_lease = check_lease_evidence(events)
    spawned = [event for event in events if event.kind == "worker_spawned"]
    # 40 tasks + 6 retried attempts (i % 5 == 0), each execution with its own lease
    assert len(spawned) == 46
    assert len(by_lease) == 46
    assert len({event.execution_id for event in spawned}) == 46
    for future in futures:
        assert future.done()
    kinds = {event.kind for event in events}
    assert {"ready_enqueued", "selected", "task_lease_acquired", "worker_spawned", "task_completed"} <= kinds
    assert {"task_lease_released", "retry_deferred"} <= kinds
    for event in events:
        assert isinstance(event, SchedulerEvent)
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", event.kind), event.kind
        assert isinstance(event.captured_at, float)


def test_event_to_dict_is_json_safe_with_tuple_group_keys() -> None:
    sink = MemoryEventSink()
    _mixed_run(sink, "ev2", group_key=("tenant", 7, ("nested", 1.5)))
    events = sink.events
    assert any(event.group == ("tenant", 7, ("nested", 1.5)) for event in events)
    for event in events:
        encoded = json.dumps(event.to_dict())
        decoded = json.loads(encoded)
        assert decoded["kind"] == event.kind
        assert decoded["sequence"] == event.sequence
        assert set(decoded) == {
            "kind",
            "sequence",
            "captured_at",
            "task_id",
            "execution_id",
            "lease_id",
            "group",
            "resources",
            "reason",
            "diagnostics",
            "stream",
            "run_id",
            "correlation",
        }
        assert decoded["stream"] == "scheduler" and decoded["correlation"] == {}


def test_events_carry_no_payload_values() -> None:
    secret = "sk-very-secret-prompt-text"
    sink = MemoryEventSink()
    with Scheduler(max_workers=2, events=sink, name="ev3") as sched:
        ok = sched.submit(lambda s: s + "!", secret)
        bad = sched.submit(lambda s: (_ for _ in ()).throw(KeyError(s)), secret)
        resolve_all([ok, bad])
    dumped = json.dumps([event.to_dict() for event in sink.events])
    assert secret not in dumped


def test_raising_sink_is_counted_and_run_completes() -> None:
    sink = RaisingSink()
    with Scheduler(max_workers=2, events=sink, name="ev4") as sched:
        futures = [sched.submit(int, i) for i in range(20)]
        resolve_all(futures)
        assert [future.result() for future in futures] == list(range(20))
    snapshot = sched.snapshot()
    assert sink.calls > 0
    assert snapshot.counters["sink_errors"] == sink.calls
    assert snapshot.admission.active_lease_count == 0


# -- snapshot -------------------------------------------------------------------------------------


def test_snapshot_shape_and_counters_at_rest() -> None:
    with Scheduler(max_workers=2, name="snap1") as sched:
        snapshot = sched.snapshot()
        assert isinstance(snapshot, SchedulerSnapshot)
        assert snapshot.running == 0
        assert snapshot.overdue == ()
        assert snapshot.queue.queued_total == 0
        assert snapshot.admission.active_lease_count == 0
        for name in COUNTERS:
            assert snapshot.counters[name] == 0, name


def test_snapshot_while_running_and_queued() -> None:
    gate = threading.Event()
    started = threading.Event()
    sink = SignalingSink()

    blocker = blocking(started, gate, "done")

    with Scheduler(max_workers=1, events=sink, name="snap2") as sched, opened_on_exit(gate):
        running = sched.submit(blocker)
        assert started.wait(GENEROUS)
        queued = [sched.group("other").submit(int, i) for i in range(3)]
        assert sink.wait_for_count("ready_enqueued", 4)
        snapshot = sched.snapshot()
        assert snapshot.running == 1
        assert snapshot.admission.active_lease_count == 1
        assert snapshot.admission.running_counts_by_group == {"default": 1}
        assert snapshot.queue.queued_total == 3
        assert snapshot.queue.queued_by_group == {"other": 3}
        assert snapshot.counters["submitted"] == 4
        assert snapshot.overdue == ()
        gate.set()
        resolve_all([running, *queued])
    final = sched.snapshot()
    assert final.running == 0
    assert final.queue.queued_total == 0
    assert final.admission.active_lease_count == 0
    assert final.counters["completed"] == 4
    assert final.counters["submitted"] == 4


# -- leases are held inside the function (no hidden waiters) --------------------------------------


def test_lease_is_held_inside_the_function() -> None:
    observed: list[tuple[int, int]] = []
    holder: dict[str, Scheduler] = {}
    lock = threading.Lock()

    def work() -> None:
        snapshot = holder["sched"].snapshot()
        with lock:
            observed.append((snapshot.admission.active_lease_count, snapshot.running))

    with Scheduler(max_workers=3, name="hw1") as sched:
        holder["sched"] = sched
        resolve_all([sched.submit(work) for _ in range(20)])
    assert len(observed) == 20
    assert all(leases >= 1 and running >= 1 for leases, running in observed), observed
    assert sched.snapshot().counters["hidden_waiters"] == 0


def test_task_waiting_for_resource_stays_queued_not_in_a_worker() -> None:
    """With free worker slots, a task whose resource is held waits in the queue, not in a thread."""
    first_started = threading.Event()
    release_first = threading.Event()
    second_started = threading.Event()
    sink = SignalingSink()

    first = blocking(first_started, release_first, "first")

    def second() -> str:
        second_started.set()
        return "second"

    with (
        Scheduler(max_workers=4, resource_limits={"llm:x": 1}, events=sink, name="hw2") as sched,
        opened_on_exit(release_first),
    ):
        llm = sched.group("llm", resources={"llm:x": 1})
        f1 = llm.submit(first)
        assert first_started.wait(GENEROUS)
        f2 = llm.submit(second)
        # a plain task proves free worker slots exist and the dispatcher admitted work after f2 arrived
        assert sink.wait_for_count("ready_enqueued", 1, task_id=f2.task_id)
        assert sched.submit(lambda: "plain").result(timeout=GENEROUS) == "plain"
        assert not second_started.is_set()
        snapshot = sched.snapshot()
        assert snapshot.queue.queued_by_group == {"llm": 1}
        assert snapshot.running == 1
        assert snapshot.admission.leased_resources["llm:x"] == 1
        assert not any(event.kind == "worker_spawned" and event.task_id == f2.task_id for event in sink.events)
        release_first.set()
        assert f2.result(timeout=GENEROUS) == "second"
        assert f1.result(timeout=GENEROUS) == "first"
    assert sched.snapshot().counters["hidden_waiters"] == 0
    check_lease_evidence(sink.events)


def test_resource_limit_one_runs_one_holder_at_a_time() -> None:
    lock = threading.Lock()
    state = {"current": 0, "max": 0, "leased_ok": True}
    holder: dict[str, Scheduler] = {}

    def llm_call(i: int) -> int:
        with lock:
            state["current"] += 1
            state["max"] = max(state["max"], state["current"])
        leased = holder["sched"].snapshot().admission.leased_resources["llm:x"]
        with lock:
            state["leased_ok"] = state["leased_ok"] and leased == 1
            state["current"] -= 1
        return i

    with Scheduler(max_workers=4, resource_limits={"llm:x": 1}, name="hw3") as sched:
        holder["sched"] = sched
        llm = sched.group("llm", resources={"llm:x": 1})
        futures = [llm.submit(llm_call, i) for i in range(30)]
        others = [sched.submit(int, i) for i in range(30)]
        resolve_all(futures + others)
        assert [future.result() for future in futures] == list(range(30))
    assert state["max"] == 1
    assert state["leased_ok"]
    assert sched.snapshot().counters["hidden_waiters"] == 0


# -- counters -------------------------------------------------------------------------------------


def test_counters_consistent_when_shutdown_cancels_work_still_in_the_inbox() -> None:
    """Work cancelled by ``shutdown(cancel_futures=True)`` before the dispatcher moved it out of the
    inbox is still work that was submitted: ``submitted`` must equal the sum of terminal outcomes."""

    sink = ParkingSink()  # parks the dispatcher thread inside emit() so new submissions stay in the inbox
    dispatcher_parked, unpark = sink.parked, sink.unpark
    sched = Scheduler(max_workers=2, events=sink, name="cnt1")
    try:
        first = sched.submit(lambda: "first")
        assert dispatcher_parked.wait(GENEROUS)
        inbox = [sched.submit(int, i) for i in range(5)]
        report = sched.shutdown(wait=False, cancel_futures=True)
        assert report.cancelled == 5
        resolve_all(inbox)
        assert all(future.cancelled() for future in inbox)
    finally:
        unpark.set()
    final_report = sched.shutdown(wait=True)
    assert first.result(timeout=GENEROUS) == "first"
    assert final_report.clean
    counters = sched.snapshot().counters
    terminal = counters["completed"] + counters["failed"] + counters["cancelled"] + counters["timed_out"]
    assert counters["cancelled"] == 5
    assert counters["submitted"] == 6, counters
    assert terminal == counters["submitted"], counters


# -- fairness -------------------------------------------------------------------------------------


def _run_two_groups(weight_a: float, weight_b: float, name: str, per_group: int = 20) -> list[str]:
    order: list[str] = []
    gate = threading.Event()
    started = threading.Event()
    sink = SignalingSink()

    blocker = blocking(started, gate)

    def record(label: str) -> None:
        order.append(label)  # max_workers=1: functions run one at a time

    with Scheduler(max_workers=1, events=sink, name=name) as sched, opened_on_exit(gate):
        blocked = sched.submit(blocker)
        assert started.wait(GENEROUS)
        group_a = sched.group("A", weight=weight_a)
        group_b = sched.group("B", weight=weight_b)
        futures = [group_a.submit(record, "A") for _ in range(per_group)]
        futures += [group_b.submit(record, "B") for _ in range(per_group)]
        # everything is in the ready queue before the single slot frees up
        assert sink.wait_for_count("ready_enqueued", 2 * per_group + 1)
        assert sched.snapshot().queue.queued_total == 2 * per_group
        gate.set()
        resolve_all([blocked, *futures])
    assert sorted(order) == ["A"] * per_group + ["B"] * per_group
    return order


def _longest_run(labels: list[str]) -> int:
    longest = current = 0
    previous = None
    for label in labels:
        current = current + 1 if label == previous else 1
        previous = label
        longest = max(longest, current)
    return longest


def test_equal_weights_interleave() -> None:
    order = _run_two_groups(1.0, 1.0, "fair1")
    assert _longest_run(order[1:]) <= 2, "".join(order)
    # both groups progress together: in every prefix the counts differ by at most 2
    for end in range(1, len(order) + 1):
        prefix = order[:end]
        assert abs(prefix.count("A") - prefix.count("B")) <= 2, "".join(order)


def test_weight_three_to_one_gets_three_of_four_slots() -> None:
    order = _run_two_groups(3.0, 1.0, "fair2")
    prefix = order[:16]
    assert 11 <= prefix.count("A") <= 13, "".join(order)
    # B is never starved: it appears in every window of 5 consecutive slots of the prefix
    for start in range(0, 16 - 4):
        assert "B" in order[start : start + 5], "".join(order)


# -- run ids and correlation ----------------------------------------------------------------------


def test_run_id_is_on_every_scheduler_event() -> None:
    sink = MemoryEventSink()
    with Scheduler(max_workers=2, events=sink, name="runid", run_id="r1") as sched:
        group = sched.group("g", retry=RetryPolicy(max_attempts=2, retry_on=(ValueError,), backoff_initial=0))
        attempts: list[int] = []

        def fails_once() -> int:
            attempts.append(1)
            if len(attempts) == 1:
                raise ValueError("retry me")
            return 1

        resolve_all([group.submit(fails_once), sched.submit(int, 3), group.submit_correlated({"k": 1}, int, 4)])
    events = sink.events
    assert {"ready_enqueued", "task_completed", "task_lease_released"} <= {e.kind for e in events}
    assert len(attempts) == 2 and {e.run_id for e in events} == {"r1"}
    assert all(json.loads(json.dumps(e.to_dict()))["run_id"] == "r1" for e in events)
    plain = MemoryEventSink()
    with Scheduler(max_workers=1, events=plain, name="norunid") as sched:
        sched.submit(int, 1).result(timeout=GENEROUS)
    assert plain.events and {e.run_id for e in plain.events} == {None}


def test_submit_correlated_puts_its_correlation_on_that_tasks_events_only() -> None:
    sink = MemoryEventSink()
    with Scheduler(max_workers=2, events=sink, name="corr") as sched:
        group = sched.group("g", retry=RetryPolicy(max_attempts=2, retry_on=(ValueError,), backoff_initial=0))
        attempts: list[int] = []

        def fails_once() -> str:
            attempts.append(1)
            if len(attempts) == 1:
                raise ValueError("retry me")
            return "ok"

        first = group.submit_correlated({"k": 1}, fails_once)
        second = group.submit_correlated({"k": 2, "column": "c"}, int, 5)
        plain = group.submit(int, 6)
        default = sched.submit(int, 7)
        resolve_all([first, second, plain, default])
    assert (first.result(), second.result()) == ("ok", 5)
    expected = {first.task_id: {"k": 1}, second.task_id: {"k": 2, "column": "c"}}
    kinds = {"ready_enqueued", "selected", "task_lease_acquired", "worker_spawned", "task_completed", "task_lease_released"}
    for task_id, correlation in expected.items():
        mine = [e for e in sink.events if e.task_id == task_id]
        assert {e.kind for e in mine} >= kinds
        assert all(dict(e.correlation) == correlation for e in mine), mine
    retried = [e for e in sink.events if e.task_id == first.task_id and e.kind == "worker_spawned"]
    assert len(retried) == 2  # both attempts of the retried task carry it
    for event in sink.events:
        if event.task_id not in expected:
            assert dict(event.correlation) == {}, event


@pytest.mark.parametrize("correlation", [None, [("k", 1)], "k=1", 7])
def test_submit_correlated_rejects_a_non_mapping(correlation: Any) -> None:
    with Scheduler(max_workers=1, name="badcorr") as sched:
        with pytest.raises(TypeError, match="correlation must be a mapping"):
            sched.group("g").submit_correlated(correlation, int, 1)
        assert sched.statistics().counters["submitted"] == 0


@pytest.mark.parametrize("run_id", [7, b"r1", ("r", 1)])
def test_run_id_must_be_a_str(run_id: Any) -> None:
    with pytest.raises(TypeError, match="run_id must be a str or None"):
        Scheduler(max_workers=1, name="badrunid", run_id=run_id)


# -- statistics and repr ---------------------------------------------------------------------------


def test_statistics_are_frozen_values_of_the_scheduler_its_queue_and_its_admission() -> None:
    with Scheduler(2, resource_limits={"gpu": 1}, name="stats") as sched:
        sched.group("g", resources={"gpu": 1}).submit(pow, 2, 3).result(timeout=GENEROUS)
        stats = sched.statistics()
    assert (stats.name, stats.capacity, stats.queued, stats.running, stats.overdue) == ("stats", 2, 0, 0, 0)
    assert stats.counters["submitted"] == stats.counters["completed"] == 1
    assert stats.queue.peak_queued_by_group["g"] == 1  # every task passes through the queue once
    assert stats.admission.peak_leased_resources["gpu"] == 1
    assert stats.admission.resource_limits == {"gpu": 1, "submission": 2}
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.queued = 5  # type: ignore[misc]
    for mapping in (stats.counters, stats.admission.resources_available, stats.queue.peak_queued_by_group):
        with pytest.raises(TypeError):
            mapping["x"] = 1  # type: ignore[index]


def test_repr_takes_no_lock_so_it_can_be_logged_under_any_of_them() -> None:
    """A repr taken while one of the scheduler's locks is held (a log line in a callback, a debugger) must not
    wait for that lock: each lock below is held by this very thread, so a repr that took it would hang here."""
    gate = threading.Event()
    with Scheduler(2, name="logged") as sched:
        running = sched.submit(gate.wait)
        sched.submit(int)
        locks = (sched._lock, sched._queue._lock, sched._controller._lock, sched._core._lock, sched._emitter._lock)
        for lock in locks:
            lock.acquire()
        try:
            text = repr(sched)
        finally:
            for lock in reversed(locks):
                lock.release()
        gate.set()
        running.result(timeout=GENEROUS)
    assert text.startswith("<Scheduler 'logged' capacity=2 ") and "leases=" in text, text
    assert repr(sched._queue).startswith("<FairTaskQueue ")


def test_a_leased_executor_repr_takes_no_lock_either() -> None:
    with threadsched.LeasedExecutor(1) as executor:
        scheduler = executor.scheduler
        locks = (executor._shutdown_lock, scheduler._queue._lock, scheduler._controller._lock, scheduler._core._lock)
        for lock in locks:
            lock.acquire()
        try:
            text = repr(executor)
        finally:
            for lock in reversed(locks):
                lock.release()
    assert "max_workers=1" in text, text
