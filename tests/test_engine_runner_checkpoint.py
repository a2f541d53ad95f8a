"""The checkpoint format (runner.checkpoint): what OutputWriter writes reads back exactly, for every string, and
read_checkpoint names the file and the line of every kind of damage instead of trusting it."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from support import small_recipe

from threadsched.engine.runner.checkpoint import CHECKPOINT_FORMAT, CheckpointError, encode_checkpoint, read_checkpoint
from threadsched.engine.runner.output import OutputWriter, row_group_range, row_line

RECIPE = small_recipe(records=20, buffer_size=7)  # row groups 0..6, 7..13, 14..19
ROW_GROUP = 1
SPAN = row_group_range(RECIPE, ROW_GROUP)
LINE_BREAKERS = "\u2028\u2029\u0085\r\x0b\x0c\x1c\x1d\x1e\n"  # all that str.splitlines() splits on

# Every string hypothesis can draw (no surrogates: they are not text a run can hold), as column names, values
# and drop reasons.
texts = st.text()
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)
rows_of_a_group = st.lists(st.booleans(), min_size=len(SPAN), max_size=len(SPAN)).flatmap(
    lambda keep: st.tuples(
        st.lists(
            st.dictionaries(texts.filter(lambda name: name != "_row"), values, max_size=4), min_size=sum(keep), max_size=sum(keep)
        ),
        st.lists(texts, min_size=len(keep) - sum(keep), max_size=len(keep) - sum(keep)),
        st.just(keep),
    )
)


def write(out: Path, rows: list[tuple[int, Mapping[str, object]]], dropped: Mapping[int, str]) -> Path:
    writer = OutputWriter(out, RECIPE)
    writer.write_row_group(ROW_GROUP, rows, dropped)
    return writer.row_group_path(ROW_GROUP)


def read(path: Path, **overrides: object) -> tuple[object, bytes]:
    expected: dict[str, object] = {"recipe_hash": RECIPE.recipe_hash, "row_group": ROW_GROUP, "rows": SPAN, **overrides}
    return read_checkpoint(path, **expected)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(group=rows_of_a_group)
@example(group=([{"answer": "one\u2028two\u2029three\u0085four\r\nfive"}] * 7, [], [True] * 7))
@example(group=([], [f"reason{LINE_BREAKERS}"] * 7, [False] * 7))
def test_every_string_round_trips_through_the_checkpoint_writer_and_reader(
    group: tuple[list[dict[str, object]], list[str], list[bool]],
) -> None:
    cells, reasons, keep = group
    kept = [row for row, flag in zip(SPAN, keep, strict=True) if flag]
    rows = list(zip(kept, cells, strict=True))
    dropped = dict(zip([row for row in SPAN if row not in kept], reasons, strict=True))
    with tempfile.TemporaryDirectory() as out:
        checkpoint, body = read(write(Path(out), rows, dropped))
    assert checkpoint.rows == tuple(kept)
    assert dict(checkpoint.dropped) == dropped
    assert body == "".join(row_line(index, cell) + "\n" for index, cell in rows).encode("utf-8")  # the dataset's lines
    records = [json.loads(line) for line in body.split(b"\n")[:-1]]
    assert records == [{**json.loads(json.dumps(cell)), "_row": index} for index, cell in rows]


def test_the_header_names_row_group_rows_drops_and_recipe_in_ascii(tmp_path: Path) -> None:
    path = write(
        tmp_path, [(7, {"a": "x\u2028"}), (9, {"a": "y"})], {8: "filter a\u2029", **{row: "gone" for row in range(10, 14)}}
    )
    header_line, _, body = path.read_bytes().partition(b"\n")
    header = json.loads(header_line)
    assert header_line.isascii()
    assert header["checkpoint"] == CHECKPOINT_FORMAT
    assert (header["row_group"], header["recipe_hash"], header["rows"]) == (ROW_GROUP, RECIPE.recipe_hash, [7, 9])
    assert header["dropped"]["8"] == "filter a\u2029" and sorted(header["dropped"], key=int) == ["8", "10", "11", "12", "13"]
    assert body.count(b"\n") == 2 and "\u2028".encode() in body


def test_the_writer_refuses_rows_that_do_not_cover_the_row_group_exactly(tmp_path: Path) -> None:
    writer = OutputWriter(tmp_path, RECIPE)
    with pytest.raises(ValueError, match=r"row group 1 \(rows 7\.\.13\)"):
        writer.write_row_group(ROW_GROUP, [(7, {})], {8: "x"})  # rows 9..13 neither written nor dropped
    with pytest.raises(ValueError, match=r"not each row once"):
        writer.write_row_group(ROW_GROUP, [(row, {}) for row in SPAN], {7: "also dropped"})
    assert not writer.row_group_path(ROW_GROUP).exists()


# -- damage: each kind is found, and named by file and line -------------------------------------------------


def full_group(tmp_path: Path) -> Path:
    return write(tmp_path, [(row, {"answer": f"writer: answer {row}"}) for row in SPAN if row != 10], {10: "filter"})


def cut_in_half(data: bytes) -> bytes:
    return data[: len(data) - 20]


def not_utf8(data: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[2] = lines[2][:5] + b"\xff\xfe" + lines[2][5:]
    return b"\n".join(lines)


def not_json(data: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[3] = lines[3][: len(lines[3]) // 2]
    return b"\n".join(lines)


def edited_value(data: bytes) -> bytes:
    return data.replace(b"answer 12", b"answer 99")


def last_line_lost(data: bytes) -> bytes:
    lines = data.split(b"\n")
    del lines[-2]
    return b"\n".join(lines)


def lines_swapped(data: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[2], lines[3] = lines[3], lines[2]
    return b"\n".join(lines)


def no_header(data: bytes) -> bytes:
    return data.partition(b"\n")[2]  # the format before checkpoints had headers


def header_edited(data: bytes) -> bytes:
    return data.replace(b'"filter"', b'"kept"', 1)


def emptied(data: bytes) -> bytes:
    return b""


DAMAGE: list[tuple[Callable[[bytes], bytes], int | None, str]] = [
    (cut_in_half, 7, r"cut off \(the file does not end with a newline\)"),
    (not_utf8, 3, r"not UTF-8 \(byte 0xff at byte 6\)"),
    (not_json, 4, r"not JSON \("),
    (edited_value, None, r"checksum mismatch"),
    (last_line_lost, 7, r"the header lists 6 rows, the file holds 5"),
    (lines_swapped, 3, r"holds row 9, the header lists row 8 here"),
    (no_header, 1, rf"not a {CHECKPOINT_FORMAT} header"),
    (header_edited, None, r"checksum mismatch"),
    (emptied, 1, r"empty file"),
]


@pytest.mark.parametrize(("damage", "line", "reason"), DAMAGE, ids=[damage.__name__ for damage, _, _ in DAMAGE])
def test_damage_is_a_checkpoint_error_naming_the_file_and_the_line(
    tmp_path: Path, damage: Callable[[bytes], bytes], line: int | None, reason: str
) -> None:
    path = full_group(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=reason) as caught:
        read(path)
    assert caught.value.path == path and caught.value.line == line
    assert str(caught.value).startswith(f"{path} line {line}: " if line is not None else f"{path}: ")
    assert "\n" not in str(caught.value)


def test_a_checkpoint_of_another_row_group_or_recipe_is_not_trusted(tmp_path: Path) -> None:
    path = full_group(tmp_path)
    with pytest.raises(CheckpointError, match=r"line 1: belongs to row group 1, not 2 \(copied from rg-00001\.jsonl\?\)"):
        read(path, row_group=2, rows=row_group_range(RECIPE, 2))
    with pytest.raises(CheckpointError, match=rf"line 1: written by recipe {RECIPE.recipe_hash}, this recipe is feed"):
        read(path, recipe_hash="feed")


def test_a_header_that_does_not_cover_its_row_group_is_not_trusted(tmp_path: Path) -> None:
    body = "".join(row_line(row, {}) + "\n" for row in (7, 8)).encode()
    path = tmp_path / "rg-00001.jsonl"
    path.write_bytes(encode_checkpoint(RECIPE.recipe_hash, ROW_GROUP, [7, 8], {9: "x"}, body))  # rows 10..13 missing
    with pytest.raises(CheckpointError, match=r"line 1: kept and dropped rows do not cover rows 7\.\.13 exactly once"):
        read(path)
