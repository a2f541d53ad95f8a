"""``threadsched mock-provider`` (the mock server's one entry point): serve ``MockOpenAIServer``
in the foreground until SIGINT or SIGTERM, both of which stop it cleanly with exit code 0.

The first line of stdout is exactly ``listening on http://HOST:PORT`` (flushed), so a parent process can
start it with ``--port 0`` and read the real port; the last line is the final counters. Exit codes: 0 after
a signal, 1 when the address cannot be bound, 2 for invalid options (one ``threadsched mock-provider: ...``
line on stderr).

The server has no authentication, so ``--host`` defaults to 127.0.0.1; any address outside loopback
(``is_loopback_host``) is served as asked, but with a warning on stderr first, since it lets other machines in."""

from __future__ import annotations

import argparse
import ipaddress
import math
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from threadsched.mock.model import MAX_LATENCY_MS, SEED_RANGE

__all__ = [
    "add_mock_provider_options",
    "add_mock_provider_parser",
    "host_warning",
    "is_loopback_host",
    "run_mock_provider",
    "validate_mock_provider_args",
]

_PROG = "threadsched mock-provider"
_DESCRIPTION = (
    "Serve an OpenAI-compatible POST /v1/chat/completions (also streamed as server-sent events) and GET /v1/models "
    "with deterministic replies, a token-bucket rate limit (429 with staggered Retry-After and retry-after-ms), "
    "simulated latency, GET /stats and GET /health. Runs until "
    "SIGINT/SIGTERM; the first line of output is 'listening on http://HOST:PORT'."
)


def add_mock_provider_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default 0)")
    parser.add_argument("--rps", type=float, default=None, help="token refill rate in requests/s (default: unlimited)")
    parser.add_argument("--burst", type=int, default=None, help="token bucket size (default: max(1, ceil(rps)))")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="simulated latency per admitted request (default 0)")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="± deterministic jitter on the latency (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the replies and the latency jitter (default 0)")
    parser.add_argument("--max-concurrent", type=int, default=None, help="429 beyond this many in flight (default: none)")
    parser.add_argument("--provider", default="mock", help="provider name hashed into replies (default mock)")
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        default=None,
        metavar="NAME",
        help="serve only this model (repeat for several; GET /v1/models lists them); default: any model name",
    )


def add_mock_provider_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add the ``mock-provider`` subcommand to ``threadsched``'s subparsers; returns its parser."""
    parser = subparsers.add_parser(
        "mock-provider", help="serve a rate-limited OpenAI-compatible mock endpoint over HTTP", description=_DESCRIPTION
    )
    add_mock_provider_options(parser)
    return parser


def validate_mock_provider_args(args: argparse.Namespace) -> str | None:
    """The first problem with the parsed options, as one line, or None."""
    if not 0 <= args.port <= 65535:
        return f"--port must be in 0..65535, got {args.port}"
    if args.rps is not None and not 0 < args.rps < math.inf:
        return f"--rps must be a finite number > 0 (omit it for no rate limit), got {args.rps}"
    if args.burst is not None and args.rps is None:
        return "--burst needs --rps"
    if args.burst is not None and args.burst < 1:
        return f"--burst must be >= 1, got {args.burst}"
    for flag, value in (("--latency-ms", args.latency_ms), ("--jitter-ms", args.jitter_ms)):
        if not 0 <= value <= MAX_LATENCY_MS:  # the mock model's own range; also rejects NaN
            return f"{flag} must be a number in [0, {MAX_LATENCY_MS:_}], got {value}"
    if not SEED_RANGE[0] <= args.seed <= SEED_RANGE[1]:
        return f"--seed must be an integer in [-2**63, 2**63 - 1], got {args.seed}"
    if args.max_concurrent is not None and args.max_concurrent < 1:
        return f"--max-concurrent must be >= 1, got {args.max_concurrent}"
    if not args.provider:
        return "--provider must not be empty"
    if args.models is not None and not all(args.models):
        return "--model must not be empty"
    return None


_IPV4_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
_IPV6_LOOPBACK = ipaddress.IPv6Address("::1")


def is_loopback_host(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only: ``localhost`` (any case),
    an IPv4 address in 127.0.0.0/8 or ``::1``. Anything else is not: ``""`` and ``0.0.0.0`` (every IPv4
    interface), ``::`` (every interface), any other address, and any other name, which may resolve anywhere.
    Spelled out rather than ``ip_address(host).is_loopback``, whose answer for IPv4-mapped IPv6 addresses
    differs between Python versions."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return address in _IPV4_LOOPBACK
    return address == _IPV6_LOOPBACK  # a scoped ::1%eth0 is not equal: it is warned about too


def host_warning(host: str) -> str | None:
    """The stderr line ``threadsched mock-provider`` prints before binding ``host``, or None for loopback."""
    if is_loopback_host(host):
        return None
    shown = host or "''"  # "" binds every interface too: show that something (nothing) was given
    return (
        f"{_PROG}: warning: --host {shown} is not a loopback address; the server (which has no authentication) "
        "will accept connections from other machines"
    )


def run_mock_provider(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM for a parsed ``mock-provider`` command line; the exit code."""
    problem = validate_mock_provider_args(args)
    if problem is not None:
        print(f"{_PROG}: {problem}", file=sys.stderr)
        return 2
    warning = host_warning(args.host)
    if warning is not None:
        print(warning, file=sys.stderr, flush=True)
    from threadsched.mock.server import MockOpenAIServer  # here: building threadsched's parser need not load the HTTP server

    try:
        server = MockOpenAIServer(
            args.host,
            args.port,
            rps=args.rps,
            burst=args.burst,
            latency_ms=args.latency_ms,
            jitter_ms=args.jitter_ms,
            seed=args.seed,
            max_concurrent=args.max_concurrent,
            provider=args.provider,
            models=args.models,
        )
    except OSError as error:
        print(f"{_PROG}: cannot listen on {args.host}:{args.port}: {error.strerror or error}", file=sys.stderr)
        return 1
    stop = threading.Event()
    restore = _stop_on_signals(stop)
    try:
        server.start()
        print(f"listening on {server.url}", flush=True)
        stop.wait()
    finally:
        server.stop()
        restore()
    print("stats: " + " ".join(f"{name}={value}" for name, value in server.stats().items()), flush=True)
    return 0


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGINT and SIGTERM set ``stop``; returns the function that restores the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in signals}

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in signals:
        signal.signal(signum, handler)

    def restore() -> None:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)

    return restore
