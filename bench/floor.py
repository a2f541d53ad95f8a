"""Floor: the design card's shape at its cheapest, against a plain pool, ``Scheduler`` and ``LeasedExecutor``.

``FloorExecutor`` is the least a leasing dispatcher can do: one dispatcher thread; a ``collections.deque``
under one ``threading.Condition``; a ``threading.BoundedSemaphore(W)`` taken with ``acquire(blocking=False)``
as the lease; ``ThreadPoolExecutor.submit`` to run what was leased; a done-callback that releases the
semaphore, notifies the condition and resolves the caller's future. On each wake the dispatcher leases as
many queued tasks as there are free slots. No fair queue, no resources, no evidence: what threadsched
costs above this is the price of those.

Four implementations with W workers, interleaved (the order alternating run by run) in one process, each
run the same loop (``throughput.run_pool``: submit every task at once, then one ``wait`` for all futures):

* ``pool``: a plain ``ThreadPoolExecutor(W)`` (no lease at all);
* ``floor``: ``FloorExecutor(W)``;
* ``scheduler``: ``threadsched.Scheduler(max_workers=W)``;
* ``leased``: ``threadsched.LeasedExecutor(W)``.

Task durations: 0 (a no-op), 0.1 ms, 1 ms and 10 ms (``time.sleep``). Per implementation and duration:
the wall time (first submit -> every future done; p50, min, max over the runs) and the per-slot loss,
``(wall - pool wall) * W / tasks`` in µs with the medians: the extra wall per task per worker slot against
the plain pool, the time a slot sits unused between one task and the next. The loss against the ideal
``tasks * duration / W`` is reported too, for information. Targets: on no-op tasks Scheduler wall / floor
wall <= 1.25 and LeasedExecutor wall / floor wall <= 1.25; at 1 ms their per-slot loss / the floor's <= 1.3.
The walls against the plain pool are information.

    python bench/run.py floor              # W=8, tasks per run: 20000 / 8000 / 4000 / 400 (0 / 0.1 / 1 / 10 ms)
    python bench/run.py floor --quick      # 6000 / 3000 / 1600 / 160
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import functools
import threading
import time
from collections.abc import Callable
from typing import Any

from common import fmt_s, headline, interleave, phase_summaries, print_headline, print_table
from throughput import _stdlib_pool, noop, run_pool, run_scheduler

import threadsched

DURATIONS = (0.0, 0.0001, 0.001, 0.01)  # seconds of time.sleep per task; 0 is a no-op
TASKS = {0.0: 20_000, 0.0001: 8_000, 0.001: 4_000, 0.01: 400}
QUICK_TASKS = {0.0: 6_000, 0.0001: 3_000, 0.001: 1_600, 0.01: 160}
WARMUP_TASKS = 500
WALL_TARGET = 1.25  # Scheduler or LeasedExecutor wall / floor wall, no-op tasks
LOSS_TARGET = 1.3  # their per-slot loss / the floor's, 1 ms tasks
LOSS_DURATION = 0.001
IMPLS = ("pool", "floor", "scheduler", "leased")
LABELS = {"pool": "ThreadPoolExecutor", "floor": "floor", "scheduler": "Scheduler", "leased": "LeasedExecutor"}


class FloorExecutor(cf.Executor):
    """One dispatcher leasing worker slots (a ``BoundedSemaphore``) to queued tasks before the pool runs them."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "bench-floor") -> None:
        self._workers = max_workers
        self._pool = cf.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"{thread_name_prefix}-worker")
        self._slots = threading.BoundedSemaphore(max_workers)
        self._wake = threading.Condition(threading.Lock())
        self._queue: collections.deque[tuple[cf.Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]]
        self._queue = collections.deque()
        self._closed = False
        self._dispatcher = threading.Thread(target=self._dispatch, name=f"{thread_name_prefix}-dispatcher", daemon=True)
        self._dispatcher.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        future: cf.Future[Any] = cf.Future()
        with self._wake:
            if self._closed:
                raise RuntimeError("cannot submit after shutdown")
            self._queue.append((future, fn, args, kwargs))
            self._wake.notify()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking tasks; the dispatcher leases what is queued, then exits; the pool finishes the rest."""
        with self._wake:
            self._closed = True
            if cancel_futures:
                while self._queue:
                    self._queue.popleft()[0].cancel()
            self._wake.notify()
        if wait:
            self._dispatcher.join()
        self._pool.shutdown(wait=wait)

    def _dispatch(self) -> None:
        queue, wake, acquire = self._queue, self._wake, self._slots.acquire
        while True:
            with wake:
                while not (queue and acquire(blocking=False)):
                    if self._closed and not queue:
                        return
                    wake.wait()
                leased = [queue.popleft()]  # as many as fit: one slot is ours already
                while queue and acquire(blocking=False):
                    leased.append(queue.popleft())
            for future, fn, args, kwargs in leased:
                if not future.set_running_or_notify_cancel():  # cancelled while queued
                    self._release()
                    continue
                try:
                    inner = self._pool.submit(fn, *args, **kwargs)
                except BaseException as error:  # the pool refused: the lease goes back, the caller learns why
                    self._release()
                    future.set_exception(error)
                    continue
                inner.add_done_callback(functools.partial(self._finished, future))

    def _release(self) -> None:
        self._slots.release()
        with self._wake:
            self._wake.notify()

    def _finished(self, future: cf.Future[Any], inner: cf.Future[Any]) -> None:
        """The done-callback: the lease is released (once) and the dispatcher woken before the outcome shows."""
        self._release()
        error = inner.exception()
        if error is None:
            future.set_result(inner.result())
        else:
            future.set_exception(error)


def _sleeper(duration: float) -> Callable[[], Any]:
    return noop if duration == 0 else functools.partial(time.sleep, duration)


def _runners(tasks: int, workers: int, duration: float) -> dict[str, Callable[[], dict[str, float]]]:
    task = _sleeper(duration)
    return {
        "pool": functools.partial(run_pool, _stdlib_pool, tasks, workers, "pool", task=task),
        "floor": functools.partial(run_pool, FloorExecutor, tasks, workers, "floor", task=task),
        "scheduler": functools.partial(run_scheduler, tasks, workers, task=task),
        "leased": functools.partial(run_pool, threadsched.LeasedExecutor, tasks, workers, "leased", task=task),
    }


def per_slot_loss_us(wall: float, reference: float, tasks: int, workers: int) -> float:
    """Extra wall per task per worker slot against ``reference`` (a wall, in seconds), in µs."""
    return (wall - reference) * workers / tasks * 1e6


def _ratio(value: float, reference: float) -> float:
    return value / reference if reference > 0 else float("inf")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", "-w", type=int, default=8, help="worker slots W for every implementation (default 8)")
    parser.add_argument(
        "--tasks",
        type=int,
        default=None,
        help="tasks per run at every duration (default per duration: "
        + " / ".join(f"{TASKS[d]}" for d in DURATIONS)
        + "; with --quick "
        + " / ".join(f"{QUICK_TASKS[d]}" for d in DURATIONS)
        + ")",
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    workers = args.workers
    for runner in _runners(WARMUP_TASKS, workers, 0.0).values():  # imports, first-use code paths; untimed
        runner()
    results: dict[str, Any] = {}
    rows = []
    for duration in DURATIONS:
        tasks = args.tasks or (QUICK_TASKS if args.quick else TASKS)[duration]
        label = f"{duration * 1e3:g} ms: "
        summaries = phase_summaries(interleave(args.runs, _runners(tasks, workers, duration), label))
        walls = {impl: summaries[impl]["wall"]["median"] for impl in IMPLS}
        ideal = tasks * duration / workers
        entry: dict[str, Any] = {"duration_s": duration, "tasks": tasks, "ideal_wall_s": ideal, "impls": {}}
        for impl in IMPLS:
            wall = summaries[impl]["wall"]
            loss = per_slot_loss_us(wall["median"], walls["pool"], tasks, workers)
            loss_ideal = per_slot_loss_us(wall["median"], ideal, tasks, workers)
            entry["impls"][impl] = {
                "phases": summaries[impl],
                "per_slot_loss_us": loss,
                "per_slot_loss_vs_ideal_us": loss_ideal,
                "wall_over_pool": walls[impl] / walls["pool"],
                "wall_over_floor": walls[impl] / walls["floor"],
            }
            rows.append(
                [
                    f"{duration * 1e3:g} ms",
                    tasks,
                    LABELS[impl],
                    fmt_s(wall["median"]),
                    fmt_s(wall["min"]),
                    fmt_s(wall["max"]),
                    f"{walls[impl] / walls['pool']:.2f}",
                    f"{walls[impl] / walls['floor']:.2f}",
                    f"{loss:.2f}",
                    f"{loss_ideal:.2f}",
                ]
            )
        results[f"{duration * 1e3:g}ms"] = entry
    columns = ["task", "tasks", "impl", "wall p50", "min", "max", "/pool", "/floor", "loss us", "loss vs ideal us"]
    print_table(f"W={workers}, medians of {args.runs} interleaved runs; loss: per task per slot", columns, rows)

    noop_entry, loss_entry = results["0ms"], results[f"{LOSS_DURATION * 1e3:g}ms"]
    floor_loss = loss_entry["impls"]["floor"]["per_slot_loss_us"]
    heads = []
    for impl in ("scheduler", "leased"):
        wall_ratio = noop_entry["impls"][impl]["wall_over_floor"]
        heads.append(headline(f"floor: {LABELS[impl]} / floor wall, no-op tasks, W={workers}", wall_ratio, WALL_TARGET))
    for impl in ("scheduler", "leased"):
        loss_ratio = _ratio(loss_entry["impls"][impl]["per_slot_loss_us"], floor_loss)
        metric = f"floor: {LABELS[impl]} / floor per-slot loss, 1 ms tasks, W={workers}"
        heads.append(headline(metric, loss_ratio, LOSS_TARGET))
    information = [
        {"metric": f"floor: {LABELS[impl]} / ThreadPoolExecutor wall, no-op tasks, W={workers}", "value": value}
        for impl in ("floor", "scheduler", "leased")
        for value in [noop_entry["impls"][impl]["wall_over_pool"]]
    ]
    print_headline("floor targets (medians)", heads)
    for row in information:
        print(f"  {row['metric']} = {row['value']:.2f} (informational)")
    return {
        "description": "no-op and sleeping tasks, first submit -> all futures done; pool, floor, Scheduler, LeasedExecutor",
        "quick": args.quick,
        "workers": workers,
        "runs": args.runs,
        "durations_s": list(DURATIONS),
        "per_slot_loss": "(wall - pool wall) * W / tasks, medians, in us; per_slot_loss_vs_ideal_us uses tasks * duration / W",
        "results": results,
        "target": {"wall_ratio_max": WALL_TARGET, "per_slot_loss_ratio_max": LOSS_TARGET},
        "meets_target": all(row["meets_target"] for row in heads),
        "headline": heads,
        "information": information,
    }
