"""``threadsched bench SCENARIO [harness options...]``: run the repository's ``bench/harness.py``.

The baselines the harness compares against (a FIFO queue, spawn-then-wait) live only in the repository's
``bench/`` directory, never in the installed package, so this command needs a clone: it looks for
``bench/harness.py`` in ``--bench-dir``, else ``./bench``, else next to the package's source tree (an
editable install or a checkout on ``PYTHONPATH``), and runs it with the current interpreter, passing every
other argument through. It returns the harness's exit code (0: all gates passed, 1: a gate failed, 2: bad
arguments), or 2 with one line on stderr when there is no ``bench/`` directory.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["BENCH_MISSING", "add_bench_parser", "harness_command", "locate_harness", "run_bench"]

BENCH_MISSING = (
    "threadsched bench needs the repository's bench/ directory (baselines live only there); "
    "run it from a clone or pass --bench-dir"
)
HARNESS = "harness.py"
_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # threadsched/ (this module is threadsched/cli/bench.py)


def add_bench_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to ``threadsched``'s subparsers; returns its parser."""
    parser = subparsers.add_parser(
        "bench",
        help="benchmark a scenario against the fifo and spawn-then-wait baselines (needs a clone's bench/)",
        description=(
            "Run bench/harness.py: SCENARIO (cycle, heavy_root, wide_roots, narrow_serial, generate_judge, "
            "hidden_waiter) and its options (--records, --buffer-size, --row-groups-in-flight, --workers, "
            "--limit MODEL=N, --latency-ms, --jitter-ms, --warmups, --iterations, --seed, --impl, --out, --quick, "
            "--baseline REF --candidate REF). `threadsched bench SCENARIO --help` shows the harness's help."
        ),
    )
    parser.add_argument("--bench-dir", type=Path, default=None, help="the repository's bench/ directory")
    parser.add_argument("harness_args", nargs=argparse.REMAINDER, help="SCENARIO and the harness options")
    return parser


def locate_harness(bench_dir: Path | None, *, cwd: Path | None = None, package_dir: Path = _PACKAGE_DIR) -> Path | None:
    """``bench/harness.py`` from ``bench_dir`` (only there when given), else ``cwd/bench``, else next to the
    package's source tree; None when there is none."""
    if bench_dir is not None:
        candidates = [bench_dir]
    else:
        candidates = [(cwd if cwd is not None else Path.cwd()) / "bench", package_dir.parent / "bench"]
    for directory in candidates:
        harness = directory / HARNESS
        if harness.is_file():
            return harness.resolve()
    return None


def _split_bench_dir(arguments: Sequence[str]) -> tuple[Path | None, list[str]]:
    """A ``--bench-dir`` given after SCENARIO (argparse.REMAINDER keeps it) is ours, not the harness's."""
    rest: list[str] = []
    bench_dir: Path | None = None
    items = iter(arguments)
    for item in items:
        if item == "--bench-dir":
            value = next(items, None)
            bench_dir = Path(value) if value is not None else None
        elif item.startswith("--bench-dir="):
            bench_dir = Path(item.partition("=")[2])
        else:
            rest.append(item)
    return bench_dir, rest


def harness_command(harness: Path, arguments: Sequence[str]) -> list[str]:
    rest = list(arguments)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    return [sys.executable, str(harness), *rest]


def run_bench(args: argparse.Namespace) -> int:
    """Run the harness for a parsed ``threadsched bench`` command line; its exit code, or 2 without bench/."""
    late_dir, arguments = _split_bench_dir(list(args.harness_args))
    bench_dir: Path | None = args.bench_dir if args.bench_dir is not None else late_dir
    harness = locate_harness(bench_dir)
    if harness is None:
        print(BENCH_MISSING, file=sys.stderr)
        return 2
    try:
        return subprocess.run(harness_command(harness, arguments), check=False).returncode
    except KeyboardInterrupt:
        return 130
