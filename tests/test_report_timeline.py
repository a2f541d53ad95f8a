"""report.timeline: step series, marks and the PNG (only when matplotlib is importable)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
from support import Log, request_scenario, scenario

from threadsched.report.timeline import (
    Mark,
    StepSeries,
    build_timeline,
    draw_timeline,
    plot_timeline,
    stacked_on_grid,
    step_series,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_step_series_accumulates_changes_and_collapses_equal_times() -> None:
    series = step_series("g", [(1.0, 1), (0.0, 2), (1.0, 1), (2.0, -4)], span=3.0)
    assert series == StepSeries("g", (0.0, 1.0, 2.0, 3.0), (2.0, 4.0, 0.0, 0.0))
    assert [series.at(time) for time in (-1.0, 0.0, 0.5, 1.0, 2.5, 9.0)] == [0.0, 2.0, 2.0, 4.0, 0.0, 0.0]


def test_stacked_on_grid_evaluates_every_series_on_the_union_of_times() -> None:
    first = StepSeries("a", (0.0, 2.0), (1.0, 0.0))
    second = StepSeries("b", (0.0, 1.0, 3.0), (0.0, 2.0, 0.0))
    assert stacked_on_grid([first, second]) == ([0.0, 1.0, 2.0, 3.0], [[1.0, 1.0, 0.0, 0.0], [0.0, 2.0, 2.0, 0.0]])
    assert stacked_on_grid([]) == ([], [])


def test_build_timeline_of_the_scenario() -> None:
    timeline = build_timeline(scenario())
    assert (timeline.run_id, timeline.span, timeline.workers, timeline.groups) == ("r1", 4.0, 2, ("a", "b"))
    leases_a, leases_b = timeline.leases
    assert [leases_a.at(t) for t in (0.5, 1.2, 1.6, 2.5, 3.5, 4.0)] == [2.0, 1.0, 2.0, 2.0, 1.0, 0.0]
    assert [leases_b.at(t) for t in (0.5, 3.5, 4.0)] == [0.0, 1.0, 0.0]
    queue_a, queue_b = timeline.queue_depth
    assert [queue_a.at(t) for t in (0.5, 1.2, 1.6, 2.0)] == [0.0, 1.0, 0.0, 0.0]
    assert [queue_b.at(t) for t in (0.5, 1.0, 2.9, 3.0)] == [0.0, 1.0, 1.0, 0.0]
    assert [(row.row_group, row.start, row.end, row.checkpointed) for row in timeline.row_groups] == [
        (0, 0.0, 3.5, True),
        (1, 1.0, 4.0, False),
    ]
    assert timeline.marks == ()
    assert not timeline.empty


def test_marks_are_scheduler_retries_engine_deferrals_and_drops() -> None:
    log = Log(run_id=None)
    log.add("queue_empty", 10.0)
    log.add("task_completed", 10.5, task_id="t1", group="a", reason="retry", correlation={"row_group": 1})
    log.add("retry_deferred", 10.5, task_id="t1", group="a")  # the scheduler's echo of the same retry
    log.engine("retry_deferred", 11.0, group="b", reason="ValueError", correlation={"row_group": 0})
    log.engine("non_retryable_dropped", 12.0, group="b", reason="KeyError", correlation={"row_group": 0})
    timeline = build_timeline(log.events)
    assert (timeline.run_id, timeline.workers) == (None, None)
    assert timeline.marks == (Mark(0.5, "retry", 1, "a"), Mark(1.0, "retry", 0, "b"), Mark(2.0, "drop", 0, "b"))


def test_plot_timeline_writes_a_png_and_leaves_no_thread_behind(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    events = scenario()
    events.append({"kind": "non_retryable_dropped", "stream": "engine", "captured_at": 2.5, "correlation": {"row_group": 1}})
    events.append({"kind": "task_completed", "captured_at": 2.6, "reason": "retry", "task_id": "t9"})  # no row group: lane -1
    before = set(threading.enumerate())
    path = plot_timeline(build_timeline(events), tmp_path / "plots" / "timeline.png")
    assert path == tmp_path / "plots" / "timeline.png"
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert set(threading.enumerate()) <= before
    assert "matplotlib.pyplot" not in sys.modules or not __import__("matplotlib.pyplot").pyplot.get_fignums()


def test_plot_timeline_of_an_empty_timeline_still_draws(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    timeline = build_timeline([])
    assert timeline.empty
    path = plot_timeline(timeline, tmp_path / "timeline.png")
    assert path is not None and path.read_bytes().startswith(PNG_SIGNATURE)


def test_plot_timeline_without_matplotlib_returns_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert plot_timeline(build_timeline(scenario()), tmp_path / "timeline.png") is None
    assert not (tmp_path / "timeline.png").exists()


def test_request_events_add_a_fourth_panel_sharing_time(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    three, four = Figure(), Figure()
    draw_timeline(three, build_timeline(scenario()))
    draw_timeline(four, build_timeline(scenario() + request_scenario()))
    assert [ax.get_ylabel() for ax in three.axes] == ["leases held", "ready-queue depth", "row group"]
    assert [ax.get_ylabel() for ax in four.axes] == ["leases held", "ready-queue depth", "row group", "model requests"]
    requests_ax = four.axes[3]
    assert requests_ax.get_shared_x_axes().joined(four.axes[0], requests_ax)
    assert (three.axes[2].get_xlabel(), four.axes[2].get_xlabel(), requests_ax.get_xlabel()) == (
        "seconds since first event",
        "",
        "seconds since first event",
    )
    legend = requests_ax.get_legend()
    assert legend is not None
    assert [text.get_text() for text in legend.get_texts()] == [
        "p/judge:chat limit",
        "p/judge:chat in flight",
        "p/writer:chat limit",
        "p/writer:chat in flight",
        "p/writer:chat rate limited",
    ]
    path = plot_timeline(build_timeline(request_scenario()), tmp_path / "timeline.png")
    assert path is not None and path.read_bytes().startswith(PNG_SIGNATURE)
