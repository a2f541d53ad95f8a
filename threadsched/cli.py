"""Command line: ``threadsched demo``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
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
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
