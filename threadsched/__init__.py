"""threadsched: run many blocking jobs on a thread pool with admission leases, fairness and evidence.

``import threadsched`` loads only the core (scheduler, admission, policies, queue, futures, events). The
event log (``JsonlEventSink``, ``read_events``) needs ``concurrent-log-handler`` and is imported on first
access of either name; the engine, request admission, report and backends subpackages load only when
imported themselves.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from threadsched.core.admission import (
    ReleaseResult,
    TaskAdmissionBlockSummary,
    TaskAdmissionConfig,
    TaskAdmissionController,
    TaskAdmissionDenied,
    TaskAdmissionLease,
    TaskAdmissionView,
)
from threadsched.core.contracts import SUBMISSION, SchedulableTask, SchedulerResourceRequest, TaskGroupSpec
from threadsched.core.errors import AdmissionStalledError, TaskTimeoutError
from threadsched.core.events import EventSink, FanOutEventSink, MemoryEventSink, SchedulerEvent
from threadsched.core.futures import CancelToken, TaskFuture
from threadsched.core.leased_executor import Lane, LeasedExecutor
from threadsched.core.policy import PolicyDecision, PolicyStateDelta, StrictFairPolicy, TaskAdmissionPolicy
from threadsched.core.queue import FairTaskQueue, QueueSelection, QueueView
from threadsched.core.records import SchedulerSnapshot, ShutdownReport, current_cancel_token, current_task_correlation
from threadsched.core.retry import RetryPolicy
from threadsched.core.scheduler import Scheduler, TaskGroup
from threadsched.policies import POLICY_NAMES, make_policy
from threadsched.policies.bounded_borrow import BoundedBorrowConfig, BoundedBorrowPolicy
from threadsched.policies.drf import DominantResourceFairPolicy
from threadsched.policies.provider_aware import ProviderAwarePolicy, ProviderPressure

if TYPE_CHECKING:
    # Type checkers and IDEs see the lazy names as ordinary imports; at runtime __getattr__ provides them.
    from threadsched.core.event_log import JsonlEventSink, read_events

__version__ = "0.1.0"

__all__ = [
    "POLICY_NAMES",
    "SUBMISSION",
    "BoundedBorrowConfig",
    "BoundedBorrowPolicy",
    "DominantResourceFairPolicy",
    "ProviderAwarePolicy",
    "ProviderPressure",
    "make_policy",
    "AdmissionStalledError",
    "CancelToken",
    "EventSink",
    "FairTaskQueue",
    "FanOutEventSink",
    "JsonlEventSink",
    "Lane",
    "LeasedExecutor",
    "MemoryEventSink",
    "PolicyDecision",
    "PolicyStateDelta",
    "QueueSelection",
    "QueueView",
    "ReleaseResult",
    "RetryPolicy",
    "SchedulableTask",
    "Scheduler",
    "SchedulerEvent",
    "SchedulerResourceRequest",
    "SchedulerSnapshot",
    "ShutdownReport",
    "StrictFairPolicy",
    "TaskAdmissionBlockSummary",
    "TaskAdmissionConfig",
    "TaskAdmissionController",
    "TaskAdmissionDenied",
    "TaskAdmissionLease",
    "TaskAdmissionPolicy",
    "TaskAdmissionView",
    "TaskFuture",
    "TaskGroup",
    "TaskGroupSpec",
    "TaskTimeoutError",
    "__version__",
    "current_cancel_token",
    "current_task_correlation",
    "read_events",
]

# Public name -> submodule that defines it, imported on first access (PEP 562).
_LAZY_EXPORTS: dict[str, str] = {
    "JsonlEventSink": ".core.event_log",
    "read_events": ".core.event_log",
}


def __getattr__(name: str) -> Any:
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later accesses are plain attribute lookups, no longer through here
    return value


def __dir__() -> list[str]:
    # The lazy names are part of the namespace before their first access, as they were when imported eagerly.
    return sorted(set(globals()) | set(_LAZY_EXPORTS))
