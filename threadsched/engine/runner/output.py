"""What a run writes: row-group checkpoints, ``dataset.jsonl``, ``run.json`` and the ``RunResult``.

The scheduled run (``run_recipe``) and the reference run (``run_reference``) both go through these
helpers, so equal rows give equal bytes: processors are applied by ``apply_stage``, each row group is
checkpointed by ``OutputWriter.write_row_group`` (temp file + fsync + ``os.replace``; the format is
``checkpoint``'s) and the dataset is the concatenation of the checkpoints' dataset lines in row-group order,
each checkpoint verified as it is read back. ``output_hash`` is the sha256 of those bytes.

Every checkpoint accounts for its whole row group: each row is either written or dropped with a reason, so a
finished run has ``rows_written + rows_dropped == records`` (``finish`` refuses to write a ``run.json`` that
says otherwise).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from threadsched.engine.processors import Processor, compile_processor, run_stage
from threadsched.engine.recipe import Recipe
from threadsched.engine.runner.checkpoint import Checkpoint, checkpoint_name, encode_checkpoint, read_checkpoint

__all__ = [
    "OutputWriter",
    "RunResult",
    "ScheduledRunFacts",
    "scheduled_result",
    "apply_stage",
    "atomic_write",
    "compile_stage",
    "row_group_count",
    "row_group_range",
    "row_line",
]


@dataclass(frozen=True, slots=True)
class RunResult:
    """The outcome of one run. ``dropped`` maps row index -> reason; ``output_hash`` is the sha256 (hex) of
    ``dataset.jsonl``; ``hidden_waiters`` and ``final_active_leases`` must both be 0 for a healthy run."""

    rows_written: int
    dropped: Mapping[int, str]
    output_hash: str
    counters: Mapping[str, int]
    hidden_waiters: int
    final_active_leases: int
    row_groups_checkpointed: int
    elapsed: float
    mode: str = "scheduled"
    salvage_rounds: int = 0
    shutdown_clean: bool = True
    out_dir: Path = field(default_factory=Path)
    early_shutdown: bool = False  # the error rate went over run.error_rate_shutdown: the output is partial
    cancelled: bool = False  # cancelled (Ctrl-C / the cancel event): the output is partial
    resumed_row_groups: int = 0  # checkpoints of an earlier run of the same recipe that were reused
    # per column: rows_done (rows with the column's value, resumed rows included), retryable_failures,
    # permanent_failures; empty for the reference run
    columns: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: MappingProxyType({}))
    run_id: str | None = None  # the scheduled run's id, also on each of its events
    # --resume: row group -> why its checkpoint could not be trusted (it was recomputed)
    recomputed_row_groups: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))


def row_group_count(recipe: Recipe) -> int:
    return -(-recipe.run.records // recipe.run.buffer_size)


def row_group_range(recipe: Recipe, row_group: int) -> range:
    size = recipe.run.buffer_size
    return range(row_group * size, min((row_group + 1) * size, recipe.run.records))


def compile_stage(recipe: Recipe, stage: str) -> tuple[Processor, ...]:
    return tuple(compile_processor(spec) for spec in recipe.processors if spec.stage == stage)


def apply_stage(processors: Sequence[Processor], rows: Sequence[tuple[int, Mapping[str, object]]], stage: str) -> dict[int, str]:
    """Row index -> drop reason for ``rows`` (ascending). A processor that raises drops every row given."""
    if not processors or not rows:
        return {}
    try:
        return dict(run_stage(processors, rows).dropped)
    except Exception as exc:  # a user's python processor: the row group is dropped, never the run
        reason = f"{stage} processor failed: {type(exc).__name__}: {exc}"
        return dict.fromkeys((index for index, _ in rows), reason)


def _plain(value: object) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return str(value)


def row_line(index: int, values: Mapping[str, object]) -> str:
    """One dataset line: ``_row`` plus the column values, sorted keys, JSON-safe (``str`` fallback)."""
    record: dict[str, Any] = {name: _plain(value) for name, value in values.items()}
    record["_row"] = index
    return json.dumps(record, sort_keys=True, ensure_ascii=False)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory, fsync, then ``os.replace``."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    try:  # make the rename durable too (best effort: not every platform can open a directory)
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


class OutputWriter:
    """Checkpoints row groups under ``OUT/row_groups/`` and assembles ``OUT/dataset.jsonl`` and ``run.json``."""

    def __init__(self, out_dir: Path, recipe: Recipe) -> None:
        self.out_dir = Path(out_dir)
        self.recipe = recipe
        self.row_group_dir = self.out_dir / "row_groups"
        self.row_group_dir.mkdir(parents=True, exist_ok=True)
        self.rows_written = 0
        self._written: list[int] = []
        self._dropped: dict[int, str] = {}  # the drops of the checkpointed row groups

    def row_group_path(self, row_group: int) -> Path:
        return self.row_group_dir / checkpoint_name(row_group)

    def write_row_group(
        self, row_group: int, rows: Sequence[tuple[int, Mapping[str, object]]], dropped: Mapping[int, str]
    ) -> None:
        """Checkpoint ``row_group``: its kept ``rows`` (ascending) and its ``dropped`` rows, which together must
        be exactly the row group's range (anything else is a bug of the caller: ``ValueError``)."""
        kept = [index for index, _ in rows]
        expected = row_group_range(self.recipe, row_group)
        if len(kept) + len(dropped) != len(expected) or sorted([*kept, *dropped]) != list(expected) or kept != sorted(kept):
            raise ValueError(
                f"row group {row_group} (rows {expected.start}..{expected.stop - 1}): kept rows {kept} and "
                f"dropped rows {sorted(dropped)} are not each row once"
            )
        body = "".join(row_line(index, values) + "\n" for index, values in rows).encode("utf-8")
        atomic_write(self.row_group_path(row_group), encode_checkpoint(self.recipe.recipe_hash, row_group, kept, dropped, body))
        self._count(row_group, len(kept), dropped)

    def adopt(self, checkpoints: Mapping[int, Checkpoint]) -> None:
        """Count verified checkpoints already on disk (``--resume``) as written."""
        for row_group, checkpoint in sorted(checkpoints.items()):
            self._count(row_group, len(checkpoint.rows), checkpoint.dropped)

    def _count(self, row_group: int, kept: int, dropped: Mapping[int, str]) -> None:
        self.rows_written += kept
        self._dropped.update(dropped)
        self._written.append(row_group)

    @property
    def row_groups_checkpointed(self) -> int:
        return len(self._written)

    @property
    def dropped(self) -> Mapping[int, str]:
        """Row -> reason for every dropped row of the checkpointed row groups (adopted ones included)."""
        return MappingProxyType(self._dropped)

    def _body(self, row_group: int) -> bytes:
        path = self.row_group_path(row_group)
        rows = row_group_range(self.recipe, row_group)
        return read_checkpoint(path, recipe_hash=self.recipe.recipe_hash, row_group=row_group, rows=rows, verify_lines=False)[1]

    def finish(self, summary: Mapping[str, Any], dropped: Mapping[int, str]) -> str:
        """Write ``dataset.jsonl`` (the checkpoints' lines in order) and ``run.json``; return the output hash.

        Raises ``RuntimeError`` rather than write a finished run whose rows written and dropped are not its
        records (``dropped`` is every drop of the run, so it holds at least the checkpoints' drops)."""
        records = self.recipe.run.records
        complete = self.row_groups_checkpointed == row_group_count(self.recipe)
        if complete and (self.rows_written + len(dropped) != records or not self._dropped.keys() <= dropped.keys()):
            raise RuntimeError(
                f"refusing to write run.json: {self.rows_written} rows written + {len(dropped)} dropped != {records} records"
            )
        data = b"".join(self._body(index) for index in sorted(self._written))
        atomic_write(self.out_dir / "dataset.jsonl", data)
        output_hash = hashlib.sha256(data).hexdigest()
        report = {
            **summary,
            "records": records,
            "rows_written": self.rows_written,
            "rows_dropped": len(dropped),
            "dropped": {str(index): reason for index, reason in sorted(dropped.items())},
            "row_groups_checkpointed": self.row_groups_checkpointed,
            "recipe_hash": self.recipe.recipe_hash,
            "output_hash": output_hash,
        }
        text = json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        atomic_write(self.out_dir / "run.json", text.encode("utf-8"))
        return output_hash


@dataclass(frozen=True, slots=True)
class ScheduledRunFacts:
    """What the scheduled runner knows at its end, for ``run.json`` and the ``RunResult``."""

    run_id: str
    elapsed: float
    workers: int
    counters: Mapping[str, int]
    columns: Mapping[str, Mapping[str, int]]
    dropped: Mapping[int, str]  # row -> reason, this run's drops
    resumed: Mapping[int, Sequence[int]]  # row groups adopted from earlier checkpoints -> their rows
    hidden_waiters: int
    final_active_leases: int
    shutdown_clean: bool
    salvage_rounds: int
    stop_info: Mapping[str, Any] | None  # why the run stopped early: error rate or cancel
    recomputed: Mapping[int, str] = field(default_factory=dict)  # row group -> why its checkpoint was not used


def scheduled_result(recipe: Recipe, writer: OutputWriter, facts: ScheduledRunFacts) -> RunResult:
    """Write ``dataset.jsonl`` and ``run.json`` of a scheduled run and return its ``RunResult``."""
    early = facts.stop_info is not None and "error_rate" in facts.stop_info
    dropped = dict(sorted({**writer.dropped, **facts.dropped}.items()))  # the adopted checkpoints name their drops
    summary: dict[str, Any] = {
        "mode": "scheduled",
        "run_id": facts.run_id,
        "elapsed": facts.elapsed,
        "capacity": {
            "workers": facts.workers,
            "resource_limits": dict(recipe.resource_limits),
            "buffer_size": recipe.run.buffer_size,
            "max_row_groups_in_flight": recipe.run.max_row_groups_in_flight,
        },
        "counters": dict(facts.counters),
        "hidden_waiters": facts.hidden_waiters,
        "final_active_leases": facts.final_active_leases,
        "resumed_row_groups": sorted(facts.resumed),
        "recomputed_row_groups": {str(index): why for index, why in sorted(facts.recomputed.items())},
        "columns": {name: dict(counts) for name, counts in facts.columns.items()},
    }
    if facts.stop_info is not None:
        summary["early_shutdown" if early else "cancelled"] = dict(facts.stop_info)
    output_hash = writer.finish(summary, dropped)
    return RunResult(
        rows_written=writer.rows_written,
        dropped=MappingProxyType(dropped),
        output_hash=output_hash,
        counters=MappingProxyType(dict(facts.counters)),
        hidden_waiters=facts.hidden_waiters,
        final_active_leases=facts.final_active_leases,
        row_groups_checkpointed=writer.row_groups_checkpointed,
        elapsed=facts.elapsed,
        mode="scheduled",
        salvage_rounds=facts.salvage_rounds,
        shutdown_clean=facts.shutdown_clean,
        out_dir=writer.out_dir,
        early_shutdown=early,
        cancelled=facts.stop_info is not None and not early,
        resumed_row_groups=len(facts.resumed),
        columns=MappingProxyType({name: MappingProxyType(dict(counts)) for name, counts in facts.columns.items()}),
        run_id=facts.run_id,
        recomputed_row_groups=MappingProxyType(dict(sorted(facts.recomputed.items()))),
    )
