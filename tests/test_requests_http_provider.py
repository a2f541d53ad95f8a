"""OpenAIChatTransport / OpenAIChatModel over httpx (MockTransport), runs against MockOpenAIServer, and
providers that never finish an answer (TrickleServer): the timeout bounds each attempt, the deadline all."""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from support import GENEROUS, TRICKLE_MODES, FakeClock, TrickleServer

from threadsched.core.events import MemoryEventSink
from threadsched.requests import (
    REQUEST_RETRY,
    ProviderModelKey,
    RequestAdmissionConfig,
    RequestAdmissionItem,
    RequestAdmissionLease,
    RequestDomain,
    RequestOutcome,
    RequestReleaseResult,
    RequestResourceKey,
)
from threadsched.requests.controller import AdaptiveRequestAdmissionController
from threadsched.requests.executor import (
    MalformedResponseError,
    ModelRequest,
    ModelRequestError,
    ModelRequestExecutor,
    TransportConnectionError,
    TransportTimeout,
)
from threadsched.requests.http_provider import (
    OpenAIChatModel,
    OpenAIChatTransport,
    assemble_streamed_completion,
    chat_completion_text,
    chat_completions_url,
)

KEY_ENV = "THREADSCHED_TEST_API_KEY"
KEY = "sk-test-9f8e7d6c5b4a-do-not-leak"
RESOURCE = RequestResourceKey("openai", "gpt-test")
PROMPT = "tell me a secret prompt"


class RecordingAdmission:
    def __init__(self) -> None:
        self.outcomes: list[RequestOutcome] = []
        self._ids = iter(range(1, 1_000))

    def acquire(
        self, item: RequestAdmissionItem, timeout: float | None = None, cancel: object | None = None
    ) -> RequestAdmissionLease:
        return RequestAdmissionLease(next(self._ids), item, item.resource, 0.0, 0)

    def release(
        self, lease: RequestAdmissionLease, outcome: RequestOutcome, *, retry_after: float | None = None
    ) -> RequestReleaseResult:
        assert lease.claim_release()
        self.outcomes.append(outcome)
        return RequestReleaseResult(True)


def completion(text: str = "hello") -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY_ENV


def transport_with(
    handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any
) -> tuple[OpenAIChatTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return OpenAIChatTransport("http://llm.test:8000", transport=httpx.MockTransport(record), **kwargs), seen


def chat_request(**payload: Any) -> ModelRequest:
    return ModelRequest(RESOURCE, {"messages": [{"role": "user", "content": PROMPT}], **payload})


# -- URL, request shape, parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://h:8000", "http://h:8000/v1/chat/completions"),
        ("http://h:8000/", "http://h:8000/v1/chat/completions"),
        ("http://h:8000/v1", "http://h:8000/v1/chat/completions"),
        ("http://h:8000/v1/", "http://h:8000/v1/chat/completions"),
        ("https://api.example.com/openai/v1", "https://api.example.com/openai/v1/chat/completions"),
        ("https://api.example.com/proxy", "https://api.example.com/proxy/v1/chat/completions"),
    ],
)
def test_chat_completions_url_normalisation(base_url: str, expected: str) -> None:
    assert chat_completions_url(base_url) == expected


@pytest.mark.parametrize(
    "bad", ["", "h:8000", "ftp://h/v1", "http://", "http://:8000", "http://h:65536", "http://h:x", "http://h/v1?x=1", None]
)
def test_chat_completions_url_rejects_non_http_urls(bad: Any) -> None:
    with pytest.raises(ValueError, match="base_url"):
        chat_completions_url(bad)


def test_request_shape_with_api_key(api_key: str) -> None:
    transport, seen = transport_with(lambda request: httpx.Response(200, json=completion()), api_key_env=api_key)
    with transport:
        response = transport.send(chat_request(temperature=0.2), timeout=5.0)
    assert (response.status, response.body) == (200, completion())
    (sent,) = seen
    assert sent.method == "POST" and str(sent.url) == "http://llm.test:8000/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.content) == {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": PROMPT}],
        "temperature": 0.2,
    }
    assert sent.extensions["timeout"]["read"] == 5.0


def test_no_authorization_header_without_api_key_env() -> None:
    transport, seen = transport_with(lambda request: httpx.Response(200, json=completion()))
    with transport:
        transport.send(chat_request(model="other-name"), timeout=None)
    assert "authorization" not in seen[0].headers
    assert json.loads(seen[0].content)["model"] == "other-name"  # the payload's model wins
    assert seen[0].extensions["timeout"]["read"] == 60.0  # the transport's timeout_s


def test_attempt_timeout_is_the_smaller_of_the_two() -> None:
    transport, seen = transport_with(lambda request: httpx.Response(200, json=completion()), timeout_s=2.0)
    with transport:
        transport.send(chat_request(), timeout=9.0)
    assert seen[0].extensions["timeout"]["read"] == 2.0


def test_non_json_body_is_kept_as_text_and_headers_are_lower_cased() -> None:
    transport, _ = transport_with(
        lambda request: httpx.Response(502, text="<html>bad gateway</html>", headers={"Retry-After": "3"})
    )
    with transport:
        response = transport.send(chat_request(), timeout=None)
    assert (response.status, response.body, response.headers["retry-after"]) == (502, "<html>bad gateway</html>", "3")


def test_payload_without_messages_is_a_value_error() -> None:
    transport, seen = transport_with(lambda request: httpx.Response(200, json=completion()))
    with transport, pytest.raises(ValueError, match="messages"):
        transport.send(ModelRequest(RESOURCE, {"prompt": "x"}), timeout=None)
    assert seen == []


# -- error mapping and secrecy -----------------------------------------------------------------------


def _raise(error: type[httpx.TransportError]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error(f"simulated {error.__name__}", request=request)

    return handler


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (httpx.ReadTimeout, TransportTimeout),
        (httpx.ConnectTimeout, TransportTimeout),
        (httpx.PoolTimeout, TransportTimeout),
        (httpx.ConnectError, TransportConnectionError),
        (httpx.ReadError, TransportConnectionError),
        (httpx.RemoteProtocolError, TransportConnectionError),
    ],
)
def test_httpx_errors_are_mapped_and_never_show_the_key(
    api_key: str, raised: type[httpx.TransportError], expected: type[Exception]
) -> None:
    transport, _ = transport_with(_raise(raised), api_key_env=api_key)
    with transport, pytest.raises(expected) as caught:
        transport.send(chat_request(), timeout=1.0)
    assert isinstance(caught.value.__cause__, raised)
    for text in (str(caught.value), repr(caught.value), str(caught.value.__cause__), repr(caught.value.__cause__)):
        assert KEY not in text


def test_key_is_absent_from_repr_and_missing_variable_is_named(api_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    transport, _ = transport_with(lambda request: httpx.Response(200, json=completion()), api_key_env=api_key)
    with transport:
        for text in (repr(transport), str(transport), repr(vars(transport)) if hasattr(transport, "__dict__") else ""):
            assert KEY not in text
        assert KEY_ENV in repr(transport)
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ValueError, match=KEY_ENV):
        OpenAIChatTransport("http://h", api_key_env=KEY_ENV, transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    monkeypatch.setenv(KEY_ENV, "")
    with pytest.raises(ValueError, match="not set or empty"):
        OpenAIChatTransport("http://h", api_key_env=KEY_ENV)


NAN, INF = float("nan"), float("inf")
MOCK = httpx.MockTransport(lambda request: httpx.Response(200, json=completion()))


@pytest.mark.parametrize(
    ("arguments", "error", "name"),
    [
        ({"base_url": 8000}, TypeError, "base_url"),
        ({"base_url": b"http://h"}, TypeError, "base_url"),
        ({"base_url": None}, TypeError, "base_url"),
        ({"base_url": "ftp://h"}, ValueError, "base_url"),
        ({"base_url": "file:///etc/passwd"}, ValueError, "base_url"),
        ({"base_url": "http://:80"}, ValueError, "base_url"),
        ({"base_url": "http://h:0"}, ValueError, "base_url"),
        ({"base_url": "http://h:99999"}, ValueError, "base_url"),
        ({"base_url": "http://h:port"}, ValueError, "base_url"),
        ({"base_url": "http://h/v1#frag"}, ValueError, "base_url"),
        ({"timeout_s": 0}, ValueError, "timeout_s"),
        ({"timeout_s": -1.0}, ValueError, "timeout_s"),
        ({"timeout_s": NAN}, ValueError, "timeout_s"),
        ({"timeout_s": INF}, ValueError, "timeout_s"),
        ({"timeout_s": -INF}, ValueError, "timeout_s"),
        ({"timeout_s": None}, TypeError, "timeout_s"),
        ({"timeout_s": "5"}, TypeError, "timeout_s"),
        ({"timeout_s": True}, TypeError, "timeout_s"),
        ({"max_connections": 0}, ValueError, "max_connections"),
        ({"max_connections": -3}, ValueError, "max_connections"),
        ({"max_connections": 2.0}, TypeError, "max_connections"),
        ({"max_connections": True}, TypeError, "max_connections"),
        ({"max_connections": "4"}, TypeError, "max_connections"),
        ({"api_key_env": ""}, ValueError, "api_key_env"),
        ({"api_key_env": "A=B"}, ValueError, "api_key_env"),
        ({"api_key_env": "A\0B"}, ValueError, "api_key_env"),
        ({"api_key_env": 5}, TypeError, "api_key_env"),
        ({"api_key_env": [KEY_ENV]}, TypeError, "api_key_env"),
        ({"transport": object()}, TypeError, "transport"),
        ({"transport": lambda request: httpx.Response(200)}, TypeError, "transport"),
    ],
)
def test_transport_constructor_names_the_bad_argument(arguments: dict[str, Any], error: type[Exception], name: str) -> None:
    arguments = {"base_url": "http://h", "transport": MOCK, **arguments}
    with pytest.raises(error, match=name):
        OpenAIChatTransport(**arguments)


def test_transport_constructor_keeps_good_arguments() -> None:
    with OpenAIChatTransport(" http://h:8000/v1/ ", timeout_s=1, max_connections=1, transport=MOCK) as transport:
        assert (transport.url, transport.timeout_s, transport.max_connections) == ("http://h:8000/v1/chat/completions", 1.0, 1)
        assert type(transport.timeout_s) is float


@pytest.mark.parametrize(
    ("arguments", "error", "name"),
    [
        ({"executor": None}, TypeError, "executor"),
        ({"executor": RecordingAdmission()}, TypeError, "executor"),
        ({"provider": 3}, TypeError, "provider"),
        ({"provider": " "}, ValueError, "provider"),
        ({"model": None}, TypeError, "model"),
        ({"model": ""}, ValueError, "model"),
        ({"domain": "chat"}, TypeError, "domain"),
        ({"api_model": 5}, TypeError, "api_model"),
        ({"api_model": ""}, ValueError, "api_model"),
        ({"timeout_s": 0}, ValueError, "timeout_s"),
        ({"timeout_s": -2}, ValueError, "timeout_s"),
        ({"timeout_s": NAN}, ValueError, "timeout_s"),
        ({"timeout_s": INF}, ValueError, "timeout_s"),
        ({"timeout_s": "1"}, TypeError, "timeout_s"),
        ({"timeout_s": False}, TypeError, "timeout_s"),
    ],
)
def test_model_constructor_names_the_bad_argument(arguments: dict[str, Any], error: type[Exception], name: str) -> None:
    with OpenAIChatTransport("http://h", transport=MOCK) as transport:
        executor = ModelRequestExecutor(RecordingAdmission(), transport)
        arguments = {"executor": executor, "provider": "p", "model": "m", **arguments}
        with pytest.raises(error, match=name):
            OpenAIChatModel(**arguments)


def test_model_constructor_keeps_good_arguments() -> None:
    with OpenAIChatTransport("http://h", transport=MOCK) as transport:
        executor = ModelRequestExecutor(RecordingAdmission(), transport)
        model = OpenAIChatModel(executor, "p", "m", domain=RequestDomain.EMBEDDING, api_model="m-2", timeout_s=2)
        assert model.resource == RequestResourceKey("p", "m", RequestDomain.EMBEDDING)
        assert (model.api_model, model.timeout_s) == ("m-2", 2.0)
        assert OpenAIChatModel(executor, "p", "m").timeout_s is None


def test_missing_httpx_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(ImportError, match=r"pip install 'threadsched\[http\]'"):
        OpenAIChatTransport("http://h")


def test_close_closes_the_pooled_client() -> None:
    transport, _ = transport_with(lambda request: httpx.Response(200, json=completion()))
    transport.close()
    with pytest.raises(RuntimeError):
        transport.send(chat_request(), timeout=None)


# -- body parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "plain text",
        {},
        {"choices": []},
        {"choices": ["x"]},
        {"choices": [{"message": None}]},
        {"choices": [{"message": {"content": None}}]},
        {"choices": [{"message": {"content": None, "refusal": "no"}}]},
        {"choices": [{"message": {"content": [{"type": "image_url"}]}}]},
        {"choices": [{"message": {"content": [{"type": "text", "text": 3}]}}]},
        {"error": {"message": "overloaded"}},
    ],
)
def test_chat_completion_text_rejects_malformed_bodies(body: Any) -> None:
    with pytest.raises(MalformedResponseError):
        chat_completion_text(body)


def test_chat_completion_text() -> None:
    assert chat_completion_text(completion("hi there")) == "hi there"
    parts = [{"type": "text", "text": "hi "}, {"type": "image_url", "image_url": {}}, {"type": "text", "text": "there"}]
    assert chat_completion_text({"choices": [{"message": {"role": "assistant", "content": parts}}]}) == "hi there"


def chunk(index: int, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
    body = {"id": "c9", "object": "chat.completion.chunk", "created": 5, "model": "m", **extra}
    body.setdefault("choices", [{"index": index, "delta": delta, "finish_reason": finish}])
    return json.dumps(body)


def test_assemble_streamed_completion_joins_each_choice() -> None:
    events = [
        chunk(0, {"role": "assistant", "content": ""}),
        chunk(1, {"role": "assistant", "content": "b"}),
        chunk(0, {"content": "a1"}),
        chunk(0, {"content": " a2"}),
        chunk(1, {}, "length"),
        chunk(0, {}, "stop"),
        chunk(0, {}, choices=[], usage={"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}),
    ]
    body = assemble_streamed_completion(events)
    assert body == {
        "id": "c9",
        "object": "chat.completion",
        "created": 5,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "a1 a2"}, "finish_reason": "stop"},
            {"index": 1, "message": {"role": "assistant", "content": "b"}, "finish_reason": "length"},
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4},
    }
    assert chat_completion_text(body) == "a1 a2"


@pytest.mark.parametrize("events", [[], ["{not json"], ["[1]"], [chunk(0, {}, choices=[{"index": "x"}])]])
def test_assemble_streamed_completion_of_a_broken_stream_is_malformed(events: list[str]) -> None:
    with pytest.raises(MalformedResponseError):
        chat_completion_text(assemble_streamed_completion(events))


def test_streamed_payload_is_read_as_server_sent_events(api_key: str) -> None:
    lines = [f"data: {chunk(0, {'content': word})}" for word in ("one", " two")] + [": keep-alive", "data: [DONE]", "data: junk"]
    stream = "\n\n".join(lines).encode()
    replies = iter(
        [
            httpx.Response(200, content=stream, headers={"content-type": "text/event-stream"}),
            httpx.Response(429, json={"error": {"message": "slow"}}, headers={"retry-after-ms": "7"}),
        ]
    )
    transport, seen = transport_with(lambda request: next(replies), api_key_env=api_key)
    with transport:
        streamed = transport.send(chat_request(stream=True), None)
        refused = transport.send(chat_request(stream=True), None)
    assert seen[0].headers["accept"] == "text/event-stream" and json.loads(seen[0].content)["stream"] is True
    assert streamed.status == 200 and chat_completion_text(streamed.body) == "one two"
    assert (refused.status, refused.body, refused.headers["retry-after-ms"]) == (429, {"error": {"message": "slow"}}, "7")


# -- the model facade through the executor -------------------------------------------------------------


def test_model_complete_builds_messages_and_returns_the_text(api_key: str) -> None:
    transport, seen = transport_with(lambda request: httpx.Response(200, json=completion("done")), api_key_env=api_key)
    admission = RecordingAdmission()
    sink = MemoryEventSink()
    executor = ModelRequestExecutor(admission, transport, events=sink, sleep=lambda _: None)
    model = OpenAIChatModel(executor, "openai", "gpt-test", api_model="gpt-test-2024")
    with transport:
        assert model.complete(PROMPT, system="be brief", max_tokens=5) == "done"
    assert json.loads(seen[0].content) == {
        "model": "gpt-test-2024",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": PROMPT}],
        "max_tokens": 5,
    }
    assert admission.outcomes == [RequestOutcome.SUCCESS]
    dumped = json.dumps([event.to_dict() for event in sink.events])
    assert KEY not in dumped and PROMPT not in dumped and "done" not in dumped


def test_model_complete_retries_429_and_malformed_bodies_then_fails_without_leaking(api_key: str) -> None:
    replies = iter(
        [
            httpx.Response(429, json={"error": {"message": "slow down"}}, headers={"retry-after-ms": "10"}),
            httpx.Response(200, json={"choices": []}),
            httpx.Response(401, json={"error": {"message": "bad key"}}),
        ]
    )
    transport, seen = transport_with(lambda request: next(replies), api_key_env=api_key)
    admission = RecordingAdmission()
    slept: list[float] = []
    executor = ModelRequestExecutor(admission, transport, retry=dataclasses.replace(REQUEST_RETRY, jitter=0), sleep=slept.append)
    with transport, pytest.raises(ModelRequestError) as caught:
        OpenAIChatModel(executor, "openai", "gpt-test").complete(PROMPT)
    assert (caught.value.outcome, caught.value.status, caught.value.attempts) == (RequestOutcome.PROVIDER_FAILURE, 401, 3)
    assert admission.outcomes == [RequestOutcome.RATE_LIMITED, RequestOutcome.PROVIDER_FAILURE, RequestOutcome.PROVIDER_FAILURE]
    assert slept[0] >= 0.01 and len(seen) == 3
    assert KEY not in str(caught.value) and PROMPT not in str(caught.value)


def test_model_rejects_a_non_string_prompt() -> None:
    transport, _ = transport_with(lambda request: httpx.Response(200, json=completion()))
    with transport, pytest.raises(TypeError, match="prompt"):
        OpenAIChatModel(ModelRequestExecutor(RecordingAdmission(), transport), "p", "m").complete(["x"])  # type: ignore[arg-type]


# -- end to end: real HTTP, real controller ------------------------------------------------------------


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    yield


def test_end_to_end_against_the_mock_openai_server(no_proxy: None, api_key: str) -> None:
    mock_server = pytest.importorskip("threadsched.mock.server")
    controller_module = pytest.importorskip("threadsched.requests.controller")
    from threadsched.mock.model import MockModelEndpoint

    clock = FakeClock(1_000.0)  # one fake time for the server's token bucket, the controller's cooldowns and the back-off
    sink = MemoryEventSink()
    # rps=1, burst=2 and a frozen clock: exactly two tokens, then 429 until the executor's back-off
    # (which advances the shared clock) lets the bucket refill.
    with mock_server.MockOpenAIServer(port=0, rps=1, burst=2, clock=clock) as server:
        controller = controller_module.AdaptiveRequestAdmissionController(
            RequestAdmissionConfig(caps={ProviderModelKey("mock", "fast"): 4}), events=sink, clock=clock
        )
        with OpenAIChatTransport(server.url, api_key_env=api_key, timeout_s=30.0) as transport:
            executor = ModelRequestExecutor(
                controller, transport, events=sink, sleep=clock.sleep, clock=clock, sequence=controller.sequence
            )
            model = OpenAIChatModel(executor, "mock", "fast")
            prompts = ["alpha", "beta", "gamma"]
            texts = [model.complete(prompt) for prompt in prompts]
        stats = server.stats()
    expected = MockModelEndpoint("mock", ["fast"])
    assert texts == [expected.complete("fast", prompt) for prompt in prompts]
    assert stats["ok"] == 3 and stats["rate_limited"] >= 1
    assert clock.slept and clock.slept[0] >= 1.0  # at least the server's Retry-After
    assert controller.statistics()["active_leases"] == 0
    kinds = [event.kind for event in sink.events]
    assert kinds.count("model_request_started") == kinds.count("model_request_completed") == stats["requests"]
    assert "request_rate_limited" in kinds or "request_limit_decreased" in kinds
    assert len({event.sequence for event in sink.events}) == len(kinds)
    dumped = json.dumps([event.to_dict() for event in sink.events])
    assert KEY not in dumped and "gamma" not in dumped


def test_streamed_and_json_completions_against_the_mock_openai_server(no_proxy: None) -> None:
    from threadsched.mock.model import MockModelEndpoint
    from threadsched.mock.server import MockOpenAIServer

    with MockOpenAIServer(rps=None, seed=2) as server, OpenAIChatTransport(server.url) as transport:
        model = OpenAIChatModel(ModelRequestExecutor(RecordingAdmission(), transport), "mock", "fast")
        streamed = model.complete("alpha", stream=True)
        plain = model.complete("alpha", max_completion_tokens=50)
        as_json = model.complete("alpha", response_format={"type": "json_object"})
    assert streamed == plain == MockModelEndpoint("mock", ["fast"], seed=2).complete("fast", "alpha")
    assert json.loads(as_json) == {"reply": plain}


# -- providers that never finish an answer: the timeout bounds the attempt, the deadline every attempt ----

TIMED_OUT = {RequestOutcome.PROVIDER_TIMEOUT, RequestOutcome.LOCAL_TIMEOUT}


@pytest.fixture
def no_new_threads() -> Iterator[None]:
    """Whatever a test started (server, transport) has ended by the time it returns."""
    baseline = set(threading.enumerate())
    yield
    left = [thread.name for thread in threading.enumerate() if thread not in baseline]
    assert not left, f"threads left running: {left}"


def trickle_request(mode: str, timeout_s: float | None) -> ModelRequest:
    payload: dict[str, Any] = {"messages": [{"role": "user", "content": PROMPT}]}
    if mode == "sse":
        payload["stream"] = True
    return ModelRequest(RESOURCE, payload, timeout_s=timeout_s)


def admission() -> tuple[AdaptiveRequestAdmissionController, MemoryEventSink]:
    sink = MemoryEventSink()
    config = RequestAdmissionConfig(caps={ProviderModelKey(RESOURCE.provider, RESOURCE.model): 2})
    return AdaptiveRequestAdmissionController(config, events=sink), sink


def assert_each_lease_released_once(controller: AdaptiveRequestAdmissionController, sink: MemoryEventSink, attempts: int) -> None:
    stats = controller.statistics()
    assert stats["acquired"] == stats["released"] == attempts
    assert stats["active_leases"] == 0 and stats["release_diagnostics"] == {}
    snapshot = controller.snapshot(RESOURCE)
    assert (snapshot.in_flight, snapshot.double_releases, snapshot.unknown_releases) == (0, 0, 0)
    acquired = [event.lease_id for event in sink.events if event.kind == "request_lease_acquired"]
    released = [event for event in sink.events if event.kind == "request_lease_released"]
    assert len(acquired) == len(set(acquired)) == attempts
    assert sorted(event.lease_id for event in released) == sorted(acquired)  # each lease once, no other
    assert {RequestOutcome(event.reason) for event in released} <= TIMED_OUT
    assert not [event for event in sink.events if event.kind == "request_release_diagnostic"]


@pytest.mark.parametrize("mode", TRICKLE_MODES)
def test_a_trickling_provider_cannot_outlast_the_attempt_timeout_or_the_deadline(
    mode: str, no_proxy: None, no_new_threads: None
) -> None:
    controller, sink = admission()
    with TrickleServer(mode) as server:
        with OpenAIChatTransport(server.url) as transport:
            executor = ModelRequestExecutor(controller, transport, events=sink, sequence=controller.sequence)
            with pytest.raises(ModelRequestError) as caught:
                executor.execute(trickle_request(mode, timeout_s=1.0), deadline_s=3.0)
        attempts = caught.value.attempts
        assert server.wait_for_hang_ups(attempts)  # every attempt's connection was closed, none left trickling
    assert server.accepted == attempts  # a timed-out connection is never reused
    assert caught.value.outcome in TIMED_OUT and caught.value.status is None
    # An attempt lasts its 1 s timeout and the first back-off at least 0.45 s: a third attempt cannot fit in 3 s.
    assert attempts in (1, 2)
    assert_each_lease_released_once(controller, sink, attempts)
    assert executor.statistics()["failed"] == 1


@pytest.mark.parametrize("mode", TRICKLE_MODES)
def test_the_deadline_cuts_an_attempt_whose_timeout_is_longer(mode: str, no_proxy: None, no_new_threads: None) -> None:
    controller, sink = admission()
    with TrickleServer(mode) as server:
        with OpenAIChatTransport(server.url, timeout_s=GENEROUS) as transport:
            executor = ModelRequestExecutor(controller, transport, events=sink, sequence=controller.sequence)
            with pytest.raises(ModelRequestError) as caught:
                executor.execute(trickle_request(mode, timeout_s=GENEROUS), deadline_s=1.0)
        assert server.wait_for_hang_ups(1)
    assert (caught.value.outcome, caught.value.attempts) == (RequestOutcome.LOCAL_TIMEOUT, 1)
    assert_each_lease_released_once(controller, sink, 1)


@pytest.mark.parametrize("mode", TRICKLE_MODES)
def test_the_transport_raises_a_timeout_when_the_attempt_timeout_passes(mode: str, no_proxy: None, no_new_threads: None) -> None:
    with TrickleServer(mode) as server, OpenAIChatTransport(server.url) as transport:
        with pytest.raises(TransportTimeout) as caught:
            transport.send(trickle_request(mode, timeout_s=None), timeout=0.5)
        assert isinstance(caught.value.__cause__, httpx.TimeoutException)
        assert server.wait_for_hang_ups(1)


def test_headers_that_trickle_on_a_reused_keep_alive_connection_are_cut_off(no_proxy: None, no_new_threads: None) -> None:
    # The first answer comes in full and leaves the connection in the pool; the next request on it trickles.
    with TrickleServer("headers", answer_first=1) as server, OpenAIChatTransport(server.url) as transport:
        first = transport.send(chat_request(), timeout=GENEROUS)
        with pytest.raises(TransportTimeout):
            transport.send(chat_request(), timeout=0.5)
        third = transport.send(chat_request(), timeout=GENEROUS)  # a new connection: its first answer comes at once
    assert chat_completion_text(first.body) == chat_completion_text(third.body) == "done"
    # Three requests over two connections: the one that trickled went over the first, reused one (a timed-out
    # connection is closed, so had it been new, the third request would have needed a third connection).
    assert (server.accepted, len(server.request_lines)) == (2, 3)


def test_the_model_facade_passes_its_timeout_and_the_deadline(no_proxy: None, no_new_threads: None) -> None:
    controller, sink = admission()
    with TrickleServer("body") as server, OpenAIChatTransport(server.url) as transport:
        executor = ModelRequestExecutor(controller, transport, events=sink, sequence=controller.sequence)
        model = OpenAIChatModel(executor, RESOURCE.provider, RESOURCE.model, timeout_s=1.0)
        with pytest.raises(ModelRequestError) as caught:
            model.complete(PROMPT, deadline_s=3.0)
    assert caught.value.outcome in TIMED_OUT
    assert_each_lease_released_once(controller, sink, caught.value.attempts)


def paced(piece: bytes, gate: threading.Event) -> Iterator[bytes]:
    """A body that never ends, one piece per 50 ms (the hang detector: a million pieces)."""
    for _ in range(1_000_000):
        gate.wait(0.05)  # never set: only paces the pieces
        yield piece


@pytest.mark.parametrize(("streamed", "piece"), [(False, b" "), (True, b": keep-alive\n\n")])
def test_a_given_transport_is_bounded_between_chunks(streamed: bool, piece: bytes) -> None:
    gate = threading.Event()
    content_type = "text/event-stream" if streamed else "application/json"
    transport, _ = transport_with(
        lambda request: httpx.Response(200, content=paced(piece, gate), headers={"content-type": content_type})
    )
    with transport, pytest.raises(TransportTimeout, match=r"no complete answer within 0\.3s"):
        transport.send(chat_request(stream=streamed), timeout=0.3)
