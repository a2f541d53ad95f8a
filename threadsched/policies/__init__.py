"""Admission policies beyond strict fairness, selectable by name.

Each plugs in behind ``TaskAdmissionController`` through the ``TaskAdmissionPolicy`` protocol
(``threadsched.core.policy``): ``evaluate`` is pure, state changes come back as ``PolicyStateDelta`` values from
``on_acquire``/``on_release``. None moves DAG knowledge or resource ownership into the queue.

* ``strict`` — ``StrictFairPolicy`` (the default).
* ``bounded_borrow`` — ``BoundedBorrowPolicy``: a group may borrow beyond its weighted share of a resource
  only up to a ceiling and only while no peer waits; debt is repaid as its leases complete.
* ``drf`` — ``DominantResourceFairPolicy``: admit the group with the smallest weighted dominant share.
"""

from __future__ import annotations

from threadsched.core.policy import StrictFairPolicy, TaskAdmissionPolicy

__all__ = ["POLICY_NAMES", "make_policy"]

POLICY_NAMES = ("strict", "bounded_borrow", "drf")


def make_policy(name: str) -> TaskAdmissionPolicy:
    """The policy called ``name`` with its default configuration; ValueError naming the known ones."""
    if name == "strict":
        return StrictFairPolicy()
    if name == "bounded_borrow":
        from threadsched.policies.bounded_borrow import BoundedBorrowPolicy

        return BoundedBorrowPolicy()
    if name == "drf":
        from threadsched.policies.drf import DominantResourceFairPolicy

        return DominantResourceFairPolicy()
    raise ValueError(f"unknown policy {name!r} (known: {', '.join(POLICY_NAMES)})")
