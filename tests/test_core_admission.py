"""TaskAdmissionController: all-or-nothing non-blocking leases, exact accounting, release diagnostics, validation."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Hashable, Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from support import (
    PolicyStub,
    RaisingPolicy,
    counting_semaphores,
    empty_view,
    make_task,
    per_group,
    run_threads,
    strict_fair_outcome,
)

from threadsched import StrictFairPolicy
from threadsched.core.admission import TaskAdmissionController
from threadsched.core.contracts import MAX_RESOURCE_UNITS, SUBMISSION, SchedulableTask, SchedulerResourceRequest, TaskGroupSpec
from threadsched.core.policy import PolicyDecision, PolicyStateDelta
from threadsched.core.queue import FairTaskQueue
from threadsched.core.values import (
    QueueView,
    ReleaseResult,
    TaskAdmissionConfig,
    TaskAdmissionDenied,
    TaskAdmissionLease,
    TaskAdmissionView,
)

RESOURCE_NAMES = ("gpu", "llm:mock/fast", "db")
GROUP_KEYS: tuple[Hashable, ...] = ("alpha", "beta", ("gamma", 3))
DIAGNOSTIC_REASONS = ("duplicate", "stale_lease", "wrong_controller_generation", "unknown_lease")
RELEASED = ReleaseResult(True, "released")


def expected_denial(
    task: SchedulableTask, queue_view: QueueView, available: Mapping[str, int], running: Mapping[Hashable, int]
) -> str | None:
    """The denial ``strict_fair_outcome`` (an independent model of StrictFairPolicy) expects; None means a lease."""
    outcome = strict_fair_outcome(task, queue_view, available, running)
    return None if outcome == "lease" else outcome


def assert_accounting(controller: TaskAdmissionController, held: list[TaskAdmissionLease]) -> TaskAdmissionView:
    """Every counter of the controller equals a model recomputed from the leases held right now."""
    view = controller.view()
    limits = dict(controller.resource_limits)
    leased = Counter[str]()
    by_group: dict[Hashable, Counter[str]] = {}
    running = Counter[Hashable]()
    for lease in held:
        key = lease.item.group.key
        running[key] += 1
        for resource, amount in lease.resources.items():
            leased[resource] += amount
            by_group.setdefault(key, Counter())[resource] += amount
    assert dict(view.resource_limits) == limits
    for resource, limit in limits.items():
        assert view.leased_resources[resource] + view.resources_available[resource] == limit, resource
        assert 0 <= view.leased_resources[resource] <= limit, resource
        assert view.leased_resources[resource] == leased[resource], resource
        assert controller.available(resource) == view.resources_available[resource], resource
    # The worker slots' BoundedSemaphore is their hard capacity: its counter is exactly what is free.
    assert controller._slots._value == view.resources_available[SUBMISSION]
    assert {k: dict(v) for k, v in view.leased_resources_by_group.items()} == {k: dict(v) for k, v in by_group.items()}
    assert dict(view.running_counts_by_group) == dict(running)
    assert view.active_lease_count == len(held) == controller.active_lease_count
    return view


# ---------------------------------------------------------------------------------------------
# 1. Stateful model of one controller
# ---------------------------------------------------------------------------------------------


class AdmissionMachine(RuleBasedStateMachine):
    """Random acquires and every kind of release against one controller, checked against a model."""

    @initialize(
        capacity=st.integers(1, 4),
        limits=st.dictionaries(st.sampled_from(RESOURCE_NAMES), st.integers(1, 4), min_size=1, max_size=3),
        caps=per_group(st.none() | st.integers(1, 2), len(GROUP_KEYS)),
        peers=st.integers(0, 4),
        data=st.data(),
    )
    def setup(self, capacity: int, limits: dict[str, int], caps: list[int | None], peers: int, data: st.DataObject) -> None:
        self.controller = TaskAdmissionController(TaskAdmissionConfig(capacity, limits))
        self.limits = {**limits, SUBMISSION: capacity}
        self.groups = [TaskGroupSpec(key, admitted_limit=cap) for key, cap in zip(GROUP_KEYS, caps, strict=True)]
        # A second controller with the same resources: its leases must be refused by the first.
        self.other = TaskAdmissionController(TaskAdmissionConfig(100, dict.fromkeys(limits, 100)))
        self.queue = FairTaskQueue()
        self.queued: list[str] = []
        self.held: list[TaskAdmissionLease] = []
        self.released: list[TaskAdmissionLease] = []
        self.issued_ids: set[int] = set()
        self.diagnostics = Counter[str]()
        for _ in range(peers):
            self.enqueue_peer(data)

    def draw_task(self, data: st.DataObject, group: TaskGroupSpec | None = None) -> SchedulableTask:
        if group is None:
            group = data.draw(st.sampled_from(self.groups), label="group")
        extra = [r for r in self.limits if r != SUBMISSION]
        chosen = data.draw(st.lists(st.sampled_from(extra), unique=True, max_size=len(extra)), label="resources")
        amounts = {r: data.draw(st.integers(1, self.limits[r]), label=r) for r in chosen}
        return make_task(group, amounts)

    def pick(self, data: st.DataObject, items: list[Any], label: str) -> int:
        return data.draw(st.integers(0, len(items) - 1), label=label)

    # -- queue of peers -------------------------------------------------------------------------

    @rule(data=st.data())
    def enqueue_peer(self, data: st.DataObject) -> None:
        if data.draw(st.booleans(), label="heavy peer"):
            # Contends with every task that needs an extra resource, yet is blocked by any lease of one.
            group = data.draw(st.sampled_from(self.groups), label="group")
            task = make_task(group, {r: limit for r, limit in self.limits.items() if r != SUBMISSION})
        else:
            task = self.draw_task(data)
        assert self.queue.enqueue([task]) == (task.task_id,)
        self.queued.append(task.task_id)

    @precondition(lambda self: self.queued)
    @rule(data=st.data())
    def discard_peer(self, data: st.DataObject) -> None:
        task_id = self.queued.pop(self.pick(data, self.queued, "queued"))
        assert self.queue.discard(task_id)

    # -- acquisition ----------------------------------------------------------------------------

    def record_outcome(
        self, task: SchedulableTask, outcome: TaskAdmissionLease | TaskAdmissionDenied, expected: str | None
    ) -> None:
        event(f"acquire -> {expected or 'lease'}")
        if expected is None:
            assert isinstance(outcome, TaskAdmissionLease), outcome
            assert outcome.item is task
            assert dict(outcome.resources) == dict(task.resource_request.amounts)
            assert outcome.controller_generation == self.controller.generation
            assert not outcome.released
            assert outcome.lease_id not in self.issued_ids
            self.issued_ids.add(outcome.lease_id)
            self.held.append(outcome)
        else:
            assert isinstance(outcome, TaskAdmissionDenied), outcome
            assert outcome.item is task
            assert outcome.reason == expected

    @rule(data=st.data(), burst=st.integers(1, 3))
    def try_acquire(self, data: st.DataObject, burst: int) -> None:
        # Bursts of one group's tasks reach admitted limits and exhaust capacity more often.
        group = data.draw(st.sampled_from(self.groups), label="burst group")
        for _ in range(burst):
            task = self.draw_task(data, group)
            queue_view = self.queue.view()
            before = self.controller.view()
            expected = expected_denial(task, queue_view, before.resources_available, before.running_counts_by_group)
            assert self.controller.is_eligible(task, queue_view) is (expected is None)
            outcome = self.controller.try_acquire(task, queue_view)
            self.record_outcome(task, outcome, expected)
            if expected is not None:
                assert self.controller.view() == before

    def capped_groups(self) -> list[TaskGroupSpec]:
        running = Counter(lease.item.group.key for lease in self.held)
        return [g for g in self.groups if g.admitted_limit is not None and running[g.key] >= g.admitted_limit]

    @precondition(lambda self: self.capped_groups())
    @rule(data=st.data())
    def try_acquire_over_cap(self, data: st.DataObject) -> None:
        """Targets StrictFairPolicy: a group at its admitted_limit asks for more."""
        task = self.draw_task(data, data.draw(st.sampled_from(self.capped_groups()), label="capped group"))
        queue_view = self.queue.view()
        before = self.controller.view()
        expected = expected_denial(task, queue_view, before.resources_available, before.running_counts_by_group)
        assert self.controller.is_eligible(task, queue_view) is (expected is None)
        self.record_outcome(task, self.controller.try_acquire(task, queue_view), expected)

    @rule(data=st.data())
    def approve_on_old_view_then_acquire_on_new(self, data: st.DataObject) -> None:
        """An is_eligible approval made on one queue view must not decide try_acquire on another."""
        capped = self.capped_groups()
        task = self.draw_task(data, data.draw(st.sampled_from(capped), label="capped group") if capped else None)
        old_view = self.queue.view()
        self.controller.is_eligible(task, old_view)
        self.enqueue_peer(data)
        if data.draw(st.booleans(), label="interleave another is_eligible"):
            self.controller.is_eligible(self.draw_task(data), self.queue.view())
        new_view = self.queue.view()
        before = self.controller.view()
        expected = expected_denial(task, new_view, before.resources_available, before.running_counts_by_group)
        self.record_outcome(task, self.controller.try_acquire(task, new_view), expected)

    @rule()
    def acquire_queue_head(self) -> None:
        """The dispatcher's path: select an eligible head, lease it, commit the selection."""
        selection = self.queue.select_next(self.controller.is_eligible)
        if selection is None:
            summary = self.controller.explain_blocked(self.queue.view())
            assert summary.eligible_groups == ()
            assert set(summary.blocked_groups) == set(self.queue.view().first_candidate_tasks_by_group)
            return
        before = self.controller.view()
        expected = expected_denial(selection.item, selection.view, before.resources_available, before.running_counts_by_group)
        assert expected is None
        outcome = self.controller.try_acquire(selection.item, selection.view)
        self.record_outcome(selection.item, outcome, expected)
        assert self.queue.commit(selection) is selection.item
        self.queued.remove(selection.item.task_id)

    @rule(limit=st.integers(1, 6))
    def lease_fitting_batch(self, limit: int) -> None:
        """The fast path: heads taken with their leases in one step, each one a head that fit."""
        before = self.controller.view()
        leases = self.controller.lease_fitting(self.queue, limit)
        assert len(leases) <= limit
        free = dict(before.resources_available)
        running = Counter(before.running_counts_by_group)
        for lease in leases:
            task = lease.item
            assert task.group.admitted_limit is None  # a capped group always goes through the policy
            assert expected_denial(task, self.queue.view(), free, running) is None
            for resource, amount in task.resource_request.amounts.items():
                free[resource] -= amount
            running[task.group.key] += 1
            self.record_outcome(task, lease, None)
            self.queued.remove(task.task_id)
            assert task.task_id not in self.queue
        if len(leases) < limit:
            # It stopped at a head that does not fit: asking again right away takes nothing.
            assert self.controller.lease_fitting(self.queue, limit) == []

    # -- releases -------------------------------------------------------------------------------

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def release_held(self, data: st.DataObject) -> None:
        lease = self.held.pop(self.pick(data, self.held, "held"))
        before = self.controller.view()
        assert self.controller.release(lease) == RELEASED
        assert lease.released
        after = self.controller.view()
        for resource, limit in self.limits.items():
            gained = lease.resources.get(resource, 0)
            assert after.resources_available[resource] == before.resources_available[resource] + gained <= limit
        self.released.append(lease)

    @precondition(lambda self: self.released)
    @rule(data=st.data())
    def release_again(self, data: st.DataObject) -> None:
        lease = self.released[self.pick(data, self.released, "released")]
        before = self.controller.view()
        assert self.controller.release(lease) == ReleaseResult(False, "duplicate")
        self.diagnostics["duplicate"] += 1
        assert self.controller.view().resources_available == before.resources_available

    @rule(data=st.data(), release_in_owner_first=st.booleans())
    def release_foreign(self, data: st.DataObject, release_in_owner_first: bool) -> None:
        foreign = self.other.try_acquire(self.draw_task(data), empty_view())
        assert isinstance(foreign, TaskAdmissionLease)
        if release_in_owner_first:
            assert self.other.release(foreign) == RELEASED
        assert self.controller.release(foreign) == ReleaseResult(False, "wrong_controller_generation")
        self.diagnostics["wrong_controller_generation"] += 1
        # The refusal must not consume the foreign lease's release flag.
        assert foreign.released is release_in_owner_first
        if not release_in_owner_first:
            assert self.other.release(foreign) == RELEASED
        assert self.other.active_lease_count == 0

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def release_forged_stale(self, data: st.DataObject) -> None:
        active = self.held[self.pick(data, self.held, "held")]
        forged = TaskAdmissionLease(
            active.lease_id, active.item, active.resources, active.acquired_at, self.controller.generation
        )
        assert self.controller.release(forged) == ReleaseResult(False, "stale_lease")
        self.diagnostics["stale_lease"] += 1
        assert not active.released

    @rule(data=st.data(), reuse_released_id=st.booleans())
    def release_forged_unknown(self, data: st.DataObject, reuse_released_id: bool) -> None:
        if reuse_released_id and self.released:
            lease_id = self.released[self.pick(data, self.released, "released")].lease_id
        else:
            lease_id = 10**9 + data.draw(st.integers(0, 10), label="unknown id")
        forged = TaskAdmissionLease(lease_id, self.draw_task(data), {SUBMISSION: 1}, 0.0, self.controller.generation)
        assert self.controller.release(forged) == ReleaseResult(False, "unknown_lease")
        self.diagnostics["unknown_lease"] += 1

    @rule(kind=st.sampled_from(["none", "int", "str", "object", "duck"]))
    def release_non_lease(self, kind: str) -> None:
        objects: dict[str, Callable[[], Any]] = {
            "none": lambda: None,
            "int": lambda: 7,
            "str": lambda: "lease",
            "object": object,
            # Looks like an active lease of this controller but is not a TaskAdmissionLease.
            "duck": lambda: SimpleNamespace(
                lease_id=self.held[0].lease_id if self.held else 1,
                item=self.held[0].item if self.held else None,
                resources={SUBMISSION: 1},
                acquired_at=0.0,
                controller_generation=self.controller.generation,
            ),
        }
        assert self.controller.release(objects[kind]()) == ReleaseResult(False, "unknown_lease")
        self.diagnostics["unknown_lease"] += 1

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def accounting_matches_model(self) -> None:
        view = assert_accounting(self.controller, self.held)
        assert dict(view.release_diagnostics) == {reason: n for reason, n in self.diagnostics.items() if n}
        assert set(view.release_diagnostics) <= set(DIAGNOSTIC_REASONS)
        assert dict(view.policy_debt_by_group_resource) == {}
        assert all(not lease.released for lease in self.held)
        assert all(lease.released for lease in self.released)

    def teardown(self) -> None:
        if not hasattr(self, "controller"):
            return
        while self.held:
            assert self.controller.release(self.held.pop()) == RELEASED
        view = assert_accounting(self.controller, [])
        assert dict(view.resources_available) == self.limits


AdmissionMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestAdmissionStateMachine = AdmissionMachine.TestCase


# ---------------------------------------------------------------------------------------------
# 1b. Amounts up to 10**9 units cost what one unit costs
# ---------------------------------------------------------------------------------------------

LARGE_LIMITS = st.integers(1, 10**9) | st.sampled_from([10**9, MAX_RESOURCE_UNITS])


class LargeAmountsMachine(AdmissionMachine):
    """The same model with limits and amounts up to 10**9 units (and the maximum, 10**12): every invariant
    (available + leased == limit, per group, per lease) holds, and no semaphore is ever taken or given back
    once per unit (``CountingSemaphore`` fails the run if one is)."""

    @initialize(
        capacity=st.integers(1, 4),
        limits=st.dictionaries(st.sampled_from(RESOURCE_NAMES), LARGE_LIMITS, min_size=1, max_size=3),
        caps=per_group(st.none() | st.integers(1, 2), len(GROUP_KEYS)),
        peers=st.integers(0, 4),
        data=st.data(),
    )
    def setup(self, capacity: int, limits: dict[str, int], caps: list[int | None], peers: int, data: st.DataObject) -> None:
        with counting_semaphores():
            AdmissionMachine.setup(self, capacity, limits, caps, peers, data)
            # The foreign controller must fit any task drawn here; it holds one lease at a time.
            self.other = TaskAdmissionController(TaskAdmissionConfig(100, limits))


LargeAmountsMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
TestLargeAmountsStateMachine = LargeAmountsMachine.TestCase


def semaphore_calls_for(amount: int) -> tuple[int, int]:
    """(acquires, units released) of every semaphore a controller built, for one lease of ``amount`` units of
    a resource whose limit is ``amount``, a denial of one more unit meanwhile, and the release."""
    with counting_semaphores() as semaphores:
        controller = TaskAdmissionController(TaskAdmissionConfig(2, {"bytes": amount}))
    lease = controller.try_acquire(make_task(TaskGroupSpec("g"), {"bytes": amount}), empty_view())
    assert isinstance(lease, TaskAdmissionLease)
    assert controller.view().resources_available["bytes"] == 0  # snapshot() reads the same view
    denied = controller.try_acquire(make_task(TaskGroupSpec("h"), {"bytes": 1}), empty_view())
    assert isinstance(denied, TaskAdmissionDenied) and denied.reason == "no_capacity"
    assert controller.release(lease) == RELEASED
    assert dict(controller.view().resources_available) == {"bytes": amount, SUBMISSION: 2}
    return sum(s.acquires for s in semaphores), sum(s.released_units for s in semaphores)


@pytest.mark.parametrize("amount", [10**9, MAX_RESOURCE_UNITS])
def test_a_lease_of_a_billion_units_takes_the_semaphore_calls_of_a_lease_of_one(amount: int) -> None:
    one_unit = semaphore_calls_for(1)
    assert one_unit[0] <= 2 and one_unit[1] <= 2  # the worker slot, taken once and given back once
    assert semaphore_calls_for(amount) == one_unit


def test_a_release_that_would_free_more_than_the_limit_is_refused_and_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    controller = TaskAdmissionController(TaskAdmissionConfig(2, {"bytes": 10**9}))
    lease = controller.try_acquire(make_task(TaskGroupSpec("g"), {"bytes": 10}), empty_view())
    assert isinstance(lease, TaskAdmissionLease)
    # Books only a bug could leave: the ten units came back without their lease.
    controller._available["bytes"] += 10
    before = controller.view()
    with pytest.raises(
        RuntimeError,
        match=rf"^release of lease {lease.lease_id} \(task '{lease.item.task_id}'\) would return 10 unit\(s\) of 'bytes' "
        r"while 1000000000 of its limit 1000000000 are free: over-release refused, capacity unchanged$",
    ):
        controller.release(lease)
    after = controller.view()
    assert after.resources_available == before.resources_available
    assert after.leased_resources == before.leased_resources
    assert after.active_lease_count == 1
    assert dict(after.release_diagnostics) == {"over_release": 1}
    assert "over-release refused" in caplog.text


# ---------------------------------------------------------------------------------------------
# 2./3. Threads
# ---------------------------------------------------------------------------------------------


def race_releases(controller: TaskAdmissionController, lease: TaskAdmissionLease, threads: int) -> list[ReleaseResult | None]:
    """``threads`` threads, released together by a barrier, all release the same lease."""
    barrier = threading.Barrier(threads)
    results: list[ReleaseResult | None] = [None] * threads

    def release(index: int) -> None:
        barrier.wait()
        results[index] = controller.release(lease)

    run_threads(threads, release)
    return results


@pytest.mark.usefixtures("fast_switching")
def test_racing_releases_of_one_lease_release_exactly_once() -> None:
    threads, rounds = 8, 40
    controller = TaskAdmissionController(TaskAdmissionConfig(2, {"gpu": 1}))
    group = TaskGroupSpec("g")
    for round_number in range(rounds):
        lease = controller.try_acquire(make_task(group, {"gpu": 1}), empty_view())
        assert isinstance(lease, TaskAdmissionLease)
        results = race_releases(controller, lease, threads)
        assert results.count(RELEASED) == 1, results
        assert results.count(ReleaseResult(False, "duplicate")) == threads - 1, results
        assert lease.released
        view = assert_accounting(controller, [])
        assert dict(view.resources_available) == {"gpu": 1, SUBMISSION: 2}
        assert view.release_diagnostics == {"duplicate": (threads - 1) * (round_number + 1)}


@pytest.mark.usefixtures("fast_switching")
def test_concurrent_acquire_release_never_over_admits() -> None:
    limits = {SUBMISSION: 3, "gpu": 2, "llm:mock/fast": 3}
    controller = TaskAdmissionController(TaskAdmissionConfig(3, {"gpu": 2, "llm:mock/fast": 3}))
    groups = [TaskGroupSpec("a", admitted_limit=1), TaskGroupSpec("b"), TaskGroupSpec("c", admitted_limit=2)]
    requests: list[dict[str, int]] = [{}, {"gpu": 1}, {"gpu": 2}, {"llm:mock/fast": 2}, {"gpu": 1, "llm:mock/fast": 1}]
    tasks = [make_task(group, request) for group in groups for request in requests]
    queue = FairTaskQueue()
    queue.enqueue(make_task(group, {"gpu": 1}) for group in groups)  # peers: group_cap denials happen too
    queue_view = queue.view()

    in_use_lock = threading.Lock()
    in_use = Counter[str]()
    peak = Counter[str]()
    acquired = Counter[str]()
    threads, iterations = 8, 400

    def worker(index: int) -> None:
        barrier.wait()
        for step in range(iterations):
            task = tasks[(index * 7 + step) % len(tasks)]
            outcome = controller.try_acquire(task, queue_view)
            if isinstance(outcome, TaskAdmissionDenied):
                assert outcome.reason in {"no_capacity", "group_cap"}, outcome
                with in_use_lock:
                    acquired["denied"] += 1
                continue
            with in_use_lock:
                acquired["leases"] += 1
                for resource, amount in outcome.resources.items():
                    in_use[resource] += amount
                    peak[resource] = max(peak[resource], in_use[resource])
                    assert in_use[resource] <= limits[resource], (resource, dict(in_use))
            for resource, limit in limits.items():
                assert 0 <= controller.available(resource) <= limit  # lock-free counters stay in range
            if step % 5 == 0:
                view = controller.view()  # a consistent snapshot taken under the controller lock
                for resource, limit in limits.items():
                    assert view.leased_resources[resource] + view.resources_available[resource] == limit
                    assert view.leased_resources[resource] <= limit
            with in_use_lock:
                for resource, amount in outcome.resources.items():
                    in_use[resource] -= amount
            assert controller.release(outcome) == RELEASED

    barrier = threading.Barrier(threads)
    run_threads(threads, worker)

    assert acquired["leases"] > 0
    assert acquired["leases"] + acquired["denied"] == threads * iterations
    assert all(peak[r] <= limits[r] for r in limits)
    view = assert_accounting(controller, [])
    assert dict(view.resources_available) == limits
    assert dict(view.release_diagnostics) == {}


# ---------------------------------------------------------------------------------------------
# 4. Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capacity", "error", "message"),
    [
        (0, ValueError, "must be a positive int, got 0"),
        (-2, ValueError, "must be a positive int, got -2"),
        (10**12 + 1, ValueError, "must be at most 1_000_000_000_000, got 1000000000001"),
        (True, TypeError, "must be an int, got True"),
        ("3", TypeError, "must be an int, got '3'"),
        (2.0, TypeError, "must be an int, got 2.0"),
        (None, TypeError, "must be an int, got None"),
    ],
)
def test_config_rejects_bad_submission_capacity(capacity: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=rf"^TaskAdmissionConfig\.submission_capacity {re.escape(message)}$"):
        TaskAdmissionConfig(submission_capacity=capacity)


@pytest.mark.parametrize(
    ("limit", "error", "message"),
    [
        (0, ValueError, "must be a positive int, got 0"),
        (-1, ValueError, "must be a positive int, got -1"),
        (10**12 + 1, ValueError, "must be at most 1_000_000_000_000, got 1000000000001"),
        pytest.param(10**400, ValueError, "must be at most 1_000_000_000_000, got an int of about 401 digits", id="10**400"),
        (False, TypeError, "must be an int, got False"),
        ("2", TypeError, "must be an int, got '2'"),
        (float("nan"), TypeError, "must be an int, got nan"),
        (5e6, TypeError, "must be an int, got 5000000.0"),
    ],
)
def test_config_rejects_bad_resource_limit(limit: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=rf"^TaskAdmissionConfig\.resource_limits\['gpu'\] {re.escape(message)}"):
        TaskAdmissionConfig(4, {"gpu": limit})


def test_config_takes_limits_up_to_the_documented_maximum() -> None:
    config = TaskAdmissionConfig(MAX_RESOURCE_UNITS, {"bytes": MAX_RESOURCE_UNITS, "one": 1})
    assert config.all_limits == {"bytes": MAX_RESOURCE_UNITS, "one": 1, SUBMISSION: MAX_RESOURCE_UNITS}


@pytest.mark.parametrize(("key", "error", "shown"), [("", ValueError, "''"), (3, TypeError, "3"), (None, TypeError, "None")])
def test_config_rejects_bad_resource_key(key: Any, error: type[Exception], shown: str) -> None:
    with pytest.raises(error, match=rf"resource_limits: key must be a non-empty str, got {shown}$"):
        TaskAdmissionConfig(4, {key: 1})


@pytest.mark.parametrize("limits", [[("gpu", 1)], "gpu", 3])
def test_config_resource_limits_must_be_a_mapping(limits: Any) -> None:
    with pytest.raises(
        TypeError, match=r"^TaskAdmissionConfig\.resource_limits must be a mapping of resource name to units, got "
    ):
        TaskAdmissionConfig(4, limits)


class WithoutRelease:
    """Has two of the three methods a policy needs."""

    def evaluate(self, item: SchedulableTask, queue_view: QueueView, admission_view: TaskAdmissionView) -> PolicyDecision:
        return PolicyDecision(allowed=True)

    def on_acquire(self, lease: TaskAdmissionLease, decision: PolicyDecision) -> PolicyStateDelta:
        return PolicyStateDelta()


class HooksAreData(WithoutRelease):
    on_release = "not a method"


def test_controller_refuses_a_policy_class_for_an_instance() -> None:
    with pytest.raises(
        TypeError,
        match=r"^policy must be a TaskAdmissionPolicy instance, got the class StrictFairPolicy \(pass StrictFairPolicy\(\)\)$",
    ):
        TaskAdmissionController(policy=StrictFairPolicy)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("policy", "lacks"),
    [
        (object(), "evaluate, on_acquire, on_release"),
        ("strict", "evaluate, on_acquire, on_release"),  # a name is for make_policy, not for the controller
        (WithoutRelease(), "on_release"),
        (HooksAreData(), "on_release"),
    ],
)
def test_controller_refuses_a_policy_that_lacks_a_method(policy: Any, lacks: str) -> None:
    with pytest.raises(
        TypeError, match=rf"^policy must implement TaskAdmissionPolicy \(evaluate, on_acquire, on_release\); .* lacks {lacks}$"
    ):
        TaskAdmissionController(policy=policy)


@pytest.mark.parametrize("config", [{"submission": 2}, 4, "config"])
def test_controller_config_must_be_a_config(config: Any) -> None:
    with pytest.raises(TypeError, match=rf"^config must be a TaskAdmissionConfig or None, got {re.escape(repr(config))}$"):
        TaskAdmissionController(config)


def test_config_rejects_conflicting_submission_limit() -> None:
    with pytest.raises(ValueError, match=r"resource_limits\['submission'\] conflicts with submission_capacity: 5 != 3"):
        TaskAdmissionConfig(3, {SUBMISSION: 5})
    # An agreeing duplicate is harmless.
    assert TaskAdmissionConfig(3, {SUBMISSION: 3}).all_limits == {SUBMISSION: 3}


def test_config_is_frozen_snapshot_of_limits() -> None:
    limits = {"gpu": 2}
    config = TaskAdmissionConfig(3, limits)
    limits["gpu"] = 99
    assert dict(config.resource_limits) == {"gpu": 2}
    assert dict(TaskAdmissionController(config).resource_limits) == {"gpu": 2, SUBMISSION: 3}


def test_validate_request_names_unknown_resource() -> None:
    controller = TaskAdmissionController(TaskAdmissionConfig(2, {"gpu": 1}))
    with pytest.raises(
        ValueError, match=r"^resources: unknown resource 'tpu' \(no limit configured; known: \['gpu', 'submission'\]\)$"
    ):
        controller.validate_resource_request(SchedulerResourceRequest({"tpu": 1}))
    with pytest.raises(ValueError, match=r"^group 'x' resources: unknown resource 'tpu'"):
        controller.validate_resource_request(SchedulerResourceRequest({"tpu": 1}), field_name="group 'x' resources")


def test_validate_request_names_amount_above_limit() -> None:
    controller = TaskAdmissionController(TaskAdmissionConfig(2, {"gpu": 3}))
    with pytest.raises(ValueError, match=r"^resources\['gpu'\] = 4 exceeds that resource's limit 3; it could never be admitted$"):
        controller.validate_resource_request(SchedulerResourceRequest({"gpu": 4}))
    controller.validate_resource_request(SchedulerResourceRequest({"gpu": 3}))  # exactly the limit is fine
    controller.validate_resource_request(SchedulerResourceRequest())


@pytest.mark.parametrize("exhaust", [None, SUBMISSION, "gpu"])
@pytest.mark.parametrize("method", ["try_acquire", "is_eligible", "explain_blocked"])
def test_unknown_resource_is_a_clear_error_not_a_denial(method: str, exhaust: str | None) -> None:
    """Regression: with an earlier resource exhausted, an unknown resource used to be reported as
    ``no_capacity`` (a silent wait) instead of an error."""
    controller = TaskAdmissionController(TaskAdmissionConfig(1, {"gpu": 1}))
    group = TaskGroupSpec("g")
    if exhaust is not None:
        assert isinstance(controller.try_acquire(make_task(group, {exhaust: 1}), empty_view()), TaskAdmissionLease)
    bad = make_task(group, {"gpu": 1, "tpu": 1}, task_id="bad-task")
    queue = FairTaskQueue()
    queue.enqueue([bad])
    before = controller.view()
    with pytest.raises(ValueError, match=r"unknown resource 'tpu' for task 'bad-task'"):
        if method == "explain_blocked":
            controller.explain_blocked(queue.view())
        else:
            getattr(controller, method)(bad, queue.view())
    after = controller.view()
    assert after.resources_available == before.resources_available
    assert after.active_lease_count == before.active_lease_count


# ---------------------------------------------------------------------------------------------
# 5. explain_blocked and shutdown
# ---------------------------------------------------------------------------------------------


def test_explain_blocked_lists_reasons_eligible_groups_and_totals() -> None:
    controller = TaskAdmissionController(TaskAdmissionConfig(3, {"gpu": 1}))
    capped = TaskGroupSpec("capped", admitted_limit=1)
    gpu = TaskGroupSpec("gpu-group")
    free = TaskGroupSpec("free")
    held = [
        controller.try_acquire(make_task(capped), empty_view()),
        controller.try_acquire(make_task(gpu, {"gpu": 1}), empty_view()),
    ]
    assert all(isinstance(lease, TaskAdmissionLease) for lease in held)

    queue = FairTaskQueue()
    queue.enqueue([make_task(capped), make_task(capped), make_task(gpu, {"gpu": 1}), make_task(free)])
    summary = controller.explain_blocked(queue.view())

    assert dict(summary.blocked_groups) == {"capped": "group_cap", "gpu-group": "no_capacity"}
    assert summary.eligible_groups == ("free",)
    assert summary.queued_total == 4
    assert summary.active_lease_count == 2
    assert dict(summary.resources_available) == {"gpu": 0, SUBMISSION: 1}
    assert summary.earliest_available_after is None
    message = summary.message
    assert str(summary) == message
    for fragment in ("4 queued task(s)", "'capped': group_cap", "'gpu-group': no_capacity", "active leases=2", "'gpu': 0"):
        assert fragment in message, (fragment, message)

    # Once the free group's head is gone, the capped group has no ready peer and is live again.
    queue.discard(queue.view().first_candidate_tasks_by_group["free"].task_id)
    summary = controller.explain_blocked(queue.view())
    assert dict(summary.blocked_groups) == {"gpu-group": "no_capacity"}
    assert summary.eligible_groups == ("capped",)


def test_explain_blocked_with_nothing_queued() -> None:
    controller = TaskAdmissionController(TaskAdmissionConfig(1))
    summary = controller.explain_blocked(empty_view())
    assert summary.queued_total == 0
    assert dict(summary.blocked_groups) == {}
    assert summary.eligible_groups == ()
    assert summary.message == "nothing queued"


def test_shutdown_denies_acquisition_but_releases_still_work() -> None:
    controller = TaskAdmissionController(TaskAdmissionConfig(2, {"gpu": 2}))
    group = TaskGroupSpec("g")
    lease = controller.try_acquire(make_task(group, {"gpu": 2}), empty_view())
    assert isinstance(lease, TaskAdmissionLease)
    controller.shutdown()

    task = make_task(group)
    queue = FairTaskQueue()
    queue.enqueue([task])
    denied = controller.try_acquire(task, queue.view())
    assert isinstance(denied, TaskAdmissionDenied)
    assert denied.reason == "shutdown"
    assert denied.item is task
    assert controller.is_eligible(task, queue.view()) is False
    assert queue.select_next(controller.is_eligible) is None
    assert dict(controller.explain_blocked(queue.view()).blocked_groups) == {"g": "shutdown"}

    assert controller.release(lease) == RELEASED
    assert controller.release(lease) == ReleaseResult(False, "duplicate")
    view = assert_accounting(controller, [])
    assert dict(view.resources_available) == {"gpu": 2, SUBMISSION: 2}
    assert dict(view.release_diagnostics) == {"duplicate": 1}
    controller.shutdown()  # idempotent
    denied_again = controller.try_acquire(task, queue.view())
    assert isinstance(denied_again, TaskAdmissionDenied)
    assert denied_again.reason == "shutdown"


# ---------------------------------------------------------------------------------------------
# 6. Custom policies: state deltas and denial reasons
# ---------------------------------------------------------------------------------------------


class DebtPolicy:
    """Owes one unit of debt per non-submission unit leased; repays it on release."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, dict[Hashable, int]]] = []
        self.mismatched_decisions: list[tuple[str, object]] = []

    def evaluate(self, item: SchedulableTask, queue_view: QueueView, admission_view: TaskAdmissionView) -> PolicyDecision:
        self.seen.append((item.task_id, admission_view.active_lease_count, dict(admission_view.running_counts_by_group)))
        return PolicyDecision(allowed=True, diagnostics={"task": item.task_id})

    def on_acquire(self, lease: TaskAdmissionLease, decision: PolicyDecision) -> PolicyStateDelta:
        if decision.diagnostics.get("task") != lease.item.task_id:
            self.mismatched_decisions.append((lease.item.task_id, decision.diagnostics.get("task")))
        return PolicyStateDelta(self._debts(lease, 1), counters={"acquired": 1})

    def on_release(self, lease: TaskAdmissionLease) -> PolicyStateDelta:
        return PolicyStateDelta(self._debts(lease, -1), counters={"released": 1})

    @staticmethod
    def _debts(lease: TaskAdmissionLease, sign: int) -> dict[tuple[Hashable, str], int]:
        return {(lease.item.group.key, r): sign * a for r, a in lease.resources.items() if r != SUBMISSION}


def test_policy_debt_deltas_are_applied_and_return_to_empty() -> None:
    policy = DebtPolicy()
    controller = TaskAdmissionController(TaskAdmissionConfig(5, {"gpu": 4, "llm": 3}), policy)
    a, b = TaskGroupSpec("a"), TaskGroupSpec("b")
    plan = [(a, {"gpu": 2}), (a, {"gpu": 1, "llm": 1}), (b, {"llm": 2}), (b, {}), (a, {"gpu": 1})]
    held: list[TaskAdmissionLease] = []
    expected_debt = Counter[tuple[Hashable, str]]()
    for group, amounts in plan:
        task = make_task(group, amounts)
        running_before = dict(controller.view().running_counts_by_group)
        lease = controller.try_acquire(task, empty_view())
        assert isinstance(lease, TaskAdmissionLease)
        # The policy saw the controller's live state as of this decision.
        assert policy.seen[-1] == (task.task_id, len(held), running_before)
        held.append(lease)
        for resource, amount in amounts.items():
            expected_debt[(group.key, resource)] += amount
        assert dict(controller.view().policy_debt_by_group_resource) == dict(expected_debt)
        assert_accounting(controller, held)
    assert dict(controller.view().policy_debt_by_group_resource) == {("a", "gpu"): 4, ("a", "llm"): 1, ("b", "llm"): 2}

    # A duplicate release must not apply the release delta twice.
    first = held.pop(0)
    assert controller.release(first) == RELEASED
    assert controller.release(first) == ReleaseResult(False, "duplicate")
    expected_debt[("a", "gpu")] -= 2
    assert dict(controller.view().policy_debt_by_group_resource) == dict(expected_debt)

    while held:
        lease = held.pop()
        assert controller.release(lease) == RELEASED
        for resource, amount in lease.resources.items():
            if resource != SUBMISSION:
                expected_debt[(lease.item.group.key, resource)] -= amount
        assert dict(controller.view().policy_debt_by_group_resource) == {k: v for k, v in expected_debt.items() if v}
    assert dict(controller.view().policy_debt_by_group_resource) == {}
    assert policy.mismatched_decisions == []
    assert controller._policy_counters == {"acquired": len(plan), "released": len(plan)}


class DenyingPolicy:
    def __init__(self, reason: str | None, available_after: float | None) -> None:
        self.reason = reason
        self.available_after = available_after
        self.deltas_requested = 0

    def evaluate(self, item: SchedulableTask, queue_view: QueueView, admission_view: TaskAdmissionView) -> PolicyDecision:
        return PolicyDecision(False, self.reason, self.available_after, {"policy_says": "wait"})

    def on_acquire(self, lease: TaskAdmissionLease, decision: PolicyDecision) -> PolicyStateDelta:
        self.deltas_requested += 1
        return PolicyStateDelta({("x", "gpu"): 1})

    def on_release(self, lease: TaskAdmissionLease) -> PolicyStateDelta:
        self.deltas_requested += 1
        return PolicyStateDelta()


@pytest.mark.parametrize(
    ("policy_reason", "expected"),
    [
        ("borrow_debt", "borrow_debt"),
        ("group_cap", "group_cap"),
        ("custom_reason", "policy_denial"),
        (None, "policy_denial"),
        ("no_capacity", "policy_denial"),  # controller-level reasons cannot be claimed by a policy
        ("shutdown", "policy_denial"),
    ],
)
@pytest.mark.parametrize("available_after", [None, 12345.5])
def test_policy_denial_reason_mapping(policy_reason: str | None, expected: str, available_after: float | None) -> None:
    policy = DenyingPolicy(policy_reason, available_after)
    controller = TaskAdmissionController(TaskAdmissionConfig(2, {"gpu": 1}), policy)
    task = make_task(TaskGroupSpec("g"), {"gpu": 1})
    queue = FairTaskQueue()
    queue.enqueue([task])
    denied = controller.try_acquire(task, queue.view())
    assert isinstance(denied, TaskAdmissionDenied)
    assert denied.reason == expected
    assert denied.available_after == available_after
    assert dict(denied.diagnostics) == {"policy_says": "wait"}
    assert controller.is_eligible(task, queue.view()) is False
    summary = controller.explain_blocked(queue.view())
    assert dict(summary.blocked_groups) == {"g": expected}
    assert summary.earliest_available_after == available_after
    # A denial changes nothing.
    assert policy.deltas_requested == 0
    view = assert_accounting(controller, [])
    assert dict(view.policy_debt_by_group_resource) == {}


def test_explain_blocked_reports_earliest_available_after() -> None:
    class PerGroupDelay(PolicyStub):
        delays: dict[Hashable, float | None] = {"a": 30.0, "b": 10.0, "c": None}

        def evaluate(self, item: SchedulableTask, queue_view: QueueView, admission_view: TaskAdmissionView) -> PolicyDecision:
            return PolicyDecision(False, "borrow_debt", self.delays[item.group.key])

    controller = TaskAdmissionController(TaskAdmissionConfig(3), PerGroupDelay())
    queue = FairTaskQueue()
    queue.enqueue([make_task(TaskGroupSpec(key)) for key in ("a", "b", "c")])
    summary = controller.explain_blocked(queue.view())
    assert dict(summary.blocked_groups) == {"a": "borrow_debt", "b": "borrow_debt", "c": "borrow_debt"}
    assert summary.earliest_available_after == 10.0
    assert summary.eligible_groups == ()


# ---------------------------------------------------------------------------------------------
# Regressions: the is_eligible -> try_acquire approval memo
# ---------------------------------------------------------------------------------------------


class RecordingPolicy(PolicyStub):
    """Allows every group but "denied"; records the decision each on_acquire receives."""

    def __init__(self) -> None:
        self.acquired_with: list[tuple[str, bool, object]] = []

    def evaluate(self, item: SchedulableTask, queue_view: QueueView, admission_view: TaskAdmissionView) -> PolicyDecision:
        allowed = item.group.key != "denied"
        return PolicyDecision(allowed, None if allowed else "custom", diagnostics={"task": item.task_id})

    def on_acquire(self, lease: TaskAdmissionLease, decision: PolicyDecision) -> PolicyStateDelta:
        self.acquired_with.append((lease.item.task_id, decision.allowed, decision.diagnostics.get("task")))
        return PolicyStateDelta()


@pytest.mark.parametrize("interleaved", ["is_eligible", "explain_blocked"])
def test_on_acquire_gets_the_decision_for_its_own_item(interleaved: str) -> None:
    """Regression: after ``is_eligible(a)`` approved ``a``, a denied evaluation of another task in
    between made ``try_acquire(a)`` hand that other task's *denial* to ``on_acquire``."""
    policy = RecordingPolicy()
    controller = TaskAdmissionController(TaskAdmissionConfig(4), policy)
    allowed = make_task(TaskGroupSpec("ok"), task_id="allowed-task")
    denied = make_task(TaskGroupSpec("denied"), task_id="denied-task")
    queue = FairTaskQueue()
    queue.enqueue([allowed, denied])
    view = queue.view()
    assert controller.is_eligible(allowed, view) is True
    if interleaved == "is_eligible":
        assert controller.is_eligible(denied, view) is False
    else:
        assert dict(controller.explain_blocked(view).blocked_groups) == {"denied": "policy_denial"}
    lease = controller.try_acquire(allowed, view)
    assert isinstance(lease, TaskAdmissionLease)
    assert policy.acquired_with == [("allowed-task", True, "allowed-task")]


def test_try_acquire_decides_on_the_queue_view_it_is_given() -> None:
    """Regression: an ``is_eligible`` approval on a view without peers let ``try_acquire`` lease a
    capped group's task on a view where a ready peer should have capped it (``group_cap``)."""
    controller = TaskAdmissionController(TaskAdmissionConfig(4))
    capped = TaskGroupSpec("capped", admitted_limit=1)
    assert isinstance(controller.try_acquire(make_task(capped), empty_view()), TaskAdmissionLease)
    task = make_task(capped)
    assert controller.is_eligible(task, empty_view()) is True  # no peer: a lone capped group is live
    queue = FairTaskQueue()
    queue.enqueue([make_task(TaskGroupSpec("peer"))])
    denied = controller.try_acquire(task, queue.view())
    assert isinstance(denied, TaskAdmissionDenied)
    assert denied.reason == "group_cap"
    # The approval is still honoured for the very view it was made on.
    same_view = queue.view()
    assert controller.is_eligible(task, same_view) is False
    other = make_task(TaskGroupSpec("peer"))
    assert controller.is_eligible(other, same_view) is True
    assert isinstance(controller.try_acquire(other, same_view), TaskAdmissionLease)


def test_a_policy_hook_that_raises_never_breaks_acquire_or_release() -> None:
    controller = TaskAdmissionController(TaskAdmissionConfig(submission_capacity=1), RaisingPolicy(hooks_fail=True))
    queue = FairTaskQueue()
    item = SchedulableTask("t1", None, TaskGroupSpec("g"))
    lease = controller.try_acquire(item, queue.view())
    assert isinstance(lease, TaskAdmissionLease)
    assert controller.release(lease) == ReleaseResult(True, "released")
    assert controller.view().resources_available["submission"] == 1
    assert controller.statistics().policy_counters == {"policy_errors": 2}


def test_peak_leased_resources_is_a_high_water_mark() -> None:
    controller = TaskAdmissionController(TaskAdmissionConfig(3, {"gpu": 2, "db": 1}))
    assert controller.peak_leased_resources() == {SUBMISSION: 0, "gpu": 0, "db": 0}
    group = TaskGroupSpec("g")
    leases = [controller.try_acquire(make_task(group, amounts), empty_view()) for amounts in ({"gpu": 1}, {"gpu": 1}, None)]
    assert all(isinstance(lease, TaskAdmissionLease) for lease in leases)
    for lease in leases[:2]:
        assert controller.release(lease) == RELEASED  # type: ignore[arg-type]
    assert controller.release(leases[0]) == ReleaseResult(False, "duplicate")  # type: ignore[arg-type]
    again = controller.try_acquire(make_task(group, {"gpu": 1}), empty_view())
    assert isinstance(again, TaskAdmissionLease)
    assert dict(controller.view().leased_resources) == {SUBMISSION: 2, "gpu": 1, "db": 0}
    peaks = controller.peak_leased_resources()
    assert peaks == {SUBMISSION: 3, "gpu": 2, "db": 0}
    peaks["gpu"] = 0  # a copy
    for lease in (leases[2], again):
        assert controller.release(lease) == RELEASED  # type: ignore[arg-type]
    assert controller.active_lease_count == 0
    assert controller.peak_leased_resources() == {SUBMISSION: 3, "gpu": 2, "db": 0}


class AllowingPolicy(StrictFairPolicy):
    """Any policy other than the default one itself: the fast path must leave it to evaluate."""


def test_lease_fitting_leaves_any_other_policy_and_a_shut_down_controller_to_the_slow_path() -> None:
    group = TaskGroupSpec("g")
    for controller in (
        TaskAdmissionController(TaskAdmissionConfig(4), AllowingPolicy()),
        TaskAdmissionController(TaskAdmissionConfig(4)),
    ):
        queue = FairTaskQueue()
        queue.enqueue([make_task(group) for _ in range(3)])
        if type(controller.policy) is StrictFairPolicy:
            controller.shutdown()
        assert controller.lease_fitting(queue, 4) == []
        assert len(queue) == 3 and controller.active_lease_count == 0


def test_lease_fitting_takes_fair_order_up_to_the_free_units() -> None:
    controller = TaskAdmissionController(TaskAdmissionConfig(3))
    queue = FairTaskQueue()
    a, b = TaskGroupSpec("a"), TaskGroupSpec("b")
    tasks = [make_task(a, task_id="a1"), make_task(a, task_id="a2"), make_task(b, task_id="b1"), make_task(b, task_id="b2")]
    queue.enqueue(tasks)
    leases = controller.lease_fitting(queue, 8)
    assert [lease.item.task_id for lease in leases] == ["a1", "b1", "a2"]
    assert_accounting(controller, leases)
    assert controller.available() == 0 and list(queue.view().first_candidate_tasks_by_group) == ["b"]
