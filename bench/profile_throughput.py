"""Where the throughput benchmark's CPU goes, by thread role (main / dispatcher / worker).

Runs the scheduler side of ``bench/throughput.py`` (or the baseline, ``--baseline``) once after a warm-up
and reports each role's CPU time per task (``time.thread_time`` at the end of every thread). With
``--cprofile`` every thread also runs under its own ``cProfile.Profile``; the stats are merged per
role, written to ``<results-dir>/profile_<role>.prof`` and the top functions by self time are printed
(cProfile inflates call-heavy code; the CPU split without it is the honest one).

    python bench/run.py profile_throughput --tasks 50000
    python bench/run.py profile_throughput --tasks 20000 --cprofile
    py-spy record --threads --gil --format raw -o /tmp/spy.txt -- python bench/run.py profile_throughput

One run, no baseline and no target (``--runs`` does not apply): the JSON holds the CPU split.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import pstats
import threading
import time
from typing import Any

import throughput


def role_of(thread: threading.Thread) -> str:
    name = thread.name
    if name.endswith("-dispatcher"):
        return "dispatcher"
    if "worker" in name or name.startswith("bench-baseline"):
        return "worker"
    return name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    throughput.add_arguments(parser)
    parser.add_argument("--baseline", action="store_true", help="profile the plain ThreadPoolExecutor baseline instead")
    parser.add_argument("--cprofile", action="store_true", help="also run every thread under cProfile")
    parser.add_argument("--top", type=int, default=20, help="functions to print per role with --cprofile")


def run(args: argparse.Namespace) -> dict[str, Any]:
    tasks = args.tasks or (throughput.QUICK_TASKS["throughput"] if args.quick else throughput.DEFAULT_TASKS)
    once = throughput.run_baseline if args.baseline else throughput.run_scheduler
    once(min(tasks, 2_000), args.workers)  # warm-up, not recorded

    cpu: dict[str, float] = collections.defaultdict(float)
    profiles: dict[str, list[cProfile.Profile]] = collections.defaultdict(list)
    original_run = threading.Thread.run

    def instrumented_run(self: threading.Thread) -> None:
        profile = cProfile.Profile() if args.cprofile else None
        if profile is not None:
            profiles[role_of(self)].append(profile)
            profile.enable()
        try:
            original_run(self)
        finally:
            if profile is not None:
                profile.disable()
            cpu[role_of(self)] += time.thread_time()

    threading.Thread.run = instrumented_run  # type: ignore[method-assign]
    main_profile = cProfile.Profile() if args.cprofile else None
    start = time.thread_time()
    if main_profile is not None:
        main_profile.enable()
    try:
        timings = once(tasks, args.workers)
    finally:
        if main_profile is not None:
            main_profile.disable()
        threading.Thread.run = original_run  # type: ignore[method-assign]
    cpu["main"] = time.thread_time() - start
    if main_profile is not None:
        profiles["main"].append(main_profile)

    label = "baseline" if args.baseline else "scheduler"
    print(f"{label}: {tasks} tasks, W={args.workers}: wall {timings['wall']:.3f} s, process cpu {timings['cpu']:.3f} s")
    for role, seconds in sorted(cpu.items(), key=lambda entry: -entry[1]):
        print(f"  {role:10s} {seconds:7.3f} s CPU  {seconds / tasks * 1e6:7.1f} us/task")
    payload = {
        "description": "CPU time by thread role of one throughput run (time.thread_time at each thread's end)",
        "implementation": label,
        "tasks": tasks,
        "workers": args.workers,
        "timings_seconds": timings,
        "cpu_seconds_by_role": dict(cpu),
        "cpu_us_per_task_by_role": {role: seconds / tasks * 1e6 for role, seconds in cpu.items()},
    }
    if not args.cprofile:
        return payload
    args.results_dir.mkdir(parents=True, exist_ok=True)
    for role, role_profiles in profiles.items():
        stats = pstats.Stats(role_profiles[0])
        for profile in role_profiles[1:]:
            stats.add(profile)
        path = args.results_dir / f"profile_{role}.prof"
        stats.dump_stats(path)
        buffer = io.StringIO()
        pstats.Stats(str(path), stream=buffer).strip_dirs().sort_stats("tottime").print_stats(args.top)
        lines = [line for line in buffer.getvalue().splitlines() if line.strip()][4:]
        print(f"\n## {role} ({len(role_profiles)} thread(s)), by self time; full stats in {path}")
        print("\n".join(lines))
    return payload
