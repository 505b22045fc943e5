"""Zoom (z) fills the screen with one pane and keeps the status line on top: the
connection state, READ-ONLY, the filter, the marks and the dropped count always show."""

from __future__ import annotations

import pytest
from textual.widgets import Footer, Static


@pytest.mark.parametrize("size", [(80, 24), (120, 36)])
async def test_zoom_keeps_the_status_line_on_top_and_the_footer(console, size):
    async with console.run_test(size=size) as pilot:
        await pilot.press("3", "z")
        await pilot.pause()
        screen = console.screen
        status = screen.query_one("#status", Static)
        tasks = screen.query_one("#tasks")
        assert screen.maximized is tasks
        assert status.region.y == 0 and status.region.height == 1
        assert tasks.region.y == 1 and tasks.region.bottom <= size[1] - 1
        assert screen.query_one(Footer).region.y == size[1] - 1
        assert "connected" in str(status.content) or "connecting" in str(status.content)
        await pilot.press("z")  # back to the three panes
        await pilot.pause()
        assert screen.maximized is None and screen.query_one("#queues").region.height > 0
