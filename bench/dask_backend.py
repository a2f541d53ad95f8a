"""Dask backend: the built-in demo recipe on a two-worker ``LocalCluster`` vs. local threads.

Both sides run ``run_recipe`` on the demo recipe as shipped (mock latencies with jitter and retryable
failures; ``records`` from ``--records``, default the recipe's 200) with the same worker count (``--workers``,
default the recipe's ``max_workers``): the threads side on the engine's own thread pool, the Dask side with
``executor=DaskExecutor(client)`` on a ``LocalCluster`` of two worker processes on loopback with
``workers / 2`` threads each, started once before the timed runs (its start-up time is reported apart).
Runs alternate between the sides (which goes first alternates too); medians of ``--runs`` (>= 5) runs. Every
run's output hash must equal ``run_reference``'s, or the benchmark fails. No target: the numbers say what
shipping each task to another process costs on this recipe (the mock latencies are 10-30 ms per call).

    python bench/run.py dask_backend               # 200 rows, 5 runs per side (needs threadsched[dask])
    python bench/run.py dask_backend --records 400 --runs 7
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from common import print_table, summarize
from engine import demo_recipe

from threadsched.backends.dask import DaskExecutor, require_distributed
from threadsched.engine import Recipe, run_recipe, run_reference

N_WORKERS = 2


def _timed_run(recipe: Recipe, out: Path, workers: int, executor: DaskExecutor | None) -> tuple[float, str]:
    started = time.perf_counter()
    result = run_recipe(recipe, out, workers=workers, executor=executor)
    elapsed = time.perf_counter() - started
    if result.hidden_waiters or result.final_active_leases:
        raise SystemExit(f"unhealthy run: hidden waiters {result.hidden_waiters}, leases {result.final_active_leases}")
    return elapsed, result.output_hash


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, default=None, help="rows of the demo recipe (default: the recipe's 200)")
    parser.add_argument("--workers", "-w", type=int, default=None, help="workers on both sides (default: run.max_workers)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    runs = args.runs
    recipe = demo_recipe(args.records)
    workers = args.workers or recipe.run.max_workers
    threads_per_worker = -(-workers // N_WORKERS)
    distributed = require_distributed()
    samples: dict[str, list[float]] = {"threads": [], "dask": []}
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        root = Path(tmp)
        reference = run_reference(recipe, root / "reference").output_hash
        started = time.perf_counter()
        cluster = distributed.LocalCluster(
            n_workers=N_WORKERS,
            threads_per_worker=threads_per_worker,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.CRITICAL,
        )
        client = distributed.Client(cluster)
        startup = time.perf_counter() - started
        try:
            executor = DaskExecutor(client)
            _timed_run(recipe, root / "warm-up", workers, executor)  # workers import and compile once
            for index in range(runs):
                order = ("threads", "dask") if index % 2 == 0 else ("dask", "threads")
                for side in order:
                    elapsed, output_hash = _timed_run(
                        recipe, root / f"{side}-{index}", workers, executor if side == "dask" else None
                    )
                    if output_hash != reference:
                        raise SystemExit(f"{side} run {index}: output hash {output_hash} != reference {reference}")
                    samples[side].append(elapsed)
        finally:
            client.close()
            cluster.close()
    threads, dask = summarize(samples["threads"]), summarize(samples["dask"])
    ratio = dask["median"] / threads["median"]
    payload: dict[str, Any] = {
        "recipe": "demo (builtin)",
        "records": recipe.run.records,
        "workers": workers,
        "cluster": {"n_workers": N_WORKERS, "threads_per_worker": threads_per_worker, "processes": True},
        "cluster_startup_s": startup,
        "threads": threads,
        "dask": dask,
        "dask_over_threads": ratio,
        "output_hash": reference,
        "hashes_equal": True,
    }
    print_table(
        f"demo recipe, {recipe.run.records} rows, {workers} workers, medians of {runs} runs",
        ["side", "median s", "min s", "max s"],
        [
            ["local threads", threads["median"], threads["min"], threads["max"]],
            [f"LocalCluster {N_WORKERS}x{threads_per_worker}", dask["median"], dask["min"], dask["max"]],
        ],
    )
    print(f"dask / threads = {ratio:.2f}; cluster start-up {startup:.2f} s (not timed); output hashes equal the reference")
    return payload
