"""threadsched: run many blocking jobs on a thread pool with admission leases, fairness and evidence.

The public face: ``Scheduler`` and its ``TaskGroup``s, the drop-in ``LeasedExecutor``, futures and
cancellation, retries, errors, snapshots and statistics, event sinks and the built-in admission policies.
Writing a policy of your own: ``threadsched.policies`` has the vocabulary (``TaskAdmissionPolicy``,
``PolicyDecision``, the views). The layers built on the core are packages of their own and load only
when imported: ``threadsched.requests`` (request admission for model calls), ``threadsched.mock``
(simulated endpoints), ``threadsched.engine`` (datasets from recipes), ``threadsched.report`` and
``threadsched.backends``.

``import threadsched`` loads only the core and the policies. The event log (``JsonlEventSink``,
``read_events``) needs ``concurrent-log-handler`` and is imported on first access of either name.
"""

from __future__ import annotations

import importlib
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from threadsched.core.context import current_cancel_token, current_task_correlation
from threadsched.core.errors import AdmissionStalledError, TaskTimeoutError
from threadsched.core.events import EventSink, FanOutEventSink, MemoryEventSink, SchedulerEvent
from threadsched.core.futures import CancelToken, TaskFuture
from threadsched.core.launch import register_executor_adapter
from threadsched.core.leased_executor import LeasedExecutor
from threadsched.core.retry import RetryPolicy
from threadsched.core.scheduler import Scheduler, TaskGroup
from threadsched.core.values import SchedulerSnapshot, SchedulerStatistics, ShutdownReport
from threadsched.policies import (
    POLICY_NAMES,
    BoundedBorrowConfig,
    BoundedBorrowPolicy,
    DominantResourceFairPolicy,
    StrictFairPolicy,
    make_policy,
)

if TYPE_CHECKING:
    # Type checkers and IDEs see the lazy names as ordinary imports; at runtime __getattr__ provides them.
    from threadsched.core.event_log import JsonlEventSink, read_events

__version__ = "0.1.0"

__all__ = [
    "POLICY_NAMES",
    "AdmissionStalledError",
    "BoundedBorrowConfig",
    "BoundedBorrowPolicy",
    "CancelToken",
    "DominantResourceFairPolicy",
    "EventSink",
    "FanOutEventSink",
    "JsonlEventSink",
    "LeasedExecutor",
    "MemoryEventSink",
    "RetryPolicy",
    "Scheduler",
    "SchedulerEvent",
    "SchedulerSnapshot",
    "SchedulerStatistics",
    "ShutdownReport",
    "StrictFairPolicy",
    "TaskFuture",
    "TaskGroup",
    "TaskTimeoutError",
    "__version__",
    "current_cancel_token",
    "current_task_correlation",
    "make_policy",
    "read_events",
]

# Public name -> submodule that defines it, imported on first access (PEP 562).
_LAZY_EXPORTS: dict[str, str] = {
    "JsonlEventSink": "threadsched.core.event_log",
    "read_events": "threadsched.core.event_log",
}


def __getattr__(name: str) -> Any:
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses are plain attribute lookups, no longer through here
    return value


def __dir__() -> list[str]:
    # The lazy names are part of the namespace before their first access (dir(), star-imports, completion).
    return sorted(set(globals()) | set(_LAZY_EXPORTS))


def _dask_client_executor(candidate: object) -> Executor | None:
    """A ``distributed.Client`` as an executor that runs the tasks on its cluster (the ``dask`` extra)."""
    from threadsched.backends.dask import DaskExecutor, is_dask_client  # neither imports distributed

    return DaskExecutor(candidate) if is_dask_client(candidate) else None


# The core takes any Executor and knows no backend; the package wires the one it ships.
register_executor_adapter(_dask_client_executor)
