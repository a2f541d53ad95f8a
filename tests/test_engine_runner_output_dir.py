"""The output directory (runner.output_dir): a run deletes only what a run wrote (the manifest), refuses a directory
that is not a run's unless forced, never deletes or writes through a symlink out of the directory, and a recipe's
``[run] output`` resolves beside the recipe."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support import assert_healthy, no_sleep, small_recipe

from threadsched.engine import RecipeError
from threadsched.engine.runner import OutputDirError, record_files, resolve_output, run_recipe, run_reference
from threadsched.engine.runner.output_dir import MANIFEST, OWNABLE, OutputDirectory

RECIPE = small_recipe(records=14)  # two row groups
USER_FILES = {"report.md": b"my notes", "timeline.png": b"\x89PNG mine", "events.jsonl.bak": b"{}\n"}


def plant(directory: Path, files: dict[str, bytes]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)


def untouched(directory: Path, files: dict[str, bytes]) -> bool:
    return all((directory / name).read_bytes() == data for name, data in files.items())


def manifest(directory: Path) -> set[str]:
    document = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    assert document["format"] == "threadsched.output/1"
    return set(document["files"])


def on_disk(directory: Path) -> set[str]:
    return {path.relative_to(directory).as_posix() for path in directory.rglob("*") if path.is_file()} - {MANIFEST}


@pytest.mark.parametrize("runner", ["scheduled", "reference"])
def test_a_directory_that_holds_files_no_run_wrote_is_refused(tmp_path: Path, runner: str) -> None:
    plant(tmp_path, USER_FILES)
    with pytest.raises(OutputDirError) as caught:
        if runner == "scheduled":
            run_recipe(RECIPE, tmp_path, sleep=no_sleep)
        else:
            run_reference(RECIPE, tmp_path, sleep=no_sleep)
    message = str(caught.value)
    assert isinstance(caught.value, RecipeError) and "\n" not in message
    assert message.startswith(f"{tmp_path}: refusing to write into a directory that holds files no run wrote")
    assert "events.jsonl.bak, report.md, timeline.png" in message and "--force" in message
    assert untouched(tmp_path, USER_FILES) and on_disk(tmp_path) == set(USER_FILES)


def test_force_writes_beside_foreign_files_and_leaves_them_alone(tmp_path: Path) -> None:
    plant(tmp_path, USER_FILES)
    result = run_recipe(RECIPE, tmp_path, sleep=no_sleep, force=True, event_log=True)
    assert_healthy(result)
    assert untouched(tmp_path, USER_FILES)
    assert manifest(tmp_path).isdisjoint(USER_FILES)
    again = run_recipe(RECIPE, tmp_path, sleep=no_sleep)  # a run's directory now: no force needed
    assert again.output_hash == result.output_hash and untouched(tmp_path, USER_FILES)


def test_a_run_owns_exactly_what_it_wrote_and_a_fresh_run_deletes_only_that(tmp_path: Path) -> None:
    run_recipe(small_recipe(records=30), tmp_path, sleep=no_sleep, event_log=True)  # five row groups
    record_files(tmp_path, ["report.md"])
    (tmp_path / "report.md").write_text("the report", encoding="utf-8")
    assert on_disk(tmp_path) <= manifest(tmp_path)  # lock file and all: nothing the run wrote is unlisted
    assert all(OWNABLE.fullmatch(name) for name in manifest(tmp_path))
    plant(tmp_path, {"notes.txt": b"mine", "row_groups/keep.txt": b"mine too"})
    run_recipe(RECIPE, tmp_path, sleep=no_sleep)  # two row groups, no events
    assert not (tmp_path / "events.jsonl").exists() and not (tmp_path / "report.md").exists()  # stale evidence
    assert sorted(path.name for path in (tmp_path / "row_groups").glob("rg-*")) == ["rg-00000.jsonl", "rg-00001.jsonl"]
    assert untouched(tmp_path, {"notes.txt": b"mine", "row_groups/keep.txt": b"mine too"})
    assert on_disk(tmp_path) - manifest(tmp_path) == {"notes.txt", "row_groups/keep.txt"}


def test_leftover_temp_files_of_owned_names_are_removed_and_others_kept(tmp_path: Path) -> None:
    run_recipe(RECIPE, tmp_path, sleep=no_sleep)
    plant(tmp_path, {"row_groups/.rg-00001.jsonl.k2j4h.tmp": b"partial", ".dataset.jsonl.x1.tmp": b"partial"})
    plant(tmp_path, {".notes.txt.x1.tmp": b"an editor's"})
    run_recipe(RECIPE, tmp_path, sleep=no_sleep, resume=True)
    assert not list((tmp_path / "row_groups").glob("*.tmp")) and not (tmp_path / ".dataset.jsonl.x1.tmp").exists()
    assert (tmp_path / ".notes.txt.x1.tmp").read_bytes() == b"an editor's"


def test_an_unlisted_file_at_a_name_the_run_writes_is_refused_unless_forced(tmp_path: Path) -> None:
    run_recipe(RECIPE, tmp_path, sleep=no_sleep)
    plant(tmp_path, {"events.jsonl.3": b"someone's"})
    with pytest.raises(OutputDirError, match=r"refusing to overwrite files no run wrote: events\.jsonl\.3"):
        run_recipe(RECIPE, tmp_path, sleep=no_sleep, event_log=True)
    assert (tmp_path / "events.jsonl.3").read_bytes() == b"someone's"
    run_recipe(RECIPE, tmp_path, sleep=no_sleep, event_log=True, force=True)  # replaced: the run writes that name
    assert not (tmp_path / "events.jsonl.3").exists()


@pytest.mark.parametrize("entry", ["../victim.txt", "notes.txt", "/etc/passwd", "row_groups/../../victim.txt"])
def test_a_manifest_listing_what_no_run_writes_is_refused(tmp_path: Path, entry: str) -> None:
    out = tmp_path / "out"
    plant(tmp_path, {"victim.txt": b"precious"})
    plant(out, {"notes.txt": b"precious", MANIFEST: json.dumps({"format": "threadsched.output/1", "files": [entry]}).encode()})
    with pytest.raises(OutputDirError, match=rf"{MANIFEST} lists '{entry}', which is not a file a run writes"):
        run_recipe(RECIPE, out, sleep=no_sleep)
    run_recipe(RECIPE, out, sleep=no_sleep, force=True)  # forced: a manifest it cannot trust owns nothing
    assert (tmp_path / "victim.txt").read_bytes() == (out / "notes.txt").read_bytes() == b"precious"


def test_a_manifest_of_another_format_is_not_a_runs(tmp_path: Path) -> None:
    plant(tmp_path, {MANIFEST: b'{"files": ["dataset.jsonl"]}', "dataset.jsonl": b"mine"})
    with pytest.raises(OutputDirError, match=r"is not a threadsched output manifest"):
        run_recipe(RECIPE, tmp_path, sleep=no_sleep)
    assert (tmp_path / "dataset.jsonl").read_bytes() == b"mine"


def test_nothing_is_deleted_or_written_through_a_symlink_out_of_the_directory(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    run_recipe(RECIPE, out, sleep=no_sleep)
    plant(elsewhere, {"rg-00000.jsonl": b"someone else's", "rg-00001.jsonl": b"someone else's"})
    os.rename(out / "row_groups", tmp_path / "old_row_groups")
    (out / "row_groups").symlink_to(elsewhere, target_is_directory=True)
    for resume in (False, True):
        with pytest.raises(OutputDirError, match=r"row_groups/rg-00000\.jsonl: .* leads out of the output directory"):
            run_recipe(RECIPE, out, sleep=no_sleep, resume=resume)
    assert untouched(elsewhere, {"rg-00000.jsonl": b"someone else's", "rg-00001.jsonl": b"someone else's"})


def test_a_listed_name_that_is_a_symlink_is_replaced_not_followed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_recipe(RECIPE, out, sleep=no_sleep, event_log=True)
    plant(tmp_path, {"victim.txt": b"precious"})
    for name in ("dataset.jsonl", "events.jsonl"):
        (out / name).unlink()
        (out / name).symlink_to(tmp_path / "victim.txt")
    with pytest.raises(OutputDirError, match=r"dataset\.jsonl is a symlink out of the output directory \(to "):
        run_recipe(RECIPE, out, sleep=no_sleep, resume=True, event_log=True)  # the event log would append through one
    result = run_recipe(RECIPE, out, sleep=no_sleep, event_log=True)  # a fresh run deletes the links first
    assert (tmp_path / "victim.txt").read_bytes() == b"precious"
    assert not (out / "dataset.jsonl").is_symlink() and not (out / "events.jsonl").is_symlink() and result.output_hash


def test_an_output_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    plant(tmp_path, {"out": b"a file"})
    with pytest.raises(OutputDirError, match=r"exists and is not a directory"):
        run_recipe(RECIPE, tmp_path / "out", sleep=no_sleep)


def test_a_fresh_run_lists_its_files_before_it_deletes_or_writes(tmp_path: Path) -> None:
    run_recipe(small_recipe(records=30), tmp_path, sleep=no_sleep)
    directory = OutputDirectory.open(tmp_path, force=False)
    owned = set(directory.owned)
    directory.fresh(["run.json"])
    assert manifest(tmp_path) == {"run.json"} and not (tmp_path / "row_groups" / "rg-00004.jsonl").exists()
    assert owned >= {"run.json", "dataset.jsonl", "row_groups/rg-00004.jsonl"}


# -- resolve_output ---------------------------------------------------------------------------------------


def test_output_resolves_beside_the_recipe_file(tmp_path: Path) -> None:
    recipe_file = tmp_path / "recipes" / "r.toml"
    assert resolve_output("out", recipe_file, cwd=tmp_path / "cwd") == tmp_path / "recipes" / "out"
    assert resolve_output("a/b", recipe_file, cwd=tmp_path) == tmp_path / "recipes" / "a" / "b"
    assert resolve_output("threadsched-demo", None, cwd=tmp_path) == tmp_path / "threadsched-demo"  # built-in


def test_output_may_not_be_the_recipes_directory_or_above_it_through_a_symlink(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "here").symlink_to(recipes, target_is_directory=True)
    (recipes / "up").symlink_to(tmp_path, target_is_directory=True)
    for output in ("here", "up"):
        with pytest.raises(RecipeError, match=r"run\.output: .*the recipe's own directory or one above it") as caught:
            resolve_output(output, recipes / "r.toml", cwd=tmp_path / "elsewhere")
        assert str(caught.value).startswith(f"{recipes / 'r.toml'}: run.output: ")


def test_output_may_not_be_above_the_working_directory(tmp_path: Path) -> None:
    cwd = tmp_path / "project" / "deep"
    cwd.mkdir(parents=True)
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "project").symlink_to(tmp_path / "project", target_is_directory=True)
    with pytest.raises(RecipeError, match=r"a directory above the working directory"):
        resolve_output("project", tmp_path / "recipes" / "r.toml", cwd=cwd)
    assert resolve_output("project/deep", tmp_path / "recipes" / "r.toml", cwd=cwd)  # the working directory itself
