"""Issue 14 (5) against a real Redis: two clusters (two dbs), one history file.

The console on cluster A records A's jobs; a console pointed at cluster B (another, empty
db) with the same history file shows none of them, and ``H`` finds only B's jobs unless
the search says ``cluster:all``.
"""

from __future__ import annotations

import time

import pytest

from afirgen_tasks.factory import create_app
from tui.history import HistoryStore
from tui.sources.cluster import BrokerSources
from tui.ui.app import AfirgenApp
from tui.ui.screens.history_search import HistorySearchScreen
from tui.ui.widgets.panes import TasksPane

pytestmark = pytest.mark.integration

EMAIL = "afirgen_tasks.email.send_notification_email"


async def until(pilot, predicate, timeout: float = 20.0, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


@pytest.fixture
def second_db(_db_allocator):
    """Another db of the test's own: cluster B."""
    db = _db_allocator.acquire()
    try:
        yield db
    finally:
        _db_allocator.release(db)


async def run_console(settings, send: int, check) -> list[str]:
    """Open the console as tui/run.py does, send ``send`` jobs on its cluster, wait until it
    has recorded them, run ``check(app, pilot, sent)``; returns the ids sent."""
    celery_app = create_app(settings, main="afirgen-tui")
    store = HistoryStore.from_settings(settings)
    sources = BrokerSources(settings, celery_app)
    app = AfirgenApp(settings, sources, celery_app=celery_app, history=store)
    sent: list[str] = []
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            await until(pilot, lambda: sources.status.state == "connected", message="receiver")
            history = app.console_screen.history
            await until(pilot, lambda: history.writer is not None, message="history loaded")
            await check(app, pilot, None)
            for i in range(send):
                sent.append(
                    celery_app.send_task(EMAIL, args=[f"c{i}@example.in"], queue="email").id
                )
            pane = app.query_one("#tasks", TasksPane)
            await until(pilot, lambda: set(sent) <= pane.row_keys, message="jobs on screen")
            history.writer.flush()
            await check(app, pilot, sent)
            await pilot.press("q")
    finally:
        sources.stop()
        store.close()
        celery_app.close()
    return sent


async def test_a_console_on_another_cluster_loads_and_searches_none_of_the_first(
    afirgen_settings, redis_server, redis_db, second_db
):
    on_a = afirgen_settings.model_copy(update={"console_refresh_interval": 0.1})
    url_b = redis_server.url(second_db)
    on_b = on_a.model_copy(update={"celery_broker_url": url_b, "celery_result_backend": url_b})
    assert on_a.history_db == on_b.history_db and on_a.cluster_id != on_b.cluster_id
    assert on_b.cluster_id.endswith(f":{redis_server.port}/{second_db}")

    async def nothing(app, pilot, sent):
        return None

    a_ids = await run_console(on_a, 3, nothing)

    async def on_cluster_b(app, pilot, sent):
        pane = app.query_one("#tasks", TasksPane)
        if sent is None:  # just opened: nothing of A's
            assert app.console_screen.history.loaded_count == 0
            assert not pane.row_keys & set(a_ids)
            return
        await pilot.press("H")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HistorySearchScreen)
        screen.run_search("name:email")
        await until(pilot, lambda: {r["uuid"] for r in screen.rows} == set(sent), message="B's")
        screen.run_search("name:email cluster:all")
        await until(
            pilot,
            lambda: {r["uuid"] for r in screen.rows} == set(sent) | set(a_ids),
            message="every cluster's",
        )
        clusters = {r["uuid"]: r["cluster"] for r in screen.rows}
        assert {clusters[u] for u in a_ids} == {on_a.cluster_id}
        assert {clusters[u] for u in sent} == {on_b.cluster_id}
        await pilot.press("escape")

    await run_console(on_b, 2, on_cluster_b)

    # and A, opened again, still has its own (and only its own)
    store = HistoryStore.from_settings(on_a)
    try:
        assert {r["uuid"] for r in store.load_recent(100)} == set(a_ids)
    finally:
        store.close()
