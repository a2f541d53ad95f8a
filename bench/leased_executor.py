"""Throughput of the drop-in facade: no-op tasks through ``threadsched.LeasedExecutor`` vs. the stdlib
``ThreadPoolExecutor`` it replaces, in the same process.

Both get the same worker count W and the same loop (``throughput.run_pool``): the main thread submits every
task, then waits for all futures. Wall time runs from the first submit until every future is done
(construction and shutdown are reported apart). The implementations alternate run by run (and which goes
first alternates), medians over runs. Target: median(leased) <= 2.0 x median(threadpool). The baseline is
the plain pool, as in ``bench/throughput.py``: it is what code switching by one line used before.

    python bench/leased_executor.py                   # 50k tasks, W=8, 5 runs each
    python bench/leased_executor.py --quick           # 10k tasks (CI)
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
from collections.abc import Callable
from typing import Any

from common import base_parser, check_runs, compare_with_baseline
from throughput import DEFAULT_TASKS, run_pool

import threadsched

NAME = "leased_executor"
TARGET_RATIO = 2.0
QUICK_TASKS = 10_000

IMPLEMENTATIONS: dict[str, Callable[[int, int], dict[str, float]]] = {
    "leased": lambda tasks, workers: run_pool(threadsched.LeasedExecutor, tasks, workers, "leased"),
    "threadpool": lambda tasks, workers: run_pool(cf.ThreadPoolExecutor, tasks, workers, "threadpool"),
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument(
        "--tasks", type=int, default=None, help=f"no-op tasks per run (default {DEFAULT_TASKS}; {QUICK_TASKS} with --quick)"
    )
    parser.add_argument("--workers", "-w", type=int, default=8, help="worker threads W for both (default 8)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TASKS} tasks (CI smoke run)")
    args = parser.parse_args(argv)
    runs = check_runs(args.runs)
    tasks = args.tasks or (QUICK_TASKS if args.quick else DEFAULT_TASKS)
    workers = args.workers
    return compare_with_baseline(
        NAME,
        {name: functools.partial(run, workers=workers) for name, run in IMPLEMENTATIONS.items()},
        size=tasks,
        unit="tasks",
        runs=runs,
        target=TARGET_RATIO,
        title=f"{tasks} no-op tasks, W={workers}, medians of {runs} interleaved runs",
        params={
            "description": "no-op tasks, first submit -> all futures done; LeasedExecutor vs ThreadPoolExecutor",
            "quick": args.quick,
            "tasks": tasks,
            "workers": workers,
        },
        out=args.out,
    )


if __name__ == "__main__":
    main()
