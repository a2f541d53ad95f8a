"""scripts/hidden_waiter_probe.py: py-spy finds no threadsched worker blocked on a semaphore, and finds the
spawn_then_wait baseline's hidden waiters (the probe can fail). Skips where py-spy cannot attach."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "hidden_waiter_probe.py"


def load_probe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hidden_waiter_probe", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


DUMP = """Process 42: python probe
Python v3.11.7 (/usr/bin/python3.11)

Thread 0x7F01 (idle): "MainThread"
    wait (threading.py:327)
Thread 0x7F02 (idle): "pool-worker_0"
    wait (threading.py:327)
    Semaphore.acquire (threading.py:468)
    model_call (probe.py:10)
Thread 0x7F03 (active): "pool-worker_1"
    model_call (probe.py:12)
Thread 0x7F04 (idle): "pool-dispatcher"
    Semaphore.acquire (threading.py:468)
"""


def test_parse_dump_and_count_blocked_workers_only() -> None:
    probe = load_probe()
    threads = probe.parse_dump(DUMP)
    assert set(threads) == {"MainThread", "pool-worker_0", "pool-worker_1", "pool-dispatcher"}
    assert threads["pool-worker_0"][1] == "Semaphore.acquire (threading.py:468)"
    workers, blocked = probe.blocked_workers(threads)
    assert (workers, blocked) == (2, ["pool-worker_0"])  # the dispatcher is not a worker


def test_probe_proves_zero_for_threadsched_and_some_for_spawn_then_wait() -> None:
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--json", "--dumps", "2"], capture_output=True, text=True, timeout=50, check=False
    )
    if completed.stdout.startswith("hidden_waiter_probe: skipped:"):
        pytest.skip(completed.stdout.strip())
    assert completed.returncode == 0, completed.stdout + completed.stderr
    payload = json.loads(completed.stdout)
    ours, baseline = payload["results"]
    assert payload["proven"] is True
    assert ours["implementation"] == "threadsched" and ours["blocked_per_dump"] == [0, 0] and ours["worker_threads_max"] > 0
    assert baseline["implementation"] == "spawn_then_wait" and all(count > 0 for count in baseline["blocked_per_dump"])
