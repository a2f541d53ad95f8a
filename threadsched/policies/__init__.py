"""Admission policies, selectable by name, and the vocabulary for writing one.

A policy plugs in behind the admission controller through the ``TaskAdmissionPolicy`` protocol:
``evaluate(item, queue_view, admission_view)`` is pure; state changes come back as ``PolicyStateDelta``
values from ``on_acquire``/``on_release``, applied by the controller in the same transaction. A policy
sees only value types (the task, a ``QueueView``, a ``TaskAdmissionView``, a ``TaskAdmissionLease``),
never the queue or the controller themselves.

* ``strict`` — ``StrictFairPolicy`` (the default; it lives in the core, which needs a default).
* ``bounded_borrow`` — ``BoundedBorrowPolicy``: a group may borrow beyond its weighted share of a resource
  only up to a ceiling and only while no peer waits; debt is repaid as its leases complete.
* ``drf`` — ``DominantResourceFairPolicy``: admit the group with the smallest weighted dominant share.
* ``ProviderAwarePolicy`` wraps any of them with a model provider's request-admission pressure.
"""

from __future__ import annotations

from threadsched.core.contracts import SUBMISSION, SchedulableTask, SchedulerResourceRequest, TaskGroupSpec
from threadsched.core.policy import ALLOW, NO_CHANGE, PolicyDecision, PolicyStateDelta, StrictFairPolicy, TaskAdmissionPolicy
from threadsched.core.values import QueueView, TaskAdmissionLease, TaskAdmissionView
from threadsched.policies.bounded_borrow import BoundedBorrowConfig, BoundedBorrowPolicy
from threadsched.policies.drf import DominantResourceFairPolicy
from threadsched.policies.provider_aware import ProviderAwarePolicy, ProviderPressure

__all__ = [
    "ALLOW",
    "NO_CHANGE",
    "POLICY_NAMES",
    "SUBMISSION",
    "BoundedBorrowConfig",
    "BoundedBorrowPolicy",
    "DominantResourceFairPolicy",
    "PolicyDecision",
    "PolicyStateDelta",
    "ProviderAwarePolicy",
    "ProviderPressure",
    "QueueView",
    "SchedulableTask",
    "SchedulerResourceRequest",
    "StrictFairPolicy",
    "TaskAdmissionLease",
    "TaskAdmissionPolicy",
    "TaskAdmissionView",
    "TaskGroupSpec",
    "make_policy",
]

POLICY_NAMES = ("strict", "bounded_borrow", "drf")


def make_policy(name: str) -> TaskAdmissionPolicy:
    """The policy called ``name`` with its default configuration; ValueError naming the known ones."""
    if name == "strict":
        return StrictFairPolicy()
    if name == "bounded_borrow":
        return BoundedBorrowPolicy()
    if name == "drf":
        return DominantResourceFairPolicy()
    raise ValueError(f"unknown policy {name!r} (known: {', '.join(POLICY_NAMES)})")
