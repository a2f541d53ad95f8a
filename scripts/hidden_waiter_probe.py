"""Prove with py-spy that no threadsched worker waits for scheduler capacity: a worker starts only with its lease.

For each implementation (threadsched, and the ``spawn_then_wait`` baseline of ``bench/baselines.py``)
the probe runs the ``heavy_root`` benchmark scenario in a child process, waits until the run is provably
saturated mid-flight, takes several ``py-spy dump``s of the child, and reports every ``*-worker_*`` thread
whose stack is blocked acquiring a semaphore (``Semaphore.acquire``: scheduler capacity held in a
``threading.(Bounded)Semaphore``). threadsched must show none; spawn_then_wait must show some — which
proves the probe can fail.

Determinism without sleeps-as-synchronisation: the child's mock model calls block on a gate until the
parent has taken its dumps. The child reports READY once the slow root model is saturated (threadsched:
its limit of calls are in progress; spawn_then_wait: at least one worker found the model semaphore taken),
the parent dumps, then writes GO and the run finishes normally.

Usage: python scripts/hidden_waiter_probe.py [--dumps N] [--json]   (needs py-spy and ptrace permission)
Exit codes: 0 proven (or skipped: py-spy missing or cannot attach, with a clear message), 1 not proven.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMPLEMENTATIONS = ("threadsched", "spawn_then_wait")
WORKER_NAME = re.compile(r"-worker_\d+$")
SKIP = "hidden_waiter_probe: skipped:"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    implementation: str
    dumps: int
    worker_threads_max: int
    blocked_per_dump: list[int]
    blocked_threads: list[str]  # names of worker threads seen blocked in Semaphore.acquire


def parse_dump(output: str) -> dict[str, list[str]]:
    """Thread name -> frames (innermost first) from ``py-spy dump`` text."""
    threads: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        header = re.match(r'Thread \S+ \([^)]*\): "(.+)"', line)
        if header:
            current = threads.setdefault(header.group(1), [])
        elif current is not None and line.startswith("    "):
            current.append(line.strip())
    return threads


def blocked_workers(threads: dict[str, list[str]]) -> tuple[int, list[str]]:
    workers = {name: frames for name, frames in threads.items() if WORKER_NAME.search(name)}
    blocked = sorted(name for name, frames in workers.items() if any("Semaphore.acquire" in frame for frame in frames))
    return len(workers), blocked


# -- child: run heavy_root with gated mock calls ------------------------------------------------------


def child(implementation: str) -> int:
    sys.path.insert(0, str(REPO / "bench"))
    from baselines import run_baseline
    from scenarios import get_scenario, recipe_text

    from threadsched.engine import parse_recipe, run_recipe

    scenario = get_scenario("heavy_root")
    knobs = scenario.knobs(quick=True, overrides={"latency_ms": 5.0})
    recipe = parse_recipe(recipe_text(scenario, knobs))
    heavy_limit = recipe.resource_limits["llm:heavy/drafter"]
    gate, changed = threading.Event(), threading.Condition()
    state = {"calls": 0, "parked": 0}

    def gated_sleep(seconds: float) -> None:
        with changed:
            state["calls"] += 1
            changed.notify_all()
        gate.wait()
        time.sleep(seconds)

    def on_park() -> None:
        with changed:
            state["parked"] += 1
            changed.notify_all()

    def saturated() -> bool:
        return state["parked"] >= 1 if implementation == "spawn_then_wait" else state["calls"] >= heavy_limit

    def handshake() -> None:
        with changed:
            changed.wait_for(saturated)
        print("READY", flush=True)
        sys.stdin.readline()  # GO (or EOF: the parent went away)
        gate.set()

    threading.Thread(target=handshake, name="probe-handshake", daemon=True).start()
    with tempfile.TemporaryDirectory() as out:
        if implementation == "threadsched":
            result = run_recipe(recipe, Path(out), sleep=gated_sleep)
            healthy = result.hidden_waiters == 0 and result.final_active_leases == 0
        else:
            run_baseline(implementation, recipe, Path(out), sleep=gated_sleep, on_park=on_park)
            healthy = True
    print("DONE" if healthy else "UNHEALTHY", flush=True)
    return 0


# -- parent: dump the child's threads ------------------------------------------------------------------


class CannotAttach(Exception):
    pass


def py_spy() -> str | None:
    """py-spy on PATH, or next to this interpreter (a virtual environment that is not activated)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.is_file() else None)


def dump(pid: int) -> str:
    executable = py_spy()
    assert executable is not None
    completed = subprocess.run([executable, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=60, check=False)
    if completed.returncode != 0:
        raise CannotAttach((completed.stderr or completed.stdout).strip().splitlines()[-1:] or ["py-spy failed"])
    return completed.stdout


def probe(implementation: str, dumps: int) -> ProbeResult:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", implementation]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO) as process:
        assert process.stdin is not None and process.stdout is not None
        try:
            line = process.stdout.readline().strip()
            if line != "READY":
                raise RuntimeError(f"{implementation} child did not get ready: {line!r}")
            blocked_per_dump: list[int] = []
            names: set[str] = set()
            worker_max = 0
            for _ in range(dumps):
                workers, blocked = blocked_workers(parse_dump(dump(process.pid)))
                worker_max = max(worker_max, workers)
                blocked_per_dump.append(len(blocked))
                names.update(blocked)
            process.stdin.write("GO\n")
            process.stdin.flush()
            tail = process.stdout.read().strip()
            if process.wait(timeout=120) != 0 or tail != "DONE":
                raise RuntimeError(f"{implementation} child ended badly (exit {process.returncode}, output {tail!r})")
        finally:
            if process.poll() is None:
                process.kill()
    return ProbeResult(implementation, dumps, worker_max, blocked_per_dump, sorted(names))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dumps", type=int, default=3, help="py-spy dumps per implementation (default 3)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--child", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child)
    if args.dumps < 1:
        parser.error(f"--dumps must be >= 1, got {args.dumps}")
    if py_spy() is None:
        print(f"{SKIP} py-spy is not installed (pip install py-spy, or the 'probe' extra)")
        return 0
    try:
        results = [probe(implementation, args.dumps) for implementation in IMPLEMENTATIONS]
    except CannotAttach as error:
        print(
            f"{SKIP} py-spy cannot attach here ({error.args[0][0] if error.args[0] else 'no detail'}); it needs ptrace permission"
        )
        return 0
    ours, baseline = results
    proven = not ours.blocked_threads and bool(baseline.blocked_threads)
    if args.json:
        print(json.dumps({"proven": proven, "results": [asdict(result) for result in results]}, indent=2))
    else:
        for result in results:
            print(
                f"{result.implementation:16} {result.dumps} dumps, up to {result.worker_threads_max} worker threads, "
                f"blocked in Semaphore.acquire per dump {result.blocked_per_dump}: {', '.join(result.blocked_threads) or 'none'}"
            )
        print("proven: no threadsched worker waits for scheduler capacity" if proven else "NOT PROVEN")
    return 0 if proven else 1


if __name__ == "__main__":
    sys.exit(main())
