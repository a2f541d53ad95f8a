"""``Scheduler``: the public face of the leased-admission core.

It owns the fair queue, the admission controller, the executor and the dispatcher core, and
validates everything a user hands it at ``group()``/``submit()`` time.

Lock order: ``Scheduler._lock`` (group registry only) is a leaf; see ``dispatcher`` for the rest.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from types import MappingProxyType, TracebackType
from typing import Any

from threadsched.core.admission import TaskAdmissionController
from threadsched.core.contracts import SUBMISSION, SchedulerResourceRequest, TaskGroupSpec, real_number, shown, whole_units
from threadsched.core.dispatcher import DispatcherCore
from threadsched.core.emitter import EventEmitter
from threadsched.core.events import EventSink
from threadsched.core.futures import TaskFuture
from threadsched.core.launch import Launcher, adapt_executor, holder_launcher, launcher_for
from threadsched.core.policy import TaskAdmissionPolicy
from threadsched.core.queue import FairTaskQueue
from threadsched.core.records import GroupSettings
from threadsched.core.retry import NO_RETRY, RetryPolicy
from threadsched.core.values import SchedulerSnapshot, SchedulerStatistics, ShutdownReport, TaskAdmissionConfig

DEFAULT_GROUP = "default"


def default_max_workers() -> int:
    """The stdlib ``ThreadPoolExecutor`` default: ``min(32, cpu_count + 4)``."""
    return min(32, (os.cpu_count() or 1) + 4)


SubmitGate = Callable[[GroupSettings, Callable[..., Any], tuple[Any, ...], dict[str, Any], Mapping[str, Any] | None], TaskFuture]
"""What a ``LeasedExecutor`` puts in front of its groups' submits: its shutdown checks, then the core's submit."""


class TaskGroup:
    """A handle for submitting into one fairness group with fixed settings (``Scheduler.group``,
    ``LeasedExecutor.group``)."""

    __slots__ = ("_core", "_gate", "settings")

    def __init__(self, core: DispatcherCore, settings: GroupSettings, gate: SubmitGate | None = None) -> None:
        # The dispatcher core, never the Scheduler: the scheduler holds its groups, and a group holding
        # the scheduler back would make a cycle that only the cyclic collector could free.
        self._core = core
        self._gate = gate
        self.settings = settings

    @property
    def key(self) -> Hashable:
        return self.settings.spec.key

    @property
    def weight(self) -> float:
        return self.settings.spec.weight

    @property
    def admitted_limit(self) -> int | None:
        return self.settings.spec.admitted_limit

    @property
    def resources(self) -> Mapping[str, int]:
        """Every task's resource request, its ``submission`` slot included."""
        return self.settings.resource_request.amounts

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskFuture:
        return self._submit(fn, args, kwargs, None)

    def submit_correlated(
        self, correlation: Mapping[str, Any], fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> TaskFuture:
        """``submit``, with ``correlation`` (e.g. row group and column; never row values or secrets) copied
        into every event of this task, so a producer's own events join the scheduler's."""
        if not isinstance(correlation, Mapping):
            raise TypeError(f"correlation must be a mapping, got {correlation!r}")
        return self._submit(fn, args, kwargs, MappingProxyType(dict(correlation)))

    def _submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], correlation: Mapping[str, Any] | None
    ) -> TaskFuture:
        if self._gate is not None:
            return self._gate(self.settings, fn, args, kwargs, correlation)
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r} ({type(fn).__name__})")
        return self._core.submit(self.settings, fn, args, kwargs, correlation)

    def __repr__(self) -> str:
        return (
            f"<TaskGroup {self.key!r} weight={self.weight} admitted_limit={self.admitted_limit} resources={dict(self.resources)}>"
        )


class Scheduler:
    """Runs blocking callables on a thread pool, admitting each only once its lease is held."""

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        resource_limits: Mapping[str, int] | None = None,
        policy: TaskAdmissionPolicy | None = None,
        executor: Executor | None = None,
        events: EventSink | None = None,
        name: str = "threadsched",
        run_id: str | None = None,
        owns_executor: bool | None = None,
        _holder_pool: ThreadPoolExecutor | None = None,
    ) -> None:
        """Every argument is checked here, before anything starts: a wrong type is a ``TypeError`` and a
        wrong value a ``ValueError``, each naming the argument. ``max_workers``: None or an int from 1 to
        ``MAX_RESOURCE_UNITS``; ``resource_limits``: a mapping of non-empty str to an int in that range;
        ``policy``: None or an object with ``TaskAdmissionPolicy``'s three methods; ``executor``: None, an
        ``Executor`` or what a registered adapter accepts; ``events``: None or an object with ``emit(event)``;
        ``name``: a non-empty str; ``run_id``: None or a str; ``owns_executor`` (default: True only for the
        built-in pool): None or a bool, whether to shut ``executor`` down when the scheduler's work is done.
        ``_holder_pool`` (``LeasedExecutor`` only): the pool that holds this scheduler and runs its tasks on
        its own machinery; it is referenced weakly (no cycle)."""
        if max_workers is not None:
            whole_units("max_workers", max_workers)
        if resource_limits is not None and not isinstance(resource_limits, Mapping):
            raise TypeError(f"resource_limits must be a mapping of resource name to units, or None, got {resource_limits!r}")
        if not isinstance(name, str):
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        if not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        if executor is not None:
            executor = adapt_executor(executor)  # a distributed.Client runs the tasks on its cluster
        # A class passes for a sink by its methods (functions) and would fail at its first emit.
        if events is not None and (isinstance(events, type) or not callable(getattr(events, "emit", None))):
            raise TypeError(f"events must have an emit(event) method, got {events!r}")
        if run_id is not None and not isinstance(run_id, str):
            raise TypeError(f"run_id must be a str or None, got {run_id!r}")
        if owns_executor is not None and not isinstance(owns_executor, bool):
            raise TypeError(f"owns_executor must be a bool or None, got {owns_executor!r}")
        capacity = max_workers or _executor_workers(executor) or default_max_workers()
        self._controller = TaskAdmissionController(
            TaskAdmissionConfig(submission_capacity=capacity, resource_limits=dict(resource_limits or {})), policy
        )
        self._queue = FairTaskQueue()
        launcher: Launcher
        if _holder_pool is not None:
            launcher, owns_executor = holder_launcher(_holder_pool), True
        elif executor is None:
            pool = ThreadPoolExecutor(max_workers=capacity, thread_name_prefix=f"{name}-worker")
            launcher, owns_executor = launcher_for(pool, owned=True), True
        else:
            if owns_executor is None:
                owns_executor = False
            launcher = launcher_for(executor, owned=owns_executor)
        self._name = name
        self._lock = threading.Lock()
        self._groups: dict[Hashable, TaskGroup] = {}
        self._emitter = EventEmitter(events, run_id)
        self._core = DispatcherCore(
            self._queue,
            self._controller,
            launcher,
            owns_executor=owns_executor,
            pin_executor=_holder_pool is not None,
            emitter=self._emitter,
            name=name,
        )
        # Like the stdlib pool: a scheduler dropped without shutdown() finishes its work and stops
        # its threads instead of leaking them (the finalizer holds the core, never the scheduler).
        weakref.finalize(self, self._core.begin_shutdown, False)
        self._default_group = self.group(DEFAULT_GROUP)

    @property
    def submit_capacity(self) -> int:
        return self._controller.resource_limits[SUBMISSION]

    def group(
        self,
        key: Hashable,
        *,
        weight: float = 1.0,
        admitted_limit: int | None = None,
        resources: Mapping[str, int] | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> TaskGroup:
        """The group ``key``; calling again with the same settings returns the same group, other settings
        for an existing group raise ``ValueError``.

        ``weight``: a number from ``MIN_WEIGHT`` (1e-6) to ``MAX_WEIGHT`` (1e6); ``admitted_limit``: None or
        an int >= 1; ``resources``: None or a mapping of resource name to an int of units, each within its
        limit; ``retry``: None or a ``RetryPolicy``; ``timeout``: None or a finite number of seconds > 0.
        A wrong type is a ``TypeError``, a wrong value a ``ValueError``, each naming the argument."""
        spec = TaskGroupSpec(key, weight, admitted_limit)
        if resources is not None and not isinstance(resources, Mapping):
            raise TypeError(f"resources must be a mapping of resource name to units, or None, got {resources!r}")
        try:
            resource_request = SchedulerResourceRequest(resources)
        except (TypeError, ValueError) as error:
            raise type(error)(f"resources: {error}") from None  # the argument's name, then the contract's words
        self._controller.validate_resource_request(resource_request)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy or None, got {retry!r}")
        # Compared before it is converted: NaN fails the comparison, and an int past the largest float
        # (which float() would turn into an OverflowError) is refused like an infinity.
        if timeout is not None and not 0 < real_number("timeout", timeout) <= sys.float_info.max:
            raise ValueError(f"timeout must be a finite number > 0 or None, got {shown(timeout)}")
        settings = GroupSettings(spec, resource_request, retry or NO_RETRY, None if timeout is None else float(timeout))
        with self._lock:
            existing = self._groups.get(key)
            if existing is None:
                existing = self._groups[key] = TaskGroup(self._core, settings)
        if existing.settings != settings:
            raise ValueError(f"group {key!r} already exists with different settings: {existing.settings!r} != {settings!r}")
        return existing

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskFuture:
        """Submit into the default group."""
        return self._default_group.submit(fn, *args, **kwargs)

    def snapshot(self) -> SchedulerSnapshot:
        running, overdue, counters = self._core.state()
        return SchedulerSnapshot(
            queue=self._queue.view(),
            admission=self._controller.view(),
            running=running,
            overdue=overdue,
            counters=MappingProxyType(counters),
        )

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False, timeout: float | None = None) -> ShutdownReport:
        """Stop accepting work; like ``Executor.shutdown`` but never waits past ``timeout``.

        ``timeout``: seconds, a number >= 0; None or ``math.inf`` is no deadline (so is anything above
        ``threading.TIMEOUT_MAX``, about 292 years, which no wait can take). It is checked before shutdown
        begins: NaN or a negative is a ``ValueError``, a bool or a non-number a ``TypeError``, and a refused
        call leaves the scheduler running and accepting work.

        With a deadline, work still queued at it is cancelled. Workers still running at it are reported in
        ``ShutdownReport.still_running`` (``overdue`` holds only those past their own group's ``timeout``);
        they keep their leases, and their threads end (and the built-in pool with them) once they return.
        """
        deadline = _shutdown_deadline(timeout)
        cancelled_before = self._counter("cancelled")
        self._core.begin_shutdown(cancel_futures)
        finished = False
        if wait:
            finished = self._core.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if not finished:
                self._core.cancel_pending_work()
            elif self._core.owns_executor:
                self._core.launcher.shutdown(True)
        # Two reads, not one moment: a task returning between them may be in one and not the other. Each is
        # exact for itself, and active_leases is counted from the same read as still_running.
        still_running = self._controller.leased_task_ids()
        _running, overdue, counters = self._core.state()
        crash = self._core.crash
        report = ShutdownReport(
            clean=finished and not overdue and not still_running and crash is None,
            cancelled=counters["cancelled"] - cancelled_before,
            overdue=overdue,
            active_leases=len(still_running),
            dispatcher_error=crash,
            still_running=still_running,
        )
        if finished:
            self._controller.shutdown()
            # A buffering sink (JsonlEventSink) has every event of this scheduler on disk once
            # shutdown(wait=True) returns; closing it is its owner's call (several schedulers may share it).
            self._emitter.flush(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return report

    def _counter(self, name: str) -> int:
        return self._core.state()[2][name]

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.shutdown(wait=True)

    def statistics(self) -> SchedulerStatistics:
        """Counts of this scheduler, its queue and its admission (frozen values; ``snapshot()`` has the views)."""
        running, overdue, counters = self._core.state()
        queue = self._queue.statistics()
        admission = self._controller.statistics()
        return SchedulerStatistics(
            name=self._name,
            capacity=self.submit_capacity,
            queued=queue.queued_total,
            running=running,
            active_leases=admission.active_leases,
            overdue=len(overdue),
            counters=MappingProxyType(counters),
            queue=queue,
            admission=admission,
        )

    def __repr__(self) -> str:
        queued, running, overdue = self._core.glance()
        return (
            f"<Scheduler {self._name!r} capacity={self.submit_capacity} queued={queued} running={running} "
            f"leases={self._controller.active_lease_count} overdue={overdue}>"
        )


def _shutdown_deadline(timeout: object) -> float | None:
    """The monotonic deadline of ``shutdown(timeout=...)``, or None for no deadline; raises on a bad value."""
    if timeout is None:
        return None
    seconds = real_number("timeout", timeout)
    if not seconds >= 0:  # NaN as well as a negative
        raise ValueError(f"timeout must be a number >= 0, math.inf or None, got {shown(timeout)}")
    if seconds >= threading.TIMEOUT_MAX:  # inf, and waits no lock or join can take: no deadline
        return None
    return time.monotonic() + seconds


def _executor_workers(executor: Executor | None) -> int | None:
    workers = getattr(executor, "_max_workers", None)
    return workers if isinstance(workers, int) and workers > 0 else None
