"""Harness scenario ``cross_provider_cooldown``: provider A answers 429 for a while, provider B is healthy.

Target: B's throughput (completed tasks/s) while A is throttled, under ``ProviderAwarePolicy``,
is >= 90 % of B's throughput when B runs alone. One run of one mode:

* Two ``MockOpenAIServer``s over real HTTP on 127.0.0.1, both answering after L ms (default 20). A is built
  with ``rps=1, burst=1``: after its first request it answers nearly everything with 429 and a
  ``retry-after-ms`` of up to 1 s, so request admission halves A's limit (down to 1) and keeps A in cooldown
  most of the time — "throttled for a while" is the whole run here, and the measured window lies inside
  it (the mock's rate cannot be changed while it serves; a server that 429s for the whole run is the
  harshest, and simplest, version of the phase). B has no rate limit.
* One ``AdaptiveRequestAdmissionController`` with both provider/models, cap C each (default 6, library AIMD
  defaults), one ``OpenAIChatTransport`` + ``ModelRequestExecutor`` (default retries: 4 attempts, back-off
  >= Retry-After) per provider — the engine's shape for ``kind = "openai"`` providers.
* A ``Scheduler`` with W workers (default 8) and resources ``llm:A/m`` and ``llm:B/m``, hard limit C each
  (the engine's default: a provider's ``max_parallel_requests``). W < 2C, so the providers compete for
  workers. Each task is one ``OpenAIChatModel.complete`` call through the executor (group ``A`` or ``B``,
  equal weights). A feeder thread per provider keeps Q (default 2W) of its tasks outstanding (queued or
  running): a steady supply of ready work for both.
* Modes, interleaved in every run (rotating order, fresh servers/controllers each): ``strict``
  (``StrictFairPolicy``: fair alternation, so A tasks take workers and then sit in request admission or
  back-off), ``provider_aware`` (``provider_aware_policy_for(controller)``), ``b_alone`` (only B's feeder).
* Two windows, B's completed tasks counted from their completion times: the *onset* (the first
  ``--warmup-s`` seconds, default 6: A's first 429 wave) and the *steady* window after it (``--window-s``,
  default 5), which the target judges. Why two: at the onset A's limit is still its cap, so up to C A tasks
  are admitted before A has answered anything; their 429s then keep those workers busy through the
  executor's in-task back-offs (up to 4 attempts, >= Retry-After each: several seconds) — no admission
  policy can take back a running task. Once those drain, provider-aware admits A tasks only outside A's
  cooldown and within A's adaptive limit (1), so B has the remaining workers. Both ratios are reported.
* A sampler (every 20 ms, a measurement only, in the steady window) records request waiters per provider
  and the workers leased to A tasks; a request-event sink counts
  ``request_wait_started`` per provider (every time a request had to queue in request admission).
* Stop: feeders stop, outstanding futures are cancelled (their tokens end executor back-offs), the request
  controller is shut down (ends admission waits), the scheduler shut down, servers and transports closed.

Harness implementations: ``threadsched`` (strict), ``threadsched[provider_aware]`` and ``b_alone``; knobs
``workers``, ``latency_ms`` and ``seed``. Each iteration costs 3 x (onset + window) + teardown (~35 s by
default; quick 0.5 s + 1 s). Target (reported, not a gate): median B tasks/s under provider_aware / median B
tasks/s alone >= 0.9, in the steady window.

    python bench/run.py cross_provider_cooldown            # 5 iterations
    python bench/run.py cross_provider_cooldown --quick
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Any

from harness_impls import STRICT, Sample, policy_impl
from harness_policies import Stats, Workload, finite, p50, run_lengths, target
from scenarios import Knobs

from threadsched import Scheduler, StrictFairPolicy
from threadsched.core.events import SchedulerEvent
from threadsched.core.policy import TaskAdmissionPolicy
from threadsched.mock.server import MockOpenAIServer
from threadsched.policies.provider_aware import provider_aware_policy_for
from threadsched.requests import (
    AdaptiveRequestAdmissionController,
    ProviderModelKey,
    RequestAdmissionConfig,
    RequestResourceKey,
)
from threadsched.requests.executor import ModelRequestExecutor
from threadsched.requests.http_provider import OpenAIChatModel, OpenAIChatTransport

TARGET_RATIO_MIN = 0.9
MODES = ("strict", "provider_aware", "b_alone")
PROVIDERS = ("A", "B")
MODEL = "m"
FEEDER_THREAD_PREFIX = "bench-cross-provider-feeder"
SAMPLE_INTERVAL_S = 0.02
SHUTDOWN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Params:
    workers: int = 8
    cap: int = 6
    latency_ms: float = 20.0
    a_rps: float = 1.0
    queue_depth: int | None = None  # outstanding tasks per provider (default 2 * workers)
    warmup_s: float = 6.0
    window_s: float = 5.0
    seed: int = 0

    @property
    def depth(self) -> int:
        return self.queue_depth if self.queue_depth is not None else 2 * self.workers


class _RequestWaits:
    """Request-event sink: ``request_wait_started`` counted per provider."""

    def __init__(self) -> None:
        self.waits: Counter[str] = Counter()
        self._lock = threading.Lock()

    def emit(self, event: SchedulerEvent) -> None:
        if event.kind == "request_wait_started" and event.resources:
            provider = next(iter(event.resources)).partition("/")[0]
            with self._lock:
                self.waits[provider] += 1


def _feeder(submit: Any, depth: int, stop: threading.Event, outstanding: set[Future[Any]], lock: threading.Lock) -> None:
    """Keep ``depth`` tasks outstanding: a slot is freed by each task's done-callback."""
    slots = threading.Semaphore(depth)

    def done(future: Future[Any]) -> None:
        with lock:
            outstanding.discard(future)
        slots.release()

    while not stop.is_set():
        if not slots.acquire(timeout=0.05):
            continue
        if stop.is_set():
            break
        future = submit()
        with lock:
            outstanding.add(future)
        future.add_done_callback(done)


def run_mode(params: Params, mode: str, run: int = 0) -> dict[str, Any]:
    """One run of one mode; returns B's window throughput and the pressure evidence."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    servers = {
        "A": MockOpenAIServer(rps=params.a_rps, burst=1, latency_ms=params.latency_ms, seed=params.seed + run, provider="A"),
        "B": MockOpenAIServer(rps=None, latency_ms=params.latency_ms, seed=params.seed + run, provider="B"),
    }
    sink = _RequestWaits()
    caps = {ProviderModelKey(p, MODEL): params.cap for p in PROVIDERS}
    requests = AdaptiveRequestAdmissionController(RequestAdmissionConfig(caps=caps), events=sink)
    transports: dict[str, OpenAIChatTransport] = {}
    stop = threading.Event()
    outstanding: set[Future[Any]] = set()
    lock = threading.Lock()
    feeders: list[threading.Thread] = []
    completions: dict[str, list[float]] = {p: [] for p in PROVIDERS}
    failures: Counter[str] = Counter()
    samples: list[tuple[int, int, int]] = []  # (A waiters, B waiters, workers leased to A tasks)
    policy: TaskAdmissionPolicy = provider_aware_policy_for(requests) if mode == "provider_aware" else StrictFairPolicy()
    limits = {f"llm:{p}/{MODEL}": params.cap for p in PROVIDERS}
    scheduler = Scheduler(params.workers, resource_limits=limits, policy=policy, name=f"bench-xp-{mode}")
    try:
        for server in servers.values():
            server.start()
        models: dict[str, OpenAIChatModel] = {}
        for p in PROVIDERS:
            transports[p] = OpenAIChatTransport(servers[p].url, timeout_s=30.0, max_connections=params.cap)
            executor = ModelRequestExecutor(requests, transports[p], events=sink, sequence=requests.sequence)
            models[p] = OpenAIChatModel(executor, p, MODEL)
        prompts = itertools.count()

        def call(provider: str) -> None:
            try:
                models[provider].complete(f"prompt {next(prompts)}", group=provider)
            except Exception:
                failures[provider] += 1  # Counter += under the GIL: a bench tally, good enough
                raise
            completions[provider].append(time.monotonic())

        providers = ("B",) if mode == "b_alone" else PROVIDERS
        for p in providers:
            group = scheduler.group(p, resources={f"llm:{p}/{MODEL}": 1})
            thread = threading.Thread(
                target=_feeder,
                args=(lambda g=group, p=p: g.submit(call, p), params.depth, stop, outstanding, lock),
                name=f"{FEEDER_THREAD_PREFIX}-{p}",
                daemon=True,
            )
            feeders.append(thread)
            thread.start()
        keys = {p: RequestResourceKey(p, MODEL) for p in PROVIDERS}
        start = time.monotonic()
        window_start, window_end = start + params.warmup_s, start + params.warmup_s + params.window_s
        while (now := time.monotonic()) < window_end:
            if now >= window_start:
                leased = scheduler.snapshot().admission.leased_resources.get(f"llm:A/{MODEL}", 0)
                samples.append((requests.snapshot(keys["A"]).waiters, requests.snapshot(keys["B"]).waiters, leased))
            time.sleep(SAMPLE_INTERVAL_S)
        final = {p: asdict(requests.snapshot(keys[p])) for p in PROVIDERS}
    finally:
        stop.set()
        for thread in feeders:
            thread.join(SHUTDOWN_TIMEOUT_S)
        with lock:
            pending = list(outstanding)
        for future in pending:
            future.cancel()  # a running task's token is set: its executor back-off ends at once
        requests.shutdown()
        report = scheduler.shutdown(wait=True, cancel_futures=True, timeout=SHUTDOWN_TIMEOUT_S)
        for transport in transports.values():
            transport.close()
        for server in servers.values():
            server.stop()
    b_done = sum(window_start <= t < window_end for t in completions["B"])
    b_onset = sum(start <= t < window_start for t in completions["B"])
    a_done = sum(window_start <= t < window_end for t in completions["A"])
    waiters_a = [s[0] for s in samples] or [0]
    waiters_b = [s[1] for s in samples] or [0]
    leased_a = [s[2] for s in samples] or [0]
    return {
        "mode": mode,
        "run": run,
        "b_tasks_per_s": b_done / params.window_s,
        "b_tasks_per_s_onset": b_onset / params.warmup_s,
        "a_tasks_per_s": a_done / params.window_s,
        "b_request_waiters_max": max(waiters_b),
        "b_request_waiters_mean": statistics.fmean(waiters_b),
        "a_request_waiters_max": max(waiters_a),
        "a_request_waiters_mean": statistics.fmean(waiters_a),
        "workers_leased_to_a_mean": statistics.fmean(leased_a),
        "request_waits_started": {p: sink.waits.get(p, 0) for p in PROVIDERS},
        "task_failures": dict(failures),
        "server_stats": {p: servers[p].stats() for p in PROVIDERS},
        "final_request_snapshots": final,
        "shutdown_clean": report.clean,
    }


# -- the harness workload ------------------------------------------------------------------------------

IMPL_MODES = {policy_impl(STRICT): "strict", policy_impl("provider_aware"): "provider_aware", "b_alone": "b_alone"}


def make_params(knobs: Knobs, quick: bool, overrides: Mapping[str, Any]) -> Params:
    lengths = run_lengths(quick, overrides, (6.0, 5.0), (0.5, 1.0))
    return Params(workers=knobs.workers, latency_ms=knobs.latency_ms, seed=knobs.seed, **lengths)


def run_sample(impl: str, params: Params, index: int) -> Sample:
    if impl not in IMPL_MODES:
        raise ValueError(f"cross_provider_cooldown: unknown implementation {impl!r} (known: {', '.join(IMPL_MODES)})")
    started = time.perf_counter()
    found = run_mode(params, IMPL_MODES[impl], max(index, 0))
    wall = time.perf_counter() - started
    keys = ("b_tasks_per_s", "b_tasks_per_s_onset", "a_tasks_per_s", "b_request_waiters_max", "b_request_waiters_mean")
    keys += ("a_request_waiters_max", "a_request_waiters_mean", "workers_leased_to_a_mean")
    metrics: dict[str, Any] = {
        "wall_s": wall,
        **{key: found[key] for key in keys},
        "b_request_waits_started": found["request_waits_started"]["B"],
        "a_request_waits_started": found["request_waits_started"]["A"],
        "task_failures": sum(found["task_failures"].values()),
        "shutdown_clean": int(bool(found["shutdown_clean"])),
        "output_hash": "",
    }
    return Sample(impl, finite(metrics))


def report(by_impl: Stats, params: Params) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    def ratios(metric: str) -> dict[str, float | None]:
        alone = p50(by_impl, "b_alone", metric)
        result: dict[str, float | None] = {}
        for impl in IMPL_MODES:
            ours = p50(by_impl, impl, metric)
            if impl != "b_alone" and ours is not None:
                result[impl] = ours / alone if alone else None
        return result

    steady, onset = ratios("b_tasks_per_s"), ratios("b_tasks_per_s_onset")
    section = {
        "description": "B's completed tasks/s (median over iterations) relative to B alone; steady window and onset",
        "window_s": params.window_s,
        "onset_s": params.warmup_s,
        "b_alone_tasks_per_s": p50(by_impl, "b_alone", "b_tasks_per_s"),
        "b_throughput_ratio_vs_alone": steady,
        "b_throughput_ratio_vs_alone_onset": onset,
    }
    impl = policy_impl("provider_aware")
    if impl not in by_impl or "b_alone" not in by_impl:
        return section, []
    value, strict = steady.get(impl), steady.get(policy_impl(STRICT))

    def fmt(number: float | None) -> str:
        return "-" if number is None else f"{number:.3f}"

    detail = (
        f"B tasks/s in the steady window (median): provider_aware / B alone = {fmt(value)} (target >= {TARGET_RATIO_MIN:g}); "
        f"strict / B alone = {fmt(strict)}; onset: provider_aware {fmt(onset.get(impl))}, "
        f"strict {fmt(onset.get(policy_impl(STRICT)))}"
    )
    return section, [target("provider_aware_b_throughput_at_least_90pct_of_b_alone", value, ">=", TARGET_RATIO_MIN, detail)]


WORKLOAD = Workload(
    tuple(IMPL_MODES),
    ("b_tasks_per_s", "b_tasks_per_s_onset", "a_tasks_per_s", "workers_leased_to_a_mean", "b_request_waiters_mean"),
    make_params,
    run_sample,
    report,
)
