"""One behaviour suite run against the stdlib ``ThreadPoolExecutor`` and ``LeasedExecutor``.

Every test here must pass unchanged for both: that is the facade's contract. Gated functions wait on an
``Event`` that the test sets itself (never a sleep), and no test asserts how long anything took.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    CancelledError,
    Executor,
    Future,
    as_completed,
    wait,
)
from concurrent.futures.thread import BrokenThreadPool
from pathlib import Path
from typing import Any

import pytest
from support import EXECUTOR_KINDS as KINDS

WAIT = 30.0  # generous bound on every blocking call, so a bug fails instead of hanging
REPO = Path(__file__).resolve().parent.parent

ExecutorFactory = Callable[..., Executor]


@pytest.fixture(params=list(KINDS), ids=list(KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_executor(kind: str) -> Iterator[ExecutorFactory]:
    """Builds executors of the parametrized kind; their worker threads are named ``contract-<kind>-worker_N``
    so the leaked-thread check covers both, and every one is shut down at teardown."""
    created: list[Executor] = []

    def make(*args: Any, **kwargs: Any) -> Executor:
        kwargs.setdefault("thread_name_prefix", f"contract-{kind}-worker")
        executor: Executor = KINDS[kind](*args, **kwargs)
        created.append(executor)
        return executor

    yield make
    for executor in created:
        executor.shutdown(wait=True)


class Gate:
    """A gated job: ``started`` is set once it runs, it returns its argument once ``release`` is set."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, value: Any = None) -> Any:
        self.started.set()
        assert self.release.wait(WAIT), "gate never released"
        return value


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.release.set()  # a failing test must not leave a worker blocked


def _worker_names(prefix: str) -> set[str]:
    return {thread.name for thread in threading.enumerate() if thread.name.startswith(prefix)}


# -- submit, results, exceptions -----------------------------------------------------------------


def test_submit_returns_a_future_with_the_result(make_executor: ExecutorFactory) -> None:
    executor = make_executor(max_workers=2)
    future = executor.submit(pow, 2, 10)
    assert isinstance(future, Future)
    assert future.result(timeout=WAIT) == 1024
    assert executor.submit(dict, key="kw").result(timeout=WAIT) == {"key": "kw"}


def test_exception_propagates_to_the_future(make_executor: ExecutorFactory) -> None:
    executor = make_executor(max_workers=2)
    error = ValueError("boom")

    def fail() -> None:
        raise error

    future = executor.submit(fail)
    assert future.exception(timeout=WAIT) is error
    with pytest.raises(ValueError, match="boom"):
        future.result(timeout=WAIT)
    # The stdlib accepts a non-callable and fails the future with the call's TypeError.
    assert isinstance(executor.submit(None).exception(timeout=WAIT), TypeError)  # type: ignore[arg-type]


# -- map ------------------------------------------------------------------------------------------


def test_map_yields_results_in_order_and_accepts_timeout_and_chunksize(make_executor: ExecutorFactory) -> None:
    executor = make_executor(max_workers=3)
    assert list(executor.map(pow, range(20), [2] * 20, timeout=WAIT, chunksize=4)) == [i**2 for i in range(20)]
    assert list(executor.map(str, [])) == []


def test_map_reraises_the_first_failure_in_order(make_executor: ExecutorFactory) -> None:
    executor = make_executor(max_workers=2)
    results = executor.map(lambda x: 10 // x, [5, 2, 0, 1])
    assert next(results) == 2
    assert next(results) == 5
    with pytest.raises(ZeroDivisionError):
        next(results)


def test_map_timeout_raises_and_cancels_the_rest(make_executor: ExecutorFactory, gate: Gate) -> None:
    executor = make_executor(max_workers=1)
    ran: list[int] = []

    def job(x: int) -> int:
        ran.append(x)
        return int(gate(x))

    results = executor.map(job, range(4), timeout=0.05)
    with pytest.raises(TimeoutError):
        next(results)  # the gate is only released below, so this cannot finish in time
    gate.release.set()
    executor.shutdown(wait=True)
    assert ran == [0]  # the generator's cleanup cancelled everything not yet started


# -- cancellation -----------------------------------------------------------------------------------


def test_cancel_a_future_that_has_not_started(make_executor: ExecutorFactory, gate: Gate) -> None:
    executor = make_executor(max_workers=1)
    running = executor.submit(gate, "first")
    assert gate.started.wait(WAIT)
    ran = threading.Event()
    pending = executor.submit(ran.set)
    assert pending.cancel() is True
    assert pending.cancelled() and pending.done()
    with pytest.raises(CancelledError):
        pending.result(timeout=WAIT)
    gate.release.set()
    assert running.result(timeout=WAIT) == "first"
    executor.shutdown(wait=True)
    assert not ran.is_set()


def test_cancel_of_a_running_future_returns_false(make_executor: ExecutorFactory, gate: Gate) -> None:
    executor = make_executor(max_workers=1)
    running = executor.submit(gate, "value")
    assert gate.started.wait(WAIT)
    assert running.running()
    assert running.cancel() is False
    assert not running.cancelled()
    gate.release.set()
    assert running.result(timeout=WAIT) == "value"


# -- wait / as_completed / callbacks ----------------------------------------------------------------


def test_wait_first_and_all_completed(make_executor: ExecutorFactory, gate: Gate) -> None:
    executor = make_executor(max_workers=2)
    slow = executor.submit(gate, "slow")
    quick = executor.submit(str, "quick")
    done, not_done = wait([slow, quick], timeout=WAIT, return_when=FIRST_COMPLETED)
    assert done == {quick} and not_done == {slow}
    gate.release.set()
    done, not_done = wait([slow, quick], timeout=WAIT, return_when=ALL_COMPLETED)
    assert done == {slow, quick} and not not_done


def test_as_completed_yields_in_completion_order(make_executor: ExecutorFactory, gate: Gate) -> None:
    executor = make_executor(max_workers=2)
    slow = executor.submit(gate, "slow")
    quick = executor.submit(str, "quick")
    seen = []
    for future in as_completed([slow, quick], timeout=WAIT):
        seen.append(future.result())
        gate.release.set()  # only now can the slow one finish
    assert seen == ["quick", "slow"]


def test_done_callbacks_run_once_also_when_added_after_completion(make_executor: ExecutorFactory, gate: Gate) -> None:
    executor = make_executor(max_workers=1)
    calls: list[tuple[str, Future[Any]]] = []
    future = executor.submit(gate, 7)
    future.add_done_callback(lambda f: calls.append(("before", f)))

    def raising(f: Future[Any]) -> None:
        raise RuntimeError("callback errors are logged, never raised")

    future.add_done_callback(raising)
    gate.release.set()
    assert future.result(timeout=WAIT) == 7
    executor.shutdown(wait=True)  # the "before" callback has surely run once the worker is joined
    future.add_done_callback(lambda f: calls.append(("after", f)))  # runs at once, in this thread
    assert calls == [("before", future), ("after", future)]


# -- shutdown ---------------------------------------------------------------------------------------


def test_context_manager_shuts_down_and_joins(make_executor: ExecutorFactory, kind: str) -> None:
    with make_executor(max_workers=3) as executor:
        futures = [executor.submit(pow, i, 2) for i in range(10)]
    assert all(future.done() for future in futures)
    assert [future.result() for future in futures] == [i**2 for i in range(10)]
    assert not _worker_names(f"contract-{kind}-worker")


def test_submit_after_shutdown_raises_runtime_error(make_executor: ExecutorFactory) -> None:
    executor = make_executor(max_workers=1)
    executor.shutdown(wait=True)
    with pytest.raises(RuntimeError) as raised:
        executor.submit(pow, 2, 2)
    assert str(raised.value) == "cannot schedule new futures after shutdown"
    executor.shutdown(wait=True)  # a second shutdown is harmless


def test_shutdown_cancel_futures_cancels_pending_work(make_executor: ExecutorFactory, gate: Gate) -> None:
    executor = make_executor(max_workers=1)
    running = executor.submit(gate, "running")
    assert gate.started.wait(WAIT)
    ran = threading.Event()
    pending = [executor.submit(ran.set) for _ in range(3)]
    executor.shutdown(wait=False, cancel_futures=True)
    gate.release.set()
    assert running.result(timeout=WAIT) == "running"
    executor.shutdown(wait=True)
    # Checked after the join: the stdlib leaves these CANCELLED but never notified (so wait() would not
    # count them as done), and the leased one may cancel a task that was in transit to its queue a moment later.
    assert all(future.cancelled() for future in pending)
    assert not ran.is_set()


def test_shutdown_without_cancel_runs_pending_work(make_executor: ExecutorFactory, gate: Gate) -> None:
    executor = make_executor(max_workers=1)
    running = executor.submit(gate, "running")
    assert gate.started.wait(WAIT)
    pending = [executor.submit(pow, i, 2) for i in range(3)]
    executor.shutdown(wait=False)
    gate.release.set()
    executor.shutdown(wait=True)
    assert running.result() == "running"
    assert [future.result() for future in pending] == [0, 1, 4]


# -- construction, initializer, threads -------------------------------------------------------------


@pytest.mark.parametrize("max_workers", [0, -1])
def test_max_workers_must_be_positive(kind: str, max_workers: int) -> None:
    with pytest.raises(ValueError) as raised:
        KINDS[kind](max_workers=max_workers)
    assert str(raised.value) == "max_workers must be greater than 0"


def test_initializer_must_be_callable(kind: str) -> None:
    with pytest.raises(TypeError) as raised:
        KINDS[kind](max_workers=1, initializer=42)
    assert str(raised.value) == "initializer must be a callable"


def test_initializer_runs_once_per_worker_thread_with_initargs(make_executor: ExecutorFactory) -> None:
    initialized: list[tuple[str, str, int]] = []
    lock = threading.Lock()

    def initializer(tag: str, number: int) -> None:
        with lock:
            initialized.append((threading.current_thread().name, tag, number))

    executor = make_executor(max_workers=2, initializer=initializer, initargs=("tag", 3))
    both_running = threading.Barrier(2, timeout=WAIT)

    def job() -> str:
        both_running.wait()  # forces two worker threads
        return threading.current_thread().name

    names = {future.result(timeout=WAIT) for future in [executor.submit(job), executor.submit(job)]}
    assert len(names) == 2
    assert sorted(initialized) == sorted((name, "tag", 3) for name in names)


def test_failing_initializer_breaks_the_pool(make_executor: ExecutorFactory) -> None:
    def initializer() -> None:
        raise ValueError("initializer failed")

    executor = make_executor(max_workers=1, initializer=initializer)
    pending = executor.submit(pow, 2, 3)
    assert isinstance(pending.exception(timeout=WAIT), BrokenThreadPool)
    with pytest.raises(BrokenThreadPool, match="A thread initializer failed"):
        executor.submit(pow, 2, 3)


def test_idle_threads_are_reused(make_executor: ExecutorFactory, kind: str) -> None:
    prefix = f"contract-{kind}-reuse-worker"
    executor = make_executor(max_workers=4, thread_name_prefix=prefix)
    ran_on = {executor.submit(lambda: threading.current_thread().name).result(timeout=WAIT) for _ in range(6)}
    assert len(ran_on) == 1
    assert len(_worker_names(prefix)) == 1


# -- references -------------------------------------------------------------------------------------


class Payload:
    def __call__(self, other: Payload) -> Payload:
        return Payload()


def test_no_references_are_kept_to_finished_work(make_executor: ExecutorFactory) -> None:
    executor = make_executor(max_workers=1)
    gc.disable()  # reference counting alone must free them
    try:
        fn, arg = Payload(), Payload()
        fn_ref, arg_ref = weakref.ref(fn), weakref.ref(arg)
        future = executor.submit(fn, arg)
        result_ref = weakref.ref(future.result(timeout=WAIT))
        del fn, arg, future
        # The single worker has finished with the first item once it has run the next one.
        executor.submit(int).result(timeout=WAIT)
        assert fn_ref() is None and arg_ref() is None and result_ref() is None
    finally:
        gc.enable()


def test_no_references_are_kept_to_failed_work(make_executor: ExecutorFactory) -> None:
    executor = make_executor(max_workers=1)
    arg = Payload()
    arg_ref = weakref.ref(arg)

    def fail(payload: Payload) -> None:
        raise ValueError("failed")

    gc.disable()  # reference counting alone must free them, as for successful work
    try:
        future = executor.submit(fail, arg)
        assert isinstance(future.exception(timeout=WAIT), ValueError)
        del arg, future
        executor.submit(int).result(timeout=WAIT)  # the worker has moved on from the failed item
        assert arg_ref() is None
    finally:
        gc.enable()


# -- interpreter exit -------------------------------------------------------------------------------

_PRELUDE = """
import atexit, sys, threading
from concurrent.futures import ThreadPoolExecutor
from threadsched.core.leased_executor import LeasedExecutor

executor = {"stdlib": ThreadPoolExecutor, "leased": LeasedExecutor}[sys.argv[1]](max_workers=1)

def late_submit():
    try:
        executor.submit(print, "late ran")
    except RuntimeError as error:
        print("late error:", error, flush=True)
"""

_PENDING_AT_EXIT = """
gate = threading.Event()

def job(i):
    gate.wait()
    print(f"ran {i}", flush=True)

futures = [executor.submit(job, i) for i in range(4)]
if sys.argv[2] == "drop":
    del futures, executor  # dropped without shutdown: the pending work must still run
else:
    atexit.register(late_submit)
gate.set()
"""


def _run_script(body: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    script = textwrap.dedent(_PRELUDE) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=WAIT, cwd=REPO, env=env)


@pytest.mark.parametrize("mode", ["keep", "drop"])
def test_interpreter_exit_runs_pending_work(kind: str, mode: str) -> None:
    done = _run_script(_PENDING_AT_EXIT, kind, mode)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sorted(line for line in lines if line.startswith("ran")) == [f"ran {i}" for i in range(4)]
    if mode == "keep":
        # The pool's threads have exited by the time atexit handlers run, and flagged it as shut down.
        assert lines[-1] == "late error: cannot schedule new futures after shutdown"


def test_submit_during_interpreter_shutdown_raises(kind: str) -> None:
    done = _run_script("atexit.register(late_submit)\n", kind)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["late error: cannot schedule new futures after interpreter shutdown"]
