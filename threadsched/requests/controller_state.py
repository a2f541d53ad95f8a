"""State behind ``AdaptiveRequestAdmissionController``: endpoints, resources, waiters and the AIMD rule.

None of these objects has a lock of its own. Each belongs to one controller and is read and written only
under that controller's ``_lock`` (hence the ``_locked`` suffix on every method that touches shared
state); none of them calls user code or an event sink. ``request_event`` builds the controller's events and
``cancel_probe`` reads a caller's cancel object (user code: called only with the lock released).

Fair waiter order per resource is weighted virtual time (WFQ): each group has a finish tag ``F[g]``, the
resource a virtual time ``V``. The next grant goes to the head (oldest waiter) of the group with the
smallest ``(max(V, F[g]), head sequence)``; granting to ``g`` sets ``V = max(V, F[g])`` and
``F[g] = V + 1 / weight``, counted in whole quanta so that no step ever rounds away. A group that starts
waiting begins at ``V``, so it can neither monopolise the resource nor cash in credit from an idle
period. The tags are dropped when no waiter remains.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from threadsched.core.context import current_task_correlation
from threadsched.core.contracts import fair_share_quanta
from threadsched.core.events import REQUEST_STREAM, SchedulerEvent
from threadsched.requests.contracts import (
    ProviderModelKey,
    RequestAdmissionConfig,
    RequestAdmissionDenied,
    RequestAdmissionItem,
    RequestAdmissionLease,
    RequestOutcome,
    RequestResourceKey,
    RequestResourceSnapshot,
)

NEVER = float("-inf")


class Endpoint:
    """One canonical provider/model: the aggregate in-flight count across its domains and aliases."""

    __slots__ = ("cap", "in_flight", "key", "resources")

    def __init__(self, key: ProviderModelKey, cap: int) -> None:
        self.key = key
        self.cap = cap
        self.in_flight = 0
        self.resources: list[ResourceState] = []

    def next_waiter_locked(self, now: float) -> Waiter | None:
        """Who gets the next free unit: the fair head of each resource that may lease now, the oldest of
        those heads first (the endpoint's domains compete for its aggregate cap)."""
        best: Waiter | None = None
        for resource in self.resources:
            if resource.waiter_count and resource.block_reason_locked(now) is None:
                head = resource.head_locked()
                if head is not None and (best is None or head.seq < best.seq):
                    best = head
        return best


class Waiter:
    """One blocked ``acquire``. ``lease`` is assigned by whichever thread grants it (hand-off), so a
    waiter that wakes up finds its lease already taken for it; ``state`` is ``waiting``, ``granted``
    (lease assigned, not yet picked up by the waiting thread) or ``done``."""

    __slots__ = ("cond", "item", "lease", "resource", "seq", "started_at", "state")

    def __init__(self, item: RequestAdmissionItem, resource: ResourceState, seq: int, lock: threading.Lock, now: float) -> None:
        self.item = item
        self.resource = resource
        self.seq = seq
        self.cond = threading.Condition(lock)
        self.lease: RequestAdmissionLease | None = None
        self.started_at = now
        self.state = "waiting"

    def timeout_locked(self, now: float, deadline: float | None, poll_s: float | None) -> float | None:
        """How long to wait before looking again: until the caller's deadline (``time.monotonic()``), the
        end of the resource's cooldown or the next cancel poll, whichever is first; None: until notified."""
        timeouts = [] if poll_s is None else [poll_s]
        if deadline is not None:
            timeouts.append(deadline - time.monotonic())
        if now < self.resource.blocked_until:
            timeouts.append(self.resource.blocked_until - now)
        return min(max(0.0, min(timeouts)), threading.TIMEOUT_MAX) if timeouts else None

    def abandon_locked(self) -> RequestAdmissionLease | None:
        """Leave, whatever the state; a lease granted but never picked up is returned (capacity given back)."""
        state, self.state = self.state, "done"
        if state == "waiting":
            self.resource.remove_waiter_locked(self)
        if state != "granted" or self.lease is None:
            return None
        self.lease.claim_release()
        self.resource.give_back_locked()
        return self.lease

    def give_up_locked(self, reason: str, now: float) -> RequestAdmissionDenied:
        """Leave the queue with a denial saying what it was still waiting for."""
        resource = self.resource
        resource.remove_waiter_locked(self)
        self.state = "done"
        diagnostics = {"waited_s": now - self.started_at, "blocked_by": resource.block_reason_locked(now) or "queued_waiters"}
        retry_after = resource.blocked_until - now if now < resource.blocked_until else None
        return RequestAdmissionDenied(self.item, reason, retry_after, MappingProxyType(diagnostics))


@dataclass(frozen=True, slots=True)
class ReleaseEffect:
    """What one release did to its resource's AIMD state."""

    rate_limited: bool
    new_wave: bool = False  # it opened a new rate-limit wave (and applied that wave's one decrease)
    cooldown: float = 0.0  # seconds of cooldown it asked for, after clamping
    change: tuple[int, int] | None = None  # (before, after) when the limit moved


def cooldown_seconds(retry_after: object, config: RequestAdmissionConfig) -> tuple[float, bool]:
    """(cooldown to apply, whether ``retry_after`` was a usable number of seconds). Never raises: a missing,
    NaN or non-numeric value means the configured default; the result is clamped to ``[0, max_cooldown_s]``."""
    try:
        value = float(retry_after)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        value = math.nan
    usable = not isinstance(retry_after, bool) and not math.isnan(value)
    return min(max(value if usable else float(config.default_cooldown_s), 0.0), float(config.max_cooldown_s)), usable


class ResourceState:
    """One canonical resource (provider/model/domain): its adaptive limit, leases and waiters."""

    def __init__(self, key: RequestResourceKey, endpoint: Endpoint, config: RequestAdmissionConfig) -> None:
        self.key = key
        self.endpoint = endpoint
        self.limit = min(config.initial_limit or endpoint.cap, endpoint.cap)
        self.in_flight = 0
        self.wave = 0
        self.blocked_until = NEVER
        self.successes = 0
        self.ceiling: int | None = None
        self.ceiling_at = -math.inf  # when the ceiling was last set (clock time)
        self.consecutive_rate_limits = 0
        self.last_outcome: RequestOutcome | None = None
        self.acquired_total = 0
        self.released_total = 0
        self.double_releases = 0
        self.unknown_releases = 0
        # group -> {seq: waiter}, insertion (= arrival) ordered, so a group's head is its oldest waiter.
        self.queues: dict[Hashable, dict[int, Waiter]] = {}
        self.waiter_count = 0
        # Whole quanta (``fair_share_quanta``), like the task queue's clock: exact however far it runs.
        self.vtime = 0
        self.finish: dict[Hashable, int] = {}

    # -- admission ------------------------------------------------------------------------------

    def block_reason_locked(self, now: float) -> str | None:
        """Why a new lease cannot be taken on this resource right now (ignoring waiters), or None."""
        if now < self.blocked_until:
            return "cooldown"
        if self.in_flight >= self.limit:
            return "at_limit"
        if self.endpoint.in_flight >= self.endpoint.cap:
            return "aggregate_cap"
        return None

    def state_locked(self) -> dict[str, int]:
        return {"limit": self.limit, "in_flight": self.in_flight, "aggregate_in_flight": self.endpoint.in_flight}

    def take_locked(self) -> None:
        self.in_flight += 1
        self.endpoint.in_flight += 1
        self.acquired_total += 1

    def give_back_locked(self) -> None:
        self.in_flight -= 1
        self.endpoint.in_flight -= 1

    # -- waiters --------------------------------------------------------------------------------

    def add_waiter_locked(self, waiter: Waiter) -> None:
        self.queues.setdefault(waiter.item.group, {})[waiter.seq] = waiter
        self.waiter_count += 1

    def remove_waiter_locked(self, waiter: Waiter) -> bool:
        queue = self.queues.get(waiter.item.group)
        if queue is None or queue.pop(waiter.seq, None) is None:
            return False
        if not queue:
            del self.queues[waiter.item.group]
        self.waiter_count -= 1
        if not self.waiter_count:
            self.finish.clear()
        return True

    def head_locked(self) -> Waiter | None:
        """The waiter that gets the next grant here: smallest (start tag, arrival sequence)."""
        best: Waiter | None = None
        best_key = (math.inf, math.inf)
        vtime = self.vtime
        finish = self.finish
        for group, queue in self.queues.items():
            head = next(iter(queue.values()))
            key = (max(vtime, finish.get(group, vtime)), head.seq)
            if key < best_key:
                best, best_key = head, key
        return best

    def pop_head_locked(self, waiter: Waiter) -> None:
        """Remove the granted ``waiter`` (the current head) and advance virtual time for its group."""
        group = waiter.item.group
        start = max(self.vtime, self.finish.get(group, self.vtime))
        self.vtime = start
        self.finish[group] = start + fair_share_quanta(waiter.item.weight)
        self.remove_waiter_locked(waiter)

    def waiters_locked(self) -> list[Waiter]:
        return [waiter for queue in self.queues.values() for waiter in queue.values()]

    # -- AIMD -----------------------------------------------------------------------------------

    def release_locked(
        self,
        lease: RequestAdmissionLease,
        outcome: RequestOutcome,
        now: float,
        retry_after: object,
        config: RequestAdmissionConfig,
    ) -> ReleaseEffect:
        """Return ``lease``'s capacity and apply AIMD. Only the first rate limit reported by a lease of the
        current wave lowers the limit (and opens the next wave); later ones from that wave (other attempts
        that were in flight) only extend the cooldown by their own ``Retry-After``."""
        self.give_back_locked()
        self.released_total += 1
        self.last_outcome = outcome
        before = self.limit
        if outcome is RequestOutcome.RATE_LIMITED:
            cooldown, usable = cooldown_seconds(retry_after, config)
            self.consecutive_rate_limits += 1
            self.successes = 0
            new_wave = lease.wave == self.wave
            if new_wave:
                self.ceiling, self.ceiling_at = before, now
                self.limit = max(1, math.floor(before * config.decrease_factor))
                self.wave += 1
            if new_wave or usable:
                self.blocked_until = max(self.blocked_until, now + cooldown)
            return ReleaseEffect(True, new_wave, cooldown, (before, self.limit) if self.limit != before else None)
        if outcome is RequestOutcome.SUCCESS:
            self.consecutive_rate_limits = 0
            if now >= self.blocked_until:  # no growth during a cooldown
                self.successes += 1
                if self.successes >= config.successes_until_increase:
                    self.successes = 0
                    self.limit = max(before, min(self.growth_top(now, config), before + config.increase_step))
        return ReleaseEffect(False, change=(before, self.limit) if self.limit != before else None)

    def growth_top(self, now: float, config: RequestAdmissionConfig) -> int:
        """How far additive increase may go: the cap, but below the last rate-limit ceiling while it is held
        (``ceiling_hold_s``), so a limit that has found the provider's rate stops probing past it."""
        if self.ceiling is not None and now - self.ceiling_at < config.ceiling_hold_s:
            return min(self.endpoint.cap, max(1, self.ceiling - 1))
        return self.endpoint.cap

    # -- views ----------------------------------------------------------------------------------

    def snapshot_locked(self, now: float, shut_down: bool) -> RequestResourceSnapshot:
        endpoint = self.endpoint
        cooling = now < self.blocked_until
        room = max(0, endpoint.cap - endpoint.in_flight)
        effective = 0 if cooling or shut_down else max(0, min(self.limit, self.in_flight + room))
        return RequestResourceSnapshot(
            resource=self.key,
            current_limit=self.limit,
            effective_max=effective,
            static_cap=endpoint.cap,
            in_flight=self.in_flight,
            aggregate_in_flight=endpoint.in_flight,
            waiters=self.waiter_count,
            blocked_until=self.blocked_until if cooling else None,
            cooldown_remaining=self.blocked_until - now if cooling else 0.0,
            rate_limit_ceiling=self.ceiling,
            consecutive_rate_limits=self.consecutive_rate_limits,
            last_outcome=self.last_outcome,
            acquired_total=self.acquired_total,
            released_total=self.released_total,
            double_releases=self.double_releases,
            unknown_releases=self.unknown_releases,
        )


class ResourceRegistry:
    """Resources by any key seen (aliases included) and by canonical key, created on first use."""

    __slots__ = ("by_key", "config", "endpoints", "resources")

    def __init__(self, config: RequestAdmissionConfig) -> None:
        self.config = config
        self.endpoints: dict[ProviderModelKey, Endpoint] = {}
        self.resources: dict[RequestResourceKey, ResourceState] = {}  # by canonical key
        self.by_key: dict[RequestResourceKey, ResourceState] = {}

    def canonical(self, key: RequestResourceKey) -> RequestResourceKey:
        """``key`` with its provider/model resolved; ``ValueError`` naming an unknown provider/model."""
        try:
            target = self.config.resolve(key.provider_model)
        except KeyError as error:
            raise ValueError(f"request resource {key}: {error.args[0]}") from None
        return key if target == key.provider_model else RequestResourceKey(target.provider, target.model, key.domain)

    def get_locked(self, key: RequestResourceKey) -> ResourceState:
        state = self.by_key.get(key)
        if state is None:
            canonical = self.canonical(key)
            state = self.resources.get(canonical)
            if state is None:
                endpoint = self.endpoints.get(canonical.provider_model)
                if endpoint is None:
                    model = canonical.provider_model
                    endpoint = self.endpoints[model] = Endpoint(model, self.config.aggregate_cap(model))
                state = self.resources[canonical] = ResourceState(canonical, endpoint, self.config)
                endpoint.resources.append(state)
            self.by_key[key] = state
        return state

    def peek_locked(self, key: RequestResourceKey) -> ResourceState:
        """The state of ``key``; for a resource never used, a throwaway that is not registered."""
        state = self.by_key.get(key)
        if state is not None:
            return state
        canonical = self.canonical(key)
        state = self.resources.get(canonical)
        if state is not None:
            return state
        model = canonical.provider_model
        endpoint = self.endpoints.get(model) or Endpoint(model, self.config.aggregate_cap(model))
        return ResourceState(canonical, endpoint, self.config)


def request_event(
    kind: str,
    sequence: int,
    captured_at: float,
    item: RequestAdmissionItem | None,
    resource: RequestResourceKey | None,
    *,
    lease_id: int | None = None,
    reason: str | None = None,
    diagnostics: Mapping[str, Any] | None = None,
) -> SchedulerEvent:
    """A ``requests``-stream event. Call it in the thread the event is about: the running task's
    ``current_task_correlation()`` is captured here, under the item's own correlation."""
    correlation = {**current_task_correlation(), **(item.correlation if item is not None else {})}
    run_id, task_id, execution_id = (correlation.get(name) for name in ("run_id", "task_id", "execution_id"))
    return SchedulerEvent(
        kind=kind,
        sequence=sequence,
        captured_at=captured_at,
        task_id=task_id if isinstance(task_id, str) else None,
        execution_id=execution_id if isinstance(execution_id, str) else None,
        lease_id=lease_id,
        group=item.group if item is not None else None,
        resources=MappingProxyType({str(resource): 1}) if resource is not None else None,
        reason=reason,
        diagnostics=MappingProxyType(dict(diagnostics or {})),
        stream=REQUEST_STREAM,
        run_id=run_id if isinstance(run_id, str) else None,
        correlation=MappingProxyType(correlation),
    )


def finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_item(item: object) -> None:
    if not isinstance(item, RequestAdmissionItem):
        raise TypeError(f"item must be a RequestAdmissionItem, got {item!r}")


def cancel_probe(cancel: object) -> Callable[[], bool]:
    """A callable reading ``cancel``: ``is_set()`` (``threading.Event``), else ``cancelled`` as a property
    (``CancelToken``) or a method (``concurrent.futures.Future``). It is user code: call it unlocked."""
    is_set = getattr(cancel, "is_set", None)
    if callable(is_set):
        return lambda: bool(is_set())
    if hasattr(cancel, "cancelled"):

        def probe() -> bool:
            flag = getattr(cancel, "cancelled")  # noqa: B009 - read on every call: it is usually a property
            return bool(flag() if callable(flag) else flag)

        return probe
    raise TypeError(f"cancel must have is_set() or cancelled, got {cancel!r}")
