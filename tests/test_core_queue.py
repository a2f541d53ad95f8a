"""FairTaskQueue against a tiny reference model of the weighted virtual-time rule.

The reference model below is written to be obviously correct, not fast: it re-sorts the active
groups on every select, walks all of them to skip heads that need an exhausted resource, and
recomputes every view field from the task lists. The queue must agree with it on every accepted id,
every head offered to the predicate, every selection (and the decision it carries), every commit
(including stale ones), every drain, ``len``, ``view()`` and virtual time, after every step of every
generated sequence.
"""

from __future__ import annotations

import itertools
import math
import random
import threading
from collections import Counter
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from support import per_group

from threadsched.core.admission import TaskAdmissionController
from threadsched.core.contracts import (
    MAX_WEIGHT,
    MIN_WEIGHT,
    VIRTUAL_TIME_QUANTA,
    SchedulableTask,
    SchedulerResourceRequest,
    TaskGroupSpec,
)
from threadsched.core.queue import FairTaskQueue, GroupState
from threadsched.core.values import QueueSelection, QueueView, TaskAdmissionConfig

# Non-string hashables on purpose: the queue must treat group keys as opaque hashables.
GROUP_KEYS: tuple[Hashable, ...] = ("alpha", "beta", ("tenant", 1), 7, frozenset({"f"}))
TASK_IDS: tuple[str, ...] = tuple(f"t{i}" for i in range(24))
REQUESTS: tuple[SchedulerResourceRequest, ...] = (
    SchedulerResourceRequest(),
    SchedulerResourceRequest({"llm:a": 1}),
    SchedulerResourceRequest({"llm:a": 2, "gpu": 1}),
    SchedulerResourceRequest({"llm:b": 3}),
    SchedulerResourceRequest({"gpu": 2}),
)
# Weights below 1 on purpose: every weight of the accepted range is honoured, none is clamped to 1.
WEIGHTS = st.one_of(st.integers(min_value=1, max_value=8), st.sampled_from([0.25, 0.5]), st.floats(min_value=0.1, max_value=8.0))
# Resources a select may be told are exhausted. REQUESTS has five head signatures over the first three;
# "submission" is named by every task, so exhausting it leaves nothing to select.
EXHAUSTIBLE: tuple[str, ...] = ("llm:a", "llm:b", "gpu", "submission")
EXHAUSTED_MASKS = st.integers(min_value=0, max_value=8)  # bit i set: EXHAUSTIBLE[i] exhausted (8: submission only)
# The state machine draws plain integers (cheap to generate, quick to shrink towards "t0 in the
# first group with the default request" and "everything eligible") and decodes them here.
TASK_SHAPES: tuple[tuple[str, Hashable, SchedulerResourceRequest], ...] = tuple(itertools.product(TASK_IDS, GROUP_KEYS, REQUESTS))
GROUP_MASKS = st.integers(min_value=0, max_value=2 ** len(GROUP_KEYS) - 1)  # bit i set: GROUP_KEYS[i] ineligible
ID_MASKS = st.integers(min_value=0, max_value=2 ** len(TASK_IDS) - 1)  # bit i set: TASK_IDS[i] ineligible


def exhausted_set(mask: int) -> frozenset[str]:
    return frozenset(resource for bit, resource in enumerate(EXHAUSTIBLE) if mask >> bit & 1)


def needs_any(item: SchedulableTask, exhausted: Collection[str]) -> bool:
    return any(resource in exhausted for resource in item.resource_request.amounts)


def ineligibility(group_mask: int, id_mask: int) -> Callable[[SchedulableTask], bool]:
    groups = frozenset(key for bit, key in enumerate(GROUP_KEYS) if group_mask >> bit & 1)
    ids = frozenset(task_id for bit, task_id in enumerate(TASK_IDS) if id_mask >> bit & 1)
    return lambda item: item.group.key not in groups and item.task_id not in ids


_payloads = itertools.count()


def make_task(task_id: str, spec: TaskGroupSpec, request: SchedulerResourceRequest = REQUESTS[0]) -> SchedulableTask:
    # A fresh payload per object: identity of the returned task is checked via (task_id, payload).
    return SchedulableTask(task_id, next(_payloads), spec, request)


# --------------------------------------------------------------------------------------------
# Reference model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSelection:
    item: SchedulableTask
    group: Hashable
    seq: int


class ReferenceQueue:
    """The queue's ordering rule (weighted virtual time, FIFO per group), written out literally. Virtual
    time counts whole quanta (``VIRTUAL_TIME_QUANTA`` per task of weight 1), so it is an exact int."""

    def __init__(self) -> None:
        self.V = 0
        self.F: dict[Hashable, int] = {}
        self.tasks: dict[Hashable, list[SchedulableTask]] = {}  # per group FIFO, only non-empty groups
        self.active: dict[Hashable, tuple[int, int]] = {}  # group -> (tag, activation seq)
        self._seq = itertools.count()

    # -- helpers --------------------------------------------------------------------------------
    def _activate(self, group: Hashable, tag: int) -> None:
        self.active[group] = (tag, next(self._seq))

    def queued(self) -> dict[str, SchedulableTask]:
        return {t.task_id: t for fifo in self.tasks.values() for t in fifo}

    def __len__(self) -> int:
        return sum(len(fifo) for fifo in self.tasks.values())

    def order(self) -> list[Hashable]:
        return sorted(self.active, key=lambda g: self.active[g])

    # -- operations -----------------------------------------------------------------------------
    def enqueue(self, items: list[SchedulableTask]) -> tuple[str, ...]:
        accepted = []
        queued = set(self.queued())
        for item in items:
            if item.task_id in queued:
                continue
            queued.add(item.task_id)
            group = item.group.key
            self.tasks.setdefault(group, []).append(item)
            if group not in self.active:
                self._activate(group, self.F.get(group, self.V))
            accepted.append(item.task_id)
        return tuple(accepted)

    def discard(self, task_id: str) -> bool:
        for group, fifo in self.tasks.items():
            for index, item in enumerate(fifo):
                if item.task_id == task_id:
                    del fifo[index]
                    if not fifo:
                        del self.tasks[group]
                        del self.active[group]  # F[group] is kept
                    return True
        return False

    def walk(
        self, eligible: Callable[[SchedulableTask], bool], exhausted: Collection[str] = ()
    ) -> tuple[list[str], ModelSelection | None]:
        """The heads offered to the predicate, in order, and the selection. A head that needs an
        exhausted resource is ineligible and is not offered."""
        offered = []
        for group in self.order():
            head = self.tasks[group][0]
            if needs_any(head, exhausted):
                continue
            offered.append(head.task_id)
            if eligible(head):
                return offered, ModelSelection(head, group, self.active[group][1])
        return offered, None

    def select(self, eligible: Callable[[SchedulableTask], bool], exhausted: Collection[str] = ()) -> ModelSelection | None:
        return self.walk(eligible, exhausted)[1]

    def commit(self, selection: ModelSelection) -> SchedulableTask | None:
        group = selection.group
        if group not in self.active or self.active[group][1] != selection.seq:
            return None
        fifo = self.tasks[group]
        if fifo[0].task_id != selection.item.task_id:
            return None
        item = fifo.pop(0)
        self.V = max(self.V, self.F.get(group, self.V))
        self.F[group] = self.V + round(Fraction(VIRTUAL_TIME_QUANTA) / Fraction(item.group.weight))
        del self.active[group]
        if fifo:
            self._activate(group, self.F[group])
        else:
            del self.tasks[group]
        return item

    def drain(self) -> list[SchedulableTask]:
        drained = [t for fifo in self.tasks.values() for t in fifo]
        self.tasks.clear()
        self.active.clear()
        return drained

    # -- brute-force view -------------------------------------------------------------------------
    def expected_view(self) -> dict[str, Any]:
        demand: dict[Hashable, dict[str, int]] = {}
        for group, fifo in self.tasks.items():
            totals: dict[str, int] = {}
            for item in fifo:
                for resource, amount in item.resource_request.amounts.items():
                    totals[resource] = totals.get(resource, 0) + amount
            demand[group] = totals
        peer: dict[str, dict[Hashable, int]] = {}
        for group, totals in demand.items():
            for resource, amount in totals.items():
                peer.setdefault(resource, {})[group] = amount
        return {
            "queued_total": len(self),
            "queued_by_group": {g: len(fifo) for g, fifo in self.tasks.items()},
            "queued_resource_demand_by_group": demand,
            "first_candidate_resources_by_group": {g: dict(fifo[0].resource_request.amounts) for g, fifo in self.tasks.items()},
            "first_candidate_tasks_by_group": {g: ident(fifo[0]) for g, fifo in self.tasks.items()},
            "first_candidate_group_specs_by_group": {g: fifo[0].group for g, fifo in self.tasks.items()},
            "queued_peer_demand_by_resource": peer,
        }


def ident(item: SchedulableTask | None) -> tuple[str, Any] | None:
    return None if item is None else (item.task_id, item.payload)


def idents(items: Iterable[SchedulableTask]) -> list[tuple[str, Any]]:
    return sorted((item.task_id, item.payload) for item in items)


def plain_view(view: QueueView) -> dict[str, Any]:
    return {
        "queued_total": view.queued_total,
        "queued_by_group": dict(view.queued_by_group),
        "queued_resource_demand_by_group": {g: dict(d) for g, d in view.queued_resource_demand_by_group.items()},
        "first_candidate_resources_by_group": {g: dict(d) for g, d in view.first_candidate_resources_by_group.items()},
        "first_candidate_tasks_by_group": {g: ident(t) for g, t in view.first_candidate_tasks_by_group.items()},
        "first_candidate_group_specs_by_group": dict(view.first_candidate_group_specs_by_group),
        "queued_peer_demand_by_resource": {r: dict(m) for r, m in view.queued_peer_demand_by_resource.items()},
    }


def assert_view_immutable(view: QueueView) -> None:
    mappings: list[Mapping[Any, Any]] = [
        view.queued_by_group,
        view.queued_resource_demand_by_group,
        view.first_candidate_resources_by_group,
        view.first_candidate_tasks_by_group,
        view.first_candidate_group_specs_by_group,
        view.queued_peer_demand_by_resource,
    ]
    for mapping in mappings:
        with pytest.raises(TypeError):
            mapping["intruder"] = 1  # type: ignore[index]


def assert_unlocked(queue: FairTaskQueue) -> None:
    # Not `assert_unlocked(queue)`: on failure pytest would repr() the queue, which takes the lock.
    locked = queue._lock.locked()
    assert not locked, "called with the queue lock held"


def assert_matches(queue: FairTaskQueue, model: ReferenceQueue) -> None:
    assert len(queue) == len(model)
    assert plain_view(queue.view()) == model.expected_view()
    stats = queue.statistics()
    assert stats.queued_total == len(model)
    assert stats.active_groups == len(model.active)
    assert stats.virtual_time == model.V / VIRTUAL_TIME_QUANTA
    queued = model.queued()
    for task_id in TASK_IDS:
        assert (task_id in queue) == (task_id in queued)


# --------------------------------------------------------------------------------------------
# 1. Stateful model-based test
# --------------------------------------------------------------------------------------------


class FairQueueMachine(RuleBasedStateMachine):
    MAX_PENDING = 6
    MAX_SNAPSHOTS = 3

    def __init__(self) -> None:
        super().__init__()
        self.queue = FairTaskQueue()
        self.model = ReferenceQueue()
        self.specs: dict[Hashable, TaskGroupSpec] = {}
        self.pending: list[tuple[QueueSelection, ModelSelection]] = []
        self.snapshots: list[tuple[QueueView, dict[str, Any]]] = []

    @initialize(weights=per_group(WEIGHTS, len(GROUP_KEYS)))
    def set_weights(self, weights: list[float]) -> None:
        self.specs = {key: TaskGroupSpec(key, weight=w) for key, w in zip(GROUP_KEYS, weights, strict=True)}

    # -- helpers --------------------------------------------------------------------------------
    def _select(
        self, eligible: Callable[[SchedulableTask], bool], exhausted: frozenset[str], tokens: bool
    ) -> tuple[QueueSelection | None, ModelSelection | None]:
        """Select with ``eligible``; with ``tokens`` the predicate answers with arbitrary truthy and
        falsy objects instead of booleans, and the selection must carry the truthy one it returned."""
        offered: list[str] = []
        views_checked: list[bool] = []
        decisions: dict[str, object] = {}

        def predicate(item: SchedulableTask, view: QueueView) -> object:
            assert_unlocked(self.queue)
            assert not needs_any(item, exhausted), "a head needing an exhausted resource was offered"
            offered.append(item.task_id)
            if not views_checked:  # the lazily built view handed to the predicate is a correct snapshot
                assert plain_view(view) == self.model.expected_view()
                views_checked.append(True)
            verdict = eligible(item)
            if not tokens:
                return verdict
            decision: object = ("approved", item.task_id, len(offered)) if verdict else (None, 0, "", [])[len(offered) % 4]
            decisions[item.task_id] = decision
            return decision

        selection = self.queue.select_next(predicate, exhausted=exhausted)
        expected_offered, expected = self.model.walk(eligible, exhausted)
        assert offered == expected_offered, "the predicate must see the eligible-so-far heads in (tag, seq) order, each once"
        if expected is None:
            assert selection is None
        else:
            assert selection is not None
            assert ident(selection.item) == ident(expected.item)
            if tokens:
                assert selection.decision is decisions[selection.item.task_id]
            else:
                assert selection.decision is True
        return selection, expected

    def _commit(self, selection: QueueSelection, expected: ModelSelection) -> None:
        committed = self.queue.commit(selection)
        model_committed = self.model.commit(expected)
        assert ident(committed) == ident(model_committed)
        if committed is not None:
            assert committed is selection.item

    # -- rules ----------------------------------------------------------------------------------
    # No preconditions and no st.data(): every rule is valid in every state (a rule with nothing
    # to act on is a no-op), which keeps generation cheap and lets a failure shrink quickly.
    @rule(batch=st.lists(st.integers(min_value=0, max_value=len(TASK_SHAPES) - 1), max_size=8))
    def enqueue(self, batch: list[int]) -> None:
        """``batch`` indexes TASK_SHAPES: (task id, group key, resource request) per task."""
        items = [make_task(task_id, self.specs[key], request) for task_id, key, request in map(TASK_SHAPES.__getitem__, batch)]
        accepted = self.queue.enqueue(items)
        assert accepted == self.model.enqueue(items)
        assert len(set(accepted)) == len(accepted)

    @rule(picks=st.lists(st.integers(min_value=0, max_value=len(TASK_SHAPES) - 1), min_size=1, max_size=4))
    def enqueue_already_queued(self, picks: list[int]) -> None:
        """Ids that are queued right now, in any group, with any request: all ignored."""
        queued = sorted(self.model.queued())
        if not queued:
            return
        items = []
        for pick in picks:
            _, key, request = TASK_SHAPES[pick]
            items.append(make_task(queued[pick % len(queued)], self.specs[key], request))
        before = plain_view(self.queue.view())
        assert self.queue.enqueue(items) == ()
        assert self.model.enqueue(items) == ()
        assert plain_view(self.queue.view()) == before

    @rule(task_id=st.sampled_from((*TASK_IDS, "never-enqueued")))
    def discard(self, task_id: str) -> None:
        assert self.queue.discard(task_id) is self.model.discard(task_id)

    @rule(ineligible_groups=GROUP_MASKS, ineligible_ids=ID_MASKS, exhausted=EXHAUSTED_MASKS, tokens=st.booleans())
    def select_then_commit(self, ineligible_groups: int, ineligible_ids: int, exhausted: int, tokens: bool) -> None:
        selection, expected = self._select(ineligibility(ineligible_groups, ineligible_ids), exhausted_set(exhausted), tokens)
        if selection is not None:
            assert expected is not None
            self._commit(selection, expected)

    @rule(ineligible_groups=GROUP_MASKS, ineligible_ids=ID_MASKS, exhausted=EXHAUSTED_MASKS, tokens=st.booleans())
    def select_and_hold(self, ineligible_groups: int, ineligible_ids: int, exhausted: int, tokens: bool) -> None:
        """Select now, commit later (after arbitrary other steps): the selection may have gone stale."""
        selection, expected = self._select(ineligibility(ineligible_groups, ineligible_ids), exhausted_set(exhausted), tokens)
        if selection is not None:
            assert expected is not None
            self.pending.append((selection, expected))
            del self.pending[: -self.MAX_PENDING]

    @rule(index=st.integers(min_value=0, max_value=MAX_PENDING - 1), keep=st.booleans())
    def commit_held(self, index: int, keep: bool) -> None:
        if not self.pending:
            return
        index %= len(self.pending)
        selection, expected = self.pending[index]
        if not keep:  # kept selections get committed again later: a second commit must be stale
            del self.pending[index]
        self._commit(selection, expected)

    @rule()
    def drain(self) -> None:
        drained = self.queue.drain()
        expected = self.model.drain()
        assert idents(drained) == idents(expected)

    @rule()
    def take_snapshot(self) -> None:
        view = self.queue.view()
        assert_view_immutable(view)
        self.snapshots.append((view, self.model.expected_view()))
        del self.snapshots[: -self.MAX_SNAPSHOTS]

    # -- invariants (one function: cheaper to run after every step) --------------------------------
    @invariant()
    def queue_matches_model(self) -> None:
        assert_matches(self.queue, self.model)
        # Views taken earlier are snapshots: later steps never change them.
        for view, expected_fields in self.snapshots:
            assert plain_view(view) == expected_fields
        # With everything eligible, the first head in (tag, seq) order is offered, and only it.
        calls: list[str] = []

        def predicate(item: SchedulableTask, view: QueueView) -> bool:
            calls.append(item.task_id)
            return True

        selection = self.queue.select_next(predicate)
        expected = self.model.select(lambda item: True)
        assert ident(selection.item if selection else None) == ident(expected.item if expected else None)
        assert len(calls) == (1 if expected is not None else 0)
        assert selection is None or selection.decision is True


# On failure: shrink one bug only and skip the explain phase, so a counterexample comes back quickly.
FairQueueMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    report_multiple_bugs=False,
)
TestFairQueueMachine = FairQueueMachine.TestCase


# --------------------------------------------------------------------------------------------
# Many groups: exercises the heap's lazy deletion and compaction (> 64 entries) against the model
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_many_groups_long_run_matches_model(seed: int) -> None:
    rng = random.Random(seed)
    keys = [("g", i) for i in range(120)]
    specs = {key: TaskGroupSpec(key, weight=rng.choice([1, 1.5, 2, 3.25, 8])) for key in keys}
    ids = [f"task-{i}" for i in range(400)]
    queue, model = FairTaskQueue(), ReferenceQueue()
    compacted = False
    for _ in range(3000):
        before = queue.statistics().heap_entries
        op = rng.random()
        if op < 0.35:
            items = [make_task(rng.choice(ids), specs[rng.choice(keys)], rng.choice(REQUESTS)) for _ in range(rng.randint(1, 6))]
            assert queue.enqueue(items) == model.enqueue(items)
        elif op < 0.55:
            task_id = rng.choice(ids)
            assert queue.discard(task_id) is model.discard(task_id)
        else:
            skip: set[Hashable] = set(rng.sample(keys, rng.randint(0, 60)))
            exhausted = exhausted_set(rng.randrange(8))

            def eligible(item: SchedulableTask, skip: set[Hashable] = skip) -> bool:
                return item.group.key not in skip

            selection = queue.select_next(lambda item, view: eligible(item), exhausted=exhausted)
            expected = model.select(eligible, exhausted)
            assert ident(selection.item if selection else None) == ident(expected.item if expected else None)
            if selection is not None and expected is not None:
                assert ident(queue.commit(selection)) == ident(model.commit(expected))
        compacted = compacted or queue.statistics().heap_entries < before - 1
        assert len(queue) == len(model)
        assert queue.statistics().virtual_time == model.V / VIRTUAL_TIME_QUANTA
    assert_matches(queue, model)
    assert compacted, "the run never compacted the heap; make it longer"


def test_weight_is_the_share() -> None:
    """Two always-backlogged groups with weights 1 and 3 get committed 1:3 (ties by activation order)."""
    light, heavy = TaskGroupSpec("light", weight=1), TaskGroupSpec("heavy", weight=3)
    queue, model = FairTaskQueue(), ReferenceQueue()
    items = [make_task(f"l{i}", light) for i in range(40)] + [make_task(f"h{i}", heavy) for i in range(40)]
    assert queue.enqueue(items) == model.enqueue(items)
    order = []
    for _ in range(40):
        selection, expected = queue.select_next(lambda item, view: True), model.select(lambda item: True)
        assert selection is not None and expected is not None
        committed = queue.commit(selection)
        assert committed is not None and ident(committed) == ident(model.commit(expected))
        order.append(committed.group.key)
    assert order[:8] == ["light", "heavy", "heavy", "heavy", "light", "heavy", "heavy", "heavy"]
    assert order.count("heavy") == 30
    assert order.count("light") == 10


def test_weight_below_one_is_honoured_not_clamped() -> None:
    """Weight 0.5 is half the share of weight 1: each commit moves its tag by 2, not by 1."""
    half, whole = TaskGroupSpec("half", weight=0.5), TaskGroupSpec("whole", weight=1)
    queue, model = FairTaskQueue(), ReferenceQueue()
    items = [make_task(f"h{i}", half) for i in range(40)] + [make_task(f"w{i}", whole) for i in range(40)]
    assert queue.enqueue(items) == model.enqueue(items)
    order = []
    for _ in range(30):
        selection, expected = queue.select_next(lambda item, view: True), model.select(lambda item: True)
        assert selection is not None and expected is not None
        committed = queue.commit(selection)
        assert committed is not None and ident(committed) == ident(model.commit(expected))
        order.append(committed.group.key)
    # Tags: half 0, 2, 4, ...; whole 0, 1, 2, ...; ties go to the earlier activation.
    assert order[:7] == ["half", "whole", "whole", "half", "whole", "whole", "half"]
    assert (order.count("half"), order.count("whole")) == (10, 20)
    assert queue.statistics().virtual_time == model.V / VIRTUAL_TIME_QUANTA


# Every accepted weight, spread evenly over its twelve orders of magnitude, and the two ends themselves.
ACCEPTED_WEIGHTS = st.one_of(
    st.sampled_from([MIN_WEIGHT, MAX_WEIGHT, 1.0, 3.0]),
    st.floats(min_value=math.log10(MIN_WEIGHT), max_value=math.log10(MAX_WEIGHT)).map(
        lambda exponent: min(MAX_WEIGHT, max(MIN_WEIGHT, 10.0**exponent))
    ),
)


def admit_one_at_a_time(queue: FairTaskQueue, count: int) -> Counter[Hashable]:
    """Admit ``count`` queued tasks as the dispatcher does, one lease at a time (each released before the
    next is taken); how many each group got."""
    controller = TaskAdmissionController(TaskAdmissionConfig(submission_capacity=1))
    admitted = Counter[Hashable]()
    for _ in range(count):
        (lease,) = controller.lease_fitting(queue, 1)
        admitted[lease.item.group.key] += 1
        assert controller.release(lease).released
    return admitted


@settings(max_examples=150, deadline=None)
@given(
    light=ACCEPTED_WEIGHTS,
    heavy=ACCEPTED_WEIGHTS,
    tiny_tasks=st.integers(min_value=0, max_value=3000),
    admissions=st.integers(min_value=1, max_value=300),
)
# A float clock pushed to 1e10 by the tiny group rounded both steps to one or two of its ulps: 1:2 for 1:3.
@example(light=1e6 / 3, heavy=1e6, tiny_tasks=10_000, admissions=300)
@example(light=8e5, heavy=1e6, tiny_tasks=3000, admissions=300)
@example(light=1.0, heavy=3.0, tiny_tasks=3000, admissions=300)
@example(light=MIN_WEIGHT, heavy=MAX_WEIGHT, tiny_tasks=3000, admissions=300)
def test_two_backlogged_groups_are_admitted_by_their_weights_over_the_whole_range(
    light: float, heavy: float, tiny_tasks: int, admissions: int
) -> None:
    """However far a group of the smallest weight has pushed virtual time first, two groups that stay
    backlogged are admitted in their weights' ratio: each within one task of its weighted share of every
    prefix of the admissions (the WFQ bound), for any two weights of the accepted range."""
    queue = FairTaskQueue()
    tiny = TaskGroupSpec("tiny", weight=MIN_WEIGHT)  # every task moves virtual time by 10**6 units
    queue.enqueue([make_task(f"tiny{i}", tiny) for i in range(tiny_tasks)])
    assert sum(admit_one_at_a_time(queue, tiny_tasks).values()) == tiny_tasks
    a, b = TaskGroupSpec("a", weight=light), TaskGroupSpec("b", weight=heavy)
    queue.enqueue([make_task(f"a{i}", a) for i in range(admissions)] + [make_task(f"b{i}", b) for i in range(admissions)])
    admitted = Counter[Hashable]()
    share_of_a = Fraction(light) / (Fraction(light) + Fraction(heavy))
    for done in range(1, admissions + 1):
        admitted.update(admit_one_at_a_time(queue, 1))
        # One task either way, plus what rounding each step to a whole quantum may add up to.
        slack = 1 + Fraction(done, 10**6)
        assert abs(admitted["a"] - done * share_of_a) <= slack, (done, dict(admitted))
    assert admitted["a"] + admitted["b"] == admissions


# --------------------------------------------------------------------------------------------
# 2. The predicate runs without the lock, and its view is usable
# --------------------------------------------------------------------------------------------


def test_is_eligible_called_without_lock_and_view_is_usable() -> None:
    a, b = TaskGroupSpec("a"), TaskGroupSpec(("b", 2), weight=2)
    queue = FairTaskQueue()
    model = ReferenceQueue()
    items = [
        make_task("a1", a, REQUESTS[1]),
        make_task("a2", a, REQUESTS[2]),
        make_task("b1", b, REQUESTS[3]),
    ]
    queue.enqueue(items)
    model.enqueue(items)
    seen: list[str] = []

    def predicate(item: SchedulableTask, view: QueueView) -> bool:
        assert_unlocked(queue)
        seen.append(item.task_id)
        # Every field is readable, correct, immutable; the queue itself may be read re-entrantly.
        assert plain_view(view) == model.expected_view()
        assert plain_view(queue.view()) == plain_view(view)
        assert_view_immutable(view)
        assert "queued_total=3" in repr(view)
        assert len(queue) == 3
        assert item.task_id in queue
        return item.group.key == ("b", 2)

    selection = queue.select_next(predicate)
    assert seen == ["a1", "b1"]
    assert selection is not None
    assert selection.item is items[2]
    assert plain_view(selection.view) == model.expected_view()
    assert queue.commit(selection) is items[2]


def test_enqueue_iterates_caller_iterable_without_lock() -> None:
    """A generator passed to enqueue is user code: it must not run under the queue lock."""
    spec = TaskGroupSpec("g")
    queue = FairTaskQueue()
    queue.enqueue([make_task("first", spec)])

    def produce() -> Iterator[SchedulableTask]:
        assert_unlocked(queue)
        assert queue.view().queued_total == 1
        yield make_task("second", spec)
        assert_unlocked(queue)
        yield make_task("third", spec)

    assert queue.enqueue(produce()) == ("second", "third")
    assert len(queue) == queue.view().queued_total == 3


def test_enqueue_failing_midway_leaves_views_consistent() -> None:
    spec = TaskGroupSpec("g")
    queue = FairTaskQueue()
    queue.enqueue([make_task("first", spec)])
    assert queue.view().queued_total == 1  # caches a view

    def produce() -> Iterator[SchedulableTask]:
        yield make_task("second", spec)
        raise RuntimeError("producer failed")

    with pytest.raises(RuntimeError, match="producer failed"):
        queue.enqueue(produce())
    view = queue.view()
    assert len(queue) == view.queued_total == sum(view.queued_by_group.values())

    with pytest.raises(AttributeError):
        queue.enqueue([make_task("third", spec), None])  # type: ignore[list-item]
    view = queue.view()
    assert len(queue) == view.queued_total == sum(view.queued_by_group.values())
    assert view.queued_resource_demand_by_group["g"]["submission"] == len(queue)


# --------------------------------------------------------------------------------------------
# 3. A predicate that mutates the queue
# --------------------------------------------------------------------------------------------


def test_predicate_mutating_other_groups_restarts_and_returns_valid_head() -> None:
    a, b, c, d = (TaskGroupSpec(k) for k in ("a", "b", "c", "d"))
    queue, model = FairTaskQueue(), ReferenceQueue()
    initial = [make_task("a1", a), make_task("b1", b), make_task("b2", b), make_task("c1", c)]
    queue.enqueue(initial)
    model.enqueue(initial)
    calls: list[str] = []

    def predicate(item: SchedulableTask, view: QueueView) -> bool:
        calls.append(item.task_id)
        if item.task_id == "a1":
            # Mutate while the walk is in progress: drop b's head, add a brand-new group.
            assert queue.discard("b1") and model.discard("b1")
            extra = [make_task("d1", d)]
            assert queue.enqueue(extra) == model.enqueue(extra) == ("d1",)
            return False
        return True

    selection = queue.select_next(predicate)
    # The walk restarted; a1 (same head, already rejected) is not offered again; b2 is b's new head.
    assert calls == ["a1", "b2"]
    assert selection is not None
    expected = model.select(lambda item: item.task_id != "a1")
    assert expected is not None
    assert ident(selection.item) == ident(expected.item) == ident(model.tasks["b"][0])
    assert ident(queue.commit(selection)) == ident(model.commit(expected))
    assert_matches(queue, model)


@pytest.mark.parametrize("rejected_before", [0, 1, 3])
def test_predicate_mutating_on_last_candidate_restarts(rejected_before: int) -> None:
    """The queue changes while the last candidate is checked: the new eligible head must be found.

    ``rejected_before`` heads are rejected (without mutation) before the last one, so the mutation
    happens on the first offer (0) or deeper in the walk (1, 3)."""
    specs = [TaskGroupSpec(("g", i)) for i in range(rejected_before + 1)]
    queue = FairTaskQueue()
    queue.enqueue([make_task(f"g{i}", spec) for i, spec in enumerate(specs)])
    late = make_task("late", TaskGroupSpec("late"))
    offered: list[str] = []

    def predicate(item: SchedulableTask, view: QueueView) -> bool:
        offered.append(item.task_id)
        if item.task_id == f"g{rejected_before}":
            queue.enqueue([late])
        return item.task_id == "late"

    selection = queue.select_next(predicate)
    assert selection is not None
    assert selection.item is late
    assert offered == [*(f"g{i}" for i in range(rejected_before + 1)), "late"]  # each head offered once
    assert queue.commit(selection) is late


def test_predicate_enqueue_mid_walk_is_seen_in_order() -> None:
    """A group activated by the predicate mid-walk with a smaller tag than the rest of the walk
    must be offered before them: the walk cannot go on over a heap that changed under it."""
    a, b, c, d = (TaskGroupSpec(k) for k in ("a", "b", "c", "d"))
    queue, model = FairTaskQueue(), ReferenceQueue()
    items = [make_task(f"{k}{i}", spec) for i in (1, 2) for spec, k in ((a, "a"), (b, "b"), (c, "c"))]
    assert queue.enqueue(items) == model.enqueue(items)
    for _ in range(2):  # commit a1, b1: V stays 0, F[a] = F[b] = 1
        selection, expected = queue.select_next(lambda item, view: True), model.select(lambda item: True)
        assert selection is not None and expected is not None
        assert ident(queue.commit(selection)) == ident(model.commit(expected))
    assert model.order() == ["c", "a", "b"]  # tags 0, 1, 1
    # c1 and a2 are rejected; while a2 is checked, d activates with tag V = 0: it goes before a and b.
    d1 = make_task("d1", d)
    offered: list[str] = []

    def predicate(item: SchedulableTask, view: QueueView) -> bool:
        offered.append(item.task_id)
        if item.task_id == "a2":
            assert queue.enqueue([d1]) == model.enqueue([d1])
        return item.task_id not in {"a2", "c1"}

    selection = queue.select_next(predicate)
    expected = model.select(lambda item: item.task_id not in {"a2", "c1"})
    assert expected is not None and expected.item is d1
    assert selection is not None and selection.item is d1
    assert offered == ["c1", "a2", "d1"]
    assert ident(queue.commit(selection)) == ident(model.commit(expected))
    assert_matches(queue, model)


def test_predicate_mutating_another_group_then_accepting_gives_committable_selection() -> None:
    a, b = TaskGroupSpec("a"), TaskGroupSpec("b")
    queue = FairTaskQueue()
    a1 = make_task("a1", a)
    queue.enqueue([a1, make_task("b1", b)])

    def predicate(item: SchedulableTask, view: QueueView) -> bool:
        queue.discard("b1")
        queue.enqueue([make_task("a2", a), make_task("b2", b)])
        return True

    selection = queue.select_next(predicate)
    assert selection is not None and selection.item is a1
    assert queue.commit(selection) is a1  # its head did not change: still valid
    assert queue.commit(selection) is None  # and only once


def test_predicate_discarding_its_own_head_yields_stale_selection() -> None:
    a = TaskGroupSpec("a")
    queue = FairTaskQueue()
    a1 = make_task("a1", a)
    queue.enqueue([a1, make_task("a2", a)])

    def predicate(item: SchedulableTask, view: QueueView) -> bool:
        queue.discard(item.task_id)
        return True

    selection = queue.select_next(predicate)
    assert selection is not None
    assert queue.commit(selection) is None
    assert len(queue) == 1 and "a2" in queue


MUTATION_KEYS: tuple[Hashable, ...] = (*GROUP_KEYS, "x", ("y",), 99)
MUTATIONS = st.one_of(
    st.tuples(st.just("enqueue"), st.sampled_from(TASK_IDS), st.sampled_from(MUTATION_KEYS), st.sampled_from(REQUESTS)),
    st.tuples(st.just("discard"), st.sampled_from(TASK_IDS)),
)


@settings(max_examples=200, deadline=None)
@given(
    initial=st.lists(st.tuples(st.sampled_from(TASK_IDS), st.sampled_from(MUTATION_KEYS)), max_size=16),
    weights=per_group(WEIGHTS, len(MUTATION_KEYS)),
    warmup_commits=st.integers(min_value=0, max_value=6),
    ineligible_ids=st.lists(st.sampled_from(TASK_IDS), max_size=16).map(frozenset),
    mutations=st.lists(MUTATIONS, max_size=8),
)
def test_select_with_mutating_predicate_matches_model(
    initial: list[tuple[str, Hashable]],
    weights: list[float],
    warmup_commits: int,
    ineligible_ids: frozenset[str],
    mutations: list[tuple[Any, ...]],
) -> None:
    """Whatever the predicate does to the queue when it rejects a head, the result is the rule's
    answer for the queue as it is when select_next returns (the predicate is deterministic)."""
    specs = {key: TaskGroupSpec(key, weight=w) for key, w in zip(MUTATION_KEYS, weights, strict=True)}
    queue, model = FairTaskQueue(), ReferenceQueue()
    items = [make_task(task_id, specs[key]) for task_id, key in initial]
    assert queue.enqueue(items) == model.enqueue(items)
    for _ in range(warmup_commits):  # move virtual time and finish tags away from zero
        selection, expected = queue.select_next(lambda item, view: True), model.select(lambda item: True)
        if selection is None or expected is None:
            break
        assert ident(queue.commit(selection)) == ident(model.commit(expected))

    def eligible(item: SchedulableTask) -> bool:
        return item.task_id not in ineligible_ids

    todo = list(mutations)

    def predicate(item: SchedulableTask, view: QueueView) -> bool:
        assert_unlocked(queue)
        if eligible(item):
            return True
        if todo:
            kind, *args = todo.pop(0)
            if kind == "enqueue":
                task_id, key, request = args
                new = [make_task(task_id, specs[key], request)]
                assert queue.enqueue(new) == model.enqueue(new)
            else:
                assert queue.discard(args[0]) is model.discard(args[0])
        return False

    selection = queue.select_next(predicate)
    expected = model.select(eligible)
    assert ident(selection.item if selection else None) == ident(expected.item if expected else None)
    if selection is not None and expected is not None:
        assert ident(queue.commit(selection)) == ident(model.commit(expected))
    assert_matches(queue, model)


# --------------------------------------------------------------------------------------------
# 4. Concurrency: producers and one consumer, nothing lost, nothing doubled
# --------------------------------------------------------------------------------------------


def test_concurrent_producers_and_consumer_commit_each_accepted_task_once() -> None:
    producers, batches, batch_size = 4, 40, 8
    groups_per_producer = 3
    specs = {(p, g): TaskGroupSpec((p, g), weight=1 + g) for p in range(producers) for g in range(groups_per_producer)}
    queue = FairTaskQueue()
    start = threading.Barrier(producers + 1)
    producers_done = threading.Event()
    work = threading.Event()  # set after every enqueue, so the consumer blocks instead of spinning
    accepted: list[list[str]] = [[] for _ in range(producers)]
    committed: list[SchedulableTask] = []
    errors: list[BaseException] = []

    def produce(p: int) -> None:
        try:
            start.wait()
            for b in range(batches):
                batch = [
                    make_task(f"p{p}-b{b}-{i}", specs[(p, i % groups_per_producer)], REQUESTS[i % len(REQUESTS)])
                    for i in range(batch_size)
                ]
                accepted[p].extend(queue.enqueue(batch))
                # The same ids again: ignored while queued, accepted anew once committed.
                accepted[p].extend(queue.enqueue(batch[: batch_size // 2]))
                work.set()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def consume() -> None:
        rng = random.Random(1234)
        try:
            start.wait()
            while True:
                work.clear()  # before selecting: an enqueue after this point sets it again
                selection = queue.select_next(lambda item, view: rng.random() < 0.7)
                if selection is None:
                    if producers_done.is_set():
                        if len(queue) == 0:
                            return
                        continue  # all heads happened to be rejected: try again
                    work.wait(timeout=10)  # a safety net only; woken by the next enqueue or by the end
                    continue
                item = queue.commit(selection)
                if item is not None:
                    committed.append(item)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(p,), name=f"test-producer-{p}") for p in range(producers)]
    consumer = threading.Thread(target=consume, name="test-consumer")
    for thread in (*threads, consumer):
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    producers_done.set()
    work.set()
    consumer.join(30)
    assert not consumer.is_alive()
    assert not errors, errors

    all_accepted = [task_id for ids in accepted for task_id in ids]
    assert Counter(item.task_id for item in committed) == Counter(all_accepted)
    assert {item.task_id for item in committed} == {
        f"p{p}-b{b}-{i}" for p in range(producers) for b in range(batches) for i in range(batch_size)
    }
    # FIFO within a group: each group has one producer, so commit order follows acceptance order.
    group_of = {item.task_id: item.group.key for item in committed}
    for p in range(producers):
        for g in range(groups_per_producer):
            key = (p, g)
            assert [item.task_id for item in committed if item.group.key == key] == [
                task_id for task_id in accepted[p] if group_of[task_id] == key
            ]
    assert len(queue) == 0
    assert queue.view().queued_total == 0


# --------------------------------------------------------------------------------------------
# 5. Select cost does not scale with the number of groups
# --------------------------------------------------------------------------------------------


def test_select_calls_predicate_once_when_first_candidate_eligible_with_256_groups() -> None:
    specs = [TaskGroupSpec(("group", i), weight=1 + (i % 5)) for i in range(256)]
    queue, model = FairTaskQueue(), ReferenceQueue()
    items = [make_task(f"g{i}-t{j}", spec) for j in range(3) for i, spec in enumerate(specs)]
    assert queue.enqueue(items) == model.enqueue(items)
    assert queue.statistics().active_groups == 256
    for _ in range(300):
        calls: list[str] = []

        def predicate(item: SchedulableTask, view: QueueView, calls: list[str] = calls) -> bool:
            calls.append(item.task_id)
            return True

        selection = queue.select_next(predicate)
        expected = model.select(lambda item: True)
        assert selection is not None and expected is not None
        assert calls == [expected.item.task_id]
        assert ident(queue.commit(selection)) == ident(model.commit(expected))
        assert queue.statistics().active_groups >= 200

    # When k heads in front are ineligible, exactly k + 1 heads are offered.
    skipped = {key for key in model.order()[:5]}
    offered: list[str] = []

    def skipping(item: SchedulableTask, view: QueueView) -> bool:
        offered.append(item.task_id)
        return item.group.key not in skipped

    selection = queue.select_next(skipping)
    assert len(offered) == 6
    expected = model.select(lambda item: item.group.key not in skipped)
    assert selection is not None and expected is not None and ident(selection.item) == ident(expected.item)


# --------------------------------------------------------------------------------------------
# 6. Idempotency and staleness
# --------------------------------------------------------------------------------------------


def test_enqueue_same_id_twice_is_idempotent() -> None:
    spec, other = TaskGroupSpec("g"), TaskGroupSpec(7)
    queue = FairTaskQueue()
    first = make_task("x", spec, REQUESTS[1])
    assert queue.enqueue([first]) == ("x",)
    view = plain_view(queue.view())
    # Same id again, alone, in a batch, with a different group or request: ignored.
    assert queue.enqueue([make_task("x", spec)]) == ()
    assert queue.enqueue([make_task("y", spec), make_task("x", other), make_task("y", other)]) == ("y",)
    assert len(queue) == 2
    assert queue.view().queued_by_group == {"g": 2}
    assert queue.view().first_candidate_tasks_by_group["g"] is first
    assert view["queued_total"] == 1
    selection = queue.select_next(lambda item, view: True)
    assert selection is not None and queue.commit(selection) is first
    # Once committed, the id is free again.
    assert queue.enqueue([make_task("x", other)]) == ("x",)


def test_discard_unknown_returns_false() -> None:
    queue = FairTaskQueue()
    assert queue.discard("nope") is False
    queue.enqueue([make_task("a", TaskGroupSpec("g"))])
    assert queue.discard("nope") is False
    assert queue.discard("a") is True
    assert queue.discard("a") is False
    assert len(queue) == 0 and queue.view().queued_total == 0
    assert queue.select_next(lambda item, view: True) is None


def test_commit_of_stale_selection_returns_none() -> None:
    spec = TaskGroupSpec("g")
    queue = FairTaskQueue()
    a, b = make_task("a", spec), make_task("b", spec)
    queue.enqueue([a, b])

    # Committed twice.
    selection = queue.select_next(lambda item, view: True)
    assert selection is not None
    assert queue.commit(selection) is a
    assert queue.commit(selection) is None

    # Head discarded.
    selection = queue.select_next(lambda item, view: True)
    assert selection is not None and selection.item is b
    assert queue.discard("b")
    assert queue.commit(selection) is None

    # Head discarded and the same id enqueued again: still stale (a new activation).
    c = make_task("c", spec)
    queue.enqueue([c])
    selection = queue.select_next(lambda item, view: True)
    assert selection is not None and selection.item is c
    queue.discard("c")
    queue.enqueue([make_task("c", spec)])
    assert queue.commit(selection) is None

    # Drained.
    selection = queue.select_next(lambda item, view: True)
    assert selection is not None
    assert len(queue.drain()) == 1
    assert queue.commit(selection) is None
    assert len(queue) == 0


def test_drain_keeps_virtual_time_and_finish_tags() -> None:
    heavy, light = TaskGroupSpec("heavy", weight=4), TaskGroupSpec("light")
    queue, model = FairTaskQueue(), ReferenceQueue()
    items = [make_task(f"h{i}", heavy) for i in range(3)] + [make_task("l0", light)]
    assert queue.enqueue(items) == model.enqueue(items)
    for _ in range(3):
        selection, expected = queue.select_next(lambda item, view: True), model.select(lambda item: True)
        assert selection is not None and expected is not None
        assert ident(queue.commit(selection)) == ident(model.commit(expected))
    assert idents(queue.drain()) == idents(model.drain())
    assert_matches(queue, model)
    again = [make_task("l1", light), make_task("h9", heavy)]
    assert queue.enqueue(again) == model.enqueue(again)
    selection, expected = queue.select_next(lambda item, view: True), model.select(lambda item: True)
    assert selection is not None and expected is not None
    assert ident(selection.item) == ident(expected.item)


def test_remove_returns_the_queued_task_once() -> None:
    spec = TaskGroupSpec("g")
    queue = FairTaskQueue()
    first, second = make_task("a", spec, REQUESTS[2]), make_task("b", spec)
    queue.enqueue([first, second])
    assert queue.remove("a") is first
    assert queue.remove("a") is None
    assert queue.remove("unknown") is None
    view = queue.view()
    assert view.queued_total == len(queue) == 1
    assert dict(view.queued_resource_demand_by_group["g"]) == {"submission": 1}
    assert view.first_candidate_tasks_by_group["g"] is second


def test_peak_queued_by_group_is_a_high_water_mark() -> None:
    alpha, beta = TaskGroupSpec("alpha"), TaskGroupSpec(("tenant", 1))
    queue = FairTaskQueue()
    assert queue.peak_queued_by_group() == {}
    queue.enqueue([make_task(f"a{i}", alpha) for i in range(3)])
    assert queue.remove("a0") is not None and queue.discard("a1")
    queue.enqueue([make_task("a3", alpha), make_task("b0", beta)])
    queue.enqueue([make_task("a3", alpha)])  # already queued: ignored, not counted twice
    assert len(queue) == 3
    assert queue.peak_queued_by_group() == {"alpha": 3, ("tenant", 1): 1}
    selection = queue.select_next(lambda item, view: True)
    assert selection is not None and queue.commit(selection) is not None
    queue.drain()
    assert len(queue) == 0
    assert queue.peak_queued_by_group() == {"alpha": 3, ("tenant", 1): 1}
    queue.enqueue([make_task(f"b{i}", beta) for i in range(1, 5)])
    peaks = queue.peak_queued_by_group()
    assert peaks == {"alpha": 3, ("tenant", 1): 4}
    peaks["alpha"] = 0  # a copy
    assert queue.peak_queued_by_group()["alpha"] == 3


# --------------------------------------------------------------------------------------------
# 7. Heads needing an exhausted resource, and the predicate's decision
# --------------------------------------------------------------------------------------------

SHARED = SchedulerResourceRequest({"llm:shared": 1})


def count_head_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[Hashable]:
    """Count ``GroupState.head`` per group: the queue reads a group's head only when it visits the group."""
    calls: Counter[Hashable] = Counter()
    original = GroupState.head

    def head(state: GroupState) -> SchedulableTask:
        calls[state.key] += 1
        return original(state)

    monkeypatch.setattr(GroupState, "head", head)
    return calls


def binding_queue(groups: int) -> tuple[FairTaskQueue, ReferenceQueue, SchedulableTask]:
    """``groups`` groups whose tasks need llm:shared, ahead in virtual time of one free group."""
    queue, model = FairTaskQueue(), ReferenceQueue()
    blocked = [make_task(f"b{i}-{j}", TaskGroupSpec(("blocked", i)), SHARED) for j in range(2) for i in range(groups)]
    free_spec = TaskGroupSpec("free")
    warmup = [make_task(f"f{j}", free_spec) for j in range(3)]
    assert queue.enqueue(warmup) == model.enqueue(warmup)
    for _ in range(2):  # the free group's tag moves to 2: every blocked group (tag V = 0) is ahead of it
        selection, expected = queue.select_next(lambda item, view: True), model.select(lambda item: True)
        assert selection is not None and expected is not None
        assert ident(queue.commit(selection)) == ident(model.commit(expected))
    assert queue.enqueue(blocked) == model.enqueue(blocked)
    return queue, model, warmup[2]


@pytest.mark.parametrize("groups", [1, 8, 256])
def test_skipped_groups_heads_are_never_offered_or_visited(groups: int, monkeypatch: pytest.MonkeyPatch) -> None:
    queue, model, free = binding_queue(groups)
    assert model.order()[-1] == "free"
    head_calls = count_head_calls(monkeypatch)
    offered: list[str] = []

    def predicate(item: SchedulableTask, view: QueueView) -> bool:
        offered.append(item.task_id)
        return True

    selection = queue.select_next(predicate, exhausted=frozenset({"llm:shared"}))
    assert selection is not None and selection.item is free
    assert offered == [free.task_id]
    # Not one blocked group was looked at: skipping them costs nothing per group.
    assert dict(head_calls) == {"free": 1}
    assert queue.statistics().signature_heaps == 2
    expected = model.select(lambda item: True, {"llm:shared"})
    assert expected is not None and ident(queue.commit(selection)) == ident(model.commit(expected))
    assert queue.statistics().signature_heaps == 1  # an emptied signature's heap is dropped

    # A rejected free head: nothing else may be offered, and the blocked groups are still not visited.
    head_calls.clear()
    offered.clear()
    assert queue.select_next(lambda item, view: bool(offered.append(item.task_id)), exhausted=["llm:shared"]) is None
    assert offered == [] and dict(head_calls) == {}  # the free group is empty now
    queue.enqueue([make_task("f9", TaskGroupSpec("free"))])
    assert queue.select_next(lambda item, view: bool(offered.append(item.task_id)), exhausted=("llm:shared",)) is None
    assert offered == ["f9"]
    assert set(head_calls) == {"free"}

    # Not exhausted any more: the blocked groups come first again, in (tag, seq) order.
    model.enqueue([make_task("f9", TaskGroupSpec("free"))])
    selection = queue.select_next(lambda item, view: True)
    expected = model.select(lambda item: True)
    assert selection is not None and expected is not None and ident(selection.item) == ident(expected.item)
    assert selection.item.resource_request == SHARED


def test_exhausting_submission_leaves_nothing_to_select() -> None:
    queue = FairTaskQueue()
    queue.enqueue([make_task("a", TaskGroupSpec("a")), make_task("b", TaskGroupSpec("b"), REQUESTS[1])])
    offered: list[str] = []
    assert queue.select_next(lambda item, view: bool(offered.append(item.task_id)) or True, exhausted={"submission"}) is None
    assert offered == []


@pytest.mark.parametrize("exhausted", [("llm:a",), ["llm:a", "unrelated"], {"llm:a"}, frozenset({"llm:a"}), {"llm:a": 0}.keys()])
def test_exhausted_may_be_any_collection(exhausted: Collection[str]) -> None:
    queue = FairTaskQueue()
    needs_a, free = make_task("a", TaskGroupSpec("a"), REQUESTS[1]), make_task("f", TaskGroupSpec("f"))
    queue.enqueue([needs_a, free])
    selection = queue.select_next(lambda item, view: True, exhausted=exhausted)
    assert selection is not None and selection.item is free


def test_a_group_moves_with_its_head_when_the_head_is_removed() -> None:
    """Removing a head keeps the group's tag and activation but refiles it under the new head's needs."""
    a, b = TaskGroupSpec("a"), TaskGroupSpec("b")
    queue, model = FairTaskQueue(), ReferenceQueue()
    items = [make_task("a1", a, REQUESTS[1]), make_task("a2", a), make_task("b1", b), make_task("a3", a, REQUESTS[1])]
    assert queue.enqueue(items) == model.enqueue(items)
    exhausted = frozenset({"llm:a"})
    selection = queue.select_next(lambda item, view: True, exhausted=exhausted)
    assert selection is not None and selection.item.task_id == "b1"
    held = queue.select_next(lambda item, view: True)
    assert held is not None and held.item.task_id == "a1"

    assert queue.discard("a1") and model.discard("a1")  # a's head is now a2, which needs no llm:a
    assert queue.commit(held) is None  # the held selection went stale with its head
    selection = queue.select_next(lambda item, view: True, exhausted=exhausted)
    expected = model.select(lambda item: True, exhausted)
    assert selection is not None and expected is not None and ident(selection.item) == ident(expected.item)
    assert selection.item.task_id == "a2"  # a kept its place ahead of b
    assert ident(queue.commit(selection)) == ident(model.commit(expected))

    # a's head is a3 (needs llm:a) after the commit: a is skipped again, b is next.
    selection = queue.select_next(lambda item, view: True, exhausted=exhausted)
    assert selection is not None and selection.item.task_id == "b1"
    assert_matches(queue, model)


def test_selection_carries_the_predicates_decision() -> None:
    a, b = TaskGroupSpec("a"), TaskGroupSpec("b")
    queue = FairTaskQueue()
    queue.enqueue([make_task("a1", a), make_task("b1", b)])

    selection = queue.select_next(lambda item, view: True)
    assert selection is not None and selection.decision is True

    approval = ("approved", 41)
    selection = queue.select_next(lambda item, view: approval)
    assert selection is not None and selection.item.task_id == "a1" and selection.decision is approval

    # Falsy answers of any type reject; the decision comes from the head that was accepted on the walk.
    answers: dict[str, object] = {"a1": None, "b1": {"lease": "b"}}
    selection = queue.select_next(lambda item, view: answers[item.task_id])
    assert selection is not None and selection.item.task_id == "b1" and selection.decision is answers["b1"]
    for falsy in (None, 0, "", (), False):
        assert queue.select_next(lambda item, view, falsy=falsy: falsy) is None
    assert queue.commit(selection) is selection.item


GROUPS_FOR_OPS: tuple[Hashable, ...] = tuple(("g", i) for i in range(12))
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(
            st.just("enqueue"),
            st.sampled_from(TASK_IDS),
            st.sampled_from(GROUPS_FOR_OPS),
            st.sampled_from(REQUESTS),
        ),
        st.tuples(st.just("discard"), st.sampled_from(TASK_IDS)),
        st.tuples(st.just("select"), EXHAUSTED_MASKS, ID_MASKS, st.booleans()),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(weights=per_group(WEIGHTS, len(GROUPS_FOR_OPS)), operations=OPERATIONS)
def test_select_with_exhausted_resources_matches_brute_force(weights: list[float], operations: list[tuple[Any, ...]]) -> None:
    """Random enqueue / discard / select(+commit) over five head signatures, each select with a random
    exhausted set (passed as a list) and a random predicate, against the brute-force reference."""
    specs = {key: TaskGroupSpec(key, weight=w) for key, w in zip(GROUPS_FOR_OPS, weights, strict=True)}
    queue, model = FairTaskQueue(), ReferenceQueue()
    for operation in operations:
        kind, *args = operation
        if kind == "enqueue":
            task_id, key, request = args
            items = [make_task(task_id, specs[key], request)]
            assert queue.enqueue(items) == model.enqueue(items)
        elif kind == "discard":
            assert queue.discard(args[0]) is model.discard(args[0])
        else:
            exhausted_mask, id_mask, commit = args
            exhausted = sorted(exhausted_set(exhausted_mask))
            rejected = frozenset(task_id for bit, task_id in enumerate(TASK_IDS) if id_mask >> bit & 1)
            offered: list[str] = []

            def predicate(
                item: SchedulableTask, view: QueueView, rejected: frozenset[str] = rejected, offered: list[str] = offered
            ) -> object:
                offered.append(item.task_id)
                return None if item.task_id in rejected else ("ok", item.task_id)

            selection = queue.select_next(predicate, exhausted=exhausted)
            expected_offered, expected = model.walk(lambda item, rejected=rejected: item.task_id not in rejected, exhausted)
            assert offered == expected_offered
            assert ident(selection.item if selection else None) == ident(expected.item if expected else None)
            if selection is not None and expected is not None:
                assert selection.decision == ("ok", selection.item.task_id)
                if commit:
                    assert ident(queue.commit(selection)) == ident(model.commit(expected))
        assert len(queue) == len(model)
        assert queue.statistics().active_groups == len(model.active)
    assert_matches(queue, model)


BUDGETS = st.fixed_dictionaries({resource: st.integers(min_value=0, max_value=4) for resource in EXHAUSTIBLE})


@settings(max_examples=300, deadline=None)
@given(
    weights=per_group(WEIGHTS, len(GROUPS_FOR_OPS)),
    limited=st.sets(st.sampled_from(GROUPS_FOR_OPS), max_size=3),
    operations=OPERATIONS,
    budget=BUDGETS,
    limit=st.integers(min_value=0, max_value=30),
)
def test_take_fitting_is_the_prefix_of_selects_whose_first_candidate_fits(
    weights: list[float], limited: set[Hashable], operations: list[tuple[Any, ...]], budget: dict[str, int], limit: int
) -> None:
    """``take_fitting`` takes what a select + commit per task would, stopping at the first candidate that
    does not fit the budget or whose group has an ``admitted_limit``; virtual time and every view agree."""
    specs = {
        key: TaskGroupSpec(key, weight=w, admitted_limit=1 if key in limited else None)
        for key, w in zip(GROUPS_FOR_OPS, weights, strict=True)
    }
    queue, model = FairTaskQueue(), ReferenceQueue()
    for kind, *args in operations:
        if kind == "enqueue":
            task_id, key, request = args
            items = [make_task(task_id, specs[key], request)]
            assert queue.enqueue(items) == model.enqueue(items)
        elif kind == "discard":
            assert queue.discard(args[0]) is model.discard(args[0])

    expected: list[SchedulableTask] = []
    left = dict(budget)
    while len(expected) < limit:
        _, candidate = model.walk(lambda item: True, [resource for resource, free in left.items() if free <= 0])
        if candidate is None:
            break
        head = candidate.item
        pairs = head.resource_request.pairs
        if head.group.admitted_limit is not None or any(left[resource] < amount for resource, amount in pairs):
            break
        for resource, amount in pairs:
            left[resource] -= amount
        model.commit(candidate)
        expected.append(head)

    given_budget = dict(budget)
    taken = queue.take_fitting(given_budget, limit)
    assert idents(taken) == idents(expected)
    assert given_budget == left
    assert len(queue) == len(model)
    assert_matches(queue, model)


def test_take_fitting_stops_at_a_head_that_does_not_fit_and_leaves_it_first() -> None:
    queue = FairTaskQueue()
    spec = TaskGroupSpec("g")
    big = make_task("big", spec, SchedulerResourceRequest({"gpu": 2}))
    queue.enqueue([make_task("a", spec), big, make_task("c", spec)])
    budget = {"submission": 8, "gpu": 1}
    assert [item.task_id for item in queue.take_fitting(budget, 8)] == ["a"]
    assert budget == {"submission": 7, "gpu": 1}
    selection = queue.select_next(lambda item, view: True)
    assert selection is not None and selection.item is big
