"""The deadline-bounded httpx transport: every network operation clipped to the attempt's deadline, httpcore
errors as httpx's, and the proxy the environment gives for the one URL."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx
import pytest
from support import GENEROUS, TrickleServer

from threadsched.requests.contracts import RequestResourceKey
from threadsched.requests.executor import ModelRequest, TransportConnectionError
from threadsched.requests.http_deadline import (
    _HTTPX_ERRORS,
    DeadlineBackend,
    DeadlineTransport,
    _as_httpx_errors,
    attempt_deadline,
    environment_proxy,
)
from threadsched.requests.http_provider import OpenAIChatTransport, chat_completion_text

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")
REQUEST = ModelRequest(RequestResourceKey("p", "m"), {"messages": [{"role": "user", "content": "hi"}]})


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No proxy variable from the calling environment (upper or lower case); the test sets its own."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    yield monkeypatch


class RecordingStream(httpcore.NetworkStream):
    def __init__(self) -> None:
        self.timeouts: list[float | None] = []

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self.timeouts.append(timeout)
        return b""

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.timeouts.append(timeout)

    def close(self) -> None:
        pass

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        self.timeouts.append(timeout)
        return self

    def get_extra_info(self, info: str) -> Any:
        return f"info:{info}"


class RecordingBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self.stream = RecordingStream()
        self.connects: list[float | None] = []

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        self.connects.append(timeout)
        return self.stream


# -- every operation clipped to the deadline ---------------------------------------------------------------


def test_without_a_deadline_the_httpx_timeouts_pass_through() -> None:
    inner = RecordingBackend()
    stream = DeadlineBackend(inner).connect_tcp("h", 1, timeout=7.0)
    stream.read(10, timeout=8.0)
    stream.write(b"x", timeout=None)
    assert inner.connects == [7.0] and inner.stream.timeouts == [8.0, None]
    assert stream.get_extra_info("socket") == "info:socket"


def test_each_operation_gets_at_most_the_time_left() -> None:
    inner = RecordingBackend()
    with attempt_deadline(time.monotonic() + GENEROUS):
        stream = DeadlineBackend(inner).connect_tcp("h", 1, timeout=1_000.0)
        tls = stream.start_tls(ssl.create_default_context(), "h", timeout=None)
        tls.read(10, timeout=0.5)  # shorter than what is left: kept
        tls.write(b"x", timeout=1_000.0)
        tls.write(b"", timeout=1_000.0)  # nothing to send: not passed on
    connect, handshake, read, write = [*inner.connects, *inner.stream.timeouts]
    assert read == 0.5
    for clipped in (connect, handshake, write):
        assert clipped is not None and 0 < clipped <= GENEROUS


@pytest.mark.parametrize(
    ("operation", "error"),
    [
        ("connect", httpcore.ConnectTimeout),
        ("tls", httpcore.ConnectTimeout),
        ("read", httpcore.ReadTimeout),
        ("write", httpcore.WriteTimeout),
    ],
)
def test_an_operation_that_starts_after_the_deadline_fails_at_once(operation: str, error: type[Exception]) -> None:
    inner = RecordingBackend()
    backend = DeadlineBackend(inner)
    stream = backend.connect_tcp("h", 1)
    with attempt_deadline(time.monotonic() - 1.0), pytest.raises(error, match="deadline passed"):
        if operation == "connect":
            backend.connect_tcp("h", 1, timeout=GENEROUS)
        elif operation == "tls":
            stream.start_tls(ssl.create_default_context(), "h", timeout=GENEROUS)
        elif operation == "read":
            stream.read(10, timeout=GENEROUS)
        else:
            stream.write(b"x", timeout=GENEROUS)
    assert inner.connects == [None] and inner.stream.timeouts == []  # nothing reached the network


def test_the_deadline_is_reset_after_its_block() -> None:
    inner = RecordingBackend()
    stream = DeadlineBackend(inner).connect_tcp("h", 1)
    with attempt_deadline(time.monotonic() - 1.0), pytest.raises(httpcore.ReadTimeout):
        stream.read(1, timeout=3.0)
    stream.read(1, timeout=3.0)
    assert inner.stream.timeouts == [3.0]


# -- httpcore errors as httpx's ------------------------------------------------------------------------------


@pytest.mark.parametrize(("raised", "expected"), _HTTPX_ERRORS)
def test_each_httpcore_error_becomes_its_httpx_error(raised: type[Exception], expected: type[Exception]) -> None:
    with pytest.raises(expected) as caught, _as_httpx_errors():
        raise raised("boom")
    assert type(caught.value) is expected and isinstance(caught.value.__cause__, raised)


def test_other_errors_pass_through() -> None:
    with pytest.raises(KeyError), _as_httpx_errors():
        raise KeyError("not an httpcore error")


def test_a_refused_connection_is_a_connection_error(environment: pytest.MonkeyPatch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    # Nothing listens there now: connecting fails at once, through the deadline transport.
    with OpenAIChatTransport(f"http://127.0.0.1:{port}") as transport, pytest.raises(TransportConnectionError) as caught:
        transport.send(REQUEST, timeout=GENEROUS)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize(("limits", "proxy", "name"), [(None, None, "limits"), (httpx.Limits(), b"http://p", "proxy")])
def test_deadline_transport_rejects_wrong_types(limits: Any, proxy: Any, name: str) -> None:
    with pytest.raises(TypeError, match=name):
        DeadlineTransport(limits, proxy=proxy)


def test_an_unknown_proxy_scheme_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="proxy"):
        DeadlineTransport(httpx.Limits(), proxy="ftp://proxy.test:21")


# -- the proxy from the environment ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "url", "expected"),
    [
        ({}, "http://llm.test/v1", None),
        ({"HTTP_PROXY": "http://proxy:3128"}, "http://llm.test/v1", "http://proxy:3128"),
        ({"HTTP_PROXY": "http://proxy:3128"}, "https://llm.test/v1", None),
        ({"HTTPS_PROXY": "proxy:3128"}, "https://llm.test/v1", "http://proxy:3128"),  # no scheme: an http proxy
        ({"ALL_PROXY": "socks5://proxy:1080"}, "https://llm.test/v1", "socks5://proxy:1080"),
        ({"ALL_PROXY": "http://all:1", "HTTP_PROXY": "http://http:1"}, "http://llm.test", "http://http:1"),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "*"}, "http://llm.test", None),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "other.test, llm.test"}, "http://llm.test", None),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "LLM.TEST"}, "http://llm.test", None),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "test"}, "http://llm.test", None),  # a domain and its subdomains
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "m.test"}, "http://llm.test", "http://p:1"),  # not a suffix match
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": ".llm.test"}, "http://llm.test", "http://p:1"),  # subdomains only
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": ".llm.test"}, "http://a.llm.test", None),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "localhost"}, "http://localhost:8000", None),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "127.0.0.1"}, "http://127.0.0.1:8000", None),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8"}, "http://10.1.2.3", None),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8"}, "http://11.1.2.3", "http://p:1"),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "::1"}, "http://[::1]:8000", None),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8"}, "http://llm.test", "http://p:1"),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "http://llm.test:8000"}, "http://llm.test:8000", None),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "http://llm.test:9"}, "http://llm.test:8000", "http://p:1"),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "https://llm.test"}, "http://llm.test", "http://p:1"),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "llm.test:8000"}, "http://llm.test:8000", None),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "llm.test:port, ,, [::"}, "http://llm.test", "http://p:1"),  # junk
    ],
)
def test_environment_proxy(environment: pytest.MonkeyPatch, variables: dict[str, str], url: str, expected: str | None) -> None:
    for name, value in variables.items():
        environment.setenv(name, value)
    assert environment_proxy(url) == expected


def test_requests_go_through_the_proxy_the_environment_names(environment: pytest.MonkeyPatch) -> None:
    with TrickleServer("answer") as proxy:
        environment.setenv("HTTP_PROXY", proxy.url)
        # llm.invalid never resolves: only the proxy is connected to, and it answers for the target.
        with OpenAIChatTransport("http://llm.invalid:9") as transport:
            response = transport.send(REQUEST, timeout=GENEROUS)
    assert chat_completion_text(response.body) == "done"
    assert proxy.request_lines == ["POST http://llm.invalid:9/v1/chat/completions HTTP/1.1"]


def test_no_proxy_sends_directly(environment: pytest.MonkeyPatch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        closed = listener.getsockname()[1]
    environment.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed}")  # would refuse the connection
    environment.setenv("NO_PROXY", "127.0.0.1")
    with TrickleServer("answer") as server, OpenAIChatTransport(server.url) as transport:
        assert transport.send(REQUEST, timeout=GENEROUS).status == 200
    assert server.request_lines == ["POST /v1/chat/completions HTTP/1.1"]
