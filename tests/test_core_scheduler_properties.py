"""Property test: random groups, weights, limits, resources, failures, retries, cancels, timeouts and
concurrent submitters. Every future resolves, no worker runs without its lease, capacity is never
exceeded, counters add up, and the scheduler ends with zero leases and zero queued tasks."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import GENEROUS, check_lease_evidence, join_scheduler_threads, resolve_all

from threadsched import MemoryEventSink, RetryPolicy, Scheduler, TaskTimeoutError

RESOURCE_LIMITS = {"r1": 2, "r2": 1}
BEHAVIOURS = ("ok", "fail_once", "fail_always", "fatal")
CANCELS = ("none", "none", "immediate", "later")
_names = itertools.count()


@dataclass(frozen=True)
class GroupPlan:
    weight: float
    admitted_limit: int | None
    resources: dict[str, int] | None
    max_attempts: int
    backoff: float


@dataclass(frozen=True)
class TaskPlan:
    group: int  # index into the groups; -1 = the timeout group (the function blocks past its deadline)
    behaviour: str
    cancel: str
    submitter: int


groups_strategy = st.lists(
    st.builds(
        GroupPlan,
        weight=st.sampled_from([1.0, 1.5, 2.0, 3.0, 5.0]),
        admitted_limit=st.none() | st.integers(1, 3),
        resources=st.sampled_from([None, {"r1": 1}, {"r1": 2}, {"r2": 1}, {"r1": 1, "r2": 1}]),
        max_attempts=st.integers(1, 3),
        backoff=st.sampled_from([0.0, 0.001]),
    ),
    min_size=1,
    max_size=4,
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, list[GroupPlan], list[TaskPlan], int]:
    groups = draw(groups_strategy)
    submitters = draw(st.integers(2, 4))
    tasks = draw(
        st.lists(
            st.builds(
                TaskPlan,
                group=st.integers(0, len(groups) - 1),
                behaviour=st.sampled_from(BEHAVIOURS),
                cancel=st.sampled_from(CANCELS),
                submitter=st.integers(0, submitters - 1),
            ),
            max_size=40,
        )
    )
    hangs = draw(
        st.lists(
            st.builds(
                TaskPlan,
                group=st.just(-1),
                behaviour=st.just("hang"),
                cancel=st.sampled_from(CANCELS),
                submitter=st.integers(0, submitters - 1),
            ),
            max_size=3,
        )
    )
    ordered = draw(st.permutations(tasks + hangs))
    return draw(st.integers(1, 4)), groups, ordered, submitters


def expected_outcome(plan: TaskPlan, group: GroupPlan | None) -> tuple[str, Any]:
    if plan.behaviour == "hang":
        return "timeout", TaskTimeoutError
    assert group is not None
    if plan.behaviour == "ok":
        return "result", "ok"
    if plan.behaviour == "fail_once":
        return ("result", "ok") if group.max_attempts >= 2 else ("error", ValueError)
    if plan.behaviour == "fail_always":
        return "error", ValueError
    return "error", KeyError


def classify(future: Future[Any]) -> tuple[str, Any]:
    if future.cancelled():
        return "cancelled", None
    error = future.exception(timeout=0)
    if error is None:
        return "result", future.result(timeout=0)
    if isinstance(error, CancelledError):
        return "cancelled", None
    if isinstance(error, TaskTimeoutError):
        return "timeout", TaskTimeoutError
    return "error", type(error)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=scenarios())
def test_scheduler_properties(scenario: tuple[int, list[GroupPlan], list[TaskPlan], int]) -> None:
    max_workers, group_plans, task_plans, submitters = scenario
    name = f"prop{next(_names)}"
    sink = MemoryEventSink()
    sched = Scheduler(max_workers=max_workers, resource_limits=RESOURCE_LIMITS, events=sink, name=name)

    groups = [
        sched.group(
            f"g{index}",
            weight=plan.weight,
            admitted_limit=plan.admitted_limit,
            resources=plan.resources,
            retry=RetryPolicy(max_attempts=plan.max_attempts, retry_on=(ValueError,), backoff_initial=plan.backoff),
        )
        for index, plan in enumerate(group_plans)
    ]
    timeout_group = sched.group("hang", timeout=0.05, resources={"r2": 1})

    # Evidence gathered inside the functions, without asking the scheduler.
    lock = threading.Lock()
    in_use = Counter[str]()
    peak = Counter[str]()
    attempts = Counter[int]()
    wrong_threads: list[str] = []

    def enter(resources: dict[str, int]) -> None:
        thread_name = threading.current_thread().name
        with lock:
            if not thread_name.startswith(f"{name}-worker_"):
                wrong_threads.append(thread_name)
            for resource, amount in {"submission": 1, **resources}.items():
                in_use[resource] += amount
                peak[resource] = max(peak[resource], in_use[resource])

    def leave(resources: dict[str, int]) -> None:
        with lock:
            for resource, amount in {"submission": 1, **resources}.items():
                in_use[resource] -= amount

    def body(index: int, behaviour: str, resources: dict[str, int], gate: threading.Event | None) -> str:
        enter(resources)
        try:
            with lock:
                attempts[index] += 1
                attempt = attempts[index]
            if behaviour == "hang":
                assert gate is not None
                # set by a done-callback once this task's own future has failed with its timeout
                gate.wait(GENEROUS)
                return "late"
            if behaviour == "fail_once" and attempt == 1:
                raise ValueError(f"task {index} attempt 1")
            if behaviour == "fail_always":
                raise ValueError(f"task {index} attempt {attempt}")
            if behaviour == "fatal":
                raise KeyError(index)
            return "ok"
        finally:
            leave(resources)

    futures: dict[int, Future[Any]] = {}
    submit_errors: list[BaseException] = []
    barrier = threading.Barrier(submitters)

    def submitter(which: int) -> None:
        try:
            barrier.wait(GENEROUS)
            for index, plan in enumerate(task_plans):
                if plan.submitter != which:
                    continue
                if plan.group == -1:
                    gate = threading.Event()
                    future = timeout_group.submit(body, index, plan.behaviour, {"r2": 1}, gate)
                    future.add_done_callback(lambda _f, gate=gate: gate.set())
                else:
                    resources = dict(group_plans[plan.group].resources or {})
                    future = groups[plan.group].submit(body, index, plan.behaviour, resources, None)
                futures[index] = future
                if plan.cancel == "immediate":
                    future.cancel()
        except BaseException as error:  # pragma: no cover - reported below
            submit_errors.append(error)

    threads = [threading.Thread(target=submitter, args=(i,), name=f"test-submitter-{i}") for i in range(submitters)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(GENEROUS)
        assert not any(thread.is_alive() for thread in threads)
        assert not submit_errors, submit_errors
        assert len(futures) == len(task_plans)
        for index, plan in enumerate(task_plans):
            if plan.cancel == "later":
                futures[index].cancel()

        # 1. every future resolves
        resolve_all(futures.values(), timeout=GENEROUS)
    finally:
        report = sched.shutdown(wait=True, cancel_futures=True)
    join_scheduler_threads(name)

    # 2. each outcome is the planned one, or a cancellation of a task that was asked to cancel
    outcomes = Counter[str]()
    for index, plan in enumerate(task_plans):
        future = futures[index]
        kind, value = classify(future)
        outcomes[kind] += 1
        group = group_plans[plan.group] if plan.group >= 0 else None
        expected = expected_outcome(plan, group)
        if plan.cancel == "none":
            assert (kind, value) == expected, (index, plan, (kind, value), future)
        else:
            allowed = {expected, ("cancelled", None)}
            if plan.behaviour in ("fail_once", "fail_always"):
                allowed.add(("error", ValueError))  # a cancelled task is not retried
            assert (kind, value) in allowed, (index, plan, (kind, value), future)
        # a task never runs more attempts than its retry policy allows (a cancel may stop it earlier)
        if plan.behaviour in ("fail_once", "fail_always"):
            limit = group_plans[plan.group].max_attempts
            if plan.behaviour == "fail_once":
                limit = min(limit, 2)
        else:
            limit = 1
        assert attempts[index] <= limit, (index, plan, attempts[index])
        if plan.cancel == "none" and plan.behaviour != "hang":
            assert attempts[index] == limit, (index, plan, attempts[index])
        # (a hang task's deadline counts from spawn: under load it may expire before the function starts)

    # 3. capacity was never exceeded and every function ran on a scheduler worker
    assert not wrong_threads, wrong_threads
    assert peak["submission"] <= max_workers, peak
    for resource, limit in RESOURCE_LIMITS.items():
        assert peak[resource] <= limit, (resource, peak)

    # 4. no worker ever ran without its lease; each lease released exactly once
    events = sink.events
    check_lease_evidence(events)
    spawned = sum(1 for event in events if event.kind == "worker_spawned")
    # every attempt that ran was spawned; a spawned worker may find its future cancelled and not run
    assert spawned >= sum(attempts.values()), (spawned, attempts)

    # 5. the scheduler ends empty, and its counters add up
    assert report.clean, report
    assert report.cancelled == 0, report  # everything had resolved before shutdown
    final = sched.snapshot()
    assert final.admission.active_lease_count == 0
    assert final.queue.queued_total == 0
    assert final.running == 0
    assert final.overdue == ()
    counters = final.counters
    assert counters["hidden_waiters"] == 0
    assert counters["spawn_failures"] == 0
    assert counters["sink_errors"] == 0
    assert counters["submitted"] == len(task_plans)
    assert counters["completed"] == outcomes["result"], (counters, outcomes)
    assert counters["cancelled"] == outcomes["cancelled"], (counters, outcomes)
    assert counters["timed_out"] == outcomes["timeout"], (counters, outcomes)
    assert counters["failed"] == outcomes["error"], (counters, outcomes)
    assert counters["completed"] + counters["failed"] + counters["cancelled"] + counters["timed_out"] == counters["submitted"], (
        counters
    )
    # retries: one per extra attempt that ran, plus retries that were cancelled before they ran
    extra_attempts = sum(n - 1 for n in attempts.values() if n > 1)
    assert extra_attempts <= counters["retried"] <= extra_attempts + outcomes["cancelled"], (counters, attempts)
