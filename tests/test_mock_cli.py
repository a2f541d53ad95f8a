"""``threadsched mock-provider``'s entry point (threadsched.mock.cli): the warning for a host outside loopback.

No test here binds a non-loopback interface: the decision is tested as a function, the printed warning with
a server stub that refuses to bind, and one real run on 127.0.0.1 checks that loopback prints nothing."""

from __future__ import annotations

import argparse
import ipaddress
import signal
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import threadsched.mock.server
from threadsched.mock.cli import add_mock_provider_parser, host_warning, is_loopback_host, run_mock_provider

TIMEOUT = 30


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="threadsched")
    add_mock_provider_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["mock-provider", *argv])


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "127.255.255.254", "127.1.2.3", "::1", "localhost", "LocalHost"])
def test_loopback_hosts_get_no_warning(host: str) -> None:
    assert is_loopback_host(host) and host_warning(host) is None


@pytest.mark.parametrize(
    "host",
    [
        "",  # every interface, as socket.bind reads it
        "0.0.0.0",
        "::",
        "192.168.1.10",
        "10.0.0.1",
        "128.0.0.1",
        "126.255.255.255",
        "::ffff:127.0.0.1",  # IPv4-mapped: not ::1
        "::1%lo",  # scoped
        "0:0:0:0:0:0:0:2",
        "example.com",
        "localhost.",
        "127.1",  # inet_aton reads it as 127.0.0.1, but it is no address ipaddress accepts: warn rather than guess
        "[::1]",
    ],
)
def test_every_other_host_is_warned_about(host: str) -> None:
    assert not is_loopback_host(host)
    warning = host_warning(host)
    assert warning is not None and warning.startswith("threadsched mock-provider: warning: --host ")
    assert "is not a loopback address" in warning and "\n" not in warning
    assert (host or "''") in warning


@given(st.ip_addresses(v=4))
def test_an_ipv4_address_is_loopback_exactly_when_it_is_in_127_0_0_0_8(address: ipaddress.IPv4Address) -> None:
    assert is_loopback_host(str(address)) is (str(address).split(".")[0] == "127")


@given(st.ip_addresses(v=6))
def test_an_ipv6_address_is_loopback_exactly_when_it_is_1(address: ipaddress.IPv6Address) -> None:
    assert is_loopback_host(str(address)) is (address == ipaddress.IPv6Address("::1"))


class RefusingServer:
    """Stands in for MockOpenAIServer: refuses to bind, so the command stops right after its warning."""

    def __init__(self, host: str, port: int, **kwargs: Any) -> None:
        raise OSError(99, "refused by the test")


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::"])
def test_the_command_prints_the_warning_on_stderr_before_binding(
    host: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(threadsched.mock.server, "MockOpenAIServer", RefusingServer)
    assert run_mock_provider(parse("--host", host)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    warning, error = captured.err.splitlines()
    assert warning == host_warning(host)
    assert error.startswith(f"threadsched mock-provider: cannot listen on {host}:0: refused by the test")


def test_invalid_options_are_reported_before_any_warning(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_mock_provider(parse("--host", "0.0.0.0", "--port", "70000")) == 2
    assert capsys.readouterr().err == "threadsched mock-provider: --port must be in 0..65535, got 70000\n"


def test_a_real_run_on_127_0_0_1_prints_no_warning() -> None:
    command = [sys.executable, "-m", "threadsched", "mock-provider", "--host", "127.0.0.1", "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("listening on http://127.0.0.1:")
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0 and err == ""
