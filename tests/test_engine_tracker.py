from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from threadsched.engine.tracker import ColumnNode, CompletionTracker, DropResult, Outcome, TaskKey, TrackerError


def make(columns: list[ColumnNode], records: int, buffer_size: int, in_flight: int, pre: bool = False) -> CompletionTracker:
    return CompletionTracker(
        columns, records=records, buffer_size=buffer_size, max_row_groups_in_flight=in_flight, has_pre_batch=pre
    )


def run_one(tracker: CompletionTracker, key: TaskKey) -> Outcome:
    tracker.mark_enqueued([key])
    assert tracker.mark_started(key)
    return tracker.mark_complete(key)


@dataclass
class Sim:
    """A simulated engine: random acknowledgement, start and completion order, failures and drops."""

    columns: list[ColumnNode]
    records: int
    buffer_size: int
    in_flight: int
    pre: bool = False
    seed: int = 0
    p_retry: float = 0.0
    p_fatal: float = 0.0
    p_drop: float = 0.0
    p_pre_drop: float = 0.0
    p_post_drop: float = 0.0
    max_salvage: int = 2
    rng: random.Random = field(init=False)
    tracker: CompletionTracker = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.tracker = make(self.columns, self.records, self.buffer_size, self.in_flight, self.pre)
        self.by_name = {column.name: column for column in self.columns}
        self.completed: Counter[TaskKey] = Counter()
        self.queued: set[TaskKey] = set()
        self.running: set[TaskKey] = set()
        self.dropped: dict[tuple[int, int], str] = {}
        self.pre_done: set[int] = set()
        self.checkpointed: list[int] = []
        self.max_open = 0
        self.discarded = 0

    def rows(self, g: int) -> range:
        return range(g * self.buffer_size, min((g + 1) * self.buffer_size, self.records))

    def alive(self, g: int) -> list[int]:
        return [r for r in self.rows(g) if (g, r) not in self.dropped]

    def is_dead(self, key: TaskKey) -> bool:
        if key.row is None:
            return not self.alive(key.row_group)
        return (key.row_group, key.row) in self.dropped

    def deps_met(self, key: TaskKey) -> bool:
        column = self.by_name[key.column]
        if column.dependencies and self.pre and key.row_group not in self.pre_done:
            return False
        for name in column.dependencies:
            dep = self.by_name[name]
            if not dep.dependencies or dep.mode == "batch":
                needed = [TaskKey(name, key.row_group, None, "batch")]
            elif key.row is not None:
                needed = [TaskKey(name, key.row_group, key.row, "cell")]
            else:
                needed = [TaskKey(name, key.row_group, r, "cell") for r in self.alive(key.row_group)]
            if not all(self.completed[k] == 1 for k in needed):
                return False
        return True

    def apply_drop(self, result: DropResult, reason: str) -> None:
        stale = set(result.stale)
        for g, r in result.rows:
            assert (g, r) not in self.dropped
            self.dropped[(g, r)] = reason
        # exactly the queued-but-not-started tasks of the dropped rows go stale
        assert stale == {k for k in self.queued if self.is_dead(k)}
        self.queued -= stale
        self.discarded += len(stale)

    def finish(self, key: TaskKey) -> None:
        self.running.discard(key)
        dead = self.is_dead(key)
        roll = self.rng.random()
        if roll < self.p_fatal:
            result = self.tracker.mark_failed_permanent(key, f"fatal {key.task_id}")
            if dead:
                assert result == DropResult()
            else:
                self.apply_drop(result, f"fatal {key.task_id}")
        elif roll < self.p_fatal + self.p_retry:
            assert self.tracker.mark_failed_retryable(key) is (Outcome.DISCARDED if dead else Outcome.RECORDED)
        else:
            outcome = self.tracker.mark_complete(key)
            assert outcome is (Outcome.DISCARDED if dead else Outcome.RECORDED)
            if outcome is Outcome.RECORDED:
                self.completed[key] += 1
                assert self.completed[key] == 1

    def step_lifecycle(self) -> bool:
        progressed = False
        for g in self.tracker.pop_pre_batch_ready():
            progressed = True
            assert all(self.completed[TaskKey(c.name, g, None, "batch")] for c in self.columns if not c.dependencies)
            drops = [r for r in self.alive(g) if self.rng.random() < self.p_pre_drop]
            result = self.tracker.mark_pre_batch_done(g, drops, reason="pre")
            assert result.stale == ()
            self.apply_drop(result, "pre")
            self.pre_done.add(g)
        for g in self.tracker.pop_completed_row_groups():
            progressed = True
            self.check_group_complete(g)
            alive = self.alive(g)
            if alive and self.rng.random() < self.p_post_drop:
                self.apply_drop(self.tracker.drop_row(g, alive[0], "post"), "post")
            assert self.tracker.alive_rows(g) == tuple(self.alive(g))
            self.tracker.mark_checkpointed(g)
            self.checkpointed.append(g)
        return progressed

    def check_group_complete(self, g: int) -> None:
        alive = self.alive(g)
        for column in self.columns:
            cell = column.dependencies and column.mode == "cell"
            keys = [TaskKey(column.name, g, r, "cell") for r in alive] if cell else [TaskKey(column.name, g, None, "batch")]
            if alive:
                assert all(self.completed[k] == 1 for k in keys), (g, column)

    def run(self) -> Sim:
        tracker = self.tracker
        stalled = 0
        while not tracker.is_finished():
            open_groups = tracker.open_row_groups()
            assert len(open_groups) <= self.in_flight
            self.max_open = max(self.max_open, len(open_groups))
            progressed = self.step_lifecycle()
            frontier = tracker.ready_frontier()
            assert list(frontier) == sorted(frontier, key=lambda k: (k.row_group, self.order[k.column], k.row or -1))
            for key in frontier:
                assert self.deps_met(key), key
                assert not self.is_dead(key), key
                assert self.completed[key] == 0 and key not in self.queued and key not in self.running
            if frontier:
                accepted = [k for k in frontier if self.rng.random() < 0.6] or [frontier[0]]
                tracker.mark_enqueued(accepted)
                self.queued.update(accepted)
                assert set(tracker.ready_frontier()) == set(frontier) - set(accepted)
                progressed = True
            if self.queued or self.running:
                progressed = True
                roll = self.rng.random()
                if roll < self.p_drop:
                    candidates = [(g, r) for g in tracker.open_row_groups() for r in self.alive(g)]
                    if candidates:
                        g, r = self.rng.choice(candidates)
                        self.apply_drop(tracker.drop_row(g, r, "manual"), "manual")
                elif self.queued and (not self.running or roll < 0.55):
                    key = self.rng.choice(sorted(self.queued, key=lambda k: k.task_id))
                    self.queued.discard(key)
                    assert tracker.mark_started(key)
                    assert self.deps_met(key), key
                    self.running.add(key)
                else:
                    self.finish(self.rng.choice(sorted(self.running, key=lambda k: k.task_id)))
            elif not frontier and tracker.deferred():
                progressed = True
                if tracker.salvage_rounds < self.max_salvage:
                    assert set(tracker.salvage_round()) <= set(tracker.ready_frontier())
                else:
                    self.apply_drop(tracker.drop_deferred("salvage exhausted"), "salvage exhausted")
            stalled = 0 if progressed else stalled + 1
            assert stalled < 3, f"stalled: {tracker!r}"
        self.check_finished()
        return self

    @property
    def order(self) -> dict[str, int]:
        return {column.name: i for i, column in enumerate(self.columns)}

    def check_finished(self) -> None:
        groups = -(-self.records // self.buffer_size)
        assert sorted(self.checkpointed) == list(range(groups))
        for g in range(groups):
            self.check_group_complete(g)
        assert dict(self.tracker.dropped_rows()) == self.dropped
        stats = self.tracker.statistics()
        assert stats["in_flight"] == 0 and stats["ready"] == 0 and stats["deferred"] == 0
        assert stats["tracked_tasks"] == 0 and stats["row_groups_open"] == 0
        assert self.tracker.ready_frontier() == ()


ROOT = ColumnNode("topic")
SHAPES = {
    "single_root": [ROOT],
    "chain": [ROOT, ColumnNode("question", ("topic",)), ColumnNode("answer", ("question",))],
    "batch_downstream": [
        ROOT,
        ColumnNode("q", ("topic",)),
        ColumnNode("stats", ("q",), "batch"),
        ColumnNode("z", ("stats", "q")),
    ],
    "diamond": [
        ROOT,
        ColumnNode("left", ("topic",)),
        ColumnNode("right", ("topic",), "batch"),
        ColumnNode("join", ("left", "right")),
        ColumnNode("seed2"),
        ColumnNode("tail", ("join", "seed2"), "batch"),
    ],
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize(("records", "buffer_size"), [(1, 1), (10, 5), (23, 4), (7, 10)])
@pytest.mark.parametrize("in_flight", [1, 3])
def test_every_task_runs_once_after_its_dependencies(shape: str, records: int, buffer_size: int, in_flight: int) -> None:
    sim = Sim(SHAPES[shape], records, buffer_size, in_flight, seed=records * 31 + in_flight).run()
    groups = -(-records // buffer_size)
    assert sim.max_open == min(in_flight, groups)
    assert not sim.dropped
    per_group = sum(1 if not c.dependencies or c.mode == "batch" else 0 for c in SHAPES[shape])
    cells = sum(1 for c in SHAPES[shape] if c.dependencies and c.mode == "cell")
    assert sum(sim.completed.values()) == per_group * groups + cells * records


def test_row_groups_cover_the_records_and_open_up_to_the_limit() -> None:
    tracker = make([ROOT, ColumnNode("a", ("topic",))], records=10, buffer_size=4, in_flight=2)
    assert [k.task_id for k in tracker.ready_frontier()] == ["topic/rg0/r-/batch", "topic/rg1/r-/batch"]
    assert tracker.open_row_groups() == (0, 1)
    root = TaskKey("topic", 1, None, "batch")
    run_one(tracker, root)
    assert [k.row for k in tracker.ready_frontier()] == [None, 4, 5, 6, 7]
    assert "open=2/2" in repr(tracker) and "ready=5" in repr(tracker)


def test_empty_run_is_finished_at_once() -> None:
    tracker = make([ROOT], records=0, buffer_size=3, in_flight=1)
    assert tracker.ready_frontier() == () and tracker.is_finished()


def test_task_id_is_stable() -> None:
    assert TaskKey("answer", 3, 17, "cell").task_id == "answer/rg3/r17/cell"
    assert TaskKey("topic", 0, None, "batch").task_id == "topic/rg0/r-/batch"
    assert TaskKey("a", 1, 2, "cell") == TaskKey("a", 1, 2, "cell")
    assert len({TaskKey("a", 1, 2, "cell"), TaskKey("a", 1, 2, "cell")}) == 1


def test_mark_enqueued_acknowledges_exactly_the_given_tasks() -> None:
    tracker = make([ROOT], records=9, buffer_size=3, in_flight=3)
    first, second, third = tracker.ready_frontier()
    tracker.mark_enqueued([second])
    assert tracker.ready_frontier() == (first, third)
    with pytest.raises(TrackerError, match="cannot acknowledge task 'topic/rg1/r-/batch': it is acknowledged"):
        tracker.mark_enqueued([first, second])
    assert tracker.ready_frontier() == (first, third)  # the failed call changed nothing


def test_bad_calls_raise_tracker_errors() -> None:
    tracker = make([ROOT, ColumnNode("a", ("topic",))], records=4, buffer_size=2, in_flight=1)
    root = TaskKey("topic", 0, None, "batch")
    with pytest.raises(TrackerError, match="cannot complete task 'topic/rg0/r-/batch': it is ready but not acknowledged"):
        tracker.mark_complete(root)
    tracker.mark_enqueued([root])
    with pytest.raises(TrackerError, match="it is acknowledged but not started"):
        tracker.mark_complete(root)
    assert tracker.mark_started(root)
    with pytest.raises(TrackerError, match=r"cannot start .*: it is running"):
        tracker.mark_started(root)
    assert tracker.mark_complete(root) is Outcome.RECORDED
    with pytest.raises(TrackerError, match="it is already complete"):
        tracker.mark_complete(root)
    with pytest.raises(TrackerError, match="unknown task 'nope/rg0/r-/batch'"):
        tracker.mark_complete(TaskKey("nope", 0, None, "batch"))
    with pytest.raises(TrackerError, match="unknown task 'topic/rg1/r-/batch'"):
        tracker.mark_failed_retryable(TaskKey("topic", 1, None, "batch"))
    with pytest.raises(TrackerError, match="row group 1 is not open"):
        tracker.drop_row(1, 2, "x")
    with pytest.raises(TrackerError, match="row group 0 is not complete"):
        tracker.mark_checkpointed(0)
    with pytest.raises(TrackerError, match="pre-batch is not required"):
        tracker.mark_pre_batch_done(0)
    tracker.drop_row(0, 0, "x")
    with pytest.raises(TrackerError, match="row 0 of row group 0 is not alive"):
        tracker.drop_row(0, 0, "again")
    with pytest.raises(TrackerError, match="cannot acknowledge task 'a/rg0/r0/cell': it is dropped with its row"):
        tracker.mark_enqueued([TaskKey("a", 0, 0, "cell")])
    with pytest.raises(TrackerError, match="salvage_round needs a drained tracker: 1 ready"):
        tracker.salvage_round()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"records": -1}, "records must be an int >= 0, got -1"),
        ({"buffer_size": 0}, "buffer_size must be an int >= 1, got 0"),
        ({"max_row_groups_in_flight": True}, "max_row_groups_in_flight must be an int >= 1, got True"),
    ],
)
def test_invalid_sizes(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"records": 1, "buffer_size": 1, "max_row_groups_in_flight": 1} | kwargs
    with pytest.raises(ValueError, match=message):
        CompletionTracker([ROOT], **arguments)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ([], "at least one column"),
        ([ROOT, ROOT], "duplicate column 'topic'"),
        ([ColumnNode("a", ("b",)), ColumnNode("b")], "depends on 'b', which comes after it"),
        ([ColumnNode("a", ("zz",))], "depends on 'zz', which is unknown"),
        ([ROOT, ColumnNode("a", ("topic", "topic"))], "lists a dependency twice"),
        ([ColumnNode("a", ("a",))], "depends on itself"),
        ([ColumnNode("a", (), "row")], "mode must be 'cell' or 'batch'"),  # type: ignore[arg-type]
    ],
)
def test_invalid_columns(columns: list[ColumnNode], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(columns, 1, 1, 1)


def test_pre_batch_gates_downstream_and_dropped_rows_get_no_tasks() -> None:
    columns = [ROOT, ColumnNode("a", ("topic",)), ColumnNode("b", ("a",), "batch")]
    tracker = make(columns, records=4, buffer_size=4, in_flight=1, pre=True)
    root = TaskKey("topic", 0, None, "batch")
    run_one(tracker, root)
    assert tracker.ready_frontier() == ()
    assert tracker.pop_pre_batch_ready() == (0,)
    assert tracker.pop_pre_batch_ready() == ()
    tracker.mark_pre_batch_done(0, [1, 3], reason="filter")
    assert [k.row for k in tracker.ready_frontier()] == [0, 2]
    assert dict(tracker.dropped_rows()) == {(0, 1): "filter", (0, 3): "filter"}
    with pytest.raises(TrackerError, match="pre-batch is done"):
        tracker.mark_pre_batch_done(0)
    for key in tracker.ready_frontier():
        run_one(tracker, key)
    (batch,) = tracker.ready_frontier()
    assert batch == TaskKey("b", 0, None, "batch")
    run_one(tracker, batch)
    assert tracker.pop_completed_row_groups() == (0,) and tracker.alive_rows(0) == (0, 2)


def test_pre_batch_required_even_without_downstream_columns() -> None:
    tracker = make([ROOT], records=2, buffer_size=2, in_flight=1, pre=True)
    with pytest.raises(TrackerError, match="pre-batch is waiting for root tasks"):
        tracker.mark_pre_batch_done(0)
    run_one(tracker, TaskKey("topic", 0, None, "batch"))
    assert tracker.completed_row_groups() == ()
    tracker.mark_pre_batch_done(0, [0, 1])
    assert tracker.pop_completed_row_groups() == (0,) and tracker.alive_rows(0) == ()


def test_drop_row_mid_flight_returns_queued_tasks_as_stale_and_orphans_running_ones() -> None:
    columns = [ROOT, ColumnNode("a", ("topic",)), ColumnNode("b", ("topic",)), ColumnNode("c", ("a",))]
    tracker = make(columns, records=2, buffer_size=2, in_flight=1)
    run_one(tracker, TaskKey("topic", 0, None, "batch"))
    a0, a1, b0, b1 = (TaskKey(c, 0, r, "cell") for c in "ab" for r in (0, 1))
    tracker.mark_enqueued([a0, a1, b0])
    assert tracker.mark_started(a0)
    result = tracker.drop_row(0, 0, "bad row")
    assert result == DropResult(rows=((0, 0),), stale=(b0,))
    assert tracker.ready_frontier() == (b1,)
    assert tracker.mark_started(b0) is False  # the engine's discard lost the race to the dispatcher
    with pytest.raises(TrackerError, match="it is stale"):
        tracker.mark_complete(b0)
    assert tracker.statistics()["orphaned"] == 1
    assert tracker.mark_complete(a0) is Outcome.DISCARDED
    with pytest.raises(TrackerError, match="dropped with its row"):
        tracker.mark_complete(a0)
    assert TaskKey("c", 0, 0, "cell") not in tracker.ready_frontier()
    for key in (a1, b1):
        if key in tracker.ready_frontier():
            tracker.mark_enqueued([key])
        assert tracker.mark_started(key) and tracker.mark_complete(key) is Outcome.RECORDED
    run_one(tracker, TaskKey("c", 0, 1, "cell"))
    assert tracker.pop_completed_row_groups() == (0,)
    tracker.mark_checkpointed(0)
    assert tracker.is_finished()


def test_fatal_batch_failure_drops_the_row_group() -> None:
    columns = [ROOT, ColumnNode("a", ("topic",)), ColumnNode("s", ("topic",), "batch")]
    tracker = make(columns, records=3, buffer_size=3, in_flight=1)
    run_one(tracker, TaskKey("topic", 0, None, "batch"))
    a0 = TaskKey("a", 0, 0, "cell")
    s = TaskKey("s", 0, None, "batch")
    tracker.mark_enqueued([a0, s])
    assert tracker.mark_started(s)
    result = tracker.mark_failed_permanent(s, "boom")
    assert result.rows == ((0, 0), (0, 1), (0, 2)) and result.stale == (a0,)
    assert tracker.ready_frontier() == ()
    assert tracker.pop_completed_row_groups() == (0,) and tracker.alive_rows(0) == ()
    tracker.mark_checkpointed(0)
    assert tracker.is_finished()
    assert set(tracker.dropped_rows().values()) == {"boom"}


def test_salvage_returns_deferred_tasks_which_then_complete() -> None:
    tracker = make([ROOT, ColumnNode("a", ("topic",))], records=2, buffer_size=2, in_flight=1)
    root = TaskKey("topic", 0, None, "batch")
    tracker.mark_enqueued([root])
    assert tracker.mark_started(root)
    assert tracker.mark_failed_retryable(root) is Outcome.RECORDED
    assert tracker.deferred() == (root,) and tracker.ready_frontier() == ()
    with pytest.raises(TrackerError, match="it is deferred for salvage"):
        tracker.mark_complete(root)
    assert tracker.salvage_round() == (root,)
    assert tracker.salvage_rounds == 1 and tracker.deferred() == () and tracker.ready_frontier() == (root,)
    run_one(tracker, root)
    a0, a1 = tracker.ready_frontier()
    tracker.mark_enqueued([a0, a1])
    for key in (a0, a1):
        assert tracker.mark_started(key)
        tracker.mark_failed_retryable(key)
    assert tracker.salvage_round() == (a0, a1)
    run_one(tracker, a0)
    tracker.mark_enqueued([a1])
    assert tracker.mark_started(a1)
    tracker.mark_failed_retryable(a1)
    assert tracker.drop_deferred("still failing after 2 rounds") == DropResult(rows=((0, 1),))
    assert tracker.dropped_rows() == {(0, 1): "still failing after 2 rounds"}
    assert tracker.pop_completed_row_groups() == (0,)


def test_checkpoint_frees_the_slot_for_the_next_row_group() -> None:
    tracker = make([ROOT], records=6, buffer_size=2, in_flight=1)
    for g in range(3):
        (root,) = tracker.ready_frontier()
        assert root.row_group == g and tracker.open_row_groups() == (g,)
        run_one(tracker, root)
        assert tracker.ready_frontier() == ()  # the finished group still holds the slot
        assert tracker.completed_row_groups() == (g,) and tracker.pop_completed_row_groups() == (g,)
        tracker.mark_checkpointed(g)
    assert tracker.is_finished()
    with pytest.raises(TrackerError, match="row group 2 is checkpointed"):
        tracker.mark_checkpointed(2)


def test_concurrent_workers_drive_the_tracker_to_completion() -> None:
    columns = SHAPES["diamond"]
    tracker = make(columns, records=60, buffer_size=7, in_flight=3, pre=True)
    done: Counter[str] = Counter()
    done_lock = threading.Lock()

    def work(key: TaskKey) -> None:
        assert tracker.mark_started(key)
        with done_lock:
            done[key.task_id] += 1
        if key.row is not None and key.row % 11 == 5 and key.column == "left":
            tracker.mark_failed_permanent(key, "bad")
        else:
            tracker.mark_complete(key)

    pending: set[Future[None]] = set()
    with ThreadPoolExecutor(max_workers=8) as pool:
        while not tracker.is_finished():
            for g in tracker.pop_pre_batch_ready():
                tracker.mark_pre_batch_done(g)
            for g in tracker.pop_completed_row_groups():
                tracker.mark_checkpointed(g)
            frontier = tracker.ready_frontier()
            tracker.mark_enqueued(frontier)
            pending |= {pool.submit(work, key) for key in frontier}
            if pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    future.result()
    assert all(count == 1 for count in done.values())
    assert sorted(tracker.dropped_rows()) == [(r // 7, r) for r in range(60) if r % 11 == 5]


def _dags(draw: st.DrawFn) -> list[ColumnNode]:
    count = draw(st.integers(3, 6))
    columns = [ColumnNode("c0")]
    for i in range(1, count):
        if draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans()):
            deps: tuple[str, ...] = ()
        else:
            picked = draw(st.lists(st.integers(0, i - 1), min_size=1, max_size=3, unique=True))
            deps = tuple(f"c{j}" for j in sorted(picked))
        columns.append(ColumnNode(f"c{i}", deps, draw(st.sampled_from(["cell", "batch"]))))
    return columns


@st.composite
def simulations(draw: st.DrawFn) -> Sim:
    probability = st.sampled_from([0.0, 0.05, 0.2])
    return Sim(
        _dags(draw),
        records=draw(st.integers(0, 30)),
        buffer_size=draw(st.integers(1, 8)),
        in_flight=draw(st.integers(1, 4)),
        pre=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32)),
        p_retry=draw(probability),
        p_fatal=draw(st.sampled_from([0.0, 0.02, 0.1])),
        p_drop=draw(st.sampled_from([0.0, 0.02, 0.1])),
        p_pre_drop=draw(probability),
        p_post_drop=draw(probability),
        max_salvage=draw(st.integers(0, 3)),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(simulations())
def test_property_random_dags_finish_with_every_alive_task_done_once(sim: Sim) -> None:
    sim.run()
    stats = sim.tracker.statistics()
    event(f"dropped rows: {'some' if sim.dropped else 'none'}")
    event(f"stale tasks discarded: {'some' if sim.discarded else 'none'}")
    event(f"salvage rounds: {stats['salvage_rounds']}")
    groups = -(-sim.records // sim.buffer_size)
    assert sim.max_open <= sim.in_flight and (groups == 0 or sim.max_open >= 1)
    assert sim.tracker.statistics()["row_groups_checkpointed"] == groups
