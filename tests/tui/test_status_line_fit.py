"""The status line fits the terminal (operator review: at 120 columns with a filter on, the end
of the line fell off, the dropped-events count with it).  What matters most stays whole; the
least important parts are shortened or dropped first."""

from __future__ import annotations

import re
import time

import pytest

from tui.sources.events import CONNECTED, ReceiverStatus

FILTER = "state:failure queue:reports"


async def everything_counted(pilot, console, sources, events) -> None:
    """A filter on, a task marked, the cursor pinned with a new row above it, and every
    counter of the line non-zero."""
    screen = console.console_screen
    for outcome in ("failure", "failure", "failure", "started"):
        sources.feed(events.task(outcome, queue="reports")[1])
    sources.feed(["not an event", {"type": "task-sent"}])  # bad events
    sources.feed(events.task("failure", queue="reports", args="[" + "x" * 30_000 + "]")[1])
    sources.boundary.events.clean("queue: control characters shown")
    screen.tick()
    await pilot.press("3", "/", *"state:failure", "space", *"queue:reports", "enter")
    await pilot.pause()
    assert screen.task_filter.text == FILTER
    await pilot.press("down", "space")  # marks it; the cursor is off the top: pinned
    sources.feed(events.task("failure", queue="reports")[1])  # a row above the cursor
    screen.tick()
    sources.feed(events.task("success")[1])  # buffered: not drained yet
    sources._dropped = 1234  # the receiver fell behind
    sources.set_status(ReceiverStatus(CONNECTED, time.time(), connects=3))
    screen.long_running = 2
    screen.history.status_note = lambda: "history: 3 rows not saved (integer too large)"
    screen.update_status()
    await pilot.pause()


def on_screen(console) -> str:
    """The status line as the terminal shows it (the widget's width), not the whole Text."""
    return console.query_one("#status").render_line(0).text


@pytest.mark.parametrize("size", [(120, 36), (80, 24)])
async def test_what_matters_stays_whole_at_120_and_80_columns(console, sources, events, size):
    width = size[0]
    async with console.run_test(size=size) as pilot:
        await everything_counted(pilot, console, sources, events)
        screen = console.console_screen
        assert screen.tasks_pane.marked and screen.tasks_pane.new_above() == 1
        assert sources.buffered and screen.model.fields_clipped
        shown = on_screen(console).rstrip()
        assert len(shown) <= width and not shown.endswith("…"), shown
        # never cut: the connection state, the filter, the marks, the dropped and bad counts
        assert "● connected" in shown, shown
        assert f"filter: {FILTER} │" in shown, shown
        assert re.search(r"│ 1 marked( \(Esc clears\))? │", shown), shown
        assert re.search(r"│ ev (\d+↓ \d+✓ )?1,234✗ │", shown), shown
        assert re.search(r"│ 2 bad\b", shown), shown
        # what a part says is whole or absent: no word cut at the edge
        for word in re.findall(r"\S+$", shown):
            assert word in {"bad", "events", "saved", "skipped"} or word.endswith("✗"), shown


async def test_the_line_is_fitted_again_when_the_terminal_narrows(console, sources, events):
    async with console.run_test(size=(160, 36)) as pilot:
        await everything_counted(pilot, console, sources, events)
        wide = on_screen(console).rstrip()
        assert "2 running > 10m" in wide and "1,234✗" in wide, wide
        await pilot.resize_terminal(80, 24)
        for _ in range(40):  # the line is fitted after the layout has the new width
            await pilot.pause(0.05)
            narrow = on_screen(console).rstrip()
            if len(narrow) <= 80 and "1,234✗" in narrow:
                break
        assert len(narrow) <= 80 and "1,234✗" in narrow and FILTER in narrow, narrow
        assert "running" not in narrow, narrow
