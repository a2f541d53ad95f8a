"""Throughput: no-op tasks through ``threadsched.Scheduler`` (or ``LeasedExecutor``) vs. a plain ``ThreadPoolExecutor``.

Two benchmarks of one workload, each pair with the same worker count W in the same process:

* ``scheduler``: ``Scheduler(max_workers=W)``; the main thread submits every task, then waits for
  all futures (``concurrent.futures.wait``);
* ``baseline``: ``ThreadPoolExecutor(W)``, used as code without a scheduler would use it: the main thread
  submits every task (no gate: the pool queues what its W threads cannot run yet), keeps the futures in a
  list and waits for all of them;
* ``leased_executor``: the drop-in facade ``LeasedExecutor(W)`` against the ``ThreadPoolExecutor(W)`` it
  replaces, through the same loop (``run_pool``): what code switching by one line used before.

The measured wall time runs from the first submit until every future is done (construction and
shutdown are timed separately and reported, not included). The process CPU time (all threads) over
the same window is reported too: on a busy machine it is the steadier number. The two implementations
alternate run by run, and which goes first alternates too, so they share the machine's noise. Targets:
median(scheduler) <= 2.0 x median(baseline), the price of leases, fair queues and evidence per task, and
median(leased) <= 2.0 x median(threadpool).

    python bench/run.py throughput                  # 50k tasks, W=8, 5 runs each
    python bench/run.py throughput --tasks 20000 --workers 4
    python bench/run.py leased_executor --quick     # 10k tasks (CI)
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import functools
import time
from collections.abc import Callable
from typing import Any

from common import compare_with_baseline

import threadsched

TARGET_RATIO = 2.0
DEFAULT_TASKS = 50_000
QUICK_TASKS = {"throughput": 20_000, "leased_executor": 10_000}


def noop() -> None:
    return None


def _check(futures: list[cf.Future[Any]], label: str) -> None:
    bad = [future for future in futures if not future.done() or future.cancelled() or future.exception() is not None]
    if bad:
        raise RuntimeError(f"{label}: {len(bad)} of {len(futures)} futures did not succeed, first: {bad[0]!r}")


def run_scheduler(tasks: int, workers: int, task: Callable[[], Any] = noop) -> dict[str, float]:
    t0 = time.perf_counter()
    scheduler = threadsched.Scheduler(max_workers=workers, name="bench")
    submit = scheduler.submit
    c1, t1 = time.process_time(), time.perf_counter()
    futures = [submit(task) for _ in range(tasks)]
    t2 = time.perf_counter()
    cf.wait(futures)
    t3, c3 = time.perf_counter(), time.process_time()
    report = scheduler.shutdown(wait=True)
    t4 = time.perf_counter()
    _check(futures, "scheduler")
    if not report.clean or report.active_leases:
        raise RuntimeError(f"scheduler shutdown was not clean: {report!r}")
    return {"wall": t3 - t1, "cpu": c3 - c1, "submit": t2 - t1, "construct": t1 - t0, "shutdown": t4 - t3}


def run_pool(
    make: Callable[[int], cf.Executor], tasks: int, workers: int, label: str, task: Callable[[], Any] = noop
) -> dict[str, float]:
    """``tasks`` calls of ``task`` (default: a no-op) submitted to ``make(workers)`` at once, then one ``wait``
    for all their futures."""
    t0 = time.perf_counter()
    executor = make(workers)
    submit = executor.submit
    c1, t1 = time.process_time(), time.perf_counter()
    futures = [submit(task) for _ in range(tasks)]
    t2 = time.perf_counter()
    cf.wait(futures)
    t3, c3 = time.perf_counter(), time.process_time()
    executor.shutdown(wait=True)
    t4 = time.perf_counter()
    _check(futures, label)
    return {"wall": t3 - t1, "cpu": c3 - c1, "submit": t2 - t1, "construct": t1 - t0, "shutdown": t4 - t3}


def _stdlib_pool(workers: int) -> cf.ThreadPoolExecutor:
    return cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bench-baseline")


def run_baseline(tasks: int, workers: int) -> dict[str, float]:
    return run_pool(_stdlib_pool, tasks, workers, "baseline")


IMPLEMENTATIONS: dict[str, Callable[[int, int], dict[str, float]]] = {
    "scheduler": run_scheduler,
    "baseline": run_baseline,
}
LEASED_IMPLEMENTATIONS: dict[str, Callable[[int, int], dict[str, float]]] = {
    "leased": lambda tasks, workers: run_pool(threadsched.LeasedExecutor, tasks, workers, "leased"),
    "threadpool": lambda tasks, workers: run_pool(cf.ThreadPoolExecutor, tasks, workers, "threadpool"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tasks", type=int, default=None, help=f"no-op tasks per run (default {DEFAULT_TASKS}; fewer with --quick)"
    )
    parser.add_argument("--workers", "-w", type=int, default=8, help="worker threads W for both (default 8)")


def _compare(
    args: argparse.Namespace,
    name: str,
    implementations: dict[str, Callable[[int, int], dict[str, float]]],
    description: str,
    extra_phases: tuple[str, ...] = (),
) -> dict[str, Any]:
    tasks = args.tasks or (QUICK_TASKS[name] if args.quick else DEFAULT_TASKS)
    candidate, baseline = implementations
    return compare_with_baseline(
        {impl: functools.partial(runner, workers=args.workers) for impl, runner in implementations.items()},
        size=tasks,
        unit="tasks",
        runs=args.runs,
        target=TARGET_RATIO,
        title=f"{tasks} no-op tasks, W={args.workers}, medians of {args.runs} interleaved runs",
        metric=f"{name}: {candidate} / {baseline} wall, {tasks} no-op tasks, W={args.workers}",
        extra_phases=extra_phases,
        params={"description": description, "quick": args.quick, "tasks": tasks, "workers": args.workers},
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    description = "no-op tasks, first submit -> all futures done; Scheduler vs plain ThreadPoolExecutor"
    return _compare(args, "throughput", IMPLEMENTATIONS, description, ("submit", "shutdown"))


def run_leased_executor(args: argparse.Namespace) -> dict[str, Any]:
    description = "no-op tasks, first submit -> all futures done; LeasedExecutor vs ThreadPoolExecutor"
    return _compare(args, "leased_executor", LEASED_IMPLEMENTATIONS, description)
