"""History in the console: it survives a restart, H searches all of it, E exports it."""

from __future__ import annotations

import csv
import time

import openpyxl
import pypdf

from tui.history import HistoryStore
from tui.sources.cluster import StaticSources
from tui.ui.app import AfirgenApp
from tui.ui.screens.forms import ChoiceScreen
from tui.ui.screens.history_search import HistorySearchScreen
from tui.ui.screens.task_detail import TaskDetailScreen
from tui.ui.widgets.panes import TasksPane


async def settle(pilot, app, predicate, timeout=10.0, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await app.workers.wait_for_complete()
        await pilot.pause()
        if predicate():
            return
    raise AssertionError(
        f"timed out waiting for {message}; screen {app.screen}; notes {[n.message for n in app._notifications]}"
    )


def new_console(settings, history):
    sources = StaticSources(settings)
    app = AfirgenApp(settings, sources, autostart=False, history=history)
    sources.start()
    return app, sources


async def test_history_survives_a_restart_and_search_finds_it(screen_settings, events):
    store = HistoryStore(screen_settings.history_db)
    app, sources = new_console(screen_settings, store)
    ids = {}
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
    store.close()
    assert app.console_screen.history.writer is None  # closed (flushed) on quit

    # a new console on the same file finds the history at once
    store = HistoryStore(screen_settings.history_db)
    app, _ = new_console(screen_settings, store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(
            pilot,
            app,
            lambda: app.console_screen.history.loaded_count == 3,
            message="history loaded",
        )
        pane = app.query_one("#tasks", TasksPane)
        assert pane.row_keys == set(ids)
        failed = next(u for u, o in ids.items() if o == "failure")
        assert "FAILURE" in str(pane.get_cell(failed, "state"))
        # H: search the persisted history, incl. args text
        await pilot.press("H")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HistorySearchScreen)
        screen.run_search("state:failure since:1h")
        await settle(pilot, app, lambda: len(screen.rows) == 1, message="search result")
        assert screen.rows[0]["uuid"] == failed
        third = list(ids)[2]
        screen.run_search("args:102")
        await settle(
            pilot, app, lambda: [r["uuid"] for r in screen.rows] == [third], message="args search"
        )
        screen.run_search("since:nonsense")
        await pilot.pause()
        assert "neither an age" in str(screen.query_one("#history-status").render())
        # an unreadable term is named, and the previous results do not stay as its answer
        assert screen.rows == [] and screen.query_one("#history-results").row_count == 0
        screen.run_search("prio:>=abc state:failed")
        await pilot.pause()
        assert "bad priority in 'prio:>=abc'" in str(screen.query_one("#history-status").render())
        screen.run_search("state:failed")  # the everyday word for FAILURE
        await settle(
            pilot, app, lambda: [r["uuid"] for r in screen.rows] == [failed], message="state:failed"
        )
        # Enter on a result opens its detail, with e-mail addresses redacted
        screen.run_search("")
        await settle(pilot, app, lambda: len(screen.rows) == 3, message="all rows")
        screen.query_one("#history-results").focus()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, TaskDetailScreen)
        assert "ravi@example.in" not in app.screen.render_text().plain
    store.close()


async def test_export_csv_xlsx_and_pdf(screen_settings, events):
    store = HistoryStore(screen_settings.history_db)
    app, sources = new_console(screen_settings, store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(
            pilot, app, lambda: app.console_screen.history.writer is not None, message="writer"
        )
        for outcome in ("success", "failure", "success", "retry"):
            sources.feed(events.task(outcome, args="[7, 'priya.s@example.in']")[1])
        app.console_screen.tick()
        await pilot.pause()
        # cancel path
        await pilot.press("E")
        await pilot.pause()
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert app.console_screen.history.exports == []
        for n, key in enumerate(("c", "x", "p"), start=1):
            await pilot.press("E")
            await pilot.pause()
            await pilot.press(key)
            await settle(
                pilot,
                app,
                lambda n=n: len(app.console_screen.history.exports) == n,
                message=f"export {key}",
            )
        assert all(not e.error for e in app.console_screen.history.exports), [
            e.error for e in app.console_screen.history.exports
        ]
        csv_path, xlsx_path, pdf_path = (e.path for e in app.console_screen.history.exports)
    store.close()

    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and {r["State"] for r in rows} == {"SUCCESS", "FAILURE", "RETRY"}
    assert "priya.s@example.in" not in open(csv_path, encoding="utf-8-sig").read()
    book = openpyxl.load_workbook(xlsx_path)
    sheet = book.worksheets[0]
    assert sheet.freeze_panes == "A2" and sheet.max_row == 5
    text = "".join(page.extract_text() for page in pypdf.PdfReader(pdf_path).pages)
    assert "Incident report" in text and "PermanentTaskError" in text
    assert "priya.s@example.in" not in text
