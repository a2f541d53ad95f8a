"""The mock server's reply bodies: deterministic choices, JSON formats, stream chunks (no HTTP here)."""

from __future__ import annotations

import json
from typing import Any

from threadsched.mock.model import MockModelEndpoint
from threadsched.mock.replies import CREATED, completion_body, completion_chunks, mock_choices, schema_instance
from threadsched.mock.server_requests import ChatRequest, parse_chat_request


def parsed(**fields: Any) -> ChatRequest:
    body = {"model": "m1", "messages": [{"role": "user", "content": "hello there"}], **fields}
    request = parse_chat_request(json.dumps(body).encode())
    assert isinstance(request, ChatRequest), request
    return request


def endpoint(seed: int = 0) -> MockModelEndpoint:
    return MockModelEndpoint("mock", ["m1"], seed=seed)


def test_choice_zero_is_the_in_process_mock_text_and_the_others_differ() -> None:
    request = parsed(n=3)
    choices = mock_choices(request, endpoint())
    assert len(choices) == 3
    assert choices[0].content == endpoint().complete("m1", "hello there")
    assert len({choice.content for choice in choices}) == 3
    assert choices == mock_choices(request, endpoint())  # a pure function of the request and the seed
    assert choices != mock_choices(request, endpoint(seed=1))


def test_max_tokens_cuts_words_and_reports_length() -> None:
    full = mock_choices(parsed(), endpoint())[0]
    cut = mock_choices(parsed(max_completion_tokens=2), endpoint())[0]
    assert full.finish_reason == "stop"
    assert cut.finish_reason == "length"
    assert cut.content == " ".join(full.content.split()[:2])
    assert cut.completion_tokens == 2


def test_json_object_reply_parses_even_when_cut() -> None:
    for extra in ({}, {"max_tokens": 1}):
        choice = mock_choices(parsed(response_format={"type": "json_object"}, **extra), endpoint())[0]
        reply = json.loads(choice.content)
        assert set(reply) == {"reply"}
        assert isinstance(reply["reply"], str) and reply["reply"]


def test_json_schema_reply_is_an_instance_of_the_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "answer": {"type": "string"},
            "score": {"type": "integer"},
            "ratio": {"type": "number"},
            "ok": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "grade": {"enum": ["a", "b"]},
            "nested": {"$ref": "#/$defs/Inner"},
            "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "nullable": {"type": ["null", "string"]},
        },
        "$defs": {"Inner": {"type": "object", "properties": {"k": {"const": 7}}}},
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "Out", "schema": schema, "strict": True}}
    choice = mock_choices(parsed(response_format=fmt), endpoint())[0]
    reply = json.loads(choice.content)
    words = len(reply["answer"].split())
    assert reply == {
        "answer": reply["answer"],
        "score": words,
        "ratio": float(words),
        "ok": True,
        "tags": [reply["answer"]],
        "grade": "a",
        "nested": {"k": 7},
        "maybe": words,
        "nullable": reply["answer"],
    }


def test_schema_instance_stops_at_a_self_reference() -> None:
    schema = {"$ref": "#/$defs/Node", "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}}}
    value = schema_instance(schema, "x")
    depth = 0
    while isinstance(value, dict):
        value, depth = value["next"], depth + 1
    assert value is None and depth > 1


def test_completion_body_is_openai_shaped_with_summed_usage() -> None:
    request = parsed(n=2)
    choices = mock_choices(request, endpoint())
    body = completion_body(request, "chatcmpl-x", choices)
    assert body["object"] == "chat.completion" and body["created"] == CREATED and body["model"] == "m1"
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert [c["message"]["content"] for c in body["choices"]] == [c.content for c in choices]
    assert body["usage"] == {
        "prompt_tokens": 2,
        "completion_tokens": sum(c.completion_tokens for c in choices),
        "total_tokens": 2 + sum(c.completion_tokens for c in choices),
    }


def test_stream_chunks_rebuild_each_choice_and_end_with_usage() -> None:
    request = parsed(n=2, stream=True, stream_options={"include_usage": True})
    choices = mock_choices(request, endpoint())
    chunks = list(completion_chunks(request, "chatcmpl-x", choices))
    assert all(chunk["object"] == "chat.completion.chunk" and chunk["id"] == "chatcmpl-x" for chunk in chunks)
    *with_choices, last = chunks
    assert last["choices"] == [] and last["usage"] == completion_body(request, "chatcmpl-x", choices)["usage"]
    assert all(chunk["usage"] is None for chunk in with_choices)
    for index, choice in enumerate(choices):
        mine = [chunk["choices"][0] for chunk in with_choices if chunk["choices"][0]["index"] == index]
        assert mine[0]["delta"] == {"role": "assistant", "content": ""}
        assert "".join(part["delta"].get("content", "") for part in mine) == choice.content
        assert len(mine) == 2 + len(choice.content.split())  # role, one chunk per word, finish
        assert [part["finish_reason"] for part in mine] == [None] * (len(mine) - 1) + [choice.finish_reason]


def test_stream_without_usage_has_no_usage_key() -> None:
    request = parsed(stream=True)
    chunks = list(completion_chunks(request, "r", mock_choices(request, endpoint())))
    assert chunks and all("usage" not in chunk for chunk in chunks)
