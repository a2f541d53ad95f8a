"""threadsched: run many blocking jobs on a thread pool with admission leases, fairness and evidence."""

from __future__ import annotations

from .admission import (
    ReleaseResult,
    TaskAdmissionBlockSummary,
    TaskAdmissionConfig,
    TaskAdmissionController,
    TaskAdmissionDenied,
    TaskAdmissionLease,
    TaskAdmissionView,
)
from .contracts import SUBMISSION, SchedulableTask, SchedulerResourceRequest, TaskGroupSpec
from .errors import AdmissionStalledError, TaskTimeoutError
from .event_log import JsonlEventSink, read_events
from .events import EventSink, FanOutEventSink, MemoryEventSink, SchedulerEvent
from .futures import CancelToken, TaskFuture
from .leased_executor import Lane, LeasedExecutor
from .policies import POLICY_NAMES, make_policy
from .policies.bounded_borrow import BoundedBorrowConfig, BoundedBorrowPolicy
from .policies.drf import DominantResourceFairPolicy
from .policies.provider_aware import ProviderAwarePolicy, ProviderPressure
from .policy import PolicyDecision, PolicyStateDelta, StrictFairPolicy, TaskAdmissionPolicy
from .queue import FairTaskQueue, QueueSelection, QueueView
from .records import SchedulerSnapshot, ShutdownReport, current_cancel_token, current_task_correlation
from .retry import RetryPolicy
from .scheduler import Scheduler, TaskGroup

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
