"""Command line: ``threadsched demo``, ``threadsched run RECIPE`` and ``threadsched recipe NAME``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from .demo import SCALES, render_plain, render_rich, run_demo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="threadsched", description="Leased, fair thread-pool scheduling.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the built-in mixed workload and show its evidence")
    demo.add_argument("--seed", type=int, default=7, help="seed for the simulated task outcomes (default 7)")
    demo.add_argument("--scale", choices=sorted(SCALES), default="normal", help="workload size")
    demo.add_argument("--workers", type=int, default=8, help="worker threads (default 8)")
    demo.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    demo.add_argument("--plain", action="store_true", help="plain text even when rich is installed")
    run = commands.add_parser("run", help="generate a dataset from a TOML recipe")
    run.add_argument("recipe", type=Path, help="path of the recipe (TOML)")
    run.add_argument("--out", type=Path, default=None, help="output directory (default: the recipe's run.output)")
    run.add_argument("--workers", type=int, default=None, help="worker threads (default: the recipe's run.max_workers)")
    run.add_argument("--reference", action="store_true", help="run single-threaded without the scheduler (the oracle)")
    run.add_argument("--quiet", action="store_true", help="print only errors")
    recipe = commands.add_parser("recipe", help="print a built-in recipe to copy and edit")
    recipe.add_argument("name", help="built-in recipe name (e.g. demo)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    if args.command == "run":
        return _run(args)
    if args.command == "recipe":
        return _recipe(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


def _demo(args: argparse.Namespace) -> int:
    if args.workers < 1:
        print(f"threadsched: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    result = run_demo(seed=args.seed, scale=SCALES[args.scale], max_workers=args.workers)
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    elif args.plain or not render_rich(result):
        render_plain(result)
    healthy = result.hidden_waiters == 0 and result.final_active_leases == 0 and result.unreleased_leases == 0
    return 0 if healthy else 1


def _run(args: argparse.Namespace) -> int:
    from .engine import RecipeError, load_recipe, run_recipe, run_reference

    if args.workers is not None and args.workers < 1:
        print(f"threadsched: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    try:
        recipe = load_recipe(args.recipe)
    except RecipeError as error:
        print(f"threadsched: {error}", file=sys.stderr)
        return 2
    out = args.out if args.out is not None else Path(recipe.run.output)
    result = run_reference(recipe, out) if args.reference else run_recipe(recipe, out, workers=args.workers)
    if not args.quiet:
        print(
            f"{result.mode} run: {result.rows_written} rows written, {len(result.dropped)} dropped, "
            f"{result.row_groups_checkpointed} row groups in {result.elapsed:.2f}s -> {out / 'dataset.jsonl'}"
        )
        print(
            f"output hash {result.output_hash}; hidden waiters {result.hidden_waiters}; "
            f"final active leases {result.final_active_leases}"
        )
    return 0 if result.hidden_waiters == 0 and result.final_active_leases == 0 else 1


def _recipe(args: argparse.Namespace) -> int:
    from .engine import builtin_recipe_names, builtin_recipe_text

    if args.name not in builtin_recipe_names():
        print(f"threadsched: unknown built-in recipe {args.name!r} (known: {', '.join(builtin_recipe_names())})", file=sys.stderr)
        return 2
    sys.stdout.write(builtin_recipe_text(args.name))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
