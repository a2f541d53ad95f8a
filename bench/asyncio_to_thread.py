"""``asyncio.to_thread`` throughput: ``LeasedExecutor(W)`` as the loop's default executor vs. ``ThreadPoolExecutor(W)``.

Each run is one ``asyncio.run``: the pool under test is installed with ``loop.set_default_executor`` before
the first call, then ``--calls`` ``asyncio.to_thread(noop)`` calls are awaited in batches of ``--batch``
(one ``asyncio.gather`` per batch, so at most one batch of coroutines, tasks and futures is alive at a time
and memory stays bounded however many calls there are). The stock default executor asyncio would build
itself is a ``ThreadPoolExecutor`` with ``min(32, cpu_count + 4)`` threads; the baseline here is set
explicitly to ``ThreadPoolExecutor(W)`` so both sides get the same W. Wall and process CPU time run from
the first call to the last result; ``asyncio.run``'s exit (``shutdown_default_executor``) is reported
apart. The two alternate run by run, medians over runs. Target: median(leased) <= 1.5 x median(threadpool).

    python bench/run.py asyncio_to_thread             # 20k calls in batches of 1000, W=8, 5 runs each
    python bench/run.py asyncio_to_thread --quick     # 2k calls (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import functools
import time
from collections.abc import Callable
from typing import Any

from common import compare_with_baseline
from throughput import noop

import threadsched

TARGET_RATIO = 1.5
DEFAULT_CALLS = 20_000
QUICK_CALLS = 2_000
DEFAULT_BATCH = 1_000
DEFAULT_WORKERS = 8

PoolFactory = Callable[..., cf.ThreadPoolExecutor]


def run_to_thread(make: PoolFactory, calls: int, workers: int, batch: int, label: str) -> dict[str, float]:
    timings: dict[str, float] = {}

    async def main() -> None:
        asyncio.get_running_loop().set_default_executor(make(workers, thread_name_prefix=f"bench-{label}"))
        c1, t1 = time.process_time(), time.perf_counter()
        for start in range(0, calls, batch):
            results = await asyncio.gather(*(asyncio.to_thread(noop) for _ in range(min(batch, calls - start))))
            if any(result is not None for result in results):
                raise RuntimeError(f"{label}: asyncio.to_thread(noop) returned something other than None")
        t2, c2 = time.perf_counter(), time.process_time()
        timings.update(wall=t2 - t1, cpu=c2 - c1, start=t1)

    t0 = time.perf_counter()
    asyncio.run(main())  # a failed call raises out of gather, and so out of here
    t3 = time.perf_counter()
    return {
        "wall": timings["wall"],
        "cpu": timings["cpu"],
        "construct": timings["start"] - t0,
        "shutdown": t3 - timings["start"] - timings["wall"],
    }


IMPLEMENTATIONS: dict[str, PoolFactory] = {
    "leased": threadsched.LeasedExecutor,
    "threadpool": cf.ThreadPoolExecutor,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--calls", type=int, default=None, help=f"to_thread calls per run (default {DEFAULT_CALLS}; {QUICK_CALLS} with --quick)"
    )
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help=f"calls per asyncio.gather (default {DEFAULT_BATCH})")
    parser.add_argument(
        "--workers", "-w", type=int, default=DEFAULT_WORKERS, help=f"worker threads W for both (default {DEFAULT_WORKERS})"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    calls = args.calls or (QUICK_CALLS if args.quick else DEFAULT_CALLS)
    workers, batch = args.workers, args.batch
    if calls < 1 or batch < 1 or workers < 1:
        raise SystemExit(f"--calls, --batch and --workers must be >= 1, got {calls}, {batch}, {workers}")
    return compare_with_baseline(
        {
            name: functools.partial(run_to_thread, make, workers=workers, batch=batch, label=name)
            for name, make in IMPLEMENTATIONS.items()
        },
        size=calls,
        unit="calls",
        runs=args.runs,
        target=TARGET_RATIO,
        title=f"{calls} asyncio.to_thread(noop) calls in gathers of {batch}, W={workers}, medians of {args.runs} runs",
        metric=f"asyncio.to_thread, LeasedExecutor / ThreadPoolExecutor default executor wall, {calls} calls, W={workers}",
        extra_phases=("shutdown",),
        params={
            "description": (
                "asyncio.to_thread(noop) calls awaited in batches (one gather each), first call -> last result; "
                "LeasedExecutor vs ThreadPoolExecutor, each set as the loop's default executor with the same W"
            ),
            "quick": args.quick,
            "calls": calls,
            "batch": batch,
            "workers": workers,
        },
    )
