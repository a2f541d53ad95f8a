from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import threadsched
from threadsched.cli.commands import main


def test_version_prints_the_package_version_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    captured = capsys.readouterr()
    assert captured.out == f"threadsched {threadsched.__version__}\n"
    assert captured.err == ""


def test_mixed_demo_plain_prints_table_and_evidence(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mixed-demo", "--scale", "small", "--plain", "--workers", "4"]) == 0
    out = capsys.readouterr().out
    assert "heavy-model" in out and "light-a" in out
    assert "hidden waiters (workers started before their lease): 0" in out
    assert "final active leases: 0" in out


def test_mixed_demo_json_is_machine_readable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mixed-demo", "--scale", "small", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["hidden_waiters"] == 0
    assert payload["final_active_leases"] == 0
    assert {row["group"] for row in payload["rows"]} == {"heavy-model", "light-a", "light-b", "light-c"}


@pytest.mark.parametrize("command", ["demo", "mixed-demo"])
@pytest.mark.parametrize("workers", ["0", "-3", "1025", "100000000"])
def test_bad_workers_value_is_a_clear_error(command: str, workers: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--workers", workers]) == 2
    assert f"--workers must be in [1, 1_024], got {workers}" in capsys.readouterr().err


def test_the_workers_bound_is_the_recipes_own() -> None:
    from threadsched.cli.commands import MAX_WORKERS
    from threadsched.engine.recipe.ranges import RECIPE_RANGES

    assert RECIPE_RANGES["run.max_workers"].maximum == MAX_WORKERS


def test_demo_runs_the_builtin_recipe_into_threadsched_demo_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--workers", "4", "--plain"]) == 0
    captured = capsys.readouterr()
    report = json.loads((tmp_path / "threadsched-demo" / "run.json").read_text(encoding="utf-8"))
    assert report["hidden_waiters"] == 0 and report["final_active_leases"] == 0
    assert report["rows_written"] + report["rows_dropped"] == 200
    table = captured.out.splitlines()
    assert table[0].split() == ["column", "kind", "resource", "rows", "done", "retried", "failed"]
    score = next(line.split() for line in table if line.startswith("score "))
    assert score[:4] == ["score", "llm", "llm:slow/judge", str(report["rows_written"])]
    assert f"output hash {report['output_hash']}; hidden waiters 0; final active leases 0" in captured.out
    assert "\r" not in captured.err and "\x1b" not in captured.err  # stderr is not a terminal: plain progress lines
    assert "row groups 10/10 checkpointed" in captured.err


def test_demo_output_equals_its_reference_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path / "scheduled"), "--workers", "3", "--quiet"]) == 0
    assert main(["demo", "--out", str(tmp_path / "reference"), "--reference", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # --quiet: no progress
    assert "column" not in captured.out  # --quiet: no table, the totals only
    scheduled = (tmp_path / "scheduled" / "dataset.jsonl").read_bytes()
    assert scheduled == (tmp_path / "reference" / "dataset.jsonl").read_bytes()


def test_demo_resume_reuses_the_checkpoints_of_the_same_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    first = (out / "dataset.jsonl").read_bytes()
    assert main(["demo", "--out", str(out), "--resume", "--quiet"]) == 0
    assert "resumed 10 row groups" in capsys.readouterr().out
    assert (out / "dataset.jsonl").read_bytes() == first


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "threadsched", "demo", "--out", str(tmp_path / "demo"), "--plain"],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "hidden waiters 0; final active leases 0" in completed.stdout
    assert json.loads((tmp_path / "demo" / "run.json").read_text(encoding="utf-8"))["hidden_waiters"] == 0


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


@pytest.mark.parametrize(("setting", "shown"), [("latency_ms = 1e300", "1e+300"), ("jitter_ms = 1e308", "1e+308")])
def test_run_refuses_an_out_of_range_number_before_running(
    setting: str, shown: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """These passed "must be finite" and the run exited 0 with every row dropped by time.sleep's OverflowError."""
    recipe = tmp_path / "bad.toml"
    recipe.write_text(SMALL_RECIPE.replace("max_parallel_requests = 2", f"max_parallel_requests = 2\n{setting}"))
    assert main(["run", str(recipe), "--out", str(tmp_path / "out")]) == 2
    field = setting.partition(" ")[0]
    line = recipe.read_text().splitlines().index(setting) + 1
    expected = f"threadsched: {recipe}:{line}: providers.mock.{field}: must be a finite number in [0, 3_600_000], got {shown}"
    assert capsys.readouterr().err.strip() == expected
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


def test_run_writes_events_and_capacity_plan_and_report_reads_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "small.toml"
    recipe.write_text(SMALL_RECIPE)
    out = tmp_path / "out"
    assert main(["run", str(recipe), "--out", str(out), "--workers", "2", "--quiet"]) == 0
    assert (out / "events.jsonl").is_file() and (out / "capacity_plan.json").is_file()
    plan = json.loads((out / "capacity_plan.json").read_text(encoding="utf-8"))
    assert plan["configured"]["submission_capacity"] == {"value": 2, "source": "cli"}
    assert not (out / "report.md").exists()  # only the demo writes its report on its own
    assert main(["report", str(out)]) == 0
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "question" in text and "Hidden waiters" in text


def test_no_events_writes_no_event_log_and_report_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "small.toml"
    recipe.write_text(SMALL_RECIPE)
    out = tmp_path / "out"
    assert main(["run", str(recipe), "--out", str(out), "--no-events", "--quiet"]) == 0
    assert not (out / "events.jsonl").exists()
    assert (out / "capacity_plan.json").is_file()  # every run writes its capacity plan
    assert main(["report", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("threadsched: no events to report") and "events.jsonl" in error and "\n" not in error


def test_demo_ends_with_its_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--plain"]) == 0
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    assert (out / "report.md").is_file()


# -- the output directory ---------------------------------------------------------------------------------

USER_FILES = {"report.md": b"my notes", "timeline.png": b"\x89PNG mine", "events.jsonl.bak": b"{}\n"}


def _plant(directory: Path, files: dict[str, bytes]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)


def test_run_writes_the_recipes_output_beside_the_recipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "recipes" / "small.toml"
    recipe.parent.mkdir()
    recipe.write_text(SMALL_RECIPE.replace("seed = 5", 'seed = 5\noutput = "small-out"'))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    assert main(["run", str(recipe), "--quiet"]) == 0
    assert (tmp_path / "recipes" / "small-out" / "run.json").is_file()
    assert list((tmp_path / "cwd").iterdir()) == []
    assert str(tmp_path / "recipes" / "small-out") in capsys.readouterr().out


@pytest.mark.parametrize("output", ["../elsewhere", "/tmp/elsewhere", "."])
def test_a_recipes_output_outside_its_directory_exits_2_naming_field_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], output: str
) -> None:
    recipe = tmp_path / "recipes" / "small.toml"
    recipe.parent.mkdir()
    recipe.write_text(SMALL_RECIPE.replace("seed = 5", f'seed = 5\noutput = "{output}"'))
    monkeypatch.chdir(tmp_path / "recipes")
    assert main(["run", str(recipe), "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"threadsched: {recipe}:8: run.output: ") and "\n" not in error
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["recipes", "small.toml"]


@pytest.mark.parametrize("command", ["run", "demo"])
def test_a_directory_with_files_no_run_wrote_is_refused_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    recipe = tmp_path / "small.toml"
    recipe.write_text(SMALL_RECIPE)
    out = tmp_path / "out"
    mine = USER_FILES if command == "run" else {"notes.md": b"mine", "events.jsonl.bak": b"{}\n"}  # the demo writes a report
    _plant(out, mine)
    args = ["run", str(recipe)] if command == "run" else ["demo"]
    assert main([*args, "--out", str(out), "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"threadsched: {out}: refusing to write into a directory that holds files no run wrote (")
    assert all(name in error for name in mine) and "--force" in error and "\n" not in error
    assert sorted(path.name for path in out.iterdir()) == sorted(mine)
    assert main([*args, "--out", str(out), "--quiet", "--force"]) == 0
    assert all((out / name).read_bytes() == data for name, data in mine.items())
    assert (out / "run.json").is_file()


def test_the_report_is_owned_by_the_run_and_a_fresh_run_removes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "small.toml"
    recipe.write_text(SMALL_RECIPE)
    out = tmp_path / "out"
    assert main(["run", str(recipe), "--out", str(out), "--quiet"]) == 0
    assert main(["report", str(out)]) == 0
    assert "report.md" in json.loads((out / "threadsched-manifest.json").read_text(encoding="utf-8"))["files"]
    _plant(out, {"notes.md": b"mine"})
    assert main(["run", str(recipe), "--out", str(out), "--quiet", "--no-events"]) == 0
    assert not (out / "report.md").exists() and not (out / "events.jsonl").exists()  # the earlier run's evidence
    assert (out / "notes.md").read_bytes() == b"mine"
