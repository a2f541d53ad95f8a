"""Command line: ``threadsched demo``, ``threadsched run RECIPE``, ``threadsched recipe NAME`` and
``threadsched report OUT``, ``threadsched mock-provider`` (an OpenAI-compatible local server),
``threadsched bench [NAME ...]`` (the repository's ``bench/run.py``) and
``threadsched mixed-demo`` (the scheduler alone, without the engine: a heavy group of slow model tasks beside light groups).

``demo`` is ``run`` on the built-in recipe (``threadsched recipe demo``) with ``./threadsched-demo`` as the
default output. Both show a live progress bar on a terminal (rich, else plain lines; plain lines when
stderr is not a terminal; nothing with ``--quiet``) and end with a summary table (plain text when stdout is
not a terminal, with ``--plain`` or without rich; only the totals with ``--quiet``).

``run``'s default output is the recipe's ``[run] output``, relative to the recipe file's directory
(``threadsched.engine.runner.resolve_output``); ``--out`` overrides it. Both commands refuse a non-empty
directory that no run wrote unless ``--force``, and delete only what a run wrote (``runner.output_dir``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import asdict
from pathlib import Path
from types import FrameType

from threadsched import __version__
from threadsched.cli.bench import add_bench_parser, run_bench
from threadsched.cli.demo import SCALES, render_plain, render_rich, run_demo
from threadsched.mock.cli import add_mock_provider_parser, run_mock_provider
from threadsched.policies import POLICY_NAMES

DEMO_REPORT = ("report.md", "timeline.png")  # what the demo writes after its run (``_report``)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="threadsched", description="Leased, fair thread-pool scheduling.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the built-in demo recipe (into ./threadsched-demo unless --out)")
    _add_run_options(demo)
    run = commands.add_parser("run", help="generate a dataset from a TOML recipe")
    run.add_argument("recipe", type=Path, help="path of the recipe (TOML)")
    _add_run_options(run)
    report = commands.add_parser("report", help="write OUT/report.md and OUT/timeline.png from OUT/events.jsonl")
    report.add_argument("out", type=Path, help="the output directory of a run")
    recipe = commands.add_parser("recipe", help="print a built-in recipe to copy and edit")
    recipe.add_argument("name", help="built-in recipe name (e.g. demo)")
    mixed = commands.add_parser("mixed-demo", help="the scheduler-only mixed workload: per-group waits and evidence")
    mixed.add_argument("--seed", type=int, default=7, help="seed for the simulated task outcomes (default 7)")
    mixed.add_argument("--scale", choices=sorted(SCALES), default="normal", help="workload size")
    mixed.add_argument("--workers", type=int, default=8, help="worker threads (default 8)")
    mixed.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    mixed.add_argument("--plain", action="store_true", help="plain text even when rich is installed")
    add_bench_parser(commands)
    add_mock_provider_parser(commands)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default: run.output beside the recipe; demo: ./threadsched-demo)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="write into OUT even if it holds files no run wrote (those are left alone; files with the names a run "
        "writes are replaced)",
    )
    parser.add_argument("--workers", type=int, default=None, help="worker threads (default: the recipe's run.max_workers)")
    parser.add_argument("--resume", action="store_true", help="skip the row groups an earlier run of this recipe checkpointed")
    parser.add_argument("--reference", action="store_true", help="run single-threaded without the scheduler (the oracle)")
    parser.add_argument("--quiet", action="store_true", help="no progress and no table: errors and the totals only")
    parser.add_argument("--plain", action="store_true", help="plain text progress and summary even when rich is installed")
    parser.add_argument("--no-events", action="store_true", help="do not write OUT/events.jsonl (nor the report)")
    parser.add_argument(
        "--policy", choices=POLICY_NAMES, default=None, help="admission policy (default: the recipe's run.policy, else strict)"
    )
    parser.add_argument(
        "--dask",
        metavar="ADDRESS|local",
        default=None,
        help="run the tasks on a Dask cluster: a scheduler address, or 'local' for a two-process LocalCluster "
        "(needs the [dask] extra; same output)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("demo", "run"):
        return _run(args)
    if args.command == "recipe":
        return _recipe(args)
    if args.command == "report":
        return _report(args.out)
    if args.command == "mixed-demo":
        return _mixed_demo(args)
    if args.command == "bench":
        return run_bench(args)
    if args.command == "mock-provider":
        return run_mock_provider(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


MAX_WORKERS = 1_024
"""The most worker threads ``--workers`` asks for: the recipe's own ``run.max_workers`` bound."""


def workers_problem(workers: int) -> str | None:
    """Why ``--workers`` is refused, or None."""
    if not 1 <= workers <= MAX_WORKERS:
        return f"--workers must be in [1, {MAX_WORKERS:_}], got {workers}"
    return None


def _mixed_demo(args: argparse.Namespace) -> int:
    if (problem := workers_problem(args.workers)) is not None:
        print(f"threadsched: {problem}", file=sys.stderr)
        return 2
    result = run_demo(seed=args.seed, scale=SCALES[args.scale], max_workers=args.workers)
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    elif args.plain or not render_rich(result):
        render_plain(result)
    healthy = result.hidden_waiters == 0 and result.final_active_leases == 0 and result.unreleased_leases == 0
    return 0 if healthy else 1


def _run(args: argparse.Namespace) -> int:
    """Exit codes: 0 ok, 1 early shutdown (error rate) or an unhealthy run, 2 bad recipe/resume, 130 Ctrl-C.

    Without ``--resume`` the files an earlier run wrote into the output directory are deleted (a fresh run);
    with it, a checkpoint that fails verification is recomputed and named on stderr."""
    from threadsched.engine import (
        ProcessorError,
        RecipeError,
        UserCodeError,
        builtin_recipe_text,
        load_recipe,
        parse_recipe,
        run_recipe,
        run_reference,
    )
    from threadsched.engine.progress import progress_for
    from threadsched.engine.runner import resolve_output
    from threadsched.engine.summary import render_summary, summary_lines

    if args.workers is not None and (problem := workers_problem(args.workers)) is not None:
        print(f"threadsched: {problem}", file=sys.stderr)
        return 2
    try:
        recipe = load_recipe(args.recipe) if args.command == "run" else parse_recipe(builtin_recipe_text("demo"), source="demo")
        out = (
            args.out
            if args.out is not None
            else resolve_output(recipe.run.output, args.recipe if args.command == "run" else None)
        )
    except RecipeError as error:
        print(f"threadsched: {error}", file=sys.stderr)
        return 2
    if args.reference and args.resume:
        print("threadsched: --resume cannot be combined with --reference", file=sys.stderr)
        return 2
    if args.reference and args.dask is not None:
        print("threadsched: --dask cannot be combined with --reference", file=sys.stderr)
        return 2
    cancel = threading.Event()
    restore = _cancel_on_sigint(cancel)
    try:
        if args.reference:
            result = run_reference(recipe, out, force=args.force)
        else:
            progress = progress_for(sys.stderr, quiet=args.quiet, plain=args.plain)
            with _backend(args.dask, args.workers or recipe.run.max_workers) as executor:
                result = run_recipe(
                    recipe,
                    out,
                    workers=args.workers or _backend_workers(executor, args.dask),
                    resume=args.resume,
                    cancel=cancel,
                    progress=progress,
                    event_log=not args.no_events,
                    policy=args.policy,
                    executor=executor,
                    force=args.force,
                    extra_files=DEMO_REPORT if args.command == "demo" and not args.no_events else (),
                )
    except ImportError as error:  # --dask without the [dask] extra
        print(f"threadsched: {error}", file=sys.stderr)
        return 2
    except (RecipeError, UserCodeError, ProcessorError) as error:
        # --resume against another recipe's checkpoints, an output directory a run may not use, or a python
        # function that cannot be loaded (all checked before anything is written or run).
        print(f"threadsched: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C, or Ctrl-C in --reference mode
        print(f"threadsched: interrupted; checkpoints written so far are in {out / 'row_groups'}", file=sys.stderr)
        return 130
    finally:
        restore()
    for row_group, why in sorted(result.recomputed_row_groups.items()):
        print(f"threadsched: resume: recomputed row group {row_group}: {why}", file=sys.stderr)
    if args.quiet:
        print("\n".join(summary_lines(result)))
    else:
        render_summary(recipe, result, stream=sys.stdout, plain=args.plain or not _isatty(sys.stdout))
    if args.command == "demo" and not args.reference and not args.no_events:
        _report(out, quiet=args.quiet)  # the demo ends with its evidence
    if result.early_shutdown or result.cancelled:
        report = json.loads((out / "run.json").read_text(encoding="utf-8"))
        what = "early shutdown: " + report["early_shutdown"]["reason"] if result.early_shutdown else "cancelled (Ctrl-C)"
        print(
            f"threadsched: {what}; {result.row_groups_checkpointed} complete row groups checkpointed in "
            f"{out / 'row_groups'} (rerun with --resume to continue)",
            file=sys.stderr,
        )
        return 1 if result.early_shutdown else 130
    return 0 if result.hidden_waiters == 0 and result.final_active_leases == 0 else 1


@contextlib.contextmanager
def _backend(dask: str | None, threads: int) -> Iterator[Executor | None]:
    """``--dask``: a ``DaskExecutor`` for the run (its client, and a local cluster, closed after it); else None."""
    if dask is None:
        yield None
        return
    from threadsched.backends.dask import connect

    with connect(dask, threads=threads) as executor:
        yield executor


def _backend_workers(executor: Executor | None, dask: str | None) -> int | None:
    """Without ``--workers``: all the threads of a remote cluster (``local`` was sized from the recipe)."""
    if executor is None:
        return None
    from threadsched.backends.dask import LOCAL, DaskExecutor

    return executor.max_workers if isinstance(executor, DaskExecutor) and dask != LOCAL else None


def _report(out: Path, *, quiet: bool = False) -> int:
    from threadsched.engine.runner import record_files
    from threadsched.report import write_report

    try:
        report = write_report(out)
    except FileNotFoundError as error:
        print(f"threadsched: no events to report: {error} (run without --no-events)", file=sys.stderr)
        return 2
    written = (report.markdown_path, report.timeline_path)
    record_files(out, [path.name for path in written if path is not None])  # a later fresh run may delete them
    if not quiet:
        plot = (
            f" and {report.timeline_path}" if report.timeline_path is not None else " (timeline skipped: install the plots extra)"
        )
        print(f"report: {report.markdown_path}{plot}")
    return 0


def _isatty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


def _cancel_on_sigint(cancel: threading.Event) -> Callable[[], None]:
    """First Ctrl-C sets ``cancel`` (graceful stop); the handler then steps aside so a second one interrupts."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:  # installed outside Python: fall back to the default KeyboardInterrupt
        previous = signal.default_int_handler

    def handler(signum: int, frame: FrameType | None) -> None:
        cancel.set()
        signal.signal(signal.SIGINT, previous)

    def restore() -> None:
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, handler)
    return restore


def _recipe(args: argparse.Namespace) -> int:
    from threadsched.engine import builtin_recipe_names, builtin_recipe_text

    if args.name not in builtin_recipe_names():
        print(f"threadsched: unknown built-in recipe {args.name!r} (known: {', '.join(builtin_recipe_names())})", file=sys.stderr)
        return 2
    sys.stdout.write(builtin_recipe_text(args.name))
    return 0
