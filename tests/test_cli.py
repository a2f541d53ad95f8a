from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from threadsched.cli import main


def test_demo_plain_prints_table_and_evidence(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--scale", "small", "--plain", "--workers", "4"]) == 0
    out = capsys.readouterr().out
    assert "heavy-model" in out and "light-a" in out
    assert "hidden waiters (workers started before their lease): 0" in out
    assert "final active leases: 0" in out


def test_demo_json_is_machine_readable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--scale", "small", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["hidden_waiters"] == 0
    assert payload["final_active_leases"] == 0
    assert {row["group"] for row in payload["rows"]} == {"heavy-model", "light-a", "light-b", "light-c"}


def test_bad_workers_value_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--workers", "0"]) == 2
    assert "--workers must be >= 1, got 0" in capsys.readouterr().err


def test_python_dash_m_entry_point() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "threadsched", "demo", "--scale", "small", "--json"],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["hidden_waiters"] == 0


SMALL_RECIPE = """
[run]
records = 12
buffer_size = 5
max_row_groups_in_flight = 2
max_workers = 3
seed = 5

[providers.mock]
kind = "mock"
models = ["writer"]
max_parallel_requests = 2

[[columns]]
name = "topic"
kind = "sampler"
values = ["a", "b", "c"]

[[columns]]
name = "question"
kind = "llm"
model = "mock/writer"
prompt = "Ask about {topic}."
"""


def test_run_writes_the_dataset_and_matches_the_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "small.toml"
    recipe.write_text(SMALL_RECIPE)
    assert main(["run", str(recipe), "--out", str(tmp_path / "scheduled"), "--workers", "2"]) == 0
    assert main(["run", str(recipe), "--out", str(tmp_path / "reference"), "--reference"]) == 0
    out = capsys.readouterr().out
    assert "hidden waiters 0; final active leases 0" in out
    scheduled = (tmp_path / "scheduled" / "dataset.jsonl").read_bytes()
    assert scheduled == (tmp_path / "reference" / "dataset.jsonl").read_bytes()
    assert len(scheduled.splitlines()) == 12
    assert json.loads((tmp_path / "scheduled" / "run.json").read_text())["output_hash"]


def test_run_rejects_a_bad_recipe_with_exit_code_2_and_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "bad.toml"
    recipe.write_text(SMALL_RECIPE.replace("records = 12", "records = 0"))
    assert main(["run", str(recipe), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("threadsched: ") and "run.records" in error and "\n" not in error
    assert not (tmp_path / "out").exists()


def test_recipe_prints_the_builtin_demo_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    from threadsched.engine import parse_recipe

    assert main(["recipe", "demo"]) == 0
    assert parse_recipe(capsys.readouterr().out).run.records == 200
    assert main(["recipe", "nope"]) == 2
    assert "unknown built-in recipe 'nope'" in capsys.readouterr().err


def test_run_with_an_unloadable_python_function_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "python.toml"
    recipe.write_text(
        SMALL_RECIPE
        + '\n[[columns]]\nname = "extra"\nkind = "python"\nfunction = "no_such_module_zz:f"\ndepends_on = ["topic"]\n'
    )
    assert main(["run", str(recipe), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert "no_such_module_zz" in error and "\n" not in error
