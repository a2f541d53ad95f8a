"""The active groups of ``FairTaskQueue``, filed by head signature.

A group's head signature is the set of resource keys other than ``submission`` that its head (oldest)
task needs (``SchedulerResourceRequest.signature``). Every active group has exactly one live entry
``(tag, activation seq, group)``, in the min-heap of its head's signature. A select that must pass over
the heads needing an exhausted resource leaves out whole heaps, so its cost depends on the number of
signatures, not on the number of groups waiting for that resource.

Entries are deleted lazily: moving or deactivating a group only marks its old entry dead (a group's
``entry`` is no longer that tuple), and a heap is compacted once it is mostly dead. The top of every
heap is kept live, so the first candidate is always one comparison per open heap away.

Nothing here locks: every method is called with the owning queue's lock held.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Collection, Hashable, Iterable, Iterator

from threadsched.core.contracts import SUBMISSION, SchedulableTask, TaskGroupSpec

Entry = tuple[float, int, "GroupState"]
"""(tag, activation seq, group). Two live entries never share (tag, seq), so the group is never compared;
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

    def activate(self, state: GroupState, tag: float, seq: int) -> None:
        """File a group that just became non-empty."""
        self._push(state, (tag, seq, state), state.head().resource_request.signature)
        self._live += 1

    def reactivate(self, state: GroupState, tag: float, seq: int) -> None:
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
