"""Weighted-fair ready queue: ready membership and order, nothing else.

Ordering is weighted virtual time. Virtual time ``V`` starts at 0 and every group remembers its last
finish tag ``F[g]``. A group that becomes non-empty is activated with tag ``F.get(g, V)`` and a fresh
activation sequence number; ``select_next`` walks the active groups in ``(tag, activation seq)`` order
and offers the head (oldest) task of each group to ``is_eligible``; ``commit`` pops that head, sets
``V = max(V, F.get(g, V))`` and ``F[g] = V + 1 / weight``, and re-activates the group if it still has
tasks. Every weight in ``[MIN_WEIGHT, MAX_WEIGHT]`` is honoured, so a weight-0.5 group gets half the share
of a weight-1 group.

Virtual time is exact: ``V`` and the tags are ints counting ``VIRTUAL_TIME_QUANTA`` per unit, and a
commit adds the weight's step in whole quanta (``TaskGroupSpec.quanta``, ``fair_share_quanta``). A float
clock would not be: once a group of tiny weight has pushed ``V`` far enough, the steps of heavier groups
fall below its rounding and weights 1:3 share 1:1. Integers never round, however large ``V`` grows, so
the share ratio of two backlogged groups is their weight ratio at any point of any run.

``select_next(is_eligible, exhausted)`` counts a head that needs a resource named in ``exhausted`` as
ineligible without offering it to ``is_eligible``. Active groups are filed in one heap per head
signature (``ActiveGroups`` below), so such groups are left out a whole heap at a time: when the first
candidate is eligible a select costs O(signatures + log groups), however many groups wait on an
exhausted resource, and walking past ineligible heads k-way-merges the remaining heaps in order without
mutating them. Per-group and per-resource counts are kept incrementally so a view costs O(groups),
never O(queued tasks).

``take_fitting(budget, limit)`` pops heads in the same order, under one lock round, while the first
candidate fits a budget of free units (the admission fast path of the default policy).

Lock order: ``FairTaskQueue._lock`` is a leaf, taken last and released before anything else is called.
Locks held by a caller of the queue (the admission controller's, when its predicate reads the queue's
view) come first; ``is_eligible`` is always called without the queue lock, so it may take other locks
and may call back into the queue.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Mapping
from types import MappingProxyType

from threadsched.core.contracts import SUBMISSION, VIRTUAL_TIME_QUANTA, SchedulableTask, TaskGroupSpec
from threadsched.core.values import QueueSelection, QueueStatistics, QueueView, QueueViewData

# -- the active groups, filed by head signature ------------------------------------------------------------
#
# A group's head signature is the set of resource keys other than ``submission`` that its head (oldest)
# task needs (``SchedulerResourceRequest.signature``). Every active group has exactly one live entry
# ``(tag, activation seq, group)``, in the min-heap of its head's signature. A select that must pass over
# the heads needing an exhausted resource leaves out whole heaps, so its cost depends on the number of
# signatures, not on the number of groups waiting for that resource.
#
# Entries are deleted lazily: moving or deactivating a group only marks its old entry dead (a group's
# ``entry`` is no longer that tuple), and a heap is compacted once it is mostly dead. The top of every
# heap is kept live, so the first candidate is always one comparison per open heap away.
#
# Nothing here locks: every method is called with the owning queue's lock held.

Entry = tuple[int, int, "GroupState"]
"""(tag in quanta, activation seq, group). Two live entries never share (tag, seq), so the group is never compared;
a dead copy may share them with its own group's live entry, and equal elements compare as equal."""

_COMPACT_MIN_ENTRIES = 64


class GroupState:
    """One group's queued tasks (FIFO), its queued resource demand and its place among the active."""

    __slots__ = ("demand", "entry", "heap", "key", "spec", "tasks")

    def __init__(self, key: Hashable, spec: TaskGroupSpec) -> None:
        self.key = key
        self.spec = spec
        self.tasks: OrderedDict[str, SchedulableTask] = OrderedDict()
        self.demand: dict[str, int] = {}
        self.entry: Entry | None = None  # the live heap entry; None while the group is not active
        self.heap: SignatureHeap | None = None  # the heap holding ``entry``

    def head(self) -> SchedulableTask:
        return next(iter(self.tasks.values()))


class SignatureHeap:
    __slots__ = ("entries", "live", "signature")

    def __init__(self, signature: frozenset[str]) -> None:
        self.signature = signature
        self.entries: list[Entry] = []
        self.live = 0


class ActiveGroups:
    """The active groups in (tag, activation seq) order, one heap per head signature."""

    __slots__ = ("_heaps", "_live")

    def __init__(self) -> None:
        # Only heaps with at least one live entry are kept, so a select never scans empty signatures.
        self._heaps: dict[frozenset[str], SignatureHeap] = {}
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def entry_count(self) -> int:
        """Heap entries, dead ones included."""
        return sum(len(heap.entries) for heap in self._heaps.values())

    def signature_count(self) -> int:
        return len(self._heaps)

    # -- membership -------------------------------------------------------------------------

    def activate(self, state: GroupState, tag: int, seq: int) -> None:
        """File a group that just became non-empty."""
        self._push(state, (tag, seq, state), state.head().resource_request.signature)
        self._live += 1

    def reactivate(self, state: GroupState, tag: int, seq: int) -> None:
        """New tag and activation for a group that stays non-empty after its head was committed."""
        heap = state.heap
        assert heap is not None
        entry: Entry = (tag, seq, state)
        signature = state.head().resource_request.signature
        if heap.entries[0] is state.entry and (heap.signature is signature or heap.signature == signature):
            # The committed group is usually the top of its heap: replace its entry in place.
            entries = heap.entries
            heapq.heapreplace(entries, entry)
            state.entry = entry
            while entries[0][2].entry is not entries[0]:  # the new entry may have sunk below dead ones
                heapq.heappop(entries)
        else:
            self._retire(state)
            self._push(state, entry, signature)

    def rehead(self, state: GroupState) -> None:
        """Refile a group whose head was removed (same tag and activation) if its new head's signature
        differs; the old entry dies and a fresh tuple goes in, so the two cannot be mistaken for each other."""
        heap, entry = state.heap, state.entry
        assert heap is not None and entry is not None
        signature = state.head().resource_request.signature
        if heap.signature != signature:
            self._retire(state)
            self._push(state, (entry[0], entry[1], state), signature)

    def deactivate(self, state: GroupState) -> None:
        if state.entry is not None:
            self._retire(state)
            self._live -= 1

    def clear(self) -> None:
        for heap in self._heaps.values():
            for entry in heap.entries:
                state = entry[2]
                if state.entry is entry:
                    state.entry = state.heap = None
        self._heaps.clear()
        self._live = 0

    # -- order ------------------------------------------------------------------------------

    def first(self, exhausted: Collection[str]) -> Entry | None:
        """The smallest live entry among the heaps whose signature avoids ``exhausted``."""
        best: Entry | None = None
        for heap in self._heaps.values() if not exhausted else self._open_heaps(exhausted):
            top = heap.entries[0]
            if best is None or top < best:
                best = top
        return best

    def in_order(self, exhausted: Collection[str]) -> Iterator[Entry]:
        """Live entries of the heaps whose signature avoids ``exhausted``, in (tag, seq) order.

        A k-way merge over heap positions that never mutates the heaps: O(k log k) for k entries visited.
        The caller advances it only with the lock held and abandons it as soon as the queue has changed.
        """
        heaps = [heap.entries for heap in self._open_heaps(exhausted)]
        frontier = [(entries[0][0], entries[0][1], number, 0) for number, entries in enumerate(heaps)]
        heapq.heapify(frontier)
        while frontier:
            _, _, number, index = heapq.heappop(frontier)
            entries = heaps[number]
            entry = entries[index]
            for child in (2 * index + 1, 2 * index + 2):
                if child < len(entries):
                    child_entry = entries[child]
                    heapq.heappush(frontier, (child_entry[0], child_entry[1], number, child))
            if entry[2].entry is entry:
                yield entry

    def _open_heaps(self, exhausted: Collection[str]) -> Iterable[SignatureHeap]:
        if not exhausted:
            return self._heaps.values()
        if SUBMISSION in exhausted:  # every task needs a submission unit
            return ()
        return [heap for signature, heap in self._heaps.items() if signature.isdisjoint(exhausted)]

    # -- internals --------------------------------------------------------------------------

    def _push(self, state: GroupState, entry: Entry, signature: frozenset[str]) -> None:
        heap = self._heaps.get(signature)
        if heap is None:
            heap = self._heaps[signature] = SignatureHeap(signature)
        heapq.heappush(heap.entries, entry)
        heap.live += 1
        state.entry = entry
        state.heap = heap

    def _retire(self, state: GroupState) -> None:
        """Mark the group's entry dead and restore its heap's invariants: a live top, mostly live entries."""
        heap = state.heap
        assert heap is not None
        state.entry = state.heap = None
        heap.live -= 1
        if not heap.live:
            del self._heaps[heap.signature]
            return
        entries = heap.entries
        if len(entries) > _COMPACT_MIN_ENTRIES and len(entries) > 2 * heap.live:
            entries[:] = [entry for entry in entries if entry[2].entry is entry]
            heapq.heapify(entries)
        else:
            while entries[0][2].entry is not entries[0]:
                heapq.heappop(entries)


Predicate = Callable[[SchedulableTask, QueueView], object]
"""``is_eligible(head, view)``: a truthy return admits the head and is kept as ``QueueSelection.decision``."""


class FairTaskQueue:
    """Thread-safe weighted-fair queue of ready tasks, idempotent by task id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[Hashable, GroupState] = {}
        self._group_of_task: dict[str, GroupState] = {}
        self._peak_queued: dict[Hashable, int] = {}  # high-water mark of each group's queued tasks
        self._finish_tags: dict[Hashable, int] = {}  # in quanta, like the virtual time
        self._virtual_time = 0
        self._active = ActiveGroups()
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
                        state = self._groups[key] = GroupState(key, item.group)
                    state.tasks[item.task_id] = item
                    self._group_of_task[item.task_id] = state
                    if len(state.tasks) > self._peak_queued.get(key, 0):
                        self._peak_queued[key] = len(state.tasks)
                    demand = state.demand
                    for resource, amount in item.resource_request.pairs:
                        demand[resource] = demand.get(resource, 0) + amount
                    if state.entry is None:
                        tag = self._finish_tags.get(key, self._virtual_time)
                        self._active.activate(state, tag, next(self._activation_counter))
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
            was_head = next(iter(state.tasks)) == task_id
            self._remove_locked(state, task_id)
            if not state.tasks:
                self._active.deactivate(state)
            elif was_head:  # same activation, but the new head may need other resources
                self._active.rehead(state)
            self._version += 1
            return item

    def drain(self) -> tuple[SchedulableTask, ...]:
        """Remove and return every queued task (shutdown, stall); virtual time is unchanged."""
        with self._lock:
            drained = [item for state in self._groups.values() for item in state.tasks.values()]
            for state in self._groups.values():
                state.tasks.clear()
                state.demand.clear()
            self._active.clear()
            self._groups.clear()
            self._group_of_task.clear()
            self._version += 1
        return tuple(drained)

    def commit(self, selection: QueueSelection) -> SchedulableTask | None:
        """Pop the selected head and advance virtual time; None when the selection went stale."""
        item = selection.item
        with self._lock:
            state = self._group_of_task.get(item.task_id)
            if state is None:
                return None
            entry = state.entry
            if entry is None or entry[1] != selection.activation_seq or next(iter(state.tasks)) != item.task_id:
                return None
            self._pop_head_locked(state, item)
            self._version += 1
            return item

    def take_fitting(self, budget: dict[str, int], limit: int) -> list[SchedulableTask]:
        """Pop up to ``limit`` heads in fair order while the first candidate fits ``budget``; stop at the first that does not.

        ``budget`` maps each resource to its free units and is decremented by every task taken. A head
        fits when its group has no ``admitted_limit`` and ``budget`` covers its request. The tasks taken
        are exactly the first ones ``select_next`` + ``commit`` would give with a predicate admitting
        what fits: a batch for the admission fast path, under one lock round instead of one per task.
        """
        taken: list[SchedulableTask] = []
        with self._lock:
            exhausted = {resource for resource, free in budget.items() if free <= 0}
            while len(taken) < limit:
                entry = self._active.first(exhausted)
                if entry is None:
                    break
                state = entry[2]
                head = state.head()
                pairs = head.resource_request.pairs
                if head.group.admitted_limit is not None or any(budget.get(resource, 0) < amount for resource, amount in pairs):
                    break
                for resource, amount in pairs:
                    left = budget[resource] = budget[resource] - amount
                    if left <= 0:
                        exhausted.add(resource)
                self._pop_head_locked(state, head)
                taken.append(head)
            if taken:
                self._version += 1
        return taken

    # -- selection --------------------------------------------------------------------------

    def select_next(self, is_eligible: Predicate, exhausted: Collection[str] = ()) -> QueueSelection | None:
        """The head of the first active group, in virtual-time order, whose head is eligible.

        A head that needs a resource named in ``exhausted`` counts as ineligible and is never offered
        to ``is_eligible``; such groups are passed over without visiting them one by one. Any truthy
        return of ``is_eligible`` admits the head and is kept as the selection's ``decision``.

        Does not mutate the queue. ``is_eligible`` runs without the queue lock; if the queue changes
        meanwhile the walk restarts, skipping groups already found ineligible with the same head.
        """
        with self._lock:
            entry = self._active.first(exhausted)
            if entry is None:
                return None
            _, seq, state = entry
            head = state.head()
            view = QueueView(materialize=self._view_data)
        # The first candidate is usually eligible: that case costs one lock round and no walk.
        decision = is_eligible(head, view)
        if decision:
            return QueueSelection(head, view, seq, decision)
        return self._walk(is_eligible, exhausted, {state.key: head.task_id})

    def _walk(self, is_eligible: Predicate, exhausted: Collection[str], rejected: dict[Hashable, str]) -> QueueSelection | None:
        """Offer heads in (tag, seq) order, skipping groups whose head was already rejected."""
        while True:
            restarted = False
            with self._lock:
                version = self._version
                view = QueueView(materialize=self._view_data)
                order = self._active.in_order(exhausted)
            while True:
                with self._lock:
                    if self._version != version:
                        restarted = True
                        break
                    entry = next(order, None)
                    if entry is None:
                        break
                    _, seq, state = entry
                    head = state.head()
                if rejected.get(state.key) == head.task_id:
                    continue
                decision = is_eligible(head, view)
                if decision:
                    return QueueSelection(head, view, seq, decision)
                rejected[state.key] = head.task_id
            if not restarted:
                # The last predicate call may itself have changed the queue: walk again if so.
                with self._lock:
                    if self._version == version:
                        return None

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

    def statistics(self) -> QueueStatistics:
        with self._lock:
            return QueueStatistics(
                queued_total=len(self._group_of_task),
                active_groups=len(self._active),
                virtual_time=self._virtual_time / VIRTUAL_TIME_QUANTA,
                heap_entries=self._active.entry_count(),
                signature_heaps=self._active.signature_count(),
                peak_queued_by_group=MappingProxyType(dict(self._peak_queued)),
            )

    def __repr__(self) -> str:
        # Without the lock: a repr may be taken while it is held (a log line, a debugger).
        return f"<FairTaskQueue queued={len(self._group_of_task)} virtual_time={self._virtual_time / VIRTUAL_TIME_QUANTA:.3f}>"

    # -- internals (lock held) --------------------------------------------------------------

    def _pop_head_locked(self, state: GroupState, head: SchedulableTask) -> None:
        """Remove a group's head and advance virtual time past it (the caller bumps ``_version``)."""
        self._remove_locked(state, head.task_id)
        key = state.key
        vtime = self._virtual_time = max(self._virtual_time, self._finish_tags.get(key, self._virtual_time))
        finish = self._finish_tags[key] = vtime + head.group.quanta
        if state.tasks:
            self._active.reactivate(state, finish, next(self._activation_counter))
        else:
            self._active.deactivate(state)

    def _remove_locked(self, state: GroupState, task_id: str) -> None:
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


__all__ = ["FairTaskQueue", "QueueSelection", "QueueView"]
