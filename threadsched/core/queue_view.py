"""Read-only values of the fair queue: ``QueueView`` snapshots and ``QueueSelection`` picks."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from threadsched.core.contracts import SchedulableTask, TaskGroupSpec

if TYPE_CHECKING:
    from threadsched.core.queue import FairTaskQueue


@dataclass(frozen=True, slots=True)
class QueueViewData:
    queued_total: int
    queued_by_group: Mapping[Hashable, int]
    queued_resource_demand_by_group: Mapping[Hashable, Mapping[str, int]]
    first_candidate_resources_by_group: Mapping[Hashable, Mapping[str, int]]
    first_candidate_tasks_by_group: Mapping[Hashable, SchedulableTask]
    first_candidate_group_specs_by_group: Mapping[Hashable, TaskGroupSpec]
    queued_peer_demand_by_resource: Mapping[str, Mapping[Hashable, int]]


class QueueView:
    """Immutable snapshot of the queue's membership, counts and per-group heads.

    ``FairTaskQueue.view()`` materializes it at once. The view handed to ``is_eligible`` during
    ``select_next`` is materialized on first field access (most eligibility checks never read it),
    and is immutable from then on.
    """

    __slots__ = ("_data", "_source")

    def __init__(self, data: QueueViewData | None = None, source: FairTaskQueue | None = None) -> None:
        self._data = data
        self._source = source

    def _materialized(self) -> QueueViewData:
        data = self._data
        if data is None:
            assert self._source is not None
            data = self._data = self._source._view_data()
            self._source = None
        return data

    @property
    def queued_total(self) -> int:
        return self._materialized().queued_total

    @property
    def queued_by_group(self) -> Mapping[Hashable, int]:
        return self._materialized().queued_by_group

    @property
    def queued_resource_demand_by_group(self) -> Mapping[Hashable, Mapping[str, int]]:
        return self._materialized().queued_resource_demand_by_group

    @property
    def first_candidate_resources_by_group(self) -> Mapping[Hashable, Mapping[str, int]]:
        return self._materialized().first_candidate_resources_by_group

    @property
    def first_candidate_tasks_by_group(self) -> Mapping[Hashable, SchedulableTask]:
        return self._materialized().first_candidate_tasks_by_group

    @property
    def first_candidate_group_specs_by_group(self) -> Mapping[Hashable, TaskGroupSpec]:
        return self._materialized().first_candidate_group_specs_by_group

    @property
    def queued_peer_demand_by_resource(self) -> Mapping[str, Mapping[Hashable, int]]:
        return self._materialized().queued_peer_demand_by_resource

    def __repr__(self) -> str:
        data = self._materialized()
        return f"QueueView(queued_total={data.queued_total}, queued_by_group={dict(data.queued_by_group)!r})"


@dataclass(frozen=True, slots=True)
class QueueSelection:
    """A non-mutating pick: the head task of one group, valid until that head changes.

    ``decision`` is what ``is_eligible`` returned for ``item`` (truthy), so a predicate that has
    already done the admission work (an approval, say) can hand it on to whoever commits the pick
    instead of recomputing it; a plain boolean predicate leaves ``True`` here.
    """

    item: SchedulableTask
    view: QueueView
    activation_seq: int
    decision: Any = True
