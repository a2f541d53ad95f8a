"""Prove with py-spy that no threadsched worker waits for scheduler capacity.

Saturates a model resource (limit 2) with 24 blocked tasks on an 8-worker pool, then dumps every
thread's stack with ``py-spy dump`` twice: once for threadsched and once for a "spawn then wait"
design (submit to a ThreadPoolExecutor at once, acquire the model semaphore inside the worker).
It counts worker threads blocked in ``Semaphore.acquire``/``BoundedSemaphore.acquire``: threadsched
must show 0, the spawn-then-wait design shows the hidden waiters.

Usage: python scripts/hidden_waiter_probe.py   (needs `pip install py-spy`; run as root or with ptrace)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, wait

from threadsched import Scheduler

WORKERS, MODEL_SLOTS, TASKS = 8, 2, 24


def dump_threads() -> dict[str, list[str]]:
    """Thread name → its stack frames (innermost first), from py-spy."""
    output = subprocess.run(["py-spy", "dump", "--pid", str(os.getpid())], capture_output=True, text=True, check=True).stdout
    threads: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        header = re.match(r'Thread \S+ \(\w+\): "(.+)"', line)
        if header:
            current = threads.setdefault(header.group(1), [])
        elif current is not None and line.startswith("    "):
            current.append(line.strip())
    return threads


def semaphore_waiters(threads: dict[str, list[str]], worker_marker: str) -> tuple[int, int]:
    workers = {name: frames for name, frames in threads.items() if worker_marker in name}
    waiting = sum(1 for frames in workers.values() if any("Semaphore.acquire" in frame for frame in frames))
    return len(workers), waiting


def probe_threadsched() -> tuple[int, int]:
    gate, running = threading.Event(), threading.Semaphore(0)

    def model_call() -> None:
        running.release()
        gate.wait()

    with Scheduler(WORKERS, resource_limits={"llm:mock/model": MODEL_SLOTS}, name="probe") as scheduler:
        group = scheduler.group("model", resources={"llm:mock/model": 1})
        futures = [group.submit(model_call) for _ in range(TASKS)]
        for _ in range(MODEL_SLOTS):
            running.acquire()
        result = semaphore_waiters(dump_threads(), "probe-worker")
        gate.set()
        wait(futures)
    return result


def probe_spawn_then_wait() -> tuple[int, int]:
    gate, model = threading.Event(), threading.BoundedSemaphore(MODEL_SLOTS)
    running = threading.Semaphore(0)

    def model_call() -> None:
        with model:  # the hidden wait: a worker thread is already spent here
            running.release()
            gate.wait()

    with ThreadPoolExecutor(WORKERS, thread_name_prefix="naive-worker") as pool:
        futures = [pool.submit(model_call) for _ in range(TASKS)]
        for _ in range(MODEL_SLOTS):
            running.acquire()
        result = semaphore_waiters(dump_threads(), "naive-worker")
        gate.set()
        wait(futures)
    return result


def main() -> int:
    if shutil.which("py-spy") is None:
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    ours_workers, ours_waiting = probe_threadsched()
    naive_workers, naive_waiting = probe_spawn_then_wait()
    print(f"threadsched:      {ours_workers} worker threads, {ours_waiting} blocked in Semaphore.acquire")
    print(f"spawn_then_wait:  {naive_workers} worker threads, {naive_waiting} blocked in Semaphore.acquire")
    return 0 if ours_waiting == 0 and naive_waiting > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
