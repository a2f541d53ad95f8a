"""The OpenAI-compatible mock server: replies, rate limit, stats, errors, lifecycle and its command line.

No sleeps as synchronisation and no timing assertions: the token bucket runs on a fake clock, concurrency is
held with the server's ``gate`` and observed with ``wait_for_in_flight``."""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from support import FakeClock

from threadsched.mock.cli import add_mock_provider_parser, run_mock_provider
from threadsched.mock.model import MockModelEndpoint
from threadsched.mock.server import SERVER_THREAD_NAME, MockOpenAIServer

CHAT = "/v1/chat/completions"
TIMEOUT = 10.0


@pytest.fixture(autouse=True)
def no_leaked_server_threads() -> Iterator[None]:
    baseline = set(threading.enumerate())
    yield
    leaked = [t.name for t in threading.enumerate() if t not in baseline and t.name.startswith(SERVER_THREAD_NAME)]
    assert not leaked, f"mock server threads left running: {leaked}"


def request(
    server: MockOpenAIServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, http.client.HTTPMessage, Any]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        connection.request(method, path, body=data, headers=all_headers)
        response = connection.getresponse()
        return response.status, response.headers, json.loads(response.read())
    finally:
        connection.close()


def chat(server: MockOpenAIServer, content: str = "hello there", model: str = "m1", **extra: Any) -> tuple[int, Any, Any]:
    return request(server, "POST", CHAT, {"model": model, "messages": [{"role": "user", "content": content}], **extra})


def test_completion_is_openai_shaped_and_matches_the_in_process_mock() -> None:
    with MockOpenAIServer(rps=None, seed=3) as server:
        status, headers, body = chat(server, "write a haiku", headers={"Authorization": "Bearer sk-secret"})
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert body["object"] == "chat.completion"
    assert body["model"] == "m1"
    assert isinstance(body["id"], str) and isinstance(body["created"], int)
    [choice] = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    text = choice["message"]["content"]
    assert text == MockModelEndpoint("mock", ["m1"], seed=3).complete("m1", "write a haiku")
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": len(text.split()), "total_tokens": 3 + len(text.split())}
    assert "sk-secret" not in json.dumps(body)


def test_replies_depend_on_seed_model_and_prompt_only() -> None:
    with MockOpenAIServer(rps=None, seed=1) as one, MockOpenAIServer(rps=None, seed=2) as two:

        def text(server: MockOpenAIServer, content: str, model: str = "m1") -> str:
            status, _, body = chat(server, content, model, temperature=0.7)
            assert status == 200
            return str(body["choices"][0]["message"]["content"])

        first = text(one, "same prompt")
        assert text(one, "same prompt") == first  # not the time, order or attempt
        assert text(two, "same prompt") != first
        assert text(one, "other prompt") != first
        assert text(one, "same prompt", model="m2") != first


def test_several_messages_and_max_tokens() -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    with MockOpenAIServer(rps=None) as server:
        status, _, full = request(server, "POST", CHAT, {"model": "m", "messages": messages})
        _, _, again = request(server, "POST", CHAT, {"model": "m", "messages": messages})
        _, _, cut = request(server, "POST", CHAT, {"model": "m", "messages": messages, "max_tokens": 2})
    assert status == 200 and full["usage"]["prompt_tokens"] == 3
    assert full["choices"][0]["message"]["content"] == again["choices"][0]["message"]["content"]
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["choices"][0]["message"]["content"] == " ".join(full["choices"][0]["message"]["content"].split()[:2])


def test_burst_beyond_the_bucket_gets_429_with_retry_after() -> None:
    clock = FakeClock()
    with MockOpenAIServer(rps=2.0, burst=3, clock=clock) as server:
        assert [chat(server)[0] for _ in range(3)] == [200, 200, 200]
        status, headers, body = chat(server)
        assert status == 429
        assert headers["Retry-After"] == "1"  # integer seconds, rounded up, at least 1
        assert headers["retry-after-ms"] == "500"  # exact: one token at 2/s
        assert body["error"]["type"] == "rate_limit_exceeded"
        assert "rate limit" in body["error"]["message"]
        clock.now += 0.2
        # the token due in 300 ms was promised to the caller refused first: this one gets the slot after it
        assert chat(server)[1]["retry-after-ms"] == "800"
        clock.now += 0.3
        assert chat(server)[0] == 200
        clock.now += 2.5  # refills to burst, not beyond
        assert [chat(server)[0] for _ in range(4)] == [200, 200, 200, 429]
        stats = server.stats()
    assert stats["requests"] == 10 and stats["ok"] == 7 and stats["rate_limited"] == 3


def test_default_burst_and_long_waits() -> None:
    clock = FakeClock()
    with MockOpenAIServer(rps=0.25, clock=clock) as server:
        assert server.burst == 1
        assert chat(server)[0] == 200
        status, headers, _ = chat(server)
    assert status == 429 and headers["Retry-After"] == "4" and headers["retry-after-ms"] == "4000"
    assert MockOpenAIServer(rps=2.5, clock=clock).burst == 3  # never started: construction binds, stop closes


def test_stats_endpoint_counts_requests() -> None:
    clock = FakeClock()
    with MockOpenAIServer(rps=1.0, burst=2, clock=clock) as server:
        for _ in range(3):
            chat(server)
        request(server, "POST", CHAT, raw=b"{not json")
        request(server, "GET", "/nowhere")
        status, _, stats = request(server, "GET", "/stats")
        assert stats == server.stats()
    assert status == 200
    assert stats["requests"] == 4 and stats["ok"] == 2 and stats["rate_limited"] == 1 and stats["bad_requests"] == 1
    assert stats["not_found"] == 1 and stats["in_flight"] == 0 and stats["max_concurrent"] == 1


def _hold_requests(server: MockOpenAIServer, count: int) -> tuple[list[threading.Thread], list[int]]:
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(chat(server)[0])) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads, statuses


def test_max_concurrent_is_the_peak_in_flight() -> None:
    gate = threading.Event()
    with MockOpenAIServer(rps=None, gate=gate) as server:
        threads, statuses = _hold_requests(server, 4)
        try:
            assert server.wait_for_in_flight(4, timeout=TIMEOUT)
            _, _, stats = request(server, "GET", "/stats")  # stats are never held by the gate
            assert stats["in_flight"] == 4 and stats["max_concurrent"] == 4
        finally:
            gate.set()
            for thread in threads:
                thread.join(TIMEOUT)
        assert statuses == [200] * 4
        stats = server.stats()
    assert stats["max_concurrent"] == 4 and stats["in_flight"] == 0 and stats["ok"] == 4


def test_max_concurrent_limit_rejects_with_429() -> None:
    gate = threading.Event()
    with MockOpenAIServer(rps=None, max_concurrent=2, gate=gate) as server:
        threads, statuses = _hold_requests(server, 2)
        try:
            assert server.wait_for_in_flight(2, timeout=TIMEOUT)
            status, headers, body = chat(server)
        finally:
            gate.set()
            for thread in threads:
                thread.join(TIMEOUT)
        assert status == 429 and headers["Retry-After"] == "1" and body["error"]["type"] == "rate_limit_exceeded"
        assert statuses == [200, 200] and chat(server)[0] == 200
        stats = server.stats()
    assert stats["concurrency_limited"] == 1 and stats["rate_limited"] == 1 and stats["max_concurrent"] == 2


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"[1, 2]", None, "JSON object"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model", "model"),
        (b'{"model": "m"}', "messages", "messages"),
        (b'{"model": "", "messages": [{"role": "user", "content": "x"}]}', "model", "model"),
        (b'{"model": "m", "messages": []}', "messages", "messages"),
        (b'{"model": "m", "messages": [{"role": "user", "content": 3}]}', "messages[0].content", "messages[0].content"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', "max_tokens", "max_tokens"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 9}', "temperature", "temperature"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": 1}', "stream", "stream"),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "stream_options": {}}',
            "stream_options",
            "stream=true",
        ),
        (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0}', "n", "'n'"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 129}', "n", "'n'"),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 0}',
            "max_completion_tokens",
            ">= 1",
        ),
        (b'{"model": "m", "messages": [{"role": "robot", "content": "x"}]}', "messages[0].role", "role"),
        (b'{"model": "m", "messages": [{"role": "user"}]}', "messages[0].content", "missing"),
        (b'{"model": "m", "messages": [{"role": "user", "content": null}]}', "messages[0].content", "assistant"),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "video"}]}]}',
            "messages[0].content[0].type",
            "text",
        ),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]}',
            "messages[0].content[0].text",
            "string",
        ),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "yaml"}}',
            "response_format.type",
            "json_object",
        ),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema"}}',
            "response_format.json_schema",
            "name",
        ),
    ],
)
def test_bad_requests_get_400_naming_the_problem(body: bytes, param: str | None, words: str) -> None:
    with MockOpenAIServer(rps=1.0, burst=1, clock=FakeClock()) as server:
        status, _, reply = request(server, "POST", CHAT, raw=body)
        assert chat(server)[0] == 200  # a bad request takes no token
    assert status == 400
    assert reply["error"]["type"] == "invalid_request_error" and reply["error"]["param"] == param
    assert words in reply["error"]["message"]


def test_refused_callers_get_staggered_retry_hints_one_slot_apart() -> None:
    clock = FakeClock()
    with MockOpenAIServer(rps=4.0, burst=2, clock=clock) as server:
        assert [chat(server)[0] for _ in range(2)] == [200, 200]
        hints = [chat(server)[1] for _ in range(6)]
        assert [h["retry-after-ms"] for h in hints] == ["250", "500", "750", "1000", "1250", "1500"]
        assert [h["Retry-After"] for h in hints] == ["1", "1", "1", "1", "2", "2"]
        for hint in hints:  # each comes back at its slot and finds a token
            clock.now = 1000.0 + int(hint["retry-after-ms"]) / 1000
            assert chat(server)[0] == 200
        clock.now += 10  # promises in the past do not delay anyone
        assert [chat(server)[0] for _ in range(2)] == [200, 200]
        assert chat(server)[1]["retry-after-ms"] == "250"


def test_model_list_and_retrieval() -> None:
    with MockOpenAIServer(rps=None, provider="p", models=["writer", "judge", "writer"]) as server:
        status, _, listing = request(server, "GET", "/v1/models")
        assert status == 200 and listing["object"] == "list"
        assert [(m["id"], m["object"], m["owned_by"]) for m in listing["data"]] == [
            ("writer", "model", "p"),
            ("judge", "model", "p"),
        ]
        assert request(server, "GET", "/v1/models/judge")[2]["id"] == "judge"
        status, _, missing = request(server, "GET", "/v1/models/nope")
        assert status == 404 and missing["error"]["code"] == "model_not_found"
        status, _, refused = chat(server, model="nope")
        assert status == 404 and refused["error"]["code"] == "model_not_found" and refused["error"]["param"] == "model"
        assert chat(server, model="judge")[0] == 200
    with MockOpenAIServer(rps=None) as anything:  # no list given: every name is served and listed on first use
        assert request(anything, "GET", "/v1/models")[2]["data"] == []
        assert chat(anything, model="b")[0] == chat(anything, model="a")[0] == chat(anything, model="b")[0] == 200
        assert [m["id"] for m in request(anything, "GET", "/v1/models")[2]["data"]] == ["b", "a"]
        assert request(anything, "GET", "/v1/models/zzz")[2]["id"] == "zzz"


def read_stream(server: MockOpenAIServer, body: dict[str, Any], connection: http.client.HTTPConnection) -> list[str]:
    connection.request("POST", CHAT, body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Transfer-Encoding"] == "chunked"
    lines = response.read().decode().split("\n\n")
    assert lines[-1] == ""
    return [line.removeprefix("data: ") for line in lines[:-1]]


def test_streamed_reply_is_server_sent_events_and_keeps_the_connection() -> None:
    with MockOpenAIServer(rps=None, seed=5) as server:
        plain = chat(server, "tell me", n=2)[2]
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
        try:
            body = {"model": "m1", "messages": [{"role": "user", "content": "tell me"}], "n": 2, "stream": True}
            events = read_stream(server, {**body, "stream_options": {"include_usage": True}}, connection)
            again = read_stream(server, body, connection)  # the same keep-alive connection
        finally:
            connection.close()
    assert events[-1] == "[DONE]" and again[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    texts = [
        "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"] and c["choices"][0]["index"] == i)
        for i in (0, 1)
    ]
    assert texts == [choice["message"]["content"] for choice in plain["choices"]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == plain["usage"]
    assert all("usage" not in json.loads(event) for event in again[:-1])
    assert server.stats()["ok"] == 3


def test_replies_are_byte_identical_under_the_same_seed() -> None:
    def replies(seed: int) -> list[Any]:
        with MockOpenAIServer(rps=None, seed=seed) as server:
            formats = [None, {"type": "json_object"}]
            return [chat(server, "same", n=2, response_format=fmt)[2] for fmt in formats]

    assert replies(4) == replies(4)
    assert replies(4) != replies(5)


def test_paths_and_methods() -> None:
    with MockOpenAIServer(rps=None) as server:
        assert request(server, "GET", "/health")[0] == 200
        assert request(server, "GET", "/v2/unknown")[0] == 404
        assert request(server, "POST", "/v1/completions", {"model": "m"})[0] == 404
        status, headers, _ = request(server, "GET", CHAT)
        assert status == 405 and headers["Allow"] == "POST"
        assert request(server, "POST", "/stats", {})[0] == 405


def test_keep_alive_connections_and_stop_while_one_is_idle() -> None:
    server = MockOpenAIServer(rps=None, latency_ms=2, jitter_ms=2).start()
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    try:
        payload = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]})
        for _ in range(2):  # the same connection serves both
            connection.request("POST", CHAT, body=payload, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 200 and json.loads(response.read())["object"] == "chat.completion"
        server.stop()  # must not wait for the idle keep-alive connection
    finally:
        connection.close()
        server.stop()
    assert server.stats()["ok"] == 2


def test_lifecycle() -> None:
    server = MockOpenAIServer(rps=None)
    assert server.url.startswith("http://127.0.0.1:") and not server.url.endswith(":0")
    assert "MockOpenAIServer" in repr(server)
    assert server.start() is server
    with pytest.raises(RuntimeError, match="already started"):
        server.start()
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(RuntimeError, match="already started or stopped"):
        server.start()
    MockOpenAIServer(rps=None).stop()  # never started


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rps": 0}, "rps must be a finite number > 0"),
        ({"rps": float("inf")}, "rps must be a finite number > 0"),
        ({"rps": None, "burst": 2}, "burst needs rps"),
        ({"rps": 1.0, "burst": 0}, "burst must be an int >= 1"),
        ({"rps": None, "latency_ms": -1}, "latency_ms must be a finite number"),
        ({"rps": None, "jitter_ms": float("nan")}, "jitter_ms must be a finite number"),
        ({"rps": None, "jitter_ms": 1e308}, r"MockOpenAIServer\.jitter_ms must be a finite number in \[0, 3_600_000\]"),
        ({"rps": None, "seed": 2**64}, r"MockOpenAIServer\.seed must be an int in \[-2\*\*63, 2\*\*63 - 1\]"),
        ({"rps": None, "max_concurrent": 0}, "max_concurrent must be an int >= 1"),
        ({"rps": None, "port": 70000}, "port must be an int in"),
        ({"rps": None, "models": []}, "models must be a non-empty sequence"),
        ({"rps": None, "models": "writer"}, "models must be a non-empty sequence"),
        ({"rps": None, "models": ["ok", ""]}, "models must be a non-empty sequence"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MockOpenAIServer(**kwargs)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="threadsched")
    add_mock_provider_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["mock-provider", *argv])


def test_cli_parser_defaults() -> None:
    args = _parse()
    assert (args.host, args.port, args.rps, args.burst, args.max_concurrent) == ("127.0.0.1", 0, None, None, None)
    assert (args.latency_ms, args.jitter_ms, args.seed) == (0.0, 0.0, 0)
    assert args.models is None
    assert _parse("--model", "writer", "--model", "judge").models == ["writer", "judge"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rps", "0"], "--rps must be a finite number > 0"),
        (["--rps", "nan"], "--rps must be a finite number > 0"),
        (["--port", "70000"], "--port must be in 0..65535"),
        (["--burst", "3"], "--burst needs --rps"),
        (["--model", "a", "--model", ""], "--model must not be empty"),
        (["--rps", "5", "--burst", "0"], "--burst must be >= 1"),
        (["--latency-ms", "-5"], "--latency-ms must be a number"),
        (["--jitter-ms", "1e308"], "--jitter-ms must be a number in [0, 3_600_000], got 1e+308"),
        (["--seed", str(2**63)], "--seed must be an integer in [-2**63, 2**63 - 1]"),
        (["--max-concurrent", "0"], "--max-concurrent must be >= 1"),
    ],
)
def test_cli_rejects_invalid_options(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_mock_provider(_parse(*argv)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("threadsched mock-provider: ") and message in captured.err
    assert captured.err.count("\n") == 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_mock_provider_command_serves_until_a_signal(signum: signal.Signals) -> None:
    command = [sys.executable, "-m", "threadsched", "mock-provider", "--port", "0", "--rps", "5"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        assert first.startswith("listening on http://127.0.0.1:")
        port = int(first.rsplit(":", 1)[1])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        try:
            connection.request("POST", CHAT, body=json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]}))
            assert connection.getresponse().status == 200
        finally:
            connection.close()
        process.send_signal(signum)
        out, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert err == ""
    assert out.strip().splitlines()[-1].startswith("stats: requests=1 ok=1 rate_limited=0")
