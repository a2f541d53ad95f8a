"""``threadsched bench``: locating the repository's bench/run.py (the front door) and passing arguments through."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

import threadsched
import threadsched.cli.bench as bench_module
from threadsched.cli.bench import BENCH_MISSING, add_bench_parser, bench_command, locate_bench, run_bench

# A stand-in front door: writes its arguments next to itself and exits with code 3.
FAKE_FRONT_DOOR = """import json, pathlib, sys
pathlib.Path(__file__).with_name("argv.json").write_text(json.dumps(sys.argv[1:]))
sys.exit(3)
"""


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="threadsched")
    add_bench_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def fake_bench(root: Path) -> Path:
    bench = root / "bench"
    bench.mkdir(parents=True)
    (bench / "run.py").write_text(FAKE_FRONT_DOOR)
    return bench


def test_bench_dir_wins_and_arguments_pass_through(tmp_path: Path) -> None:
    bench = fake_bench(tmp_path / "clone")
    args = parse(["bench", "--bench-dir", str(bench), "heavy_root", "--quick", "--limit", "fast/tagger=2"])
    assert args.command == "bench"
    assert run_bench(args) == 3
    assert (bench / "argv.json").read_text() == '["heavy_root", "--quick", "--limit", "fast/tagger=2"]'


def test_bench_dir_after_the_scenario_is_ours(tmp_path: Path) -> None:
    bench = fake_bench(tmp_path / "clone")
    assert run_bench(parse(["bench", "heavy_root", "--bench-dir", str(bench), "--iterations", "1"])) == 3
    assert (bench / "argv.json").read_text() == '["heavy_root", "--iterations", "1"]'


def test_current_directory_bench_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = fake_bench(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert locate_bench(None, package_dir=tmp_path / "elsewhere" / "threadsched") == (bench / "run.py").resolve()
    assert run_bench(parse(["bench", "cycle"])) == 3
    assert (bench / "argv.json").read_text() == '["cycle"]'
    assert run_bench(parse(["bench"])) == 3  # no NAME: bench/run.py runs the whole suite
    assert (bench / "argv.json").read_text() == "[]"


def test_bench_next_to_the_package_source_tree_is_found(tmp_path: Path) -> None:
    bench = fake_bench(tmp_path / "checkout")
    found = locate_bench(None, cwd=tmp_path / "empty", package_dir=tmp_path / "checkout" / "threadsched")
    assert found == (bench / "run.py").resolve()


def test_default_package_dir_is_the_package_not_the_cli_subpackage(tmp_path: Path) -> None:
    # this module lives in threadsched/cli/: a checkout's bench/ is next to threadsched/, not inside it
    checkout_bench = Path(threadsched.__file__).resolve().parent.parent / "bench"
    if not (checkout_bench / "run.py").is_file():
        pytest.skip("not running from a checkout")
    assert locate_bench(None, cwd=tmp_path) == (checkout_bench / "run.py").resolve()


def test_missing_bench_dir_prints_one_line_and_returns_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert locate_bench(tmp_path / "nope") is None
    assert locate_bench(None, cwd=tmp_path, package_dir=tmp_path / "site-packages" / "threadsched") is None
    assert run_bench(parse(["bench", "--bench-dir", str(tmp_path / "nope"), "heavy_root"])) == 2
    captured = capsys.readouterr()
    assert captured.err == BENCH_MISSING + "\n"
    assert captured.out == ""


def test_installed_outside_a_clone_prints_one_line_naming_bench_dir_and_returns_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # no --bench-dir, a working directory without bench/, and the package in site-packages (no checkout around it)
    monkeypatch.setattr(bench_module, "_PACKAGE_DIR", tmp_path / "site-packages" / "threadsched")
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    assert run_bench(parse(["bench", "heavy_root", "--quick"])) == 2
    assert run_bench(parse(["bench"])) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [BENCH_MISSING, BENCH_MISSING]  # one line per invocation
    assert "--bench-dir" in BENCH_MISSING
    assert captured.out == ""


def test_bench_command_uses_this_interpreter_and_drops_a_leading_double_dash(tmp_path: Path) -> None:
    front_door = tmp_path / "run.py"
    assert bench_command(front_door, ["--", "heavy_root", "--quick"]) == [
        sys.executable,
        str(front_door),
        "heavy_root",
        "--quick",
    ]
