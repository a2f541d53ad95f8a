"""Peak RSS of a process holding 100k queued tasks across 256 groups in a ``Scheduler``.

Each measurement runs in a fresh child interpreter (``python -c`` importing only this module and calling
``child``), so the numbers are that process's own. The child

1. records the RSS of the bare interpreter, then imports ``threadsched`` and records the RSS again
   (the idle reference);
2. builds ``Scheduler(max_workers=1)``, submits a blocker that waits on an ``Event`` and waits until
   it runs, so the only worker slot is taken and nothing else can be admitted;
3. submits N no-op tasks round-robin over G groups from the main thread (keeping their futures, as a
   caller would), waits until all N sit in the scheduler's queue, and records current and peak RSS;
4. releases the blocker and shuts down (``cancel_futures=True`` by default, or ``--drain`` to run
   every queued task) and records the peak RSS through shutdown (the headline number);
5. then checks every future and that the shutdown was clean, and records the peak again ("after
   checks": ``Future.exception()`` builds a lazily created condition, so this one includes the
   benchmark's own verification).

``--wait-while-held`` calls ``concurrent.futures.wait(futures, timeout=0)`` while the tasks are
held, as a caller waiting on everything it submitted would (it takes every future's condition).

Peak RSS is ``VmHWM`` from ``/proc/self/status`` (Linux) or ``resource.getrusage().ru_maxrss``.
Target: peak RSS <= 150 MB for N=100k, G=256 (other sizes: the held RSS projected to 100k tasks).

    python bench/run.py memory
    python bench/run.py memory --quick                       # 20k tasks (CI)
    python bench/run.py memory --tasks 20000 --groups 64 --drain
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the child imports this module: nothing it does not need
    import argparse

TARGET_PEAK_MB = 150.0
TARGET_TASKS, TARGET_GROUPS = 100_000, 256  # the sizes the target is stated for
QUICK_TASKS = 20_000
MB = 2**20


# -- child side: keep imports minimal so the numbers are the scheduler's -------------------------


def _rss_bytes() -> tuple[int | None, int | None]:
    """(current RSS, peak RSS) in bytes for this process."""
    current = peak = None
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    current = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) * 1024
    except OSError:
        pass
    if peak is None:
        import resource

        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = maxrss if sys.platform == "darwin" else maxrss * 1024
    if current is None:
        try:
            import psutil

            current = psutil.Process().memory_info().rss
        except ImportError:
            current = None
    return current, peak


def _noop() -> None:
    return None


def child(tasks: int, groups: int, drain: bool, wait_while_held: bool = False) -> dict[str, Any]:
    import gc

    bare_rss, bare_peak = _rss_bytes()
    import concurrent.futures as cf
    import threading

    import threadsched

    gc.collect()
    idle_rss, idle_peak = _rss_bytes()

    scheduler = threadsched.Scheduler(max_workers=1, name="bench-memory")
    gate = threading.Event()
    blocker = scheduler.submit(gate.wait)
    deadline = time.monotonic() + 30
    while scheduler.snapshot().running < 1:
        if time.monotonic() > deadline:
            raise RuntimeError("the blocker task never started")
        time.sleep(0.001)

    handles = [scheduler.group(f"g{index}") for index in range(groups)]
    t0 = time.perf_counter()
    futures = [handles[index % groups].submit(_noop) for index in range(tasks)]
    submit_seconds = time.perf_counter() - t0
    deadline = time.monotonic() + 120
    while scheduler.statistics().queued < tasks:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {scheduler.statistics().queued} of {tasks} tasks reached the queue")
        time.sleep(0.005)
    queued_seconds = time.perf_counter() - t0
    if wait_while_held:
        cf.wait(futures, timeout=0)
    snapshot = scheduler.snapshot()
    if snapshot.admission.active_lease_count != 1 or snapshot.queue.queued_total != tasks:
        raise RuntimeError(f"unexpected state while held: {snapshot!r}")
    queued_groups = len(snapshot.queue.queued_by_group)
    del snapshot
    gc.collect()
    held_rss, held_peak = _rss_bytes()

    t1 = time.perf_counter()
    gate.set()
    report = scheduler.shutdown(wait=True, cancel_futures=not drain)
    release_seconds = time.perf_counter() - t1
    # The headline peak is taken here, before the checks below: Future.exception() and
    # concurrent.futures.wait() take every future's condition, which a future may build lazily,
    # so they would charge the benchmark's own verification to the scheduler.
    shutdown_rss, shutdown_peak = _rss_bytes()
    not_done_after_shutdown = sum(1 for future in futures if not future.done())
    if not_done_after_shutdown or not blocker.done():
        cf.wait([blocker, *futures], timeout=120)
    not_done = sum(1 for future in futures if not future.done())
    cancelled = sum(1 for future in futures if future.cancelled())
    succeeded = sum(1 for future in futures if future.done() and not future.cancelled() and future.exception() is None)
    leftover_threads = [thread.name for thread in threading.enumerate() if thread is not threading.main_thread()]
    final_rss, final_peak = _rss_bytes()
    return {
        "tasks": tasks,
        "groups": groups,
        "queued_groups": queued_groups,
        "drain": drain,
        "wait_while_held": wait_while_held,
        "bare_interpreter_rss": bare_rss,
        "bare_interpreter_peak": bare_peak,
        "idle_rss": idle_rss,
        "idle_peak": idle_peak,
        "held_rss": held_rss,
        "held_peak": held_peak,
        "shutdown_rss": shutdown_rss,
        "shutdown_peak": shutdown_peak,
        "final_rss": final_rss,
        "final_peak": final_peak,
        "futures_not_done_after_shutdown": not_done_after_shutdown,
        "bytes_per_queued_task": None if held_rss is None or idle_rss is None else (held_rss - idle_rss) / tasks,
        "submit_seconds": submit_seconds,
        "submit_to_all_queued_seconds": queued_seconds,
        "release_and_shutdown_seconds": release_seconds,
        "shutdown_clean": report.clean,
        "shutdown_active_leases": report.active_leases,
        "shutdown_cancelled": report.cancelled,
        "blocker_ok": blocker.done() and blocker.exception() is None,
        "futures_not_done": not_done,
        "futures_succeeded": succeeded,
        "futures_cancelled": cancelled,
        "leftover_threads": leftover_threads,
    }


# -- parent side -----------------------------------------------------------------------------------


CHILD = "import json, sys; sys.path[:0] = sys.argv[1:2]; import memory; print(json.dumps(memory.child(*json.loads(sys.argv[2]))))"


def run_child(tasks: int, groups: int, drain: bool, wait_while_held: bool) -> dict[str, Any]:
    arguments = json.dumps([tasks, groups, drain, wait_while_held])
    command = [sys.executable, "-c", CHILD, str(Path(__file__).resolve().parent), arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"memory child failed ({result.returncode}):\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, default=None, help=f"queued tasks (default {TARGET_TASKS}; quick {QUICK_TASKS})")
    parser.add_argument("--groups", type=int, default=TARGET_GROUPS, help=f"groups, round-robin (default {TARGET_GROUPS})")
    parser.add_argument("--drain", action="store_true", help="run every queued task at the end instead of cancelling them")
    parser.add_argument(
        "--wait-while-held", action="store_true", help="call concurrent.futures.wait(futures, timeout=0) while tasks are held"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    from common import fmt_mb, headline, print_table, summarize, verdict

    runs, tasks = args.runs, args.tasks or (QUICK_TASKS if args.quick else TARGET_TASKS)
    samples: list[dict[str, Any]] = []
    for index in range(runs):
        sample = run_child(tasks, args.groups, args.drain, args.wait_while_held)
        samples.append(sample)
        print(
            f"  run {index + 1}/{runs}: idle {fmt_mb(sample['idle_rss'])}, held {fmt_mb(sample['held_rss'])}, "
            f"peak {fmt_mb(sample['shutdown_peak'])} (after checks {fmt_mb(sample['final_peak'])}), "
            f"clean={sample['shutdown_clean']}",
            flush=True,
        )
    problems = [
        sample
        for sample in samples
        if not sample["shutdown_clean"]
        or sample["futures_not_done"]
        or sample["futures_not_done_after_shutdown"]
        or sample["leftover_threads"]
        or not sample["blocker_ok"]
        or sample["queued_groups"] != min(args.groups, tasks)
    ]
    keys = ("bare_interpreter_rss", "idle_rss", "held_rss", "held_peak", "shutdown_peak", "final_peak", "bytes_per_queued_task")
    summaries = {key: summarize([float(sample[key]) for sample in samples]) for key in keys}
    timing_keys = ("submit_seconds", "submit_to_all_queued_seconds", "release_and_shutdown_seconds")
    timings = {key: summarize([sample[key] for sample in samples]) for key in timing_keys}
    peak_mb = summaries["shutdown_peak"]["median"] / MB
    rows = [
        [label, fmt_mb(summaries[key]["median"]), fmt_mb(summaries[key]["min"]), fmt_mb(summaries[key]["max"])]
        for label, key in (
            ("bare interpreter RSS", "bare_interpreter_rss"),
            ("idle + threadsched RSS", "idle_rss"),
            ("held RSS", "held_rss"),
            ("peak RSS while held", "held_peak"),
            ("peak RSS through shutdown", "shutdown_peak"),
            ("peak RSS after checks", "final_peak"),
        )
    ]
    print_table(
        f"{tasks} queued tasks over {args.groups} groups, medians of {runs} fresh processes",
        ["measure", "p50", "min", "max"],
        rows,
    )
    per_task = summaries["bytes_per_queued_task"]["median"]
    print(f"  ~{per_task:,.0f} bytes per queued task (held RSS - idle RSS) / N")
    print(
        f"  submit {timings['submit_seconds']['median']:.2f} s, all queued after "
        f"{timings['submit_to_all_queued_seconds']['median']:.2f} s, "
        f"release+shutdown {timings['release_and_shutdown_seconds']['median']:.2f} s"
    )
    at_target_size = tasks == TARGET_TASKS and args.groups == TARGET_GROUPS
    projected_mb = (summaries["idle_rss"]["median"] + per_task * TARGET_TASKS) / MB
    if at_target_size:
        print(f"  peak RSS = {peak_mb:.1f} MB (target <= {TARGET_PEAK_MB:.0f} MB) {verdict(peak_mb, TARGET_PEAK_MB)}")
    else:
        print(
            f"  peak RSS = {peak_mb:.1f} MB; the target (<= {TARGET_PEAK_MB:.0f} MB) is for {TARGET_TASKS} tasks / "
            f"{TARGET_GROUPS} groups: projected held RSS at {TARGET_TASKS} = {projected_mb:.1f} MB "
            f"{verdict(projected_mb, TARGET_PEAK_MB)}"
        )
    if problems:
        print(f"  WARNING: {len(problems)} run(s) did not shut down cleanly: {problems[0]}")
    if at_target_size:
        metric, value = f"memory peak RSS MB, {tasks} queued / {args.groups} groups", peak_mb
    else:
        metric = f"memory held RSS MB projected to 100k (measured at {tasks} / {args.groups} groups)"
        value = projected_mb
    payload = {
        "description": "peak RSS of a fresh process holding N queued tasks over G groups in a Scheduler(max_workers=1)",
        "tasks": tasks,
        "groups": args.groups,
        "drain": args.drain,
        "wait_while_held": args.wait_while_held,
        "runs": runs,
        "results_bytes": summaries,
        "timings_seconds": timings,
        "peak_rss_mb": peak_mb,
        "at_target_size": at_target_size,
        "projected_held_rss_mb_at_100k": projected_mb,
        "idle_rss_mb": summaries["idle_rss"]["median"] / MB,
        "samples": samples,
        "clean_shutdowns": runs - len(problems),
        "target": {"peak_rss_mb_max": TARGET_PEAK_MB},
        "meets_target": value <= TARGET_PEAK_MB and not problems,
        "headline": [headline(metric, value, TARGET_PEAK_MB)],
    }
    return payload
