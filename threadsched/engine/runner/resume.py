"""Preparing an output directory for a run, and ``--resume``.

Every run writes ``OUT/run_state.json`` (``recipe_hash``, ``buffer_size``, ``records``) before any work.

* ``resume=True``: if ``OUT/row_groups`` holds checkpoints, ``run_state.json`` must name the same recipe
  hash; those row groups are then skipped (the tracker treats them as already checkpointed) and the final
  ``dataset.jsonl`` concatenates the old and the new checkpoints in row order. A missing or different
  ``run_state.json`` is a ``ResumeError`` (a ``RecipeError``: the CLI exits 2) naming both hashes.
* ``resume=False``: a fresh run. Existing checkpoints (of any recipe) are deleted first, so a later
  ``--resume`` can never pick up row groups of another run; so are the evidence files of an earlier run
  (``events.jsonl`` and its backups, ``capacity_plan.json``, ``report.md``, ``timeline.png``). A resumed
  run appends to ``events.jsonl`` (each run's events carry their own run id).

Checkpoints are written atomically, so a file that exists is complete; leftover temp files of a killed
run are removed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from threadsched.engine.recipe import Recipe, RecipeError
from threadsched.engine.runner.output import atomic_write

__all__ = ["RUN_STATE", "ResumeError", "prepare_output"]

RUN_STATE = "run_state.json"
_EVIDENCE = ("events.jsonl", "events.jsonl.*", "capacity_plan.json", "report.md", "timeline.png")
_CHECKPOINT = re.compile(r"rg-(\d{5})\.jsonl")


class ResumeError(RecipeError):
    """``--resume`` cannot use the checkpoints in the output directory (one line, names both hashes)."""


def _checkpoints(row_group_dir: Path) -> dict[int, Path]:
    if not row_group_dir.is_dir():
        return {}
    found: dict[int, Path] = {}
    for path in row_group_dir.iterdir():
        match = _CHECKPOINT.fullmatch(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def _state_hash(out_dir: Path) -> str | None:
    try:
        state = json.loads((out_dir / RUN_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = state.get("recipe_hash") if isinstance(state, dict) else None
    return value if isinstance(value, str) else None


def prepare_output(recipe: Recipe, out_dir: Path, *, resume: bool) -> dict[int, list[int]]:
    """Prepare ``out_dir`` and write ``run_state.json``; return row group -> rows of the checkpoints to skip."""
    row_group_dir = out_dir / "row_groups"
    row_group_dir.mkdir(parents=True, exist_ok=True)
    for temp in row_group_dir.glob(".rg-*.tmp"):
        temp.unlink(missing_ok=True)
    found = _checkpoints(row_group_dir)
    total = -(-recipe.run.records // recipe.run.buffer_size)
    skipped: dict[int, list[int]] = {}
    if resume and found:
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
        for index, path in sorted(found.items()):
            if index < total:
                lines = path.read_text(encoding="utf-8").splitlines()
                skipped[index] = [int(json.loads(line)["_row"]) for line in lines]
    else:
        for path in found.values():
            path.unlink()
        for name in _EVIDENCE:
            for path in out_dir.glob(name):
                path.unlink(missing_ok=True)
    state = {"recipe_hash": recipe.recipe_hash, "buffer_size": recipe.run.buffer_size, "records": recipe.run.records}
    atomic_write(out_dir / RUN_STATE, (json.dumps(state, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return skipped
