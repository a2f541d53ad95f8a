"""OpenAI-compatible chat completions over HTTP: a pooled httpx transport and a small model facade.

httpx is the optional extra ``http`` (``pip install 'threadsched[http]'``); it is imported when a transport
is built, never at module import. The API key is read from the environment once, kept in an object whose
repr hides it, and sent only in the ``Authorization`` header: never in reprs, logs, exceptions or events.

An attempt's timeout bounds the whole attempt, not each read: connecting, sending, the headers, the body and
a server-sent-event stream together end by one deadline, so a provider that trickles bytes, header lines or
keep-alive comments cannot hold an attempt (and its request lease) open past it. The pooled transport
(``http_deadline.DeadlineTransport``) bounds every network operation by the time left; its module docstring
says why that way. On top of it, ``send`` checks the deadline after every body chunk and stream line, which
also bounds a ``transport=`` given in place of the network, as far as that one hands out chunks.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Hashable, Iterable, Iterator, Mapping
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from threadsched.requests.contracts import RequestDomain, RequestResourceKey
from threadsched.requests.executor import (
    MalformedResponseError,
    ModelRequest,
    ModelRequestExecutor,
    TransportConnectionError,
    TransportResponse,
    TransportTimeout,
)

if TYPE_CHECKING:
    import httpx

__all__ = [
    "OpenAIChatModel",
    "OpenAIChatTransport",
    "assemble_streamed_completion",
    "chat_completion_text",
    "chat_completions_url",
]

HTTP_EXTRA_HINT = "pip install 'threadsched[http]'"


def _import_httpx() -> ModuleType:
    try:
        import httpcore  # noqa: F401 (httpx's own dependency; http_deadline builds on it)
        import httpx
    except ImportError as error:
        raise ImportError(f"the OpenAI HTTP provider needs httpx: {HTTP_EXTRA_HINT}") from error
    return httpx


def chat_completions_url(base_url: str) -> str:
    """``{base_url}/v1/chat/completions``. Trailing slashes are dropped, and a base URL that already ends
    with ``/v1`` gets no second one: ``http://h:8000``, ``http://h:8000/`` and ``http://h:8000/v1/`` all
    give ``http://h:8000/v1/chat/completions``."""
    if not isinstance(base_url, str):
        raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
    parts = urlsplit(base_url.strip())
    try:
        valid_port = parts.port is None or parts.port > 0
    except ValueError:  # not a number, or above 65535
        valid_port = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not valid_port or parts.query or parts.fragment:
        raise ValueError(f"base_url must be an http(s) URL with a host, a valid port and no query or fragment, got {base_url!r}")
    base = base_url.strip().rstrip("/")
    return f"{base}/chat/completions" if base.endswith("/v1") else f"{base}/v1/chat/completions"


class _Secret:
    """Holds a credential; its repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a secret is not picklable")


class OpenAIChatTransport:
    """A ``ModelTransport`` for ``POST {base_url}/v1/chat/completions`` with one pooled, thread-safe
    ``httpx.Client`` (keep-alive, at most ``max_connections`` connections).

    The JSON body is the request payload (``messages`` and any params such as ``temperature``) with
    ``model`` defaulting to ``request.resource.model``. ``api_key_env`` names the environment variable
    holding the key (read now; sent as ``Authorization: Bearer ...``); None sends no Authorization header.
    Each attempt's timeout is the smaller of ``timeout_s`` and the executor's ``timeout``, and it bounds the
    whole attempt: connect, request, headers, body or stream (module docstring). A payload with
    ``stream: true`` is read as server-sent events and handed on assembled into the body of the equivalent
    plain completion (``assemble_streamed_completion``), so parsers see one shape. A timeout becomes
    ``TransportTimeout``; every other request error (connect, read, protocol) becomes
    ``TransportConnectionError``. ``transport`` replaces the network (``httpx.MockTransport`` in tests);
    without it the proxy comes from the environment, as for a plain ``httpx.Client``.

    Every argument is checked here: a wrong type raises ``TypeError``, a wrong value ``ValueError``, each
    naming the argument."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key_env: str | None = None,
        timeout_s: float = 60.0,
        max_connections: int = 16,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        httpx = _import_httpx()
        if not isinstance(base_url, str):
            raise TypeError(f"base_url must be a str, got {type(base_url).__name__}")
        self.url = chat_completions_url(base_url)
        self.timeout_s = _seconds(timeout_s, "timeout_s")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise TypeError(f"max_connections must be an int, got {type(max_connections).__name__}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections!r}")
        if transport is not None and not isinstance(transport, httpx.BaseTransport):
            raise TypeError(f"transport must be an httpx.BaseTransport or None, got {type(transport).__name__}")
        self.api_key_env = api_key_env
        self._key: _Secret | None = None
        if api_key_env is not None:
            if not isinstance(api_key_env, str):
                raise TypeError(f"api_key_env must be an environment variable name or None, got {type(api_key_env).__name__}")
            if not api_key_env or "=" in api_key_env or "\0" in api_key_env:
                raise ValueError(f"api_key_env must be a non-empty environment variable name or None, got {api_key_env!r}")
            key = os.environ.get(api_key_env)
            if not key:
                raise ValueError(f"api_key_env: environment variable {api_key_env!r} is not set or empty")
            self._key = _Secret(key)
        self.max_connections = max_connections
        self._httpx = httpx
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        from threadsched.requests.http_deadline import DeadlineTransport, attempt_deadline, environment_proxy

        self._attempt_deadline = attempt_deadline
        if transport is None:
            transport = DeadlineTransport(limits, proxy=environment_proxy(self.url))
        self._client = httpx.Client(timeout=httpx.Timeout(self.timeout_s), limits=limits, transport=transport)

    def send(self, request: ModelRequest, timeout: float | None) -> TransportResponse:
        httpx = self._httpx
        body = {"model": request.resource.model, **request.payload}
        if not isinstance(body.get("messages"), list):
            raise ValueError("chat request payload must have a 'messages' list")
        headers = {"Accept": "application/json"}
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key.reveal()}"
        limit = self.timeout_s if timeout is None else min(self.timeout_s, timeout)
        deadline = time.monotonic() + limit
        streamed = body.get("stream") is True
        if streamed:
            headers["Accept"] = "text/event-stream"
        timed_out = f"no complete answer within {limit:.3g}s: POST {self.url}"
        try:
            # The pool's wait for a connection gets the whole limit; it comes first, and every network
            # operation after it gets only what is left (attempt_deadline).
            with (
                self._attempt_deadline(deadline),
                self._client.stream("POST", self.url, json=body, headers=headers, timeout=httpx.Timeout(limit)) as response,
            ):
                if (
                    streamed
                    and response.status_code == 200
                    and response.headers.get("content-type", "").startswith("text/event-stream")
                ):
                    lines = _until(deadline, response.iter_lines(), timed_out)
                    parsed: Any = assemble_streamed_completion(_sse_data(lines))
                else:
                    content = b"".join(_until(deadline, response.iter_bytes(), timed_out))
                    try:
                        parsed = json.loads(content)
                    except ValueError:  # not JSON (an HTML error page, ...): keep the text
                        parsed = content.decode(response.encoding or "utf-8", errors="replace")
        except httpx.TimeoutException as error:
            raise TransportTimeout(f"{type(error).__name__}: {timed_out}") from error
        except httpx.RequestError as error:
            raise TransportConnectionError(f"{type(error).__name__}: POST {self.url}") from error
        return TransportResponse(response.status_code, dict(response.headers.items()), parsed)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIChatTransport:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        auth = f"env:{self.api_key_env}" if self.api_key_env else "none"
        return (
            f"<OpenAIChatTransport url={self.url} auth={auth} timeout_s={self.timeout_s} max_connections={self.max_connections}>"
        )


def _seconds(value: object, name: str, *, or_none: bool = False) -> float:
    """``value`` as a float when it is a finite number of seconds > 0; ``or_none`` only words the error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds{' or None' if or_none else ''}, got {type(value).__name__}")
    if not 0 < value < math.inf:  # also refuses NaN
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


def _until(deadline: float, chunks: Iterable[Any], message: str) -> Iterator[Any]:
    """``chunks`` as they come, until ``time.monotonic()`` reaches ``deadline``: then ``TransportTimeout``."""
    for chunk in chunks:
        if time.monotonic() >= deadline:
            raise TransportTimeout(message)
        yield chunk


def _sse_data(lines: Iterable[str]) -> Iterable[str]:
    """The ``data:`` payloads of a server-sent event stream, up to ``[DONE]`` (comments and other fields skipped)."""
    for line in lines:
        if line.startswith("data:"):
            data = line[5:].strip()
            if data == "[DONE]":
                return
            yield data


def assemble_streamed_completion(events: Iterable[str]) -> Any:
    """The ``chat.completion`` body equivalent to a stream's ``chat.completion.chunk`` events: per choice
    index the joined ``delta.content``, its role and last ``finish_reason``; the ``usage`` if a chunk had it.
    A chunk that is not a JSON object makes the result a string, which parsers reject as malformed."""
    first: Mapping[str, Any] | None = None
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    for data in events:
        try:
            chunk = json.loads(data)
        except ValueError:
            return "malformed stream chunk"
        if not isinstance(chunk, Mapping):
            return "malformed stream chunk"
        first = first or chunk
        usage = chunk.get("usage") or usage
        for part in chunk.get("choices") or ():
            if not isinstance(part, Mapping) or not isinstance(part.get("index", 0), int):
                return "malformed stream chunk"
            choice = choices.setdefault(part.get("index", 0), {"role": "assistant", "content": [], "finish_reason": None})
            delta: Mapping[str, Any] = part["delta"] if isinstance(part.get("delta"), Mapping) else {}
            if isinstance(delta.get("role"), str):
                choice["role"] = delta["role"]
            if isinstance(delta.get("content"), str):
                choice["content"].append(delta["content"])
            choice["finish_reason"] = part.get("finish_reason") or choice["finish_reason"]
    if first is None:
        return "empty stream"
    return {
        "id": first.get("id"),
        "object": "chat.completion",
        "created": first.get("created"),
        "model": first.get("model"),
        "choices": [
            {
                "index": index,
                "message": {"role": choice["role"], "content": "".join(choice["content"])},
                "finish_reason": choice["finish_reason"],
            }
            for index, choice in sorted(choices.items())
        ],
        "usage": usage,
    }


def chat_completion_text(body: Any) -> str:
    """``choices[0].message.content`` of a chat completion body (a list of content parts gives its text
    parts joined); ``MalformedResponseError`` (a provider failure, retried by the executor) when the body
    does not have that shape or the message has no text (a refusal, a tool call). The message names the
    missing part, never the body's content."""
    if not isinstance(body, Mapping):
        raise MalformedResponseError(f"chat completion body must be a JSON object, got {type(body).__name__}")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise MalformedResponseError("chat completion body has no 'choices'")
    first = choices[0]
    message = first.get("message") if isinstance(first, Mapping) else None
    content = message.get("content") if isinstance(message, Mapping) else None
    if isinstance(content, list) and all(isinstance(part, Mapping) for part in content):
        texts = [part.get("text") for part in content if part.get("type") == "text"]
        if texts and all(isinstance(text, str) for text in texts):
            content = "".join(texts)
    if not isinstance(content, str):
        raise MalformedResponseError("chat completion body has no string 'choices[0].message.content'")
    return content


class OpenAIChatModel:
    """``complete(prompt) -> str`` for one provider/model: builds the chat messages, runs them through
    ``executor`` (request admission, retries) and returns the completion text. ``api_model`` is the name
    sent to the endpoint when it differs from ``model`` (the admission key). ``timeout_s`` bounds each
    attempt as a whole (``ModelRequest.timeout_s``); None leaves it to the transport's ``timeout_s``.
    Every argument is checked here (``TypeError`` for a wrong type, ``ValueError`` for a wrong value)."""

    def __init__(
        self,
        executor: ModelRequestExecutor,
        provider: str,
        model: str,
        *,
        domain: RequestDomain = RequestDomain.CHAT,
        api_model: str | None = None,
        timeout_s: float | None = None,
    ) -> None:
        if not isinstance(executor, ModelRequestExecutor):
            raise TypeError(f"executor must be a ModelRequestExecutor, got {type(executor).__name__}")
        for name, value in (("provider", provider), ("model", model)):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str, got {type(value).__name__}")
            if not value.strip():
                raise ValueError(f"{name} must be a non-empty str, got {value!r}")
        if not isinstance(domain, RequestDomain):
            raise TypeError(f"domain must be a RequestDomain, got {domain!r}")
        if api_model is not None and not isinstance(api_model, str):
            raise TypeError(f"api_model must be a str or None, got {type(api_model).__name__}")
        if api_model is not None and not api_model.strip():
            raise ValueError(f"api_model must be a non-empty str or None, got {api_model!r}")
        self.executor = executor
        self.resource = RequestResourceKey(provider, model, domain)
        self.api_model = api_model or model
        self.timeout_s = None if timeout_s is None else _seconds(timeout_s, "timeout_s", or_none=True)

    def complete(
        self,
        prompt: str,
        *,
        system: str | None = None,
        group: Hashable = "default",
        weight: float = 1.0,
        deadline_s: float | None = None,
        **params: Any,
    ) -> str:
        """The completion of ``prompt`` (optionally after a ``system`` message); ``params`` (temperature,
        max_tokens, ...) go into the request body. Raises what ``ModelRequestExecutor.execute`` raises."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        messages = [{"role": "system", "content": system}] if system is not None else []
        messages.append({"role": "user", "content": prompt})
        payload: Mapping[str, Any] = {**params, "model": self.api_model, "messages": messages}
        request = ModelRequest(self.resource, payload, group, weight, self.timeout_s)
        text: str = self.executor.execute(request, deadline_s=deadline_s, parse=chat_completion_text).value
        return text

    def __repr__(self) -> str:
        return f"<OpenAIChatModel {self.resource} api_model={self.api_model!r}>"
