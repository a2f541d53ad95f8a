"""The dataset runner: a recipe's column DAG over row groups, run on one ``Scheduler`` into an output directory.

``run_recipe`` is the scheduled run; ``run_reference`` runs the same recipe in one thread into the same
files, the oracle whose ``output_hash`` every scheduled run must equal. Both return a ``RunResult``;
``ResumeError`` is the ``RecipeError`` of a ``--resume`` that cannot use the checkpoints it finds, and
``OutputDirError`` the one of an output directory a run may not write into; ``resolve_output`` says where a
recipe's ``[run] output`` points.

Modules: ``run`` (the scheduled run's main loop), ``reference`` (the reference run), ``tasks`` (one engine
task: its work and the call submitted for it), ``rows`` (the row store), ``counts`` (counters and progress),
``events`` (the engine's event stream), ``output`` (checkpoints, ``dataset.jsonl``, ``run.json``),
``checkpoint`` (the checkpoint format and its verifying reader), ``output_dir`` (what a run owns in its
output directory: the manifest) and ``resume`` (preparing the output directory, ``--resume``).
"""

from __future__ import annotations

from threadsched.engine.runner.output import RunResult
from threadsched.engine.runner.output_dir import OutputDirError, record_files, resolve_output
from threadsched.engine.runner.reference import run_reference
from threadsched.engine.runner.resume import ResumeError
from threadsched.engine.runner.run import run_recipe

__all__ = ["OutputDirError", "ResumeError", "RunResult", "record_files", "resolve_output", "run_recipe", "run_reference"]
