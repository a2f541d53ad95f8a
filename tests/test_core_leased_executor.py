"""``LeasedExecutor`` extras: groups (fairness and resources), policy and events pass-through.

What it shares with ``ThreadPoolExecutor`` is in ``test_executor_contract.py``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from threadsched import MemoryEventSink, StrictFairPolicy
from threadsched.core import leased_executor
from threadsched.core.leased_executor import LeasedExecutor
from threadsched.core.policy import PolicyDecision, PolicyStateDelta
from threadsched.core.scheduler import TaskGroup
from threadsched.core.values import TaskAdmissionLease

WAIT = 30.0


@pytest.fixture
def release() -> Iterator[threading.Event]:
    gate = threading.Event()
    yield gate
    gate.set()


def _executor(max_workers: int, **kwargs: Any) -> LeasedExecutor:
    return LeasedExecutor(max_workers, thread_name_prefix="leased-test-worker", **kwargs)


def test_group_reuses_its_settings_and_rejects_a_conflicting_definition() -> None:
    with _executor(2) as executor:
        group = executor.group("columns", weight=2.0)
        assert isinstance(group, TaskGroup)
        assert (group.key, group.weight, dict(group.resources)) == ("columns", 2.0, {"submission": 1})
        again = executor.group("columns", weight=2.0)
        assert again.settings is group.settings
        with pytest.raises(ValueError, match="group 'columns' already exists"):
            executor.group("columns", weight=3.0)
        assert group.submit(pow, 3, 2).result(timeout=WAIT) == 9
        assert group.submit_correlated({"column": "c"}, pow, 2, 5).result(timeout=WAIT) == 32
        assert "columns" in repr(group)


def test_groups_share_the_pool_fairly(release: threading.Event) -> None:
    order: list[str] = []
    with _executor(1) as executor:
        started = threading.Event()

        def blocker() -> None:
            started.set()
            assert release.wait(WAIT)

        executor.submit(blocker)
        assert started.wait(WAIT)
        heavy, light = executor.group("heavy"), executor.group("light")
        futures = [heavy.submit(order.append, f"heavy{i}") for i in range(3)]
        futures += [light.submit(order.append, f"light{i}") for i in range(3)]
        release.set()
    assert all(future.done() for future in futures)
    # Equal weights: the single worker alternates between the groups instead of draining the first one.
    assert order == ["heavy0", "light0", "heavy1", "light1", "heavy2", "light2"]


def test_group_resources_are_never_over_admitted(release: threading.Event) -> None:
    lock = threading.Lock()
    running = 0
    peak = 0
    started = [threading.Event() for _ in range(4)]

    def call_model(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        started[i].set()
        assert release.wait(WAIT)
        with lock:
            running -= 1
        return i

    with _executor(4, resource_limits={"llm:x": 1}) as executor:
        llm = executor.group("llm", resources={"llm:x": 1})
        futures = [llm.submit(call_model, i) for i in range(4)]
        assert started[0].wait(WAIT)
        # Worker slots are free: other work still runs while the llm group waits for its resource.
        # Submitted after the llm tasks, so once it is done the dispatcher has seen all of them.
        assert executor.submit(str, "other").result(timeout=WAIT) == "other"
        assert not any(event.is_set() for event in started[1:])
        admission = executor.snapshot().admission
        assert admission.leased_resources["llm:x"] == 1
        release.set()
        assert [future.result(timeout=WAIT) for future in futures] == [0, 1, 2, 3]
    assert peak == 1


def test_unknown_group_resource_is_a_clear_error() -> None:
    with _executor(1) as executor, pytest.raises(ValueError, match="llm:y"):
        executor.group("llm", resources={"llm:y": 1})


def _generator() -> Iterator[int]:
    yield 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        # The stdlib takes max_workers=True as one worker and fails a str with a message naming nothing.
        ({"max_workers": True}, TypeError, r"^max_workers must be an int or None, got True$"),
        ({"max_workers": 2.5}, TypeError, r"^max_workers must be an int or None, got 2.5$"),
        ({"max_workers": "2"}, TypeError, r"^max_workers must be an int or None, got '2'$"),
        ({"max_workers": 0}, ValueError, r"^max_workers must be greater than 0$"),  # the stdlib's own words
        ({"max_workers": 10**12 + 1}, ValueError, r"^max_workers must be at most 1_000_000_000_000, got 1000000000001$"),
        ({"thread_name_prefix": 3}, TypeError, r"^thread_name_prefix must be a str, got 3$"),
        ({"initializer": 42}, TypeError, r"^initializer must be a callable$"),
        ({"initargs": None}, TypeError, r"^initargs must be a tuple or list, got None$"),
        ({"initargs": _generator()}, TypeError, r"^initargs must be a tuple or list, got <generator"),
        ({"resource_limits": "llm"}, TypeError, r"^resource_limits must be a mapping of resource name to units, or None"),
        ({"resource_limits": {"llm": 0}}, ValueError, r"resource_limits\['llm'\] must be a positive int, got 0$"),
        ({"resource_limits": {"llm": 1.5}}, TypeError, r"resource_limits\['llm'\] must be an int, got 1.5$"),
        ({"policy": object()}, TypeError, r"^policy must implement TaskAdmissionPolicy \(evaluate, on_acquire, on_release\)"),
        ({"policy": StrictFairPolicy}, TypeError, r"^policy must be a TaskAdmissionPolicy instance, got the class"),
        ({"events": 42}, TypeError, r"^events must have an emit\(event\) method, got 42$"),
        ({"executor": 42}, TypeError, r"^executor must be a concurrent.futures.Executor or a distributed.Client, got 42$"),
    ],
)
def test_every_constructor_argument_is_checked_naming_it(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        LeasedExecutor(**kwargs)


def test_initargs_may_be_a_list_as_the_stdlib_allows() -> None:
    seen: list[int] = []
    with LeasedExecutor(1, initializer=seen.append, initargs=[5]) as executor:
        assert executor.submit(len, seen).result(timeout=WAIT) == 1
    assert seen == [5]


class CountingPolicy(StrictFairPolicy):
    def __init__(self) -> None:
        super().__init__()
        self.acquired = 0
        self.released = 0

    def on_acquire(self, lease: TaskAdmissionLease, decision: PolicyDecision) -> PolicyStateDelta:
        self.acquired += 1
        return super().on_acquire(lease, decision)

    def on_release(self, lease: TaskAdmissionLease) -> PolicyStateDelta:
        self.released += 1
        return super().on_release(lease)


def test_policy_and_events_are_passed_through_and_no_worker_waits_for_a_lease() -> None:
    policy = CountingPolicy()
    sink = MemoryEventSink()
    with _executor(2, policy=policy, events=sink) as executor:
        rows = executor.group("rows", weight=2.0)
        futures = [executor.submit(pow, i, 2) for i in range(5)] + [rows.submit(pow, i, 3) for i in range(5)]
        assert [future.result(timeout=WAIT) for future in futures] == [i**2 for i in range(5)] + [i**3 for i in range(5)]
    assert policy.acquired == policy.released == 10
    acquired = sink.of_kind("task_lease_acquired")
    assert len(acquired) == 10
    assert {event.group for event in acquired} == {"default", "rows"}
    assert len(sink.of_kind("task_lease_released")) == 10
    snapshot = executor.snapshot()
    assert snapshot.counters["hidden_waiters"] == 0
    assert snapshot.admission.active_lease_count == 0


def test_group_submit_after_shutdown_raises() -> None:
    executor = _executor(1)
    group = executor.group("late")
    executor.shutdown()
    with pytest.raises(RuntimeError, match=r"^cannot schedule new futures after shutdown$"):
        group.submit(int)
    with pytest.raises(RuntimeError, match=r"^cannot schedule new futures after shutdown$"):
        group.submit_correlated({}, int)


def test_repr_and_statistics() -> None:
    with _executor(3) as executor:
        executor.submit(int).result(timeout=WAIT)
        assert executor.max_workers == 3
        assert executor.statistics().counters["completed"] == 1
        assert "max_workers=3" in repr(executor) and "shutdown=False" in repr(executor)
    assert "shutdown=True" in repr(executor)


def test_cancel_futures_leaves_no_pending_task_behind_after_shutdown() -> None:
    import threading

    from threadsched import LeasedExecutor

    gate, started = threading.Event(), threading.Event()

    def hold() -> bool:
        started.set()
        return gate.wait()

    pool = LeasedExecutor(max_workers=1)
    try:
        running = pool.submit(hold)
        assert started.wait(30)
        pending = [pool.submit(int, "1") for _ in range(50)]
        pool.shutdown(wait=False, cancel_futures=True)
        assert all(future.cancelled() for future in pending)  # at once, as the stdlib does
    finally:
        gate.set()
        pool.shutdown(wait=True)
    assert running.result() is True


# -- the base class's private state it relies on ----------------------------------------------------

_BASE_SHAPES: dict[str, Callable[[object], bool]] = {
    "_shutdown_lock": lambda value: all(callable(getattr(value, m, None)) for m in ("acquire", "release", "__enter__")),
    "_broken": lambda value: value is False,  # a fresh pool; the stdlib sets the message when it breaks
    "_shutdown": lambda value: value is False,
    "_max_workers": lambda value: type(value) is int and value == 3,
}


@pytest.mark.parametrize("name", leased_executor.PRIVATE_BASE_ATTRIBUTES)
def test_each_private_base_attribute_it_relies_on_exists_on_this_python(name: str) -> None:
    # A Python that renames one fails here, rather than making LeasedExecutor misbehave.
    pool = ThreadPoolExecutor(3)
    with _executor(3) as executor:
        assert _BASE_SHAPES[name](getattr(pool, name)), f"ThreadPoolExecutor.{name}"
        assert _BASE_SHAPES[name](getattr(executor, name)), f"LeasedExecutor.{name}"
    pool.shutdown()
    assert executor._shutdown is True  # the base shutdown ran, setting the flag the submit check reads


def test_the_documented_private_names_are_every_base_attribute_it_touches_and_none_of_its_own_collide() -> None:
    base = set(vars(ThreadPoolExecutor(1))) | {name for name in dir(ThreadPoolExecutor) if name.startswith("_")}
    source = Path(leased_executor.__file__).read_text(encoding="utf-8")
    used = set(re.findall(r"\bself\.(_[a-z]\w*)", source))
    # ``_counter`` is the one deliberate override: its own numbering of executors (the base uses it only to
    # name threads when no prefix is given, and this class always gives one).
    assert used & base == set(leased_executor.PRIVATE_BASE_ATTRIBUTES) | {"_counter"}
    # No other private name of its own may shadow the base class's (a Python that adds one would break it).
    with _executor(1) as executor:
        own = {name for name in vars(executor) if name.startswith("_")} - base
        mine = {name for name in vars(LeasedExecutor) if name.startswith("_") and not name.startswith("__")}
    assert mine & base == {"_counter"}
    assert own >= {"_scheduler", "_closed"}


@pytest.mark.parametrize("name", leased_executor.PRIVATE_THREADING_NAMES)
def test_each_private_threading_name_it_relies_on_exists_on_this_python(name: str) -> None:
    assert callable(getattr(threading, name))
    assert callable(getattr(threading.Lock(), "_at_fork_reinit"))  # noqa: B009 - private, missing from typeshed
