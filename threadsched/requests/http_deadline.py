"""A pooled httpx transport whose every connect, TLS handshake, read and write ends by the attempt's deadline.

httpx timeouts bound each network operation, never a request: a provider that sends one byte of body, one
header line or one server-sent-events comment within every read timeout keeps a request (and the request
lease held for it) alive for as long as it likes. ``OpenAIChatTransport`` needs its ``timeout`` to bound the
whole attempt: connection, request, headers, body or stream.

How, and why this way:

* Every operation's timeout is the smaller of its httpx timeout and the time left until the attempt's
  deadline, and an operation that would start with no time left fails at once with httpcore's own timeout
  error (``ConnectTimeout``, ``ReadTimeout``, ``WriteTimeout``). So a trickle is cut off at the deadline, and
  so is a server that sends nothing. This happens in httpcore's public network seam
  (``httpcore.NetworkBackend`` / ``NetworkStream``), wrapped around ``httpcore.SyncBackend``: the one layer
  that sees each read, including the header reads httpcore makes before httpx sees a response.
* The alternatives fall short. Checking the clock between body chunks cannot stop a read that is blocked,
  nor headers that trickle. A watchdog that closes the connection at the deadline needs the connection's
  socket, which httpx hands out only with a response (the ``network_stream`` extension); then a reused
  keep-alive connection whose headers trickle cannot be cut. Closing a socket also does not wake a thread
  blocked reading it, and a watchdog is one more thread per attempt (or a shared one) to keep alive.
* httpx's ``HTTPTransport`` takes no network backend, so ``DeadlineTransport`` builds the httpcore pool
  itself and does what ``HTTPTransport`` does around it: it converts the request and response and maps
  httpcore's errors onto httpx's. The proxy comes from the environment (``HTTP_PROXY``, ``HTTPS_PROXY``,
  ``ALL_PROXY``, ``NO_PROXY``; ``environment_proxy``), chosen once for the transport's one URL, and TLS
  uses ``httpx.create_ssl_context()``, as an ``httpx.Client`` without a transport would.

The deadline travels in a context variable that ``attempt_deadline`` sets around one request. A sync httpx
request does all of its I/O in the calling thread, so each read sees its own attempt's deadline, even on a
pooled connection that another thread used last. Because a deadline ends an operation with httpcore's own
timeout error, httpcore closes that connection as after any timeout: it never returns to the pool half-read.

Not bounded here: name resolution (``getaddrinfo`` cannot be interrupted), and the wait for a free pooled
connection, which is bounded by httpx's ``pool`` timeout. ``OpenAIChatTransport`` sets that timeout to the
attempt's timeout; the wait comes first, and everything after it gets only the time that is left.
"""

from __future__ import annotations

import ipaddress
import ssl
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

__all__ = ["DeadlineBackend", "DeadlineTransport", "attempt_deadline", "environment_proxy"]

_DEADLINE: ContextVar[float | None] = ContextVar("threadsched_http_attempt_deadline", default=None)


@contextmanager
def attempt_deadline(deadline: float) -> Iterator[None]:
    """Bound every operation of ``DeadlineBackend`` streams in this context by ``deadline`` (``time.monotonic()``)."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _clipped(timeout: float | None, error: type[httpcore.TimeoutException]) -> float | None:
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the attempt's deadline passed")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose operations end by the current attempt's deadline (module docstring)."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clipped(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:  # httpcore writes nothing for an empty buffer: nothing to time out
            self._inner.write(buffer, _clipped(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _clipped(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """``inner`` (default ``httpcore.SyncBackend()``) with connections bounded by the attempt's deadline."""

    def __init__(self, inner: httpcore.NetworkBackend | None = None) -> None:
        self._inner = inner if inner is not None else httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _clipped(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
    ) -> httpcore.NetworkStream:
        return DeadlineStream(self._inner.connect_unix_socket(path, _clipped(timeout, httpcore.ConnectTimeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


# Most specific first: the first match wins.
_HTTPX_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as error:
        for source, target in _HTTPX_ERRORS:
            if isinstance(error, source):
                raise target(str(error)) from error
        raise


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, inner: Iterable[bytes]) -> None:
        self._inner = inner

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors():
            yield from self._inner

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            with _as_httpx_errors():
                close()


class DeadlineTransport(httpx.BaseTransport):
    """An ``httpx`` transport over an httpcore pool of ``DeadlineBackend`` connections (module docstring):
    at most ``limits.max_connections`` connections, through ``proxy`` (an ``http``, ``https``, ``socks5`` or
    ``socks5h`` URL, credentials in its user info) when given. Thread-safe, like ``httpx.HTTPTransport``."""

    def __init__(self, limits: httpx.Limits, *, proxy: str | None = None) -> None:
        if not isinstance(limits, httpx.Limits):
            raise TypeError(f"limits must be an httpx.Limits, got {limits!r}")
        if proxy is not None and not isinstance(proxy, str):
            raise TypeError(f"proxy must be a URL string or None, got {proxy!r}")
        backend = DeadlineBackend()
        context = httpx.create_ssl_context()
        self._pool: httpcore.ConnectionPool
        if proxy is None:
            self._pool = httpcore.ConnectionPool(
                ssl_context=context,
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                network_backend=backend,
            )
            return
        parsed = httpx.Proxy(proxy)  # takes the credentials out of the URL, as httpx does
        url = httpcore.URL(
            scheme=parsed.url.raw_scheme, host=parsed.url.raw_host, port=parsed.url.port, target=parsed.url.raw_path
        )
        if parsed.url.scheme in ("http", "https"):
            self._pool = httpcore.HTTPProxy(
                proxy_url=url,
                proxy_auth=parsed.raw_auth,
                proxy_headers=parsed.headers.raw,
                ssl_context=context,
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                network_backend=backend,
            )
        else:  # httpx.Proxy accepted it, so socks5 or socks5h; httpcore needs the socksio package for it
            self._pool = httpcore.SOCKSProxy(
                proxy_url=url,
                proxy_auth=parsed.raw_auth,
                ssl_context=context,
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                network_backend=backend,
            )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.SyncByteStream):
            raise TypeError("DeadlineTransport sends only synchronous request bodies")
        sent = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port, target=request.url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            response = self._pool.handle_request(sent)
        if not isinstance(response.stream, Iterable):
            raise TypeError("the httpcore pool returned an asynchronous response stream")
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


def environment_proxy(url: str) -> str | None:
    """The proxy URL the environment gives for ``url`` (``urllib.request.getproxies()``, as httpx reads it):
    ``{scheme}_proxy`` before ``all_proxy`` (a value without a scheme is an ``http://`` proxy); None when
    there is none or ``NO_PROXY`` exempts the host: ``*``, the host itself, a domain (``example.com``
    exempts it and its subdomains, ``.example.com`` only its subdomains), an IP address or network
    (``10.0.0.0/8``), or a ``scheme://host[:port]`` entry."""
    target = urlsplit(url)
    host = (target.hostname or "").lower()
    proxies = urllib.request.getproxies()
    for entry in (part.strip().lower() for part in proxies.get("no", "").split(",")):
        if entry == "*" or (entry and _exempts(entry, target.scheme, host, target.port)):
            return None
    proxy = proxies.get(target.scheme) or proxies.get("all")
    if not proxy:
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _exempts(entry: str, scheme: str, host: str, port: int | None) -> bool:
    try:
        network = ipaddress.ip_network(entry.strip("[]"), strict=False)
    except ValueError:  # a name, or a scheme://host[:port] entry
        pass
    else:
        try:
            return ipaddress.ip_address(host) in network
        except ValueError:  # the host is a name
            return False
    try:
        pattern = urlsplit(entry if "://" in entry else f"all://{entry}")
        pattern_port = pattern.port
    except ValueError:  # an entry that is no host: it exempts nothing
        return False
    if pattern.scheme not in ("all", scheme) or pattern_port not in (None, port):
        return False
    name = (pattern.hostname or "").lstrip("*")
    if not name:
        return False
    if name.startswith("."):
        return host.endswith(name)
    return host == name or host.endswith(f".{name}")
