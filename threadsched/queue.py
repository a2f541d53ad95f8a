"""Weighted-fair ready queue: ready membership and order, nothing else.

Ordering is weighted virtual time (DESIGN §3). Virtual time ``V`` starts at 0 and every group
remembers its last finish tag ``F[g]``. A group that becomes non-empty is activated with tag
``F.get(g, V)`` and a fresh activation sequence number; ``select_next`` walks the active groups in
``(tag, activation seq)`` order and offers the head (oldest) task of each group to ``is_eligible``;
``commit`` pops that head, sets ``V = max(V, F.get(g, V))`` and ``F[g] = V + 1 / max(weight, 1)``,
and re-activates the group if it still has tasks.

Active groups live in a binary heap with lazy deletion, so when the first candidate is eligible a
select costs O(log groups), and walking past ineligible groups enumerates the heap in order without
mutating it. Per-group and per-resource counts are kept incrementally so a view costs O(groups),
never O(queued tasks).

Lock order: ``FairTaskQueue._lock`` is a leaf. ``is_eligible`` is always called without it.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from .contracts import SchedulableTask, TaskGroupSpec
from .queue_view import QueueSelection, QueueView, QueueViewData


class _GroupState:
    __slots__ = ("activation_seq", "demand", "key", "spec", "tag", "tasks")

    def __init__(self, key: Hashable, spec: TaskGroupSpec) -> None:
        self.key = key
        self.spec = spec
        self.tasks: OrderedDict[str, SchedulableTask] = OrderedDict()
        self.demand: dict[str, int] = {}
        self.tag = 0.0
        self.activation_seq = -1  # -1: not active

    def head(self) -> SchedulableTask:
        return next(iter(self.tasks.values()))


class FairTaskQueue:
    """Thread-safe weighted-fair queue of ready tasks, idempotent by task id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[Hashable, _GroupState] = {}
        self._group_of_task: dict[str, _GroupState] = {}
        self._peak_queued: dict[Hashable, int] = {}  # high-water mark of each group's queued tasks
        self._finish_tags: dict[Hashable, float] = {}
        self._virtual_time = 0.0
        self._heap: list[tuple[float, int, _GroupState]] = []
        self._live_heap_entries = 0
        self._activation_counter = itertools.count()
        self._version = 0
        self._cached_view: tuple[int, QueueViewData] | None = None

    # -- mutation ---------------------------------------------------------------------------

    def enqueue(self, items: Iterable[SchedulableTask]) -> tuple[str, ...]:
        """Add ready tasks; returns the ids accepted. An id already queued is ignored."""
        accepted: list[str] = []
        batch = tuple(items)  # iterate caller code (a generator, say) without the lock held
        with self._lock:
            try:
                for item in batch:
                    if item.task_id in self._group_of_task:
                        continue
                    key = item.group.key
                    state = self._groups.get(key)
                    if state is None:
                        state = self._groups[key] = _GroupState(key, item.group)
                    state.tasks[item.task_id] = item
                    self._group_of_task[item.task_id] = state
                    if len(state.tasks) > self._peak_queued.get(key, 0):
                        self._peak_queued[key] = len(state.tasks)
                    demand = state.demand
                    for resource, amount in item.resource_request.pairs:
                        demand[resource] = demand.get(resource, 0) + amount
                    if state.activation_seq < 0:
                        self._activate_locked(state, self._finish_tags.get(key, self._virtual_time))
                    accepted.append(item.task_id)
            finally:
                if accepted:  # even when a bad item raised midway: cached views must not go stale
                    self._version += 1
        return tuple(accepted)

    def peak_queued_by_group(self) -> dict[Hashable, int]:
        """The most tasks each group ever had queued at once (observed maxima for capacity plans)."""
        with self._lock:
            return dict(self._peak_queued)

    def discard(self, task_id: str) -> bool:
        """Remove a queued task; False when it is not queued (never was, or already committed)."""
        return self.remove(task_id) is not None

    def remove(self, task_id: str) -> SchedulableTask | None:
        """Remove a queued task and return it; None when it is not queued."""
        with self._lock:
            state = self._group_of_task.get(task_id)
            if state is None:
                return None
            item = state.tasks[task_id]
            self._remove_locked(state, task_id)
            if not state.tasks:
                self._deactivate_locked(state)
            self._version += 1
            return item

    def drain(self) -> tuple[SchedulableTask, ...]:
        """Remove and return every queued task (shutdown, stall); virtual time is unchanged."""
        with self._lock:
            drained = [item for state in self._groups.values() for item in state.tasks.values()]
            for state in self._groups.values():
                state.tasks.clear()
                state.demand.clear()
                state.activation_seq = -1
            self._groups.clear()
            self._group_of_task.clear()
            self._heap.clear()
            self._live_heap_entries = 0
            self._version += 1
        return tuple(drained)

    def commit(self, selection: QueueSelection) -> SchedulableTask | None:
        """Pop the selected head and advance virtual time; None when the selection went stale."""
        item = selection.item
        with self._lock:
            state = self._group_of_task.get(item.task_id)
            if state is None or state.activation_seq != selection.activation_seq or next(iter(state.tasks)) != item.task_id:
                return None
            self._remove_locked(state, item.task_id)
            key = state.key
            self._virtual_time = max(self._virtual_time, self._finish_tags.get(key, self._virtual_time))
            finish = self._virtual_time + 1.0 / max(item.group.weight, 1.0)
            self._finish_tags[key] = finish
            if state.tasks:
                self._reactivate_locked(state, finish)
            else:
                self._deactivate_locked(state)
            self._version += 1
            return item

    # -- selection --------------------------------------------------------------------------

    def select_next(self, is_eligible: Callable[[SchedulableTask, QueueView], bool]) -> QueueSelection | None:
        """The head of the first active group, in virtual-time order, whose head is eligible.

        Does not mutate the queue. ``is_eligible`` runs without the queue lock; if the queue
        changes meanwhile the walk restarts, skipping groups already found ineligible with the
        same head.
        """
        with self._lock:
            heap = self._heap
            if not heap:
                return None
            _, seq, state = heap[0]
            view = QueueView(source=self)
            head = state.head() if state.activation_seq == seq else None
        # The first candidate is usually eligible: that case costs one lock round and O(1) work.
        if head is None:
            return self._walk(is_eligible, {})
        if is_eligible(head, view):
            return QueueSelection(head, view, seq)
        return self._walk(is_eligible, {state.key: head.task_id})

    def _walk(
        self, is_eligible: Callable[[SchedulableTask, QueueView], bool], rejected: dict[Hashable, str]
    ) -> QueueSelection | None:
        """Offer heads in (tag, seq) order, skipping groups whose head was already rejected."""
        while True:
            restarted = False
            frontier: list[tuple[float, int, int]] = []
            with self._lock:
                version = self._version
                view = QueueView(source=self)
                if self._heap:
                    tag, seq, _ = self._heap[0]
                    frontier.append((tag, seq, 0))
            while frontier:
                with self._lock:
                    if self._version != version:
                        restarted = True
                        break
                    state, seq, head = self._next_in_order_locked(frontier)
                if head is None or rejected.get(state.key) == head.task_id:
                    continue
                if is_eligible(head, view):
                    return QueueSelection(head, view, seq)
                rejected[state.key] = head.task_id
            if not restarted:
                # The last predicate call may itself have changed the queue: walk again if so.
                with self._lock:
                    if self._version == version:
                        return None

    def _next_in_order_locked(self, frontier: list[tuple[float, int, int]]) -> tuple[_GroupState, int, SchedulableTask | None]:
        """Pop the smallest heap position from ``frontier`` and push its children.

        Enumerates the heap in (tag, seq) order without mutating it: O(k log k) for k visits.
        """
        heap = self._heap
        _, _, index = heapq.heappop(frontier)
        _, seq, state = heap[index]
        for child in (2 * index + 1, 2 * index + 2):
            if child < len(heap):
                child_tag, child_seq, _ = heap[child]
                heapq.heappush(frontier, (child_tag, child_seq, child))
        head = state.head() if state.activation_seq == seq else None
        return state, seq, head

    # -- views ------------------------------------------------------------------------------

    def view(self) -> QueueView:
        return QueueView(data=self._view_data())

    def _view_data(self) -> QueueViewData:
        with self._lock:
            cached = self._cached_view
            if cached is not None and cached[0] == self._version:
                return cached[1]
            data = self._build_view_locked()
            self._cached_view = (self._version, data)
            return data

    def _build_view_locked(self) -> QueueViewData:
        by_group: dict[Hashable, int] = {}
        demand_by_group: dict[Hashable, Mapping[str, int]] = {}
        first_resources: dict[Hashable, Mapping[str, int]] = {}
        first_tasks: dict[Hashable, SchedulableTask] = {}
        first_specs: dict[Hashable, TaskGroupSpec] = {}
        peer_demand: dict[str, dict[Hashable, int]] = {}
        for key, state in self._groups.items():
            if not state.tasks:
                continue
            head = state.head()
            by_group[key] = len(state.tasks)
            demand_by_group[key] = MappingProxyType(dict(state.demand))
            first_resources[key] = head.resource_request.amounts
            first_tasks[key] = head
            first_specs[key] = head.group
            for resource, amount in state.demand.items():
                peer_demand.setdefault(resource, {})[key] = amount
        return QueueViewData(
            queued_total=len(self._group_of_task),
            queued_by_group=MappingProxyType(by_group),
            queued_resource_demand_by_group=MappingProxyType(demand_by_group),
            first_candidate_resources_by_group=MappingProxyType(first_resources),
            first_candidate_tasks_by_group=MappingProxyType(first_tasks),
            first_candidate_group_specs_by_group=MappingProxyType(first_specs),
            queued_peer_demand_by_resource=MappingProxyType(
                {resource: MappingProxyType(groups) for resource, groups in peer_demand.items()}
            ),
        )

    def __len__(self) -> int:
        return len(self._group_of_task)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._group_of_task

    def statistics(self) -> dict[str, Any]:
        with self._lock:
            return {
                "queued_total": len(self._group_of_task),
                "active_groups": sum(1 for state in self._groups.values() if state.tasks),
                "virtual_time": self._virtual_time,
                "heap_entries": len(self._heap),
            }

    def __repr__(self) -> str:
        stats = self.statistics()
        return (
            f"<FairTaskQueue queued={stats['queued_total']} active_groups={stats['active_groups']} "
            f"virtual_time={stats['virtual_time']:.3f}>"
        )

    # -- internals (lock held) --------------------------------------------------------------

    def _remove_locked(self, state: _GroupState, task_id: str) -> None:
        item = state.tasks.pop(task_id)
        del self._group_of_task[task_id]
        demand = state.demand
        for resource, amount in item.resource_request.pairs:
            left = demand[resource] - amount
            if left:
                demand[resource] = left
            else:
                del demand[resource]
        # An empty group's state is dropped so that many short-lived groups do not accumulate.
        if not state.tasks and self._groups.get(state.key) is state:
            del self._groups[state.key]

    def _activate_locked(self, state: _GroupState, tag: float) -> None:
        seq = next(self._activation_counter)
        state.tag = tag
        state.activation_seq = seq
        heapq.heappush(self._heap, (tag, seq, state))
        self._live_heap_entries += 1

    def _reactivate_locked(self, state: _GroupState, tag: float) -> None:
        """Give a still non-empty group its new tag; replaces its old heap entry in place when
        that entry is the top (the usual case), else leaves it behind as a dead entry."""
        old_seq = state.activation_seq
        seq = next(self._activation_counter)
        state.tag = tag
        state.activation_seq = seq
        heap = self._heap
        _, top_seq, top_state = heap[0]
        if top_state is state and top_seq == old_seq:
            heapq.heapreplace(heap, (tag, seq, state))
        else:
            heapq.heappush(heap, (tag, seq, state))
            self._compact_heap_if_sparse_locked()

    def _deactivate_locked(self, state: _GroupState) -> None:
        if state.activation_seq >= 0:
            state.activation_seq = -1
            self._live_heap_entries -= 1
            self._pop_dead_heap_top_locked()
            self._compact_heap_if_sparse_locked()

    def _compact_heap_if_sparse_locked(self) -> None:
        if len(self._heap) > 64 and len(self._heap) > 2 * self._live_heap_entries:
            self._heap = [entry for entry in self._heap if entry[2].activation_seq == entry[1]]
            heapq.heapify(self._heap)

    def _pop_dead_heap_top_locked(self) -> None:
        heap = self._heap
        while heap and heap[0][2].activation_seq != heap[0][1]:
            heapq.heappop(heap)


__all__ = ["FairTaskQueue", "QueueSelection", "QueueView"]
