"""Request admission contracts: names, configuration, leases, denials, outcomes, snapshots.

Task admission (``TaskAdmissionController``) decides when a *task* may run; request admission decides when
each concrete model call inside a running task may go out. This layer knows nothing about scheduler tasks:
it gets opaque ``correlation`` (run id, task execution id) for its events only.

Names are canonical after alias resolution: ``RequestAdmissionConfig.resolve`` maps an alias
``ProviderModelKey`` to the endpoint it names, so two aliases of one endpoint share one aggregate cap (the
smaller of their declared caps).
"""

from __future__ import annotations

import enum
import math
import threading
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from threadsched.core.contracts import validate_weight

__all__ = [
    "ProviderModelKey",
    "RequestAdmissionConfig",
    "RequestAdmissionDenied",
    "RequestAdmissionError",
    "RequestAdmissionItem",
    "RequestAdmissionLease",
    "RequestDomain",
    "RequestOutcome",
    "RequestReleaseResult",
    "RequestResourceKey",
    "RequestResourceSnapshot",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class RequestDomain(enum.StrEnum):
    CHAT = "chat"
    EMBEDDING = "embedding"
    IMAGE = "image"
    HEALTHCHECK = "healthcheck"


class RequestOutcome(enum.StrEnum):
    """How one outbound attempt ended. Only ``RATE_LIMITED`` lowers an adaptive limit."""

    SUCCESS = "success"
    RATE_LIMITED = "rate_limited"
    PROVIDER_FAILURE = "provider_failure"
    PROVIDER_TIMEOUT = "provider_timeout"
    LOCAL_CANCELLED = "local_cancelled"
    LOCAL_TIMEOUT = "local_timeout"
    UNEXPECTED_EXCEPTION = "unexpected_exception"


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty str, got {value!r}")
    return value


@dataclass(frozen=True, slots=True, order=True)
class ProviderModelKey:
    provider: str
    model: str

    def __post_init__(self) -> None:
        _name(self.provider, "ProviderModelKey.provider")
        _name(self.model, "ProviderModelKey.model")

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"

    @classmethod
    def parse(cls, text: str) -> ProviderModelKey:
        """``"provider/model"`` (the model part may itself contain slashes)."""
        provider, sep, model = _name(text, "provider/model").partition("/")
        if not sep:
            raise ValueError(f"expected 'provider/model', got {text!r}")
        return cls(provider, model)


@dataclass(frozen=True, slots=True, order=True)
class RequestResourceKey:
    """One adaptive limit: a provider/model in one request domain."""

    provider: str
    model: str
    domain: RequestDomain = RequestDomain.CHAT

    def __post_init__(self) -> None:
        _name(self.provider, "RequestResourceKey.provider")
        _name(self.model, "RequestResourceKey.model")
        if not isinstance(self.domain, RequestDomain):
            raise ValueError(f"RequestResourceKey.domain must be a RequestDomain, got {self.domain!r}")

    @property
    def provider_model(self) -> ProviderModelKey:
        return ProviderModelKey(self.provider, self.model)

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}:{self.domain.value}"


@dataclass(frozen=True, slots=True)
class RequestAdmissionConfig:
    """``caps``: the static ``max_parallel_requests`` of each provider/model (in flight across all its
    domains). ``aliases``: alias -> the provider/model it names (which must be in ``caps``); an alias may
    declare its own cap in ``caps`` too, and the endpoint's aggregate cap is then the smallest of them.

    AIMD: a resource starts at ``initial_limit`` (default: the cap). A ``rate_limited`` release lowers it to
    ``max(1, floor(limit * decrease_factor))`` once per rate-limit wave and blocks new leases until the
    cooldown ends (``Retry-After`` when given, else ``default_cooldown_s``). After
    ``successes_until_increase`` successes outside a cooldown, ``limit += increase_step`` up to the cap —
    and, for ``ceiling_hold_s`` after a rate limit, only up to one below the limit at which it was hit (the
    rate-limit ceiling), so once the limit has adapted it stops provoking 429s; 0 disables the hold."""

    caps: Mapping[ProviderModelKey, int]
    aliases: Mapping[ProviderModelKey, ProviderModelKey] = field(default_factory=lambda: MappingProxyType({}))
    initial_limit: int | None = None
    decrease_factor: float = 0.5
    increase_step: int = 1
    successes_until_increase: int = 8
    default_cooldown_s: float = 1.0
    max_cooldown_s: float = 60.0
    ceiling_hold_s: float = 120.0

    def __post_init__(self) -> None:
        if not isinstance(self.caps, Mapping) or not self.caps:
            raise ValueError(f"RequestAdmissionConfig.caps must be a non-empty mapping, got {self.caps!r}")
        for key, cap in self.caps.items():
            if not isinstance(key, ProviderModelKey):
                raise ValueError(f"RequestAdmissionConfig.caps keys must be ProviderModelKey, got {key!r}")
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                raise ValueError(f"RequestAdmissionConfig.caps[{key}] must be an int >= 1, got {cap!r}")
        for alias, target in self.aliases.items():
            if not isinstance(alias, ProviderModelKey) or not isinstance(target, ProviderModelKey):
                raise ValueError(f"RequestAdmissionConfig.aliases must map ProviderModelKey to ProviderModelKey, got {alias!r}")
            if target not in self.caps or target in self.aliases:
                raise ValueError(f"RequestAdmissionConfig.aliases[{alias}] must name a provider/model in caps, got {target}")
        _positive_int(self.initial_limit, "initial_limit", optional=True)
        _positive_int(self.increase_step, "increase_step")
        _positive_int(self.successes_until_increase, "successes_until_increase")
        if not isinstance(self.decrease_factor, (int, float)) or not 0 < self.decrease_factor < 1:
            raise ValueError(f"RequestAdmissionConfig.decrease_factor must be in (0, 1), got {self.decrease_factor!r}")
        for name in ("default_cooldown_s", "max_cooldown_s", "ceiling_hold_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise ValueError(f"RequestAdmissionConfig.{name} must be a finite number >= 0, got {value!r}")

    def resolve(self, key: ProviderModelKey) -> ProviderModelKey:
        """The canonical provider/model of ``key`` (itself unless it is an alias); KeyError if unknown."""
        target = self.aliases.get(key, key)
        if target not in self.caps:
            raise KeyError(f"unknown provider/model {key} (known: {', '.join(sorted(map(str, self.caps)))})")
        return target

    def aggregate_cap(self, canonical: ProviderModelKey) -> int:
        """The in-flight cap of an endpoint: the smallest cap declared for it or any of its aliases."""
        declared = [self.caps[canonical]]
        declared += [self.caps[alias] for alias, target in self.aliases.items() if target == canonical and alias in self.caps]
        return min(declared)


def _positive_int(value: object, name: str, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"RequestAdmissionConfig.{name} must be an int >= 1, got {value!r}")


@dataclass(frozen=True, slots=True)
class RequestAdmissionItem:
    """What wants a request permit. ``group``/``weight`` order waiters fairly (oldest first among equals);
    ``correlation`` (run id, task execution id, ...) is copied into events and never interpreted."""

    resource: RequestResourceKey
    group: Hashable = "default"
    weight: float = 1.0
    correlation: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        if not isinstance(self.resource, RequestResourceKey):
            raise ValueError(f"RequestAdmissionItem.resource must be a RequestResourceKey, got {self.resource!r}")
        validate_weight("RequestAdmissionItem.weight", self.weight)


@dataclass(eq=False, slots=True)
class RequestAdmissionLease:
    """A permit for one outbound attempt on ``resource`` (canonical). Released exactly once: the first
    ``release`` wins the atomic flag; later ones report ``already_released``."""

    lease_id: int
    item: RequestAdmissionItem
    resource: RequestResourceKey  # canonical (after alias resolution)
    acquired_at: float
    wave: int  # the resource's rate-limit wave when acquired: one decrease per wave
    _release_flag: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def claim_release(self) -> bool:
        """Atomic test-and-set: True for exactly one caller."""
        return self._release_flag.acquire(blocking=False)


@dataclass(frozen=True, slots=True)
class RequestAdmissionDenied:
    """Why no permit now. ``reason``: ``at_limit``, ``aggregate_cap``, ``cooldown``, ``queued_waiters``,
    ``timeout``, ``cancelled``, ``shutdown``. ``retry_after``: seconds until a cooldown ends, if known."""

    item: RequestAdmissionItem
    reason: str
    retry_after: float | None = None
    diagnostics: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


class RequestAdmissionError(Exception):
    """``acquire`` gave up (timeout, cancel, shutdown); ``denial`` says why. No lease is held."""

    def __init__(self, denial: RequestAdmissionDenied) -> None:
        super().__init__(f"request admission for {denial.item.resource} failed: {denial.reason}")
        self.denial = denial


@dataclass(frozen=True, slots=True)
class RequestReleaseResult:
    """``released`` is False for a second release (``reason="already_released"``) or a foreign lease
    (``unknown_lease``). ``limit_before``/``limit_after`` show an AIMD change caused by this release."""

    released: bool
    reason: str | None = None
    limit_before: int | None = None
    limit_after: int | None = None


@dataclass(frozen=True, slots=True)
class RequestResourceSnapshot:
    resource: RequestResourceKey
    current_limit: int
    effective_max: int  # what may be in flight now: min(limit, aggregate room), 0 during a cooldown
    static_cap: int
    in_flight: int
    aggregate_in_flight: int  # across every domain of the endpoint
    waiters: int
    blocked_until: float | None  # time.monotonic() when the cooldown ends
    cooldown_remaining: float
    rate_limit_ceiling: int | None  # the limit at which the last rate limit was hit
    consecutive_rate_limits: int
    last_outcome: RequestOutcome | None
    acquired_total: int
    released_total: int
    double_releases: int
    unknown_releases: int
