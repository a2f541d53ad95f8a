"""Run scheduler tasks on a Dask cluster: ``DaskExecutor(client)`` (the optional ``[dask]`` extra).

``Scheduler(executor=DaskExecutor(client))`` keeps everything of the scheduler local (queue, leases,
policies, the dispatcher thread, events) and runs each admitted task's *function* on the cluster with
``client.submit(..., pure=False)`` (every call runs; nothing is deduplicated by Dask's hashing). The
submission capacity defaults to the cluster's worker threads (``sum(client.nthreads().values())``, read
once at construction). ``as_executor(obj)`` wraps a raw ``distributed.Client`` and passes an ``Executor``
through.

The seam with the dispatcher is explicit: ``DaskExecutor`` is an ``ExecutionBackend``
(``threadsched.core.launch``), so the dispatcher hands it each leased ``Execution`` through
``launch_execution``. That calls ``execution.begin()`` locally, on the dispatcher thread (claim the
task's future, note that the lease is held, count it running), sends only the user's call
``fn(*args, **kwargs)`` to the cluster (so those must be picklable, by cloudpickle), and calls
``execution.finish(value, error)`` when the remote outcome arrives; ``finish`` is the dispatcher's
completion path (release the lease, count, resolve the future). Any other ``submit`` is sent to the
cluster as it is, with a stdlib ``Future`` for its outcome.

Capacity follows the remote outcome: the lease is released only by ``finish``, once the cluster has
reported; a local ``TaskFuture.cancel()`` of a running remote task sets its cooperative token (which the
remote side cannot see) and returns False, and the lease stays until the remote task ends.

Threads: Dask runs done-callbacks on its one callback thread. Ours only hands the finished Dask future to
a small fetch pool of this executor (fetching a value is a round trip to the worker; one at a time on
Dask's thread made the backend several times slower), which fetches the outcome and finishes the
execution (or completes the plain call's future), nothing else; the completion path only releases,
records, signals and resolves.

Not carried to the cluster: the task's ``contextvars`` context, its cancel token
(``current_cancel_token()`` is None remotely) and ``current_task_correlation()``.

Lock order: ``DaskExecutor._lock`` is a leaf; no Dask call and no callback runs while it is held.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from functools import partial
from typing import Any

from threadsched.core.records import Execution

__all__ = ["EXTRA_HINT", "LOCAL", "DaskExecutor", "as_executor", "connect", "is_dask_client", "require_distributed"]

LOCAL = "local"  # connect()'s address for a LocalCluster of its own
LOCAL_WORKERS = 2
FETCH_THREADS = 8
CONNECT_TIMEOUT = 30.0
EXTRA_HINT = "the Dask backend needs the optional [dask] extra: pip install 'threadsched[dask]' (dask and distributed)"


def require_distributed() -> Any:
    """The ``distributed`` module, or an ``ImportError`` that names the extra to install."""
    try:
        import distributed
    except ImportError as error:
        raise ImportError(f"threadsched.backends.dask: {EXTRA_HINT}") from error
    return distributed


def is_dask_client(obj: object) -> bool:
    """True for a ``distributed.Client``; never imports ``distributed`` (a client implies it is loaded)."""
    module = sys.modules.get("distributed")
    client_type = getattr(module, "Client", None) if module is not None else None
    return isinstance(client_type, type) and isinstance(obj, client_type)


def as_executor(obj: Executor | Any) -> Executor:
    """``obj`` if it is an ``Executor``; a ``DaskExecutor`` around a ``distributed.Client``; else TypeError."""
    if isinstance(obj, Executor):
        return obj
    if is_dask_client(obj):
        return DaskExecutor(obj)
    raise TypeError(f"expected a concurrent.futures.Executor or a distributed.Client, got {obj!r}")


def _apply(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The remote call. Arguments travel as one tuple and one dict, so a keyword argument of the user's
    function named like one of ``client.submit``'s own (``key``, ``workers``, ``pure``, ...) reaches it."""
    return fn(*args, **kwargs)


class DaskExecutor(Executor):
    """A ``concurrent.futures.Executor`` that runs calls on a Dask cluster through ``client``.

    ``shutdown()`` stops new submits and (``wait=True``) waits for the outcomes of submitted calls; it
    never closes the client, which belongs to the caller."""

    def __init__(self, client: Any) -> None:
        distributed = require_distributed()
        if not isinstance(client, distributed.Client):
            raise TypeError(f"client must be a distributed.Client, got {client!r}")
        self._client = client
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        # Dask futures by key until their outcome is handled: a dropped Dask future releases its task.
        self._pending: dict[str, Any] = {}
        self._submitted = 0
        self._shutdown = False
        # Read by Scheduler (``_executor_workers``) as the default submission capacity.
        self._max_workers = self._cluster_threads()
        self._fetch = ThreadPoolExecutor(min(FETCH_THREADS, max(1, self._max_workers)), thread_name_prefix="DaskExecutor-fetch")

    @property
    def client(self) -> Any:
        return self._client

    @property
    def max_workers(self) -> int:
        """The cluster's worker threads when this executor was made (the default submission capacity)."""
        return self._max_workers

    def _cluster_threads(self) -> int:
        nthreads: dict[str, int] = self._client.nthreads()
        return sum(nthreads.values())

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self._check_open()
        bridge: Future[Any] = Future()
        # RUNNING from the start: cancel() returns False, only the remote outcome completes it.
        bridge.set_running_or_notify_cancel()
        remote = self._submit_remote(fn, args, kwargs)
        self._track(remote, partial(self._settle_call, bridge))
        return bridge

    def launch_execution(self, execution: Execution) -> None:
        """The dispatcher's hand-off: ``begin`` here, the call on the cluster, ``finish`` on its outcome.
        Raises (a spawn failure) if the call cannot be sent; the dispatcher then fails the task."""
        self._check_open()
        if not execution.begin():
            execution.finish_unstarted(None)  # cancelled before it began
            return
        fn, args, kwargs = execution.call()
        remote = self._submit_remote(fn, args, kwargs)
        self._track(remote, partial(self._settle_execution, execution))

    def _check_open(self) -> None:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")

    submit.__doc__ = "Run ``fn(*args, **kwargs)`` on the cluster (``pure=False``); a stdlib Future of its outcome."

    def _submit_remote(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        name = getattr(fn, "__name__", None) or type(fn).__name__
        return self._client.submit(_apply, fn, args, kwargs, pure=False, key=f"{name}-{uuid.uuid4().hex}")

    def _track(self, remote: Any, settle: Callable[[Any], None]) -> None:
        with self._lock:
            self._pending[remote.key] = remote
            self._submitted += 1
        remote.add_done_callback(partial(self._on_remote_done, settle))

    def _on_remote_done(self, settle: Callable[[Any], None], remote: Any) -> None:
        """On Dask's callback thread: hand the outcome to the fetch pool (inline if it is shut down)."""
        try:
            self._fetch.submit(self._settle, settle, remote)
        except RuntimeError:
            self._settle(settle, remote)

    def _settle(self, settle: Callable[[Any], None], remote: Any) -> None:
        """Fetch the outcome, complete the bridge future (always), forget the Dask future."""
        try:
            settle(remote)
        finally:
            with self._lock:
                self._pending.pop(remote.key, None)
                self._settled.notify_all()

    @staticmethod
    def _outcome(remote: Any) -> tuple[Any, BaseException | None]:
        try:
            return remote.result(), None
        except BaseException as error:  # the remote exception, or a cancelled / lost task
            return None, error

    def _settle_call(self, bridge: Future[Any], remote: Any) -> None:
        value, error = self._outcome(remote)
        if error is None:
            bridge.set_result(value)
        else:
            bridge.set_exception(error)

    def _settle_execution(self, execution: Execution, remote: Any) -> None:
        value, error = self._outcome(remote)
        execution.finish(value, error)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new submits; with ``wait``, return once every submitted call has its outcome.

        Every submitted call is running as far as this executor knows, so ``cancel_futures`` cancels
        nothing (as for running futures of the stdlib pools). The client is left open."""
        with self._lock:
            self._shutdown = True
            if wait:
                self._settled.wait_for(lambda: not self._pending)
        if wait:
            self._fetch.shutdown(wait=True)

    def statistics(self) -> dict[str, Any]:
        with self._lock:
            return {"max_workers": self._max_workers, "pending": len(self._pending), "submitted": self._submitted}

    def __repr__(self) -> str:
        stats = self.statistics()
        return (
            f"<DaskExecutor scheduler={getattr(self._client, 'scheduler', None)!r} max_workers={stats['max_workers']} "
            f"pending={stats['pending']} submitted={stats['submitted']} shutdown={self._shutdown}>"
        )


@contextlib.contextmanager
def connect(address: str, *, threads: int) -> Iterator[DaskExecutor]:
    """A ``DaskExecutor`` on the Dask scheduler at ``address`` (``tcp://host:8786``), or for ``"local"`` on a
    ``LocalCluster`` of its own: two worker processes on loopback with ``threads`` threads in all, no
    dashboard, worker logs below CRITICAL silenced (a retryable task failure is not news). The client and
    the local cluster are closed on exit."""
    distributed = require_distributed()
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads!r}")
    cluster: Any = None
    if address == LOCAL:
        cluster = distributed.LocalCluster(
            n_workers=LOCAL_WORKERS,
            threads_per_worker=-(-threads // LOCAL_WORKERS),
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.CRITICAL,
        )
    try:
        client = distributed.Client(cluster if cluster is not None else address, timeout=CONNECT_TIMEOUT)
        try:
            yield DaskExecutor(client)
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()
