"""The console's history writer under poison events: real tasks persisted, losses on the status line."""

from __future__ import annotations

import sqlite3
import time

from tui.history import HistoryStore
from tui.sources.cluster import StaticSources
from tui.ui.app import AfirgenApp


async def settle(pilot, app, predicate, timeout=10.0, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await app.workers.wait_for_complete()
        await pilot.pause()
        if predicate():
            return
    raise AssertionError(f"timed out waiting for {message}")


def status(app) -> str:
    return str(app.query_one("#status").render())


def history_console(settings) -> tuple[HistoryStore, StaticSources, AfirgenApp]:
    """A console with timers off and a history file of its own."""
    store = HistoryStore(settings.history_db)
    sources = StaticSources(settings)
    app = AfirgenApp(settings, sources, autostart=False, history=store)
    sources.start()
    return store, sources, app


async def writer_ready(pilot, app) -> None:
    await settle(
        pilot, app, lambda: app.console_screen.history.writer is not None, message="writer"
    )


def saved_uuids(settings) -> set[str]:
    conn = sqlite3.connect(settings.history_db)
    try:
        return {u for (u,) in conn.execute("SELECT uuid FROM tasks")}
    finally:
        conn.close()


async def test_poison_events_cost_no_real_task_and_losses_show(
    screen_settings, events, monkeypatch
):
    import tui.history.store as history

    # let an int past 64 bits reach SQLite, as a field nobody cleans would: the fallback's case
    monkeypatch.setattr(history, "_clean_int", lambda v: (v, False))
    store, sources, app = history_console(screen_settings)
    real = []
    async with app.run_test(size=(200, 30)) as pilot:
        await writer_ready(pilot, app)
        assert "history:" not in status(app)
        for i in range(12):
            uid, evs = events.task("success")
            real.append(uid)
            sources.feed(evs)
            if i % 4 == 0:
                app.console_screen.history.writer.submit(
                    [{"uuid": f"poison-{i}", "state": "SENT", "priority": 2**70}]
                )
        app.console_screen.tick()
        app.console_screen.history.writer.flush()
        app.console_screen.update_status()
        await pilot.pause()
        shown = status(app)
        await pilot.press("q")
    assert "history: 3 rows not saved (integer too large)" in shown
    saved = saved_uuids(screen_settings)
    assert set(real) <= saved and not any(u.startswith("poison-") for u in saved)
    store.close()


async def test_tasks_applied_by_a_slice_after_the_last_tick_are_saved_on_quit(
    screen_settings, events
):
    """Events are applied between ticks (ConsoleScreen.absorb) and the tick hands changed
    tasks to the writer: on quit, those a slice applied since the last tick are saved too."""
    store, sources, app = history_console(screen_settings)
    uuids = []
    async with app.run_test(size=(120, 30)) as pilot:
        await writer_ready(pilot, app)
        for _ in range(5):
            uid, evs = events.task("success")
            uuids.append(uid)
            sources.feed(evs)
        assert app.console_screen.absorb(budget_s=60.0) > 0  # a slice, no tick after it
        assert app.console_screen.not_yet_persisted() >= set(uuids)
        app.console_screen.history.close()  # what the console does on quit
        await pilot.press("q")
    saved = saved_uuids(screen_settings)
    assert set(uuids) <= saved
    store.close()
