"""Issue 14 (5, 9): the console shows its own cluster's history; H searches it unless told
``cluster:all``; E inside the history search exports exactly that search."""

from __future__ import annotations

import csv
import json
import time

from textual.widgets import DataTable

from tests.tui.test_history_screens import settle
from tui.actions import AuditLog
from tui.history import HistoryStore
from tui.sources.cluster import StaticSources
from tui.ui.app import AfirgenApp
from tui.ui.screens.forms import ChoiceScreen
from tui.ui.screens.history_search import HistorySearchScreen
from tui.ui.widgets.panes import TasksPane


def on_cluster(settings, db: int):
    url = f"redis://:pw@127.0.0.1:6379/{db}"
    return settings.model_copy(update={"celery_broker_url": url, "celery_result_backend": url})


def console_for(settings):
    """A console as tui/run.py opens it: the store of this settings' cluster."""
    store = HistoryStore.from_settings(settings)
    sources = StaticSources(settings)
    app = AfirgenApp(settings, sources, autostart=False, history=store)
    sources.start()
    return app, sources, store


def notes(app) -> list[str]:
    return [n.message for n in app._notifications]


async def test_another_cluster_shows_none_of_the_first_ones_tasks(screen_settings, events):
    on_a, on_b = on_cluster(screen_settings, 0), on_cluster(screen_settings, 1)
    assert on_a.cluster_id == "redis://127.0.0.1:6379/0" != on_b.cluster_id

    app, sources, store = console_for(on_a)
    a_ids = []
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot, app, lambda: app.console_screen.history.writer is not None)
        for outcome in ("success", "failure", "started"):  # the last one is running
            uid, evs = events.task(outcome, args="[1, 'FIR-A']")
            a_ids.append(uid)
            sources.feed(evs)
        app.console_screen.tick()
        await pilot.pause()
        await pilot.press("q")
    store.close()

    app, sources, store = console_for(on_b)
    b_ids = []
    async with app.run_test(size=(120, 36)) as pilot:
        history = app.console_screen.history
        await settle(pilot, app, lambda: history.writer is not None, message="history loaded")
        pane = app.query_one("#tasks", TasksPane)
        assert history.loaded_count == 0 and pane.row_keys == set()  # no phantom running job
        for outcome in ("success", "failure"):
            uid, evs = events.task(outcome, args="[2, 'FIR-B']")
            b_ids.append(uid)
            sources.feed(evs)
        app.console_screen.tick()
        history.writer.flush()
        await pilot.pause()
        assert pane.row_keys == set(b_ids)

        await pilot.press("H")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HistorySearchScreen)
        await settle(pilot, app, lambda: screen.shown is not None, message="first search")
        assert {r["uuid"] for r in screen.rows} == set(b_ids)
        status = str(screen.query_one("#history-status").render())
        assert "task(s) in" in status and "· cluster redis://127.0.0.1:6379/1 ·" in status
        assert "cluster:all searches every cluster" in status
        screen.run_search("state:failure")
        await settle(pilot, app, lambda: len(screen.rows) == 1, message="B's failure")
        assert screen.rows[0]["uuid"] == b_ids[1]

        screen.run_search("state:failure cluster:all")
        await settle(pilot, app, lambda: len(screen.rows) == 2, message="both failures")
        assert {r["uuid"] for r in screen.rows} == {a_ids[1], b_ids[1]}
        table = screen.query_one("#history-results", DataTable)
        assert "cluster" in table.columns  # rows of several clusters say which
        shown = {str(table.get_cell(str(i), "cluster")) for i in range(2)}
        assert shown == {on_a.cluster_id, on_b.cluster_id}
        screen.run_search("cluster:all")
        await settle(pilot, app, lambda: len(screen.rows) == 5, message="every task")
        screen.run_search("cluster:6379/0 state:started")
        await settle(pilot, app, lambda: len(screen.rows) == 1, message="A's running job")
        assert screen.rows[0]["uuid"] == a_ids[2]
        screen.run_search("cluster:nowhere")
        await settle(pilot, app, lambda: screen.shown is None, message="no such cluster")
        assert "no cluster matching 'nowhere'" in str(screen.query_one("#history-status").render())
        screen.run_search("")
        await settle(pilot, app, lambda: len(screen.rows) == 2, message="back to B")
        assert "cluster" not in table.columns
    store.close()
    # the audit lines of this console name its cluster
    audit = AuditLog(on_b.console_audit_log, cluster=app.actions.audit.cluster)
    assert app.actions.audit.cluster == on_b.cluster_id
    audit.write("purge", "email", {}, "purged 0", ok=True)
    line = json.loads(on_b.console_audit_log.read_text().splitlines()[-1])
    assert line["cluster"] == "redis://127.0.0.1:6379/1" and "pw" not in json.dumps(line)


async def test_e_in_the_history_search_exports_that_search(screen_settings, events):
    on_a, on_b = on_cluster(screen_settings, 0), on_cluster(screen_settings, 1)
    store_a = HistoryStore.from_settings(on_a)
    now = time.time()
    store_a.upsert(
        [
            {"uuid": f"a-{i}", "name": "t.report", "state": "FAILURE", "sent": now - 60 - i}
            for i in range(3)
        ]
    )
    store_a.upsert([{"uuid": "a-old", "name": "t.report", "state": "FAILURE", "sent": now - 9000}])
    store_a.close()

    app, sources, store = console_for(on_b)
    async with app.run_test(size=(120, 36)) as pilot:
        history = app.console_screen.history
        await settle(pilot, app, lambda: history.writer is not None)
        b_ids = []
        for outcome in ("failure", "success", "failure"):
            uid, evs = events.task(outcome)
            b_ids.append(uid)
            sources.feed(evs)
        app.console_screen.tick()
        history.writer.flush()
        # the main screen's filter is something else: E in the search must not use it
        app.console_screen.task_filter = type(app.console_screen.task_filter)("state:success")

        await pilot.press("H")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HistorySearchScreen)
        screen.query_one("#history-query").value = "state:failure since:2h cluster:all"
        screen.run_search("state:failure since:2h cluster:all")
        await settle(pilot, app, lambda: len(screen.rows) == 5, message="the search")
        shown = [r["uuid"] for r in screen.rows]
        assert "a-old" not in shown  # outside the time range

        screen.query_one("#history-results").focus()
        await pilot.press("E")
        await pilot.pause()
        choice = app.screen
        assert isinstance(choice, ChoiceScreen)
        assert "the 5 task(s) shown" in choice.question and "every cluster" in choice.question
        await pilot.press("c")
        await settle(pilot, app, lambda: len(history.exports) == 1, message="export")
        done = history.exports[0]
        assert not done.error and done.count == 5
        assert "exported 5 task(s)" in " ".join(notes(app))
        assert isinstance(app.screen, HistorySearchScreen)  # back in the search
    store.close()

    with open(done.path, newline="", encoding="utf-8-sig") as fh:
        exported = list(csv.DictReader(fh))
    assert [r["Task id"] for r in exported] == shown
    assert {r["Cluster"] for r in exported} == {on_a.cluster_id, on_b.cluster_id}
    assert {r["State"] for r in exported} == {"FAILURE"}
