"""Where the throughput benchmark's CPU goes, by thread role (main / dispatcher / worker).

Runs the scheduler side of ``bench/throughput.py`` (or the baseline, ``--baseline``) once and
reports each role's CPU time per task (``time.thread_time`` at the end of every thread). With
``--cprofile`` every thread also runs under its own ``cProfile.Profile``; the stats are merged per
role, written to ``<out-dir>/profile_<role>.prof`` and the top functions by self time are printed
(cProfile inflates call-heavy code; the CPU split without it is the honest one).

    python bench/profile_throughput.py --tasks 50000
    python bench/profile_throughput.py --tasks 20000 --cprofile
    py-spy record --threads --gil --format raw -o /tmp/spy.txt -- python bench/profile_throughput.py

Not a benchmark: it writes no JSON and has no target.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import pstats
import threading
import time
from pathlib import Path

import throughput
from common import RESULTS_DIR


def role_of(thread: threading.Thread) -> str:
    name = thread.name
    if name.endswith("-dispatcher"):
        return "dispatcher"
    if "worker" in name or name.startswith("bench-baseline"):
        return "worker"
    return name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench/profile_throughput.py", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--workers", "-w", type=int, default=8)
    parser.add_argument("--baseline", action="store_true", help="profile the plain ThreadPoolExecutor baseline instead")
    parser.add_argument("--cprofile", action="store_true", help="also run every thread under cProfile")
    parser.add_argument("--top", type=int, default=20, help="functions to print per role with --cprofile")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    run = throughput.run_baseline if args.baseline else throughput.run_scheduler
    run(min(args.tasks, 2_000), args.workers)  # warm-up, not recorded

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
        timings = run(args.tasks, args.workers)
    finally:
        if main_profile is not None:
            main_profile.disable()
        threading.Thread.run = original_run  # type: ignore[method-assign]
    cpu["main"] = time.thread_time() - start
    if main_profile is not None:
        profiles["main"].append(main_profile)

    label = "baseline" if args.baseline else "scheduler"
    print(f"{label}: {args.tasks} tasks, W={args.workers}: wall {timings['wall']:.3f} s, process cpu {timings['cpu']:.3f} s")
    for role, seconds in sorted(cpu.items(), key=lambda entry: -entry[1]):
        print(f"  {role:10s} {seconds:7.3f} s CPU  {seconds / args.tasks * 1e6:7.1f} us/task")
    if not args.cprofile:
        return
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for role, role_profiles in profiles.items():
        stats = pstats.Stats(role_profiles[0])
        for profile in role_profiles[1:]:
            stats.add(profile)
        path = args.out_dir / f"profile_{role}.prof"
        stats.dump_stats(path)
        buffer = io.StringIO()
        pstats.Stats(str(path), stream=buffer).strip_dirs().sort_stats("tottime").print_stats(args.top)
        lines = [line for line in buffer.getvalue().splitlines() if line.strip()][4:]
        print(f"\n## {role} ({len(role_profiles)} thread(s)), by self time; full stats in {path}")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
