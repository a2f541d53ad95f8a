"""The HTTP side of the mock server: a threading ``http.server`` whose handler routes each request to the
``MockOpenAIServer`` that owns it (``HandlerOwner``) and writes plain JSON or server-sent-event replies.

Nothing about a request is printed or logged (``log_message`` is silenced).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, cast
from urllib.parse import unquote, urlsplit

from threadsched.mock.server_requests import Reply, error_body

__all__ = ["CHAT_COMPLETIONS_PATH", "MODELS_PATH", "REQUEST_THREAD_NAME", "HandlerOwner", "MockHTTPServer", "StreamReply"]

CHAT_COMPLETIONS_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
REQUEST_THREAD_NAME = "threadsched-mock-provider-request"
MAX_BODY_BYTES = 8 * 1024 * 1024
_GET_PATHS = ("/health", "/stats", MODELS_PATH)

StreamReply = list[dict[str, Any]]
"""The ``chat.completion.chunk`` objects of a streamed 200 reply, sent as server-sent events."""


class HandlerOwner(Protocol):
    """What the request handlers need of the server that owns them."""

    def stats(self) -> dict[str, int]: ...
    def _track(self, handler: threading.Thread) -> None: ...
    def _register(self, connection: socket.socket) -> None: ...
    def _unregister(self, connection: socket.socket) -> None: ...
    def _count(self, *names: str) -> None: ...
    def _complete(self, body: bytes) -> Reply | StreamReply: ...
    def _models(self, model_id: str | None) -> tuple[int, dict[str, Any]]: ...


class MockHTTPServer(ThreadingHTTPServer):
    owner: HandlerOwner
    block_on_close = False  # MockOpenAIServer.stop() joins the request threads itself
    request_queue_size = 1024  # the default listen backlog of 5 resets connections when a benchmark's clients start at once

    def __init__(self, address: tuple[str, int]) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        handler = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), name=REQUEST_THREAD_NAME, daemon=True
        )
        self.owner._track(handler)
        handler.start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (or stop() closing its connection) is normal here; anything else is a bug.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real clients use; stop() closes idle connections
    disable_nagle_algorithm = True  # else small responses wait ~40 ms for a delayed ACK
    server_version = "threadsched-mock-openai"
    sys_version = ""

    @property
    def owner(self) -> HandlerOwner:
        return cast(MockHTTPServer, self.server).owner

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: no request line, header or body is ever printed."""

    def setup(self) -> None:
        super().setup()
        self.owner._register(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.owner._unregister(self.connection)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/health":
            self._send(200, {"status": "ok"})
        elif path == "/stats":
            self._send(200, self.owner.stats())
        elif path == MODELS_PATH or (path.startswith(MODELS_PATH + "/") and len(path) > len(MODELS_PATH) + 1):
            self._send(*self.owner._models(unquote(path[len(MODELS_PATH) + 1 :]) or None))
        else:
            self._not_found_or_not_allowed(path, allow="POST" if path == CHAT_COMPLETIONS_PATH else None)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path != CHAT_COMPLETIONS_PATH:
            self.close_connection = True  # the body is left unread
            self._not_found_or_not_allowed(path, allow="GET" if path in _GET_PATHS else None)
            return
        body = self._read_body()
        if body is None:
            return
        reply = self.owner._complete(body)
        if isinstance(reply, list):
            self._send_stream(reply)
        else:
            self._send(*reply)

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        problem = None
        if self.headers.get("Transfer-Encoding") or length is None:
            status, problem = 411, "a Content-Length header is required (chunked bodies are not supported)"
        elif not length.isdigit():
            status, problem = 400, "the Content-Length header is not a non-negative integer"
        elif int(length) > MAX_BODY_BYTES:
            status, problem = 413, f"request body larger than {MAX_BODY_BYTES} bytes"
        if problem is None:
            return self.rfile.read(int(cast(str, length)))
        self.owner._count("requests", "bad_requests")
        self.close_connection = True
        self._send(status, error_body(problem, "invalid_request_error"))
        return None

    def _not_found_or_not_allowed(self, path: str, *, allow: str | None) -> None:
        if allow is not None:
            self._send(405, error_body(f"method {self.command} not allowed on {path}", "invalid_request_error"), {"Allow": allow})
        else:
            self.owner._count("not_found")
            self._send(404, error_body(f"unknown path {path}", "invalid_request_error", code="not_found"))

    def _send_stream(self, chunks: StreamReply) -> None:
        """Server-sent events, one HTTP chunk each, then ``data: [DONE]``: the connection stays usable."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for data in [*(json.dumps(chunk) for chunk in chunks), "[DONE]"]:
            event = f"data: {data}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
