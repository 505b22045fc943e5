"""The Tasks pane and detail screen as rendered: runtime of failures, skewed waits, whole cells at 100x30/80x24."""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

import pytest

from tui.ui.screens.task_detail import TaskDetailScreen
from tui.ui.widgets.panes import TASK_COLUMNS, TasksPane


def _task(
    events,
    *,
    sent: float,
    received: float,
    started: float | None,
    end: tuple[str, float] | None,
    runtime: float | None = None,
    name: str = "afirgen_tasks.reports.generate_pdf_report",
) -> tuple[str, list]:
    """One task's events at offsets (seconds) from ``events.t``; the publisher stamps task-sent."""
    uuid = str(uuidlib.uuid4())
    t0 = events.t

    def ev(kind: str, at: float, host: str = "w1@box", **fields: Any) -> dict[str, Any]:
        e = events._ev(kind, uuid=uuid, hostname=host, **fields)
        e["timestamp"] = t0 + at
        return e

    evs = [
        ev(
            "task-sent",
            sent,
            "publisher@client",
            name=name,
            args="[1]",
            kwargs="{}",
            queue="reports",
            priority=5,
            retries=0,
            eta=None,
            expires=None,
        ),
        ev("task-received", received, name=name, args="[1]", kwargs="{}", retries=0),
    ]
    if started is not None:
        evs.append(ev("task-started", started))
    if end is not None:
        kind, at = end
        fields: dict[str, Any] = (
            {"runtime": runtime, "result": "{}"}
            if kind == "task-succeeded"
            else {
                "exception": "PermanentTaskError('FIR 99999 does not exist')",
                "traceback": "Traceback ...",
            }
        )
        evs.append(ev(kind, at, **fields))
    events.t = t0 + 5
    return uuid, evs


def _pane_lines(app, pane: TasksPane) -> list[str]:
    """The Tasks pane's lines exactly as on screen (the compositor's output), inside border and scrollbars."""
    strips = app.screen._compositor.render_strips()
    r = pane.scrollable_content_region
    return [strips[y].crop(r.x, r.right).text for y in range(r.y, r.bottom)]


def _line_of(lines: list[str], uuid: str, pane: TasksPane) -> str:
    row = pane.get_row_index(uuid) - int(pane.scroll_y)
    header = next(i for i, line in enumerate(lines) if "Runtime" in line)
    return lines[header + 1 + row]


async def test_failure_row_and_detail_show_finished_minus_started(console, sources, events):
    async with console.run_test(size=(100, 30)) as pilot:
        bad, evs = _task(
            events, sent=0.0, received=0.010, started=0.046, end=("task-failed", 0.052)
        )
        sources.feed(evs)
        console.console_screen.tick()
        await pilot.pause()
        pane = console.query_one("#tasks", TasksPane)
        assert str(pane.get_cell(bad, "runtime")) == "6ms"
        detail = TaskDetailScreen(console.model.get_task(bad), console.redact, None)
        text = detail.render_text().plain
        assert "Runtime     6ms   (finished - started" in text
        # a task that reported its runtime shows it as it came
        ok, evs = _task(
            events,
            sent=0.0,
            received=0.010,
            started=0.020,
            end=("task-succeeded", 0.5),
            runtime=0.25,
        )
        sources.feed(evs)
        console.console_screen.tick()
        await pilot.pause()
        assert str(pane.get_cell(ok, "runtime")) == "250ms"
        assert (
            "Runtime     250ms\n"
            in TaskDetailScreen(console.model.get_task(ok), console.redact, None)
            .render_text()
            .plain
        )


async def test_wait_a_few_ms_negative_is_0ms_clock_skew_stays_dash(console, sources, events):
    async with console.run_test(size=(100, 30)) as pilot:
        # the worker received and started before the publisher stamped task-sent
        early, evs1 = _task(events, sent=0.008, received=0.002, started=0.004, end=None)
        skewed, evs2 = _task(events, sent=3.0, received=0.002, started=0.004, end=None)
        queued, evs3 = _task(events, sent=0.0, received=0.001, started=None, end=None)
        sources.feed(evs1 + evs2 + evs3)
        console.console_screen.tick()
        await pilot.pause()
        pane = console.query_one("#tasks", TasksPane)
        assert str(pane.get_cell(early, "wait")) == "0ms"
        assert str(pane.get_cell(skewed, "wait")) == "-"
        assert str(pane.get_cell(queued, "wait")) == "-"  # not started: unknown
        text = (
            TaskDetailScreen(console.model.get_task(early), console.redact, None)
            .render_text()
            .plain
        )
        assert "Wait        0ms\n" in text


@pytest.mark.parametrize("size", [(100, 30), (80, 24)])
async def test_rendered_rows_show_whole_cells(console, sources, events, size):
    async with console.run_test(size=size) as pilot:
        sources.feed([events.worker_online()])
        for _ in range(25):  # more rows than fit: the vertical scrollbar is there
            sources.feed(events.task("success")[1])
        slow, evs = _task(
            events,
            sent=0.0,
            received=0.001,
            started=0.002,
            end=("task-succeeded", 1.2),
            runtime=1.1,
        )
        sources.feed(evs)
        mine, evs = _task(events, sent=0.0, received=0.001, started=None, end=None)
        sources.feed(evs)
        console.console_screen.tick()
        await pilot.pause()
        assert console.screen.has_class("-compact") is (size[1] < 30)
        pane = console.query_one("#tasks", TasksPane)
        pane.highlight_uuid = mine
        pane.upsert(mine, pane.cells(console.model.get_task(mine)))
        await pilot.pause()
        lines = _pane_lines(console, pane)
        header = next(line for line in lines if "Runtime" in line).split()
        full = [h for h, _, _ in TASK_COLUMNS]
        # every header is whole, and the shown ones are the leading columns (the rest scroll)
        assert (
            header == full[: len(header)] and header[-1] == "Wait"
            if size[0] == 80
            else header == full
        )
        slow_line = _line_of(lines, slow, pane)
        assert slow_line.split()[6:8] == ["1.1s", "2ms"], slow_line  # runtime, wait
        if size[0] == 100:
            assert slow_line.split()[-1] == slow[:8], slow_line
        else:
            assert slow_line.rstrip().endswith(" 2ms"), (
                slow_line
            )  # nothing of the Time column peeks in
        assert "➤ ◔ RECEIVED " in _line_of(lines, mine, pane)
        # the marked row while a revoke is requested: the word stays whole
        console.model.mark_revoke_requested(mine)
        pane.upsert(mine, pane.cells(console.model.get_task(mine)))
        await pilot.pause()
        assert "➤ revoke req " in _line_of(_pane_lines(console, pane), mine, pane)
