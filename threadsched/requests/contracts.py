"""Request admission contracts: names, configuration, leases, denials, outcomes, snapshots.

Task admission (``TaskAdmissionController``) decides when a *task* may run; request admission decides when
each concrete model call inside a running task may go out. This layer knows nothing about scheduler tasks:
it gets opaque ``correlation`` (run id, task execution id) for its events only.

Names are canonical after alias resolution: ``RequestAdmissionConfig.resolve`` maps an alias
``ProviderModelKey`` to the endpoint it names, so two aliases of one endpoint share one aggregate cap (the
smaller of their declared caps).

Every value a caller constructs (keys, the config, items) is checked at construction, the error naming the
argument and the value: ``TypeError`` for a wrong type (a bool is never a number here), ``ValueError`` for a
value out of its range (NaN and +-inf included). The ranges: caps, limits and AIMD counts are ints in
``[1, MAX_REQUEST_LIMIT]``; ``decrease_factor`` is in (0, 1); cooldowns are seconds in ``[0, MAX_COOLDOWN_S]``
and ``ceiling_hold_s`` in ``[0, MAX_CEILING_HOLD_S]``. Leases, denials, release results and snapshots are
built by the controller alone, under its lock and per request, so they are not checked again.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from threadsched.core.contracts import validate_weight

__all__ = [
    "MAX_CEILING_HOLD_S",
    "MAX_COOLDOWN_S",
    "MAX_REQUEST_LIMIT",
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

MAX_REQUEST_LIMIT = 1_000_000
"""Upper bound of a cap, ``initial_limit``, ``increase_step`` and ``successes_until_increase``. The AIMD
decrease is computed in floats (``floor(limit * decrease_factor)``): exact only below 2**53, an
``OverflowError`` past 1e308. No provider allows a million requests in flight at once."""
MAX_COOLDOWN_S = 3_600.0
"""Upper bound of ``default_cooldown_s`` and ``max_cooldown_s``: a provider that asks for more than an hour is
down for the run (and ``ModelRequestExecutor`` already ends a call whose Retry-After passes
``max_retry_after_s``, 120 s by default)."""
MAX_CEILING_HOLD_S = 86_400.0
"""Upper bound of ``ceiling_hold_s``: a day. The rate-limit ceiling is a guess about the provider's rate,
worth re-probing at least that often."""


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
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a non-empty str, got {value!r}")
    if not value.strip():
        raise ValueError(f"{what} must be a non-empty str, got {value!r}")
    return value


def _shown(value: object) -> str:
    """``repr`` for a message, except an int too long for one (its repr raises past 4300 digits)."""
    if isinstance(value, int) and value.bit_length() > 128:
        return f"an int of {value.bit_length()} bits"
    return repr(value)


def _count(value: object, what: str) -> int:
    """An int in ``[1, MAX_REQUEST_LIMIT]`` (a cap, a limit, a step, a number of successes)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {value!r}")
    if not 1 <= value <= MAX_REQUEST_LIMIT:
        raise ValueError(f"{what} must be an int in [1, {MAX_REQUEST_LIMIT:_}], got {_shown(value)}")
    return value


def checked_seconds(value: object, what: str, maximum: float, *, positive: bool = False) -> float:
    """A finite number of seconds in ``[0, maximum]`` (``(0, maximum]`` when ``positive``); the errors name
    ``what``. Also the controller's check of ``cancel_poll_s``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, got {value!r}")
    in_range = (value > 0 if positive else value >= 0) and value <= maximum  # NaN compares False; ints exactly
    if not in_range:
        interval = f"{'(' if positive else '['}0, {maximum:_g}]"
        raise ValueError(f"{what} must be a finite number in {interval}, got {_shown(value)}")
    return float(value)


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
            raise TypeError(f"RequestResourceKey.domain must be a RequestDomain, got {self.domain!r}")

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
        if not isinstance(self.caps, Mapping):
            raise TypeError(f"RequestAdmissionConfig.caps must be a non-empty mapping, got {self.caps!r}")
        if not self.caps:
            raise ValueError(f"RequestAdmissionConfig.caps must be a non-empty mapping, got {self.caps!r}")
        for key, cap in self.caps.items():
            if not isinstance(key, ProviderModelKey):
                raise TypeError(f"RequestAdmissionConfig.caps keys must be ProviderModelKey, got {key!r}")
            _count(cap, f"RequestAdmissionConfig.caps[{key}]")
        if not isinstance(self.aliases, Mapping):
            raise TypeError(f"RequestAdmissionConfig.aliases must be a mapping, got {self.aliases!r}")
        for alias, target in self.aliases.items():
            if not isinstance(alias, ProviderModelKey) or not isinstance(target, ProviderModelKey):
                raise TypeError(f"RequestAdmissionConfig.aliases must map ProviderModelKey to ProviderModelKey, got {alias!r}")
            if target not in self.caps or target in self.aliases:
                raise ValueError(f"RequestAdmissionConfig.aliases[{alias}] must name a provider/model in caps, got {target}")
        if self.initial_limit is not None:
            _count(self.initial_limit, "RequestAdmissionConfig.initial_limit")
        _count(self.increase_step, "RequestAdmissionConfig.increase_step")
        _count(self.successes_until_increase, "RequestAdmissionConfig.successes_until_increase")
        factor = self.decrease_factor
        if isinstance(factor, bool) or not isinstance(factor, (int, float)):
            raise TypeError(f"RequestAdmissionConfig.decrease_factor must be a number in (0, 1), got {factor!r}")
        if not 0 < factor < 1:  # 1 would never decrease, 0 would drop every limit to 1; NaN fails too
            raise ValueError(f"RequestAdmissionConfig.decrease_factor must be in (0, 1), got {_shown(factor)}")
        checked_seconds(self.default_cooldown_s, "RequestAdmissionConfig.default_cooldown_s", MAX_COOLDOWN_S)
        checked_seconds(self.max_cooldown_s, "RequestAdmissionConfig.max_cooldown_s", MAX_COOLDOWN_S)
        checked_seconds(self.ceiling_hold_s, "RequestAdmissionConfig.ceiling_hold_s", MAX_CEILING_HOLD_S)

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
            raise TypeError(f"RequestAdmissionItem.resource must be a RequestResourceKey, got {self.resource!r}")
        try:
            hash(self.group)  # waiters are queued by group: an unhashable one would fail inside the controller's lock
        except TypeError:
            raise TypeError(f"RequestAdmissionItem.group must be hashable, got {self.group!r}") from None
        validate_weight("RequestAdmissionItem.weight", self.weight)
        if not isinstance(self.correlation, Mapping):
            raise TypeError(f"RequestAdmissionItem.correlation must be a mapping, got {self.correlation!r}")


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
