from __future__ import annotations

import io
import sys
import threading
from collections.abc import Mapping

import pytest

from threadsched.engine.progress import (
    NullProgress,
    PlainProgress,
    ProgressReporter,
    ProgressSnapshot,
    RichProgress,
    progress_for,
)

COLUMNS = ("topic", "question", "answer")


def snap(
    done: Mapping[str, int] | int,
    *,
    checkpointed: int,
    total: int = 20,
    dropped: int = 0,
    groups: int = 2,
    elapsed: float = 0.0,
) -> ProgressSnapshot:
    rows_done = dict.fromkeys(COLUMNS, done) if isinstance(done, int) else dict(done)
    return ProgressSnapshot(
        columns=COLUMNS,
        rows_done=rows_done,
        rows_total=total,
        rows_dropped=dropped,
        row_groups_checkpointed=checkpointed,
        row_groups_total=groups,
        elapsed=elapsed,
    )


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class NoIsatty:
    """A write-only stream without ``isatty``."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


class ClosedTTY(io.StringIO):
    def isatty(self) -> bool:
        raise ValueError("I/O operation on closed file")


class BrokenStream(io.StringIO):
    def __init__(self, error: OSError | None = None) -> None:
        super().__init__()
        self.error = error or BrokenPipeError(32, "Broken pipe")
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        raise self.error


class BrokenTTY(BrokenStream):
    def isatty(self) -> bool:
        return True


def new_threads(baseline: set[threading.Thread]) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread not in baseline and thread.is_alive()]


# --- PlainProgress -------------------------------------------------------------------------------------


def test_plain_prints_start_one_line_per_checkpoint_and_finish() -> None:
    out = io.StringIO()
    progress = PlainProgress(out)
    progress.start(snap(0, checkpointed=0, total=20, elapsed=0.0))
    progress.update(snap({"topic": 5, "question": 2, "answer": 0}, checkpointed=0, elapsed=0.4))
    progress.update(snap({"topic": 10, "question": 10, "answer": 9}, checkpointed=0, elapsed=0.9))
    progress.update(snap({"topic": 10, "question": 10, "answer": 10}, checkpointed=1, elapsed=1.2))
    progress.update(snap({"topic": 15, "question": 12, "answer": 11}, checkpointed=1, elapsed=1.5))
    progress.update(snap(18, checkpointed=2, total=18, dropped=2, elapsed=2.3))
    progress.update(snap(18, checkpointed=2, total=18, dropped=2, elapsed=2.4))
    progress.finish(snap(18, checkpointed=2, total=18, dropped=2, elapsed=2.5))

    assert out.getvalue().splitlines() == [
        "run: 20 rows in 2 row groups; columns topic, question, answer",
        "[  1.2s] row groups 1/2 checkpointed; rows done: topic 10, question 10, answer 10; dropped 0",
        "[  2.3s] row groups 2/2 checkpointed; rows done: topic 18, question 18, answer 18; dropped 2",
        "[  2.5s] done: row groups 2/2 checkpointed; rows done: topic 18, question 18, answer 18; dropped 2",
    ]
    assert "\r" not in out.getvalue()
    assert "\x1b" not in out.getvalue()
    assert out.getvalue().endswith("\n")


def test_plain_one_line_when_several_row_groups_checkpoint_at_once() -> None:
    out = io.StringIO()
    progress = PlainProgress(out)
    progress.start(snap(0, checkpointed=0, groups=10, total=100))
    progress.update(snap(30, checkpointed=3, groups=10, total=100, elapsed=12.25))
    assert out.getvalue().splitlines()[1:] == [
        "[ 12.2s] row groups 3/10 checkpointed; rows done: topic 30, question 30, answer 30; dropped 0"
    ]


def test_plain_finish_prints_even_without_change() -> None:
    out = io.StringIO()
    progress = PlainProgress(out)
    progress.start(snap(0, checkpointed=0))
    progress.finish(snap(0, checkpointed=0, elapsed=0.1))
    assert out.getvalue().splitlines()[-1] == (
        "[  0.1s] done: row groups 0/2 checkpointed; rows done: topic 0, question 0, answer 0; dropped 0"
    )


def test_plain_resumed_run_is_silent_until_a_new_checkpoint() -> None:
    out = io.StringIO()
    progress = PlainProgress(out)
    progress.start(snap(10, checkpointed=1))
    progress.update(snap(12, checkpointed=1))
    assert len(out.getvalue().splitlines()) == 1
    progress.update(snap(20, checkpointed=2))
    assert len(out.getvalue().splitlines()) == 2


def test_plain_missing_column_counts_as_zero() -> None:
    out = io.StringIO()
    progress = PlainProgress(out)
    progress.finish(snap({"topic": 4}, checkpointed=0))
    assert "rows done: topic 4, question 0, answer 0;" in out.getvalue()


def test_plain_broken_stream_never_raises_and_goes_silent(caplog: pytest.LogCaptureFixture) -> None:
    stream = BrokenStream()
    progress = PlainProgress(stream)
    progress.start(snap(0, checkpointed=0))
    progress.update(snap(10, checkpointed=1))
    progress.finish(snap(20, checkpointed=2))
    assert stream.writes == 1
    assert "progress output disabled" in caplog.text
    assert "broken" in repr(progress)


def test_null_progress_does_nothing() -> None:
    progress = NullProgress()
    progress.start(snap(0, checkpointed=0))
    progress.update(snap(10, checkpointed=1))
    progress.finish(snap(20, checkpointed=2))
    progress.finish(snap(20, checkpointed=2))


# --- progress_for ---------------------------------------------------------------------------------------


def block_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    names = {name for name in sys.modules if name == "rich" or name.startswith("rich.")}
    for name in names | {"rich", "rich.console", "rich.progress", "rich.live"}:
        monkeypatch.setitem(sys.modules, name, None)


def test_progress_for_quiet_is_null_even_on_a_tty() -> None:
    assert isinstance(progress_for(FakeTTY(), quiet=True), NullProgress)
    assert isinstance(progress_for(io.StringIO(), quiet=True, plain=True), NullProgress)


def test_progress_for_non_tty_is_plain() -> None:
    out = io.StringIO()
    progress = progress_for(out)
    assert isinstance(progress, PlainProgress)
    progress.start(snap(0, checkpointed=0))
    assert out.getvalue().startswith("run: 20 rows")


def test_progress_for_plain_on_a_tty_is_plain() -> None:
    assert isinstance(progress_for(FakeTTY(), plain=True), PlainProgress)


@pytest.mark.parametrize("stream", [NoIsatty(), ClosedTTY()], ids=["no-isatty", "isatty-raises"])
def test_progress_for_guards_isatty(stream: object) -> None:
    assert isinstance(progress_for(stream), PlainProgress)  # type: ignore[arg-type]


def test_progress_for_defaults_to_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    progress = progress_for()
    assert isinstance(progress, PlainProgress)
    progress.start(snap(0, checkpointed=0))
    assert err.getvalue().startswith("run: ")


def test_progress_for_tty_with_rich_is_rich() -> None:
    pytest.importorskip("rich")
    baseline = set(threading.enumerate())
    progress = progress_for(FakeTTY())
    assert isinstance(progress, RichProgress)
    assert not new_threads(baseline)  # nothing runs before start


def test_progress_for_tty_without_rich_is_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    block_rich(monkeypatch)
    with pytest.raises(ImportError):
        import rich.console  # noqa: F401
    assert isinstance(progress_for(FakeTTY()), PlainProgress)


# --- RichProgress -----------------------------------------------------------------------------------------


def rich_progress(file: io.StringIO) -> RichProgress:
    console_module = pytest.importorskip("rich.console")
    return RichProgress(console_module.Console(file=file, force_terminal=True, width=120))


def run_to_completion(progress: ProgressReporter) -> None:
    progress.start(snap(0, checkpointed=0))
    progress.update(snap({"topic": 10, "question": 7, "answer": 3}, checkpointed=0, elapsed=0.5))
    progress.update(snap({"topic": 20, "question": 15, "answer": 10}, checkpointed=1, elapsed=1.0))
    progress.finish(snap(20, checkpointed=2, elapsed=1.5))


def test_rich_shows_every_column_and_final_counts() -> None:
    out = io.StringIO()
    baseline = set(threading.enumerate())
    progress = rich_progress(out)
    run_to_completion(progress)
    text = out.getvalue()
    for name in (*COLUMNS, "row groups checkpointed"):
        assert name in text
    assert "20/20" in text
    assert "2/2" in text
    assert not new_threads(baseline), "finish must stop rich's refresh thread"
    assert "finished" in repr(progress)


def test_rich_finish_twice_and_update_after_finish_are_harmless() -> None:
    out = io.StringIO()
    baseline = set(threading.enumerate())
    progress = rich_progress(out)
    run_to_completion(progress)
    written = out.getvalue()
    progress.finish(snap(20, checkpointed=2))
    progress.update(snap(20, checkpointed=2))
    progress.start(snap(0, checkpointed=0))
    assert out.getvalue() == written
    assert not new_threads(baseline)


def test_rich_total_shrinks_with_dropped_rows() -> None:
    out = io.StringIO()
    progress = rich_progress(out)
    progress.start(snap(0, checkpointed=0))
    progress.update(snap(5, checkpointed=0, total=19, dropped=1))
    progress.finish(snap(17, checkpointed=2, total=17, dropped=3))
    assert "17/17" in out.getvalue()
    assert "20/20" not in out.getvalue()


def test_rich_finish_without_update_stops_the_display() -> None:
    out = io.StringIO()
    baseline = set(threading.enumerate())
    progress = rich_progress(out)
    progress.start(snap(0, checkpointed=0))
    progress.finish(snap(20, checkpointed=2))
    assert "20/20" in out.getvalue()
    assert not new_threads(baseline)


def test_rich_finish_without_start_renders_the_final_state_once() -> None:
    out = io.StringIO()
    baseline = set(threading.enumerate())
    progress = rich_progress(out)
    progress.finish(snap(20, checkpointed=2))
    assert "20/20" in out.getvalue()
    assert "row groups checkpointed" in out.getvalue()
    assert not new_threads(baseline)


def test_rich_failing_terminal_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    baseline = set(threading.enumerate())
    stream = BrokenStream(OSError(5, "Input/output error"))
    progress = rich_progress(stream)
    run_to_completion(progress)
    progress.finish(snap(20, checkpointed=2))
    assert stream.writes >= 1
    assert "progress display disabled" in caplog.text
    assert not new_threads(baseline)


def test_rich_broken_pipe_neither_exits_nor_raises() -> None:
    pytest.importorskip("rich")
    baseline = set(threading.enumerate())
    stream = BrokenTTY()
    progress = progress_for(stream)
    assert isinstance(progress, RichProgress)
    run_to_completion(progress)  # rich's default on a broken pipe is SystemExit(1)
    assert stream.writes == 1  # then the console goes quiet
    assert not new_threads(baseline)
