from __future__ import annotations

import contextvars
import gc
import weakref
from concurrent.futures import wait

from threadsched import Scheduler, current_cancel_token

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


def test_current_cancel_token_is_none_outside_a_task() -> None:
    assert current_cancel_token() is None


def test_task_sees_its_own_token_and_the_context_captured_at_submit() -> None:
    REQUEST_ID.set("from-submitter")
    with Scheduler(2, name="rec") as scheduler:
        future = scheduler.submit(lambda: (REQUEST_ID.get(), current_cancel_token()))
        request_id, token = future.result(timeout=20)
    assert request_id == "from-submitter"
    assert token is future.cancel_token
    assert current_cancel_token() is None  # the worker's context never leaks into the caller's


class Payload:
    pass


def test_finished_work_is_freed_by_reference_counting_alone() -> None:
    """No per-task cycle (future ↔ record ↔ payload): with the cyclic GC off, a finished task's
    payload and result die once the caller drops its future (checked after shutdown joined the worker,
    whose frames may still be returning when the waiter wakes, as with the stdlib pool)."""
    gc.disable()
    try:
        with Scheduler(2, name="rec2") as scheduler:
            payload = Payload()
            payload_ref = weakref.ref(payload)
            future = scheduler.submit(lambda p: Payload(), payload)
            wait([future], timeout=20)
            result_ref = weakref.ref(future.result())
        del payload, future
        assert payload_ref() is None
        assert result_ref() is None
    finally:
        gc.enable()


def test_current_task_correlation_names_the_running_task_and_its_correlation() -> None:
    from threadsched import Scheduler, current_task_correlation

    assert dict(current_task_correlation()) == {}
    with Scheduler(max_workers=1, run_id="run-9") as scheduler:
        plain = scheduler.submit(lambda: dict(current_task_correlation())).result()
        tagged = scheduler.group("g").submit_correlated({"column": "c"}, lambda: dict(current_task_correlation())).result()
    assert plain == {"run_id": "run-9", "task_id": "t1", "execution_id": "t1#1"}
    assert tagged == {"column": "c", "run_id": "run-9", "task_id": "t2", "execution_id": "t2#1"}


def test_failed_work_is_freed_by_reference_counting_alone() -> None:
    """A failing task's traceback must not lead back to its record or the pool's work item (a cycle)."""

    def fail(payload: Payload) -> None:
        raise ValueError("boom")

    gc.disable()
    try:
        with Scheduler(2, name="rec3") as scheduler:
            payload = Payload()
            payload_ref = weakref.ref(payload)
            future = scheduler.submit(fail, payload)
            wait([future], timeout=20)
            error = future.exception()
            assert isinstance(error, ValueError) and error.__traceback__ is not None  # the traceback is kept
        del payload, future, error
        assert payload_ref() is None
    finally:
        gc.enable()
