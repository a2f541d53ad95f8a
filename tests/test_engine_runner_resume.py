"""Stopping and resuming a run (runner.resume): --resume, damaged checkpoints (recomputed, never trusted), the
row invariant (rows written + dropped == records) over fresh and resumed runs, and the stops that leave
checkpoints to resume from (error-rate early shutdown, cancellation and Ctrl-C, a killed process).

The python columns below are loaded by recipes as ``test_engine_runner_resume:<name>`` (tests/ is on
``sys.path``); they cancel the run or kill their own process at a deterministic point."""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import assert_healthy, no_sleep

from threadsched.cli import main
from threadsched.engine import Recipe, RecipeError, parse_recipe
from threadsched.engine.runner import ResumeError, RunResult, run_recipe, run_reference
from threadsched.engine.tracker import ColumnNode, CompletionTracker

TESTS = Path(__file__).resolve().parent
MODULE = Path(__file__).stem
KILL_ENV = "THREADSCHED_TEST_KILL_WHEN_CHECKPOINTED"

CANCEL = threading.Event()
CANCEL_AT = 20
_calls: Iterator[int] = itertools.count(1)


def cancel_after_calls(row: dict[str, object]) -> int:
    """Sets ``CANCEL`` on its ``CANCEL_AT``-th call (a python cell column)."""
    if next(_calls) == CANCEL_AT:
        CANCEL.set()
    return len(str(row["topic"]))


def sigint_after_calls(row: dict[str, object]) -> int:
    """Sends SIGINT to this process on its ``CANCEL_AT``-th call, as a Ctrl-C would."""
    if next(_calls) == CANCEL_AT:
        os.kill(os.getpid(), signal.SIGINT)
    return len(str(row["topic"]))


def kill_when_checkpointed(row: dict[str, object]) -> int:
    """SIGKILLs its own process once a checkpoint exists in the directory named by ``KILL_ENV``."""
    target = os.environ.get(KILL_ENV)
    if target and any(Path(target).glob("rg-*.jsonl")):
        os.kill(os.getpid(), signal.SIGKILL)
    return len(str(row["topic"]))


def with_line_separators(row: dict[str, object]) -> str:
    """A python cell column whose values hold what ``str.splitlines()`` splits on, as model output can."""
    return f"{row['topic']}\u2028line\u2029paragraph\u0085next\r\x1c\x1d\x1e\x0b\x0c end"


def reset_calls() -> None:
    global _calls  # the call counter of the python columns above
    _calls = itertools.count(1)
    CANCEL.clear()


@pytest.fixture(autouse=True)
def _reset_calls() -> Iterator[None]:
    reset_calls()
    yield
    CANCEL.clear()


def recipe_text(
    *,
    records: int = 60,
    seed: int = 11,
    fatal_rate: float = 0.0,
    run_extra: str = "",
    function: str = "",
    pre_filter: bool = False,
) -> str:
    python = (
        f'\n[[columns]]\nname = "size"\nkind = "python"\nfunction = "{MODULE}:{function}"\nmode = "cell"\n'
        'depends_on = ["topic"]\n'
        if function
        else ""
    )
    processor = '\n[[processors]]\nstage = "pre_batch"\nkind = "filter"\ncolumn = "topic"\nop = "!="\nvalue = "war"\n'
    return f"""
[run]
records = {records}
buffer_size = 7
max_row_groups_in_flight = 2
max_workers = 3
seed = {seed}
max_salvage_rounds = 1
{run_extra}

[resources]
"llm:mock/writer" = 2

[providers.mock]
kind = "mock"
models = ["writer"]
fatal_rate = {fatal_rate}

[[columns]]
name = "topic"
kind = "sampler"
values = ["space", "food", "war", "sport", "art", "law", "sea"]

[[columns]]
name = "question"
kind = "llm"
model = "mock/writer"
prompt = "Ask about {{topic}}."

[[columns]]
name = "label"
kind = "template"
template = "{{topic}}: {{question}}"
{python}{processor if pre_filter else ""}"""


def make_recipe(**kwargs: object) -> Recipe:
    return parse_recipe(recipe_text(**kwargs))  # type: ignore[arg-type]


def checkpoints(out: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((out / "row_groups").glob("rg-*.jsonl"))}


GROUPS = math.ceil(60 / 7)


# -- resume ---------------------------------------------------------------------------------------------------


def test_resume_skips_checkpointed_row_groups_and_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    recipe = make_recipe()  # no failures, no filter: every row group of n rows costs exactly 1 + 2n tasks
    full = run_recipe(recipe, tmp_path / "full", sleep=no_sleep)
    assert_healthy(full)
    assert full.counters["tasks_submitted"] == GROUPS + 2 * 60
    out = tmp_path / "crashed"
    run_recipe(recipe, out, sleep=no_sleep)
    for index in (1, 4, 8):  # as if the process died before these were checkpointed
        (out / "row_groups" / f"rg-{index:05d}.jsonl").unlink()
    resumed = run_recipe(recipe, out, sleep=no_sleep, resume=True)
    assert_healthy(resumed)
    assert resumed.output_hash == full.output_hash
    assert (out / "dataset.jsonl").read_bytes() == (tmp_path / "full" / "dataset.jsonl").read_bytes()
    assert resumed.resumed_row_groups == GROUPS - 3
    assert resumed.row_groups_checkpointed == GROUPS
    assert resumed.rows_written == 60
    rows = 7 + 7 + (60 - 8 * 7)  # row groups 1, 4 and 8 (the last one is short)
    assert resumed.counters["tasks_submitted"] == 3 + 2 * rows
    report = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert report["resumed_row_groups"] == [0, 2, 3, 5, 6, 7]
    assert report["output_hash"] == full.output_hash


def test_resume_with_drops_matches_the_reference(tmp_path: Path) -> None:
    recipe = make_recipe(fatal_rate=0.2, pre_filter=True)
    reference = run_reference(recipe, tmp_path / "ref", sleep=no_sleep)
    out = tmp_path / "out"
    first = run_recipe(recipe, out, sleep=no_sleep)
    assert first.output_hash == reference.output_hash
    for index in (0, 5):
        (out / "row_groups" / f"rg-{index:05d}.jsonl").unlink()
    resumed = run_recipe(recipe, out, sleep=no_sleep, resume=True, workers=2)
    assert_healthy(resumed)
    assert resumed.output_hash == reference.output_hash
    assert set(resumed.dropped) == set(reference.dropped)
    recomputed = {row for row in reference.dropped if row // 7 in (0, 5)}
    assert {row for row, why in resumed.dropped.items() if why == reference.dropped[row]} >= recomputed


def test_resume_of_another_recipe_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, other = make_recipe(), make_recipe(seed=12)
    run_recipe(first, tmp_path, sleep=no_sleep)
    with pytest.raises(ResumeError) as caught:
        run_recipe(other, tmp_path, sleep=no_sleep, resume=True)
    assert isinstance(caught.value, RecipeError)
    assert first.recipe_hash in str(caught.value) and other.recipe_hash in str(caught.value)
    assert "\n" not in str(caught.value)
    assert len(checkpoints(tmp_path)) == GROUPS  # nothing was touched
    path = tmp_path / "other.toml"
    path.write_text(recipe_text(seed=12), encoding="utf-8")
    assert main(["run", str(path), "--out", str(tmp_path), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert first.recipe_hash in err and other.recipe_hash in err and "cannot resume" in err


def test_resume_needs_a_run_state_next_to_the_checkpoints(tmp_path: Path) -> None:
    recipe = make_recipe()
    run_recipe(recipe, tmp_path, sleep=no_sleep)
    (tmp_path / "run_state.json").unlink()
    with pytest.raises(ResumeError, match=r"run_state\.json is missing"):
        run_recipe(recipe, tmp_path, sleep=no_sleep, resume=True)


def test_fresh_run_overwrites_checkpoints_of_another_recipe(tmp_path: Path) -> None:
    run_recipe(make_recipe(seed=12), tmp_path, sleep=no_sleep)
    (tmp_path / "row_groups" / ".rg-00001.jsonl.abc.tmp").write_text("partial", encoding="utf-8")
    recipe = make_recipe(records=20)
    result = run_recipe(recipe, tmp_path, sleep=no_sleep)
    assert list(checkpoints(tmp_path)) == [f"rg-{i:05d}.jsonl" for i in range(3)]
    assert not list((tmp_path / "row_groups").glob("*.tmp"))
    state = json.loads((tmp_path / "run_state.json").read_text(encoding="utf-8"))
    assert state == {"recipe_hash": recipe.recipe_hash, "buffer_size": 7, "records": 20}
    assert result.output_hash == run_reference(recipe, tmp_path / "ref", sleep=no_sleep).output_hash


def test_resume_without_checkpoints_is_a_fresh_run(tmp_path: Path) -> None:
    recipe = make_recipe()
    result = run_recipe(recipe, tmp_path / "new", sleep=no_sleep, resume=True)
    assert result.resumed_row_groups == 0
    assert result.output_hash == run_reference(recipe, tmp_path / "ref", sleep=no_sleep).output_hash


def test_resume_after_everything_was_checkpointed_submits_nothing(tmp_path: Path) -> None:
    recipe = make_recipe()
    full = run_recipe(recipe, tmp_path, sleep=no_sleep)
    again = run_recipe(recipe, tmp_path, sleep=no_sleep, resume=True)
    assert again.output_hash == full.output_hash
    assert again.counters["tasks_submitted"] == 0
    assert_healthy(again)


def test_tracker_skip_row_groups_counts_them_as_checkpointed() -> None:
    tracker = CompletionTracker(
        [ColumnNode("a", (), "batch")], records=20, buffer_size=5, max_row_groups_in_flight=2, skip_row_groups=[0, 2]
    )
    assert tracker.open_row_groups() == (1, 3)
    assert tracker.statistics()["row_groups_checkpointed"] == 2
    for key in tracker.ready_frontier():
        tracker.mark_enqueued([key])
        assert tracker.mark_started(key)
        tracker.mark_complete(key)
    for row_group in tracker.pop_completed_row_groups():
        tracker.mark_checkpointed(row_group)
    assert tracker.is_finished()
    done = CompletionTracker(
        [ColumnNode("a", (), "batch")], records=10, buffer_size=5, max_row_groups_in_flight=1, skip_row_groups={0, 1}
    )
    assert done.is_finished() and done.ready_frontier() == ()


def test_resume_after_the_process_is_killed_mid_run(tmp_path: Path) -> None:
    recipe_path = tmp_path / "recipe.toml"
    recipe_path.write_text(recipe_text(function="kill_when_checkpointed", fatal_rate=0.1), encoding="utf-8")
    recipe = parse_recipe(recipe_path.read_text(encoding="utf-8"))
    reference = run_reference(recipe, tmp_path / "ref", sleep=no_sleep)
    out = tmp_path / "out"
    env = {**os.environ, KILL_ENV: str(out / "row_groups"), "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    completed = subprocess.run(
        [sys.executable, "-m", "threadsched", "run", str(recipe_path), "--out", str(out), "--workers", "2", "--quiet"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == -signal.SIGKILL, completed.stderr
    survived = checkpoints(out)
    assert 1 <= len(survived) < GROUPS
    assert not (out / "dataset.jsonl").exists()
    resumed = run_recipe(recipe, out, sleep=no_sleep, resume=True)
    assert_healthy(resumed)
    assert resumed.resumed_row_groups == len(survived)
    assert resumed.output_hash == reference.output_hash


# -- damaged checkpoints, the row invariant --------------------------------------------------------------------


def checkpoint_path(out: Path, row_group: int) -> Path:
    return out / "row_groups" / f"rg-{row_group:05d}.jsonl"


def cut_in_half(out: Path, row_group: int) -> None:
    path = checkpoint_path(out, row_group)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def not_utf8(out: Path, row_group: int) -> None:
    path = checkpoint_path(out, row_group)
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1][:3] + b"\xff\xfe\xc0" + lines[1][3:]
    path.write_bytes(b"\n".join(lines))


def copied_from_row_group_0(out: Path, row_group: int) -> None:
    shutil.copyfile(checkpoint_path(out, 0), checkpoint_path(out, row_group))


def value_edited(out: Path, row_group: int) -> None:
    path = checkpoint_path(out, row_group)
    data = path.read_bytes()
    # still UTF-8 and JSON: an X before the last value's closing quote (or the header's first, if all rows dropped)
    edited = data.replace(b'": "', b'": "X', 1) if data.count(b"\n") == 1 else data[:-3] + b"X" + data[-3:]
    path.write_bytes(edited)


def deleted(out: Path, row_group: int) -> None:
    checkpoint_path(out, row_group).unlink()


DAMAGE: dict[str, Callable[[Path, int], None]] = {
    "cut_in_half": cut_in_half,
    "not_utf8": not_utf8,
    "copied_from_row_group_0": copied_from_row_group_0,
    "value_edited": value_edited,
}
FOUND = {
    "cut_in_half": "cut off (the file does not end with a newline)",
    "not_utf8": "line 2: not UTF-8",
    "copied_from_row_group_0": "line 1: belongs to row group 0, not 1",
    "value_edited": "checksum mismatch",
}


def assert_rows_add_up(recipe: Recipe, out: Path, result: RunResult) -> None:
    """Each record is written once or dropped once, in the result, in run.json and in dataset.jsonl."""
    report = json.loads((out / "run.json").read_text(encoding="utf-8"))
    written = [json.loads(line)["_row"] for line in (out / "dataset.jsonl").read_bytes().split(b"\n")[:-1]]
    dropped = {int(row) for row in report["dropped"]}
    assert report["rows_written"] + report["rows_dropped"] == recipe.run.records == report["records"]
    assert len(written) == len(set(written)) == report["rows_written"] and not dropped & set(written)
    assert sorted([*written, *dropped]) == list(range(recipe.run.records))
    assert (result.rows_written, set(result.dropped)) == (report["rows_written"], dropped)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_resume_recomputes_a_damaged_checkpoint(tmp_path: Path, damage: str) -> None:
    recipe = make_recipe(fatal_rate=0.2, pre_filter=True)
    reference = run_reference(recipe, tmp_path / "ref", sleep=no_sleep)
    out = tmp_path / "out"
    run_recipe(recipe, out, sleep=no_sleep)
    DAMAGE[damage](out, 1)
    resumed = run_recipe(recipe, out, sleep=no_sleep, resume=True)
    assert_healthy(resumed)
    assert resumed.output_hash == reference.output_hash
    assert_rows_add_up(recipe, out, resumed)
    assert resumed.resumed_row_groups == GROUPS - 1 and resumed.row_groups_checkpointed == GROUPS
    assert dict(resumed.dropped) == dict(reference.dropped)  # the checkpoints name their drops' reasons
    assert checkpoints(out) == checkpoints(tmp_path / "ref")  # the damaged file was rewritten
    assert list(resumed.recomputed_row_groups) == [1]
    assert resumed.recomputed_row_groups[1].startswith(str(checkpoint_path(out, 1)))
    assert FOUND[damage] in resumed.recomputed_row_groups[1]
    report = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert report["recomputed_row_groups"] == {"1": resumed.recomputed_row_groups[1]}


def test_cli_resume_over_a_damaged_checkpoint_names_the_file_and_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "recipe.toml"
    path.write_text(recipe_text(), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    not_utf8(out, 2)
    cut_in_half(out, 4)
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(out), "--resume", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"recomputed row group 2: {checkpoint_path(out, 2)} line 2: not UTF-8" in err
    assert f"recomputed row group 4: {checkpoint_path(out, 4)} line " in err and "cut off" in err
    assert "Traceback" not in err
    reference = run_reference(parse_recipe(recipe_text()), tmp_path / "ref", sleep=no_sleep)
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["output_hash"] == reference.output_hash


def test_values_with_line_separators_read_back_on_resume(tmp_path: Path) -> None:
    recipe = make_recipe(function="with_line_separators")
    reference = run_reference(recipe, tmp_path / "ref", sleep=no_sleep)
    out = tmp_path / "out"
    first = run_recipe(recipe, out, sleep=no_sleep)
    assert "\u2028".encode() in (out / "dataset.jsonl").read_bytes()  # written raw: the dataset bytes are unchanged
    deleted(out, 3)
    resumed = run_recipe(recipe, out, sleep=no_sleep, resume=True)
    assert resumed.output_hash == first.output_hash == reference.output_hash
    assert not resumed.recomputed_row_groups and resumed.resumed_row_groups == GROUPS - 1


_REFERENCE_HASHES: dict[str, str] = {}


def reference_hash(recipe: Recipe) -> str:
    if recipe.recipe_hash not in _REFERENCE_HASHES:
        with tempfile.TemporaryDirectory() as out:
            _REFERENCE_HASHES[recipe.recipe_hash] = run_reference(recipe, Path(out), sleep=no_sleep).output_hash
    return _REFERENCE_HASHES[recipe.recipe_hash]


@settings(max_examples=12, deadline=None)
@given(
    seed=st.sampled_from([11, 12]),
    fatal_rate=st.sampled_from([0.0, 0.3]),
    pre_filter=st.booleans(),
    damage=st.lists(st.sampled_from(["keep", "deleted", *DAMAGE]), min_size=GROUPS, max_size=GROUPS),
    workers=st.integers(1, 3),
)
def test_rows_written_plus_dropped_is_records_over_fresh_and_resumed_runs(
    seed: int, fatal_rate: float, pre_filter: bool, damage: list[str], workers: int
) -> None:
    recipe = make_recipe(seed=seed, fatal_rate=fatal_rate, pre_filter=pre_filter)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        first = run_recipe(recipe, out, sleep=no_sleep, workers=workers)
        assert_rows_add_up(recipe, out, first)
        for row_group, what in enumerate(damage):
            if what in DAMAGE and row_group != 0:  # row group 0 is the source of the copies
                DAMAGE[what](out, row_group)
        for row_group, what in enumerate(damage):
            if what == "deleted":
                deleted(out, row_group)
        resumed = run_recipe(recipe, out, sleep=no_sleep, resume=True, workers=workers)
        assert_rows_add_up(recipe, out, resumed)
        assert resumed.output_hash == first.output_hash == reference_hash(recipe)
        again = run_recipe(recipe, out, sleep=no_sleep, resume=True, workers=workers)  # everything checkpointed now
        assert again.counters["tasks_submitted"] == 0 and not again.recomputed_row_groups
        assert_rows_add_up(recipe, out, again)


# -- early shutdown --------------------------------------------------------------------------------------------


def test_error_rate_over_the_limit_shuts_down_early(tmp_path: Path) -> None:
    recipe = make_recipe(fatal_rate=0.9, run_extra="error_rate_shutdown = 0.5\nerror_rate_min_window = 10")
    reference = run_reference(recipe, tmp_path / "ref", sleep=no_sleep)
    result = run_recipe(recipe, tmp_path / "out", sleep=no_sleep, workers=2)
    assert_healthy(result)
    assert result.early_shutdown and not result.cancelled
    assert result.counters["tasks_finished"] >= 10
    assert result.row_groups_checkpointed < GROUPS
    written = checkpoints(tmp_path / "out")
    assert len(written) == result.row_groups_checkpointed
    reference_files = checkpoints(tmp_path / "ref")
    assert all(data == reference_files[name] for name, data in written.items())  # complete groups are exact
    report = json.loads((tmp_path / "out" / "run.json").read_text(encoding="utf-8"))
    assert report["early_shutdown"]["error_rate"] > 0.5
    assert "error_rate_shutdown = 0.5" in report["early_shutdown"]["reason"]
    assert result.output_hash != reference.output_hash  # partial output


def test_error_rate_under_the_limit_runs_to_the_end(tmp_path: Path) -> None:
    recipe = make_recipe(fatal_rate=0.1, run_extra="error_rate_shutdown = 0.5\nerror_rate_min_window = 10")
    result = run_recipe(recipe, tmp_path, sleep=no_sleep)
    assert not result.early_shutdown and result.row_groups_checkpointed == GROUPS
    assert "early_shutdown" not in json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))


def test_cli_early_shutdown_prints_one_line_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "recipe.toml"
    path.write_text(
        recipe_text(fatal_rate=0.9, run_extra="error_rate_shutdown = 0.5\nerror_rate_min_window = 10"), encoding="utf-8"
    )
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("threadsched: early shutdown: error rate ")


# -- cancellation ----------------------------------------------------------------------------------------------


def test_cancel_event_stops_gracefully_and_checkpoints_complete_row_groups(tmp_path: Path) -> None:
    recipe = make_recipe(function="cancel_after_calls", fatal_rate=0.1)
    reference = run_reference(recipe, tmp_path / "ref", sleep=no_sleep)  # also calls the column: reset after
    reset_calls()
    result = run_recipe(recipe, tmp_path / "out", sleep=no_sleep, workers=1, cancel=CANCEL)
    assert_healthy(result)
    assert result.cancelled and not result.early_shutdown
    assert 1 <= result.row_groups_checkpointed < GROUPS
    written = checkpoints(tmp_path / "out")
    reference_files = checkpoints(tmp_path / "ref")
    assert len(written) == result.row_groups_checkpointed
    assert all(data == reference_files[name] for name, data in written.items())
    assert json.loads((tmp_path / "out" / "run.json").read_text(encoding="utf-8"))["cancelled"] == {"reason": "cancelled"}
    CANCEL.clear()
    resumed = run_recipe(recipe, tmp_path / "out", sleep=no_sleep, resume=True, cancel=threading.Event())
    assert resumed.output_hash == reference.output_hash


def test_cli_ctrl_c_cancels_gracefully_and_exits_130(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "recipe.toml"
    path.write_text(recipe_text(records=400, function="sigint_after_calls"), encoding="utf-8")
    before = signal.getsignal(signal.SIGINT)
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--workers", "1", "--quiet"]) == 130
    assert signal.getsignal(signal.SIGINT) is before
    assert "cancelled (Ctrl-C)" in capsys.readouterr().err
    written = checkpoints(tmp_path / "out")
    assert len(written) < math.ceil(400 / 7)
    reference = checkpoints(
        run_reference(parse_recipe(path.read_text(encoding="utf-8")), tmp_path / "ref", sleep=no_sleep).out_dir
    )
    assert all(data == reference[name] for name, data in written.items())
