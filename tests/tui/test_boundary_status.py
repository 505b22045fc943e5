"""The trust boundary's counters reach the status line; poisoned history rows load cleaned."""

from __future__ import annotations

import sqlite3
import time

from tests.tui.test_history_screens import new_console, settle
from tui.history import HistoryStore
from tui.ui.widgets.panes import TasksPane

OSC52 = "\x1b]52;c;SGFja2VkIQ==\x07"


async def test_status_line_counts_what_the_boundary_skipped_and_cleaned(console, sources, events):
    async with console.run_test(size=(200, 30)) as pilot:
        sources.feed(events.task("success")[1])
        sources.boundary.events.skip("event timestamp not a number")
        sources.boundary.events.skip("event is not a JSON object")
        sources.boundary.inspect.skip("stats: reply from a bad hostname")
        sources.boundary.events.clean("queue: control characters shown or cut")
        console.console_screen.tick()
        await pilot.pause()
        status = str(console.query_one("#status").render())
        assert "3 bad/unknown events skipped" in status, status
        assert "1 cleaned" in status, status


async def test_history_rows_written_before_the_fix_load_cleaned_and_counted(screen_settings):
    store = HistoryStore(screen_settings.history_db)
    now = time.time()
    store.upsert(
        [
            {
                "uuid": f"u{i}",
                "name": "afirgen_tasks.cleanup.cleanup_temp_files",
                "state": "SUCCESS",
                "queue": "cleanup",
                "priority": 5,
                "sent": now - 10,
                "finished": now - 5,
            }
            for i in range(3)
        ]
    )
    store.close()
    conn = sqlite3.connect(screen_settings.history_db)
    conn.execute(
        "UPDATE tasks SET queue = ?, priority = ? WHERE uuid = 'u0'", (OSC52, float(2**70))
    )
    conn.execute("UPDATE tasks SET sent = ?, finished = ? WHERE uuid = 'u1'", (-1e18, 1e300))
    conn.execute("UPDATE tasks SET uuid = ? WHERE uuid = 'u2'", ("u2\x1b[2J",))
    conn.commit()
    conn.close()

    store = HistoryStore(screen_settings.history_db)
    app, sources = new_console(screen_settings, store)
    async with app.run_test(size=(200, 30)) as pilot:
        await settle(
            pilot,
            app,
            # the tasks the history brought in: the row with an escape in its uuid is skipped
            lambda: app.console_screen.history.loaded_count == 2,
            message="history loaded",
        )
        pane = app.query_one("#tasks", TasksPane)
        assert pane.row_count == 2
        u0, u1 = app.model.get_task("u0"), app.model.get_task("u1")
        assert u0.queue == "␛]52;c;SGFja2VkIQ==␇" and u0.priority is None
        assert u1.sent is None and u1.finished is None
        tally = sources.boundary.history
        assert tally.invalid == 1 and tally.cleaned == 4, tally.reasons
        app.console_screen.tick()
        await pilot.pause()
        status = str(app.query_one("#status").render())
        assert "1 bad/unknown events skipped" in status and "4 cleaned" in status, status
        assert "\x1b" not in "".join(
            str(pane.get_cell(k, c)) for k in ("u0", "u1") for c in ("queue", "prio")
        )
