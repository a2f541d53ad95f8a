"""An OpenAI-compatible mock chat-completions server over real HTTP, for request-admission tests and benchmarks.

``POST /v1/chat/completions`` answers in the OpenAI shape with a reply that is a pure function of (seed,
provider name, model, prompt): choice 0 is exactly the text ``MockModelEndpoint(provider, [model], seed=seed)``
returns for that prompt, so a recipe gives the same dataset through this server as through the in-process
mock. The prompt is the text of a single message, else the JSON list of ``[role, text]`` pairs. What the
official OpenAI SDK sends is understood (``mock_server_requests``): content parts, ``content: null`` on an
assistant message, ``n``, ``max_completion_tokens``, ``response_format`` (``json_object``, ``json_schema``)
and ``stream`` (server-sent events over chunked transfer encoding, ending with ``data: [DONE]``); the
bodies are built in ``mock_replies``, byte-identical for the same request under the same seed.

``GET /v1/models`` lists the models and ``GET /v1/models/{id}`` retrieves one. With ``models`` given, only
those are served (any other gets 404 ``model_not_found``, as OpenAI answers); without, every model name is
served and the list holds the ones requested so far, in first-use order.

Rate limit: a token bucket (``rps`` tokens per second, ``burst`` tokens, starting full). A request without
a token gets 429 with ``Retry-After`` (integer seconds, rounded up, at least 1, as OpenAI sends it) and
``retry-after-ms`` (milliseconds, rounded up): clients should prefer the latter. The hints are staggered
(``mock_rate_limit``): refused callers are told refill slots one ``1/rps`` apart, so they come back one by
one instead of in lockstep. With ``max_concurrent``, a request beyond that many in flight gets 429
with ``Retry-After: 1`` and no token taken. Invalid requests (400) take no token either. ``GET /stats``,
``GET /health`` and the model list are never limited.

Nothing about a request is printed or logged (``log_message`` is silenced; ``Authorization`` is ignored).

Lock order: ``MockOpenAIServer._lock`` is a leaf. It guards the counters, the token bucket and the set of
open connections; nothing sleeps, waits or does I/O under it (``_changed`` is a Condition on it, used only
by ``wait_for_in_flight``).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import socket
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from threadsched.mock.model import MockModelEndpoint, check_latency_ms, check_seed
from threadsched.mock.rate_limit import StaggeredTokenBucket
from threadsched.mock.replies import CREATED, completion_body, completion_chunks, mock_choices
from threadsched.mock.server_http import CHAT_COMPLETIONS_PATH, MODELS_PATH, MockHTTPServer, StreamReply
from threadsched.mock.server_requests import (
    BadRequest,
    ChatRequest,
    Reply,
    error_body,
    optional_int_param,
    parse_chat_request,
)

__all__ = ["CHAT_COMPLETIONS_PATH", "MODELS_PATH", "SERVER_THREAD_NAME", "MockOpenAIServer", "StreamReply"]

SERVER_THREAD_NAME = "threadsched-mock-provider"
_POLL_INTERVAL_S = 0.05  # how quickly serve_forever notices shutdown(): keeps stop() fast


class MockOpenAIServer:
    """A rate-limited OpenAI-compatible chat-completions server; ``start()`` serves it in a background thread.

    Binds at construction, so ``url`` has the real (ephemeral) port before ``start()``. ``models``: the only
    model names served (None: any). Test-only hooks:
    ``gate`` (admitted requests wait for it before answering), ``clock`` (the token bucket's time source).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        rps: float | None,
        burst: int | None = None,
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        seed: int = 0,
        max_concurrent: int | None = None,
        provider: str = "mock",
        models: Sequence[str] | None = None,
        gate: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rps is not None and (isinstance(rps, bool) or not isinstance(rps, (int, float)) or not 0 < rps < math.inf):
            raise ValueError(f"MockOpenAIServer.rps must be a finite number > 0, or None for unlimited, got {rps!r}")
        if burst is not None and rps is None:
            raise ValueError(f"MockOpenAIServer.burst needs rps (there is no bucket without a rate), got burst={burst!r}")
        check_seed("MockOpenAIServer", seed)  # at construction: each request builds a MockModelEndpoint with it
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"MockOpenAIServer.port must be an int in [0, 65535], got {port!r}")
        if not isinstance(provider, str) or not provider:
            raise ValueError(f"MockOpenAIServer.provider must be a non-empty str, got {provider!r}")
        if models is not None and (
            isinstance(models, str) or not all(isinstance(name, str) and name for name in models) or not models
        ):
            raise ValueError(
                f"MockOpenAIServer.models must be a non-empty sequence of non-empty str, or None for any, got {models!r}"
            )
        self.rps = None if rps is None else float(rps)
        self.burst = optional_int_param(burst, "burst") or (None if rps is None else max(1, math.ceil(rps)))
        self.latency_ms = check_latency_ms("MockOpenAIServer", "latency_ms", latency_ms)
        self.jitter_ms = check_latency_ms("MockOpenAIServer", "jitter_ms", jitter_ms)
        self.max_concurrent_limit = optional_int_param(max_concurrent, "max_concurrent")
        self.seed = seed
        self.provider = provider
        self.models: tuple[str, ...] | None = None if models is None else tuple(dict.fromkeys(models))
        self._seen_models: dict[str, None] = dict.fromkeys(self.models or ())  # insertion order: first use
        self._gate = gate
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()  # wakes sleeping or gated handlers on stop()
        self._bucket = None if self.rps is None or self.burst is None else StaggeredTokenBucket(self.rps, self.burst, clock())
        self._counts = dict.fromkeys(
            ("requests", "ok", "rate_limited", "bad_requests", "errors", "concurrency_limited", "not_found", "max_concurrent"),
            0,
        )
        self._in_flight = 0
        self._admitted = 0  # numbers the admitted requests: the latency draw's index
        self._connections: set[socket.socket] = set()
        self._handlers: list[threading.Thread] = []  # request threads (daemons, so never a reason to hang at exit)
        self._closing = False
        self._thread: threading.Thread | None = None
        self._httpd = MockHTTPServer((host, port))
        self._httpd.owner = self

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> MockOpenAIServer:
        with self._lock:
            if self._thread is not None or self._closing:
                raise RuntimeError("MockOpenAIServer.start: already started or stopped")
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": _POLL_INTERVAL_S}, name=SERVER_THREAD_NAME, daemon=True
            )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open (keep-alive) connections and join every thread. Idempotent."""
        with self._lock:
            if self._closing:
                return
            self._closing = True  # from now on a newly set-up connection closes itself (_register)
            thread = self._thread
        self._stopping.set()
        if thread is not None:
            self._httpd.shutdown()  # returns once serve_forever has exited: no request thread starts after it
            thread.join()
        with self._lock:
            connections, handlers = list(self._connections), list(self._handlers)
        for connection in connections:  # wakes handlers blocked reading the next request of a keep-alive connection
            _shutdown_quietly(connection)
        for handler in handlers:
            handler.join()
        self._httpd.server_close()

    def __enter__(self) -> MockOpenAIServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.stop()

    def stats(self) -> dict[str, int]:
        """``requests`` (chat-completion POSTs) = ``ok`` + ``rate_limited`` + ``bad_requests`` + ``errors`` +
        ``in_flight``; ``concurrency_limited`` is the part of ``rate_limited`` due to ``max_concurrent``;
        ``max_concurrent`` is the most requests ever in flight at once (not the configured limit)."""
        with self._lock:
            return {**self._counts, "in_flight": self._in_flight}

    def wait_for_in_flight(self, count: int, timeout: float | None = None) -> bool:
        """Block until exactly ``count`` requests are in flight; False on timeout (for tests using ``gate``)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._in_flight == count, timeout)

    def __repr__(self) -> str:
        stats = self.stats()
        return (
            f"<MockOpenAIServer {self.url} rps={self.rps} burst={self.burst} latency_ms={self.latency_ms:g}"
            f"±{self.jitter_ms:g} max_concurrent_limit={self.max_concurrent_limit} requests={stats['requests']} "
            f"ok={stats['ok']} rate_limited={stats['rate_limited']} in_flight={stats['in_flight']}>"
        )

    # -- called from the request threads --

    def _register(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)
            closing = self._closing
        if closing:  # accepted while stop() ran, after it took its snapshot
            _shutdown_quietly(connection)

    def _track(self, handler: threading.Thread) -> None:
        with self._lock:
            self._handlers = [thread for thread in self._handlers if thread.is_alive()]
            self._handlers.append(handler)

    def _unregister(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def _count(self, *names: str) -> None:
        with self._lock:
            for name in names:
                self._counts[name] += 1

    def _complete(self, body: bytes) -> Reply | StreamReply:
        request = parse_chat_request(body)
        with self._lock:
            self._counts["requests"] += 1
            if isinstance(request, BadRequest):
                self._counts["bad_requests"] += 1
                return 400, error_body(request.message, "invalid_request_error", param=request.param), {}
            if self.models is not None and request.model not in self.models:
                self._counts["bad_requests"] += 1
                return 404, _model_not_found(request.model), {}
            self._seen_models.setdefault(request.model)
            if self.max_concurrent_limit is not None and self._in_flight >= self.max_concurrent_limit:
                self._counts["rate_limited"] += 1
                self._counts["concurrency_limited"] += 1
                message = f"too many concurrent requests (limit {self.max_concurrent_limit})"
                return 429, error_body(message, "rate_limit_exceeded", code="rate_limit_exceeded"), {"Retry-After": "1"}
            wait = None if self._bucket is None else self._bucket.take(self._clock())
            if wait is not None:
                self._counts["rate_limited"] += 1
                wait_ms = max(1, math.ceil(round(wait * 1000, 6)))
                headers = {"Retry-After": str(max(1, math.ceil(wait))), "retry-after-ms": str(wait_ms)}
                message = f"rate limit reached ({self.rps:g} requests/s, burst {self.burst}); retry in {wait_ms} ms"
                return 429, error_body(message, "rate_limit_exceeded", code="rate_limit_exceeded"), headers
            self._in_flight += 1
            self._counts["max_concurrent"] = max(self._counts["max_concurrent"], self._in_flight)
            index = self._admitted
            self._admitted += 1
            self._changed.notify_all()
        outcome = "errors"
        try:
            self._hold(index)
            reply = self._reply(request, index)
            outcome = "ok"
            return reply
        finally:
            with self._lock:  # counted together so that requests = ok + rate_limited + bad_requests + errors + in_flight
                self._counts[outcome] += 1
                self._in_flight -= 1
                self._changed.notify_all()

    def _models(self, model_id: str | None) -> tuple[int, dict[str, Any]]:
        """``GET /v1/models`` (``model_id`` None) or ``GET /v1/models/{model_id}``."""
        with self._lock:
            served = list(self._seen_models)
            any_model = self.models is None
        if model_id is None:
            return 200, {"object": "list", "data": [self._model_object(name) for name in served]}
        if any_model or model_id in served:
            return 200, self._model_object(model_id)
        return 404, _model_not_found(model_id)

    def _model_object(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": CREATED, "owned_by": self.provider}

    def _hold(self, index: int) -> None:
        """The simulated latency (deterministic per admitted request), then the test gate; both end on stop()."""
        delay_ms = self.latency_ms
        if self.jitter_ms:
            digest = hashlib.blake2b(f"latency\0{self.seed}\0{index}".encode(), digest_size=8).digest()
            delay_ms += (2.0 * int.from_bytes(digest, "big") / 2.0**64 - 1.0) * self.jitter_ms
        if delay_ms > 0:
            self._stopping.wait(delay_ms / 1000.0)
        if self._gate is not None:
            while not self._gate.wait(_POLL_INTERVAL_S) and not self._stopping.is_set():
                pass

    def _reply(self, request: ChatRequest, index: int) -> Reply | StreamReply:
        choices = mock_choices(request, MockModelEndpoint(self.provider, [request.model], seed=self.seed))
        reply_id = f"chatcmpl-mock-{index}"
        if request.stream:
            return list(completion_chunks(request, reply_id, choices))
        return 200, completion_body(request, reply_id, choices), {}


def _model_not_found(model: str) -> dict[str, Any]:
    message = f"The model '{model}' does not exist or you do not have access to it."
    return error_body(message, "invalid_request_error", param="model", code="model_not_found")


def _shutdown_quietly(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the client or the handler
        connection.shutdown(socket.SHUT_RDWR)
