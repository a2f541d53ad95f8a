"""The executor seam: how the dispatcher hands one leased ``Execution`` to whatever runs it.

Every launcher ends an attempt the same way: through ``Execution.begin()`` and then
``Execution.finish(value, error)`` (or ``finish_unstarted`` when it never ran), which is where the
dispatcher's completion path — release, count, resolve, signal — takes over.

* ``PoolLauncher`` — a ``ThreadPoolExecutor`` that threadsched owns (the ``Scheduler``'s built-in
  pool, or a ``LeasedExecutor``'s own machinery). The execution is put on the pool's work queue
  as its work item, so no second ``Future`` per task is built, completed and called back. The
  pool's own checks (broken, shut down, interpreter exit) are made under the pool's own locks,
  exactly where ``ThreadPoolExecutor.submit`` makes them. It is the one adapter of the launch path
  that uses private ``concurrent.futures`` names (``POOL_ATTRIBUTES``, ``MODULE_GLOBALS``); each is
  checked for its shape when the launcher is chosen, and if any is missing (a Python that renamed
  it) the pool is driven through its public ``submit`` instead (``SubmitLauncher``, or
  ``HolderSubmitLauncher`` for a ``LeasedExecutor``'s own pool).
* ``SubmitLauncher`` — any other ``concurrent.futures.Executor``: ``executor.submit(execution.run)``;
  its done-callback only settles an attempt the executor dropped or failed before it ran.
* an ``ExecutionBackend`` (the Dask backend) — it runs begin/finish itself, elsewhere.

An object that is not an ``Executor`` (a ``distributed.Client``) is turned into one by an executor
adapter: a layer above the core registers it (``register_executor_adapter``), so the core runs on
any backend without importing one.

Lock order: ``ThreadPoolExecutor._shutdown_lock`` → ``concurrent.futures.thread._global_shutdown_lock``
(the stdlib's own order); the dispatcher holds none of its locks while launching.
"""

from __future__ import annotations

import concurrent.futures.thread as _cf_thread
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from concurrent.futures.thread import BrokenThreadPool
from typing import Any, Protocol, runtime_checkable

from threadsched.core.records import Execution

ExecutorAdapter = Callable[[object], Executor | None]
"""Turns an object that is not an ``Executor`` into one, or returns None when it does not know it."""

_executor_adapters: list[ExecutorAdapter] = []


@runtime_checkable
class ExecutionBackend(Protocol):
    """An executor that runs leased executions itself (``begin`` → the call → ``finish``)."""

    def launch_execution(self, execution: Execution) -> None: ...


class Launcher(Protocol):
    def launch(self, execution: Execution) -> None:
        """Hand ``execution`` over, or raise (a spawn failure: nothing was started)."""

    def shutdown(self, wait: bool) -> None:
        """Shut the executor down (only called for an executor threadsched owns)."""

    def pool(self) -> Executor | None:
        """The executor, while it exists."""


class _PoolWorkItem:
    """What the pool's worker threads see: ``run()``, and a ``future`` its shutdown/broken paths fail."""

    __slots__ = ("_execution",)

    def __init__(self, execution: Execution) -> None:
        self._execution = execution

    def run(self, *_worker_context: object) -> None:  # 3.14 passes its worker context
        execution = self._execution
        del self._execution  # the worker keeps this item until its next get(): keep nothing alive
        execution.run()

    @property
    def future(self) -> _PoolWorkItem:
        return self

    # Called only for items the pool drops unrun: an initializer failed, or shutdown(cancel_futures=True).
    def set_exception(self, error: BaseException) -> None:
        self._execution.finish_unstarted(error)

    def cancel(self) -> bool:
        self._execution.finish_unstarted(None)
        return True


def _lock_like(value: object) -> bool:
    return all(callable(getattr(value, name, None)) for name in ("acquire", "release", "__enter__", "__exit__"))


def _has_put(value: object) -> bool:
    return callable(getattr(value, "put", None))


def _sized(value: object) -> bool:
    return callable(getattr(value, "__len__", None))


def _a_flag(value: object) -> bool:
    return isinstance(value, bool)


def _a_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _broken_state(value: object) -> bool:
    return value is False or isinstance(value, str)  # False, or the message a broken pool records


POOL_ATTRIBUTES: dict[str, Callable[[object], bool]] = {
    "_shutdown_lock": _lock_like,
    "_broken": _broken_state,
    "_shutdown": _a_flag,
    "_work_queue": _has_put,
    "_threads": _sized,
    "_max_workers": _a_count,
    "_adjust_thread_count": callable,
}
"""Every private ``ThreadPoolExecutor`` attribute ``PoolLauncher`` touches, with the shape it needs."""

MODULE_GLOBALS: dict[str, Callable[[object], bool]] = {
    "_global_shutdown_lock": _lock_like,
    "_shutdown": _a_flag,
}
"""Every private ``concurrent.futures.thread`` global ``PoolLauncher`` touches, with the shape it needs."""

_MISSING = object()


def pool_access_problem(executor: Executor) -> str | None:
    """Why ``PoolLauncher`` cannot drive ``executor`` on this Python (None: it can).

    ``PoolLauncher`` is the one place the launch path uses ``ThreadPoolExecutor`` internals. Each one it
    touches (``POOL_ATTRIBUTES``, ``MODULE_GLOBALS``) must exist with the shape it uses, checked when the
    launcher is chosen; if any is missing or changed (a Python that renamed it), the executor is driven
    through its public ``submit`` instead (``SubmitLauncher``)."""
    if not isinstance(executor, ThreadPoolExecutor):
        return f"{type(executor).__name__} is not a ThreadPoolExecutor"
    for name, fits in MODULE_GLOBALS.items():
        if not fits(getattr(_cf_thread, name, _MISSING)):
            return f"concurrent.futures.thread.{name} is missing or has another shape"
    for name, fits in POOL_ATTRIBUTES.items():
        if not fits(getattr(executor, name, _MISSING)):
            return f"{type(executor).__name__}.{name} is missing or has another shape"
    return None


def pool_launchable(executor: Executor) -> bool:
    return pool_access_problem(executor) is None


class PoolLauncher:
    """Puts executions straight on a ``ThreadPoolExecutor``'s work queue (a pool threadsched owns).

    Only for a pool ``pool_launchable`` accepts (``launcher_for`` checks); every private name it uses is
    in ``POOL_ATTRIBUTES`` or ``MODULE_GLOBALS``.

    ``weak``: hold the pool by weak reference (a ``LeasedExecutor`` is the pool and owns the scheduler;
    a strong reference back would make a cycle); the dispatcher pins it while it has work."""

    __slots__ = ("_pool", "_ref")

    def __init__(self, pool: ThreadPoolExecutor, *, weak: bool = False) -> None:
        self._ref = weakref.ref(pool)
        self._pool: ThreadPoolExecutor | None = None if weak else pool

    def pool(self) -> ThreadPoolExecutor | None:
        return self._pool if self._pool is not None else self._ref()

    def launch(self, execution: Execution) -> None:
        pool = self._pool if self._pool is not None else self._ref()
        if pool is None:
            raise RuntimeError("cannot schedule new futures after the executor was garbage-collected")
        with pool._shutdown_lock, _cf_thread._global_shutdown_lock:
            broken = pool._broken
            if broken:
                raise BrokenThreadPool(broken)
            if pool._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if _cf_thread._shutdown:
                raise RuntimeError("cannot schedule new futures after interpreter shutdown")
            pool._work_queue.put(_PoolWorkItem(execution))  # type: ignore[arg-type]  # duck-typed work item
            # Once every thread exists, the idle-thread count only decides whether to start one more.
            if len(pool._threads) < pool._max_workers:
                pool._adjust_thread_count()

    def shutdown(self, wait: bool) -> None:
        pool = self.pool()
        if pool is not None:
            # The base method: a LeasedExecutor's own shutdown() is the user's, which ends here.
            ThreadPoolExecutor.shutdown(pool, wait=wait)


class HolderSubmitLauncher:
    """``PoolLauncher``'s public fallback for a ``LeasedExecutor``'s own pool: the base class's ``submit``.

    The pool's own ``submit`` is the user's (it goes through the scheduler), so the stdlib's is called
    directly; the pool is held weakly, like ``PoolLauncher(weak=True)``."""

    __slots__ = ("_ref",)

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._ref = weakref.ref(pool)

    def pool(self) -> ThreadPoolExecutor | None:
        return self._ref()

    def launch(self, execution: Execution) -> None:
        pool = self._ref()
        if pool is None:
            raise RuntimeError("cannot schedule new futures after the executor was garbage-collected")
        future = ThreadPoolExecutor.submit(pool, execution.run)
        future.add_done_callback(execution.settle_if_unrun)

    def shutdown(self, wait: bool) -> None:
        pool = self._ref()
        if pool is not None:
            ThreadPoolExecutor.shutdown(pool, wait=wait)


class SubmitLauncher:
    """Any ``Executor``: ``submit(execution.run)``; the done-callback settles only what never ran."""

    __slots__ = ("_executor",)

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    def pool(self) -> Executor:
        return self._executor

    def launch(self, execution: Execution) -> None:
        future = self._executor.submit(execution.run)
        future.add_done_callback(execution.settle_if_unrun)

    def shutdown(self, wait: bool) -> None:
        self._executor.shutdown(wait=wait)


class BackendLauncher:
    __slots__ = ("_backend",)

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def pool(self) -> Executor:
        backend: Executor = self._backend
        return backend

    def launch(self, execution: Execution) -> None:
        self._backend.launch_execution(execution)

    def shutdown(self, wait: bool) -> None:
        self._backend.shutdown(wait=wait)


def launcher_for(executor: Executor, *, owned: bool) -> Launcher:
    """The launcher for ``executor``: its own for a backend, ``PoolLauncher`` for a pool threadsched owns
    whose internals are all there (``pool_launchable``), otherwise the public ``submit``."""
    if isinstance(executor, ExecutionBackend):
        return BackendLauncher(executor)
    if owned and pool_launchable(executor):
        assert isinstance(executor, ThreadPoolExecutor)
        return PoolLauncher(executor)
    return SubmitLauncher(executor)


def holder_launcher(pool: ThreadPoolExecutor) -> Launcher:
    """The launcher for a ``LeasedExecutor``'s own pool (held weakly): ``PoolLauncher`` when its internals
    are all there, otherwise the base class's public ``submit``."""
    if pool_launchable(pool):
        return PoolLauncher(pool, weak=True)
    return HolderSubmitLauncher(pool)


def register_executor_adapter(adapter: ExecutorAdapter) -> None:
    """Let ``Scheduler(executor=...)`` and ``LeasedExecutor(executor=...)`` accept what ``adapter`` knows."""
    if adapter not in _executor_adapters:
        _executor_adapters.append(adapter)


def adapt_executor(candidate: object) -> Executor:
    """``candidate`` itself if it is an ``Executor``, else what the first adapter that knows it makes of it."""
    if isinstance(candidate, Executor):
        return candidate
    for adapter in tuple(_executor_adapters):
        executor = adapter(candidate)
        if executor is not None:
            return executor
    raise TypeError(f"executor must be a concurrent.futures.Executor or a distributed.Client, got {candidate!r}")
