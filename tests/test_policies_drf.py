"""DominantResourceFairPolicy: DRF over scheduler resources, driven through the real
FairTaskQueue / TaskAdmissionController and through a real Scheduler.

Rule under test: a task may run unless another group's head fits now, is not held at its own
``admitted_limit``, and has a strictly smaller weighted dominant share (ties: queue order).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import (
    GENEROUS,
    PolicyHarness,
    SignalingSink,
    clamp,
    empty_view,
    group_draws,
    make_task,
    per_group,
    reason,
    resolve_all,
    resource_amounts,
)

from threadsched import Scheduler, SchedulerEvent
from threadsched.core.contracts import SUBMISSION, TaskGroupSpec
from threadsched.core.policy import PolicyStateDelta, TaskAdmissionPolicy
from threadsched.core.values import TaskAdmissionDenied, TaskAdmissionLease, TaskAdmissionView
from threadsched.policies import make_policy
from threadsched.policies.drf import DominantResourceFairPolicy, dominant_share


class Harness(PolicyHarness):
    def __init__(self, submission: int = 32, *, policy: DominantResourceFairPolicy | None = None, **limits: int) -> None:
        super().__init__(policy if policy is not None else DominantResourceFairPolicy(), submission, limits)

    def queue_tasks(self, group: TaskGroupSpec, amounts: Mapping[str, int] | None = None, count: int = 1) -> None:
        items = [make_task(group, amounts) for _ in range(count)]
        assert len(self.queue.enqueue(items)) == count

    def attempt(self, group: TaskGroupSpec, amounts: Mapping[str, int] | None = None) -> TaskAdmissionLease | TaskAdmissionDenied:
        """try_acquire against the current queue view; a direct evaluate and is_eligible must agree."""
        outcome, decision = self.decide(group, amounts)
        if isinstance(outcome, TaskAdmissionDenied) and outcome.reason in {"policy_denial", "group_cap"}:
            assert not decision.allowed and decision.reason == outcome.reason
        return outcome

    def fill(self) -> Counter[Hashable]:
        """The dispatcher's admission loop with nothing released: leases per group until none is eligible."""
        admitted: Counter[Hashable] = Counter()
        while (selection := self.queue.select_next(self.controller.is_eligible)) is not None:
            lease = self.controller.try_acquire(selection.item, selection.view)
            assert isinstance(lease, TaskAdmissionLease), lease
            assert self.queue.commit(selection) is selection.item
            admitted[selection.item.group.key] += 1
        return admitted


A, B = TaskGroupSpec("A"), TaskGroupSpec("B")
A_NEEDS, B_NEEDS = {"cpu": 1, "mem": 4}, {"cpu": 3, "mem": 1}  # the paper's example on <9 CPU, 18 GB>


# -- construction ---------------------------------------------------------------------------------


def test_make_policy_drf_builds_it_with_defaults() -> None:
    policy = make_policy("drf")
    assert isinstance(policy, DominantResourceFairPolicy)
    assert isinstance(policy, TaskAdmissionPolicy)
    assert repr(policy) == "DominantResourceFairPolicy()"
    assert policy.include_submission is True
    assert repr(DominantResourceFairPolicy(include_submission=False)) == "DominantResourceFairPolicy(include_submission=False)"


def test_include_submission_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="include_submission must be a bool"):
        DominantResourceFairPolicy(include_submission=1)  # type: ignore[arg-type]


def test_dominant_share_is_the_largest_fraction_held() -> None:
    limits = {"cpu": 9, "mem": 18, SUBMISSION: 10}
    assert dominant_share({}, limits) == 0.0
    assert dominant_share({"cpu": 3, "mem": 12, SUBMISSION: 3}, limits) == pytest.approx(12 / 18)
    assert dominant_share({"cpu": 6, "mem": 2, SUBMISSION: 2}, limits) == pytest.approx(6 / 9)
    assert dominant_share({"cpu": 1, SUBMISSION: 5}, limits) == pytest.approx(0.5)
    assert dominant_share({"cpu": 1, SUBMISSION: 5}, limits, include_submission=False) == pytest.approx(1 / 9)


# -- single decisions -------------------------------------------------------------------------------


def test_denied_while_a_fitting_peer_has_a_smaller_dominant_share() -> None:
    h = Harness(cpu=9, mem=18)
    h.hold(A, A_NEEDS)  # A: 4/18
    h.queue_tasks(B, B_NEEDS)  # B: 0, fits
    denied = h.attempt(A, A_NEEDS)
    assert isinstance(denied, TaskAdmissionDenied)
    assert denied.reason == "policy_denial"
    assert denied.available_after is None  # the peer fits now: no wake-up deadline needed
    assert denied.diagnostics["rule"] == "dominant_resource_fair"
    assert denied.diagnostics["dominant_share"] == pytest.approx(4 / 18)
    assert denied.diagnostics["peer_dominant_share"] == 0.0
    assert denied.diagnostics["waiting_peer"] == repr("B")
    assert reason(h.attempt(B, B_NEEDS)) == "lease"  # the peer itself is allowed


def test_equal_shares_are_a_tie_and_allowed() -> None:
    h = Harness(cpu=9, mem=18)
    h.hold(A, {"cpu": 2})  # 2/9
    h.hold(B, {"mem": 4})  # 4/18: the same share, computed differently
    h.queue_tasks(B, {"mem": 4})
    assert reason(h.attempt(A, {"cpu": 2})) == "lease"


def test_a_peer_whose_head_does_not_fit_holds_nobody_back() -> None:
    h = Harness(cpu=9, mem=18)
    h.hold(A, {"cpu": 7})
    h.queue_tasks(B, {"cpu": 3})  # B has share 0 but needs 3 cpu; 2 are free
    assert reason(h.attempt(A, {"cpu": 1})) == "lease"  # work-conserving: A uses what B cannot
    assert reason(h.attempt(A, {"cpu": 1})) == "lease"
    assert reason(h.attempt(A, {"cpu": 1})) == "no_capacity"


def test_lone_group_is_never_denied_by_share() -> None:
    h = Harness(submission=6, cpu=9)
    h.queue_tasks(A, {"cpu": 1}, count=3)  # its own queued tasks are not peers
    outcomes = [reason(h.attempt(A, {"cpu": 1})) for _ in range(7)]
    assert outcomes == ["lease"] * 6 + ["no_capacity"]


def test_weight_scales_the_share() -> None:
    heavy = TaskGroupSpec("heavy", weight=2.0)
    h = Harness(cpu=10)
    h.hold(heavy, {"cpu": 3})  # 0.3 / 2 = 0.15
    h.hold(B, {"cpu": 2})  # 0.2
    h.queue_tasks(B, {"cpu": 1})
    assert reason(h.attempt(heavy, {"cpu": 1})) == "lease"  # holds more cpu than B, yet its weighted share is smaller
    h.queue_tasks(heavy, {"cpu": 1})
    assert reason(h.attempt(B, {"cpu": 1})) == "lease"  # B 0.2 and heavy 0.4 / 2: a tie
    assert reason(h.attempt(B, {"cpu": 1})) == "policy_denial"  # B 0.3 > heavy 0.2


def test_admitted_limit_keeps_its_strict_meaning_and_capped_peers_never_block() -> None:
    capped = TaskGroupSpec("capped", admitted_limit=1)
    h = Harness(cpu=10)
    h.hold(capped, {"cpu": 1})
    h.queue_tasks(B, {"cpu": 1})
    assert reason(h.attempt(capped, {"cpu": 1})) == "group_cap"  # strict: a ready uncapped peer contends
    for _ in range(3):
        assert reason(h.attempt(B, {"cpu": 1})) == "lease"
    h.queue_tasks(capped, {"cpu": 1})
    assert reason(h.attempt(B, {"cpu": 1})) == "lease"  # capped (0.1) < B (0.3) but capped is at its limit


def test_submission_counts_as_a_resource_by_default() -> None:
    """Tasks requesting only worker slots: DRF is then weighted fairness of running counts."""
    h = Harness(submission=10)
    h.hold(A)
    h.hold(A)
    h.queue_tasks(B)
    assert reason(h.attempt(A)) == "policy_denial"  # A holds 2/10 slots, B 0
    assert reason(h.attempt(B)) == "lease"
    # Without submission both shares are 0: a tie, so queue order alone decides.
    h = Harness(submission=10, policy=DominantResourceFairPolicy(include_submission=False))
    h.hold(A)
    h.hold(A)
    h.queue_tasks(B)
    assert reason(h.attempt(A)) == "lease"


def test_evaluate_is_pure_and_the_policy_keeps_no_state() -> None:
    h = Harness(cpu=9, mem=18)
    lease = h.hold(A, A_NEEDS)
    h.queue_tasks(B, B_NEEDS)
    item = make_task(A, A_NEEDS)
    queue_before, admission_before = h.queue.view(), h.controller.view()
    decisions = [h.policy.evaluate(item, h.queue.view(), h.controller.view()) for _ in range(3)]
    assert decisions[0] == decisions[1] == decisions[2]
    assert not decisions[0].allowed
    assert h.controller.view() == admission_before
    assert dict(h.queue.view().first_candidate_tasks_by_group) == dict(queue_before.first_candidate_tasks_by_group)
    assert h.policy.on_acquire(lease, decisions[0]) == PolicyStateDelta()
    assert h.policy.on_release(lease) == PolicyStateDelta()
    assert not hasattr(h.policy, "__dict__")  # only its configuration, in a slot


# -- the allocation a fill reaches ---------------------------------------------------------------


@pytest.mark.parametrize("first", ["A", "B"])
def test_classic_drf_example(first: str) -> None:
    """The DRF paper's example (Ghodsi et al., NSDI 2011): <9 CPU, 18 GB>, A <1 CPU, 4 GB>, B <3 CPU, 1 GB>.

    A runs 3 tasks, B 2 (both at a dominant share of 2/3).
    """
    h = Harness(cpu=9, mem=18)
    for group in (A, B) if first == "A" else (B, A):
        h.queue_tasks(group, A_NEEDS if group is A else B_NEEDS, count=10)
    assert h.fill() == {"A": 3, "B": 2}
    leased = h.controller.view().leased_resources_by_group
    assert dict(leased["A"]) == {"cpu": 3, "mem": 12, SUBMISSION: 3}
    assert dict(leased["B"]) == {"cpu": 6, "mem": 2, SUBMISSION: 2}


def test_weight_two_gets_twice_the_dominant_share() -> None:
    heavy, light = TaskGroupSpec("heavy", weight=2.0), TaskGroupSpec("light")
    h = Harness(cpu=15, mem=15)
    h.queue_tasks(light, {"cpu": 2, "mem": 1}, count=20)
    h.queue_tasks(heavy, {"cpu": 1, "mem": 2}, count=20)
    assert h.fill() == {"heavy": 6, "light": 3}
    view = h.controller.view()
    limits = view.resource_limits
    heavy_share = dominant_share(view.leased_resources_by_group["heavy"], limits)
    light_share = dominant_share(view.leased_resources_by_group["light"], limits)
    assert heavy_share == pytest.approx(12 / 15)
    assert light_share == pytest.approx(6 / 15)


@pytest.mark.parametrize(
    ("lie", "lying_tasks"),
    [({"cpu": 1, "mem": 6}, 2), ({"cpu": 3, "mem": 8}, 1), ({"cpu": 1, "mem": 5}, 3), ({"cpu": 2, "mem": 4}, 3)],
)
@pytest.mark.parametrize("first", ["A", "B"])
def test_over_declaring_never_earns_more_tasks_in_the_classic_example(lie: dict[str, int], lying_tasks: int, first: str) -> None:
    """A needs <1 CPU, 4 GB> and gets 3 tasks honestly; declaring more gets it 3 or fewer, in either queue order."""
    counts = []
    for a_request in (A_NEEDS, lie):
        h = Harness(cpu=9, mem=18)
        for group in (A, B) if first == "A" else (B, A):
            h.queue_tasks(group, a_request if group is A else B_NEEDS, count=10)
        counts.append(h.fill()["A"])
    assert counts == [3, lying_tasks]


def test_known_limit_of_strategy_proofness_with_indivisible_tasks() -> None:
    """Pinned, documented limitation (module doc): work conservation lets an inflated request that
    fragments capacity keep a peer's head from fitting, so the liar gets one task more in this fill.
    DRF's strategy-proofness (the paper's Theorem 1) is for divisible demands."""
    for a_request, expected in (({"cpu": 1, "mem": 2}, {"A": 1, "B": 1}), ({"cpu": 2, "mem": 5}, {"A": 2})):
        h = Harness(cpu=5, mem=20)
        h.queue_tasks(A, a_request, count=5)
        h.queue_tasks(B, {"cpu": 4, "mem": 4}, count=5)
        assert h.fill() == expected


# -- through a real Scheduler ---------------------------------------------------------------------


class Steady:
    """Blocks a test until the dispatcher has admitted ``count`` leases of ``groups`` and then found
    nothing more eligible (an ``admission_blocked`` after the last such lease)."""

    def __init__(self, sink: SignalingSink, groups: Sequence[Hashable]) -> None:
        self.sink, self.groups = sink, set(groups)

    def wait(self, count: int) -> bool:
        def steady(events: list[SchedulerEvent]) -> bool:
            leases = [e for e in events if e.kind == "task_lease_acquired" and e.group in self.groups]
            if len(leases) < count:
                return False
            last = leases[-1].sequence
            return any(e.kind == "admission_blocked" and e.sequence > last for e in events)

        return self.sink.wait_for(steady)


def run_steady_allocation(
    limits: Mapping[str, int], groups: Mapping[str, tuple[float, Mapping[str, int]]], tasks_per_group: int, expect: int
) -> TaskAdmissionView:
    """Queue every task behind a gate that holds all of the first resource, open it, and return the
    admission view once the allocation is steady (every task blocks until the end)."""
    sink = SignalingSink()
    gate_resource = next(iter(limits))
    release_all, gate_open, gate_started = threading.Event(), threading.Event(), threading.Event()
    scheduler = Scheduler(max_workers=32, resource_limits=limits, policy=DominantResourceFairPolicy(), events=sink)
    try:
        gate = scheduler.group("gate", resources={gate_resource: limits[gate_resource]})

        def hold_the_gate() -> None:
            gate_started.set()
            gate_open.wait(GENEROUS)

        gate_future = gate.submit(hold_the_gate)
        assert gate_started.wait(GENEROUS)
        futures = [gate_future]
        for key, (weight, needs) in groups.items():
            handle = scheduler.group(key, weight=weight, resources=needs)
            futures += [handle.submit(release_all.wait, GENEROUS) for _ in range(tasks_per_group)]
        total = len(groups) * tasks_per_group
        assert sink.wait_for_count("ready_enqueued", total + 1)  # everything queued before the gate opens
        gate_open.set()
        assert Steady(sink, list(groups)).wait(expect)
        view = scheduler.snapshot().admission
        assert view.active_lease_count == expect
        release_all.set()
        resolve_all(futures)
    finally:
        gate_open.set()
        release_all.set()
        scheduler.shutdown(wait=True)
    return view


def test_scheduler_reaches_the_classic_drf_allocation() -> None:
    view = run_steady_allocation({"cpu": 9, "mem": 18}, {"A": (1.0, A_NEEDS), "B": (1.0, B_NEEDS)}, 6, expect=5)
    assert dict(view.running_counts_by_group) == {"A": 3, "B": 2}
    assert dict(view.leased_resources_by_group["A"]) == {"cpu": 3, "mem": 12, SUBMISSION: 3}
    assert dict(view.leased_resources_by_group["B"]) == {"cpu": 6, "mem": 2, SUBMISSION: 2}


def test_scheduler_gives_weight_two_twice_the_dominant_share() -> None:
    groups = {"heavy": (2.0, {"cpu": 1, "mem": 2}), "light": (1.0, {"cpu": 2, "mem": 1})}
    view = run_steady_allocation({"cpu": 15, "mem": 15}, groups, 10, expect=9)
    assert dict(view.running_counts_by_group) == {"heavy": 6, "light": 3}
    shares = {key: dominant_share(view.leased_resources_by_group[key], view.resource_limits) for key in groups}
    assert shares["heavy"] == pytest.approx(2 * shares["light"])


def test_scheduler_lone_group_completes() -> None:
    with Scheduler(max_workers=4, resource_limits={"cpu": 3, "mem": 5}, policy=DominantResourceFairPolicy()) as scheduler:
        group = scheduler.group("only", resources={"cpu": 2, "mem": 1})
        futures = [group.submit(lambda i=i: i) for i in range(50)]
        resolve_all(futures)
        assert [f.result() for f in futures] == list(range(50))


# -- properties ---------------------------------------------------------------------------------------

RESOURCES = ("cpu", "mem")
KEYS: tuple[Hashable, ...] = ("a", "b", "c")
requests = resource_amounts(RESOURCES, 4)
group_specs = st.tuples(st.sampled_from([1.0, 2.0, 3.0]), st.none() | st.integers(1, 3))


def fits(amounts: Mapping[str, int], available: Mapping[str, int]) -> bool:
    return all(available[r] >= a for r, a in amounts.items())


def drain(
    h: Harness,
    limits: Mapping[str, int],
    releases: Sequence[int],
    *,
    check_rule: bool,
    held: Sequence[TaskAdmissionLease] = (),
    max_steps: int = 400,
) -> Counter[Hashable]:
    """Simulated dispatcher: admit until nothing is eligible, then release one lease (chosen by
    ``releases``); until the queue and the leases are empty. Checks hard limits, purity of
    ``evaluate``, work conservation and (``check_rule``) the DRF rule at every admission."""
    active = list(held)
    completed: Counter[Hashable] = Counter()
    for step in range(max_steps):
        while True:
            queue_view = h.queue.view()
            before = h.controller.view()
            selection = h.queue.select_next(h.controller.is_eligible)
            after = h.controller.view()
            assert after == before, "selection must not change admission state"
            heads = queue_view.first_candidate_tasks_by_group
            for head in heads.values():  # evaluate never mutates the views it reads
                h.policy.evaluate(head, queue_view, before)
            assert h.controller.view() == before
            assert dict(h.queue.view().queued_by_group) == dict(queue_view.queued_by_group)
            if selection is None:
                # Work-conserving: nothing eligible means no queued head fits now.
                assert not any(fits(head.resource_request.amounts, before.resources_available) for head in heads.values())
                break
            if check_rule:
                chosen = selection.item.group
                own = h.policy.weighted_share(chosen.key, chosen.weight, before)
                fitting = [
                    h.policy.weighted_share(key, head.group.weight, before)
                    for key, head in selection.view.first_candidate_tasks_by_group.items()
                    if fits(head.resource_request.amounts, before.resources_available)
                ]
                assert own <= min(fitting) * (1 + 1e-9)
            lease = h.controller.try_acquire(selection.item, selection.view)
            assert isinstance(lease, TaskAdmissionLease), lease
            assert h.queue.commit(selection) is selection.item
            active.append(lease)
            view = h.controller.view()
            for resource, limit in limits.items():  # never past a hard limit
                assert 0 <= view.leased_resources[resource] <= limit
                assert view.resources_available[resource] == limit - view.leased_resources[resource]
        if not active:
            assert len(h.queue) == 0, "queued work with no lease in flight would be a stall"
            return completed
        lease = active.pop(releases[step % len(releases)] % len(active) if releases else 0)
        assert h.controller.release(lease).released
        completed[lease.item.group.key] += 1
    raise AssertionError(f"no drain within {max_steps} steps")


@settings(max_examples=120, deadline=None)
@given(
    submission=st.integers(1, 6),
    limits=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    specs=per_group(group_specs, len(KEYS)),
    tasks=group_draws(len(KEYS), requests, min_size=1, max_size=14),
    held=group_draws(len(KEYS), requests, max_size=3),
    releases=st.lists(st.integers(0, 20), max_size=8),
)
def test_random_workloads_respect_limits_and_drain(
    submission: int,
    limits: tuple[int, int],
    specs: list[tuple[float, int | None]],
    tasks: list[tuple[int, dict[str, int]]],
    held: list[tuple[int, dict[str, int]]],
    releases: list[int],
) -> None:
    resource_limits = dict(zip(RESOURCES, limits, strict=True))
    h = Harness(submission, cpu=limits[0], mem=limits[1])
    groups = [TaskGroupSpec(key, weight, cap) for key, (weight, cap) in zip(KEYS, specs, strict=True)]

    out: list[TaskAdmissionLease] = []  # some leases already out, as the dispatcher would find them
    for index, amounts in held:
        lease = h.controller.try_acquire(make_task(groups[index], clamp(amounts, resource_limits)), empty_view())
        if isinstance(lease, TaskAdmissionLease):
            out.append(lease)
    for index, amounts in tasks:
        h.queue_tasks(groups[index], clamp(amounts, resource_limits))
    limits_all = {**resource_limits, SUBMISSION: submission}
    completed = drain(h, limits_all, releases, check_rule=all(spec[1] is None for spec in specs), held=out)
    assert sum(completed.values()) == len(tasks) + len(out)
    assert h.controller.view().active_lease_count == 0


@settings(max_examples=80, deadline=None)
@given(
    submission=st.integers(1, 6),
    limits=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    weight=st.sampled_from([1.0, 2.5]),
    cap=st.none() | st.integers(1, 3),
    amounts=st.lists(requests, min_size=1, max_size=12),
    releases=st.lists(st.integers(0, 20), max_size=6),
)
def test_a_lone_group_always_completes(
    submission: int, limits: tuple[int, int], weight: float, cap: int | None, amounts: list[dict[str, int]], releases: list[int]
) -> None:
    resource_limits = dict(zip(RESOURCES, limits, strict=True))
    h = Harness(submission, cpu=limits[0], mem=limits[1])
    group = TaskGroupSpec("lone", weight, cap)
    for request in amounts:
        h.queue_tasks(group, {r: min(a, resource_limits[r]) for r, a in request.items()})
    completed = drain(h, {**resource_limits, SUBMISSION: submission}, releases, check_rule=True)
    assert completed == {"lone": len(amounts)}


@settings(max_examples=100, deadline=None)
@given(
    honest=st.dictionaries(st.sampled_from((*RESOURCES, SUBMISSION)), st.integers(0, 6)),
    extra=st.dictionaries(st.sampled_from((*RESOURCES, SUBMISSION)), st.integers(0, 6)),
    include_submission=st.booleans(),
)
def test_holding_more_never_lowers_the_dominant_share(
    honest: dict[str, int], extra: dict[str, int], include_submission: bool
) -> None:
    """The share counts what a group holds: over-declared leases only ever raise it."""
    limits = {"cpu": 6, "mem": 6, SUBMISSION: 6}
    inflated = {r: honest.get(r, 0) + extra.get(r, 0) for r in {*honest, *extra}}
    assert dominant_share(inflated, limits, include_submission=include_submission) >= dominant_share(
        honest, limits, include_submission=include_submission
    )
