"""The official ``openai`` SDK (sync and async clients) against ``MockOpenAIServer`` over real HTTP.

What a recipe author would try first: plain and streamed completions, the model list, a tool-call
follow-up (assistant ``content=None``), content parts, ``n``, ``max_completion_tokens``, JSON replies, and
the SDK's own retry loop under the mock's rate limit. Every reply must be what the in-process mock model
answers for the same prompt, so the dataset does not depend on the transport.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from threadsched.mock.model import MockModelEndpoint
from threadsched.mock.server import MockOpenAIServer

openai = pytest.importorskip("openai")

SEED = 11
TIMEOUT = 30.0
HELLO = [{"role": "user", "content": "hello there"}]


def expected(prompt: str, model: str = "writer") -> str:
    return MockModelEndpoint("mock", [model], seed=SEED).complete(model, prompt)


@pytest.fixture
def server() -> Iterator[MockOpenAIServer]:
    with MockOpenAIServer(rps=None, seed=SEED, models=["writer", "judge"]) as running:
        yield running


def client(server: MockOpenAIServer, **options: Any) -> Any:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="not-a-secret", timeout=TIMEOUT, **{"max_retries": 0, **options})


def test_plain_completion_parses_and_matches_the_in_process_mock(server: MockOpenAIServer) -> None:
    with client(server) as sdk:
        completion = sdk.chat.completions.create(model="writer", messages=HELLO)
    assert completion.object == "chat.completion" and completion.model == "writer"
    assert completion.choices[0].message.content == expected("hello there")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.prompt_tokens == 2


def test_streamed_completion_assembles_to_the_same_text_with_usage(server: MockOpenAIServer) -> None:
    with client(server) as sdk:
        stream = sdk.chat.completions.create(model="writer", messages=HELLO, stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
        plain = sdk.chat.completions.create(model="writer", messages=HELLO)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == expected("hello there")
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage


def test_model_list_and_retrieve(server: MockOpenAIServer) -> None:
    with client(server) as sdk:
        assert [model.id for model in sdk.models.list()] == ["writer", "judge"]
        assert sdk.models.retrieve("judge").owned_by == "mock"
        with pytest.raises(openai.NotFoundError):
            sdk.models.retrieve("gpt-unknown")
        with pytest.raises(openai.NotFoundError):
            sdk.chat.completions.create(model="gpt-unknown", messages=HELLO)


def test_tool_call_follow_up_and_content_parts(server: MockOpenAIServer) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "what is"}, {"type": "text", "text": "the answer"}]},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ]
    with client(server) as sdk:
        completion = sdk.chat.completions.create(model="judge", messages=messages)
    prompt = json.dumps([["system", "be brief"], ["user", "what is\nthe answer"], ["assistant", ""], ["tool", "42"]])
    assert completion.choices[0].message.content == expected(prompt, "judge")


def test_n_choices_max_completion_tokens_and_json_replies(server: MockOpenAIServer) -> None:
    with client(server) as sdk:
        several = sdk.chat.completions.create(model="writer", messages=HELLO, n=3)
        cut = sdk.chat.completions.create(model="writer", messages=HELLO, max_completion_tokens=2)
        as_json = sdk.chat.completions.create(model="writer", messages=HELLO, response_format={"type": "json_object"})
        schema = {"type": "object", "properties": {"title": {"type": "string"}, "words": {"type": "integer"}}}
        fmt = {"type": "json_schema", "json_schema": {"name": "Title", "schema": schema, "strict": True}}
        structured = sdk.chat.completions.create(model="writer", messages=HELLO, response_format=fmt)
    assert [choice.index for choice in several.choices] == [0, 1, 2]
    assert several.choices[0].message.content == expected("hello there")
    assert len({choice.message.content for choice in several.choices}) == 3
    assert cut.choices[0].finish_reason == "length"
    assert cut.choices[0].message.content == " ".join(expected("hello there").split()[:2])
    assert json.loads(as_json.choices[0].message.content) == {"reply": expected("hello there")}
    title = json.loads(structured.choices[0].message.content)
    assert title == {"title": expected("hello there"), "words": len(expected("hello there").split())}


def test_rate_limit_is_a_rate_limit_error_with_the_hint(server: MockOpenAIServer) -> None:
    with MockOpenAIServer(rps=0.5, burst=1, seed=SEED) as limited, client(limited) as sdk:
        sdk.chat.completions.create(model="m", messages=HELLO)
        with pytest.raises(openai.RateLimitError) as refused:
            sdk.chat.completions.create(model="m", messages=HELLO)
    headers = refused.value.response.headers
    assert 1000 < int(headers["retry-after-ms"]) <= 2000 and headers["retry-after"] == "2"


def test_threads_retrying_under_the_rate_limit_all_succeed_with_the_sdk_defaults() -> None:
    """8 threads, 3 calls each, at 4 requests/s with a burst of 2, the SDK's default 2 retries: the
    staggered hints bring refused callers back one refill slot apart, so none is refused three times."""
    with MockOpenAIServer(rps=4, burst=2, seed=SEED) as limited:
        sdk = openai.OpenAI(base_url=f"{limited.url}/v1", api_key="not-a-secret", timeout=TIMEOUT)
        start = threading.Barrier(8, timeout=TIMEOUT)

        def three_calls(thread: int) -> list[str]:
            start.wait()
            return [
                sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": f"{thread}-{i}"}])
                .choices[0]
                .message.content
                for i in range(3)
            ]

        try:
            with ThreadPoolExecutor(8) as pool:
                replies = list(pool.map(three_calls, range(8)))
        finally:
            sdk.close()
        stats = limited.stats()
    assert replies == [[expected(f"{t}-{i}", "m") for i in range(3)] for t in range(8)]
    assert stats["ok"] == 24 and stats["rate_limited"] > 0


def test_async_client_plain_streamed_and_listed(server: MockOpenAIServer) -> None:
    async def main() -> tuple[str, str, list[str]]:
        async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=TIMEOUT) as sdk:
            plain, stream = await asyncio.gather(
                sdk.chat.completions.create(model="writer", messages=HELLO),
                sdk.chat.completions.create(model="writer", messages=HELLO, stream=True),
            )
            streamed = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
            models = [model.id async for model in sdk.models.list()]
            return plain.choices[0].message.content or "", streamed, models

    plain, streamed, models = asyncio.run(main())
    assert plain == streamed == expected("hello there")
    assert models == ["writer", "judge"]
