"""The mock server's reply bodies: ``n`` deterministic choices, JSON reply formats, and the SSE chunks of
a streamed reply. Pure functions of the request and the mock model (no clock, no randomness), so that
the same request gives byte-identical bodies under the same seed.

* Choice 0 is exactly the in-process mock model's text for the prompt (so a recipe gives the same
  dataset over HTTP); choice ``i`` > 0 is the model's text for the prompt tagged with ``i``.
* ``max_tokens`` cuts the text to that many words (``finish_reason="length"``); a JSON reply is built
  from the cut text, so it always parses.
* ``json_object`` replies ``{"reply": TEXT}``; ``json_schema`` replies an instance of the schema (strings
  are the text, integers its word count, arrays one item, the first of an ``enum``/``anyOf``).
* A stream sends, per choice, a role chunk, one chunk per word of the content, and a chunk with the
  ``finish_reason``; with ``include_usage`` a last chunk with no choices carries the usage, as OpenAI does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from threadsched.mock.model import MockModelEndpoint
from threadsched.mock.server_requests import ChatRequest

__all__ = ["CREATED", "MockChoice", "completion_body", "completion_chunks", "mock_choices", "schema_instance"]

CREATED = 1_700_000_000
"""The ``created`` of every reply: fixed, so replies are byte-identical across runs (a mock has no clock)."""
_MAX_SCHEMA_DEPTH = 32
_PIECE = re.compile(r"\s*\S+|\s+$")  # pieces that join back to the content exactly


@dataclass(frozen=True, slots=True)
class MockChoice:
    content: str
    finish_reason: str
    completion_tokens: int


def mock_choices(request: ChatRequest, endpoint: MockModelEndpoint) -> list[MockChoice]:
    choices = []
    for index in range(request.n):
        prompt = request.prompt if index == 0 else f"{request.prompt}\0choice {index}"
        words = endpoint.complete(request.model, prompt).split()
        finish_reason = "stop"
        if request.max_tokens is not None and len(words) > request.max_tokens:
            words, finish_reason = words[: request.max_tokens], "length"
        text = " ".join(words)
        fmt = request.response_format
        if fmt.kind == "json_object":
            content = json.dumps({"reply": text}, ensure_ascii=False)
        elif fmt.kind == "json_schema":
            content = json.dumps(schema_instance(fmt.schema or {}, text), ensure_ascii=False)
        else:
            content = text
        choices.append(MockChoice(content, finish_reason, len(words)))
    return choices


def _usage(request: ChatRequest, choices: list[MockChoice]) -> dict[str, int]:
    completion = sum(choice.completion_tokens for choice in choices)
    return {
        "prompt_tokens": request.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": request.prompt_tokens + completion,
    }


def completion_body(request: ChatRequest, reply_id: str, choices: list[MockChoice]) -> dict[str, Any]:
    return {
        "id": reply_id,
        "object": "chat.completion",
        "created": CREATED,
        "model": request.model,
        "choices": [
            {
                "index": index,
                "message": {"role": "assistant", "content": choice.content, "refusal": None},
                "logprobs": None,
                "finish_reason": choice.finish_reason,
            }
            for index, choice in enumerate(choices)
        ],
        "usage": _usage(request, choices),
    }


def completion_chunks(request: ChatRequest, reply_id: str, choices: list[MockChoice]) -> Iterator[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of a streamed reply, in order (the ``[DONE]`` line is the server's)."""

    def chunk(parts: list[dict[str, Any]], usage: dict[str, int] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": reply_id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": request.model,
            "choices": parts,
        }
        if request.include_usage:
            body["usage"] = usage
        return body

    def part(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> list[dict[str, Any]]:
        return [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]

    for index, choice in enumerate(choices):
        yield chunk(part(index, {"role": "assistant", "content": ""}))
        for piece in _PIECE.findall(choice.content):
            yield chunk(part(index, {"content": piece}))
        yield chunk(part(index, {}, choice.finish_reason))
    if request.include_usage:
        yield chunk([], _usage(request, choices))


def schema_instance(schema: Mapping[str, Any], text: str, *, root: Mapping[str, Any] | None = None, depth: int = 0) -> Any:
    """A deterministic value that satisfies the common subset of JSON Schema that structured outputs use."""
    root = schema if root is None else root
    if depth > _MAX_SCHEMA_DEPTH:
        return None
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    reference = schema.get("$ref")
    if isinstance(reference, str) and reference.startswith("#/"):
        target: Any = root
        for key in reference[2:].split("/"):
            target = target.get(key, {}) if isinstance(target, Mapping) else {}
        return schema_instance(target if isinstance(target, Mapping) else {}, text, root=root, depth=depth + 1)
    for combinator in ("anyOf", "oneOf", "allOf"):
        options = schema.get(combinator)
        if isinstance(options, list) and options and isinstance(options[0], Mapping):
            return schema_instance(options[0], text, root=root, depth=depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return {}
        return {
            name: schema_instance(sub if isinstance(sub, Mapping) else {}, text, root=root, depth=depth + 1)
            for name, sub in properties.items()
        }
    if kind == "array":
        items = schema.get("items")
        return [schema_instance(items if isinstance(items, Mapping) else {}, text, root=root, depth=depth + 1)]
    if kind == "integer":
        return len(text.split())
    if kind == "number":
        return float(len(text.split()))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return text
