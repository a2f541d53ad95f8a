"""StrictFairPolicy, driven through a real TaskAdmissionController and FairTaskQueue.

A group whose running count has reached its ``admitted_limit`` is denied ``group_cap`` only while
another group's head task contends for one of the same resources (its resources other than
``submission``, or ``submission`` itself when it has none) and all of that peer's resources are
available right now; otherwise it runs, so a lone group is always live. A peer that is itself at its
own ``admitted_limit`` does not hold a capped group back.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import (
    PolicyHarness,
    PolicyStub,
    clamp,
    empty_view,
    group_draws,
    make_task,
    per_group,
    reason,
    resource_amounts,
    strict_fair_outcome,
)

from threadsched import StrictFairPolicy
from threadsched.core.admission import TaskAdmissionController
from threadsched.core.contracts import SUBMISSION, SchedulableTask, TaskGroupSpec
from threadsched.core.policy import PolicyDecision, PolicyStateDelta, TaskAdmissionPolicy
from threadsched.core.values import QueueView, TaskAdmissionDenied, TaskAdmissionLease, TaskAdmissionView


class Harness(PolicyHarness):
    def __init__(self, submission: int = 8, **limits: int) -> None:
        super().__init__(None, submission, limits)

    queue_peer = PolicyHarness.queue_task

    def attempt(self, group: TaskGroupSpec, amounts: Mapping[str, int] | None = None) -> TaskAdmissionLease | TaskAdmissionDenied:
        """try_acquire against the current queue view; is_eligible and a direct evaluate must agree."""
        outcome, decision = self.decide(group, amounts)
        if isinstance(outcome, TaskAdmissionDenied) and outcome.reason == "group_cap":
            assert decision.allowed is False
            assert decision.reason == "group_cap"
        elif isinstance(outcome, TaskAdmissionLease):
            assert decision.allowed is True
        return outcome


def test_strict_fair_is_the_default_policy_and_a_policy() -> None:
    controller = TaskAdmissionController()
    assert isinstance(controller.policy, StrictFairPolicy)
    assert isinstance(controller.policy, TaskAdmissionPolicy)
    assert repr(controller.policy) == "StrictFairPolicy()"


def test_capped_group_is_denied_while_a_ready_peer_contends_for_submission() -> None:
    h = Harness(submission=4)
    capped, peer = TaskGroupSpec("capped", admitted_limit=1), TaskGroupSpec("peer")
    h.hold(capped)
    h.queue_peer(peer)
    denied = h.attempt(capped)
    assert isinstance(denied, TaskAdmissionDenied)
    assert denied.reason == "group_cap"
    assert denied.available_after is None
    assert denied.diagnostics["running"] == 1
    assert denied.diagnostics["admitted_limit"] == 1
    assert denied.diagnostics["waiting_peer"] == repr("peer")
    # The denial changed nothing.
    view = h.controller.view()
    assert view.running_counts_by_group == {"capped": 1}
    assert view.resources_available[SUBMISSION] == 3


def test_denied_only_once_the_running_count_reaches_the_limit() -> None:
    h = Harness(submission=8)
    capped, peer = TaskGroupSpec("capped", admitted_limit=3), TaskGroupSpec("peer")
    h.queue_peer(peer)
    assert [reason(h.attempt(capped)) for _ in range(4)] == ["lease", "lease", "lease", "group_cap"]
    assert h.controller.view().running_counts_by_group == {"capped": 3}


def test_release_below_the_limit_readmits_the_capped_group() -> None:
    h = Harness(submission=4)
    capped, peer = TaskGroupSpec("capped", admitted_limit=1), TaskGroupSpec("peer")
    lease = h.hold(capped)
    h.queue_peer(peer)
    assert reason(h.attempt(capped)) == "group_cap"
    assert h.controller.release(lease).released
    assert reason(h.attempt(capped)) == "lease"


def test_lone_capped_group_is_always_live() -> None:
    """No peer: a capped group runs past its limit until real capacity runs out."""
    h = Harness(submission=5)
    capped = TaskGroupSpec("capped", admitted_limit=1)
    for _ in range(3):
        h.queue_peer(capped)  # its own queued tasks are not peers
    outcomes = [reason(h.attempt(capped)) for _ in range(6)]
    assert outcomes == ["lease"] * 5 + ["no_capacity"]
    assert h.controller.view().running_counts_by_group == {"capped": 5}


def test_unlimited_group_is_never_capped() -> None:
    h = Harness(submission=3, gpu=3)
    free = TaskGroupSpec("free", admitted_limit=None)
    h.queue_peer(TaskGroupSpec("peer"))
    h.queue_peer(TaskGroupSpec("gpu-peer"), {"gpu": 1})
    outcomes = [reason(h.attempt(free, {"gpu": 1})) for _ in range(4)]
    assert outcomes == ["lease", "lease", "lease", "no_capacity"]


def test_peer_needing_a_disjoint_resource_does_not_cap() -> None:
    h = Harness(submission=8, gpu=4, llm=4)
    capped = TaskGroupSpec("capped", admitted_limit=1)
    h.hold(capped, {"gpu": 1})
    h.queue_peer(TaskGroupSpec("llm-peer"), {"llm": 1})
    assert reason(h.attempt(capped, {"gpu": 1})) == "lease"
    # A peer whose only resource is submission contends on submission, not on the gpu.
    h.queue_peer(TaskGroupSpec("plain-peer"))
    assert reason(h.attempt(capped, {"gpu": 1})) == "lease"
    # A peer that needs the gpu (among other things) does contend.
    h.queue_peer(TaskGroupSpec("gpu-peer"), {"gpu": 1, "llm": 1})
    assert reason(h.attempt(capped, {"gpu": 1})) == "group_cap"


def test_two_submission_only_groups_contend_on_submission() -> None:
    h = Harness(submission=8, gpu=4)
    capped = TaskGroupSpec("capped", admitted_limit=1)
    h.hold(capped)
    h.queue_peer(TaskGroupSpec("gpu-peer"), {"gpu": 1})  # contends on the gpu only
    assert reason(h.attempt(capped)) == "lease"
    h.queue_peer(TaskGroupSpec("plain-peer"))
    assert reason(h.attempt(capped)) == "group_cap"


@pytest.mark.parametrize(("peer_needs", "expected"), [(1, "group_cap"), (2, "group_cap"), (3, "lease")])
def test_peer_counts_only_if_all_of_its_amounts_are_available(peer_needs: int, expected: str) -> None:
    h = Harness(submission=8, gpu=3)
    capped = TaskGroupSpec("capped", admitted_limit=1)
    h.hold(capped, {"gpu": 1})  # two gpu units left
    h.queue_peer(TaskGroupSpec("peer"), {"gpu": peer_needs})
    assert reason(h.attempt(capped, {"gpu": 1})) == expected


def test_peer_blocked_on_another_resource_does_not_cap_until_it_frees() -> None:
    h = Harness(submission=8, gpu=4, llm=1)
    capped = TaskGroupSpec("capped", admitted_limit=1)
    h.hold(capped, {"gpu": 1})
    llm_lease = h.hold(TaskGroupSpec("llm-user"), {"llm": 1})  # llm exhausted
    h.queue_peer(TaskGroupSpec("peer"), {"gpu": 1, "llm": 1})
    assert reason(h.attempt(capped, {"gpu": 1})) == "lease"
    assert h.controller.release(llm_lease).released
    assert reason(h.attempt(capped, {"gpu": 1})) == "group_cap"


def test_peer_blocked_on_submission_does_not_cap_a_gpu_task() -> None:
    h = Harness(submission=2, gpu=4)
    capped = TaskGroupSpec("capped", admitted_limit=1)
    h.hold(capped, {"gpu": 1})
    h.queue_peer(TaskGroupSpec("peer"), {"gpu": 1})
    assert reason(h.attempt(capped, {"gpu": 1})) == "group_cap"
    h.hold(TaskGroupSpec("other"))  # last submission slot taken: nobody can run, peer included
    assert reason(h.attempt(capped, {"gpu": 1})) == "no_capacity"


def test_capped_peers_do_not_hold_each_other_back() -> None:
    h = Harness(submission=8)
    a, b = TaskGroupSpec("a", admitted_limit=1), TaskGroupSpec("b", admitted_limit=1)
    h.hold(a)
    h.hold(b)
    h.queue_peer(a)
    h.queue_peer(b)
    summary = h.controller.explain_blocked(h.queue.view())
    assert dict(summary.blocked_groups) == {}
    assert set(summary.eligible_groups) == {"a", "b"}
    assert reason(h.attempt(a)) == "lease"
    assert reason(h.attempt(b)) == "lease"
    # An uncapped ready peer that contends does hold both back.
    h.queue_peer(TaskGroupSpec("c"))
    assert reason(h.attempt(a)) == "group_cap"
    assert reason(h.attempt(b)) == "group_cap"
    summary = h.controller.explain_blocked(h.queue.view())
    assert dict(summary.blocked_groups) == {"a": "group_cap", "b": "group_cap"}
    assert summary.eligible_groups == ("c",)


def test_peer_below_its_own_limit_still_caps() -> None:
    h = Harness(submission=8)
    a, b = TaskGroupSpec("a", admitted_limit=1), TaskGroupSpec("b", admitted_limit=2)
    h.hold(a)
    h.hold(b)  # b: 1 of 2 running, so b can still use capacity
    h.queue_peer(b)
    assert reason(h.attempt(a)) == "group_cap"


def test_select_next_passes_over_a_capped_group_to_its_ready_peer() -> None:
    """The dispatcher's loop: the capped group is first in virtual-time order, yet the peer goes first."""
    h = Harness(submission=8)
    capped, peer = TaskGroupSpec("capped", admitted_limit=1), TaskGroupSpec("peer")
    h.hold(capped)
    capped_tasks = [h.queue_peer(capped) for _ in range(2)]
    peer_tasks = [h.queue_peer(peer) for _ in range(2)]
    order: list[str] = []
    while (selection := h.queue.select_next(h.controller.is_eligible)) is not None:
        lease = h.controller.try_acquire(selection.item, selection.view)
        assert isinstance(lease, TaskAdmissionLease)
        assert h.queue.commit(selection) is selection.item
        order.append(selection.item.task_id)
    # The peer drains first; then the capped group is alone and live again.
    assert order == [t.task_id for t in peer_tasks + capped_tasks]
    assert len(h.queue) == 0
    assert h.controller.view().running_counts_by_group == {"capped": 3, "peer": 2}


def test_policy_is_pure_and_keeps_no_state() -> None:
    h = Harness(submission=4, gpu=2)
    capped = TaskGroupSpec("capped", admitted_limit=1)
    lease = h.hold(capped, {"gpu": 1})
    h.queue_peer(TaskGroupSpec("peer"), {"gpu": 1})
    policy = StrictFairPolicy()
    item = make_task(capped, {"gpu": 1})
    queue_before, admission_before = h.queue.view(), h.controller.view()
    decisions = [policy.evaluate(item, h.queue.view(), h.controller.view()) for _ in range(3)]
    assert decisions[0] == decisions[1] == decisions[2]
    assert decisions[0].reason == "group_cap"
    assert h.controller.view() == admission_before
    assert dict(h.queue.view().queued_by_group) == dict(queue_before.queued_by_group)
    assert policy.on_acquire(lease, decisions[0]) == PolicyStateDelta()
    assert policy.on_release(lease) == PolicyStateDelta()
    assert h.controller.release(lease).released
    assert dict(h.controller.view().policy_debt_by_group_resource) == {}


# ---------------------------------------------------------------------------------------------
# Property: the controller's decision equals the rule, for random states
# ---------------------------------------------------------------------------------------------

RESOURCES = ("gpu", "llm")
KEYS: tuple[Hashable, ...] = ("a", "b", "c")


requests = resource_amounts(RESOURCES, 3)


@settings(max_examples=150, deadline=None)
@given(
    submission=st.integers(1, 5),
    limits=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    caps=per_group(st.none() | st.integers(1, 2), len(KEYS)),
    held=group_draws(len(KEYS), requests, max_size=6),
    queued=group_draws(len(KEYS), requests, max_size=4),
    attempts=group_draws(len(KEYS), requests, min_size=1, max_size=4),
)
def test_decisions_follow_the_rule(
    submission: int,
    limits: tuple[int, int],
    caps: list[int | None],
    held: list[tuple[int, dict[str, int]]],
    queued: list[tuple[int, dict[str, int]]],
    attempts: list[tuple[int, dict[str, int]]],
) -> None:
    resource_limits = dict(zip(RESOURCES, limits, strict=True))
    h = Harness(submission, **resource_limits)
    groups = [TaskGroupSpec(key, admitted_limit=cap) for key, cap in zip(KEYS, caps, strict=True)]

    for index, amounts in held:  # hold what fits, with no peers in view
        h.controller.try_acquire(make_task(groups[index], clamp(amounts, resource_limits)), empty_view())
    for index, amounts in queued:
        h.queue_peer(groups[index], clamp(amounts, resource_limits))
    for index, amounts in attempts:
        item = make_task(groups[index], clamp(amounts, resource_limits))
        view = h.queue.view()
        before = h.controller.view()
        expected = strict_fair_outcome(item, view, before.resources_available, before.running_counts_by_group)
        outcome = h.controller.try_acquire(item, view)
        assert reason(outcome) == expected
        # Liveness: with no other group queued, a group with free capacity is never held back.
        if not set(view.first_candidate_tasks_by_group) - {item.group.key} and expected != "no_capacity":
            assert isinstance(outcome, TaskAdmissionLease)
        if item.group.admitted_limit is None:
            assert reason(outcome) in {"lease", "no_capacity"}
    running = Counter(lease.item.group.key for lease in h.controller._active.values())
    assert dict(h.controller.view().running_counts_by_group) == dict(running)


@pytest.mark.parametrize("after", [math.nan, math.inf, -math.inf, True, "soon"])
def test_a_decision_refuses_an_available_after_the_dispatcher_could_not_sleep_until(after: object) -> None:
    with pytest.raises(ValueError, match=r"PolicyDecision\.available_after must be a finite number or None"):
        PolicyDecision(False, "policy_denial", available_after=after)  # type: ignore[arg-type]


def test_a_policy_that_returns_something_else_than_a_decision_denies_and_is_counted() -> None:
    class AnswersTrue(PolicyStub):
        def evaluate(self, item: SchedulableTask, queue_view: QueueView, admission_view: TaskAdmissionView) -> PolicyDecision:
            return True  # type: ignore[return-value]

    controller = TaskAdmissionController(policy=AnswersTrue())
    outcome = controller.try_acquire(make_task(TaskGroupSpec("g"), {}), empty_view())
    assert isinstance(outcome, TaskAdmissionDenied) and outcome.reason == "policy_denial"
    assert outcome.diagnostics == {"policy_error": "TypeError"}
    assert controller.statistics().policy_counters == {"policy_errors": 1}
