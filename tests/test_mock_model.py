"""The mock model (threadsched.mock.model): determinism, failure model, injected latency, validation, thread safety."""

from __future__ import annotations

import pickle
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import numbers_inside, numbers_outside

from threadsched.engine.recipe.ranges import RECIPE_RANGES
from threadsched.mock.model import (
    RETRYABLE_ERRORS,
    MockFatalError,
    MockModelEndpoint,
    MockProviderError,
    MockTransientError,
    score_from_text,
)


class RecordingSleep:
    """A fake ``time.sleep`` that records durations (thread-safe, never sleeps)."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.calls.append(seconds)


def endpoint(**kwargs: Any) -> MockModelEndpoint:
    kwargs.setdefault("sleep", RecordingSleep())
    return MockModelEndpoint("mock", ["writer", "judge"], **kwargs)


def outcome(ep: MockModelEndpoint, model: str, prompt: str, attempt: int = 1) -> str:
    """The reply, or the failure's class name, so outcomes compare as plain values."""
    try:
        return ep.complete(model, prompt, attempt=attempt)
    except MockProviderError as exc:
        return type(exc).__name__


# -- determinism -------------------------------------------------------------------------------


def test_same_inputs_same_output_across_instances() -> None:
    first, second = endpoint(seed=7), endpoint(seed=7)
    for index in range(50):
        assert first.complete("writer", f"p{index}") == second.complete("writer", f"p{index}")


def test_output_shape_starts_with_model_and_has_words() -> None:
    text = endpoint().complete("judge", "hello")
    head, *words = text.split(" ")
    assert head.startswith("judge:") and len(head) == len("judge:") + 12
    assert len(words) == 4 and all(word.isalpha() for word in words)


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 1},
        {"model": "judge"},
        {"prompt": "other prompt"},
        {"provider": "other"},
    ],
)
def test_any_input_change_changes_output(change: dict[str, Any]) -> None:
    base = {"seed": 0, "model": "writer", "prompt": "a prompt", "provider": "mock"}
    changed = {**base, **change}

    def reply(args: dict[str, Any]) -> str:
        ep = MockModelEndpoint(args["provider"], ["writer", "judge"], seed=args["seed"], sleep=RecordingSleep())
        return ep.complete(args["model"], args["prompt"])

    assert reply(base) != reply(changed)


def test_outputs_of_distinct_prompts_do_not_collide() -> None:
    ep = endpoint()
    outputs = {ep.complete("writer", f"prompt {index}") for index in range(2000)}
    assert len(outputs) == 2000


def test_text_is_independent_of_attempt_so_retries_do_not_change_the_dataset() -> None:
    # Deliberate: which attempt succeeds depends on scheduling; the reference hash must not.
    ep = endpoint()
    assert {ep.complete("writer", "stable", attempt=attempt) for attempt in range(1, 6)} == {ep.complete("writer", "stable")}


def test_attempt_changes_the_failure_decision() -> None:
    ep = endpoint(failure_rate=0.5)
    prompts = [f"p{index}" for index in range(200)]
    first = [outcome(ep, "writer", prompt, 1) for prompt in prompts]
    second = [outcome(ep, "writer", prompt, 2) for prompt in prompts]
    assert first != second


def test_prompt_boundaries_do_not_collide() -> None:
    # Length-prefixed hashing: ("writer", "ab") must differ from a shifted split of the same bytes.
    ep = MockModelEndpoint("mock", ["a", "ab"], sleep=RecordingSleep())
    assert ep.complete("a", "bc") != ep.complete("ab", "c")


# -- failure model ------------------------------------------------------------------------------


@pytest.mark.parametrize(("failure_rate", "fatal_rate"), [(0.2, 0.05), (0.5, 0.0), (0.0, 0.3), (0.1, 0.1)])
def test_observed_failure_rates_match_configuration(failure_rate: float, fatal_rate: float) -> None:
    # Deterministic given the hash: this pins the draw's uniformity, not timing.
    ep = endpoint(failure_rate=failure_rate, fatal_rate=fatal_rate, seed=3)
    count = 5000
    results = [outcome(ep, "writer", f"distinct prompt #{index}") for index in range(count)]
    transient = results.count("MockTransientError") / count
    fatal = results.count("MockFatalError") / count
    assert transient == pytest.approx(failure_rate, abs=0.03)
    assert fatal == pytest.approx(fatal_rate, abs=0.03)
    stats = ep.statistics()
    assert stats.per_model["writer"].calls == count
    assert stats.per_model["writer"].transient_failures == results.count("MockTransientError")
    assert stats.per_model["writer"].fatal_failures == results.count("MockFatalError")
    assert stats.per_model["judge"].calls == 0


def test_failure_rate_one_always_transient() -> None:
    ep = endpoint(failure_rate=1.0)
    for index in range(200):
        with pytest.raises(MockTransientError):
            ep.complete("writer", f"p{index}", attempt=index % 5 + 1)


def test_fatal_rate_one_always_fatal() -> None:
    ep = endpoint(fatal_rate=1.0)
    for index in range(200):
        with pytest.raises(MockFatalError):
            ep.complete("judge", f"p{index}", attempt=index % 5 + 1)


def test_zero_rates_never_fail() -> None:
    ep = endpoint()
    assert all(not outcome(ep, "writer", f"p{index}").startswith("Mock") for index in range(500))


def test_retry_with_new_attempt_can_succeed() -> None:
    ep = endpoint(failure_rate=0.5)
    prompt = next(f"p{index}" for index in range(1000) if outcome(ep, "writer", f"p{index}") == "MockTransientError")
    with pytest.raises(MockTransientError):
        ep.complete("writer", prompt, attempt=1)  # the same attempt fails again: deterministic
    attempt = next(attempt for attempt in range(2, 50) if not outcome(ep, "writer", prompt, attempt).startswith("Mock"))
    assert ep.complete("writer", prompt, attempt=attempt) == endpoint().complete("writer", prompt)


def test_error_hierarchy_and_retryable_tuple() -> None:
    assert issubclass(MockTransientError, MockProviderError)
    assert issubclass(MockFatalError, MockProviderError)
    assert (MockTransientError,) == RETRYABLE_ERRORS
    assert not issubclass(MockFatalError, RETRYABLE_ERRORS)
    assert MockTransientError.retryable and not MockFatalError.retryable


def test_errors_carry_location_but_never_the_prompt() -> None:
    ep = endpoint(failure_rate=1.0)
    with pytest.raises(MockTransientError) as info:
        ep.complete("writer", "SECRET prompt text", attempt=3)
    error = info.value
    assert (error.provider, error.model, error.attempt) == ("mock", "writer", 3)
    assert "mock/writer" in str(error) and "attempt 3" in str(error)
    assert "SECRET" not in str(error) and "SECRET" not in repr(error)
    assert "SECRET" not in repr(ep)
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is MockTransientError and str(clone) == str(error)


# -- latency ------------------------------------------------------------------------------------


def test_latency_uses_injected_sleep_with_jitter_in_range() -> None:
    sleep = RecordingSleep()
    ep = MockModelEndpoint("mock", ["writer"], latency_ms=100, jitter_ms=20, failure_rate=0.3, sleep=sleep)
    for index in range(300):
        outcome(ep, "writer", f"p{index}")
    assert len(sleep.calls) == 300  # failures take time too
    assert all(0.080 <= seconds <= 0.120 for seconds in sleep.calls)
    assert len(set(sleep.calls)) > 250  # jitter actually varies
    assert min(sleep.calls) < 0.085 and max(sleep.calls) > 0.115


def test_latency_without_jitter_is_exact() -> None:
    sleep = RecordingSleep()
    ep = MockModelEndpoint("mock", ["writer"], latency_ms=5, sleep=sleep)
    ep.complete("writer", "x")
    assert sleep.calls == [0.005]


def test_jitter_is_clamped_at_zero_and_zero_delay_does_not_sleep() -> None:
    sleep = RecordingSleep()
    ep = MockModelEndpoint("mock", ["writer"], latency_ms=1, jitter_ms=50, sleep=sleep)
    for index in range(200):
        ep.complete("writer", f"p{index}")
    assert sleep.calls and all(0 < seconds <= 0.051 for seconds in sleep.calls)
    assert len(sleep.calls) < 200  # the clamped-to-zero draws skip sleeping entirely


def test_zero_latency_never_sleeps() -> None:
    sleep = RecordingSleep()
    MockModelEndpoint("mock", ["writer"], sleep=sleep).complete("writer", "x")
    assert sleep.calls == []


def test_jitter_is_deterministic() -> None:
    first, second = RecordingSleep(), RecordingSleep()
    for sleep in (first, second):
        ep = MockModelEndpoint("mock", ["writer"], latency_ms=10, jitter_ms=5, sleep=sleep)
        for index in range(20):
            ep.complete("writer", f"p{index}")
    assert first.calls == second.calls


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"failure_rate": 1.5}, ValueError, r"failure_rate must be in \[0, 1\], got 1\.5"),
        ({"failure_rate": -0.1}, ValueError, r"failure_rate must be in \[0, 1\], got -0\.1"),
        ({"fatal_rate": float("nan")}, ValueError, r"fatal_rate must be in \[0, 1\], got nan"),
        ({"failure_rate": 0.7, "fatal_rate": 0.4}, ValueError, r"failure_rate \+ fatal_rate must be <= 1, got 0\.7 \+ 0\.4"),
        ({"latency_ms": -1}, ValueError, r"latency_ms must be a finite number in \[0, 3_600_000\], got -1"),
        ({"jitter_ms": float("inf")}, ValueError, r"jitter_ms must be a finite number in \[0, 3_600_000\], got inf"),
        ({"latency_ms": 1e300}, ValueError, r"latency_ms must be a finite number in \[0, 3_600_000\], got 1e\+300"),
        ({"jitter_ms": 3_600_001}, ValueError, r"jitter_ms must be a finite number in \[0, 3_600_000\], got 3600001"),
        ({"latency_ms": 10**400}, ValueError, r"latency_ms must be a finite number in .*, got an int of 1329 bits"),
        ({"seed": 2**63}, ValueError, r"seed must be an int in \[-2\*\*63, 2\*\*63 - 1\], got 9223372036854775808"),
        ({"failure_rate": True}, TypeError, r"failure_rate must be a number, got True"),
        ({"latency_ms": "5"}, TypeError, r"latency_ms must be a number, got '5'"),
        ({"seed": 1.0}, TypeError, r"seed must be an int, got 1\.0"),
        ({"sleep": None}, TypeError, r"sleep must be callable, got None"),
    ],
)
def test_constructor_validation(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        MockModelEndpoint("mock", ["writer"], **kwargs)


def test_rates_summing_to_exactly_one_are_accepted() -> None:
    MockModelEndpoint("mock", ["writer"], failure_rate=0.7, fatal_rate=0.3)


# A library user meets the recipe's ranges (engine/recipe/ranges.py): each numeric argument and its recipe field.
NUMERIC_ARGUMENTS = {
    "latency_ms": RECIPE_RANGES["providers.NAME.latency_ms"],
    "jitter_ms": RECIPE_RANGES["providers.NAME.jitter_ms"],
    "failure_rate": RECIPE_RANGES["providers.NAME.failure_rate"],
    "fatal_rate": RECIPE_RANGES["providers.NAME.fatal_rate"],
    "seed": RECIPE_RANGES["run.seed"],
}


def _values(name: str, strategy: Any) -> Any:
    entry = NUMERIC_ARGUMENTS[name]
    return st.tuples(st.just(name), strategy(entry.minimum, entry.maximum, integer=entry.kind == "integer"))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(NUMERIC_ARGUMENTS)).flatmap(lambda name: _values(name, numbers_outside)) | st.tuples(
    st.sampled_from(sorted(NUMERIC_ARGUMENTS)), st.none()))  # fmt: skip
def test_a_numeric_argument_outside_the_recipe_range_is_refused_naming_it(case: tuple[str, object]) -> None:
    name, value = case
    with pytest.raises((TypeError, ValueError), match=rf"^MockModelEndpoint\.{name} must be "):
        MockModelEndpoint("mock", ["writer"], **{name: value})  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(NUMERIC_ARGUMENTS)).flatmap(lambda name: _values(name, numbers_inside)))
def test_a_numeric_argument_inside_the_recipe_range_is_taken(case: tuple[str, float]) -> None:
    name, value = case
    ep = MockModelEndpoint("mock", ["writer"], **{name: value})  # type: ignore[arg-type]
    assert getattr(ep, name) == value and type(getattr(ep, name)) is (int if name == "seed" else float)


@pytest.mark.parametrize(
    ("provider", "models", "error", "match"),
    [
        ("", ["writer"], ValueError, r"provider must be a non-empty str, got ''"),
        ("mock", [], ValueError, r"models must not be empty"),
        ("mock", ["writer", "writer"], ValueError, r"models must be unique, got duplicates \['writer'\]"),
        ("mock", ["writer", ""], ValueError, r"models entries must be non-empty str, got ''"),
        ("mock", "writer", TypeError, r"models must be a sequence of str, got 'writer'"),
    ],
)
def test_provider_and_models_validation(provider: str, models: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        MockModelEndpoint(provider, models)


def test_complete_argument_validation() -> None:
    ep = endpoint()
    with pytest.raises(ValueError, match=r"mock: unknown model 'nope'; this endpoint serves \['writer', 'judge'\]"):
        ep.complete("nope", "x")
    with pytest.raises(ValueError, match=r"attempt must be an int >= 1, got 0"):
        ep.complete("writer", "x", attempt=0)
    with pytest.raises(TypeError, match=r"prompt must be a str, got int"):
        ep.complete("writer", 5)  # type: ignore[arg-type]
    assert ep.statistics().calls == 0  # rejected calls are not counted


# -- statistics, repr, score --------------------------------------------------------------------


def test_statistics_snapshot_and_repr() -> None:
    ep = endpoint(failure_rate=0.5, latency_ms=3, jitter_ms=1)
    for index in range(40):
        outcome(ep, "writer" if index % 2 else "judge", f"p{index}")
    stats = ep.statistics()
    assert stats.provider == "mock"
    assert stats.calls == 40 == stats.per_model["writer"].calls + stats.per_model["judge"].calls
    assert 0 < stats.transient_failures < 40 and stats.fatal_failures == 0
    with pytest.raises(TypeError):
        stats.per_model["writer"] = stats.per_model["judge"]  # type: ignore[index]
    text = repr(ep)
    assert "provider='mock'" in text and "calls=40" in text and f"transient={stats.transient_failures}" in text


def test_score_from_text_is_deterministic_and_covers_1_to_5() -> None:
    scores = [score_from_text(f"answer {index}") for index in range(500)]
    assert set(scores) == {1, 2, 3, 4, 5}
    assert scores == [score_from_text(f"answer {index}") for index in range(500)]
    with pytest.raises(TypeError, match=r"text must be a str"):
        score_from_text(3)  # type: ignore[arg-type]


# -- threads ------------------------------------------------------------------------------------


def test_concurrent_calls_match_sequential_calls() -> None:
    threads_count, per_thread = 8, 250
    work = [
        [(("writer", "judge")[index % 2], f"t{thread} p{index}", index % 3 + 1) for index in range(per_thread)]
        for thread in range(threads_count)
    ]
    config: dict[str, Any] = {"failure_rate": 0.2, "fatal_rate": 0.05, "latency_ms": 1, "jitter_ms": 1, "seed": 11}

    sequential_ep = endpoint(**config)
    expected = [[outcome(sequential_ep, *call) for call in calls] for calls in work]

    shared = endpoint(**config)
    barrier = threading.Barrier(threads_count)
    results: list[list[str]] = [[] for _ in range(threads_count)]
    errors: list[BaseException] = []

    def run(thread: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[thread] = [outcome(shared, *call) for call in work[thread]]
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(thread,), name=f"mock-caller-{thread}") for thread in range(threads_count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert not errors
    assert results == expected
    assert shared.statistics() == sequential_ep.statistics()
    assert shared.statistics().calls == threads_count * per_thread
