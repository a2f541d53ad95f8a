"""The mock server's request parser: what the official SDK sends becomes a ``ChatRequest`` (the HTTP
400s for bad bodies are tested through the server in ``test_requests_mock_server``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from threadsched.mock.server_requests import BadRequest, ChatRequest, ResponseFormat, parse_chat_request


def parsed(**fields: Any) -> ChatRequest:
    body = {"model": "m1", "messages": [{"role": "user", "content": "hello there"}], **fields}
    request = parse_chat_request(json.dumps(body).encode())
    assert isinstance(request, ChatRequest), request
    return request


def test_defaults() -> None:
    request = parsed()
    assert (request.model, request.prompt, request.prompt_tokens, request.max_tokens) == ("m1", "hello there", 2, None)
    assert (request.n, request.stream, request.include_usage, request.response_format) == (1, False, False, ResponseFormat())


def test_stream_options_and_formats() -> None:
    streamed = parsed(stream=True, stream_options={"include_usage": True}, n=4)
    assert (streamed.stream, streamed.include_usage, streamed.n) == (True, True, 4)
    schema = {"type": "object"}
    fmt = parsed(response_format={"type": "json_schema", "json_schema": {"name": "S", "schema": schema}}).response_format
    assert fmt == ResponseFormat("json_schema", schema)
    assert parsed(response_format={"type": "json_object"}).response_format == ResponseFormat("json_object")
    n_true = b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "n": true}'
    assert isinstance(parse_chat_request(n_true), BadRequest)


@pytest.mark.parametrize(
    ("messages", "prompt"),
    [
        ([{"role": "user", "content": [{"type": "text", "text": "a b"}, {"type": "text", "text": "c"}]}], "a b\nc"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}, {"type": "text", "text": "x"}]}],
            "x",
        ),
        (
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]},
                {"role": "tool", "content": "42", "tool_call_id": "c1"},
            ],
            json.dumps([["user", "q"], ["assistant", ""], ["tool", "42"]]),
        ),
    ],
)
def test_content_parts_and_null_assistant_content_make_the_prompt(messages: list[Any], prompt: str) -> None:
    request = parse_chat_request(json.dumps({"model": "m", "messages": messages}).encode())
    assert isinstance(request, ChatRequest) and request.prompt == prompt


def test_the_newer_max_completion_tokens_wins() -> None:
    assert parsed(max_tokens=5, max_completion_tokens=2).max_tokens == 2
    assert parsed(max_tokens=5).max_tokens == 5
