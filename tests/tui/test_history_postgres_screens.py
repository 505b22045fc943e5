"""The console on a shared PostgreSQL history: tasks persisted, a second console (another
operator) finds them at start, ``H`` searches them, ``E`` exports them.

Live: a database of the run's own (tests/support/postgres.py); skipped, saying why, when no
PostgreSQL can be reached.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

import pytest

from tui.history import HistoryStore
from tui.ui.screens.history_search import HistorySearchScreen
from tui.ui.widgets.panes import TasksPane

from ..support.postgres import PostgresUnavailable, pg_database
from .test_history_screens import new_console, settle

pytest.importorskip("psycopg")


@pytest.fixture
def pg_settings(screen_settings) -> Iterator:
    try:
        with pg_database() as url:
            yield screen_settings.model_copy(update={"history_db": url})
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))


async def test_two_consoles_share_the_history_search_and_export_it(pg_settings, events):
    first = HistoryStore.from_settings(pg_settings)
    assert type(first).__name__ == "PostgresHistoryStore"
    app, sources = new_console(pg_settings, first)
    ids: dict[str, str] = {}
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(
            pilot, app, lambda: app.console_screen.history.writer is not None, message="writer"
        )
        for outcome in ("success", "failure", "success"):
            uid, evs = events.task(outcome, args=f"[{len(ids) + 100}, 'ravi@example.in']")
            ids[uid] = outcome
            sources.feed(evs)
        app.console_screen.tick()
        await pilot.pause()
        await pilot.press("q")
    first.close()
    failed = next(u for u, o in ids.items() if o == "failure")

    # another operator's console on the same database (its own store, its own connections)
    second = HistoryStore.from_settings(pg_settings)
    assert second.seen_by and second.count() == 3
    app, _ = new_console(pg_settings, second)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(
            pilot, app, lambda: app.console_screen.history.loaded_count == 3, message="loaded"
        )
        pane = app.query_one("#tasks", TasksPane)
        assert pane.row_keys == set(ids)
        assert "FAILURE" in str(pane.get_cell(failed, "state"))
        await pilot.press("H")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HistorySearchScreen)
        screen.run_search("state:failure since:1h")
        await settle(
            pilot, app, lambda: [r["uuid"] for r in screen.rows] == [failed], message="search"
        )
        third = list(ids)[2]
        screen.run_search("args:102")
        await settle(
            pilot, app, lambda: [r["uuid"] for r in screen.rows] == [third], message="args search"
        )
        await pilot.press("escape")
        await pilot.pause()
        # E: export the history to CSV
        await pilot.press("E")
        await pilot.pause()
        await pilot.press("c")
        await settle(
            pilot, app, lambda: len(app.console_screen.history.exports) == 1, message="export"
        )
        export = app.console_screen.history.exports[0]
        assert not export.error, export.error
    second.close()
    with open(export.path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and {r["State"] for r in rows} == {"SUCCESS", "FAILURE"}
    assert "ravi@example.in" not in open(export.path, encoding="utf-8-sig").read()
