"""Dominant resource fairness (Ghodsi et al., "Dominant Resource Fairness", NSDI 2011).

A group's *dominant share* is the largest fraction of any one scheduler resource that its leases
hold right now: ``max over r of leased_by_group[r] / limit(r)``. Its *weighted* dominant share is
that divided by the group's weight. DRF hands the next lease to the group with the smallest weighted
dominant share, so with two resources a CPU-heavy and a memory-heavy stream each end up with the same
fraction of the resource they need most (twice the fraction for weight 2).

The rule, as a pure ``evaluate``: a task may run unless another group's head task

* fits right now (every amount it requests is available), and
* is not held at its own ``admitted_limit`` (see below), and
* belongs to a group whose weighted dominant share is strictly smaller than this task's group's.

Ties are allowed, so among equal shares the queue's weighted virtual-time order decides. A head that
does not fit cannot hold anyone back: capacity is never left idle while some head task could use it
(work-conserving), and the group with the smallest share among those that fit is always allowed, so
whenever any head fits one of them runs. A lone group is never denied.

Decisions, and why:

* ``submission`` (the worker slot every task holds one unit of) counts as a resource by default: it is
  a real, limited resource, and for tasks that request nothing else DRF then reduces to weighted
  fairness of running counts. ``include_submission=False`` leaves it out (groups that request only
  ``submission`` then all have share 0 and queue order alone decides among them).
* Shares count *leased* units, what the group holds, not what it says it needs: a group that declares
  more than its tasks use raises its own dominant share with every lease and so is handed fewer tasks
  (strategy-proofness, the paper's Theorem 1). With indivisible tasks and a work-conserving rule this
  holds for the steady allocation, not for every possible state: a peer whose head does not fit cannot
  block, so an inflated request that fragments capacity so that no peer head fits can keep the peer out
  until leases end. The tests pin the classic cases and that bound.
* ``admitted_limit`` keeps its ``StrictFairPolicy`` meaning (a group at its limit is denied
  ``group_cap`` while an uncapped peer contending for the same resources could run now), and a peer at
  its own limit never blocks by share, so caps and DRF cannot hold each other back.
* Shares are floats; two shares within a relative 1e-9 are a tie, so ``4/18`` and ``2/9`` compare equal.

Denials come back as ``policy_denial`` with diagnostics (``rule``, ``dominant_share``,
``waiting_peer``, ``peer_dominant_share``) and no ``available_after``: the peer that blocks fits now,
so the dispatcher's walk admits it in the same pass.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from threadsched.core.contracts import SUBMISSION, SchedulableTask
from threadsched.core.policy import NO_CHANGE, PolicyDecision, PolicyStateDelta, StrictFairPolicy
from threadsched.core.values import QueueView, TaskAdmissionLease, TaskAdmissionView

__all__ = ["DominantResourceFairPolicy", "dominant_share"]

_ALLOW = PolicyDecision(allowed=True)
_STRICT = StrictFairPolicy()  # stateless: one shared instance applies the admitted_limit rule
_REL_TOL = 1e-9


def dominant_share(leased: Mapping[str, int], limits: Mapping[str, int], *, include_submission: bool = True) -> float:
    """``max(leased[r] / limits[r])`` over the resources in ``leased`` (0.0 when it holds nothing)."""
    best = 0.0
    for resource, amount in leased.items():
        if resource == SUBMISSION and not include_submission:
            continue
        share = amount / limits[resource]
        if share > best:
            best = share
    return best


class DominantResourceFairPolicy:
    """Admit the group with the smallest weighted dominant share; ties by queue order (module doc)."""

    __slots__ = ("_include_submission",)

    def __init__(self, *, include_submission: bool = True) -> None:
        if not isinstance(include_submission, bool):
            raise TypeError(f"include_submission must be a bool, got {include_submission!r}")
        self._include_submission = include_submission

    @property
    def include_submission(self) -> bool:
        return self._include_submission

    def weighted_share(self, key: Hashable, weight: float, admission_view: TaskAdmissionView) -> float:
        """Group ``key``'s dominant share divided by ``weight``, from the leases in ``admission_view``."""
        leased = admission_view.leased_resources_by_group.get(key)
        if not leased:
            return 0.0
        return dominant_share(leased, admission_view.resource_limits, include_submission=self._include_submission) / weight

    def evaluate(self, item: SchedulableTask, queue_view: QueueView, admission_view: TaskAdmissionView) -> PolicyDecision:
        capped = _STRICT.evaluate(item, queue_view, admission_view)
        if not capped.allowed:
            return capped
        key = item.group.key
        heads = queue_view.first_candidate_tasks_by_group
        if not heads or (len(heads) == 1 and key in heads):
            return _ALLOW  # no peer: a lone group is always live
        own = self.weighted_share(key, item.group.weight, admission_view)
        if own == 0.0:
            return _ALLOW  # nobody's share is below zero
        # peer < own, with shares within a relative 1e-9 counted as a tie (queue order decides those).
        below = own * (1.0 - _REL_TOL)
        available = admission_view.resources_available
        running = admission_view.running_counts_by_group
        for peer_key, head in heads.items():
            if peer_key == key:
                continue
            peer_limit = head.group.admitted_limit
            if peer_limit is not None and running.get(peer_key, 0) >= peer_limit:
                continue  # held at its own cap: it could not take the lease either
            if any(available.get(resource, 0) < amount for resource, amount in head.resource_request.pairs):
                continue  # does not fit now: work-conserving, it holds nobody back
            peer = self.weighted_share(peer_key, head.group.weight, admission_view)
            if peer < below:
                return PolicyDecision(
                    allowed=False,
                    reason="policy_denial",
                    diagnostics={
                        "rule": "dominant_resource_fair",
                        "dominant_share": own,
                        "waiting_peer": repr(peer_key),
                        "peer_dominant_share": peer,
                    },
                )
        return _ALLOW

    def on_acquire(self, lease: TaskAdmissionLease, decision: PolicyDecision) -> PolicyStateDelta:
        return NO_CHANGE

    def on_release(self, lease: TaskAdmissionLease) -> PolicyStateDelta:
        return NO_CHANGE

    def __repr__(self) -> str:
        if self._include_submission:
            return "DominantResourceFairPolicy()"
        return "DominantResourceFairPolicy(include_submission=False)"
