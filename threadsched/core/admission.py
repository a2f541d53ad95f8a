"""Task admission: resource limits, leases and per-group accounting.

Hard capacity comes in two kinds, both taken non-blocking and all-or-nothing under the controller lock:

* The worker slots (``submission``, one unit per task) are a ``threading.BoundedSemaphore``: one
  ``acquire(blocking=False)`` per lease, one ``release()`` back, and a ``BoundedSemaphore`` raises on
  over-release.
* Every other resource is *counted*: its free units are an int under the controller lock, so a lease of
  10**9 units (bytes, tokens) costs what a lease of one does. A semaphore would cost one ``acquire`` per
  unit taken, under the lock (seconds for millions of units, with ``snapshot()`` and every other task
  waiting). In place of the semaphore's bound, ``release`` checks before it changes anything that no
  resource would have more units free than its limit, and raises if one would (capacity stays as it was).

Each lease carries its own release flag, an atomic test-and-set (``Lock.acquire(blocking=False)``), so
only the first release of a lease returns capacity no matter how many threads race to release it.

Lock order: ``TaskAdmissionController._lock`` → ``FairTaskQueue._lock`` (a queue view handed to
the policy may be materialized while the controller lock is held). The queue never calls the
controller under its lock. The policy runs under the controller lock and must be pure.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Hashable, Mapping
from types import MappingProxyType
from typing import Final

from threadsched.core.contracts import SUBMISSION, SchedulableTask, SchedulerResourceRequest
from threadsched.core.policy import ALLOW, NO_CHANGE, PolicyDecision, PolicyStateDelta, StrictFairPolicy, TaskAdmissionPolicy
from threadsched.core.queue import FairTaskQueue
from threadsched.core.values import (
    RELEASED,
    AdmissionStatistics,
    DenialReason,
    QueueView,
    ReleaseReason,
    ReleaseResult,
    TaskAdmissionBlockSummary,
    TaskAdmissionConfig,
    TaskAdmissionDenied,
    TaskAdmissionLease,
    TaskAdmissionView,
)

_POLICY_REASONS: Final = frozenset({"group_cap", "borrow_debt"})
_generations = itertools.count(1)
LOGGER = logging.getLogger("threadsched")
_UNREPORTED_POLICY_ERRORS_KEPT = 64
Approval = tuple[PolicyDecision, int]
"""What ``approve`` returns: the allowing decision and the controller state version it was made in."""


POLICY_METHODS: Final = ("evaluate", "on_acquire", "on_release")
"""What ``TaskAdmissionPolicy`` asks of a policy; checked when a controller is built."""


def check_policy(policy: object) -> TaskAdmissionPolicy | None:
    """``policy`` if it is None or implements the three methods, else ``TypeError`` naming what it lacks (an
    object without them would otherwise be accepted and deny every task, with a traceback in the log)."""
    if policy is None:
        return None
    if isinstance(policy, type):
        # Its methods are functions, so it would pass the check below and fail at its first call.
        raise TypeError(
            f"policy must be a TaskAdmissionPolicy instance, got the class {policy.__name__} (pass {policy.__name__}())"
        )
    missing = [name for name in POLICY_METHODS if not callable(getattr(policy, name, None))]
    if missing:
        raise TypeError(
            f"policy must implement TaskAdmissionPolicy ({', '.join(POLICY_METHODS)}); {policy!r} lacks {', '.join(missing)}"
        )
    return policy  # type: ignore[return-value]  # the methods are there; their signatures are the policy's word


class TaskAdmissionController:
    def __init__(self, config: TaskAdmissionConfig | None = None, policy: TaskAdmissionPolicy | None = None) -> None:
        if config is not None and not isinstance(config, TaskAdmissionConfig):
            raise TypeError(f"config must be a TaskAdmissionConfig or None, got {config!r}")
        policy = check_policy(policy)
        self._policy: TaskAdmissionPolicy = policy if policy is not None else StrictFairPolicy()
        # The default policy allows every group without an admitted_limit and never changes state: for
        # it, the per-task hot path skips the policy calls and the live view they would read.
        self._passive_policy = type(self._policy) is StrictFairPolicy
        self._lock = threading.Lock()
        self._generation = next(_generations)
        self._lease_ids = itertools.count(1)
        limits = dict((config or TaskAdmissionConfig()).all_limits)
        self._limits: Mapping[str, int] = MappingProxyType(limits)
        self._limit_of = limits  # the same limits as a plain dict: release's bound check reads it
        # The worker slots. Every other resource is counted in _available alone (see the module docstring).
        self._slots = threading.BoundedSemaphore(limits[SUBMISSION])
        self._available: dict[str, int] = dict(limits)  # free units; for submission, what _slots holds
        self._leased: dict[str, int] = {resource: 0 for resource in limits}
        self._peak_leased: dict[str, int] = {resource: 0 for resource in limits}  # high-water marks
        self._leased_by_group: dict[Hashable, dict[str, int]] = {}
        self._running_by_group: dict[Hashable, int] = {}
        self._debt: dict[tuple[Hashable, str], int] = {}
        self._active: dict[int, TaskAdmissionLease] = {}
        self._release_diagnostics: dict[str, int] = {}
        self._policy_counters: dict[str, int] = {}
        self._shut_down = False
        # Bumped by every acquire/release: an approval (``approve``) is trusted by try_acquire only while current.
        self._version = 0
        # Resources other than submission with no unit free: the queue skips heads that need one.
        self._exhausted: frozenset[str] = frozenset()
        self._policy_error_logged = False
        # Denials by a raising evaluate, kept until the dispatcher reports them as events (select_next
        # only sees "not eligible"); bounded so a policy failing on every call cannot grow it.
        self._unreported_policy_errors: list[TaskAdmissionDenied] = []
        self._live_view = TaskAdmissionView(
            resource_limits=self._limits,
            resources_available=MappingProxyType(self._available),
            leased_resources=MappingProxyType(self._leased),
            leased_resources_by_group=MappingProxyType(self._leased_by_group),
            running_counts_by_group=MappingProxyType(self._running_by_group),
            policy_debt_by_group_resource=MappingProxyType(self._debt),
            active_lease_count=0,
            release_diagnostics=MappingProxyType(self._release_diagnostics),
        )

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def policy(self) -> TaskAdmissionPolicy:
        return self._policy

    @property
    def resource_limits(self) -> Mapping[str, int]:
        return self._limits

    def available(self, resource: str = SUBMISSION) -> int:
        """Units of ``resource`` free right now (a racy hint, fine for fast paths)."""
        return self._available.get(resource, 0)

    def validate_resource_request(self, resource_request: SchedulerResourceRequest, *, field_name: str = "resources") -> None:
        """Raise ``ValueError`` for a resource request that could never be admitted."""
        for resource, amount in resource_request.amounts.items():
            limit = self._limits.get(resource)
            if limit is None:
                known = sorted(self._limits)
                raise ValueError(f"{field_name}: unknown resource {resource!r} (no limit configured; known: {known})")
            if amount > limit:
                raise ValueError(
                    f"{field_name}[{resource!r}] = {amount} exceeds that resource's limit {limit}; it could never be admitted"
                )

    # -- admission ----------------------------------------------------------------------------

    def is_eligible(self, item: SchedulableTask, queue_view: QueueView) -> bool:
        with self._lock:
            return not isinstance(self._decide_locked(item, queue_view), TaskAdmissionDenied)

    def approve(self, item: SchedulableTask, queue_view: QueueView) -> Approval | None:
        """``is_eligible`` for ``FairTaskQueue.select_next``: the policy's decision and the state version it
        was made in, which the queue carries in ``QueueSelection.decision`` to ``try_acquire``."""
        with self._lock:
            decision = self._decide_locked(item, queue_view)
            if isinstance(decision, TaskAdmissionDenied):
                # try_acquire returns its denials to the dispatcher; these would otherwise go unseen.
                unreported = self._unreported_policy_errors
                if "policy_error" in decision.diagnostics and len(unreported) < _UNREPORTED_POLICY_ERRORS_KEPT:
                    unreported.append(decision)
                return None
            return decision, self._version

    @property
    def has_unreported_policy_errors(self) -> bool:
        return bool(self._unreported_policy_errors)

    def take_policy_error_denials(self) -> list[TaskAdmissionDenied]:
        """Denials by a raising ``evaluate`` since the last call, for the dispatcher to report."""
        with self._lock:
            denials, self._unreported_policy_errors = self._unreported_policy_errors, []
        return denials

    def exhausted_resources(self) -> frozenset[str]:
        """Resources other than ``submission`` with no unit free right now (a hint; an atomic read)."""
        return self._exhausted

    def try_acquire(
        self, item: SchedulableTask, queue_view: QueueView, approval: Approval | None = None
    ) -> TaskAdmissionLease | TaskAdmissionDenied:
        """Lease ``item``'s resources, all or nothing. ``approval`` (from ``approve`` on this item) spares a
        second policy evaluation when nothing was acquired or released since."""
        with self._lock:
            if approval is not None and approval[1] == self._version:
                decision = approval[0]
            else:
                outcome = self._decide_locked(item, queue_view)
                if isinstance(outcome, TaskAdmissionDenied):
                    return outcome
                decision = outcome
            lease = self._grant_locked(item, decision)
            if lease is None:
                return TaskAdmissionDenied(item, "no_capacity")
            return lease

    def lease_fitting(self, queue: FairTaskQueue, limit: int) -> list[TaskAdmissionLease]:
        """The admission fast path for the default policy: take up to ``limit`` queued tasks in fair order,
        each with its lease, in one lock section (``FairTaskQueue.take_fitting`` against the free units).

        Returns ``[]`` under any other policy, after ``shutdown``, or when the first candidate does not
        fit; the caller then falls back to ``select_next`` / ``try_acquire`` for that candidate.
        """
        if not self._passive_policy:
            return []
        with self._lock:
            if self._shut_down:
                return []
            items = queue.take_fitting(dict(self._available), limit)
            leases: list[TaskAdmissionLease] = []
            for index, item in enumerate(items):
                lease = self._grant_locked(item, ALLOW)
                if lease is None:
                    # Unreachable while the free counts agree with the slot semaphore; nothing may be dropped.
                    queue.enqueue(items[index:])
                    break
                leases.append(lease)
            return leases

    def _grant_locked(self, item: SchedulableTask, decision: PolicyDecision) -> TaskAdmissionLease | None:
        """Take ``item``'s units, all or nothing, and record the lease: the counted resources are checked
        first (nothing is taken until everything fits), then the one worker slot is taken from its semaphore.
        O(resources named), whatever the amounts."""
        resource_request = item.resource_request
        available = self._available
        for resource, amount in resource_request.counted:
            if available[resource] < amount:
                return None
        if not self._slots.acquire(blocking=False):
            return None
        pairs = resource_request.pairs
        lease = TaskAdmissionLease(next(self._lease_ids), item, resource_request.amounts, time.monotonic(), self._generation)
        key = item.group.key
        group_leased = self._leased_by_group.get(key)
        if group_leased is None:
            group_leased = self._leased_by_group[key] = {}
        leased, peak = self._leased, self._peak_leased
        for resource, amount in pairs:
            free = available[resource] - amount
            available[resource] = free
            if not free and resource != SUBMISSION:
                self._exhausted = self._exhausted | {resource}
            now_leased = leased[resource] = leased[resource] + amount
            if now_leased > peak[resource]:
                peak[resource] = now_leased
            group_leased[resource] = group_leased.get(resource, 0) + amount
        self._running_by_group[key] = self._running_by_group.get(key, 0) + 1
        self._active[lease.lease_id] = lease
        self._version += 1
        if not self._passive_policy:
            try:
                delta = self._policy.on_acquire(lease, decision)
            except Exception:
                delta = self._policy_failed_locked("on_acquire")
            self._apply_delta_locked(delta)
        return lease

    def release(self, lease: TaskAdmissionLease) -> ReleaseResult:
        """Return a lease's capacity; only the first release of a lease counts, later ones are diagnosed.

        Raises only if the books would over-release a resource (a ``RuntimeError``, capacity unchanged): an
        internal fault no caller can cause, refused as a ``BoundedSemaphore`` refuses its own."""
        if not isinstance(lease, TaskAdmissionLease):
            return self._diagnose("unknown_lease")
        if lease.controller_generation != self._generation:
            return self._diagnose("wrong_controller_generation")
        if not lease._claim_release():
            return self._diagnose("duplicate")
        with self._lock:
            active = self._active.get(lease.lease_id)
            if active is None:
                return self._diagnose_locked("unknown_lease")
            if active is not lease:
                return self._diagnose_locked("stale_lease")
            # An active lease is one this controller granted: its resources are its item's request.
            pairs = lease.item.resource_request.pairs
            available, limit_of = self._available, self._limit_of
            # The bound a BoundedSemaphore keeps, for every resource: checked before anything changes.
            for resource, amount in pairs:
                if available[resource] + amount > limit_of[resource]:
                    raise self._over_release_locked(lease, resource, amount)
            self._slots.release()  # first: if even its own bound refused, nothing else has changed
            del self._active[lease.lease_id]
            self._version += 1
            key = lease.item.group.key
            group_leased = self._leased_by_group[key]
            for resource, amount in pairs:
                free = available[resource]
                if not free and resource != SUBMISSION:
                    self._exhausted = self._exhausted - {resource}
                available[resource] = free + amount
                self._leased[resource] -= amount
                left = group_leased[resource] - amount
                if left:
                    group_leased[resource] = left
                else:
                    del group_leased[resource]
            if not group_leased:
                del self._leased_by_group[key]
            running = self._running_by_group[key] - 1
            if running:
                self._running_by_group[key] = running
            else:
                del self._running_by_group[key]
            if not self._passive_policy:
                try:
                    delta = self._policy.on_release(lease)
                except Exception:
                    # Capacity is already back; a broken policy must not make release() raise.
                    delta = self._policy_failed_locked("on_release")
                self._apply_delta_locked(delta)
        return RELEASED

    def shutdown(self) -> None:
        """Deny every later acquisition with reason ``shutdown``; releases still work."""
        with self._lock:
            self._shut_down = True
            self._version += 1

    # -- views ----------------------------------------------------------------------------------

    def peak_leased_resources(self) -> dict[str, int]:
        """The most units of each resource ever leased at once (observed maxima for capacity plans)."""
        with self._lock:
            return dict(self._peak_leased)

    def view(self) -> TaskAdmissionView:
        with self._lock:
            return TaskAdmissionView(
                resource_limits=self._limits,
                resources_available=MappingProxyType(dict(self._available)),
                leased_resources=MappingProxyType(dict(self._leased)),
                leased_resources_by_group=MappingProxyType(
                    {key: MappingProxyType(dict(amounts)) for key, amounts in self._leased_by_group.items()}
                ),
                running_counts_by_group=MappingProxyType(dict(self._running_by_group)),
                policy_debt_by_group_resource=MappingProxyType(dict(self._debt)),
                active_lease_count=len(self._active),
                release_diagnostics=MappingProxyType(dict(self._release_diagnostics)),
            )

    @property
    def active_lease_count(self) -> int:
        return len(self._active)

    def leased_task_ids(self) -> tuple[str, ...]:
        """The task of every lease held right now, in lease order (``ShutdownReport.still_running``)."""
        with self._lock:
            return tuple(lease.item.task_id for lease in self._active.values())

    def explain_blocked(self, queue_view: QueueView) -> TaskAdmissionBlockSummary:
        blocked: dict[Hashable, str] = {}
        eligible: list[Hashable] = []
        earliest: float | None = None
        with self._lock:
            for key, head in queue_view.first_candidate_tasks_by_group.items():
                outcome = self._decide_locked(head, queue_view)
                if not isinstance(outcome, TaskAdmissionDenied):
                    eligible.append(key)
                    continue
                blocked[key] = outcome.reason
                after = outcome.available_after
                if after is not None:
                    earliest = after if earliest is None else min(earliest, after)
            return TaskAdmissionBlockSummary(
                queued_total=queue_view.queued_total,
                active_lease_count=len(self._active),
                resources_available=MappingProxyType(dict(self._available)),
                blocked_groups=MappingProxyType(blocked),
                eligible_groups=tuple(eligible),
                earliest_available_after=earliest,
            )

    def statistics(self) -> AdmissionStatistics:
        with self._lock:
            return AdmissionStatistics(
                active_leases=len(self._active),
                resources_available=MappingProxyType(dict(self._available)),
                resource_limits=self._limits,
                peak_leased_resources=MappingProxyType(dict(self._peak_leased)),
                release_diagnostics=MappingProxyType(dict(self._release_diagnostics)),
                policy_counters=MappingProxyType(dict(self._policy_counters)),
            )

    def __repr__(self) -> str:
        in_use = {r: self._limits[r] - self._available[r] for r in self._limits}
        return (
            f"<TaskAdmissionController gen={self._generation} leases={len(self._active)} "
            f"in_use={in_use} limits={dict(self._limits)} policy={self._policy!r}>"
        )

    # -- internals (lock held) --------------------------------------------------------------

    def _decide_locked(self, item: SchedulableTask, queue_view: QueueView) -> TaskAdmissionDenied | PolicyDecision:
        """The denial, or the policy's allowing decision (which ``on_acquire`` receives)."""
        if self._shut_down:
            return TaskAdmissionDenied(item, "shutdown")
        available = self._available
        shortage: TaskAdmissionDenied | None = None
        # Check every resource before reporting a shortage: an unknown resource must be an error,
        # not a "no_capacity" wait because an earlier resource happens to be exhausted.
        for resource, amount in item.resource_request.pairs:
            free = available.get(resource)
            if free is None:
                raise ValueError(f"resources: unknown resource {resource!r} for task {item.task_id!r}")
            if shortage is None and free < amount:
                shortage = TaskAdmissionDenied(
                    item, "no_capacity", diagnostics={"resource": resource, "needed": amount, "available": free}
                )
        if shortage is not None:
            return shortage
        if self._passive_policy and item.group.admitted_limit is None:
            return ALLOW
        live = self._live_view
        # The live view is this controller's own object, valid only during evaluate: refreshing its
        # one scalar in place avoids building a view per decision.
        object.__setattr__(live, "active_lease_count", len(self._active))
        try:
            decision = self._policy.evaluate(item, queue_view, live)
            if not isinstance(decision, PolicyDecision):
                raise TypeError(f"evaluate must return a PolicyDecision, got {decision!r}")
        except Exception as error:
            # A broken policy denies (counted, logged) instead of taking the dispatcher down with it.
            self._count_policy_error_locked("evaluate")
            return TaskAdmissionDenied(item, "policy_denial", diagnostics={"policy_error": type(error).__name__})
        if decision.allowed:
            return decision
        reason: DenialReason = decision.reason if decision.reason in _POLICY_REASONS else "policy_denial"  # type: ignore[assignment]
        return TaskAdmissionDenied(item, reason, decision.available_after, decision.diagnostics)

    def _over_release_locked(self, lease: TaskAdmissionLease, resource: str, amount: int) -> RuntimeError:
        """The error for a release that would leave more of ``resource`` free than its limit: the books are
        wrong (no caller can cause it; a lease's own flag stops a second release). Counted, logged, and
        raised with nothing changed, so the capacity stays held instead of being inflated."""
        self._release_diagnostics["over_release"] = self._release_diagnostics.get("over_release", 0) + 1
        message = (
            f"release of lease {lease.lease_id} (task {lease.item.task_id!r}) would return {amount} unit(s) of "
            f"{resource!r} while {self._available[resource]} of its limit {self._limit_of[resource]} are free: "
            "over-release refused, capacity unchanged"
        )
        LOGGER.error("threadsched: %s", message)
        return RuntimeError(message)

    def _policy_failed_locked(self, hook: str) -> PolicyStateDelta:
        self._count_policy_error_locked(hook)
        return NO_CHANGE

    def _count_policy_error_locked(self, hook: str) -> None:
        """Count every policy error; log the first with its traceback (a policy failing on every call must
        not flood the log), later ones at debug level."""
        self._policy_counters["policy_errors"] = self._policy_counters.get("policy_errors", 0) + 1
        if not self._policy_error_logged:
            self._policy_error_logged = True
            LOGGER.error("threadsched: %r.%s raised; treated as a denial / no state change", self._policy, hook, exc_info=True)
        else:
            LOGGER.debug("threadsched: %r.%s raised again", self._policy, hook, exc_info=True)

    def _apply_delta_locked(self, delta: PolicyStateDelta) -> None:
        if delta is NO_CHANGE:
            return
        for debt_key, change in delta.debt_changes.items():
            value = self._debt.get(debt_key, 0) + change
            if value:
                self._debt[debt_key] = value
            else:
                self._debt.pop(debt_key, None)
        for name, change in delta.counters.items():
            self._policy_counters[name] = self._policy_counters.get(name, 0) + change

    def _diagnose(self, reason: ReleaseReason) -> ReleaseResult:
        with self._lock:
            return self._diagnose_locked(reason)

    def _diagnose_locked(self, reason: ReleaseReason) -> ReleaseResult:
        self._release_diagnostics[reason] = self._release_diagnostics.get(reason, 0) + 1
        return ReleaseResult(False, reason)


__all__ = [
    "DenialReason",
    "ReleaseReason",
    "ReleaseResult",
    "TaskAdmissionBlockSummary",
    "TaskAdmissionConfig",
    "TaskAdmissionController",
    "TaskAdmissionDenied",
    "TaskAdmissionLease",
    "TaskAdmissionView",
]
