"""Request validation of the mock chat-completions server (``mock_server``): a body is either a
``ChatRequest`` or a ``BadRequest`` naming the offending field (``param``), as OpenAI's errors do.

What the official SDK sends and the mock accepts: ``content`` as a string, as a list of content parts
(the ``text`` parts make up the prompt; image, audio and file parts are accepted and not read) or null on
an assistant message (a tool-call follow-up); ``n`` choices; ``max_completion_tokens`` (the newer name
of ``max_tokens``, which wins when both are given); ``stream`` with ``stream_options.include_usage``;
``response_format`` of type ``text``, ``json_object`` or ``json_schema``. Unknown fields are ignored, as
the real endpoint ignores most optional ones (tools, seed, user, metadata, ...).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MESSAGE_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
MAX_CHOICES = 128  # OpenAI's own bound on ``n``
_IGNORED_PART_TYPES = frozenset({"image_url", "input_audio", "file", "refusal"})


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """``kind``: ``text``, ``json_object`` or ``json_schema`` (then ``schema`` is the JSON schema)."""

    kind: str = "text"
    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    prompt: str
    prompt_tokens: int
    max_tokens: int | None
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    response_format: ResponseFormat = ResponseFormat()


@dataclass(frozen=True, slots=True)
class BadRequest:
    message: str
    param: str | None


Reply = tuple[int, dict[str, Any], dict[str, str]]


def error_body(message: str, kind: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def optional_int_param(value: object, name: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"MockOpenAIServer.{name} must be an int >= 1 or None, got {value!r}")
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _message_text(index: int, message: Mapping[str, Any]) -> str | BadRequest:
    """The text a message contributes to the prompt: its string content, its text parts joined, or ""."""
    where = f"messages[{index}]"
    role = message.get("role")
    if role not in MESSAGE_ROLES:
        return BadRequest(f"'{where}.role' must be one of {sorted(MESSAGE_ROLES)}", f"{where}.role")
    if "content" not in message:
        return BadRequest(f"missing required field '{where}.content'", f"{where}.content")
    content = message["content"]
    if isinstance(content, str):
        return content
    if content is None:
        if role == "assistant":  # a tool-call (or function-call) follow-up has no text
            return ""
        return BadRequest(f"'{where}.content' may be null only on an assistant message", f"{where}.content")
    if not isinstance(content, list):
        return BadRequest(f"'{where}.content' must be a string, an array of content parts or null", f"{where}.content")
    texts: list[str] = []
    for part_index, part in enumerate(content):
        param = f"{where}.content[{part_index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if not isinstance(part.get("text"), str):
                return BadRequest(f"'{param}.text' must be a string", f"{param}.text")
            texts.append(part["text"])
        elif kind not in _IGNORED_PART_TYPES:
            return BadRequest(f"'{param}.type' must be 'text' or one of {sorted(_IGNORED_PART_TYPES)}", f"{param}.type")
    return "\n".join(texts)


def _response_format(value: object) -> ResponseFormat | BadRequest:
    if value is None:
        return ResponseFormat()
    kind = value.get("type") if isinstance(value, dict) else None
    if kind in ("text", "json_object"):
        return ResponseFormat(kind)
    if kind == "json_schema":
        assert isinstance(value, dict)
        spec = value.get("json_schema")
        schema = spec.get("schema", {}) if isinstance(spec, dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not isinstance(schema, dict):
            return BadRequest(
                "'response_format.json_schema' must be an object with a string 'name' and an object 'schema'",
                "response_format.json_schema",
            )
        return ResponseFormat(kind, schema)
    return BadRequest("'response_format.type' must be 'text', 'json_object' or 'json_schema'", "response_format.type")


def _max_tokens(data: Mapping[str, Any]) -> int | BadRequest | None:
    chosen: int | None = None
    for name in ("max_tokens", "max_completion_tokens"):  # the newer name, read last, wins
        value = data.get(name)
        if value is None:
            continue
        if not _is_int(value) or value < 1:
            return BadRequest(f"'{name}' must be an integer >= 1", name)
        chosen = value
    return chosen


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
        text = _message_text(index, message)
        if isinstance(text, BadRequest):
            return text
        pairs.append((message["role"], text))
    temperature = data.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2
    ):
        return BadRequest("'temperature' must be a number in [0, 2]", "temperature")
    max_tokens = _max_tokens(data)
    if isinstance(max_tokens, BadRequest):
        return max_tokens
    n = data.get("n")
    if n is None:
        n = 1
    elif not _is_int(n) or not 1 <= n <= MAX_CHOICES:
        return BadRequest(f"'n' must be an integer in [1, {MAX_CHOICES}]", "n")
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        return BadRequest("'stream' must be a boolean", "stream")
    options = data.get("stream_options")
    if options is not None and (not isinstance(options, dict) or not stream):
        return BadRequest("'stream_options' must be an object, and is allowed only with stream=true", "stream_options")
    include_usage = bool(options.get("include_usage")) if isinstance(options, dict) else False
    response_format = _response_format(data.get("response_format"))
    if isinstance(response_format, BadRequest):
        return response_format
    prompt = pairs[0][1] if len(pairs) == 1 else json.dumps([list(pair) for pair in pairs], ensure_ascii=False)
    prompt_tokens = sum(len(content.split()) for _, content in pairs)
    return ChatRequest(model, prompt, prompt_tokens, max_tokens, n, bool(stream), include_usage, response_format)
