"""Every numeric argument of the core's constructors, and ``Scheduler.shutdown(timeout=...)``, against the
values that broke them: NaN, the infinities, bools, huge and tiny numbers, ints too large for a float, and
values that are not numbers at all.

Each argument has a documented domain, written out below from the docstrings and the README (not read from
the code). A value inside it is accepted; a bool, a non-number, or a float where an int is meant is a
``TypeError``; any other value outside it is a ``ValueError``; and either error names the argument. Nothing
else may come out (an ``OverflowError``, say), and nothing may go wrong later instead.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from support import GENEROUS

from threadsched import LeasedExecutor, RetryPolicy, Scheduler
from threadsched.core.admission import TaskAdmissionController
from threadsched.core.contracts import (
    MAX_RESOURCE_UNITS,
    MAX_WEIGHT,
    MIN_WEIGHT,
    SchedulableTask,
    SchedulerResourceRequest,
    TaskGroupSpec,
)
from threadsched.core.queue import FairTaskQueue
from threadsched.core.retry import MAX_BACKOFF_S
from threadsched.core.values import TaskAdmissionConfig

EDGES: list[object] = [
    0, 1, -1, 0.5, -0.0, 5e-324, 1e-300, 1e-16, MIN_WEIGHT, MAX_WEIGHT, 1e300, 1.7976931348623157e308,
    10**12, 10**12 + 1, 2**63, 10**400, -(10**400), MAX_BACKOFF_S, MAX_BACKOFF_S + 1, threading.TIMEOUT_MAX,
    math.nan, math.inf, -math.inf, True, False,
]  # fmt: skip
NOT_NUMBERS: list[object] = ["1", b"1", [1], (1,), {1: 1}, object(), Fraction(1, 3), Decimal("1"), None]
VALUES = st.one_of(
    st.sampled_from(EDGES),
    st.floats(),  # NaN, the infinities, -0.0, subnormals and the largest floats among the rest
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),  # past what a float holds
    st.booleans(),
    st.sampled_from(NOT_NUMBERS),
)


@dataclass(frozen=True)
class Domain:
    """What an argument accepts: ``kind`` "int" (a float is a TypeError) or "real" (int or float), from ``low`` to
    ``high`` (each end open or closed), and None when ``nullable``."""

    kind: str
    low: float
    high: float
    low_open: bool = False
    high_open: bool = False
    nullable: bool = False

    def expected_error(self, value: object) -> type[Exception] | None:
        if value is None:
            return None if self.nullable else TypeError
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return TypeError
        if self.kind == "int" and not isinstance(value, int):
            return TypeError
        if math.isnan(value) if isinstance(value, float) else False:
            return ValueError
        above_low = value > self.low if self.low_open else value >= self.low
        below_high = value < self.high if self.high_open else value <= self.high
        return None if above_low and below_high else ValueError


UNITS = Domain("int", 1, MAX_RESOURCE_UNITS)
COUNT = Domain("int", 1, math.inf)
WEIGHT = Domain("real", MIN_WEIGHT, MAX_WEIGHT)
BACKOFF = Domain("real", 0, MAX_BACKOFF_S)
JITTER = Domain("real", 0, 1)
GROUP_TIMEOUT = Domain("real", 0, sys.float_info.max, low_open=True, nullable=True)


def _scheduler(**kwargs: Any) -> None:
    Scheduler(name="numeric", **kwargs).shutdown()


def _group(**kwargs: Any) -> None:
    with Scheduler(max_workers=1, resource_limits={"x": MAX_RESOURCE_UNITS}, name="numeric-group") as sched:
        sched.group("g", **kwargs)


def _leased_executor(max_workers: object) -> None:
    LeasedExecutor(max_workers).shutdown()  # type: ignore[arg-type]


ARGUMENTS: dict[str, tuple[Domain, Callable[[Any], object]]] = {
    "TaskGroupSpec.weight": (WEIGHT, lambda v: TaskGroupSpec("g", weight=v)),
    "TaskGroupSpec.admitted_limit": (Domain("int", 1, math.inf, nullable=True), lambda v: TaskGroupSpec("g", admitted_limit=v)),
    "SchedulerResourceRequest.amounts['x']": (UNITS, lambda v: SchedulerResourceRequest({"x": v})),
    "TaskAdmissionConfig.submission_capacity": (UNITS, lambda v: TaskAdmissionConfig(submission_capacity=v)),
    "TaskAdmissionConfig.resource_limits['x']": (UNITS, lambda v: TaskAdmissionConfig(4, {"x": v})),
    "RetryPolicy.max_attempts": (COUNT, lambda v: RetryPolicy(max_attempts=v)),
    "RetryPolicy.backoff_initial": (BACKOFF, lambda v: RetryPolicy(backoff_initial=v)),
    "RetryPolicy.backoff_max": (BACKOFF, lambda v: RetryPolicy(backoff_max=v)),
    "RetryPolicy.jitter": (JITTER, lambda v: RetryPolicy(jitter=v)),
    "max_workers": (Domain("int", 1, MAX_RESOURCE_UNITS, nullable=True), lambda v: _scheduler(max_workers=v)),
    "resource_limits['x']": (UNITS, lambda v: _scheduler(resource_limits={"x": v})),
    "weight": (WEIGHT, lambda v: _group(weight=v)),
    "admitted_limit": (Domain("int", 1, math.inf, nullable=True), lambda v: _group(admitted_limit=v)),
    "timeout": (GROUP_TIMEOUT, lambda v: _group(timeout=v)),
    "resources['x']": (UNITS, lambda v: _group(resources={"x": v})),
    "LeasedExecutor max_workers": (Domain("int", 1, MAX_RESOURCE_UNITS, nullable=True), _leased_executor),
}


def named(argument: str) -> list[str]:
    """The texts an error about ``argument`` must contain: its name (a group's resource amounts are named by
    the argument, ``resources``, and then by the contract's field, ``amounts['x']``)."""
    if argument == "resources['x']":
        return ["resources: ", "['x']"]
    return [argument.removeprefix("LeasedExecutor ")]


@pytest.mark.parametrize("argument", list(ARGUMENTS))
@settings(max_examples=200, deadline=None)
@given(value=VALUES)
def test_every_numeric_argument_is_accepted_in_its_domain_and_refused_naming_it_outside(argument: str, value: object) -> None:
    domain, build = ARGUMENTS[argument]
    expected = domain.expected_error(value)
    if expected is None:
        build(value)
        return
    with pytest.raises(expected) as raised:
        build(value)
    assert type(raised.value) is expected, raised.value  # not an OverflowError passing as a ValueError's sibling
    assert all(text in str(raised.value) for text in named(argument)), raised.value


SHUTDOWN_TIMEOUT = Domain("real", 0, math.inf, nullable=True)


@settings(max_examples=60, deadline=None)
@given(timeout=VALUES)
@example(timeout=math.nan)
@example(timeout=math.inf)
def test_a_shutdown_timeout_is_refused_before_anything_starts_or_waits_at_most_that_long(timeout: object) -> None:
    """A refused ``shutdown(timeout=...)`` leaves the scheduler running, its queued work untouched; an accepted
    one shuts down (here with nothing left to wait for, so at once) and reports clean."""
    sched = Scheduler(max_workers=1, name="numeric-shutdown")
    try:
        assert sched.submit(int, 1).result(timeout=GENEROUS) == 1
        expected = SHUTDOWN_TIMEOUT.expected_error(timeout)
        if expected is None:
            report = sched.shutdown(timeout=timeout)  # type: ignore[arg-type]
            # A short deadline may pass before the idle dispatcher has exited; nothing was left to cancel.
            assert (report.cancelled, report.still_running, report.active_leases) == (0, (), 0), report
            assert sched.shutdown().clean
            return
        with pytest.raises(expected) as raised:
            sched.shutdown(timeout=timeout)  # type: ignore[arg-type]
        assert type(raised.value) is expected and "timeout" in str(raised.value), raised.value
        assert sched.submit(int, 2).result(timeout=GENEROUS) == 2  # shutdown never began
    finally:
        sched.shutdown()


@settings(max_examples=25, deadline=None)
@given(timeout=st.sampled_from([1e-300, 5e-324, 1e300, sys.float_info.max, threading.TIMEOUT_MAX * 2]) | st.floats(1e-9, 1e308))
def test_an_accepted_group_timeout_never_breaks_the_dispatcher(timeout: float) -> None:
    """A group timeout far past what a lock can wait (1e300 s) crashed the dispatcher with OverflowError when it
    slept towards it; a tiny one times the task out at once. Either way the run ends, and cleanly."""
    started, gate = threading.Event(), threading.Event()

    def task() -> str:
        started.set()
        gate.wait(GENEROUS)
        return "ran"

    with Scheduler(max_workers=1, name="numeric-timeout") as sched:
        future = sched.group("g", timeout=timeout).submit(task)
        started.wait(GENEROUS)
        try:
            behind = sched.submit(int, 3)  # queued behind it: the dispatcher must still be there to admit it
        finally:
            gate.set()
        assert behind.result(timeout=GENEROUS) == 3
        future.exception(timeout=GENEROUS)  # ran, or timed out first: either way it resolved
    report = sched.shutdown()
    assert report.clean and report.dispatcher_error is None, report


@settings(max_examples=100, deadline=None)
@given(weight=VALUES)
def test_a_queue_takes_and_orders_a_group_of_any_accepted_weight(weight: object) -> None:
    if WEIGHT.expected_error(weight) is not None:
        return
    spec = TaskGroupSpec("g", weight=weight)  # type: ignore[arg-type]
    queue, controller = FairTaskQueue(), TaskAdmissionController(TaskAdmissionConfig(4))
    queue.enqueue([SchedulableTask(f"t{i}", None, spec) for i in range(3)])
    leases = controller.lease_fitting(queue, 4)
    assert [lease.item.task_id for lease in leases] == ["t0", "t1", "t2"]
    assert math.isfinite(queue.statistics().virtual_time)
