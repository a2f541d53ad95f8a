"""Request validation of the mock chat-completions server (``mock_server``): a body is either a
``ChatRequest`` or a ``BadRequest`` naming the offending field (``param``), as OpenAI's errors do."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    prompt: str
    prompt_tokens: int
    max_tokens: int | None


@dataclass(frozen=True, slots=True)
class BadRequest:
    message: str
    param: str | None


Reply = tuple[int, dict[str, Any], dict[str, str]]


def error_body(message: str, kind: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def number_param(value: object, name: str, *, minimum: float, maximum: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"MockOpenAIServer.{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and minimum <= value <= maximum):
        raise ValueError(f"MockOpenAIServer.{name} must be a finite number in [{minimum:g}, {maximum:g}], got {value!r}")
    return float(value)


def optional_int_param(value: object, name: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"MockOpenAIServer.{name} must be an int >= 1 or None, got {value!r}")
    return value


def parse_chat_request(body: bytes) -> ChatRequest | BadRequest:
    """Validate a chat-completions body; a ``BadRequest`` names the offending field (``param``)."""
    try:
        data = json.loads(body)
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        return BadRequest(f"request body is not valid JSON: {error}", None)
    if not isinstance(data, dict):
        return BadRequest(f"request body must be a JSON object, got {type(data).__name__}", None)
    for name in ("model", "messages"):
        if name not in data:
            return BadRequest(f"missing required field '{name}'", name)
    model = data["model"]
    if not isinstance(model, str) or not model:
        return BadRequest("'model' must be a non-empty string", "model")
    messages = data["messages"]
    if not isinstance(messages, list) or not messages:
        return BadRequest("'messages' must be a non-empty array", "messages")
    pairs: list[tuple[str, str]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            return BadRequest(f"'messages[{index}]' must be an object", f"messages[{index}]")
        for key in ("role", "content"):
            if not isinstance(message.get(key), str):
                return BadRequest(f"'messages[{index}].{key}' must be a string", f"messages[{index}].{key}")
        pairs.append((message["role"], message["content"]))
    temperature = data.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2
    ):
        return BadRequest("'temperature' must be a number in [0, 2]", "temperature")
    max_tokens = data.get("max_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        return BadRequest("'max_tokens' must be an integer >= 1", "max_tokens")
    if data.get("stream"):
        return BadRequest("'stream' is not supported by the mock server", "stream")
    prompt = pairs[0][1] if len(pairs) == 1 else json.dumps([list(pair) for pair in pairs], ensure_ascii=False)
    prompt_tokens = sum(len(content.split()) for _, content in pairs)
    return ChatRequest(model, prompt, prompt_tokens, max_tokens)
