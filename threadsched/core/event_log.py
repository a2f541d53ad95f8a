"""A JSON-lines event sink on a rotating file that several processes may append to, and its reader.

``JsonlEventSink.emit`` puts the event on an in-memory queue; it never serialises, does I/O or raises, so the
dispatcher and the finishing workers, which emit on the hand-off path, spend as little as possible there (an
event is immutable, so serialising it later gives the same line). One daemon thread,
``threadsched-event-writer``, started eagerly in ``__init__``, drains the queue, serialises and writes batches
of lines through ``concurrent_log_handler.ConcurrentRotatingFileHandler``, which holds an exclusive file lock
for every write and rotation, so processes sharing a file never interleave lines. The
handler belongs to the writer thread: only that thread writes to it and closes it.

A process that exits without ``close()`` does not hang (the writer is a daemon thread); an ``atexit`` hook closes
every sink still open, waiting at most ``EXIT_TIMEOUT`` seconds for each, so queued lines normally still reach
the file.

Lock order: ``JsonlEventSink._lock`` and ``_OPEN_SINKS_LOCK`` are leaves, never held together. ``_lock`` guards
the counters, the closed flag and the queue puts that must be ordered with that flag; no I/O, handler call or
logging happens under it. The handler's own locks (its logging lock, its thread lock, the file lock) are only
taken by the writer thread, never under ``_lock``.
"""

from __future__ import annotations

import atexit
import gzip
import json
import logging
import os
import queue
import re
import sys
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from concurrent_log_handler import ConcurrentRotatingFileHandler

from threadsched.core.events import LOGGER, SchedulerEvent

__all__ = ["EXIT_TIMEOUT", "JsonlEventSink", "JsonlSinkStatistics", "read_events"]

EXIT_TIMEOUT = 5.0
_BATCH_LINES = 512  # lines per locked write: amortises the file lock without letting a file overshoot much
_STOP = object()
_OPEN_SINKS: weakref.WeakSet[JsonlEventSink] = weakref.WeakSet()
_OPEN_SINKS_LOCK = threading.Lock()


class _Handler(ConcurrentRotatingFileHandler):
    """Remembers the error that ``emit`` swallowed instead of printing it to stderr."""

    error: BaseException | None = None

    def handleError(self, record: logging.LogRecord) -> None:
        self.error = sys.exc_info()[1]


@dataclass(frozen=True, slots=True)
class JsonlSinkStatistics:
    written: int
    dropped: int
    write_errors: int
    pending: int
    closed: bool


def _line(event: SchedulerEvent) -> str | None:
    try:
        return json.dumps(event.to_dict(), separators=(",", ":"), sort_keys=True)
    except Exception:
        return None


class JsonlEventSink:
    """An ``EventSink`` appending one JSON object per line to ``path``, rotated at ``max_bytes`` with ``backups``.

    Every emitted line is counted exactly once: in ``written``, in ``dropped`` (queue full, unserialisable event,
    or emitted after ``close``) or in ``write_errors`` (a failed write, e.g. an ``OSError``; the first is logged).
    A file may exceed ``max_bytes`` by one batch of lines: the handler checks the size before each write.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, max_bytes: int = 64 << 20, backups: int = 5, queue_size: int = 1 << 16
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be >= 1")
        if backups < 0:
            raise ValueError("backups must be >= 0")
        if queue_size <= 0:
            raise ValueError("queue_size must be >= 1")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handler = _Handler(self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", newline="")
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._queue_size = queue_size
        self._lock = threading.Lock()
        self._closed = False
        self._pending = 0
        self._written = 0
        self._dropped = 0
        self._write_errors = 0
        self._error_logged = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="threadsched-event-writer", daemon=True)
        self._thread.start()
        with _OPEN_SINKS_LOCK:
            _OPEN_SINKS.add(self)

    def emit(self, event: SchedulerEvent) -> None:
        with self._lock:
            if self._closed or self._pending >= self._queue_size:
                self._dropped += 1
                return
            self._pending += 1
            # Put under the lock so no event can land behind the stop marker that close() enqueues.
            self._queue.put(event)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every line emitted before this call is written and flushed; False on timeout."""
        done = threading.Event()
        with self._lock:
            closed = self._closed
            if not closed:
                self._queue.put(done)
        # After close() the writer drains everything before it stops, so its exit is the flush.
        return (self._stopped if closed else done).wait(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Write what is queued, stop the writer and close the file; idempotent. False if the writer outlived timeout."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        with _OPEN_SINKS_LOCK:
            _OPEN_SINKS.discard(self)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return self._stopped.is_set()

    def __enter__(self) -> JsonlEventSink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def written(self) -> int:
        with self._lock:
            return self._written

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._dropped

    @property
    def write_errors(self) -> int:
        with self._lock:
            return self._write_errors

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    def statistics(self) -> JsonlSinkStatistics:
        with self._lock:
            return JsonlSinkStatistics(self._written, self._dropped, self._write_errors, self._pending, self._closed)

    def __repr__(self) -> str:
        stats = self.statistics()
        state = "closed" if stats.closed else "open"
        return (
            f"<JsonlEventSink {state} path={str(self.path)!r} written={stats.written} pending={stats.pending} "
            f"dropped={stats.dropped} write_errors={stats.write_errors}>"
        )

    # The writer thread: the only user of self._handler.
    def _run(self) -> None:
        try:
            self._terminate_torn_line()
            stop = False
            while not stop:
                batch: list[str] = []
                markers: list[threading.Event] = []
                unserialisable = 0
                item = self._queue.get()
                while True:
                    if isinstance(item, SchedulerEvent):
                        line = _line(item)
                        if line is None:
                            unserialisable += 1
                        else:
                            batch.append(line)
                    elif isinstance(item, threading.Event):
                        markers.append(item)
                    else:
                        stop = True
                        break
                    if len(batch) >= _BATCH_LINES:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if unserialisable:
                    with self._lock:  # a sink never breaks a run; the loss is visible in ``dropped``
                        self._pending -= unserialisable
                        self._dropped += unserialisable
                if batch:
                    self._write(batch)
                for marker in markers:
                    marker.set()
        finally:
            self._handler.close()
            self._stopped.set()

    def _terminate_torn_line(self) -> None:
        # A crash mid-write leaves a line without its newline; end it so our first line is not glued onto it.
        try:
            with open(self.path, "rb") as existing:
                if existing.seek(0, os.SEEK_END) == 0:
                    return
                existing.seek(-1, os.SEEK_END)
                torn = existing.read(1) != b"\n"
        except OSError:
            return
        if torn:
            self._write([""], count=False)  # written under the file lock: at worst an extra blank line

    def _write(self, lines: list[str], *, count: bool = True) -> None:
        record = logging.LogRecord("threadsched.core.event_log", logging.INFO, "", 0, "\n".join(lines), None, None)
        self._handler.error = None
        try:
            self._handler.handle(record)
            self._handler.flush()
        except Exception as unexpected:  # emit() swallows its own errors; this catches flush() and anything odd
            self._handler.error = unexpected
        error = self._handler.error
        with self._lock:
            log_error = error is not None and not self._error_logged
            self._error_logged = self._error_logged or log_error
            if count:
                self._pending -= len(lines)
                if error is None:
                    self._written += len(lines)
                else:
                    self._write_errors += len(lines)
        if log_error:
            LOGGER.warning("event log %s: write failed, lines are counted in write_errors", self.path, exc_info=error)


@atexit.register
def _close_open_sinks() -> None:
    with _OPEN_SINKS_LOCK:
        sinks = list(_OPEN_SINKS)
    for sink in sinks:
        sink.close(EXIT_TIMEOUT)


def read_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every event in ``path`` and its rotated backups (``path.N`` or ``path.N.gz``), oldest backup first.

    Blank lines are skipped. A line that is not a JSON object is skipped too: the unterminated last line of a
    file is a crash mid-write and skipped silently; any other bad line is reported once per file on ``LOGGER``.
    Raises ``FileNotFoundError`` if neither ``path`` nor any backup exists.
    """
    base = Path(path)
    pattern = re.compile(rf"{re.escape(base.name)}\.(\d+)(\.gz)?")
    backups = sorted(
        ((int(match[1]), base.parent / name) for name in os.listdir(base.parent) if (match := pattern.fullmatch(name))),
        reverse=True,
    )
    files = [file for _, file in backups]
    if base.exists():
        files.append(base)
    if not files:
        raise FileNotFoundError(f"no event log at {base} (nor any backup of it)")
    events: list[dict[str, Any]] = []
    for file in files:
        opener = gzip.open if file.suffix == ".gz" else open
        with opener(file, "rb") as stream:
            lines = stream.read().split(b"\n")
        bad = 0
        for index, raw in enumerate(lines):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except ValueError:
                value = None
            if isinstance(value, dict):
                events.append(value)
            elif index < len(lines) - 1:  # terminated, so not a torn final write
                bad += 1
        if bad:
            LOGGER.warning("event log %s: skipped %d line(s) that are not JSON objects", file, bad)
    return events
