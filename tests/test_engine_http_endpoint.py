"""``kind = "openai"`` providers end to end: the engine over real HTTP against the local mock server,
through request admission (AIMD) and the model request executor."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("httpx")

from support import GENEROUS, TrickleServer, assert_healthy, small_recipe

from threadsched.core.events import MemoryEventSink
from threadsched.engine import load_recipe, parse_recipe
from threadsched.engine.columns import LLM_RETRYABLE_ERRORS, build_endpoints, close_endpoints
from threadsched.engine.http_endpoint import HttpFatalError, HttpModelEndpoint, HttpTransientError
from threadsched.engine.recipe import Recipe
from threadsched.engine.runner import run_recipe, run_reference
from threadsched.mock.server import MockOpenAIServer

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "http_mock.toml"


@pytest.fixture
def server() -> Iterator[MockOpenAIServer]:
    with MockOpenAIServer(port=0, rps=50, burst=5, latency_ms=40, jitter_ms=10, seed=3) as running:
        yield running


def example(url: str, **run: object) -> Recipe:
    text = EXAMPLE.read_text(encoding="utf-8").replace("http://127.0.0.1:8765", url)
    for key, value in run.items():
        text = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
    return parse_recipe(text, source="http_mock.toml")


def test_the_example_recipe_parses_with_an_openai_provider() -> None:
    recipe = load_recipe(EXAMPLE)
    assert recipe.providers["local"].kind == "openai"
    assert dict(recipe.resource_limits) == {"llm:local/judge": 4, "llm:local/writer": 4}


def test_every_row_completes_over_http_with_the_reference_hash(server: MockOpenAIServer, tmp_path: Path) -> None:
    recipe = example(server.url, records=30)
    sink = MemoryEventSink()
    result = run_recipe(recipe, tmp_path / "scheduled", workers=6, events=sink)
    assert_healthy(result)
    dropped = set(result.dropped.values())
    assert dropped <= {"filter topic != 'off-topic'"}  # only the pre-batch filter drops rows
    assert result.rows_written + len(result.dropped) == 30
    reference = run_reference(recipe, tmp_path / "reference")
    assert reference.output_hash == result.output_hash
    requests = [event for event in sink.events if event.stream == "requests"]
    completed = [event for event in requests if event.kind == "model_request_completed"]
    acquired = [event for event in requests if event.kind == "request_lease_acquired"]
    released = [event for event in requests if event.kind == "request_lease_released"]
    assert completed and len(acquired) == len(released) == len(completed)
    assert all(event.run_id == result.run_id for event in requests)
    assert all(event.group == event.correlation["column"] for event in acquired)  # request fairness follows columns
    assert all(
        str(event.correlation.get("engine_task", "")).startswith(("question/", "answer/", "score/")) for event in completed
    )
    assert sorted(event.sequence for event in requests) == list(range(len(requests)))  # one stream, one sequence


def test_429s_lower_the_limit_and_stop_once_it_has_adapted(tmp_path: Path) -> None:
    # 8 requests in flight at 40 ms each ask for ~200/s of a 50/s budget: the server must answer 429.
    with MockOpenAIServer(port=0, rps=50, burst=4, latency_ms=40, seed=3) as server:
        text = EXAMPLE.read_text(encoding="utf-8").replace("http://127.0.0.1:8765", server.url)
        text = text.replace("max_parallel_requests = 4", "max_parallel_requests = 8")
        recipe = parse_recipe(text)
        sink = MemoryEventSink()
        result = run_recipe(recipe, tmp_path, workers=8, events=sink)
        stats = server.stats()
    assert_healthy(result)
    assert set(result.dropped.values()) <= {"filter topic != 'off-topic'"}
    assert stats["rate_limited"] > 0
    decreases = [event for event in sink.events if event.kind == "request_limit_decreased"]
    assert decreases, "a 429 must lower the limit"
    for resource in {tuple(event.resources or ()) for event in decreases}:  # {"local/writer:chat": 1}
        ceilings = [event.diagnostics["before"] for event in decreases if tuple(event.resources or ()) == resource]
        # Each rate-limit wave happens at a strictly lower limit than the one before: increases stay below
        # the last ceiling, so the number of waves — and of 429s — is bounded; it stops growing.
        assert ceilings == sorted(ceilings, reverse=True) and len(set(ceilings)) == len(ceilings)


def test_a_refused_request_is_fatal_and_a_transient_one_retryable(tmp_path: Path) -> None:
    with MockOpenAIServer(port=0, rps=None, seed=3) as server:
        recipe = example(server.url, records=2)
        endpoints = build_endpoints(recipe)
        try:
            endpoint = endpoints["local"]
            assert isinstance(endpoint, HttpModelEndpoint)
            assert endpoint.complete("writer", "hello") == endpoint.complete("writer", "hello")
            with pytest.raises(ValueError, match="does not serve model 'nope'"):
                endpoint.complete("nope", "hello")
        finally:
            close_endpoints(endpoints)
    assert HttpTransientError in LLM_RETRYABLE_ERRORS and HttpFatalError not in LLM_RETRYABLE_ERRORS


def test_runs_with_http_providers_lease_tasks_provider_aware() -> None:
    from threadsched.core.policy import StrictFairPolicy
    from threadsched.engine.http_endpoint import scheduler_policy
    from threadsched.policies.drf import DominantResourceFairPolicy
    from threadsched.policies.provider_aware import ProviderAwarePolicy

    assert isinstance(scheduler_policy("strict", build_endpoints(small_recipe())), StrictFairPolicy)  # mock only
    with MockOpenAIServer(port=0, rps=None, seed=3) as server:
        endpoints = build_endpoints(example(server.url, records=2))
        try:
            policy = scheduler_policy("drf", endpoints)
            assert isinstance(policy, ProviderAwarePolicy) and isinstance(policy.inner, DominantResourceFairPolicy)
        finally:
            close_endpoints(endpoints)


@pytest.mark.parametrize("mode", ["body", "headers"])
def test_a_run_against_a_trickling_provider_ends_with_its_rows_dropped(mode: str, tmp_path: Path) -> None:
    sink = MemoryEventSink()
    with TrickleServer(mode) as server:
        # Seed 7 samples an on-topic row among the first three: at least one row calls the provider.
        recipe = example(server.url, records=3, max_salvage_rounds=0, timeout_s=0.3)
        result = run_recipe(recipe, tmp_path, workers=2, events=sink)
        attempts = sum(event.kind == "model_request_started" for event in sink.events)
        assert server.wait_for_hang_ups(attempts, GENEROUS)  # no connection left trickling
    assert result.rows_written == 0 and result.final_active_leases == 0 and result.shutdown_clean
    timed_out = [reason for reason in result.dropped.values() if "provider_timeout" in reason]
    assert timed_out and len(result.dropped) == 3
    assert set(result.dropped.values()) - set(timed_out) <= {"filter topic != 'off-topic'"}
    requests = [event for event in sink.events if event.stream == "requests"]
    acquired = sorted(event.lease_id for event in requests if event.kind == "request_lease_acquired")
    released = sorted(event.lease_id for event in requests if event.kind == "request_lease_released")
    assert attempts and acquired == released and len(set(released)) == len(released) == attempts
