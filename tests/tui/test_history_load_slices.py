"""The start-up history load: its rows are cleaned in the reading thread and merged into the
model in slices, so the console paints and takes keys while a large history comes in; the
status line says so; the event receiver starts while it runs."""

from __future__ import annotations

import threading
import time

from bench.bench_history import synthetic_rows
from tui.history import HistoryStore
from tui.sources.cluster import StaticSources
from tui.ui.app import AfirgenApp
from tui.ui.status_line import StatusFacts, status_line
from tui.ui.widgets.panes import TasksPane

ROWS = 20_000


class GatedStore(HistoryStore):
    """A store whose start-up read waits for the test to open the gate."""

    gate = threading.Event()

    def load_recent(self, limit: int = 10_000) -> list[dict]:
        assert self.gate.wait(30), "the test never opened the gate"
        return super().load_recent(limit)


class WatchedSources(StaticSources):
    """StaticSources that note how far the history load was when the receiver started."""

    app: AfirgenApp | None = None
    loading_at_start: object = "not started"

    def start(self) -> None:
        assert self.app is not None
        self.loading_at_start = self.app.console_screen.history.loading()
        super().start()


async def test_a_large_history_is_merged_behind_live_events_in_slices(screen_settings, events):
    store = GatedStore(screen_settings.history_db)
    store.gate = threading.Event()
    planted = list(synthetic_rows(ROWS, end=time.time() - 60))  # oldest first
    redelivered = planted[ROWS // 2]
    redelivered.update(state="SUCCESS", finished=redelivered["sent"] + 1)
    store.upsert(planted)
    # a row the trust boundary must skip: its uuid is not a key
    store.upsert([{**planted[0], "uuid": "bad\x1b[31muuid"}])
    sources = WatchedSources(screen_settings)
    app = AfirgenApp(screen_settings, sources, history=store)
    sources.app = app
    seen: list[tuple[tuple[int, int] | None, str]] = []

    def probe() -> None:
        # a timer of the app's: it runs only when the UI thread is free between slices
        console = app.console_screen
        seen.append((console.history.loading(), str(console.query_one("#status").render())))

    async with app.run_test(size=(120, 30)) as pilot:
        console = app.console_screen
        # live at once: the receiver started while the history was still being read
        assert sources.loading_at_start == (0, -1)
        timer = app.set_interval(0.002, probe)
        # a task the cluster runs now, and one it runs again (redelivered) that the history
        # last saw succeed: both arrive before the history is in
        live, evs = events.task("started")
        sources.feed([events.worker_online(), *evs])
        sources.feed([events._ev("task-started", uuid=redelivered["uuid"], hostname="w1@box")])
        console.tick()
        await pilot.pause()
        pane = app.query_one("#tasks", TasksPane)
        assert console.history.loading() is not None, "the history was in before the test looked"
        # shown while the history loads, the latest activity on top
        assert pane.order == [redelivered["uuid"], live]
        # the operator moves to the other task while the history loads
        await pilot.press("down")
        assert pane.cursor_key() == live and pane.pinned
        store.gate.set()  # now the history is read
        deadline = time.monotonic() + 60
        while console.history.loaded_count == 0 and time.monotonic() < deadline:
            await pilot.pause(0.01)
        timer.stop()
        assert console.history.loaded_count == ROWS + 1, "the load did not finish"
        await pilot.pause()
        model = console.model
        assert len(model._tasks) == ROWS + 1  # the clean rows and the live task
        # first-seen order: the history first (oldest first), then what came live
        first_seen = [t.uuid for t in model.iter_tasks(newest_first=False)]
        assert first_seen[0] == planted[0]["uuid"]
        assert first_seen[-2:] == [live, redelivered["uuid"]]
        # the redelivered task keeps what the cluster says now; the history fills its gaps
        rec = model.get_task(redelivered["uuid"])
        assert rec.state == "STARTED" and rec.name == redelivered["name"]
        assert console.sources.boundary.history.invalid == 1  # the bad uuid, counted
        assert pane.order[:2] == [redelivered["uuid"], live]  # the newest activity on top
        assert len(pane.order) == 1000  # the pane rebuilt from the whole model (row cap)
        assert pane.cursor_key() == live and pane.pinned  # the operator's row, still
        assert console.history.loading() is None
        assert "history" not in str(console.query_one("#status").render())
        # the oldest history rows are the first evicted (they are behind everything)
        model.max_tasks = ROWS
        model.merge_task_info(events.task("sent")[0], name="x")
        model.apply([])
        assert model.get_task(planted[0]["uuid"]) is None
        assert model.get_task(live) is not None
    store.close()
    merging = [
        (state, text) for state, text in seen if state is not None and 0 < state[0] < state[1]
    ]
    # the timer ran between slices: the UI thread was not held for the whole merge
    assert merging, f"no tick of the UI between slices; saw {[s for s, _ in seen][:20]}"
    assert any("history" in text for _, text in seen), "the status line never said it loads"


def test_the_status_line_says_how_far_the_history_load_is():
    facts = StatusFacts(broker="redis://h:6379/0", connection="● connected")
    reading = status_line(StatusFacts(**{**facts.__dict__, "history_loading": (0, -1)}), 120)
    assert "reading history" in reading.plain
    merging = status_line(
        StatusFacts(**{**facts.__dict__, "history_loading": (40_000, 200_000)}), 120
    )
    assert "loading history 40,000/200,000" in merging.plain
    # narrow: the counts give way, the words stay
    narrow = status_line(
        StatusFacts(**{**facts.__dict__, "history_loading": (40_000, 200_000)}), 50
    )
    assert "loading history" in narrow.plain and "40,000" not in narrow.plain
    assert "history" not in status_line(facts, 120).plain
