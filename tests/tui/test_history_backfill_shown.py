"""Tasks the backfill found in the result backend reach the model and the Tasks pane.

``HistoryBackfilled`` subclasses ``HistoryLoaded``; Textual picks a handler by the message's
own name, so the console needs ``on_history_backfilled`` (found by
tests/integration/test_fuzz_hostile.py::test_hostile_history_rows_planted_before_start).
"""

from __future__ import annotations

import time

from tui.history import HistoryStore
from tui.sources.cluster import StaticSources
from tui.ui.app import AfirgenApp
from tui.ui.messages import HistoryBackfilled


async def test_backfilled_tasks_are_shown_and_marked(screen_settings) -> None:
    """A HistoryBackfilled posted to the console screen puts its rows in the model and
    marks them as filled in from the backend."""
    store = HistoryStore(screen_settings.history_db)
    sources = StaticSources(screen_settings)
    app = AfirgenApp(screen_settings, sources, autostart=False, history=store)
    now = time.time()
    row = {
        "uuid": "from-backend-1",
        "name": "afirgen_tasks.x.y",
        "state": "SUCCESS",
        "finished": now,
        "first_seen": now,
        "source": "backend",
    }
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            app.console_screen.post_message(HistoryBackfilled([row], ""))
            deadline = time.monotonic() + 5
            while app.model.get_task("from-backend-1") is None and time.monotonic() < deadline:
                await pilot.pause(0.05)
            assert app.model.get_task("from-backend-1") is not None
            assert "from-backend-1" in app.console_screen.tasks_pane.backend_uuids
    finally:
        store.close()
