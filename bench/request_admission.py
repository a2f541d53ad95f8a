"""Requests: throughput and 429 share of adaptive request admission against a rate-limited server.

Target: against a server allowing R requests/s, the achieved throughput is >= 90 % of R with
429s <= 5 % of the attempts after warm-up. One run:

* ``MockOpenAIServer(rps=R, burst=B, latency_ms=L, jitter_ms=J)`` over real HTTP on 127.0.0.1: a token bucket
  of R tokens/s (B tokens, full at the start; B defaults to R), each admitted request answered after
  L +- J ms, a request without a token answered at once with 429 (``Retry-After`` and ``retry-after-ms``).
* One ``AdaptiveRequestAdmissionController`` for one provider/model with static cap C (default
  ``max(4, ceil(2 * R * L))``: twice the concurrency the server's rate allows, so the adaptive limit, not
  the cap, has to find the rate) and the library's default AIMD settings (``--successes-until-increase``,
  ``--ceiling-hold``, ... override them); an ``OpenAIChatTransport(max_connections=C)`` and a
  ``ModelRequestExecutor`` with the default retry policy (``REQUEST_RETRY``); K client threads (default C + 4) each
  call ``OpenAIChatModel.complete(prompt)`` in a closed loop, every prompt distinct, until told to stop.
* A warm-up of W seconds (default 3: the limit starts at the cap and has to come down), then a measured
  window of M seconds (default 8). Throughput = successful completions the server counted in the window /
  the window's length; ``throughput_ratio`` = that / R (it can exceed 1 by at most B / (R * M), tokens the
  bucket saved up before the window: ``throughput_ratio_bound``). 429 share = 429s the server sent in the
  window / chat requests that reached it in the window. Both come from ``server.stats()`` deltas taken at
  the window's start and end: the server owns the bucket, so it is the ground truth. The executor's
  ``model_request_completed`` events in the window (counted by outcome by a small sink), its counters and
  the clients' own tallies are reported next to them as a cross-check, with the median send time of the
  successful attempts (latency plus HTTP overhead; R times it is the concurrency the rate allows, where
  the limit should settle). The controller's limit is sampled every 0.25 s from the main thread (a
  measurement: nothing waits on it), and its final snapshot is kept.
* Stop: an event tells the clients to stop, ``controller.shutdown()`` ends their admission waits, every
  client thread is joined, then the server is stopped and the transport closed. The executor's back-off
  sleep is ``stop.wait(delay)`` (as long as ``time.sleep`` during the run; cut short only by the stop, after
  the window), so a run never waits seconds for a client's back-off to end.

Why this is a fair test: the load is a closed loop with more clients than the cap, so there is always
demand for more than the server allows; any shortfall is the admission layer's (a limit held too low, idle
cooldowns) and any 429 is its overshoot. The server decides what counts: a success is a request it admitted
and answered, a 429 one it refused. Only the steady state is judged: the first seconds, when the limit
comes down from the cap and the initial burst runs out, are the warm-up (sampled in the timeline, not
judged). ``--quick`` (1 s + 2 s, for CI) is a smoke run: with the defaults the first rate-limit waves come
at about 1.3 s and 2 s, inside its window, so its 429 share is that of the descent, not of the steady state.

Medians over ``--runs`` (>= 5) independent runs (each a fresh server, controller and transport).

    python bench/run.py request_admission              # R=50 rps, 200 +- 40 ms, 3 s warm-up + 8 s window, 5 runs
    python bench/run.py request_admission --quick      # CI smoke run: 1 s warm-up + 2 s window
    python bench/run.py request_admission --window 30  # a longer window: the bucket's saved-up tokens matter less
"""

from __future__ import annotations

import argparse
import math
import statistics
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Any

from common import headline, print_headline, print_table, summarize

from threadsched.core.events import SchedulerEvent
from threadsched.mock.server import MockOpenAIServer
from threadsched.requests import (
    AdaptiveRequestAdmissionController,
    ProviderModelKey,
    RequestAdmissionConfig,
    RequestAdmissionError,
    RequestResourceKey,
)
from threadsched.requests.executor import ModelRequestError, ModelRequestExecutor
from threadsched.requests.http_provider import OpenAIChatModel, OpenAIChatTransport

TARGET_THROUGHPUT_RATIO_MIN = 0.9
TARGET_RATE_LIMITED_SHARE_MAX = 0.05
PROVIDER, MODEL = "mock", "bench-model"
CLIENT_THREAD_PREFIX = "bench-requests-client"
JOIN_TIMEOUT_S = 30.0
TABLE_COLUMNS = ["run", "ok/s", "ok/s / R", "429 share", "429s/attempts", "ok (events)", "send p50", "failed"]
TABLE_COLUMNS += ["limit", "final", "ceiling", "waves"]
_DEFAULT_CONFIG = RequestAdmissionConfig(caps={ProviderModelKey(PROVIDER, MODEL): 1})


@dataclass(frozen=True, slots=True)
class Params:
    """One configuration. ``cap``/``clients``/``burst`` None: derived (see ``resolved``)."""

    rps: float = 50.0
    burst: int | None = None  # None: the server's default, ceil(rps)
    latency_ms: float = 200.0
    jitter_ms: float = 40.0
    cap: int | None = None  # None: max(4, ceil(2 * rps * latency))
    clients: int | None = None  # None: cap + 4
    warmup_s: float = 3.0
    window_s: float = 8.0
    snapshot_interval_s: float = 0.25
    seed: int = 0
    # The controller knobs a user sets (RequestAdmissionConfig); defaults are the library's.
    decrease_factor: float = _DEFAULT_CONFIG.decrease_factor
    increase_step: int = _DEFAULT_CONFIG.increase_step
    successes_until_increase: int = _DEFAULT_CONFIG.successes_until_increase
    default_cooldown_s: float = _DEFAULT_CONFIG.default_cooldown_s
    ceiling_hold_s: float = _DEFAULT_CONFIG.ceiling_hold_s

    def resolved(self) -> Params:
        cap = self.cap if self.cap is not None else max(4, math.ceil(2 * self.rps * self.latency_ms / 1000.0))
        clients = self.clients if self.clients is not None else cap + 4
        burst = self.burst if self.burst is not None else max(1, math.ceil(self.rps))
        return replace(self, cap=cap, clients=clients, burst=burst)

    def admission_config(self) -> RequestAdmissionConfig:
        assert self.cap is not None, "resolve the params first"
        return RequestAdmissionConfig(
            caps={ProviderModelKey(PROVIDER, MODEL): self.cap},
            decrease_factor=self.decrease_factor,
            increase_step=self.increase_step,
            successes_until_increase=self.successes_until_increase,
            default_cooldown_s=self.default_cooldown_s,
            ceiling_hold_s=self.ceiling_hold_s,
        )


class AttemptLog:
    """An ``EventSink`` keeping (time, outcome, elapsed) of every ``model_request_completed`` event (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.completed: list[tuple[float, str, float]] = []

    def emit(self, event: SchedulerEvent) -> None:
        if event.kind == "model_request_completed":
            elapsed = event.diagnostics.get("elapsed_s")
            with self._lock:
                self.completed.append((event.captured_at, str(event.reason), float(elapsed or 0.0)))

    def between(self, start: float, end: float) -> tuple[Counter[str], list[float]]:
        """Outcome counts of the attempts completed in [start, end), and the send times of the successful ones."""
        with self._lock:
            window = [(outcome, elapsed) for at, outcome, elapsed in self.completed if start <= at < end]
        return Counter(outcome for outcome, _ in window), [elapsed for outcome, elapsed in window if outcome == "success"]


@dataclass
class ClientTally:
    calls_ok: int = 0
    calls_failed: int = 0  # ModelRequestError: the executor gave up (e.g. four 429s in a row)
    error: BaseException | None = None  # anything else: a bug, re-raised by run_once


def _client(model: OpenAIChatModel, index: int, run: int, stop: threading.Event, tally: ClientTally) -> None:
    call = 0
    while not stop.is_set():
        call += 1
        try:
            model.complete(f"bench requests run {run} client {index} call {call}: say something")
        except ModelRequestError:
            tally.calls_failed += 1
            continue
        except RequestAdmissionError as error:
            if not stop.is_set():  # else: controller.shutdown() at the end of the run
                tally.error = error
            return
        except BaseException as error:  # kept, and re-raised by run_once in the main thread
            tally.error = error
            return
        tally.calls_ok += 1


def _wait(stop: threading.Event, seconds: float) -> None:
    stop.wait(seconds)


def _limit_sample(controller: AdaptiveRequestAdmissionController, key: RequestResourceKey, t0: float) -> list[Any]:
    snap = controller.snapshot(key)
    return [
        round(time.monotonic() - t0, 3),
        snap.current_limit,
        snap.in_flight,
        snap.waiters,
        snap.cooldown_remaining > 0,
    ]


def _final_snapshot(controller: AdaptiveRequestAdmissionController, key: RequestResourceKey) -> dict[str, Any]:
    snap = controller.snapshot(key)
    return {
        "current_limit": snap.current_limit,
        "static_cap": snap.static_cap,
        "rate_limit_ceiling": snap.rate_limit_ceiling,
        "in_flight": snap.in_flight,
        "waiters": snap.waiters,
        "cooldown_remaining": snap.cooldown_remaining,
        "consecutive_rate_limits": snap.consecutive_rate_limits,
        "acquired_total": snap.acquired_total,
        "released_total": snap.released_total,
    }


def _delta(after: dict[str, Any], before: dict[str, Any], names: tuple[str, ...]) -> dict[str, int]:
    return {name: int(after[name]) - int(before[name]) for name in names}


def run_once(params: Params, run: int = 0) -> dict[str, Any]:
    """One run (module docstring): a fresh server, controller, transport and K clients; returns its sample."""
    p = params.resolved()
    assert p.cap is not None and p.clients is not None
    key = RequestResourceKey(PROVIDER, MODEL)
    server = MockOpenAIServer(rps=p.rps, burst=p.burst, latency_ms=p.latency_ms, jitter_ms=p.jitter_ms, seed=p.seed + run)
    log = AttemptLog()
    stop = threading.Event()
    controller = AdaptiveRequestAdmissionController(p.admission_config())
    transport = OpenAIChatTransport(server.url, api_key_env=None, max_connections=p.cap)
    # Back-off waits as long as time.sleep would, but ends at once when the run stops (no multi-second joins).
    executor = ModelRequestExecutor(controller, transport, events=log, sleep=lambda seconds: _wait(stop, seconds))
    model = OpenAIChatModel(executor, PROVIDER, MODEL)
    tallies = [ClientTally() for _ in range(p.clients)]
    threads = [
        threading.Thread(
            target=_client, args=(model, index, run, stop, tallies[index]), name=f"{CLIENT_THREAD_PREFIX}-{index}", daemon=True
        )
        for index in range(p.clients)
    ]
    timeline: list[list[Any]] = []
    try:
        server.start()
        t0 = time.monotonic()
        for thread in threads:
            thread.start()
        window_start_at, window_end_at = t0 + p.warmup_s, t0 + p.warmup_s + p.window_s
        next_sample = t0
        start_marks: dict[str, Any] | None = None
        while True:
            now = time.monotonic()
            if start_marks is None and now >= window_start_at:
                server_before, executor_before = server.stats(), dict(executor.statistics())
                controller_before = controller.statistics()
                start_marks = {"at": time.monotonic(), "calls_ok": sum(t.calls_ok for t in tallies)}
                start_marks["calls_failed"] = sum(t.calls_failed for t in tallies)
            if start_marks is not None and now >= window_end_at:
                server_after, executor_after = server.stats(), dict(executor.statistics())
                controller_after = controller.statistics()
                window_end = time.monotonic()
                calls_ok = sum(t.calls_ok for t in tallies) - start_marks["calls_ok"]
                calls_failed = sum(t.calls_failed for t in tallies) - start_marks["calls_failed"]
                timeline.append(_limit_sample(controller, key, t0))
                final = _final_snapshot(controller, key)
                break
            if now >= next_sample:
                timeline.append(_limit_sample(controller, key, t0))
                next_sample += p.snapshot_interval_s
            wake = min(next_sample, window_end_at if start_marks is not None else window_start_at)
            time.sleep(max(0.0, wake - time.monotonic()))
    finally:
        stop_started = time.monotonic()
        stop.set()
        controller.shutdown()  # clients waiting for a lease get RequestAdmissionError(shutdown) and leave
        try:
            for thread in threads:
                if thread.ident is not None:
                    thread.join(JOIN_TIMEOUT_S)
        finally:
            server.stop()
            transport.close()
        leaked = [thread.name for thread in threads if thread.is_alive()]
        stop_s = time.monotonic() - stop_started
    errors = [tally.error for tally in tallies if tally.error is not None]
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed; first: {errors[0]!r}") from errors[0]
    if leaked:
        raise RuntimeError(f"client threads still running after {JOIN_TIMEOUT_S}s: {leaked}")

    window_start = start_marks["at"]
    elapsed = window_end - window_start
    server_delta = _delta(server_after, server_before, ("requests", "ok", "rate_limited", "bad_requests", "errors"))
    server_window = {
        "attempts": server_delta["requests"],
        "ok": server_delta["ok"],
        "rate_limited": server_delta["rate_limited"],
        "other": server_delta["bad_requests"] + server_delta["errors"],
        "in_flight_start": server_before["in_flight"],
        "in_flight_end": server_after["in_flight"],
    }
    outcomes, send_times = log.between(window_start, window_end)
    events_window: dict[str, Any] = {
        "attempts": sum(outcomes.values()),
        "ok": outcomes.get("success", 0),
        "rate_limited": outcomes.get("rate_limited", 0),
        "other": sum(count for outcome, count in outcomes.items() if outcome not in ("success", "rate_limited")),
        "by_outcome": dict(outcomes),
        # send + answer time of the successful attempts, as the executor timed it (latency + HTTP overhead):
        # R x this is the concurrency the server's rate allows
        "success_send_s_median": statistics.median(send_times) if send_times else None,
    }
    in_window = [row for row in timeline if p.warmup_s <= row[0] <= p.warmup_s + p.window_s + p.snapshot_interval_s]
    limits = [row[1] for row in in_window] or [final["current_limit"]]
    throughput = server_window["ok"] / elapsed
    attempts = server_window["attempts"]
    return {
        "run": run,
        "window_s": elapsed,
        "throughput_rps": throughput,
        "throughput_ratio": throughput / p.rps,
        "rate_limited_share": server_window["rate_limited"] / attempts if attempts else 0.0,
        "server_window": server_window,
        "events_window": events_window,
        "events_rate_limited_share": events_window["rate_limited"] / events_window["attempts"]
        if events_window["attempts"]
        else 0.0,
        "client_window": {"calls_ok": calls_ok, "calls_failed": calls_failed},
        "executor_window": _delta(executor_after, executor_before, ("calls", "attempts", "retries", "succeeded", "failed")),
        "controller_window": _delta(
            controller_after, controller_before, ("rate_limit_waves", "limit_decreases", "limit_increases", "waits")
        ),
        "limit_window": {"min": min(limits), "max": max(limits), "mean": statistics.fmean(limits)},
        "final_snapshot": final,
        "server_total": server.stats(),
        "executor_total": dict(executor.statistics()),
        "limit_timeline": {"columns": ["t_s", "limit", "in_flight", "waiters", "cooling"], "rows": timeline},
        "threads_left": leaked,
        "stop_s": stop_s,
    }


def summarize_runs(params: Params, samples: list[dict[str, Any]], *, quick: bool = False) -> dict[str, Any]:
    """The JSON document of a set of runs of one configuration: medians, targets, verdict, samples."""
    p = params.resolved()
    ratio = summarize([sample["throughput_ratio"] for sample in samples])
    share = summarize([sample["rate_limited_share"] for sample in samples])
    meets_throughput = ratio["median"] >= TARGET_THROUGHPUT_RATIO_MIN
    meets_share = share["median"] <= TARGET_RATE_LIMITED_SHARE_MAX
    return {
        "description": "closed-loop load through adaptive request admission against a rate-limited mock server: "
        "throughput / R and 429 share of attempts after warm-up (server stats deltas)",
        "quick": quick,
        "runs": len(samples),
        "params": asdict(p),
        "target": {
            "throughput_ratio_min": TARGET_THROUGHPUT_RATIO_MIN,
            "rate_limited_share_max": TARGET_RATE_LIMITED_SHARE_MAX,
        },
        # what the server can give in a window at most: R per second plus a bucket that was full at its start
        "throughput_ratio_bound": 1.0 + (p.burst or 0) / (p.rps * p.window_s),
        "throughput_rps": summarize([sample["throughput_rps"] for sample in samples]),
        "throughput_ratio": ratio,
        "rate_limited_share": share,
        "final_limit": summarize([float(sample["final_snapshot"]["current_limit"]) for sample in samples]),
        "median_throughput_ratio": ratio["median"],
        "median_rate_limited_share": share["median"],
        "meets_throughput_target": meets_throughput,
        "meets_rate_limited_target": meets_share,
        "meets_target": meets_throughput and meets_share,
        "samples": samples,
    }


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Params()
    parser.add_argument("--rps", type=float, default=defaults.rps, help="server rate limit R (requests/s)")
    parser.add_argument("--burst", type=int, default=None, help="token bucket size (default: ceil(R))")
    parser.add_argument("--latency-ms", type=float, default=defaults.latency_ms, help="server latency L")
    parser.add_argument("--jitter-ms", type=float, default=defaults.jitter_ms, help="latency jitter (+-, uniform)")
    parser.add_argument("--cap", type=int, default=None, help="static cap C (default max(4, ceil(2*R*L)))")
    parser.add_argument("--clients", type=int, default=None, help="client threads K (default C + 4)")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds (default 3, quick 1)")
    parser.add_argument("--window", type=float, default=None, help="measured window seconds (default 8, quick 2)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="server latency seed (+ run index)")
    parser.add_argument("--decrease-factor", type=float, default=defaults.decrease_factor)
    parser.add_argument("--increase-step", type=int, default=defaults.increase_step)
    parser.add_argument("--successes-until-increase", type=int, default=defaults.successes_until_increase)
    parser.add_argument("--default-cooldown", type=float, default=defaults.default_cooldown_s, help="seconds")
    parser.add_argument("--ceiling-hold", type=float, default=defaults.ceiling_hold_s, help="seconds (0 disables)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    runs, defaults = args.runs, Params()
    params = Params(
        rps=args.rps,
        burst=args.burst,
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        cap=args.cap,
        clients=args.clients,
        warmup_s=args.warmup if args.warmup is not None else (1.0 if args.quick else defaults.warmup_s),
        window_s=args.window if args.window is not None else (2.0 if args.quick else defaults.window_s),
        seed=args.seed,
        decrease_factor=args.decrease_factor,
        increase_step=args.increase_step,
        successes_until_increase=args.successes_until_increase,
        default_cooldown_s=args.default_cooldown,
        ceiling_hold_s=args.ceiling_hold,
    ).resolved()
    print(
        f"requests: R={params.rps:g} rps, burst {params.burst}, latency {params.latency_ms:g} +- {params.jitter_ms:g} ms, "
        f"cap C={params.cap}, K={params.clients} clients, warm-up {params.warmup_s:g} s + window {params.window_s:g} s, "
        f"{runs} runs",
        flush=True,
    )
    samples: list[dict[str, Any]] = []
    for index in range(runs):
        sample = run_once(params, index)
        samples.append(sample)
        print(
            f"  run {index + 1}/{runs}: {sample['throughput_rps']:.1f} ok/s ({sample['throughput_ratio']:.3f} of R), "
            f"429 share {sample['rate_limited_share']:.4f}, final limit {sample['final_snapshot']['current_limit']}",
            flush=True,
        )
    payload = summarize_runs(params, samples, quick=args.quick)
    rows: list[list[Any]] = []
    for sample in samples:
        server, limit, final = sample["server_window"], sample["limit_window"], sample["final_snapshot"]
        rows.append(
            [
                sample["run"] + 1,
                sample["throughput_rps"],
                sample["throughput_ratio"],
                sample["rate_limited_share"],
                f"{server['rate_limited']}/{server['attempts']}",
                sample["events_window"]["ok"],
                _ms(sample["events_window"]["success_send_s_median"]),
                sample["client_window"]["calls_failed"],
                f"{limit['min']}-{limit['max']}",
                final["current_limit"],
                str(final["rate_limit_ceiling"]),
                sample["controller_window"]["rate_limit_waves"],
            ]
        )
    rows.append(
        [
            "median",
            payload["throughput_rps"]["median"],
            payload["throughput_ratio"]["median"],
            payload["rate_limited_share"]["median"],
            "",
            "",
            "",
            "",
            "",
            payload["final_limit"]["median"],
            "",
            "",
        ]
    )
    print_table(
        f"requests: window of {params.window_s:g} s after {params.warmup_s:g} s warm-up (server stats), R={params.rps:g} rps",
        TABLE_COLUMNS,
        rows,
    )
    window = f"{params.window_s:g} s window after {params.warmup_s:g} s warm-up"
    if args.quick:
        window += " (quick: the window holds the descent from the cap)"
    payload["headline"] = [
        headline(
            f"requests: throughput / R, R={params.rps:g} rps, {window}",
            payload["median_throughput_ratio"],
            TARGET_THROUGHPUT_RATIO_MIN,
            higher_is_better=True,
        ),
        headline(
            f"requests: 429s as % of attempts, {window}",
            100.0 * payload["median_rate_limited_share"],
            100.0 * TARGET_RATE_LIMITED_SHARE_MAX,
        ),
    ]
    print_headline("requests targets (medians)", payload["headline"])
    return payload
