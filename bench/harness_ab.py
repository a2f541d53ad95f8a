"""A/B mode of ``bench/harness.py``: one scenario on two git refs, threadsched only, and the ratios.

``--baseline REF --candidate REF``: each ref is checked out with ``git worktree add --detach`` into a
temporary directory, and the scenario runs in a fresh interpreter with ``PYTHONPATH=<worktree>`` (so
``import threadsched`` is that ref's package) and that worktree's front door, ``bench/run.py`` (or, on older
refs, ``bench/harness.py``; ``--impl threadsched``, the same knobs, warm-ups and iterations). A ref that
predates the harness is measured with this checkout's instead (``harness`` says which in ``ab_summary.json``).
The worktrees are removed in a ``finally``. Output in ``--out``: ``baseline/`` and ``candidate/`` (each run's artifacts), and
``ab_summary.json`` / ``ab_summary.md`` with candidate / baseline ratios of every statistic.

The two runs are sequential (baseline first), so keep the machine otherwise idle.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from common import BENCH_DIR, REPO_ROOT, machine_info

__all__ = ["ROLES", "forwarded_args", "run_ab"]

ROLES = ("baseline", "candidate")
RATIO_STATS = ("mean", "p50", "p95", "min", "max")
_FORWARDED = (
    "records",
    "buffer_size",
    "row_groups_in_flight",
    "workers",
    "latency_ms",
    "jitter_ms",
    "seed",
    "warmups",
    "iterations",
)


def forwarded_args(args: argparse.Namespace) -> list[str]:
    """The knobs of this invocation, for the harness of each ref."""
    result: list[str] = []
    for name in _FORWARDED:
        value = getattr(args, name)
        if value is not None:
            result += [f"--{name.replace('_', '-')}", str(value)]
    for item in args.limit:
        result += ["--limit", item]
    if args.quick:
        result.append("--quick")
    return result


def _git(*command: str, cwd: Path = REPO_ROOT) -> str:
    done = subprocess.run(["git", *command], cwd=cwd, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(command)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def _ratio(candidate: float, baseline: float) -> float | None:
    return candidate / baseline if baseline > 0 else None


def compare(baseline: Mapping[str, Any], candidate: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
    """candidate / baseline for every statistic of threadsched's metrics present in both summaries."""
    ours, theirs = candidate["stats"].get("threadsched", {}), baseline["stats"].get("threadsched", {})
    return {
        metric: {stat: _ratio(ours[metric][stat], theirs[metric][stat]) for stat in RATIO_STATS}
        for metric in ours
        if metric in theirs
    }


def ab_markdown(document: Mapping[str, Any]) -> str:
    lines = [f"# A/B: {document['scenario']}", ""]
    for role in ROLES:
        run = document[role]
        lines.append(f"* {role}: `{run['ref']}` = `{run['sha']}` (harness: {run['harness']}, exit {run['exit_code']})")
    lines += ["", "Ratios candidate / baseline (< 1: the candidate is lower).", ""]
    lines += ["| metric | " + " | ".join(RATIO_STATS) + " |", "|---" * (len(RATIO_STATS) + 1) + "|"]
    for metric, per in document["ratios"].items():
        cells = " | ".join("-" if per[stat] is None else f"{per[stat]:.3f}" for stat in RATIO_STATS)
        lines.append(f"| {metric} | {cells} |")
    return "\n".join(lines) + "\n"


def run_ab(args: argparse.Namespace, argv: Sequence[str], out_dir: Path) -> int:
    refs = {"baseline": args.baseline, "candidate": args.candidate}
    try:
        _git("rev-parse", "--show-toplevel")
    except (OSError, RuntimeError) as exc:
        print(f"bench/run.py: A/B needs git and a repository at {REPO_ROOT}: {exc}", file=sys.stderr)
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix="threadsched-ab-"))
    added: list[Path] = []
    runs: dict[str, dict[str, Any]] = {}
    try:
        for role in ROLES:
            sha = _git("rev-parse", "--verify", f"{refs[role]}^{{commit}}")
            tree = temp / role
            _git("worktree", "add", "--detach", str(tree), sha)
            added.append(tree)
            found = [path for path in (tree / "bench" / "run.py", tree / "bench" / "harness.py") if path.exists()]
            harness, label = (found[0], "worktree") if found else (BENCH_DIR / "run.py", "current checkout (the ref has none)")
            role_out = out_dir / role
            command = [sys.executable, str(harness), args.scenario, *forwarded_args(args), "--impl", "threadsched"]
            command += ["--out", str(role_out)]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), *filter(None, [os.environ.get("PYTHONPATH")])])}
            print(f"== A/B {role} {refs[role]} ({sha[:12]}): {' '.join(command[1:])}", flush=True)
            done = subprocess.run(command, cwd=tree, env=env, check=False)
            summary_path = role_out / "summary.json"
            summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
            runs[role] = {"ref": refs[role], "sha": sha, "harness": label, "exit_code": done.returncode, "summary": summary}
    finally:
        for tree in added:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO_ROOT, capture_output=True, check=False)
        shutil.rmtree(temp, ignore_errors=True)
    baseline, candidate = runs["baseline"]["summary"], runs["candidate"]["summary"]
    if baseline is None or candidate is None:
        print("bench/run.py: A/B: a run wrote no summary.json (see its output above)", file=sys.stderr)
        return 1
    document: dict[str, Any] = {
        "schema_version": "1",
        "kind": "ab",
        "scenario": args.scenario,
        "command_line": [sys.executable, str(BENCH_DIR / "run.py"), *argv],
        "machine": machine_info(),
        **{
            role: {key: run[key] for key in ("ref", "sha", "harness", "exit_code")}
            | {"summary": str(out_dir / role / "summary.json"), "threadsched_stats": run["summary"]["stats"].get("threadsched")}
            for role, run in runs.items()
        },
        "ratios": compare(baseline, candidate),
        "gates": {role: run["summary"]["gates"] for role, run in runs.items()},
    }
    (out_dir / "ab_summary.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    (out_dir / "ab_summary.md").write_text(ab_markdown(document))
    for metric in ("wall_s", "downstream_gap_p95_s"):
        ratio = document["ratios"].get(metric, {}).get("p50")
        if ratio is not None:
            print(f"  {metric} p50 candidate/baseline = {ratio:.3f}")
    print(f"wrote {out_dir / 'ab_summary.json'}, ab_summary.md")
    return 0 if all(run["exit_code"] == 0 for run in runs.values()) else 1
