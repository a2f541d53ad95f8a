"""Adaptive request admission: an AIMD limit per provider/model/domain under each endpoint's static cap.

Each model call attempt takes a ``RequestAdmissionLease`` (``try_acquire`` or blocking ``acquire``) and hands
it back with its outcome (``release``). Resources are created on first use for any key whose provider/model
``config.resolve`` knows; aliases share their endpoint's aggregate in-flight cap.

Waiting: each blocked ``acquire`` is a waiter with its own ``Condition`` on the controller lock. Capacity is
*handed off*: whoever frees it (a release, or a waiter that wakes to find a cooldown over) picks the fair next
waiter, makes its lease under the lock and notifies just that waiter, which wakes to find the lease assigned:
no barging, no thundering herd. Waits are timed to the caller's deadline and the resource's cooldown end, so
an expiring cooldown wakes waiters with no release at all. A cancel object cannot wake a ``Condition``; while
one is given the wait is sliced into ``cancel_poll_s`` steps (bounded polling, for cancellation only). A
waiter that gives up (timeout, cancel, shutdown) leaves the queue under the lock, or returns the lease granted
to it meanwhile: a grant is never lost or leaked. ``acquire(timeout=...)`` is measured with
``time.monotonic()``; every other time (``acquired_at``, cooldowns, event ``captured_at``) comes from ``clock``.

Lock order: ``AdaptiveRequestAdmissionController._lock`` (shared by every waiter's ``Condition``) →
``RequestAdmissionLease._release_flag`` (a non-blocking test-and-set). Sinks and cancel objects are called
with the lock released; events are built under it (capturing the caller's ``current_task_correlation()``)
and delivered after. ``clock`` is called under the lock: it must be cheap and not call the controller.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from types import MappingProxyType
from typing import Any

from threadsched.core.events import LOGGER, REQUEST_STREAM, EventSink, SchedulerEvent
from threadsched.requests.contracts import (
    RequestAdmissionConfig,
    RequestAdmissionDenied,
    RequestAdmissionError,
    RequestAdmissionItem,
    RequestAdmissionLease,
    RequestOutcome,
    RequestReleaseResult,
    RequestResourceKey,
    RequestResourceSnapshot,
    checked_seconds,
)
from threadsched.requests.controller_state import (
    Endpoint,
    ResourceRegistry,
    ResourceState,
    Waiter,
    cancel_probe,
    check_item,
    finite_number,
    request_event,
)

DEFAULT_CANCEL_POLL_S = 0.05
MAX_CANCEL_POLL_S = 60.0  # how long a waiting acquire may miss its cancel; longer is a cancel that does not work
_COUNTERS = ["acquired", "released", "waits", "wait_timeouts", "wait_cancellations", "wait_shutdowns", "abandoned_grants"]
_COUNTERS += ["rate_limit_waves", "limit_decreases", "limit_increases", "sink_errors"]
Outcome = RequestAdmissionLease | RequestAdmissionDenied


class AdaptiveRequestAdmissionController:
    """Thread-safe (module docstring). ``sequence``: the ``requests``-stream counter, when shared."""

    def __init__(
        self,
        config: RequestAdmissionConfig,
        *,
        events: EventSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        cancel_poll_s: float = DEFAULT_CANCEL_POLL_S,
        sequence: Iterator[int] | None = None,
    ) -> None:
        if not isinstance(config, RequestAdmissionConfig):
            raise TypeError(f"config must be a RequestAdmissionConfig, got {config!r}")
        if events is not None and not callable(getattr(events, "emit", None)):
            raise TypeError(f"events must have an emit(event) method, got {events!r}")
        if not callable(clock):
            raise TypeError(f"clock must be callable, got {clock!r}")
        checked_seconds(cancel_poll_s, "cancel_poll_s", MAX_CANCEL_POLL_S, positive=True)
        if sequence is not None and not callable(getattr(sequence, "__next__", None)):
            raise TypeError(f"sequence must be an iterator of ints, got {sequence!r}")
        self._config = config
        self._sink = events
        self._clock = clock
        self._cancel_poll_s = float(cancel_poll_s)
        self._lock = threading.Lock()
        self._lease_ids = itertools.count(1)
        self._waiter_seq = itertools.count()
        self._sequence = sequence if sequence is not None else itertools.count()
        self._registry = ResourceRegistry(config)
        self._resources = self._registry.resources  # by canonical key
        self._active: dict[int, RequestAdmissionLease] = {}
        self._counters = dict.fromkeys(_COUNTERS, 0)
        self._release_diagnostics: dict[str, int] = {}
        self._shut_down = False

    @property
    def sequence(self) -> Iterator[int]:
        """This ``requests``-stream counter: give it to a ``ModelRequestExecutor`` that shares the sink."""
        return self._sequence

    # -- admission ------------------------------------------------------------------------------

    def try_acquire(self, item: RequestAdmissionItem) -> RequestAdmissionLease | RequestAdmissionDenied:
        """A lease now, or a typed denial. Never takes capacity a queued waiter is owed (``queued_waiters``).
        ``ValueError`` for a provider/model the config does not know."""
        check_item(item)
        events: list[SchedulerEvent] = []
        with self._lock:
            outcome = self._try_locked(self._registry.get_locked(item.resource), item, events)
        self._emit(events)
        return outcome

    def acquire(
        self, item: RequestAdmissionItem, timeout: float | None = None, cancel: object | None = None
    ) -> RequestAdmissionLease:
        """Block until a lease is handed over. ``cancel``: a ``threading.Event``, a ``CancelToken`` or anything
        with ``is_set()`` or ``cancelled``/``cancelled()``. Raises ``RequestAdmissionError`` (reason ``timeout``,
        ``cancelled`` or ``shutdown``) with no lease held and no waiter left behind."""
        check_item(item)
        if timeout is not None and (not finite_number(timeout) or timeout < 0):
            raise ValueError(f"timeout must be a finite number >= 0 or None, got {timeout!r}")
        probe = None if cancel is None else cancel_probe(cancel)
        deadline = None if timeout is None else time.monotonic() + timeout
        cancelled = probe is not None and probe()
        events: list[SchedulerEvent] = []
        waiter: Waiter | None = None
        with self._lock:
            resource = self._registry.get_locked(item.resource)
            outcome: Outcome = (
                RequestAdmissionDenied(item, "cancelled") if cancelled else self._try_locked(resource, item, events)
            )
            if isinstance(outcome, RequestAdmissionDenied) and outcome.reason not in ("cancelled", "shutdown"):
                if timeout == 0:
                    blocked = MappingProxyType({"blocked_by": outcome.reason, "waited_s": 0.0})
                    outcome = RequestAdmissionDenied(item, "timeout", outcome.retry_after, blocked)
                else:
                    now = self._clock()
                    waiter = Waiter(item, resource, next(self._waiter_seq), self._lock, now)
                    resource.add_waiter_locked(waiter)
                    self._counters["waits"] += 1
                    if self._sink is not None:
                        events.append(self._event_locked("request_wait_started", item, resource.key, reason=outcome.reason))
        if waiter is None:
            self._emit(events)
        else:
            outcome = self._wait(waiter, deadline, probe, events)
        if isinstance(outcome, RequestAdmissionDenied):
            raise RequestAdmissionError(outcome)
        return outcome

    def release(
        self, lease: RequestAdmissionLease, outcome: RequestOutcome | str, *, retry_after: float | None = None
    ) -> RequestReleaseResult:
        """Return a lease with the outcome of its attempt; only the first release of a lease counts. Never
        raises: a second release (``already_released``) or a foreign lease (``unknown_lease``) is counted and
        reported; an unknown outcome releases the lease as ``unexpected_exception`` (``invalid_outcome``)."""
        events: list[SchedulerEvent] = []
        try:
            with self._lock:
                result = self._release_locked(lease, outcome, retry_after, events)
        except Exception:
            LOGGER.error("threadsched: request release of %r failed", lease, exc_info=True)
            with self._lock:
                result = self._diagnose_locked(None, None, "internal_error", events)
        self._emit(events)
        return result

    def shutdown(self) -> None:
        """Every waiter raises ``RequestAdmissionError(shutdown)``, later acquisitions fail; releases still work."""
        with self._lock:
            self._shut_down = True
            for resource in self._resources.values():
                for waiter in resource.waiters_locked():
                    waiter.cond.notify()

    # -- views ----------------------------------------------------------------------------------

    def snapshot(self, resource: RequestResourceKey) -> RequestResourceSnapshot:
        """The state of ``resource`` (aliases resolved); a fresh one if it was never used. Read-only."""
        if not isinstance(resource, RequestResourceKey):
            raise TypeError(f"resource must be a RequestResourceKey, got {resource!r}")
        with self._lock:
            state = self._registry.peek_locked(resource)
            return state.snapshot_locked(self._clock(), self._shut_down)

    def snapshots(self) -> dict[RequestResourceKey, RequestResourceSnapshot]:
        """Every resource used so far, by canonical key."""
        with self._lock:
            now = self._clock()
            return {key: state.snapshot_locked(now, self._shut_down) for key, state in sorted(self._resources.items())}

    def statistics(self) -> dict[str, Any]:
        with self._lock:
            return {
                "resources": len(self._resources),
                "active_leases": len(self._active),
                "waiters": sum(state.waiter_count for state in self._resources.values()),
                "shut_down": self._shut_down,
                **self._counters,
                "release_diagnostics": dict(self._release_diagnostics),
            }

    def __repr__(self) -> str:
        n = sum(state.waiter_count for state in list(self._resources.values()))
        return f"<AdaptiveRequestAdmissionController resources={len(self._resources)} leases={len(self._active)} waiting={n}>"

    # -- waiting --------------------------------------------------------------------------------

    def _wait(
        self, waiter: Waiter, deadline: float | None, probe: Callable[[], bool] | None, started: list[SchedulerEvent]
    ) -> Outcome:
        events: list[SchedulerEvent] = []
        try:
            self._emit(started)  # in the try: whatever happens, a queued waiter never outlives its thread
            while True:
                cancelled = probe is not None and probe()  # user code: never under the lock
                with self._lock:
                    outcome = self._wait_step_locked(waiter, deadline, cancelled, probe is not None, events)
                if outcome is not None:
                    break
        except BaseException:
            with self._lock:
                self._abandon_locked(waiter)
            raise
        self._emit(events)
        return outcome

    def _wait_step_locked(
        self, waiter: Waiter, deadline: float | None, cancelled: bool, polling: bool, events: list[SchedulerEvent]
    ) -> Outcome | None:
        """One wake-up of ``waiter``: its lease, its denial, or None after waiting once more."""
        resource = waiter.resource
        now = self._clock()
        if waiter.state == "waiting":
            reason = "shutdown" if self._shut_down else "cancelled" if cancelled else None
            if reason is None and deadline is not None and time.monotonic() >= deadline:
                reason = "timeout"
            if reason is None:
                self._grant_locked(resource.endpoint, now)  # e.g. a cooldown just ended
            if waiter.state == "waiting":
                if reason is not None:
                    return self._give_up_locked(waiter, reason, now, events)
                waiter.cond.wait(waiter.timeout_locked(now, deadline, self._cancel_poll_s if polling else None))
                return None
        lease = waiter.lease
        assert lease is not None and waiter.state == "granted"
        waiter.state = "done"
        if self._sink is not None:
            waited = {"waited_s": now - waiter.started_at}
            kind, item = "request_wait_completed", waiter.item
            events.append(self._event_locked(kind, item, resource.key, reason="granted", diagnostics=waited))
            events.append(self._lease_event_locked(lease, resource, waited["waited_s"]))
        return lease

    def _give_up_locked(self, waiter: Waiter, reason: str, now: float, events: list[SchedulerEvent]) -> RequestAdmissionDenied:
        denial = waiter.give_up_locked(reason, now)
        self._counters[{"timeout": "wait_timeouts", "cancelled": "wait_cancellations"}.get(reason, "wait_shutdowns")] += 1
        if self._sink is not None:
            kind, key = "request_wait_completed", waiter.resource.key
            events.append(self._event_locked(kind, waiter.item, key, reason=reason, diagnostics=denial.diagnostics))
        return denial

    def _abandon_locked(self, waiter: Waiter) -> None:
        """The waiting thread leaves by an exception: drop its place, or take back a lease nobody holds."""
        lease = waiter.abandon_locked()
        if lease is not None:
            del self._active[lease.lease_id]
            self._counters["abandoned_grants"] += 1
            self._grant_locked(waiter.resource.endpoint, self._clock())

    # -- internals (lock held) ------------------------------------------------------------------

    def _try_locked(self, resource: ResourceState, item: RequestAdmissionItem, events: list[SchedulerEvent]) -> Outcome:
        if self._shut_down:
            return RequestAdmissionDenied(item, "shutdown")
        now = self._clock()
        if resource.waiter_count:
            self._grant_locked(resource.endpoint, now)  # serve the queue first: capacity may be free
        reason = resource.block_reason_locked(now)
        diagnostics = MappingProxyType(resource.state_locked())
        if reason == "cooldown":
            return RequestAdmissionDenied(item, reason, resource.blocked_until - now, diagnostics)
        if resource.waiter_count:
            return RequestAdmissionDenied(item, "queued_waiters", None, MappingProxyType({"waiters": resource.waiter_count}))
        if reason is not None:
            return RequestAdmissionDenied(item, reason, None, diagnostics)
        lease = self._lease_locked(resource, item, now)
        if self._sink is not None:
            events.append(self._lease_event_locked(lease, resource, 0.0))
        return lease

    def _grant_locked(self, endpoint: Endpoint, now: float) -> None:
        """Hand free capacity to waiters: each lease is made here and assigned before its waiter wakes."""
        while not self._shut_down and (waiter := endpoint.next_waiter_locked(now)) is not None:
            waiter.resource.pop_head_locked(waiter)
            waiter.lease = self._lease_locked(waiter.resource, waiter.item, now)
            waiter.state = "granted"
            waiter.cond.notify()

    def _lease_locked(self, resource: ResourceState, item: RequestAdmissionItem, now: float) -> RequestAdmissionLease:
        lease = RequestAdmissionLease(next(self._lease_ids), item, resource.key, now, resource.wave)
        resource.take_locked()
        self._active[lease.lease_id] = lease
        self._counters["acquired"] += 1
        return lease

    def _release_locked(
        self, lease: RequestAdmissionLease, outcome: RequestOutcome | str, retry_after: object, events: list[SchedulerEvent]
    ) -> RequestReleaseResult:
        if not isinstance(lease, RequestAdmissionLease):
            return self._diagnose_locked(None, None, "unknown_lease", events)
        resource = self._resources.get(lease.resource)
        if resource is None or self._active.get(lease.lease_id) is not lease:
            # Not one of ours, or released before. A foreign lease's flag is left alone (its own controller
            # must still be able to release it); a set flag can only mean an earlier release.
            reason = "already_released" if lease._release_flag.locked() else "unknown_lease"
            return self._diagnose_locked(resource, lease, reason, events)
        lease.claim_release()  # the active table, under this lock, is what makes the release exactly-once
        del self._active[lease.lease_id]
        self._counters["released"] += 1
        reason = "released"
        try:
            outcome = RequestOutcome(outcome)
        except (TypeError, ValueError):
            LOGGER.warning("threadsched: release of request lease %d with unknown outcome %r", lease.lease_id, outcome)
            self._release_diagnostics["invalid_outcome"] = self._release_diagnostics.get("invalid_outcome", 0) + 1
            outcome, reason = RequestOutcome.UNEXPECTED_EXCEPTION, "invalid_outcome"
        now = self._clock()
        effect = resource.release_locked(lease, outcome, now, retry_after, self._config)
        kind = "request_limit_decreased" if effect.rate_limited else "request_limit_increased"
        self._counters["rate_limit_waves"] += effect.new_wave
        if effect.change is not None:
            self._counters["limit_decreases" if effect.rate_limited else "limit_increases"] += 1
        if effect.rate_limited:
            for waiter in resource.waiters_locked():
                waiter.cond.notify()  # re-time their waits to the (new) end of the cooldown
        if self._sink is not None:
            item, key, lease_id = lease.item, resource.key, lease.lease_id
            if effect.rate_limited:
                cooldown = {"retry_after": retry_after, "cooldown_s": effect.cooldown, "new_wave": effect.new_wave}
                events.append(self._event_locked("request_rate_limited", item, key, lease_id=lease_id, diagnostics=cooldown))
            if effect.change is not None:
                limits = {"before": effect.change[0], "after": effect.change[1], "wave": resource.wave}
                events.append(self._event_locked(kind, item, key, lease_id=lease_id, reason=outcome.value, diagnostics=limits))
            held = {"held_s": now - lease.acquired_at, "in_flight": resource.in_flight, "limit": resource.limit}
            kind = "request_lease_released"
            events.append(self._event_locked(kind, item, key, lease_id=lease_id, reason=outcome.value, diagnostics=held))
        self._grant_locked(resource.endpoint, now)
        before, after = effect.change or (None, None)
        return RequestReleaseResult(True, reason, before, after)

    def _diagnose_locked(
        self, resource: ResourceState | None, lease: RequestAdmissionLease | None, reason: str, events: list[SchedulerEvent]
    ) -> RequestReleaseResult:
        self._release_diagnostics[reason] = self._release_diagnostics.get(reason, 0) + 1
        if resource is not None:
            resource.double_releases += reason == "already_released"
            resource.unknown_releases += reason == "unknown_lease"
        if self._sink is not None:
            item = lease.item if lease is not None else None
            key = lease.resource if lease is not None else None
            lease_id = lease.lease_id if lease is not None else None
            events.append(self._event_locked("request_release_diagnostic", item, key, lease_id=lease_id, reason=reason))
        return RequestReleaseResult(False, reason)

    # -- events ---------------------------------------------------------------------------------

    def _lease_event_locked(self, lease: RequestAdmissionLease, resource: ResourceState, waited_s: float) -> SchedulerEvent:
        diagnostics = {"waited_s": waited_s, **resource.state_locked(), "wave": lease.wave}
        return self._event_locked(
            "request_lease_acquired", lease.item, resource.key, lease_id=lease.lease_id, diagnostics=diagnostics
        )

    def _event_locked(
        self, kind: str, item: RequestAdmissionItem | None, resource: RequestResourceKey | None, **fields: Any
    ) -> SchedulerEvent:
        return request_event(kind, next(self._sequence), self._clock(), item, resource, **fields)

    def _emit(self, events: list[SchedulerEvent]) -> None:
        sink = self._sink
        if sink is None:
            return
        for event in events:
            try:
                sink.emit(event)
            except Exception:
                with self._lock:
                    self._counters["sink_errors"] += 1
                LOGGER.warning("threadsched: event sink %r raised; request event %s dropped", sink, event.kind, exc_info=True)


__all__ = ["DEFAULT_CANCEL_POLL_S", "MAX_CANCEL_POLL_S", "REQUEST_STREAM", "AdaptiveRequestAdmissionController"]
