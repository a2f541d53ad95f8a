"""``threadsched bench [NAME ...] [options...]``: run the repository's ``bench/run.py``, the benchmarks' front door.

The benchmarks and the baselines they compare against (a FIFO queue, spawn-then-wait) live only in the
repository's ``bench/`` directory, never in the installed package, so this command needs a clone: it looks
for ``bench/run.py`` in ``--bench-dir``, else ``./bench``, else next to the package's source tree (an
editable install or a checkout on ``PYTHONPATH``), and runs it with the current interpreter, passing every
other argument through (``threadsched bench heavy_root --quick`` is ``python bench/run.py heavy_root
--quick``). It returns ``bench/run.py``'s exit code (for a scenario 0: all gates passed, 1: a gate failed,
2: bad arguments), or 2 with one line on stderr when there is no ``bench/`` directory.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["BENCH_MISSING", "add_bench_parser", "bench_command", "locate_bench", "run_bench"]

BENCH_MISSING = (
    "threadsched bench needs the repository's bench/ directory (baselines live only there); "
    "run it from a clone or pass --bench-dir"
)
FRONT_DOOR = "run.py"
_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # threadsched/ (this module is threadsched/cli/bench.py)


def add_bench_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to ``threadsched``'s subparsers; returns its parser."""
    parser = subparsers.add_parser(
        "bench",
        help="run the benchmarks or a scenario against the fifo and spawn-then-wait baselines (needs a clone's bench/)",
        description=(
            "Run bench/run.py: no NAME for the whole suite; a benchmark (cycle, throughput, leased_executor, "
            "memory, engine, ...) or a scenario (heavy_root, saturated_root, wide_roots, narrow_serial, "
            "generate_judge, hidden_waiter, two_resource_mix, cross_provider_cooldown) with its options "
            "(scenarios: --records, --workers, --limit MODEL=N, --latency-ms, --iterations, --impl, --policies, "
            "--quick, --baseline REF --candidate REF, ...). `threadsched bench NAME --help` shows NAME's options."
        ),
    )
    parser.add_argument("--bench-dir", type=Path, default=None, help="the repository's bench/ directory")
    parser.add_argument("bench_args", nargs=argparse.REMAINDER, help="the arguments of bench/run.py")
    return parser


def locate_bench(bench_dir: Path | None, *, cwd: Path | None = None, package_dir: Path | None = None) -> Path | None:
    """``bench/run.py`` from ``bench_dir`` (only there when given), else ``cwd/bench``, else next to the
    package's source tree (``package_dir``, default this package's directory); None when there is none."""
    if bench_dir is not None:
        candidates = [bench_dir]
    else:
        source_tree = (package_dir if package_dir is not None else _PACKAGE_DIR).parent
        candidates = [(cwd if cwd is not None else Path.cwd()) / "bench", source_tree / "bench"]
    for directory in candidates:
        front_door = directory / FRONT_DOOR
        if front_door.is_file():
            return front_door.resolve()
    return None


def _split_bench_dir(arguments: Sequence[str]) -> tuple[Path | None, list[str]]:
    """A ``--bench-dir`` given after NAME (argparse.REMAINDER keeps it) is ours, not bench/run.py's."""
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


def bench_command(front_door: Path, arguments: Sequence[str]) -> list[str]:
    rest = list(arguments)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    return [sys.executable, str(front_door), *rest]


def run_bench(args: argparse.Namespace) -> int:
    """Run bench/run.py for a parsed ``threadsched bench`` command line; its exit code, or 2 without bench/."""
    late_dir, arguments = _split_bench_dir(list(args.bench_args))
    bench_dir: Path | None = args.bench_dir if args.bench_dir is not None else late_dir
    front_door = locate_bench(bench_dir)
    if front_door is None:
        print(BENCH_MISSING, file=sys.stderr)
        return 2
    try:
        return subprocess.run(bench_command(front_door, arguments), check=False).returncode
    except KeyboardInterrupt:
        return 130
