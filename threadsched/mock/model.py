"""The mock model: a deterministic simulated model endpoint, in process, with no network.

It answers the ``kind = "mock"`` providers of recipes (the demo recipe among them), and
``threadsched mock-provider`` serves the same replies over HTTP (``mock_server``), so a recipe gives
the same dataset through either.

Why deterministic: the engine's correctness oracle is that a scheduled run and the single-threaded
``--reference`` run produce the same output hash for any worker count. So every decision here is a
pure function of its inputs, derived with ``hashlib.blake2b``, never the global ``random`` state
(shared between threads, order dependent) nor ``hash()`` (salted per process).

* The *text* depends on (seed, provider, model, prompt) but deliberately not on the attempt: which
  attempt happens to succeed depends on retry scheduling, and the dataset must not.
* The *failure decision* and the *latency jitter* also depend on the attempt, so a retry of a
  transient failure is a fresh draw and can succeed, as against a real endpoint returning 503/429.

Prompts and outputs are never logged or stored, and errors carry only provider, model and attempt.

Lock order: ``MockModelEndpoint._lock`` is a leaf; nothing is called while holding it (the injected
``sleep`` in particular runs outside it).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "MAX_LATENCY_MS",
    "RETRYABLE_ERRORS",
    "SEED_RANGE",
    "MockEndpointStatistics",
    "MockFatalError",
    "MockModelEndpoint",
    "MockModelStatistics",
    "MockProviderError",
    "MockTransientError",
    "score_from_text",
]

_PERSON = b"threadsched.mock"  # blake2b personalisation (16 bytes): separates us from other hash users
_TWO_64 = float(2**64)
_VOCABULARY = (
    "amber", "basalt", "cedar", "delta", "ember", "fjord", "granite", "harbor",
    "indigo", "juniper", "kestrel", "lagoon", "meadow", "nimbus", "onyx", "prairie",
    "quartz", "river", "sierra", "tundra", "umber", "valley", "willow", "xenon",
    "yarrow", "zephyr", "aurora", "boreal", "canyon", "dune", "estuary", "falcon",
)  # fmt: skip
_WORDS_PER_TEXT = 4

# The ranges of the numeric settings, shared by this constructor, ``MockOpenAIServer``, ``threadsched
# mock-provider`` and the recipe parser (``engine/recipe/ranges.py``), so each entry point refuses the same values.
MAX_LATENCY_MS = 3_600_000
"""Upper bound of ``latency_ms`` and ``jitter_ms``: an hour. A simulated call slower than that is a hang, not a
test of one; and an unbounded value overflowed ``time.sleep`` (``1e300`` ms), failing every call at run time."""
SEED_RANGE = (-(2**63), 2**63 - 1)
"""Bounds of ``seed``: TOML's 64-bit integers, so a recipe can write every seed a library user may pass. The
seed is hashed as its decimal text, so any value in the range is as good as any other."""


class MockProviderError(Exception):
    """Base of the simulated endpoint failures; carries where it failed, never the prompt."""

    retryable: bool = False

    def __init__(self, provider: str, model: str, attempt: int) -> None:
        kind = "transient" if self.retryable else "fatal"
        super().__init__(f"mock endpoint {provider}/{model}: simulated {kind} failure on attempt {attempt}")
        self.provider = provider
        self.model = model
        self.attempt = attempt

    def __reduce__(self) -> tuple[type[MockProviderError], tuple[str, str, int]]:
        # The default reduce would call cls(message) and fail on our three-argument __init__.
        return (type(self), (self.provider, self.model, self.attempt))


class MockTransientError(MockProviderError):
    """A retryable failure, like a 503 or 429: a later attempt may succeed."""

    retryable = True


class MockFatalError(MockProviderError):
    """A non-retryable failure, like a 400 on a bad request: retrying cannot help."""


RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (MockTransientError,)
"""Exceptions the engine should defer to a salvage round rather than drop the row for."""


@dataclass(frozen=True, slots=True)
class MockModelStatistics:
    """Counters for one model; ``calls`` includes the failed ones."""

    calls: int = 0
    transient_failures: int = 0
    fatal_failures: int = 0


@dataclass(frozen=True, slots=True)
class MockEndpointStatistics:
    """A consistent snapshot of one endpoint's counters, per model and in total."""

    provider: str
    per_model: Mapping[str, MockModelStatistics]

    @property
    def calls(self) -> int:
        return sum(stats.calls for stats in self.per_model.values())

    @property
    def transient_failures(self) -> int:
        return sum(stats.transient_failures for stats in self.per_model.values())

    @property
    def fatal_failures(self) -> int:
        return sum(stats.fatal_failures for stats in self.per_model.values())


def _digest(purpose: bytes, *parts: str) -> bytes:
    """64 bytes from length-prefixed parts, so ("ab", "c") and ("a", "bc") never collide."""
    hasher = hashlib.blake2b(digest_size=64, person=_PERSON)
    hasher.update(purpose)
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        hasher.update(len(data).to_bytes(8, "big"))
        hasher.update(data)
    return hasher.digest()


def _unit(digest: bytes, offset: int) -> float:
    """A uniform draw in [0, 1) from eight bytes of a digest."""
    return int.from_bytes(digest[offset : offset + 8], "big") / _TWO_64


def score_from_text(text: str) -> int:
    """A deterministic score in 1..5 for a text: a stand-in judge for ``llm`` score columns."""
    if not isinstance(text, str):
        raise TypeError(f"score_from_text: text must be a str, got {type(text).__name__}")
    return int.from_bytes(_digest(b"score", text)[:8], "big") % 5 + 1


def _check_rate(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"MockModelEndpoint.{name} must be a number, got {value!r}")
    if not (0.0 <= value <= 1.0):  # also rejects NaN
        raise ValueError(f"MockModelEndpoint.{name} must be in [0, 1], got {_shown(value)}")
    return float(value)


def check_latency_ms(owner: str, name: str, value: object) -> float:
    """``value`` as a latency or jitter in milliseconds, within ``[0, MAX_LATENCY_MS]``; the errors name
    ``owner.name``. Shared with the mock server so both refuse the same values."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}.{name} must be a number, got {value!r}")
    if not 0 <= value <= MAX_LATENCY_MS:  # an int is compared exactly (no float overflow); NaN fails too
        raise ValueError(f"{owner}.{name} must be a finite number in [0, {MAX_LATENCY_MS:_}], got {_shown(value)}")
    return float(value) + 0.0  # + 0.0 turns -0.0 into 0.0


def check_seed(owner: str, value: object) -> int:
    """``value`` as a seed: an int within ``SEED_RANGE``; the errors name ``owner.seed``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}.seed must be an int, got {value!r}")
    low, high = SEED_RANGE
    if not low <= value <= high:
        raise ValueError(f"{owner}.seed must be an int in [-2**63, 2**63 - 1], got {_shown(value)}")
    return value


def _shown(value: float) -> str:
    """``repr`` of a value for a message, except an int too long to print (``repr`` of an int over 4300
    digits raises, and a shorter one would still swamp the message)."""
    if isinstance(value, int) and value.bit_length() > 128:
        return f"an int of {value.bit_length()} bits"
    return repr(value)


def _check_models(models: Sequence[str]) -> tuple[str, ...]:
    if isinstance(models, str) or not isinstance(models, Sequence):
        raise TypeError(f"MockModelEndpoint.models must be a sequence of str, got {models!r}")
    result = tuple(models)
    if not result:
        raise ValueError("MockModelEndpoint.models must not be empty, got []")
    for model in result:
        if not isinstance(model, str) or not model:
            raise ValueError(f"MockModelEndpoint.models entries must be non-empty str, got {model!r}")
    duplicates = sorted({model for model in result if result.count(model) > 1})
    if duplicates:
        raise ValueError(f"MockModelEndpoint.models must be unique, got duplicates {duplicates!r}")
    return result


class MockModelEndpoint:
    """A simulated provider serving several models, safe to call from many worker threads."""

    def __init__(
        self,
        provider: str,
        models: Sequence[str],
        *,
        latency_ms: float = 0,
        jitter_ms: float = 0,
        failure_rate: float = 0,
        fatal_rate: float = 0,
        seed: int = 0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not isinstance(provider, str) or not provider:
            raise ValueError(f"MockModelEndpoint.provider must be a non-empty str, got {provider!r}")
        seed = check_seed("MockModelEndpoint", seed)
        if not callable(sleep):
            raise TypeError(f"MockModelEndpoint.sleep must be callable, got {sleep!r}")
        self.provider = provider
        self.models = _check_models(models)
        self.latency_ms = check_latency_ms("MockModelEndpoint", "latency_ms", latency_ms)
        self.jitter_ms = check_latency_ms("MockModelEndpoint", "jitter_ms", jitter_ms)
        self.failure_rate = _check_rate("failure_rate", failure_rate)
        self.fatal_rate = _check_rate("fatal_rate", fatal_rate)
        if self.failure_rate + self.fatal_rate > 1.0 + 1e-12:
            raise ValueError(
                f"MockModelEndpoint.failure_rate + fatal_rate must be <= 1, "
                f"got {self.failure_rate!r} + {self.fatal_rate!r} = {self.failure_rate + self.fatal_rate!r}"
            )
        self.seed = seed
        self._sleep = sleep
        self._seed_text = str(seed)
        self._lock = threading.Lock()
        # The only mutable state: per-model counters [calls, transient, fatal], guarded by _lock.
        self._counters: dict[str, list[int]] = {model: [0, 0, 0] for model in self.models}

    def complete(self, model: str, prompt: str, *, attempt: int = 1) -> str:
        """Return the model's deterministic reply, after the simulated latency, or raise a failure.

        Raises ``MockTransientError`` (retryable) or ``MockFatalError``; both after the latency, as
        a real endpoint also takes time to fail. ``ValueError``/``TypeError`` for bad arguments.
        """
        if model not in self._counters:
            raise ValueError(f"{self.provider}: unknown model {model!r}; this endpoint serves {list(self.models)!r}")
        if not isinstance(prompt, str):
            raise TypeError(f"{self.provider}/{model}: prompt must be a str, got {type(prompt).__name__}")
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise ValueError(f"{self.provider}/{model}: attempt must be an int >= 1, got {attempt!r}")

        call = _digest(b"call", self._seed_text, self.provider, model, prompt, str(attempt))
        draw = _unit(call, 0)
        fatal = draw < self.fatal_rate
        transient = not fatal and draw < self.fatal_rate + self.failure_rate
        with self._lock:
            counters = self._counters[model]
            counters[0] += 1
            counters[1] += transient
            counters[2] += fatal

        delay_ms = self.latency_ms
        if self.jitter_ms:
            delay_ms += (2.0 * _unit(call, 8) - 1.0) * self.jitter_ms
        if delay_ms > 0:  # skipping sleep(0) keeps zero-latency benchmarks measuring the scheduler
            self._sleep(delay_ms / 1000.0)

        if fatal:
            raise MockFatalError(self.provider, model, attempt)
        if transient:
            raise MockTransientError(self.provider, model, attempt)
        return self._text(model, prompt)

    def _text(self, model: str, prompt: str) -> str:
        digest = _digest(b"text", self._seed_text, self.provider, model, prompt)
        words = " ".join(_VOCABULARY[digest[32 + index] % len(_VOCABULARY)] for index in range(_WORDS_PER_TEXT))
        return f"{model}:{digest[:6].hex()} {words}"

    def statistics(self) -> MockEndpointStatistics:
        """A consistent snapshot of the counters (taken under the lock, returned immutable)."""
        with self._lock:
            per_model = {model: MockModelStatistics(*counters) for model, counters in self._counters.items()}
        return MockEndpointStatistics(provider=self.provider, per_model=MappingProxyType(per_model))

    def __repr__(self) -> str:
        stats = self.statistics()
        return (
            f"<MockModelEndpoint provider={self.provider!r} models={list(self.models)!r} "
            f"latency_ms={self.latency_ms:g}±{self.jitter_ms:g} failure_rate={self.failure_rate:g} "
            f"fatal_rate={self.fatal_rate:g} seed={self.seed} calls={stats.calls} "
            f"transient={stats.transient_failures} fatal={stats.fatal_failures}>"
        )
