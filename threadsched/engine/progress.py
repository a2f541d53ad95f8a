"""Run progress for the dataset engine: what the runner reports, and how it is shown.

The runner's main thread builds a ``ProgressSnapshot`` (immutable) after each batch of completions and
after each checkpoint, and hands it to a ``ProgressReporter``. Reporters run on that thread only, outside
every lock; they must be cheap and must never raise into the run (a broken terminal is not a failed run).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["NullProgress", "PlainProgress", "ProgressReporter", "ProgressSnapshot", "RichProgress", "progress_for"]


@dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    """Where a run stands. ``rows_done[column]`` counts the rows whose value of ``column`` is recorded
    (resumed rows included); ``rows_total`` is the recipe's records minus the rows dropped so far, so every
    column reaches ``rows_total`` when the run completes."""

    columns: tuple[str, ...]  # topological order
    rows_done: Mapping[str, int]
    rows_total: int
    rows_dropped: int
    row_groups_checkpointed: int
    row_groups_total: int
    elapsed: float


class ProgressReporter(Protocol):
    def start(self, snapshot: ProgressSnapshot) -> None: ...

    def update(self, snapshot: ProgressSnapshot) -> None: ...

    def finish(self, snapshot: ProgressSnapshot) -> None: ...


LOGGER = logging.getLogger("threadsched")

ROW_GROUPS_DESCRIPTION = "row groups checkpointed"
# Joining rich's refresh thread after stop: it exits at its next wake-up, unless a terminal write is stuck.
_REFRESH_JOIN_SECONDS = 1.0


def _rows_done_text(snapshot: ProgressSnapshot) -> str:
    return ", ".join(f"{column} {snapshot.rows_done.get(column, 0)}" for column in snapshot.columns)


def _status_line(snapshot: ProgressSnapshot, *, done: bool = False) -> str:
    prefix = f"[{snapshot.elapsed:5.1f}s] " + ("done: " if done else "")
    return (
        f"{prefix}row groups {snapshot.row_groups_checkpointed}/{snapshot.row_groups_total} checkpointed; "
        f"rows done: {_rows_done_text(snapshot)}; dropped {snapshot.rows_dropped}"
    )


class NullProgress:
    """Shows nothing (``--quiet``)."""

    def start(self, snapshot: ProgressSnapshot) -> None:
        pass

    def update(self, snapshot: ProgressSnapshot) -> None:
        pass

    def finish(self, snapshot: ProgressSnapshot) -> None:
        pass

    def __repr__(self) -> str:
        return "NullProgress()"


class PlainProgress:
    """Plain lines, no control characters (pipes, log files, CI): one at start, at most one per checkpoint
    (``update`` is silent unless ``row_groups_checkpointed`` grew since the last line), one at finish."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._last_checkpointed = 0
        self._lines = 0
        self._broken = False

    def start(self, snapshot: ProgressSnapshot) -> None:
        self._last_checkpointed = snapshot.row_groups_checkpointed
        self._emit(
            f"run: {snapshot.rows_total} rows in {snapshot.row_groups_total} row groups; columns {', '.join(snapshot.columns)}"
        )

    def update(self, snapshot: ProgressSnapshot) -> None:
        if snapshot.row_groups_checkpointed <= self._last_checkpointed:
            return
        self._last_checkpointed = snapshot.row_groups_checkpointed
        self._emit(_status_line(snapshot))

    def finish(self, snapshot: ProgressSnapshot) -> None:
        self._last_checkpointed = max(self._last_checkpointed, snapshot.row_groups_checkpointed)
        self._emit(_status_line(snapshot, done=True))

    def _emit(self, line: str) -> None:
        if self._broken:
            return
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
        except Exception:  # a closed or broken stream (EPIPE) must not fail the run
            self._broken = True
            LOGGER.warning("progress output disabled: writing to the stream failed", exc_info=True)
            return
        self._lines += 1

    def __repr__(self) -> str:
        state = "broken" if self._broken else "ok"
        return f"PlainProgress(lines={self._lines}, last_checkpointed={self._last_checkpointed}, {state})"


class RichProgress:
    """A live ``rich`` display on ``console``: one bar per column (rows done / rows total; the total shrinks
    as rows are dropped) and one for the checkpointed row groups. ``update`` only sets task fields; rich
    redraws on its own refresh thread, which ``finish`` stops (and joins). ``finish`` is idempotent and
    also works without ``start``/``update``; after a rendering error the reporter stops and stays silent."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

        self._console = console
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            # stdout carries the run's summary: never redirect it into the (stderr) console.
            redirect_stdout=False,
        )
        self._column_tasks: dict[str, TaskID] = {}
        self._row_group_task: TaskID | None = None
        self._state = "new"  # new -> running -> finished

    def start(self, snapshot: ProgressSnapshot) -> None:
        if self._state != "new":
            return
        try:
            self._sync(snapshot)
            self._state = "running"
            self._progress.start()
        except Exception:
            self._fail("starting")

    def update(self, snapshot: ProgressSnapshot) -> None:
        if self._state != "running":
            return
        try:
            self._sync(snapshot)
        except Exception:
            self._fail("updating")

    def finish(self, snapshot: ProgressSnapshot) -> None:
        if self._state == "finished":
            return
        try:
            self._sync(snapshot)
            if self._state == "new":  # never started: start now, so that stop renders the final state once
                self._progress.start()
        except Exception:
            self._fail("finishing")
            return
        self._stop()

    def _sync(self, snapshot: ProgressSnapshot) -> None:
        progress = self._progress
        for column in snapshot.columns:
            done = snapshot.rows_done.get(column, 0)
            task = self._column_tasks.get(column)
            if task is None:
                self._column_tasks[column] = progress.add_task(column, total=snapshot.rows_total, completed=done)
            else:
                progress.update(task, total=snapshot.rows_total, completed=done)
        if self._row_group_task is None:
            self._row_group_task = progress.add_task(
                ROW_GROUPS_DESCRIPTION, total=snapshot.row_groups_total, completed=snapshot.row_groups_checkpointed
            )
        else:
            progress.update(self._row_group_task, total=snapshot.row_groups_total, completed=snapshot.row_groups_checkpointed)

    def _stop(self) -> None:
        self._state = "finished"
        # Live.stop only signals rich's refresh thread; join it so that no thread outlives finish.
        refresh_thread = getattr(self._progress.live, "_refresh_thread", None)
        try:
            self._progress.stop()
        except Exception:
            LOGGER.warning("progress display: stopping failed", exc_info=True)
        if isinstance(refresh_thread, threading.Thread) and refresh_thread is not threading.current_thread():
            refresh_thread.join(_REFRESH_JOIN_SECONDS)

    def _fail(self, action: str) -> None:
        LOGGER.warning("progress display disabled: %s failed", action, exc_info=True)
        self._stop()

    def __repr__(self) -> str:
        return f"RichProgress(state={self._state}, columns={len(self._column_tasks)})"


def _is_tty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    if not callable(isatty):
        return False
    try:
        return bool(isatty())
    except (OSError, ValueError):  # a closed or detached stream
        return False


def _rich_progress(stream: TextIO) -> RichProgress | None:
    try:
        from rich.console import Console
    except ImportError:  # rich is an optional extra
        return None

    class _ProgressConsole(Console):
        def on_broken_pipe(self) -> None:
            # rich's default points stdout at /dev/null and raises SystemExit: a closed terminal would end the run.
            self.quiet = True

    try:
        return RichProgress(_ProgressConsole(file=stream))
    except ImportError:
        return None


def progress_for(stream: TextIO | None = None, *, quiet: bool = False, plain: bool = False) -> ProgressReporter:
    """The reporter for a run: nothing if ``quiet``; a live rich display when ``stream`` (default
    ``sys.stderr``, keeping stdout for summaries) is a terminal, ``plain`` is false and rich is installed;
    otherwise plain lines."""
    if quiet:
        return NullProgress()
    target = sys.stderr if stream is None else stream
    if target is None:  # no stderr at all (pythonw)
        return NullProgress()
    if not plain and _is_tty(target):
        rich_progress = _rich_progress(target)
        if rich_progress is not None:
            return rich_progress
    return PlainProgress(target)
