"""The start-up history load: its rows are cleaned in the reading thread and merged into the
model in slices, so the console paints and takes keys while a large history comes in; the
status line says so; the event receiver starts while it runs."""

from __future__ import annotations

import asyncio
import threading
import time

from bench.bench_history import synthetic_rows
from tui.history import HistoryStore
from tui.sources.cluster import StaticSources
from tui.ui.app import AfirgenApp
from tui.ui.history_service import HistoryService
from tui.ui.status_line import StatusFacts, status_line
from tui.ui.widgets.panes import TasksPane

ROWS = 20_000


class GatedStore(HistoryStore):
    """A store whose start-up read waits for the test to open the gate."""

    gate = threading.Event()

    def iter_recent(self, limit: int = 10_000, page: int = 5_000):
        assert self.gate.wait(30), "the test never opened the gate"
        yield from super().iter_recent(limit, page)


def gated_console(settings, rows: int):
    """A console on a history of ``rows`` tasks whose read waits for ``store.gate``."""
    store = GatedStore(settings.history_db)
    store.gate = threading.Event()
    store.upsert(list(synthetic_rows(rows, end=time.time() - 600)))
    sources = StaticSources(settings)
    app = AfirgenApp(settings, sources, autostart=False, history=store)
    sources.start()
    return app, sources, store


async def until_loaded(pilot, console) -> None:
    deadline = time.monotonic() + 30
    while console.history.loading() is not None and time.monotonic() < deadline:
        await pilot.pause(0.01)
    assert console.history.loading() is None, "the history load did not end"


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
        # the tasks it brought in: not the bad row (skipped), the redelivered task (live
        # already), nor the live task (which the writer may have saved before the read)
        assert console.history.loaded_count == ROWS - 1, "the load did not finish"
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
    assert "loading history  20%" in merging.plain
    # the same width however far it is: the parts after it stay put
    done = status_line(
        StatusFacts(**{**facts.__dict__, "history_loading": (199_999, 200_000)}), 120
    )
    assert "loading history  99%" in done.plain and len(done.plain) == len(merging.plain)
    # narrow: the words give way, the figure stays
    narrow = status_line(
        StatusFacts(**{**facts.__dict__, "history_loading": (40_000, 200_000)}), 50
    )
    assert "history  20%" in narrow.plain and "loading" not in narrow.plain
    assert "history" not in status_line(facts, 120).plain


def on_db(settings, db: int):
    url = f"redis://:pw@127.0.0.1:6379/{db}"  # never contacted: StaticSources
    return settings.model_copy(update={"celery_broker_url": url, "celery_result_backend": url})


async def test_a_cluster_switch_while_the_history_merges_stops_the_old_load(
    screen_settings, monkeypatch
):
    """Found by the attacker review: the old screen's slices went on after its widgets were
    gone (NoMatches in an asyncio callback) and its finished load started a backfill that
    wrote the old cluster's tasks under the new one (the store is shared)."""
    a, b = on_db(screen_settings, 0), on_db(screen_settings, 1)
    store = HistoryStore(a.history_db, cluster=a.cluster_id)
    store.upsert(list(synthetic_rows(ROWS, end=time.time() - 600)))
    backfills: list[tuple[str, str]] = []

    def backfill(self) -> None:  # the real one scans a result backend, then writes
        backfills.append((self.screen.settings.cluster_id, self.store.cluster))

    monkeypatch.setattr(HistoryService, "_backfill", backfill)
    app = AfirgenApp(
        a,
        StaticSources(a),
        autostart=False,
        history=store,
        connect=lambda s: (StaticSources(s), None),
    )
    errors: list[dict] = []
    async with app.run_test(size=(120, 30)) as pilot:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        first = app.console_screen
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = first.history.loading()
            if state is not None and 0 < state[0] < state[1]:
                break
            await pilot.pause(0.002)
        else:
            raise AssertionError("the merge was never seen under way")
        assert await app.switch_cluster(b)
        second = app.console_screen
        assert second is not first
        await until_loaded(pilot, second)
        await pilot.pause(0.3)
        assert first.history.loading() is None and first.history.loaded_count == 0
        notes = [n.message for n in app._notifications]
        assert not any(f"loaded {ROWS:,}" in n for n in notes), notes  # the old one said nothing
    store.close()
    assert not errors, [e.get("exception") or e.get("message") for e in errors]
    assert backfills == [(b.cluster_id, b.cluster_id)]  # the new cluster's only


async def test_a_full_model_takes_no_history_and_says_so_truly(screen_settings, events):
    settings = screen_settings.model_copy(update={"console_max_tasks": 200})
    app, sources, store = gated_console(settings, 200)
    async with app.run_test(size=(120, 30)) as pilot:
        console = app.console_screen
        for _ in range(200):
            sources.feed(events.task("success")[1])
        while sources.buffered:
            console.tick()
        assert console.model.task_count == 200
        store.gate.set()
        await until_loaded(pilot, console)
        assert console.model.task_count == 200
        assert console.history.loaded_count == 0
        assert not any("from the history" in n.message for n in app._notifications)
    store.close()


async def test_the_failures_screen_says_the_history_is_still_loading(screen_settings):
    app, _sources, store = gated_console(screen_settings, 50)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("f")
        await pilot.pause()
        header = str(app.screen.query_one("#failures-header").render())
        assert "no failures in memory" in header and "still loading" in header
        await pilot.press("escape")
        store.gate.set()
        await until_loaded(pilot, app.console_screen)
        await pilot.press("f")
        await pilot.pause()
        assert "still loading" not in str(app.screen.query_one("#failures-header").render())
    store.close()


async def test_a_task_the_history_saw_started_on_a_worker_not_online_is_not_long_running(
    screen_settings, events
):
    """An operator review found "3,976 running > 10m" after a restart: yesterday's tasks the
    history last saw STARTED, on workers long gone.  Only a task on a worker online now is
    counted; its row keeps the last state seen."""
    store = HistoryStore(screen_settings.history_db)
    day_ago = time.time() - 86_400
    store.upsert(
        [
            {
                "uuid": "yesterday",
                "name": "afirgen_tasks.reports.generate_pdf_report",
                "state": "STARTED",
                "hostname": "gone@box",
                "sent": day_ago,
                "started": day_ago + 1,
            }
        ]
    )
    sources = StaticSources(screen_settings)
    app = AfirgenApp(screen_settings, sources, autostart=False, history=store)
    sources.start()
    async with app.run_test(size=(120, 30)) as pilot:
        console = app.console_screen
        await until_loaded(pilot, console)
        now = time.time()
        live, evs = events.task("started")
        evs[-1]["timestamp"] = now - 700  # on w1@box, which its events show online
        sources.feed(evs)
        console.tick()
        console.refresh_running(now + 1)
        assert console.model.get_task("yesterday").state == "STARTED"
        assert console.long_running == 1  # the live one only
        console.update_status()
        await pilot.pause()
        assert "1 running > 10m" in str(console.query_one("#status").render())
    store.close()
