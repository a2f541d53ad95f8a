"""ProviderAwarePolicy: ``llm:`` scheduler limits follow request admission's pressure (read-only).

Driven through a real ``TaskAdmissionController`` (and, end to end, a real ``Scheduler``) with fake pressure
providers and an injected clock; ``RequestAdmissionPressure`` against a real request controller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable, Mapping
from concurrent.futures import wait
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import GENEROUS, FakeClock, empty_view, make_task

from threadsched import Scheduler, StrictFairPolicy
from threadsched.core.admission import TaskAdmissionController
from threadsched.core.contracts import SchedulableTask, TaskGroupSpec
from threadsched.core.policy import PolicyDecision, PolicyStateDelta
from threadsched.core.queue import FairTaskQueue
from threadsched.core.values import QueueView, TaskAdmissionConfig, TaskAdmissionDenied, TaskAdmissionLease, TaskAdmissionView
from threadsched.policies.provider_aware import (
    PressureSnapshotProvider,
    ProviderAwarePolicy,
    ProviderPressure,
    RequestAdmissionPressure,
    provider_aware_policy_for,
    request_key,
)
from threadsched.requests import (
    AdaptiveRequestAdmissionController,
    ProviderModelKey,
    RequestAdmissionConfig,
    RequestAdmissionItem,
    RequestAdmissionLease,
    RequestDomain,
    RequestOutcome,
    RequestResourceKey,
)

A, B = "llm:a/m", "llm:b/m"


class FakePressure:
    """A settable ``PressureSnapshotProvider`` that counts its reads."""

    def __init__(self, pressures: Mapping[str, ProviderPressure] | None = None) -> None:
        self.pressures: dict[str, ProviderPressure] = dict(pressures or {})
        self.reads: list[str] = []

    def pressure(self, resource: str) -> ProviderPressure | None:
        self.reads.append(resource)
        return self.pressures.get(resource)


class RecordingPolicy(StrictFairPolicy):
    """Strict, plus a record of every hook call and a debt delta per lease (to see it applied)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def evaluate(self, item: SchedulableTask, queue_view: QueueView, admission_view: TaskAdmissionView) -> PolicyDecision:
        self.calls.append(("evaluate", item.task_id))
        return PolicyDecision(True, diagnostics={"from": "inner"})

    def on_acquire(self, lease: TaskAdmissionLease, decision: PolicyDecision) -> PolicyStateDelta:
        self.calls.append(("on_acquire", decision.diagnostics.get("from")))
        return PolicyStateDelta(debt_changes={(lease.item.group.key, "x"): 1}, counters={"inner_acquires": 1})

    def on_release(self, lease: TaskAdmissionLease) -> PolicyStateDelta:
        self.calls.append(("on_release", lease.item.task_id))
        return PolicyStateDelta(debt_changes={(lease.item.group.key, "x"): -1})


def task(group: Hashable, amounts: Mapping[str, int] | None = None) -> SchedulableTask:
    return make_task(TaskGroupSpec(group), amounts)


def controller(policy: ProviderAwarePolicy, limits: Mapping[str, int] | None = None) -> TaskAdmissionController:
    return TaskAdmissionController(TaskAdmissionConfig(16, limits or {A: 4, B: 4}), policy)


def acquire(ctl: TaskAdmissionController, item: SchedulableTask) -> TaskAdmissionLease | TaskAdmissionDenied:
    view = empty_view()
    approval = ctl.approve(item, view)  # what the dispatcher does: the decision travels in the selection
    outcome = ctl.try_acquire(item, view, approval)
    assert (approval is not None) == isinstance(outcome, TaskAdmissionLease), (approval, outcome)
    return outcome


def snapshot(view: TaskAdmissionView) -> dict[str, Any]:
    """A deep, comparable copy of an admission view."""
    return {
        "limits": dict(view.resource_limits),
        "available": dict(view.resources_available),
        "leased": dict(view.leased_resources),
        "by_group": {key: dict(value) for key, value in view.leased_resources_by_group.items()},
        "running": dict(view.running_counts_by_group),
        "debt": dict(view.policy_debt_by_group_resource),
        "active": view.active_lease_count,
        "diagnostics": dict(view.release_diagnostics),
    }


# -- values -------------------------------------------------------------------------------------------------


def test_provider_pressure_validates_fields() -> None:
    assert ProviderPressure(2, 1, 5.0) == ProviderPressure(limit=2, in_flight=1, cooldown_until=5.0)
    with pytest.raises(ValueError, match=r"ProviderPressure.limit must be an int >= 0"):
        ProviderPressure(-1)
    with pytest.raises(ValueError, match=r"ProviderPressure.in_flight must be an int >= 0"):
        ProviderPressure(1, True)
    with pytest.raises(ValueError, match=r"ProviderPressure.cooldown_until must be a finite number or None"):
        ProviderPressure(1, 0, float("nan"))


def test_constructor_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="pressure must have pressure"):
        ProviderAwarePolicy(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="inner must be a TaskAdmissionPolicy"):
        ProviderAwarePolicy(FakePressure(), object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="clock must be callable"):
        ProviderAwarePolicy(FakePressure(), clock=1.0)  # type: ignore[arg-type]
    assert isinstance(FakePressure(), PressureSnapshotProvider)
    assert "StrictFairPolicy" in repr(ProviderAwarePolicy(FakePressure()))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("llm:openai/gpt", RequestResourceKey("openai", "gpt")),
        ("llm:hf/org/model", RequestResourceKey("hf", "org/model")),
        ("llm:noslash", None),
        ("llm:/m", None),
        ("gpu", None),
    ],
)
def test_request_key_parses_llm_resource_names(name: str, expected: RequestResourceKey | None) -> None:
    assert request_key(name) == expected


# -- the policy through a real TaskAdmissionController --------------------------------------------------------


def test_pressure_limit_below_hard_limit_caps_leases() -> None:
    fake = FakePressure({A: ProviderPressure(limit=2, in_flight=2)})
    ctl = controller(ProviderAwarePolicy(fake, clock=FakeClock()))
    held = [acquire(ctl, task("g", {A: 1})) for _ in range(2)]
    assert all(isinstance(lease, TaskAdmissionLease) for lease in held)
    denied = acquire(ctl, task("g", {A: 1}))
    assert isinstance(denied, TaskAdmissionDenied)
    assert denied.reason == "policy_denial" and denied.available_after is None
    assert denied.diagnostics["provider_pressure"] == "limit"
    assert denied.diagnostics["effective_limit"] == 2 and denied.diagnostics["hard_limit"] == 4
    # Another provider is unaffected, and a release makes room again.
    assert isinstance(acquire(ctl, task("h", {B: 1})), TaskAdmissionLease)
    assert isinstance(held[0], TaskAdmissionLease)
    assert ctl.release(held[0]).released
    assert isinstance(acquire(ctl, task("g", {A: 1})), TaskAdmissionLease)
    # The pressure limit growing above the hard limit never lifts the hard limit.
    fake.pressures[A] = ProviderPressure(limit=100, in_flight=0)
    leases = [acquire(ctl, task("g", {A: 1})) for _ in range(3)]
    assert [isinstance(lease, TaskAdmissionLease) for lease in leases] == [True, True, False]
    assert ctl.view().leased_resources[A] == 4
    denial = leases[2]
    assert isinstance(denial, TaskAdmissionDenied) and denial.reason == "no_capacity"


def test_zero_pressure_limit_still_admits_one_and_a_big_request_when_nothing_is_leased() -> None:
    fake = FakePressure({A: ProviderPressure(limit=0, in_flight=0)})
    ctl = controller(ProviderAwarePolicy(fake, clock=FakeClock()))
    big = acquire(ctl, task("g", {A: 3}))
    assert isinstance(big, TaskAdmissionLease), big  # liveness: nothing of A leased, so never denied
    assert isinstance(acquire(ctl, task("g", {A: 1})), TaskAdmissionDenied)
    assert ctl.release(big).released
    assert isinstance(acquire(ctl, task("g", {A: 1})), TaskAdmissionLease)
    assert isinstance(acquire(ctl, task("g", {A: 1})), TaskAdmissionDenied)  # effective limit max(1, 0) = 1


def test_cooldown_denies_with_available_after_until_the_clock_passes_it() -> None:
    clock = FakeClock(1000.0)
    fake = FakePressure({A: ProviderPressure(limit=4, in_flight=0, cooldown_until=1005.0)})
    ctl = controller(ProviderAwarePolicy(fake, clock=clock))
    denied = acquire(ctl, task("g", {A: 1}))
    assert isinstance(denied, TaskAdmissionDenied)
    assert denied.reason == "policy_denial" and denied.available_after == 1005.0
    assert denied.diagnostics["provider_pressure"] == "cooldown"
    assert denied.diagnostics["cooldown_remaining"] == pytest.approx(5.0)
    # The dispatcher's wake-up deadline: explain_blocked reports it.
    queue = FairTaskQueue()
    queue.enqueue([task("g", {A: 1})])
    assert ctl.explain_blocked(queue.view()).earliest_available_after == 1005.0
    assert isinstance(acquire(ctl, task("g", {B: 1})), TaskAdmissionLease)  # B is healthy
    clock.now = 1005.0
    assert isinstance(acquire(ctl, task("g", {A: 1})), TaskAdmissionLease)


def test_an_item_on_two_cooling_providers_waits_for_the_later_end() -> None:
    fake = FakePressure({A: ProviderPressure(4, 0, 1003.0), B: ProviderPressure(4, 0, 1009.0)})
    ctl = controller(ProviderAwarePolicy(fake, clock=FakeClock(1000.0)))
    denied = acquire(ctl, task("g", {A: 1, B: 1}))
    assert isinstance(denied, TaskAdmissionDenied)
    assert denied.available_after == 1009.0 and denied.diagnostics["resource"] == B


def test_unknown_and_non_llm_resources_fall_through_to_the_inner_policy() -> None:
    fake = FakePressure({})  # knows nothing
    inner = RecordingPolicy()
    ctl = TaskAdmissionController(TaskAdmissionConfig(8, {A: 1, "gpu": 1}), ProviderAwarePolicy(fake, inner))
    item = task("g", {A: 1, "gpu": 1})
    lease = acquire(ctl, item)
    assert isinstance(lease, TaskAdmissionLease)
    assert fake.reads == [A]  # one decision (try_acquire reuses the approval); "gpu" is never asked about
    assert ("evaluate", item.task_id) in inner.calls


def test_on_acquire_and_on_release_delegate_to_the_inner_policy() -> None:
    inner = RecordingPolicy()
    policy = ProviderAwarePolicy(FakePressure({A: ProviderPressure(4)}), inner, clock=FakeClock())
    assert policy.inner is inner
    ctl = controller(policy)
    lease = acquire(ctl, task("g", {A: 1}))
    assert isinstance(lease, TaskAdmissionLease)
    assert ("on_acquire", "inner") in inner.calls  # the inner policy got its own decision back
    assert ctl.view().policy_debt_by_group_resource == {("g", "x"): 1}
    assert ctl.statistics().policy_counters == {"inner_acquires": 1}
    assert ctl.release(lease).released
    assert inner.calls[-1] == ("on_release", lease.item.task_id)
    assert ctl.view().policy_debt_by_group_resource == {}


def test_a_pressure_denial_skips_the_inner_policy() -> None:
    inner = RecordingPolicy()
    fake = FakePressure({A: ProviderPressure(4, 0, 2000.0)})
    ctl = controller(ProviderAwarePolicy(fake, inner, clock=FakeClock(1000.0)))
    assert isinstance(acquire(ctl, task("g", {A: 1})), TaskAdmissionDenied)
    assert inner.calls == []


def test_a_pressure_source_that_raises_fails_open_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def pressure(self, resource: str) -> ProviderPressure | None:
            raise RuntimeError("boom")

    ctl = controller(ProviderAwarePolicy(Broken(), clock=FakeClock()))
    with caplog.at_level(logging.WARNING, logger="threadsched"):
        assert isinstance(acquire(ctl, task("g", {A: 1})), TaskAdmissionLease)
        assert isinstance(acquire(ctl, task("g", {A: 1})), TaskAdmissionLease)
    assert sum("ignoring pressure" in record.getMessage() for record in caplog.records) == 1


# -- RequestAdmissionPressure over a real request controller ------------------------------------------------


def request_controller(clock: Any = time.monotonic) -> AdaptiveRequestAdmissionController:
    caps = {ProviderModelKey("a", "m"): 8, ProviderModelKey("b", "m"): 4}
    config = RequestAdmissionConfig(caps=caps, initial_limit=6, default_cooldown_s=2.0)
    return AdaptiveRequestAdmissionController(config, clock=clock)


def test_request_admission_pressure_reads_limit_in_flight_and_cooldown_without_changing_anything() -> None:
    clock = FakeClock(50.0)
    requests = request_controller(clock)
    source = RequestAdmissionPressure(requests)
    assert source.pressure(A) == ProviderPressure(limit=6, in_flight=0, cooldown_until=None)
    assert source.pressure(B) == ProviderPressure(limit=4, in_flight=0, cooldown_until=None)
    assert source.pressure("llm:unknown/m") is None
    assert source.pressure("llm:a/other") is None
    assert source.pressure("llm:bad") is None
    assert source.pressure("gpu") is None
    assert requests.snapshots() == {}  # reading registered no resource
    assert requests.statistics()["acquired"] == 0
    lease = requests.try_acquire(RequestAdmissionItem(RequestResourceKey("a", "m")))
    assert isinstance(lease, RequestAdmissionLease)
    assert source.pressure(A) == ProviderPressure(limit=6, in_flight=1, cooldown_until=None)
    requests.release(lease, RequestOutcome.RATE_LIMITED)
    snap = requests.snapshot(RequestResourceKey("a", "m"))
    assert source.pressure(A) == ProviderPressure(limit=3, in_flight=0, cooldown_until=52.0)
    assert snap.blocked_until == 52.0
    assert requests.snapshot(RequestResourceKey("a", "m")) == snap  # reads changed nothing
    clock.now = 52.0
    assert source.pressure(A) == ProviderPressure(limit=3, in_flight=0, cooldown_until=None)


def test_request_admission_pressure_reads_the_given_domain() -> None:
    requests = request_controller()
    lease = requests.try_acquire(RequestAdmissionItem(RequestResourceKey("a", "m", RequestDomain.EMBEDDING)))
    assert isinstance(lease, RequestAdmissionLease)
    assert RequestAdmissionPressure(requests).pressure(A) == ProviderPressure(6, 0, None)
    assert RequestAdmissionPressure(requests, RequestDomain.EMBEDDING).pressure(A) == ProviderPressure(6, 1, None)
    with pytest.raises(ValueError, match="domain must be a RequestDomain"):
        RequestAdmissionPressure(requests, "chat")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="controller must have snapshot"):
        RequestAdmissionPressure(object())  # type: ignore[arg-type]


def test_provider_aware_policy_for_reads_the_request_controller() -> None:
    requests = request_controller()
    policy = provider_aware_policy_for(requests)
    assert isinstance(policy.inner, StrictFairPolicy)
    assert isinstance(policy.pressure_provider, RequestAdmissionPressure)
    ctl = controller(policy, {A: 8})  # hard limit 8, request limit 6
    leases = [acquire(ctl, task("g", {A: 1})) for _ in range(7)]
    assert sum(isinstance(lease, TaskAdmissionLease) for lease in leases) == 6
    # A 429 halves the request limit and starts a cooldown: no new A lease until it ends.
    rl = requests.try_acquire(RequestAdmissionItem(RequestResourceKey("a", "m")))
    assert isinstance(rl, RequestAdmissionLease)
    requests.release(rl, RequestOutcome.RATE_LIMITED)
    for lease in leases:
        if isinstance(lease, TaskAdmissionLease):
            ctl.release(lease)
    denied = acquire(ctl, task("g", {A: 1}))
    assert isinstance(denied, TaskAdmissionDenied)
    assert denied.available_after == requests.snapshot(RequestResourceKey("a", "m")).blocked_until


# -- end to end through a real Scheduler ---------------------------------------------------------------------


def test_healthy_provider_runs_while_the_other_cools_down_then_the_cooled_one_completes() -> None:
    end = time.monotonic() + 3600.0  # a real-time deadline far away: the dispatcher never wakes for it
    cooldown_over = threading.Event()
    fake = FakePressure({A: ProviderPressure(4, 0, end), B: ProviderPressure(4, 0)})
    # The clock jumps to the end of the cooldown when the event is set.
    policy = ProviderAwarePolicy(fake, clock=lambda: end if cooldown_over.is_set() else time.monotonic())
    started: list[str] = []
    lock = threading.Lock()

    def work(name: str) -> str:
        with lock:
            started.append(name)
        return name

    with Scheduler(4, resource_limits={A: 4, B: 4}, policy=policy, name="pa-e2e") as scheduler:
        group_a = scheduler.group("a", resources={A: 1})
        group_b = scheduler.group("b", resources={B: 1})
        futures_a = [group_a.submit(work, f"a{i}") for i in range(8)]
        futures_b = [group_b.submit(work, f"b{i}") for i in range(12)]
        done, _ = wait(futures_b, timeout=GENEROUS)
        assert len(done) == 12 and all(f.result() == f"b{i}" for i, f in enumerate(futures_b))
        assert not any(name.startswith("a") for name in started)
        assert scheduler.snapshot().admission.leased_resources[A] == 0
        assert not any(f.done() for f in futures_a)
        cooldown_over.set()
        # The real cooldown end would be the dispatcher's deadline; here the clock jumped, so wake it
        # the ordinary way: an enqueue.
        scheduler.submit(lambda: None).result(timeout=GENEROUS)
        done, _ = wait(futures_a, timeout=GENEROUS)
        assert len(done) == 8 and [f.result() for f in futures_a] == [f"a{i}" for i in range(8)]


def test_a_lone_group_in_cooldown_completes_when_the_deadline_passes() -> None:
    """No other wake-up: the dispatcher sleeps until available_after, then admits."""
    end = time.monotonic() + 0.05
    fake = FakePressure({A: ProviderPressure(2, 0, end)})
    with Scheduler(2, resource_limits={A: 4}, policy=ProviderAwarePolicy(fake), name="pa-lone") as scheduler:
        futures = [scheduler.group("a", resources={A: 1}).submit(time.monotonic) for _ in range(5)]
        done, _ = wait(futures, timeout=GENEROUS)
        assert len(done) == 5 and all(f.result() >= end for f in futures)


def test_tasks_calling_request_admission_under_the_policy_do_not_deadlock() -> None:
    """The lock order in practice: workers take request leases while the dispatcher reads pressure."""
    requests = request_controller()
    with Scheduler(6, resource_limits={A: 4, B: 4}, policy=provider_aware_policy_for(requests), name="pa-locks") as sched:

        def call(provider: str) -> None:
            lease = requests.acquire(RequestAdmissionItem(RequestResourceKey(provider, "m")), timeout=GENEROUS)
            requests.release(lease, RequestOutcome.SUCCESS)

        futures = [sched.group(p, resources={f"llm:{p}/m": 1}).submit(call, p) for p in ("a", "b") * 100]
        done, _ = wait(futures, timeout=GENEROUS)
        assert len(done) == 200 and all(f.exception() is None for f in futures)
    assert requests.statistics()["released"] == 200


# -- properties ----------------------------------------------------------------------------------------------

pressures = st.builds(
    ProviderPressure,
    limit=st.integers(0, 5),
    in_flight=st.integers(0, 5),
    cooldown_until=st.none() | st.sampled_from([1000.5, 1002.0, 1010.0]),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), st.sampled_from(["g", "h"]), st.sampled_from([{A: 1}, {A: 2}, {B: 1}, {A: 1, B: 1}, None])),
        st.tuples(st.just("release"), st.integers(0, 10), st.none()),
        st.tuples(st.just("pressure"), st.sampled_from([A, B]), pressures | st.none()),
        st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 5.0]), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hard_a=st.integers(1, 4),
    hard_b=st.integers(1, 4),
    initial=st.fixed_dictionaries({A: pressures, B: pressures | st.none()}),
    ops=operations,
)
def test_property_limits_hold_and_evaluate_never_mutates(
    hard_a: int, hard_b: int, initial: dict[str, ProviderPressure | None], ops: list[tuple[str, Any, Any]]
) -> None:
    clock = FakeClock(1000.0)
    fake = FakePressure({k: v for k, v in initial.items() if v is not None})
    policy = ProviderAwarePolicy(fake, clock=clock)
    hard = {A: hard_a, B: hard_b}
    ctl = TaskAdmissionController(TaskAdmissionConfig(6, hard), policy)
    queue = FairTaskQueue()
    held: list[TaskAdmissionLease] = []
    for op, arg, extra in ops:
        if op == "pressure":
            if extra is None:
                fake.pressures.pop(arg, None)
            else:
                fake.pressures[arg] = extra
        elif op == "advance":
            clock.now += arg
        elif op == "release" and held:
            assert ctl.release(held.pop(arg % len(held))).released
        elif op == "acquire":
            amounts: Mapping[str, int] | None = extra
            if amounts and any(amount > hard[r] for r, amount in amounts.items()):
                continue  # never admissible: the scheduler rejects such a group at creation
            item = task(arg, amounts)
            queue.enqueue([task("peer", {B: 1})])  # a peer in view, so the inner policy has work to do
            view = queue.view()
            before = snapshot(ctl.view())
            before_pressure = dict(fake.pressures)
            decision = policy.evaluate(item, view, ctl.view())
            assert snapshot(ctl.view()) == before and fake.pressures == before_pressure
            leased_before = dict(ctl.view().leased_resources)
            outcome = ctl.try_acquire(item, view)
            if not isinstance(outcome, TaskAdmissionLease):
                continue
            assert decision.allowed
            held.append(outcome)
            leased = ctl.view().leased_resources
            for resource, amount in item.resource_request.amounts.items():
                assert leased[resource] <= ctl.resource_limits[resource]
                pressure = fake.pressures.get(resource)
                if pressure is None or resource not in hard:
                    continue
                assert pressure.cooldown_until is None or pressure.cooldown_until <= clock.now, "leased in a cooldown"
                if leased_before[resource]:
                    assert leased[resource] <= max(1, pressure.limit), "pressure limit exceeded"
                else:
                    assert leased[resource] == amount
    for lease in held:
        assert ctl.release(lease).released
    assert ctl.view().active_lease_count == 0


@settings(max_examples=100, deadline=None)
@given(
    pressure=pressures,
    amounts=st.lists(st.sampled_from([{A: 1}, {A: 2}, {A: 3}, {A: 1, B: 1}, None]), min_size=1, max_size=12),
    running=st.integers(1, 3),
)
def test_property_a_lone_group_completes_once_cooldowns_end(
    pressure: ProviderPressure, amounts: list[Mapping[str, int] | None], running: int
) -> None:
    """Simulated dispatcher: admit the head; when denied with available_after jump the clock there, when
    denied without it finish the oldest lease (a release is what wakes the real dispatcher)."""
    clock = FakeClock(1000.0)
    fake = FakePressure({A: pressure, B: ProviderPressure(1, 0, 1001.0)})
    ctl = TaskAdmissionController(TaskAdmissionConfig(running, {A: 3, B: 1}), ProviderAwarePolicy(fake, clock=clock))
    queue = FairTaskQueue()
    queue.enqueue([task("lone", a) for a in amounts])
    held: list[TaskAdmissionLease] = []
    for _ in range(10 * len(amounts) + 10):
        if not len(queue) and not held:
            break
        selection = queue.select_next(ctl.is_eligible) if len(queue) else None
        if selection is not None:
            outcome = ctl.try_acquire(selection.item, selection.view)
            assert isinstance(outcome, TaskAdmissionLease)
            assert queue.commit(selection) is selection.item
            held.append(outcome)
            continue
        blocked = ctl.explain_blocked(queue.view()) if len(queue) else None
        if held:
            assert ctl.release(held.pop(0)).released
        else:
            assert blocked is not None and blocked.earliest_available_after is not None, "stalled with nothing held"
            assert blocked.earliest_available_after > clock.now
            clock.now = blocked.earliest_available_after
    assert not len(queue) and not held, "the lone group did not complete"
