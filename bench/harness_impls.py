"""One measured run of one implementation, for ``bench/harness.py``: a ``Sample`` of metrics.

* ``threadsched``: ``run_recipe`` with a ``MemoryEventSink``; the ready-to-lease gaps come from its own
  events (``evidence.ready_to_lease_waits``: ``ready_enqueued`` -> ``task_lease_acquired``, per column).
* ``fifo`` / ``spawn_then_wait``: ``baselines.run_baseline`` (ready = taken from the tracker's frontier,
  lease = semaphores acquired).
* ``threadsched[POLICY]``: the same under ``run_recipe(..., policy=POLICY)`` (``threadsched.policies``);
  plain ``threadsched`` is the ``strict`` policy (``--policies`` in ``bench/harness.py``).

Gap metrics per sample: ``gap_p50_s``/``gap_p95_s`` over every task, ``downstream_gap_p50_s``/
``downstream_gap_p95_s`` over the tasks of non-root columns (the cells that wait behind the roots).
threadsched samples also carry ``first_row_s``: time to the first complete row, the first
``row_group_checkpointed`` event minus ``scheduler_job_started`` (both from the run's events; left out when
the run checkpointed nothing).
"""

from __future__ import annotations

import inspect
import json
import tempfile
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baselines import run_baseline

from threadsched.core.events import MemoryEventSink, SchedulerEvent
from threadsched.core.scheduler import DEFAULT_GROUP
from threadsched.engine import Recipe, run_recipe
from threadsched.report.evidence import hidden_waiters, percentile, ready_to_lease_waits

__all__ = ["IMPLEMENTATIONS", "STRICT", "Sample", "impl_policy", "policy_impl", "run_sample"]

IMPLEMENTATIONS = ("threadsched", "fifo", "spawn_then_wait")
STRICT = "strict"


@dataclass(slots=True)
class Sample:
    """``metrics``: numbers (and ``output_hash``) of one run; ``waits``: column -> ready-to-lease gaps."""

    implementation: str
    metrics: dict[str, Any]
    waits: dict[str, tuple[float, ...]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    capacity_plan: dict[str, Any] | None = None


def policy_impl(policy: str) -> str:
    """The implementation name of threadsched under ``policy``: ``threadsched`` for strict."""
    return "threadsched" if policy == STRICT else f"threadsched[{policy}]"


def impl_policy(implementation: str) -> str | None:
    """The policy of a threadsched implementation name (``strict`` for ``threadsched``); None otherwise."""
    if implementation == "threadsched":
        return STRICT
    if implementation.startswith("threadsched[") and implementation.endswith("]"):
        return implementation[len("threadsched[") : -1]
    return None


def gap_metrics(recipe: Recipe, waits: Mapping[str, tuple[float, ...]]) -> dict[str, float]:
    every = [wait for values in waits.values() for wait in values]
    downstream = [wait for column, values in waits.items() if not recipe.column(column).is_root for wait in values]
    return {
        "gap_p50_s": percentile(every, 50),
        "gap_p95_s": percentile(every, 95),
        "downstream_gap_p50_s": percentile(downstream, 50),
        "downstream_gap_p95_s": percentile(downstream, 95),
    }


def _column_of(recipe: Recipe) -> dict[Hashable, str]:
    """Scheduler group key -> column name (the runner renames a column called like the default group)."""
    return {(f"column:{name}" if name == DEFAULT_GROUP else name): name for name in recipe.topological_order}


def _supports_capacity_sources() -> bool:
    return "capacity_sources" in inspect.signature(run_recipe).parameters


def first_row_seconds(events: Sequence[SchedulerEvent]) -> float | None:
    """First ``row_group_checkpointed`` minus ``scheduler_job_started`` (None without both)."""
    started = next((event.captured_at for event in events if event.kind == "scheduler_job_started"), None)
    first = next((event.captured_at for event in events if event.kind == "row_group_checkpointed"), None)
    return first - started if started is not None and first is not None else None


def run_threadsched(
    recipe: Recipe,
    *,
    sleep: Callable[[float], None] = time.sleep,
    capacity_sources: Mapping[str, str] | None = None,
    policy: str = STRICT,
) -> Sample:
    sink = MemoryEventSink()
    extra: dict[str, Any] = {}
    if capacity_sources and _supports_capacity_sources():
        extra["capacity_sources"] = dict(capacity_sources)
    if policy != STRICT:  # strict is run_recipe's default: older refs (A/B) without ``policy=`` keep working
        extra["policy"] = policy
    with tempfile.TemporaryDirectory(prefix="bench-harness-threadsched-") as out:
        started = time.perf_counter()
        result = run_recipe(recipe, Path(out), events=sink, sleep=sleep, **extra)
        wall = time.perf_counter() - started
        plan_path = Path(out) / "capacity_plan.json"
        plan = json.loads(plan_path.read_text()) if plan_path.exists() else None
    events = sink.events
    columns = _column_of(recipe)
    waits = {columns.get(group, str(group)): tuple(found.waits) for group, found in ready_to_lease_waits(events).items()}
    from_events = hidden_waiters(events)
    first_row = first_row_seconds(events)
    metrics: dict[str, Any] = {
        "wall_s": wall,
        **gap_metrics(recipe, waits),
        **({"first_row_s": first_row} if first_row is not None else {}),
        "hidden_waiters": max(result.hidden_waiters, from_events),
        "hidden_waiters_counter": result.hidden_waiters,
        "hidden_waiters_events": from_events,
        "active_leases_after": result.final_active_leases,
        "rows_written": result.rows_written,
        "rows_dropped": len(result.dropped),
        "tasks": int(result.counters.get("tasks_submitted", 0)),
        "output_hash": result.output_hash,
    }
    return Sample(policy_impl(policy), metrics, waits, {k: int(v) for k, v in result.counters.items()}, plan)


def run_baseline_sample(kind: str, recipe: Recipe, *, sleep: Callable[[float], None] = time.sleep) -> Sample:
    with tempfile.TemporaryDirectory(prefix=f"bench-harness-{kind}-") as out:
        started = time.perf_counter()
        result = run_baseline(kind, recipe, Path(out), sleep=sleep)
        wall = time.perf_counter() - started
    metrics: dict[str, Any] = {
        "wall_s": wall,
        **gap_metrics(recipe, result.waits),
        "hidden_waiters": result.hidden_waiters,
        "active_leases_after": result.active_leases_after,
        "rows_written": result.rows_written,
        "rows_dropped": result.rows_dropped,
        "tasks": result.tasks,
        "output_hash": result.output_hash,
    }
    return Sample(kind, metrics, dict(result.waits), dict(result.counters))


def run_sample(
    implementation: str,
    recipe: Recipe,
    *,
    sleep: Callable[[float], None] = time.sleep,
    capacity_sources: Mapping[str, str] | None = None,
) -> Sample:
    policy = impl_policy(implementation)
    if policy is not None:
        return run_threadsched(recipe, sleep=sleep, capacity_sources=capacity_sources, policy=policy)
    if implementation in IMPLEMENTATIONS:
        return run_baseline_sample(implementation, recipe, sleep=sleep)
    raise ValueError(f"unknown implementation {implementation!r} (known: {', '.join(IMPLEMENTATIONS)})")
