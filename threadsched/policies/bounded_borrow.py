"""``BoundedBorrowPolicy``: weighted strict shares, bounded borrowing while no peer waits, borrow debt.

For each resource ``r`` an item requests (``submission`` included: it is the worker slot):

* **Peers of r** are the groups with queued demand for ``r``, the groups leasing ``r`` now, and the item's
  own group. A group alone counts one imaginary peer of equal weight, so a lone group's share is half.
* **Share**: ``limit(r) * weight / sum(peer weights)``, rounded *up* to whole units (``share_units``).
  Rounding up means every group's share is at least one unit, so two groups can never both be "over
  share" with nothing leased; and a group that leases nothing of ``r`` is always within its share (its
  first task runs whatever its amount), which keeps multi-unit requests live.
* **Within share** (``leased == 0`` or ``leased + amount <= share_units``): allowed.
* **Borrowing** beyond that is allowed only while no peer *waits* for ``r`` and only up to the group's
  **ceiling**: explicit per ``(group, resource)``, else ``default_ceiling``, else ``limit(r) - reserve``
  (the reserve only on a resource another group uses: the worker slot, or one another group leased or
  asks for — a model only one column calls keeps no idle reserve);
  never below ``share_units`` and never below 1, so a lone group stays live even when ``limit(r) == 1``.
* Units borrowed are **debt** (``PolicyStateDelta.debt_changes``, applied by the controller in the
  acquire transaction; ``TaskAdmissionView.policy_debt_by_group_resource``). Every release of ``r`` by the
  group repays ``min(debt, amount)``. While a peer waits and the group owes debt on ``r``, the group is
  denied (``borrow_debt``), so the peer goes first.

A peer **waits** for ``r`` when its head task requests ``r``, all of that head's resources are free right
now, and the head is admissible under this rule as it stands: within its share on every resource it
requests and owing no debt on any of them. Such a peer is always admitted itself, so a denial because of a
waiting peer never leaves capacity idle with nobody eligible; the only other denial (a borrower at its
ceiling) is issued to a group that holds leases, whose completion wakes the dispatcher. Hence every
group's queued work completes.

Denials: ``borrow_debt`` (owes debt, a peer waits) and ``group_cap`` (over its share while a peer waits,
or at its ceiling); ``diagnostics["rule"]`` says which. ``available_after`` is always ``None``.

``TaskGroupSpec.admitted_limit`` is ``StrictFairPolicy``'s cap and is not used here: shares come from
weights.

State: ``evaluate`` is pure. The policy keeps two records, changed only in ``on_acquire``/``on_release``,
which the controller calls inside its acquire/release transaction under its lock (so they need no lock of
their own): the debt it has handed to each controller (to compute repayments, since ``on_release`` gets no
view) and the weight of each group that holds leases (a leasing group may have nothing queued, and the
admission view carries no weights). One policy instance per controller is the intended use; the debt
record is keyed by the controller generation all the same.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from threadsched.core.contracts import SUBMISSION, SchedulableTask
from threadsched.core.policy import NO_CHANGE, PolicyDecision, PolicyStateDelta
from threadsched.core.values import QueueView, TaskAdmissionLease, TaskAdmissionView

__all__ = ["BoundedBorrowConfig", "BoundedBorrowPolicy"]

_ALLOW = PolicyDecision(allowed=True)
_EMPTY_LEASED: Mapping[str, int] = MappingProxyType({})
_EPSILON = 1e-9  # float slack so that e.g. 3 * 1/3 * 3 rounds up to 3, not 4


def _positive_int(value: object, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{field_name} must be a positive int, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class BoundedBorrowConfig:
    """``ceilings``: ``(group key, resource) -> units`` a group may hold by borrowing; ``default_ceiling``
    for the others; without either, ``limit(resource) - reserve``."""

    ceilings: Mapping[tuple[Hashable, str], int] = field(default_factory=lambda: MappingProxyType({}))
    default_ceiling: int | None = None
    reserve: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.ceilings, Mapping):
            raise ValueError(f"BoundedBorrowConfig.ceilings must be a mapping, got {self.ceilings!r}")
        ceilings: dict[tuple[Hashable, str], int] = {}
        for key, value in self.ceilings.items():
            if not isinstance(key, tuple) or len(key) != 2 or not isinstance(key[1], str) or not key[1]:
                raise ValueError(f"BoundedBorrowConfig.ceilings: key must be a (group key, resource) pair, got {key!r}")
            try:
                hash(key)
            except TypeError:
                raise ValueError(f"BoundedBorrowConfig.ceilings: key must be hashable, got {key!r}") from None
            ceilings[key] = _positive_int(value, f"BoundedBorrowConfig.ceilings[{key!r}]")
        object.__setattr__(self, "ceilings", MappingProxyType(ceilings))
        if self.default_ceiling is not None:
            _positive_int(self.default_ceiling, "BoundedBorrowConfig.default_ceiling")
        reserve = self.reserve
        if isinstance(reserve, bool) or not isinstance(reserve, int) or reserve < 0:
            raise ValueError(f"BoundedBorrowConfig.reserve must be an int >= 0, got {reserve!r}")

    def ceiling(self, group: Hashable, resource: str, limit: int, *, shared: bool = True) -> int:
        """The configured ceiling (before the never-below-share clamp). The derived one keeps ``reserve``
        units free only on a ``shared`` resource: one no other group has used or asks for gains nothing
        from a reserve, so a group alone on its model may use all of it."""
        explicit = self.ceilings.get((group, resource))
        if explicit is not None:
            return explicit
        if self.default_ceiling is not None:
            return self.default_ceiling
        return limit - self.reserve if shared else limit


class _Shares:
    """Share arithmetic of one resource for one decision (built lazily, only when a group might borrow)."""

    __slots__ = ("limit", "resource", "total_weight")

    def __init__(self, resource: str, limit: int, total_weight: float) -> None:
        self.resource = resource
        self.limit = limit
        self.total_weight = total_weight

    def share(self, weight: float) -> float:
        return self.limit * weight / self.total_weight

    def units(self, weight: float) -> int:
        return max(1, math.ceil(self.share(weight) - _EPSILON))


class BoundedBorrowPolicy:
    """Weighted strict shares; borrowing beyond them bounded by a ceiling and repaid as leases complete."""

    def __init__(self, config: BoundedBorrowConfig | None = None) -> None:
        if config is not None and not isinstance(config, BoundedBorrowConfig):
            raise TypeError(f"config must be a BoundedBorrowConfig or None, got {config!r}")
        self.config = config if config is not None else BoundedBorrowConfig()
        # Both changed only in on_acquire/on_release, under the controller's lock (see the module doc).
        self._debt: dict[tuple[int, Hashable, str], int] = {}
        self._leasing: dict[Hashable, list[float]] = {}  # group -> [weight, active leases]
        self._users: dict[str, set[Hashable]] = {}  # resource -> up to two groups that leased it

    # -- evaluate (pure) -------------------------------------------------------------------------

    def evaluate(self, item: SchedulableTask, queue_view: QueueView, admission_view: TaskAdmissionView) -> PolicyDecision:
        key = item.group.key
        leased_now = admission_view.leased_resources_by_group.get(key, _EMPTY_LEASED)
        debts = admission_view.policy_debt_by_group_resource
        if not leased_now and not debts:
            return _ALLOW  # holds nothing: within its share everywhere, and nobody owes anything
        borrowed: dict[str, int] = {}
        shares: dict[str, _Shares] = {}
        for resource, amount in item.resource_request.pairs:
            leased = leased_now.get(resource, 0)
            debt = debts.get((key, resource), 0) if debts else 0
            if not leased and not debt:
                continue
            share = self._shares(shares, resource, key, item.group.weight, queue_view, admission_view)
            units = share.units(item.group.weight)
            within = leased == 0 or leased + amount <= units
            if within and not debt:
                continue
            peer = self._waiting_peer(key, resource, queue_view, admission_view, shares)
            facts: dict[str, Any] = {
                "resource": resource,
                "leased": leased,
                "amount": amount,
                "share": round(share.share(item.group.weight), 6),
                "share_units": units,
                "debt": debt,
            }
            if debt and peer is not None:
                return PolicyDecision(False, "borrow_debt", None, {**facts, "rule": "debt", "waiting_peer": repr(peer)})
            if within:
                continue
            if peer is not None:
                return PolicyDecision(False, "group_cap", None, {**facts, "rule": "share", "waiting_peer": repr(peer)})
            shared = self._shared(key, resource, queue_view)
            ceiling = max(self.config.ceiling(key, resource, share.limit, shared=shared), units, 1)
            if leased + amount > ceiling:
                return PolicyDecision(False, "group_cap", None, {**facts, "rule": "ceiling", "ceiling": ceiling})
            borrowed[resource] = min(amount, leased + amount - units)
        if not borrowed:
            return _ALLOW
        return PolicyDecision(True, diagnostics={"borrowed": MappingProxyType(borrowed)})

    def _shares(
        self,
        cache: dict[str, _Shares],
        resource: str,
        key: Hashable,
        weight: float,
        queue_view: QueueView,
        admission_view: TaskAdmissionView,
    ) -> _Shares:
        found = cache.get(resource)
        if found is not None:
            return found
        weights: dict[Hashable, float] = {key: weight}
        specs = queue_view.first_candidate_group_specs_by_group
        for peer in queue_view.queued_peer_demand_by_resource.get(resource, ()):
            if peer not in weights:
                spec = specs.get(peer)
                weights[peer] = spec.weight if spec is not None else self._leasing_weight(peer)
        for peer, held in admission_view.leased_resources_by_group.items():
            if peer not in weights and held.get(resource, 0):
                weights[peer] = self._leasing_weight(peer)
        total = sum(weights.values())
        if len(weights) == 1:
            total += weight  # a lone group counts one imaginary peer of equal weight
        found = cache[resource] = _Shares(resource, admission_view.resource_limits[resource], total)
        return found

    def _leasing_weight(self, key: Hashable) -> float:
        record = self._leasing.get(key)
        return record[0] if record is not None else 1.0

    def _waiting_peer(
        self,
        key: Hashable,
        resource: str,
        queue_view: QueueView,
        admission_view: TaskAdmissionView,
        shares: dict[str, _Shares],
    ) -> Hashable | None:
        """A peer whose head needs ``resource``, could run right now, and is admissible itself (see module doc)."""
        available = admission_view.resources_available
        leased_by_group = admission_view.leased_resources_by_group
        debts = admission_view.policy_debt_by_group_resource
        for peer, head in queue_view.first_candidate_tasks_by_group.items():
            if peer == key:
                continue
            resource_request = head.resource_request
            if resource not in resource_request.amounts:
                continue
            if any(available.get(r, 0) < a for r, a in resource_request.pairs):
                continue
            peer_leased = leased_by_group.get(peer, _EMPTY_LEASED)
            weight = head.group.weight
            admissible = True
            for r, a in resource_request.pairs:
                if debts.get((peer, r), 0):
                    admissible = False
                    break
                held = peer_leased.get(r, 0)
                if held and held + a > self._shares(shares, r, key, weight, queue_view, admission_view).units(weight):
                    admissible = False
                    break
            if admissible:
                return peer
        return None

    # -- transaction hooks (under the controller lock) ---------------------------------------------

    def _shared(self, key: Hashable, resource: str, queue_view: QueueView) -> bool:
        """Whether another group uses ``resource``: the worker slot always; else a group that leased it
        before (``_users``) or asks for it now."""
        if resource == SUBMISSION or any(user != key for user in self._users.get(resource, ())):
            return True
        return any(peer != key for peer in queue_view.queued_peer_demand_by_resource.get(resource, ()))

    def on_acquire(self, lease: TaskAdmissionLease, decision: PolicyDecision) -> PolicyStateDelta:
        group = lease.item.group
        for resource in lease.resources:
            users = self._users.setdefault(resource, set())
            if len(users) < 2:  # two users are enough to know a resource is shared
                users.add(group.key)
        record = self._leasing.get(group.key)
        if record is None:
            self._leasing[group.key] = [group.weight, 1]
        else:
            record[0] = group.weight
            record[1] += 1
        borrowed = decision.diagnostics.get("borrowed") if decision.diagnostics else None
        if not borrowed:
            return NO_CHANGE
        generation = lease.controller_generation
        for resource, units in borrowed.items():
            debt_key = (generation, group.key, resource)
            self._debt[debt_key] = self._debt.get(debt_key, 0) + units
        return PolicyStateDelta(debt_changes={(group.key, resource): units for resource, units in borrowed.items()})

    def on_release(self, lease: TaskAdmissionLease) -> PolicyStateDelta:
        key = lease.item.group.key
        record = self._leasing.get(key)
        if record is not None:
            record[1] -= 1
            if record[1] <= 0:
                del self._leasing[key]
        if not self._debt:
            return NO_CHANGE
        generation = lease.controller_generation
        repaid: dict[tuple[Hashable, str], int] = {}
        for resource, amount in lease.resources.items():
            debt_key = (generation, key, resource)
            debt = self._debt.get(debt_key, 0)
            if not debt:
                continue
            repay = min(debt, amount)
            if debt > repay:
                self._debt[debt_key] = debt - repay
            else:
                del self._debt[debt_key]
            repaid[(key, resource)] = -repay
        return PolicyStateDelta(debt_changes=repaid) if repaid else NO_CHANGE

    # -- diagnostics ---------------------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        return {
            "debt": {(group, resource): units for (_, group, resource), units in self._debt.items()},
            "leasing_groups": len(self._leasing),
        }

    def __repr__(self) -> str:
        config = self.config
        return (
            f"BoundedBorrowPolicy(ceilings={dict(config.ceilings)!r}, default_ceiling={config.default_ceiling!r}, "
            f"reserve={config.reserve}, debtors={len(self._debt)})"
        )
