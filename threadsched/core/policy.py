"""Admission policies: the decision rule behind ``TaskAdmissionController``.

A policy is consulted by the controller inside its acquire/release transaction, under the
controller's lock, so it must be pure, fast and must never call back into the controller.
``evaluate`` never mutates anything; state changes are returned as ``PolicyStateDelta`` values
from ``on_acquire``/``on_release`` and applied by the controller in the same transaction.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from threadsched.core.contracts import SUBMISSION, SchedulableTask
from threadsched.core.values import QueueView, TaskAdmissionLease, TaskAdmissionView

_EMPTY: Mapping[Any, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """``available_after``: the monotonic time at which a denied task is worth asking about again (None:
    on the next wake-up). It becomes a deadline of the dispatcher's sleep, so it must be a finite number."""

    allowed: bool
    reason: str | None = None
    available_after: float | None = None
    diagnostics: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        after = self.available_after
        if after is not None and (
            isinstance(after, bool) or not isinstance(after, (int, float)) or not -math.inf < after < math.inf
        ):
            raise ValueError(f"PolicyDecision.available_after must be a finite number or None, got {after!r}")


@dataclass(frozen=True, slots=True)
class PolicyStateDelta:
    debt_changes: Mapping[tuple[Hashable, str], int] = field(default_factory=lambda: _EMPTY)
    counters: Mapping[str, int] = field(default_factory=lambda: _EMPTY)


ALLOW = PolicyDecision(allowed=True)
NO_CHANGE = PolicyStateDelta()


@runtime_checkable
class TaskAdmissionPolicy(Protocol):
    def evaluate(self, item: SchedulableTask, queue_view: QueueView, admission_view: TaskAdmissionView) -> PolicyDecision: ...

    def on_acquire(self, lease: TaskAdmissionLease, decision: PolicyDecision) -> PolicyStateDelta: ...

    def on_release(self, lease: TaskAdmissionLease) -> PolicyStateDelta: ...


class StrictFairPolicy:
    """Caps a group at its ``admitted_limit`` only while a peer could use the capacity right now.

    A capped group is denied (``group_cap``) while another group's head task contends for one of
    the same resources, all of that peer's resources are available, and the peer is not at its own
    cap; otherwise it runs. So a lone group is always live, and two capped groups never hold each
    other back while capacity sits idle.
    """

    def evaluate(self, item: SchedulableTask, queue_view: QueueView, admission_view: TaskAdmissionView) -> PolicyDecision:
        limit = item.group.admitted_limit
        if limit is None:
            return ALLOW
        running = admission_view.running_counts_by_group.get(item.group.key, 0)
        if running < limit:
            return ALLOW
        contended = item.resource_request.contended
        available = admission_view.resources_available
        running_by_group = admission_view.running_counts_by_group
        for peer_key, peer_task in queue_view.first_candidate_tasks_by_group.items():
            if peer_key == item.group.key:
                continue
            peer_limit = peer_task.group.admitted_limit
            if peer_limit is not None and running_by_group.get(peer_key, 0) >= peer_limit:
                continue  # a capped peer could not take the capacity either
            peer_request = peer_task.resource_request
            if contended.isdisjoint(peer_request.contended):
                continue
            if all(available.get(resource, 0) >= amount for resource, amount in peer_request.amounts.items()):
                return PolicyDecision(
                    allowed=False,
                    reason="group_cap",
                    diagnostics={"running": running, "admitted_limit": limit, "waiting_peer": repr(peer_key)},
                )
        return ALLOW

    def on_acquire(self, lease: TaskAdmissionLease, decision: PolicyDecision) -> PolicyStateDelta:
        return NO_CHANGE

    def on_release(self, lease: TaskAdmissionLease) -> PolicyStateDelta:
        return NO_CHANGE

    def __repr__(self) -> str:
        return "StrictFairPolicy()"


__all__ = [
    "SUBMISSION",
    "PolicyDecision",
    "PolicyStateDelta",
    "StrictFairPolicy",
    "TaskAdmissionPolicy",
]
