from __future__ import annotations

import gzip
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from subprocess import PIPE

import pytest
from support import run_threads

from threadsched import Scheduler, SchedulerEvent
from threadsched.core.event_log import JsonlEventSink, read_events

REPO_ROOT = Path(__file__).resolve().parent.parent
WRITER_THREAD = "threadsched-event-writer"


@pytest.fixture(autouse=True)
def no_leaked_writers() -> Iterator[None]:
    baseline = set(threading.enumerate())
    yield
    leaked = [thread.name for thread in threading.enumerate() if thread not in baseline and thread.name == WRITER_THREAD]
    assert not leaked, f"leaked event writers: {leaked}"


def event(sequence: int, kind: str = "selected", task: str = "t") -> SchedulerEvent:
    return SchedulerEvent(kind=kind, sequence=sequence, captured_at=float(sequence), task_id=task, group=("g", 1))


def backups_of(path: Path) -> list[Path]:
    return sorted(candidate for candidate in path.parent.iterdir() if candidate.name.startswith(path.name + "."))


def test_round_trip_from_many_threads(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    threads, per_thread = 4, 250
    start = threading.Barrier(threads)
    with JsonlEventSink(path) as sink:

        def emit_from(offset: int) -> None:
            start.wait()
            for index in range(per_thread):
                sink.emit(event(index * threads + offset))

        run_threads(threads, emit_from)
    events = read_events(path)
    assert sorted(item["sequence"] for item in events) == list(range(threads * per_thread))
    assert events[0]["group"] == ["g", 1]
    assert (sink.written, sink.dropped, sink.write_errors) == (threads * per_thread, 0, 0)
    assert path.read_text().count("\n") == threads * per_thread


def test_lines_are_compact_sorted_json_of_to_dict(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with JsonlEventSink(path) as sink:
        sink.emit(event(7))
    expected = json.dumps(event(7).to_dict(), separators=(",", ":"), sort_keys=True)
    assert path.read_text() == expected + "\n"


def test_rotation_keeps_every_event_in_order_when_backups_suffice(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with JsonlEventSink(path, max_bytes=1000, backups=30) as sink:
        for sequence in range(60):
            sink.emit(event(sequence))
            assert sink.flush()  # one line per write, so the file rotates every few lines
    backups = backups_of(path)
    assert 2 <= len(backups) <= 30
    assert [item["sequence"] for item in read_events(path)] == list(range(60))


def test_rotation_keeps_at_most_backups_files_and_the_newest_events(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with JsonlEventSink(path, max_bytes=1000, backups=2) as sink:
        for sequence in range(60):
            sink.emit(event(sequence))
            assert sink.flush()
    assert [backup.name for backup in backups_of(path)] == ["events.jsonl.1", "events.jsonl.2"]
    sequences = [item["sequence"] for item in read_events(path)]
    assert 0 < len(sequences) < 60
    assert sequences == list(range(60 - len(sequences), 60))


def test_flush_makes_lines_visible_without_closing(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with JsonlEventSink(path) as sink:
        for sequence in range(10):
            sink.emit(event(sequence))
        assert sink.flush(timeout=30)
        assert [item["sequence"] for item in read_events(path)] == list(range(10))
        assert sink.written == 10
        assert not sink.closed


def test_close_is_idempotent_and_emit_after_close_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = JsonlEventSink(path)
    sink.emit(event(0))
    assert sink.close()
    assert sink.close()
    sink.emit(event(1))
    assert sink.flush()
    assert (sink.written, sink.dropped) == (1, 1)
    assert [item["sequence"] for item in read_events(path)] == [0]
    assert "closed" in repr(sink)


def test_full_queue_drops_instead_of_blocking(tmp_path: Path) -> None:
    sink = JsonlEventSink(tmp_path / "events.jsonl", queue_size=2)
    sink._handler.acquire()  # the writer cannot finish a write, so queued lines stay pending
    try:
        for sequence in range(5):
            sink.emit(event(sequence))
        assert (sink.statistics().pending, sink.dropped) == (2, 3)
    finally:
        sink._handler.release()
    sink.close()
    assert (sink.written, sink.dropped) == (2, 3)


def test_missing_parent_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "events.jsonl"
    with JsonlEventSink(path) as sink:
        sink.emit(event(0))
    assert [item["sequence"] for item in read_events(path)] == [0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_bytes": 0}, "max_bytes must be >= 1"),
        ({"backups": -1}, "backups must be >= 0"),
        ({"queue_size": 0}, "queue_size must be >= 1"),
    ],
)
def test_invalid_arguments_are_rejected(tmp_path: Path, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JsonlEventSink(tmp_path / "events.jsonl", **kwargs)


def test_write_error_is_counted_and_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "events.jsonl"
    path.mkdir()  # opening the log for append fails with IsADirectoryError
    with caplog.at_level(logging.WARNING, logger="threadsched"), JsonlEventSink(path) as sink:
        sink.emit(event(0))
        assert sink.flush()
        sink.emit(event(1))
        assert sink.flush()
    assert (sink.written, sink.write_errors, sink.dropped) == (0, 2, 0)
    assert len([record for record in caplog.records if "write failed" in record.getMessage()]) == 1


def test_truncated_final_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [json.dumps(event(sequence).to_dict()) for sequence in range(2)]
    path.write_text("\n".join(lines) + "\n\n" + lines[0][:17])
    assert [item["sequence"] for item in read_events(path)] == [0, 1]


def test_sink_ends_a_torn_line_before_appending(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(event(0).to_dict()) + "\n" + '{"kind":"sel')
    with JsonlEventSink(path) as sink:
        sink.emit(event(1))
    with caplog.at_level(logging.WARNING, logger="threadsched"):
        assert [item["sequence"] for item in read_events(path)] == [0, 1]
    assert any("skipped 1 line" in record.getMessage() for record in caplog.records)


def test_read_events_reads_gzipped_backups_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with gzip.open(tmp_path / "events.jsonl.2.gz", "wt") as oldest:
        oldest.write(json.dumps({"sequence": 0}) + "\n")
    (tmp_path / "events.jsonl.1").write_text(json.dumps({"sequence": 1}) + "\n")
    (tmp_path / "events.jsonl.rotate.123").write_text(json.dumps({"sequence": 99}) + "\n")
    path.write_text(json.dumps({"sequence": 2}) + "\n")
    assert [item["sequence"] for item in read_events(path)] == [0, 1, 2]


def test_read_events_without_any_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no event log"):
        read_events(tmp_path / "events.jsonl")


WRITER_SCRIPT = """
import sys
from threadsched.core.event_log import JsonlEventSink
from threadsched.core.events import SchedulerEvent

path, name, max_bytes, close = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "close"
sink = JsonlEventSink(path, max_bytes=max_bytes, backups=50)
print("ready", flush=True)
sys.stdin.readline()  # the parent releases every writer at once, so their appends overlap
for sequence in range(200):
    sink.emit(SchedulerEvent(kind="selected", sequence=sequence, captured_at=0.0, task_id=name))
    if sequence % 10 == 9 and close:
        sink.flush()
if close:
    sink.close()
"""


def run_writers(path: Path, names: list[str], max_bytes: int, close: bool = True) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    mode = "close" if close else "exit"
    script = [sys.executable, "-c", WRITER_SCRIPT, str(path)]
    processes = [
        subprocess.Popen([*script, name, str(max_bytes), mode], env=env, cwd=REPO_ROOT, stdin=PIPE, stdout=PIPE, text=True)
        for name in names
    ]
    for process in processes:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    for process in processes:
        process.communicate(timeout=50)
        assert process.returncode == 0


def test_two_processes_append_to_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    run_writers(path, ["p1", "p2"], max_bytes=64 << 20)
    lines = path.read_text().splitlines()
    assert len(lines) == 400
    pairs = sorted((item["task_id"], item["sequence"]) for item in map(json.loads, lines))
    assert pairs == sorted((name, sequence) for name in ("p1", "p2") for sequence in range(200))


def test_two_processes_rotating_the_same_file_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    run_writers(path, ["p1", "p2"], max_bytes=4000)
    assert backups_of(path)
    events = read_events(path)
    assert len(events) == 400
    for name in ("p1", "p2"):  # each process's lines stay in its own emit order across files
        assert [item["sequence"] for item in events if item["task_id"] == name] == list(range(200))


def test_process_exiting_without_close_still_writes_its_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    run_writers(path, ["p1"], max_bytes=64 << 20, close=False)
    assert [item["sequence"] for item in read_events(path)] == list(range(200))


def test_scheduler_events_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with JsonlEventSink(path) as sink:
        with Scheduler(max_workers=2, events=sink) as scheduler:
            futures = [scheduler.submit(pow, 2, exponent) for exponent in range(5)]
            assert [future.result(timeout=30) for future in futures] == [1, 2, 4, 8, 16]
        assert sink.flush(timeout=30)
    kinds = [item["kind"] for item in read_events(path)]
    assert kinds.count("task_lease_acquired") == 5
    assert kinds.count("worker_spawned") == 5
    assert sink.dropped == 0


def test_scheduler_shutdown_flushes_a_buffering_sink(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with JsonlEventSink(path) as sink:
        scheduler = Scheduler(max_workers=2, events=sink)
        for future in [scheduler.submit(int, "7") for _ in range(4)]:
            future.result()
        scheduler.shutdown(wait=True)
        # shutdown returned: every event of this scheduler is on disk, without closing the shared sink
        kinds = [event["kind"] for event in read_events(path)]
        assert kinds.count("task_lease_released") == 4
        assert not sink.closed


class _Diagnostics(dict[str, object]):
    """Remembers which threads serialised it; ``explode`` makes serialising it fail."""

    def __init__(self, *, explode: bool = False) -> None:
        super().__init__(n=1)
        self.explode = explode
        self.read_by: set[str] = set()

    def items(self):  # type: ignore[override]
        self.read_by.add(threading.current_thread().name)
        if self.explode:
            raise RuntimeError("cannot serialise this")
        return super().items()


def test_emit_leaves_serialising_to_the_writer_and_counts_a_failure_as_dropped(tmp_path: Path) -> None:
    good, bad = _Diagnostics(), _Diagnostics(explode=True)
    with JsonlEventSink(tmp_path / "events.jsonl") as sink:
        sink.emit(SchedulerEvent("selected", 0, 1.0, diagnostics=good))
        sink.emit(SchedulerEvent("selected", 1, 2.0, diagnostics=bad))
        assert sink.flush(timeout=10)
        assert (sink.written, sink.dropped, sink.statistics().pending) == (1, 1, 0)
    assert good.read_by == bad.read_by == {"threadsched-event-writer"}
    assert [event["sequence"] for event in read_events(tmp_path / "events.jsonl")] == [0]
