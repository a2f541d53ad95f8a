"""BoundedBorrowPolicy, driven through a real TaskAdmissionController and FairTaskQueue.

A group's strict share of a resource is ``ceil(limit * weight / sum of peer weights)`` (a lone group counts
one imaginary equal peer); beyond it, a group borrows only while no peer waits and only up to its ceiling;
borrowed units are debt, repaid as the group's leases complete; while a peer waits and the group owes
debt, the peer goes first.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping
from concurrent.futures import wait

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import GENEROUS, PolicyHarness, clamp, make_task, per_group, reason, resource_amounts

from threadsched import Scheduler, StrictFairPolicy
from threadsched.core.admission import TaskAdmissionController
from threadsched.core.contracts import TaskGroupSpec
from threadsched.core.policy import PolicyStateDelta, TaskAdmissionPolicy
from threadsched.core.values import TaskAdmissionDenied, TaskAdmissionLease
from threadsched.policies import make_policy
from threadsched.policies.bounded_borrow import BoundedBorrowConfig, BoundedBorrowPolicy


class Harness(PolicyHarness):
    def __init__(
        self,
        submission: int = 64,
        config: BoundedBorrowConfig | None = None,
        *,
        policy: TaskAdmissionPolicy | None = None,
        **limits: int,
    ) -> None:
        super().__init__(policy if policy is not None else BoundedBorrowPolicy(config), submission, limits)

    def attempt(self, group: TaskGroupSpec, amounts: Mapping[str, int] | None = None) -> TaskAdmissionLease | TaskAdmissionDenied:
        """try_acquire against the current queue view; is_eligible and a direct evaluate agree with it."""
        outcome, decision = self.decide(group, amounts)
        if isinstance(outcome, TaskAdmissionDenied) and outcome.reason in {"group_cap", "borrow_debt"}:
            assert (decision.allowed, decision.reason) == (False, outcome.reason)
        elif isinstance(outcome, TaskAdmissionLease):
            assert decision.allowed
        return outcome

    def lease(self, group: TaskGroupSpec, amounts: Mapping[str, int] | None = None) -> TaskAdmissionLease:
        outcome = self.attempt(group, amounts)
        assert isinstance(outcome, TaskAdmissionLease), outcome
        return outcome

    def stats(self) -> dict[str, object]:
        assert isinstance(self.policy, BoundedBorrowPolicy)
        return self.policy.statistics()

    def debt(self) -> dict[tuple[Hashable, str], int]:
        return dict(self.controller.view().policy_debt_by_group_resource)


def rule(outcome: TaskAdmissionLease | TaskAdmissionDenied) -> str:
    return "lease" if isinstance(outcome, TaskAdmissionLease) else f"{outcome.reason}:{outcome.diagnostics.get('rule')}"


# -- construction ----------------------------------------------------------------------------------


def test_make_policy_builds_the_default_policy() -> None:
    policy = make_policy("bounded_borrow")
    assert isinstance(policy, BoundedBorrowPolicy)
    assert isinstance(policy, TaskAdmissionPolicy)
    assert policy.config == BoundedBorrowConfig()
    assert "reserve=1" in repr(policy)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reserve": -1}, r"BoundedBorrowConfig.reserve must be an int >= 0"),
        ({"reserve": True}, r"BoundedBorrowConfig.reserve must be an int >= 0"),
        ({"default_ceiling": 0}, r"BoundedBorrowConfig.default_ceiling must be a positive int"),
        ({"default_ceiling": 2.5}, r"BoundedBorrowConfig.default_ceiling must be a positive int"),
        ({"ceilings": {("a", "gpu"): 0}}, r"BoundedBorrowConfig.ceilings\[\('a', 'gpu'\)\] must be a positive int"),
        ({"ceilings": {"a": 1}}, r"BoundedBorrowConfig.ceilings: key must be a \(group key, resource\) pair"),
        ({"ceilings": {("a", ""): 1}}, r"BoundedBorrowConfig.ceilings: key must be a \(group key, resource\) pair"),
        ({"ceilings": [("a", "gpu")]}, r"BoundedBorrowConfig.ceilings must be a mapping"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BoundedBorrowConfig(**kwargs)  # type: ignore[arg-type]


def test_config_is_frozen_and_copies_the_ceilings() -> None:
    ceilings: dict[tuple[Hashable, str], int] = {("a", "gpu"): 3}
    config = BoundedBorrowConfig(ceilings)
    ceilings[("a", "gpu")] = 9
    assert config.ceilings == {("a", "gpu"): 3}
    with pytest.raises(AttributeError):
        config.reserve = 2  # type: ignore[misc]
    with pytest.raises(TypeError, match="config must be a BoundedBorrowConfig"):
        BoundedBorrowPolicy({"reserve": 1})  # type: ignore[arg-type]


# -- shares ----------------------------------------------------------------------------------------


def test_weighted_shares_cap_each_group_while_the_other_waits() -> None:
    h = Harness(gpu=6)
    heavy, light = TaskGroupSpec("heavy", weight=2.0), TaskGroupSpec("light")
    h.queue_task(heavy, {"gpu": 1})
    h.queue_task(light, {"gpu": 1})
    # heavy's share: 6 * 2/3 = 4; light's: 2.
    assert [rule(h.attempt(heavy, {"gpu": 1})) for _ in range(5)] == ["lease"] * 4 + ["group_cap:share"]
    assert [rule(h.attempt(light, {"gpu": 1})) for _ in range(2)] == ["lease"] * 2
    assert h.controller.view().leased_resources_by_group["heavy"]["gpu"] == 4
    assert h.debt() == {}


def test_share_rounds_up_so_every_group_gets_a_unit() -> None:
    h = Harness(gpu=2)
    groups = [TaskGroupSpec(name) for name in "abc"]
    for group in groups:
        h.queue_task(group, {"gpu": 1})
    # 2 * 1/3 rounds up to 1 each: the first two groups run; nobody is denied by the policy.
    assert [reason(h.attempt(g, {"gpu": 1})) for g in groups] == ["lease", "lease", "no_capacity"]


def test_a_peer_over_its_own_share_does_not_hold_a_borrower_back() -> None:
    """Work conserving among over-share groups: a peer that would itself borrow is not waiting."""
    h = Harness(gpu=6)
    a, b, c = TaskGroupSpec("a"), TaskGroupSpec("b"), TaskGroupSpec("c")
    h.lease(c, {"gpu": 1})
    h.queue_task(a, {"gpu": 1})
    h.queue_task(b, {"gpu": 1})
    for group in (a, a, b, b):  # shares of a, b, c: 2 each
        h.lease(group, {"gpu": 1})
    assert rule(h.attempt(a, {"gpu": 1})) == "lease"  # b is at its share too: a borrows the free unit
    assert h.debt() == {("a", "gpu"): 1}


def test_leasing_groups_count_as_peers_with_their_weight() -> None:
    h = Harness(gpu=8)
    heavy, light = TaskGroupSpec("heavy", weight=3.0), TaskGroupSpec("light")
    h.lease(heavy, {"gpu": 1})  # heavy leases, nothing queued
    # light (weight 1) vs heavy (weight 3): light's share is 8 * 1/4 = 2; heavy is not waiting (not queued).
    assert [rule(h.attempt(light, {"gpu": 1})) for _ in range(3)] == ["lease", "lease", "lease"]
    assert h.debt() == {("light", "gpu"): 1}
    h.queue_task(heavy, {"gpu": 1})
    assert rule(h.attempt(light, {"gpu": 1})) == "borrow_debt:debt"


# -- lone group ------------------------------------------------------------------------------------


def share_gpu(h: Harness) -> None:
    """Another group leased gpu once: from now on the resource is shared, so the derived reserve applies."""
    assert h.controller.release(h.lease(TaskGroupSpec("earlier"), {"gpu": 1})).released


def test_lone_group_borrows_up_to_the_derived_ceiling() -> None:
    h = Harness(gpu=4)
    share_gpu(h)
    lone = TaskGroupSpec("lone")
    for _ in range(3):
        h.queue_task(lone, {"gpu": 1})  # its own queued work is not a peer
    # share with the imaginary peer: 2; ceiling: 4 - reserve 1 = 3.
    outcomes = [rule(h.attempt(lone, {"gpu": 1})) for _ in range(4)]
    assert outcomes == ["lease", "lease", "lease", "group_cap:ceiling"]
    assert h.debt() == {("lone", "gpu"): 1}


@pytest.mark.parametrize("reserve", [1, 5])
def test_lone_group_stays_live_with_a_limit_of_one(reserve: int) -> None:
    h = Harness(submission=1, config=BoundedBorrowConfig(reserve=reserve))
    lone = TaskGroupSpec("lone")
    for _ in range(3):
        lease = h.lease(lone)
        assert reason(h.attempt(lone)) == "no_capacity"
        assert h.controller.release(lease).released
    assert h.debt() == {}


def test_a_group_holding_nothing_is_always_within_its_share() -> None:
    """Multi-unit requests stay live: the first task of a group runs even if its amount exceeds the share."""
    h = Harness(gpu=4)
    a, b = TaskGroupSpec("a"), TaskGroupSpec("b")
    h.queue_task(a, {"gpu": 3})
    h.queue_task(b, {"gpu": 3})
    lease = h.lease(a, {"gpu": 3})
    assert h.debt() == {}
    assert reason(h.attempt(b, {"gpu": 3})) == "no_capacity"
    assert h.controller.release(lease).released
    h.lease(b, {"gpu": 3})


# -- waiting peers and debt --------------------------------------------------------------------------


def test_waiting_peer_blocks_borrowing_and_goes_first_while_debt_is_owed() -> None:
    h = Harness(gpu=4)
    a, b = TaskGroupSpec("a"), TaskGroupSpec("b")
    held = [h.lease(a, {"gpu": 1}) for _ in range(3)]  # alone: share 2, borrowed 1
    assert h.debt() == {("a", "gpu"): 1}
    a_tasks = [h.queue_task(a, {"gpu": 1}) for _ in range(2)]
    b_tasks = [h.queue_task(b, {"gpu": 1}) for _ in range(2)]
    denied = h.attempt(a, {"gpu": 1})
    assert isinstance(denied, TaskAdmissionDenied)
    assert denied.reason == "borrow_debt"
    assert denied.available_after is None
    assert denied.diagnostics["waiting_peer"] == repr("b")
    assert denied.diagnostics["debt"] == 1
    # The dispatcher's loop: a is first in virtual-time order, yet b goes first.
    order = drain_eligible(h)
    assert order == [b_tasks[0].task_id]  # b takes the last unit
    assert h.controller.release(held[0]).released  # repays a's debt
    assert h.debt() == {}
    order = drain_eligible(h)
    assert order == [b_tasks[1].task_id]  # a is at its share (2) and b (1 of 2) still waits
    for lease in held[1:]:
        assert h.controller.release(lease).released
    assert drain_eligible(h) == [t.task_id for t in a_tasks]


def test_debt_denies_even_within_the_share_while_a_peer_waits() -> None:
    h = Harness(gpu=6)
    a, b = TaskGroupSpec("a", weight=3.0), TaskGroupSpec("b")
    held = [h.lease(a, {"gpu": 1}) for _ in range(5)]  # alone: share 3, ceiling 5, debt 2
    assert h.debt() == {("a", "gpu"): 2}
    assert h.controller.release(held.pop()).released
    assert h.debt() == {("a", "gpu"): 1}
    h.queue_task(b, {"gpu": 1})
    # a's share is now 6 * 3/4 = 4.5 -> 5: 4 + 1 fits, but a owes debt and b waits.
    assert rule(h.attempt(a, {"gpu": 1})) == "borrow_debt:debt"
    assert rule(h.attempt(b, {"gpu": 1})) == "lease"
    # b's head is still queued and b (1 of its share 6 * 1/4 -> 2) could take another unit: still waits.
    assert rule(h.attempt(a, {"gpu": 1})) == "borrow_debt:debt"
    assert h.controller.release(held.pop()).released  # repaid: a may run within its share again
    assert h.debt() == {}
    assert rule(h.attempt(a, {"gpu": 1})) == "lease"


def test_peer_that_cannot_run_now_does_not_wait() -> None:
    h = Harness(gpu=4, llm=1)
    a, b = TaskGroupSpec("a"), TaskGroupSpec("b")
    h.lease(a, {"gpu": 1})
    h.lease(a, {"gpu": 1})
    h.lease(TaskGroupSpec("llm-user"), {"llm": 1})  # llm exhausted
    h.queue_task(b, {"gpu": 1, "llm": 1})
    assert rule(h.attempt(a, {"gpu": 1})) == "lease"  # borrows: b could not run anyway
    assert h.debt() == {("a", "gpu"): 1}


def test_debt_is_recorded_on_acquire_and_repaid_on_release() -> None:
    h = Harness(gpu=8)
    lone = TaskGroupSpec("lone")
    leases = [h.lease(lone, {"gpu": 2}) for _ in range(3)]  # share 4: 2, 4, then 6 (borrowed 2)
    assert h.debt() == {("lone", "gpu"): 2}
    assert h.stats()["debt"] == {("lone", "gpu"): 2}
    assert h.controller.release(leases[0]).released  # any completion of the group repays
    assert h.debt() == {}
    for lease in leases[1:]:
        assert h.controller.release(lease).released
    view = h.controller.view()
    assert dict(view.policy_debt_by_group_resource) == {}
    assert view.active_lease_count == 0
    assert h.stats() == {"debt": {}, "leasing_groups": 0}


def test_duplicate_release_repays_nothing() -> None:
    h = Harness(gpu=4)
    lone = TaskGroupSpec("lone")
    leases = [h.lease(lone, {"gpu": 1}) for _ in range(3)]
    assert h.controller.release(leases[2]).released
    assert not h.controller.release(leases[2]).released
    assert h.debt() == {}
    for lease in leases[:2]:
        assert h.controller.release(lease).released
    assert h.debt() == {}


# -- ceilings --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (BoundedBorrowConfig(), 7),  # derived: 8 - 1
        (BoundedBorrowConfig(reserve=3), 5),
        (BoundedBorrowConfig(reserve=0), 8),
        (BoundedBorrowConfig(reserve=8), 4),  # never below the share (8 / 2)
        (BoundedBorrowConfig(default_ceiling=6), 6),
        (BoundedBorrowConfig(default_ceiling=2), 4),  # never below the share
        (BoundedBorrowConfig({("a", "gpu"): 5}, default_ceiling=6), 5),  # explicit beats the default
        (BoundedBorrowConfig({("other", "gpu"): 5}, default_ceiling=6), 6),
        (BoundedBorrowConfig({("a", "gpu"): 20}), 8),  # the hard limit still binds
    ],
)
def test_ceilings(config: BoundedBorrowConfig, expected: int) -> None:
    h = Harness(config=config, gpu=8)
    share_gpu(h)
    a = TaskGroupSpec("a")
    outcomes = [reason(h.attempt(a, {"gpu": 1})) for _ in range(9)]
    assert outcomes.count("lease") == expected
    assert h.debt().get(("a", "gpu"), 0) == expected - 4


def test_a_resource_no_other_group_uses_keeps_no_reserve() -> None:
    h = Harness(gpu=4)
    lone = TaskGroupSpec("lone")
    leases = [h.lease(lone, {"gpu": 1}) for _ in range(4)]  # all of it: no reserve on an unshared model
    assert rule(h.attempt(lone, {"gpu": 1})) == "no_capacity:None"  # only the hard limit stops it
    assert h.controller.release(leases[0]).released
    h.queue_task(TaskGroupSpec("other"), {"gpu": 1})  # someone else asks for it now: shared after all
    assert rule(h.attempt(lone, {"gpu": 1})) != "lease"


def test_submission_is_shared_like_any_resource() -> None:
    h = Harness(submission=4)
    root, down = TaskGroupSpec("root"), TaskGroupSpec("down")
    root_leases = [h.lease(root) for _ in range(3)]  # alone: share 2, ceiling 3
    assert rule(h.attempt(root)) == "group_cap:ceiling"
    h.queue_task(root)
    h.queue_task(down)
    assert rule(h.attempt(root)) == "borrow_debt:debt"
    assert reason(h.attempt(down)) == "lease"  # the reserved slot goes to the downstream group
    assert h.controller.release(root_leases[0]).released
    assert rule(h.attempt(root)) == "group_cap:share"  # at its share (2) while down (1 of 2) waits


# -- purity ----------------------------------------------------------------------------------------


def test_evaluate_is_pure() -> None:
    h = Harness(gpu=4)
    a, b = TaskGroupSpec("a"), TaskGroupSpec("b")
    leases = [h.lease(a, {"gpu": 1}) for _ in range(3)]
    h.queue_task(b, {"gpu": 1})
    item = make_task(a, {"gpu": 1})
    queue_before, admission_before, stats_before = h.queue.view(), h.controller.view(), h.stats()
    decisions = [h.policy.evaluate(item, h.queue.view(), h.controller.view()) for _ in range(3)]
    assert decisions[0] == decisions[1] == decisions[2]
    assert decisions[0].reason == "borrow_debt"
    assert h.controller.view() == admission_before
    assert dict(h.queue.view().queued_by_group) == dict(queue_before.queued_by_group)
    assert h.stats() == stats_before
    for lease in leases:
        h.controller.release(lease)
    assert h.policy.on_release(leases[0]) == PolicyStateDelta()  # nothing left to repay


# -- a real scheduler --------------------------------------------------------------------------------


def test_scheduler_run_completes_every_group_and_leaves_no_debt() -> None:
    scheduler = Scheduler(4, resource_limits={"gpu": 3}, policy=BoundedBorrowPolicy())
    try:
        lock = threading.Lock()
        running: dict[str, int] = {"max_gpu": 0, "gpu": 0}

        def work(gpu: bool) -> int:
            if gpu:
                with lock:
                    running["gpu"] += 1
                    running["max_gpu"] = max(running["max_gpu"], running["gpu"])
            threading.Event().wait(0.002)
            if gpu:
                with lock:
                    running["gpu"] -= 1
            return 1

        heavy = scheduler.group("heavy", weight=2.0, resources={"gpu": 1})
        light = scheduler.group("light")
        futures = [heavy.submit(work, True) for _ in range(30)] + [light.submit(work, False) for _ in range(30)]
        done, not_done = wait(futures, timeout=GENEROUS)
        assert not not_done
        assert sum(f.result() for f in done) == 60
        assert running["max_gpu"] <= 3
    finally:
        report = scheduler.shutdown(wait=True, timeout=GENEROUS)
    assert report.clean
    view = scheduler.snapshot().admission
    assert dict(view.policy_debt_by_group_resource) == {}
    assert view.active_lease_count == 0


def test_scheduler_lone_group_completes_with_one_worker() -> None:
    scheduler = Scheduler(1, policy=BoundedBorrowPolicy(BoundedBorrowConfig(reserve=3)))
    try:
        futures = [scheduler.submit(lambda i=i: i) for i in range(20)]
        done, not_done = wait(futures, timeout=GENEROUS)
        assert not not_done
        assert sorted(f.result() for f in done) == list(range(20))
    finally:
        assert scheduler.shutdown(wait=True, timeout=GENEROUS).clean


# ---------------------------------------------------------------------------------------------------
# Properties: random groups, weights, limits and operations through the real controller
# ---------------------------------------------------------------------------------------------------

RESOURCES = ("gpu", "llm")
KEYS: tuple[Hashable, ...] = ("a", "b", "c")


def drain_eligible(h: Harness) -> list[str]:
    """Admit every task the dispatcher would admit now (select -> try_acquire -> commit)."""
    order: list[str] = []
    while (selection := h.queue.select_next(h.controller.is_eligible)) is not None:
        lease = h.controller.try_acquire(selection.item, selection.view)
        assert isinstance(lease, TaskAdmissionLease), lease
        assert h.queue.commit(selection) is selection.item
        order.append(selection.item.task_id)
    return order


def check_invariants(controller: TaskAdmissionController, policy: TaskAdmissionPolicy) -> None:
    view = controller.view()
    for resource, limit in view.resource_limits.items():
        assert 0 <= view.leased_resources[resource] <= limit
        assert view.leased_resources[resource] + view.resources_available[resource] == limit
    if isinstance(policy, BoundedBorrowPolicy):
        debt = dict(view.policy_debt_by_group_resource)
        assert debt == policy.statistics()["debt"]
        for (key, resource), units in debt.items():
            assert 0 < units <= view.leased_resources_by_group[key][resource]


requests = resource_amounts(RESOURCES, 3)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("enqueue"), st.integers(0, len(KEYS) - 1), requests),
        st.tuples(st.just("dispatch"), st.just(0), st.just({})),
        st.tuples(st.just("release"), st.integers(0, 50), st.just({})),
    ),
    max_size=40,
)


@pytest.mark.parametrize("policy_name", ["bounded_borrow", "strict"])
@settings(max_examples=120, deadline=None)
@given(
    submission=st.integers(1, 6),
    limits=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    weights=per_group(st.sampled_from([1.0, 1.5, 2.0, 5.0]), len(KEYS)),
    reserve=st.integers(0, 3),
    default_ceiling=st.none() | st.integers(1, 4),
    ops=operations,
)
def test_random_operations_keep_limits_purity_and_liveness(
    policy_name: str,
    submission: int,
    limits: tuple[int, int],
    weights: list[float],
    reserve: int,
    default_ceiling: int | None,
    ops: list[tuple[str, int, dict[str, int]]],
) -> None:
    resource_limits = dict(zip(RESOURCES, limits, strict=True))
    config = BoundedBorrowConfig(default_ceiling=default_ceiling, reserve=reserve)
    policy: TaskAdmissionPolicy = BoundedBorrowPolicy(config) if policy_name == "bounded_borrow" else StrictFairPolicy()
    h = Harness(submission, None, policy=policy, gpu=resource_limits["gpu"], llm=resource_limits["llm"])
    groups = [TaskGroupSpec(key, weight) for key, weight in zip(KEYS, weights, strict=True)]
    held: list[TaskAdmissionLease] = []
    enqueued: set[str] = set()
    completed: set[str] = set()

    def evaluate_every_head_purely() -> None:
        queue_view = h.queue.view()
        before = h.controller.view()
        stats = policy.statistics() if isinstance(policy, BoundedBorrowPolicy) else None
        for head in queue_view.first_candidate_tasks_by_group.values():
            first = policy.evaluate(head, queue_view, h.controller.view())
            assert policy.evaluate(head, queue_view, h.controller.view()) == first
        assert h.controller.view() == before
        if stats is not None:
            assert isinstance(policy, BoundedBorrowPolicy)
            assert policy.statistics() == stats

    def dispatch() -> None:
        while (selection := h.queue.select_next(h.controller.is_eligible)) is not None:
            lease = h.controller.try_acquire(selection.item, selection.view)
            assert isinstance(lease, TaskAdmissionLease), lease
            assert h.queue.commit(selection) is selection.item
            held.append(lease)
            check_invariants(h.controller, policy)

    for op, index, amounts in ops:
        if op == "enqueue":
            item = make_task(groups[index], clamp(amounts, resource_limits))
            h.queue.enqueue([item])
            enqueued.add(item.task_id)
        elif op == "dispatch":
            dispatch()
        elif held:
            lease = held.pop(index % len(held))
            assert h.controller.release(lease).released
            completed.add(lease.item.task_id)
        evaluate_every_head_purely()
        check_invariants(h.controller, policy)

    # Drain: every queued task of every group completes; the loop never stalls with nothing held.
    for _ in range(10_000):
        dispatch()
        if not held:
            assert len(h.queue) == 0, h.controller.explain_blocked(h.queue.view()).message
            break
        lease = held.pop(0)
        assert h.controller.release(lease).released
        completed.add(lease.item.task_id)
        check_invariants(h.controller, policy)
    assert completed == enqueued
    view = h.controller.view()
    assert view.active_lease_count == 0
    assert dict(view.policy_debt_by_group_resource) == {}


@settings(max_examples=80, deadline=None)
@given(
    submission=st.integers(1, 4),
    limit=st.integers(1, 4),
    weight=st.sampled_from([0.5, 1.0, 3.0]),
    reserve=st.integers(0, 5),
    amounts=st.lists(st.integers(1, 4), min_size=1, max_size=12),
)
def test_a_lone_group_always_completes(submission: int, limit: int, weight: float, reserve: int, amounts: list[int]) -> None:
    h = Harness(submission, BoundedBorrowConfig(reserve=reserve), gpu=limit)
    lone = TaskGroupSpec("lone", weight)
    items = [h.queue_task(lone, {"gpu": min(a, limit)}) for a in amounts]
    held: list[TaskAdmissionLease] = []
    done: list[str] = []
    while len(done) < len(items):
        while (selection := h.queue.select_next(h.controller.is_eligible)) is not None:
            lease = h.controller.try_acquire(selection.item, selection.view)
            assert isinstance(lease, TaskAdmissionLease)
            h.queue.commit(selection)
            held.append(lease)
        assert held, "a lone group stalled with nothing held"
        lease = held.pop(0)
        assert h.controller.release(lease).released
        done.append(lease.item.task_id)
    assert done == [item.task_id for item in items]
    assert h.debt() == {}
