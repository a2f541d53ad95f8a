"""The built-in demo workload: one heavy group with slow tasks beside several light groups.

It exercises leases on a shared model resource, weighted fairness, retries and non-retryable
failures, and reports per-group outcomes and ready → lease waits from the run's own events.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import Any

from threadsched.core.events import MemoryEventSink
from threadsched.core.retry import RetryPolicy
from threadsched.core.scheduler import Scheduler
from threadsched.report.evidence import hidden_waiters, ready_to_lease_waits, unreleased_leases


class TransientModelError(Exception):
    """A simulated, retryable model-endpoint failure (e.g. a 503)."""


class FatalModelError(Exception):
    """A simulated, non-retryable failure (e.g. a malformed request)."""


@dataclass(frozen=True, slots=True)
class DemoGroup:
    key: str
    weight: float
    tasks: int
    work_seconds: float
    uses_model: bool


@dataclass(frozen=True, slots=True)
class GroupRow:
    group: str
    submitted: int
    completed: int
    failed: int
    wait_p50_ms: float
    wait_p95_ms: float


@dataclass(frozen=True, slots=True)
class DemoResult:
    rows: tuple[GroupRow, ...]
    hidden_waiters: int
    final_active_leases: int
    unreleased_leases: int
    counters: dict[str, int]
    elapsed_seconds: float


SCALES = {"small": 0.25, "normal": 1.0}


def demo_groups(scale: float) -> tuple[DemoGroup, ...]:
    def count(base: int) -> int:
        return max(4, int(base * scale))

    return (
        DemoGroup("heavy-model", weight=1.0, tasks=count(120), work_seconds=0.040, uses_model=True),
        DemoGroup("light-a", weight=2.0, tasks=count(240), work_seconds=0.004, uses_model=False),
        DemoGroup("light-b", weight=1.0, tasks=count(160), work_seconds=0.004, uses_model=False),
        DemoGroup("light-c", weight=1.0, tasks=count(160), work_seconds=0.002, uses_model=True),
    )


def _simulated_task(work_seconds: float, failures_before_success: int, fatal: bool, attempts: list[int], index: int) -> int:
    # Attempts of one task run one after another, so its own counter needs no lock.
    attempts[0] += 1
    time.sleep(work_seconds)  # stands in for a blocking model or HTTP call
    if fatal:
        raise FatalModelError(f"task {index}: malformed request")
    if attempts[0] <= failures_before_success:
        raise TransientModelError(f"task {index}: endpoint busy")
    return index


def run_demo(seed: int = 7, scale: float = 1.0, max_workers: int = 8, model_slots: int = 3) -> DemoResult:
    """Run the workload and return its evidence; deterministic task outcomes for a given seed."""
    rng = random.Random(seed)
    sink = MemoryEventSink()
    retry = RetryPolicy(max_attempts=3, retry_on=(TransientModelError,), backoff_initial=0.01, backoff_max=0.05)
    futures: dict[str, list[Future[Any]]] = {}
    index = 0
    started = time.monotonic()
    with Scheduler(max_workers, resource_limits={"llm:mock/model": model_slots}, events=sink, name="demo") as scheduler:
        for spec in demo_groups(scale):
            group = scheduler.group(
                spec.key,
                weight=spec.weight,
                resources={"llm:mock/model": 1} if spec.uses_model else None,
                retry=retry,
            )
            submitted: list[Future[Any]] = []
            for _ in range(spec.tasks):
                roll = rng.random()
                # 8%: one transient failure (retried, then succeeds); 2%: more transient failures
                # than attempts (fails after retries); 2%: a fatal, non-retryable failure.
                transient = 1 if roll < 0.08 else 3 if roll < 0.10 else 0
                fatal = 0.10 <= roll < 0.12
                submitted.append(group.submit(_simulated_task, spec.work_seconds, transient, fatal, [0], index))
                index += 1
            futures[spec.key] = submitted
        wait([future for group_futures in futures.values() for future in group_futures])
    elapsed = time.monotonic() - started
    snapshot = scheduler.snapshot()
    events = sink.events
    waits = ready_to_lease_waits(events)
    rows = []
    for key, group_futures in futures.items():
        failed = sum(1 for future in group_futures if future.exception() is not None)
        group_waits = waits.get(key)
        rows.append(
            GroupRow(
                group=key,
                submitted=len(group_futures),
                completed=len(group_futures) - failed,
                failed=failed,
                wait_p50_ms=(group_waits.p50 * 1000) if group_waits else 0.0,
                wait_p95_ms=(group_waits.p95 * 1000) if group_waits else 0.0,
            )
        )
    return DemoResult(
        rows=tuple(rows),
        hidden_waiters=hidden_waiters(events) + snapshot.counters["hidden_waiters"],
        final_active_leases=snapshot.admission.active_lease_count,
        unreleased_leases=len(unreleased_leases(events)),
        counters=dict(snapshot.counters),
        elapsed_seconds=elapsed,
    )


def render_plain(result: DemoResult, write: Callable[[str], None] = print) -> None:
    header = f"{'group':<14}{'submitted':>10}{'completed':>10}{'failed':>8}{'wait p50 ms':>13}{'wait p95 ms':>13}"
    write(header)
    write("-" * len(header))
    for row in result.rows:
        write(
            f"{row.group:<14}{row.submitted:>10}{row.completed:>10}{row.failed:>8}"
            f"{row.wait_p50_ms:>13.1f}{row.wait_p95_ms:>13.1f}"
        )
    write("")
    write(f"hidden waiters (workers started before their lease): {result.hidden_waiters}")
    write(f"final active leases: {result.final_active_leases}")
    write(f"leases without exactly one release: {result.unreleased_leases}")
    counters = result.counters
    write(
        f"retried: {counters['retried']}  failed: {counters['failed']}  "
        f"completed: {counters['completed']}  elapsed: {result.elapsed_seconds:.2f}s"
    )


def render_rich(result: DemoResult) -> bool:
    """Render with rich when the optional extra is installed; False when it is not."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        return False
    table = Table(title="threadsched demo: per-group outcome and ready → lease wait")
    for column in ("group", "submitted", "completed", "failed", "wait p50 ms", "wait p95 ms"):
        table.add_column(column, justify="left" if column == "group" else "right")
    for row in result.rows:
        table.add_row(
            row.group,
            str(row.submitted),
            str(row.completed),
            str(row.failed),
            f"{row.wait_p50_ms:.1f}",
            f"{row.wait_p95_ms:.1f}",
        )
    console = Console()
    console.print(table)
    console.print(f"hidden waiters (workers started before their lease): [bold]{result.hidden_waiters}[/bold]")
    console.print(f"final active leases: [bold]{result.final_active_leases}[/bold]")
    console.print(f"leases without exactly one release: {result.unreleased_leases}")
    counters = result.counters
    console.print(
        f"retried: {counters['retried']}  failed: {counters['failed']}  "
        f"completed: {counters['completed']}  elapsed: {result.elapsed_seconds:.2f}s"
    )
    return True
