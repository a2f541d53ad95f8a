"""Who is running here: the context variables a running task sets, for code and layers that run inside it.

A leaf of the core: the request layer (and any user code) reads ``current_cancel_token()`` and
``current_task_correlation()`` from here without importing the scheduler's records. The records set
these variables around each call (``records.invoke_detached``).
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Protocol

from threadsched.core.futures import CancelToken

__all__ = ["CURRENT_CANCEL_TOKEN", "CURRENT_TASK", "RunningTask", "current_cancel_token", "current_task_correlation"]


class RunningTask(Protocol):
    """What a running task tells about itself (a ``records.TaskRecord``)."""

    @property
    def task_id(self) -> str: ...

    @property
    def correlation(self) -> Mapping[str, Any] | None: ...

    def execution_id(self) -> str: ...


CURRENT_CANCEL_TOKEN: contextvars.ContextVar[CancelToken | None] = contextvars.ContextVar(
    "threadsched_cancel_token", default=None
)

# (task, run id) of the task running in this context; the mapping is only built when someone asks.
CURRENT_TASK: contextvars.ContextVar[tuple[RunningTask, str | None] | None] = contextvars.ContextVar(
    "threadsched_current_task", default=None
)

_NO_TASK: Mapping[str, Any] = MappingProxyType({})


def current_cancel_token() -> CancelToken | None:
    """The cancel token of the task running in this thread (None outside a task)."""
    return CURRENT_CANCEL_TOKEN.get()


def current_task_correlation() -> Mapping[str, Any]:
    """Who is running here, for events of other layers (e.g. request admission): ``run_id``, ``task_id``,
    ``execution_id`` and the task's own correlation (``TaskGroup.submit_correlated``). Empty outside a task."""
    current = CURRENT_TASK.get()
    if current is None:
        return _NO_TASK
    task, run_id = current
    return MappingProxyType(
        {**(task.correlation or {}), "run_id": run_id, "task_id": task.task_id, "execution_id": task.execution_id()}
    )
