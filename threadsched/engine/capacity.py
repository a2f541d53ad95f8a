"""The capacity plan of a run: what capacity was configured (and where each value came from),
what the run actually used at most, and the final admission snapshot. Written to ``OUT/capacity_plan.json``.

Observed maxima are exact high-water marks kept by the queue (``peak_queued_by_group``) and the controller
(``peak_leased_resources``), plus the runner's own count of open row groups; nothing is sampled.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from threadsched.core.events import json_safe
from threadsched.core.scheduler import Scheduler
from threadsched.core.values import TaskAdmissionView
from threadsched.engine.recipe import Recipe
from threadsched.engine.runner.output import atomic_write

__all__ = ["CAPACITY_SOURCES", "CapacityPlan", "CapacityValue", "configured_capacity"]

CAPACITY_SOURCES = ("default", "recipe", "cli", "benchmark_override")
_RUN_SETTINGS = {"records": "records", "buffer_size": "buffer_size", "max_row_groups_in_flight": "max_row_groups_in_flight"}


@dataclass(frozen=True, slots=True)
class CapacityValue:
    value: int
    source: str  # one of CAPACITY_SOURCES


@dataclass(frozen=True, slots=True)
class CapacityPlan:
    """``configured``: records, buffer_size, max_row_groups_in_flight, submission_capacity and
    ``resource:<name>`` for each scheduler resource limit. ``observed``: the maxima the run reached."""

    configured: Mapping[str, CapacityValue]
    max_row_groups_in_flight: int
    max_queued_by_group: Mapping[Hashable, int]
    max_leased_by_resource: Mapping[str, int]
    final_admission: TaskAdmissionView

    @classmethod
    def observe(
        cls, configured: Mapping[str, CapacityValue], scheduler: Scheduler, max_row_groups_in_flight: int
    ) -> CapacityPlan:
        """The plan of a finished run: ``scheduler``'s high-water marks and final admission snapshot."""
        statistics = scheduler.statistics()
        return cls(
            configured=configured,
            max_row_groups_in_flight=max_row_groups_in_flight,
            max_queued_by_group=statistics.queue.peak_queued_by_group,
            max_leased_by_resource=statistics.admission.peak_leased_resources,
            final_admission=scheduler.snapshot().admission,
        )

    def to_dict(self) -> dict[str, Any]:
        final = self.final_admission
        return {
            "schema_version": 1,
            "configured": {name: {"value": item.value, "source": item.source} for name, item in self.configured.items()},
            "observed": {
                "max_row_groups_in_flight": self.max_row_groups_in_flight,
                "max_queued_by_group": json_safe(self.max_queued_by_group),
                "max_leased_by_resource": dict(self.max_leased_by_resource),
            },
            "final_admission": {
                "resource_limits": dict(final.resource_limits),
                "resources_available": dict(final.resources_available),
                "leased_resources": dict(final.leased_resources),
                "active_lease_count": final.active_lease_count,
                "release_diagnostics": dict(final.release_diagnostics),
            },
        }

    def write(self, out_dir: Path) -> Path:
        path = Path(out_dir) / "capacity_plan.json"
        atomic_write(path, (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode("utf-8"))
        return path


def configured_capacity(
    recipe: Recipe, *, workers: int | None = None, sources: Mapping[str, str] | None = None
) -> dict[str, CapacityValue]:
    """The capacity a run of ``recipe`` uses. ``workers`` (when given) overrides ``run.max_workers`` from the
    command line; ``sources`` relabels values someone else chose (e.g. ``{"buffer_size": "benchmark_override"}``)."""
    given = recipe.run.given
    plan: dict[str, CapacityValue] = {}
    for name, key in _RUN_SETTINGS.items():
        plan[name] = CapacityValue(getattr(recipe.run, key), "recipe" if key in given else "default")
    if workers is not None:
        plan["submission_capacity"] = CapacityValue(workers, "cli")
    else:
        plan["submission_capacity"] = CapacityValue(recipe.run.max_workers, "recipe" if "max_workers" in given else "default")
    for resource, limit in sorted(recipe.resource_limits.items()):
        plan[f"resource:{resource}"] = CapacityValue(limit, "recipe")
    for name, source in (sources or {}).items():
        if name not in plan:
            raise ValueError(f"capacity_sources names an unknown capacity value {name!r} (known: {', '.join(plan)})")
        if source not in CAPACITY_SOURCES:
            raise ValueError(f"capacity_sources[{name!r}] must be one of {CAPACITY_SOURCES}, got {source!r}")
        plan[name] = CapacityValue(plan[name].value, source)
    return plan
