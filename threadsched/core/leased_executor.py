"""``LeasedExecutor``: a ``concurrent.futures.ThreadPoolExecutor`` whose work goes through leased admission.

It *is* a ``ThreadPoolExecutor`` (``asyncio``'s ``set_default_executor`` and Dask's ``pool=`` check or read
what only a real one has, such as ``_max_workers``), so code written for the stdlib pool sees the same
behaviour (``tests/test_executor_contract.py`` runs one suite against both). ``submit`` goes through a
``Scheduler``; an admitted task runs on this pool's own stdlib machinery (its work queue, idle-thread
reuse, initializer and ``BrokenThreadPool``), handed over only once its lease is held, so the pool never
has a hidden waiter. Like the stdlib pool, an executor nobody submits to starts no thread, and one
dropped without ``shutdown()`` is freed by reference counting (the scheduler holds it weakly and pins
it only while work is unfinished).

Interpreter exit: like ``concurrent.futures.thread``, a hook registered with ``threading._register_atexit``
flags the interpreter as shutting down (later submits raise ``RuntimeError``) and lets every live
dispatcher hand out its pending work before the threads are joined. It is registered after the stdlib's
own hook and those hooks run in reverse order, so ours runs first, while the pools still accept work;
the stdlib's hook then joins their worker threads.

Private names it relies on (``PRIVATE_BASE_ATTRIBUTES``, ``PRIVATE_THREADING_NAMES``; a test checks each
exists with the shape used here, so a Python that renames one fails in CI instead of misbehaving). It *is* the
pool, so it keeps the base class's own state rather than a copy of it:

* ``_shutdown_lock``: ``submit`` and ``shutdown`` make their checks under the pool's own lock, as the base
  class's ``submit``/``shutdown`` do, so no submit slips past a shutdown or a pool breaking.
* ``_broken``: set by the base class's workers when an initializer fails; ``submit`` then raises
  ``BrokenThreadPool`` like the stdlib pool.
* ``_shutdown``: set by the base ``ThreadPoolExecutor.shutdown`` (which the scheduler calls once the last
  task is handed over).
* ``_max_workers``: set by the base ``__init__`` (its validation and default); the scheduler's capacity, and
  what ``asyncio`` and Dask read of a pool.
* ``_counter`` is overridden, not read: this class numbers its executors itself (the base class uses it only
  to name threads when no prefix is given, and this class always gives one). A test checks that no other
  private name of this class shadows one of the base class's.
* ``threading._register_atexit``: the exit hook must run before the interpreter joins non-daemon threads.
* ``threading.Lock()._at_fork_reinit``: the exit lock is reset in a forked child, as the stdlib does with its own.

Handing admitted work to this pool's machinery goes through the launch seam's checked adapter
(``launch.holder_launcher``: ``PoolLauncher``, or the base class's public ``submit`` when an internal it
needs is missing).

Lock order: ``ThreadPoolExecutor._shutdown_lock`` → ``_global_shutdown_lock`` → scheduler locks.
"""

from __future__ import annotations

import concurrent.futures.thread  # noqa: F401 - its exit hook must be registered before ours (see above)
import itertools
import os
import threading
import weakref
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures.thread import BrokenThreadPool
from typing import Any, ParamSpec, TypeVar

from threadsched.core.dispatcher import DispatcherCore
from threadsched.core.events import EventSink
from threadsched.core.futures import TaskFuture
from threadsched.core.launch import adapt_executor
from threadsched.core.policy import TaskAdmissionPolicy
from threadsched.core.records import GroupSettings
from threadsched.core.scheduler import DEFAULT_GROUP, Scheduler, TaskGroup, _executor_workers
from threadsched.core.values import SchedulerSnapshot, SchedulerStatistics

P = ParamSpec("P")
T = TypeVar("T")

PRIVATE_BASE_ATTRIBUTES = ("_shutdown_lock", "_broken", "_shutdown", "_max_workers")
"""The ``ThreadPoolExecutor`` state this subclass reads or holds (see the module docstring)."""
PRIVATE_THREADING_NAMES = ("_register_atexit",)
"""The ``threading`` module's private functions this module calls (and ``Lock._at_fork_reinit``)."""

# Dispatchers that may still hold pending work; a dispatcher thread keeps its core alive until it exits,
# so work of an executor dropped without shutdown() still runs at interpreter exit.
_live_cores: weakref.WeakSet[DispatcherCore] = weakref.WeakSet()
_interpreter_shutdown = False
# Held while reading or setting _interpreter_shutdown, so no submit slips past the exit hook.
_global_shutdown_lock = threading.Lock()


def _python_exit() -> None:
    global _interpreter_shutdown
    with _global_shutdown_lock:
        _interpreter_shutdown = True
    cores = list(_live_cores)
    for core in cores:
        core.begin_shutdown(False)
    for core in cores:
        core.join(None)


# Not atexit.register: those handlers run after non-daemon threads are joined (bpo-39812).
getattr(threading, "_register_atexit")(_python_exit)  # noqa: B009 - private, missing from typeshed

if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_global_shutdown_lock.acquire,
        after_in_child=getattr(_global_shutdown_lock, "_at_fork_reinit"),  # noqa: B009
        after_in_parent=_global_shutdown_lock.release,
    )


def _call(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


class LeasedExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` with fair groups (``group``), resource limits, policies and events."""

    _counter = itertools.count().__next__

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        resource_limits: Mapping[str, int] | None = None,
        policy: TaskAdmissionPolicy | None = None,
        events: EventSink | None = None,
        executor: Executor | Any = None,
    ) -> None:
        """``executor``: run the tasks elsewhere — another ``Executor`` or a ``distributed.Client`` (its
        cluster; ``threadsched.backends.dask``) — instead of on this pool's threads; ``max_workers`` then
        defaults to its worker count, and ``thread_name_prefix``/``initializer`` do not apply.

        Every argument is checked here, naming it: the stdlib's own checks and messages where it has them
        (``max_workers <= 0``, an ``initializer`` that is not callable), and where it has none a
        ``TypeError`` for a ``max_workers`` that is not an int (a bool included: the stdlib would take
        ``True`` as one worker), a ``thread_name_prefix`` that is not a str and ``initargs`` that are not a
        tuple or list; the keyword arguments as ``Scheduler`` checks them."""
        if max_workers is not None and (isinstance(max_workers, bool) or not isinstance(max_workers, int)):
            raise TypeError(f"max_workers must be an int or None, got {max_workers!r}")
        if not isinstance(thread_name_prefix, str):
            raise TypeError(f"thread_name_prefix must be a str, got {thread_name_prefix!r}")
        if not isinstance(initargs, (tuple, list)):
            # A generator would be spent by the first worker thread's initializer call.
            raise TypeError(f"initargs must be a tuple or list, got {initargs!r}")
        initargs = tuple(initargs)
        if executor is not None and (initializer is not None or initargs):
            raise ValueError("initializer and initargs apply to the built-in pool, not to a given executor")
        name = f"LeasedExecutor-{self._counter()}"
        wrapped = False
        if executor is not None and not isinstance(executor, Executor):
            executor, wrapped = adapt_executor(executor), True  # a distributed.Client: its cluster runs the tasks
        if executor is not None and max_workers is None:
            max_workers = _executor_workers(executor)
        # The stdlib's own validation and messages (max_workers <= 0, initializer not callable).
        super().__init__(max_workers, thread_name_prefix or name, initializer, initargs)
        self._closed = False  # shutdown() was called; the pool itself stays open until the last task is handed over
        self._scheduler = Scheduler(
            self._max_workers,
            resource_limits=resource_limits,
            policy=policy,
            executor=executor,
            events=events,
            name=name,
            owns_executor=wrapped,  # the wrapper built here, never the caller's executor or client
            _holder_pool=self if executor is None else None,
        )
        _live_cores.add(self._scheduler._core)
        self._default_settings = self._scheduler.group(DEFAULT_GROUP).settings
        self._name = name

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        return self._submit(self._default_settings, fn, args, kwargs, None)

    submit.__doc__ = Executor.submit.__doc__

    def _submit(
        self,
        settings: GroupSettings,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        correlation: Mapping[str, Any] | None,
    ) -> TaskFuture:
        """Every submit into this executor, its own and its groups': the stdlib pool's checks, then the core."""
        if not callable(fn):
            # The stdlib accepts anything and fails the future with the TypeError of the call.
            fn, args = _call, (fn, *args)
        with self._shutdown_lock, _global_shutdown_lock:
            if self._broken:
                raise BrokenThreadPool(self._broken)
            if self._closed or self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if _interpreter_shutdown:
                # Like the stdlib: the pool's workers, once they have exited at interpreter shutdown, have
                # flagged it as shut down, and from then on a submit reports a plain shutdown.
                raise RuntimeError("cannot schedule new futures after interpreter shutdown")
            return self._scheduler._core.submit(settings, fn, args, kwargs, correlation)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._shutdown_lock:
            self._closed = True
        # The scheduler shuts this pool down (the base method) once its dispatcher has handed out the last task.
        self._scheduler.shutdown(wait, cancel_futures=cancel_futures)

    shutdown.__doc__ = Executor.shutdown.__doc__

    def group(
        self,
        key: Hashable,
        *,
        weight: float = 1.0,
        admitted_limit: int | None = None,
        resources: Mapping[str, int] | None = None,
    ) -> TaskGroup:
        """A submitter into the fair-queue group ``key``, with this executor's shutdown checks; the same
        settings give the same group, other settings for an existing group raise ``ValueError``."""
        settings = self._scheduler.group(key, weight=weight, admitted_limit=admitted_limit, resources=resources).settings
        return TaskGroup(self._scheduler._core, settings, gate=self._submit)

    @property
    def max_workers(self) -> int:
        return self._scheduler.submit_capacity

    @property
    def scheduler(self) -> Scheduler:
        return self._scheduler

    def snapshot(self) -> SchedulerSnapshot:
        return self._scheduler.snapshot()

    def statistics(self) -> SchedulerStatistics:
        return self._scheduler.statistics()

    def __repr__(self) -> str:
        # Lock-free, like the scheduler's: a repr may be taken while one of its locks is held.
        queued, running, _overdue = self._scheduler._core.glance()
        return (
            f"<LeasedExecutor {self._name!r} max_workers={self.max_workers} shutdown={self._closed} "
            f"queued={queued} running={running} leases={self._scheduler._controller.active_lease_count}>"
        )
