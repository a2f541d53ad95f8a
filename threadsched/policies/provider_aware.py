"""Provider-aware leases: scheduler limits of ``llm:`` resources follow request admission's pressure.

A task that will call provider/model ``P`` holds the scheduler resource ``llm:P``. ``ProviderAwarePolicy``
reads, for each such resource, a read-only ``ProviderPressure`` (the adaptive request limit, the requests in
flight, the end of a cooldown) from a ``PressureSnapshotProvider`` and:

* caps the resource's leases at ``min(hard limit, max(1, pressure.limit))`` — denied with ``policy_denial``
  (diagnostics ``provider_pressure="limit"``) while ``leased + amount`` would exceed it and at least one unit
  is leased (so a release is coming and wakes the dispatcher);
* denies every task of a provider in cooldown (``provider_pressure="cooldown"``) with ``available_after`` =
  the end of the cooldown, which the dispatcher turns into a wake-up deadline.

So worker slots go to providers that can take requests now, instead of to tasks that would sit in request
admission waiting for a permit while another provider has ready work. Then the ``inner`` policy (default
``StrictFairPolicy``) decides; ``on_acquire``/``on_release`` are the inner policy's.

Liveness of a lone group: outside a cooldown the effective limit is never below 1, and a request for a
resource none of whose units is leased is never denied for pressure (even when ``amount`` exceeds the
pressure limit), so it runs; a cooldown always ends (request admission clamps it to ``max_cooldown_s``) and
its end is a dispatcher deadline. Resources without the ``llm:`` prefix, and ``llm:`` resources the provider
knows nothing about (``pressure`` returns None), are left to the inner policy.

Purity: ``evaluate`` only reads (the admission view, the queue view, the pressure provider, the clock). The
pressure read is not part of the controller's ``version``, so the approval ``is_eligible`` caches for the
``try_acquire`` that follows at once may be a few microseconds old: a benign race, the same as any limit
change landing just after a lease.

Lock order: ``TaskAdmissionController._lock`` → ``AdaptiveRequestAdmissionController._lock``. ``evaluate``
runs under the task controller's lock and ``RequestAdmissionPressure`` takes the request controller's lock
inside it (``snapshot``). The reverse never happens: the request controller (``threadsched.requests.
controller`` and ``controller_state``) imports nothing of task admission, the queue or the dispatcher, and
under its lock it calls only its ``clock``, ``current_task_correlation()`` (a context variable read), event
construction and logging — sinks and cancel probes run with its lock released. Its callers (worker threads
in ``ModelRequestExecutor``) never hold a task controller or queue lock. ``on_release`` (which runs under the
task controller's lock on the completion path) reads no pressure at all.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, cast, runtime_checkable

from threadsched.core.contracts import SchedulableTask
from threadsched.core.policy import PolicyDecision, PolicyStateDelta, StrictFairPolicy, TaskAdmissionPolicy
from threadsched.core.values import QueueView, TaskAdmissionLease, TaskAdmissionView

if TYPE_CHECKING:
    from threadsched.requests.contracts import RequestDomain, RequestResourceKey
    from threadsched.requests.controller import AdaptiveRequestAdmissionController

__all__ = [
    "LLM_PREFIX",
    "PressureSnapshotProvider",
    "ProviderAwarePolicy",
    "ProviderPressure",
    "RequestAdmissionPressure",
    "provider_aware_policy_for",
]

LLM_PREFIX: Final = "llm:"
LOGGER = logging.getLogger("threadsched")
_UNKNOWN: Final = object()


@dataclass(frozen=True, slots=True)
class ProviderPressure:
    """What request admission allows for one provider/model right now. ``cooldown_until``: the monotonic
    time a cooldown ends, None outside one."""

    limit: int
    in_flight: int = 0
    cooldown_until: float | None = None

    def __post_init__(self) -> None:
        for name in ("limit", "in_flight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"ProviderPressure.{name} must be an int >= 0, got {value!r}")
        until = self.cooldown_until
        if until is not None and (isinstance(until, bool) or not isinstance(until, (int, float)) or not math.isfinite(until)):
            raise ValueError(f"ProviderPressure.cooldown_until must be a finite number or None, got {until!r}")


@runtime_checkable
class PressureSnapshotProvider(Protocol):
    def pressure(self, resource: str) -> ProviderPressure | None:
        """The pressure behind scheduler resource ``resource`` (e.g. ``"llm:openai/gpt"``), None if unknown.
        Called under the task controller's lock: read-only, fast, never calls the task controller."""
        ...


def request_key(resource: str, domain: RequestDomain | None = None) -> RequestResourceKey | None:
    """``llm:<provider>/<model>`` as a request resource key in ``domain`` (None: ``RequestDomain.CHAT``; the
    model may contain slashes), else None."""
    if not resource.startswith(LLM_PREFIX):
        return None
    provider, sep, model = resource[len(LLM_PREFIX) :].partition("/")
    if not sep or not provider.strip() or not model.strip():
        return None
    # Imported here, not at module level: the policies load with ``import threadsched``, request admission
    # (a subpackage with an HTTP provider) only when a run uses it.
    from threadsched.requests.contracts import RequestDomain, RequestResourceKey

    return RequestResourceKey(provider, model, RequestDomain.CHAT if domain is None else domain)


class RequestAdmissionPressure:
    """``PressureSnapshotProvider`` over an ``AdaptiveRequestAdmissionController``: ``llm:<provider>/<model>``
    → ``controller.snapshot(RequestResourceKey(provider, model, domain))`` (``current_limit``, ``in_flight``,
    ``blocked_until``). Read-only: no lease, no waiter, no resource registered. Providers the controller's
    config does not know map to None. ``blocked_until`` is in the controller's clock, ``time.monotonic``
    unless it was given another: the policy's clock must be the same one."""

    __slots__ = ("_controller", "_domain", "_keys")

    def __init__(self, controller: AdaptiveRequestAdmissionController, domain: RequestDomain | None = None) -> None:
        """``domain``: the request domain whose limits are read; None means ``RequestDomain.CHAT``."""
        from threadsched.requests.contracts import RequestDomain  # whoever holds a request controller has loaded it already

        if domain is None:
            domain = RequestDomain.CHAT
        if not callable(getattr(controller, "snapshot", None)):
            raise TypeError(f"controller must have snapshot(RequestResourceKey), got {controller!r}")
        if not isinstance(domain, RequestDomain):
            raise ValueError(f"domain must be a RequestDomain, got {domain!r}")
        self._controller = controller
        self._domain = domain
        # resource name -> key, or _UNKNOWN; the config is immutable, so this memo never goes stale
        # (a racing duplicate insert stores the same value).
        self._keys: dict[str, object] = {}

    def pressure(self, resource: str) -> ProviderPressure | None:
        key = self._keys.get(resource)
        if key is None:
            key = request_key(resource, self._domain) if isinstance(resource, str) else None
            if key is not None:
                try:
                    self._controller.snapshot(key)
                except ValueError:  # a provider/model the request config does not know
                    key = None
            key = self._keys[resource] = _UNKNOWN if key is None else key
        if key is _UNKNOWN:
            return None
        snap = self._controller.snapshot(cast("RequestResourceKey", key))
        return ProviderPressure(snap.current_limit, snap.in_flight, snap.blocked_until)

    def __repr__(self) -> str:
        return f"<RequestAdmissionPressure domain={self._domain.value} controller={self._controller!r}>"


class ProviderAwarePolicy:
    """Provider-aware leases (module docstring), then ``inner`` (default ``StrictFairPolicy``)."""

    __slots__ = ("_clock", "_inner", "_pressure", "_warned")

    def __init__(
        self,
        pressure: PressureSnapshotProvider,
        inner: TaskAdmissionPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not callable(getattr(pressure, "pressure", None)):
            raise TypeError(f"pressure must have pressure(resource) -> ProviderPressure | None, got {pressure!r}")
        if inner is not None and not isinstance(inner, TaskAdmissionPolicy):
            raise TypeError(f"inner must be a TaskAdmissionPolicy or None, got {inner!r}")
        if not callable(clock):
            raise TypeError(f"clock must be callable, got {clock!r}")
        self._pressure = pressure
        self._inner: TaskAdmissionPolicy = inner if inner is not None else StrictFairPolicy()
        self._clock = clock
        self._warned = False

    @property
    def inner(self) -> TaskAdmissionPolicy:
        return self._inner

    @property
    def pressure_provider(self) -> PressureSnapshotProvider:
        return self._pressure

    def evaluate(self, item: SchedulableTask, queue_view: QueueView, admission_view: TaskAdmissionView) -> PolicyDecision:
        denial = self._pressure_denial(item, admission_view)
        if denial is not None:
            return denial
        return self._inner.evaluate(item, queue_view, admission_view)

    def on_acquire(self, lease: TaskAdmissionLease, decision: PolicyDecision) -> PolicyStateDelta:
        return self._inner.on_acquire(lease, decision)

    def on_release(self, lease: TaskAdmissionLease) -> PolicyStateDelta:
        return self._inner.on_release(lease)

    def _pressure_denial(self, item: SchedulableTask, admission_view: TaskAdmissionView) -> PolicyDecision | None:
        now: float | None = None
        cooling: dict[str, Any] | None = None
        cooldown_end = -math.inf
        over: dict[str, Any] | None = None
        for resource, amount in item.resource_request.amounts.items():
            if not resource.startswith(LLM_PREFIX):
                continue
            pressure = self._read(resource)
            if pressure is None:
                continue
            until = pressure.cooldown_until
            if until is not None:
                if now is None:
                    now = self._clock()
                if until > now:
                    # Every cooling resource must be over before the item can run: wake at the last end.
                    if until > cooldown_end:
                        cooldown_end = until
                        cooling = {"resource": resource, "cooldown_remaining": until - now}
                    continue
            if over is None:
                leased = admission_view.leased_resources.get(resource, 0)
                hard = admission_view.resource_limits.get(resource, amount)
                effective = min(hard, max(1, pressure.limit))
                if leased and leased + amount > effective:
                    over = {"resource": resource, "leased": leased, "effective_limit": effective}
                    over.update(hard_limit=hard, pressure_limit=pressure.limit, in_flight=pressure.in_flight)
        if cooling is not None:
            return PolicyDecision(False, "policy_denial", cooldown_end, {"provider_pressure": "cooldown", **cooling})
        if over is not None:
            return PolicyDecision(False, "policy_denial", None, {"provider_pressure": "limit", **over})
        return None

    def _read(self, resource: str) -> ProviderPressure | None:
        try:
            return self._pressure.pressure(resource)
        except Exception:
            # Fail open: a broken pressure source must not stop admission (the hard limits still hold).
            if not self._warned:
                self._warned = True
                LOGGER.warning("threadsched: %r.pressure(%r) raised; ignoring pressure", self._pressure, resource, exc_info=True)
            return None

    def __repr__(self) -> str:
        return f"ProviderAwarePolicy(pressure={self._pressure!r}, inner={self._inner!r})"


def provider_aware_policy_for(
    controller: AdaptiveRequestAdmissionController,
    inner: TaskAdmissionPolicy | None = None,
    *,
    domain: RequestDomain | None = None,
) -> ProviderAwarePolicy:
    """A ``ProviderAwarePolicy`` reading ``controller`` (the run's request admission; its clock must be
    ``time.monotonic``, the default). Pass it as ``Scheduler(policy=...)``."""
    return ProviderAwarePolicy(RequestAdmissionPressure(controller, domain), inner)
