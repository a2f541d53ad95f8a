"""Preparing an output directory for a run, and ``--resume``.

Every run first takes its output directory (``output_dir``). A non-empty directory that no run wrote is
refused unless ``force``, and the run lists the files it is going to write in the directory's manifest
before it writes them. It then writes ``OUT/run_state.json`` (``recipe_hash``, ``buffer_size``,
``records``), still before any work.

* ``resume=True``: if ``OUT/row_groups`` holds checkpoints, ``run_state.json`` must name the same recipe
  hash. A missing or different one is a ``ResumeError`` (a ``RecipeError``: the CLI exits 2) that names both
  hashes and touches nothing. Each checkpoint is then verified in full (``checkpoint.read_checkpoint``: its
  row group, its recipe, every line, the checksum). A verified row group is skipped, because the tracker
  treats it as already checkpointed, and its rows and drops count as this run's. The final
  ``dataset.jsonl`` concatenates the old and the new checkpoints in row order. A checkpoint that fails any
  check is never trusted: the run recomputes its row group, which gives the same rows because a run's
  output is determined by its recipe, and overwrites the file. The reason, naming the file and the line,
  is reported in ``ResumeState.recomputed``, ``RunResult.recomputed_row_groups`` and ``run.json``.
* ``resume=False``: a fresh run. Every file the manifest lists is deleted first: the old checkpoints (of any
  recipe), so that a later ``--resume`` can never pick up row groups of another run, and the evidence files
  of an earlier run (``events.jsonl`` and its backups, ``capacity_plan.json``, ``report.md``,
  ``timeline.png``). Files that the manifest does not list are left alone. A resumed run appends to
  ``events.jsonl`` (each run's events carry their own run id).

Checkpoints are written atomically, so a checkpoint that fails verification was damaged or replaced after
it was written. Leftover temp files of a killed run are removed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from threadsched.engine.recipe import Recipe, RecipeError
from threadsched.engine.runner.checkpoint import Checkpoint, CheckpointError, checkpoint_name, read_checkpoint
from threadsched.engine.runner.output import atomic_write, row_group_count, row_group_range
from threadsched.engine.runner.output_dir import OutputDirectory

__all__ = ["RUN_STATE", "ResumeError", "ResumeState", "prepare_output"]

RUN_STATE = "run_state.json"
_CHECKPOINT = re.compile(r"rg-(\d{5,})\.jsonl")


class ResumeError(RecipeError):
    """``--resume`` cannot use the checkpoints in the output directory (one line, names both hashes)."""


@dataclass(frozen=True, slots=True)
class ResumeState:
    """What ``--resume`` found: the verified checkpoints it adopts, and the row groups it must recompute."""

    adopted: Mapping[int, Checkpoint] = field(default_factory=lambda: MappingProxyType({}))
    recomputed: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))  # row group -> why

    @property
    def skipped(self) -> dict[int, list[int]]:
        """Row group -> the rows its adopted checkpoint kept."""
        return {index: list(checkpoint.rows) for index, checkpoint in sorted(self.adopted.items())}


def _checkpoints(row_group_dir: Path) -> dict[int, Path]:
    if not row_group_dir.is_dir():
        return {}
    found: dict[int, Path] = {}
    for path in row_group_dir.iterdir():
        match = _CHECKPOINT.fullmatch(path.name)
        if match and checkpoint_name(int(match.group(1))) == path.name:
            found[int(match.group(1))] = path
    return found


def _state_hash(out_dir: Path) -> str | None:
    try:
        state = json.loads((out_dir / RUN_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = state.get("recipe_hash") if isinstance(state, dict) else None
    return value if isinstance(value, str) else None


def _resume_state(recipe: Recipe, out_dir: Path) -> ResumeState:
    found = _checkpoints(out_dir / "row_groups")
    if not found:
        return ResumeState()
    old = _state_hash(out_dir)
    if old is None:
        raise ResumeError(
            "",
            f"cannot resume: row_groups/ has checkpoints but {RUN_STATE} is missing or unreadable "
            f"(this recipe is {recipe.recipe_hash}); rerun without --resume to overwrite",
            str(out_dir),
        )
    if old != recipe.recipe_hash:
        raise ResumeError(
            "",
            f"cannot resume: the checkpoints were written by recipe {old}, this recipe is {recipe.recipe_hash}; "
            "rerun without --resume to overwrite them, or use another --out",
            str(out_dir),
        )
    adopted: dict[int, Checkpoint] = {}
    recomputed: dict[int, str] = {}
    total = row_group_count(recipe)
    for index, path in sorted(found.items()):
        if index >= total:
            continue
        try:
            checkpoint, _body = read_checkpoint(
                path, recipe_hash=recipe.recipe_hash, row_group=index, rows=row_group_range(recipe, index)
            )
        except CheckpointError as error:
            recomputed[index] = str(error)
            continue
        adopted[index] = checkpoint
    return ResumeState(MappingProxyType(adopted), MappingProxyType(recomputed))


def prepare_output(recipe: Recipe, out_dir: Path, *, resume: bool, force: bool = False, files: Iterable[str] = ()) -> ResumeState:
    """Take ``out_dir`` for a run of ``recipe`` and write ``run_state.json``; return what ``--resume`` adopts.

    ``files`` are the names the run writes besides its checkpoints, ``dataset.jsonl``, ``run.json`` and
    ``run_state.json``; ``force`` lets it write into a directory that holds files no run wrote
    (``output_dir``)."""
    out_dir = Path(out_dir)
    directory = OutputDirectory.open(out_dir, force=force)
    checkpoints = (f"row_groups/{checkpoint_name(index)}" for index in range(row_group_count(recipe)))
    names = [RUN_STATE, "dataset.jsonl", "run.json", *files, *checkpoints]
    if resume:
        state = _resume_state(recipe, out_dir)  # before claiming: a ResumeError leaves the directory as it was
        directory.claim(names)
    else:
        state = ResumeState()
        directory.fresh(names)
    (out_dir / "row_groups").mkdir(parents=True, exist_ok=True)
    document = {"recipe_hash": recipe.recipe_hash, "buffer_size": recipe.run.buffer_size, "records": recipe.run.records}
    atomic_write(out_dir / RUN_STATE, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return state
