"""The row store (runner.rows): RowStore and ancestors; open/inputs/write/drop/close, copies, and atomic batch writes."""

from __future__ import annotations

import threading

import pytest
from support import GENEROUS, small_recipe

from threadsched.engine.runner.rows import RowStore, ancestors

ANCESTORS = {
    "topic": frozenset(),
    "question": frozenset({"topic"}),
    "answer": frozenset({"topic", "question"}),
    "label": frozenset({"topic", "question", "answer"}),
}


def filled_store() -> RowStore:
    store = RowStore(ANCESTORS)
    assert store.open(0, range(3))
    assert store.write("topic", 0, None, {0: "t0", 1: "t1", 2: "t2"}) == 3
    assert store.write("question", 0, 1, "q1") == 1
    return store


def test_ancestors_are_transitive_dependencies() -> None:
    assert ancestors(small_recipe()) == ANCESTORS


def test_open_twice_returns_false_and_keeps_the_values() -> None:
    store = filled_store()
    assert store.open(0, range(5)) is False
    assert store.inputs("answer", 0, None) == [(0, {"topic": "t0"}), (1, {"topic": "t1", "question": "q1"}), (2, {"topic": "t2"})]
    assert store.open(1, [7, 8]) is True


def test_inputs_hold_only_ancestor_columns() -> None:
    store = filled_store()
    store.write("label", 0, 1, "l1")
    assert store.inputs("topic", 0, 1) == [(1, {})]
    assert store.inputs("question", 0, 1) == [(1, {"topic": "t1"})]  # not its own value, nor descendants'
    assert store.inputs("answer", 0, 1) == [(1, {"topic": "t1", "question": "q1"})]
    assert store.inputs("question", 0, None) == [(0, {"topic": "t0"}), (1, {"topic": "t1"}), (2, {"topic": "t2"})]


def test_inputs_and_copies_are_copies() -> None:
    store = filled_store()
    rows = store.inputs("answer", 0, None)
    for _, values in rows:
        values["topic"] = "vandal"
        values["extra"] = 1
    rows.clear()
    copies = store.copies(0, [1])
    copies[0][1]["question"] = "vandal"
    assert store.inputs("answer", 0, 1) == [(1, {"topic": "t1", "question": "q1"})]
    assert store.copies(0, [1]) == [(1, {"topic": "t1", "question": "q1"})]


def test_writes_skip_dropped_rows_and_count_the_rest() -> None:
    store = filled_store()
    assert store.drop([(0, 2)]) == [{"topic": "t2"}]
    assert store.write("question", 0, 2, "q2") == 0
    assert store.write("question", 0, None, {0: "q0", 2: "q2", 9: "q9"}) == 1  # row 2 dropped, 9 not in the group
    assert store.write("answer", 0, None, {}) == 0
    assert store.copies(0, [0, 1]) == [(0, {"topic": "t0", "question": "q0"}), (1, {"topic": "t1", "question": "q1"})]


def test_drop_returns_previous_values_or_none() -> None:
    store = filled_store()
    assert store.drop([(0, 1), (0, 1), (5, 0)]) == [{"topic": "t1", "question": "q1"}, None, None]
    store.open(1, [7])
    assert store.drop([(1, 7)]) == [{}]  # open but no value yet
    assert [row for row, _ in store.inputs("question", 0, None)] == [0, 2]


def test_close_forgets_the_group() -> None:
    store = filled_store()
    store.close(0)
    store.close(0)  # closing twice (or a group never opened) is harmless
    store.close(42)
    assert store.copies(0, []) == []
    assert store.drop([(0, 0)]) == [None]
    assert store.open(0, range(2)) is True  # a fresh, empty group again
    assert store.inputs("label", 0, None) == [(0, {}), (1, {})]


class ReadProgress:
    """Readers count their reads; after a write the writer waits (no sleeps) for ``readers + 1`` more reads:
    each reader has at most one read in flight, so at least one of them started after the write. Every
    write is therefore seen by some read, and reads overlap the writes instead of all coming at the end."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.reads = 0

    def read_done(self) -> None:
        with self._changed:
            self.reads += 1
            self._changed.notify_all()

    def count(self) -> int:
        with self._changed:
            return self.reads

    def wait_past(self, reads: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.reads > reads, GENEROUS)


@pytest.mark.usefixtures("fast_switching")
def test_concurrent_readers_never_see_half_a_batch() -> None:
    """One writer writes batches (every row of a column per call); readers of the whole group only ever see
    whole batches: every row has the same columns, a prefix of the writes, with the written values."""
    batches, rows, readers = 80, 32, 3
    columns = [f"c{index:02d}" for index in range(batches)]
    store = RowStore({**{c: frozenset() for c in columns}, "reader": frozenset(columns)})
    store.open(0, range(rows))
    start = threading.Barrier(readers + 1, timeout=GENEROUS)
    done = threading.Event()
    progress = ReadProgress()
    problems: list[str] = []
    prefixes: set[int] = set()

    def check(snapshot: list[tuple[int, dict[str, object]]]) -> None:
        seen = {tuple(sorted(values)) for _, values in snapshot}
        if len(seen) != 1:
            problems.append(f"torn batch: {sorted(map(len, seen))}")
            return
        present = next(iter(seen))
        prefixes.add(len(present))
        if list(present) != columns[: len(present)]:
            problems.append(f"not a prefix of the writes: {present}")
        for index, values in snapshot:
            if any(values.get(c) != (c, index) for c in present):
                problems.append(f"wrong value in row {index}: {values}")

    def read() -> None:
        start.wait()
        while True:
            finished = done.is_set()
            check(store.inputs("reader", 0, None))
            progress.read_done()
            if finished:
                return

    threads = [threading.Thread(target=read) for _ in range(readers)]
    for thread in threads:
        thread.start()
    start.wait()
    for column in columns:
        assert store.write(column, 0, None, {index: (column, index) for index in range(rows)}) == rows
        progress.wait_past(progress.count() + readers)
    done.set()
    for thread in threads:
        thread.join(GENEROUS)
    assert not any(thread.is_alive() for thread in threads)
    assert problems == []
    assert prefixes >= set(range(1, batches + 1))  # every batch was read before the next was written
    final = store.inputs("reader", 0, None)
    assert all(values == {c: (c, index) for c in columns} for index, values in final)


@pytest.mark.usefixtures("fast_switching")
def test_concurrent_cell_writes_are_seen_whole_or_not_at_all() -> None:
    """Cell writes replace one value under the lock: a reader sees each row's old or new value (never a value
    of another row, never going back), and every write made before its read."""
    rows, rounds = 16, 60
    store = RowStore({"v": frozenset(), "reader": frozenset({"v"})})
    store.open(0, range(rows))
    store.write("v", 0, None, {index: (0, index) for index in range(rows)})
    start = threading.Barrier(2, timeout=GENEROUS)
    done = threading.Event()
    progress = ReadProgress()
    problems: list[object] = []
    whole_rounds: set[int] = set()  # rounds a read saw on every row

    def read() -> None:
        start.wait()
        last = [0] * rows
        while True:
            finished = done.is_set()
            for index, values in store.inputs("reader", 0, None):
                value = values.get("v")
                if not isinstance(value, tuple) or value[1] != index or value[0] < last[index]:
                    problems.append((index, values))
                    continue
                last[index] = value[0]
            if min(last) == max(last):
                whole_rounds.add(last[0])
            progress.read_done()
            if finished:
                return

    reader = threading.Thread(target=read)
    reader.start()
    start.wait()
    for generation in range(1, rounds + 1):
        for index in range(rows):
            assert store.write("v", 0, index, (generation, index)) == 1
        progress.wait_past(progress.count() + 1)
    done.set()
    reader.join(GENEROUS)
    assert not reader.is_alive() and problems == []
    assert whole_rounds >= set(range(1, rounds + 1))  # every round was read before the next began
    assert store.inputs("reader", 0, None) == [(index, {"v": (rounds, index)}) for index in range(rows)]
