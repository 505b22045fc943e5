"""Issue 14, items 3, 7 and 8: latest activity on top, counters that say one thing, and
the elapsed time of running tasks (with a long-running flag and count)."""

from __future__ import annotations

import time

from afirgen_tasks.settings import load_settings
from tests.tui.test_console_screens import cell_text
from tui.sources.inspection import InspectionResult
from tui.ui.commands import help_rows
from tui.ui.widgets.panes import TasksPane, WorkersPane


def status_of(app) -> str:
    return str(app.query_one("#status").render())


# ---- 3: newest activity on top ------------------------------------------------------------
async def test_a_job_sent_first_that_fails_last_comes_to_the_top(console, sources, events):
    async with console.run_test(size=(120, 36)) as pilot:
        slow, slow_evs = events.task("failure")
        sources.feed(slow_evs[:3])  # sent, received, started
        burst = []
        for _ in range(5):
            uuid, evs = events.task("success")
            burst.append(uuid)
            sources.feed(evs)
        console.console_screen.tick()
        await pilot.pause()
        pane = console.query_one("#tasks", TasksPane)
        assert pane.order == [*reversed(burst), slow]  # the burst came after it
        slow_evs[3]["timestamp"] = events.t + 1  # ...and then it failed, after the whole burst
        sources.feed(slow_evs[3:])
        console.console_screen.tick()
        await pilot.pause()
        assert pane.order[0] == slow, pane.order
        assert pane.get_row_index(slow) == 0 and "FAILURE" in cell_text(pane, slow, "state")
        assert pane.order[1:] == list(reversed(burst))


async def test_new_rows_above_a_pinned_cursor_are_counted_until_home(console, sources, events):
    async with console.run_test(size=(120, 36)) as pilot:
        first = []
        for _ in range(6):
            uuid, evs = events.task("started")
            first.append(uuid)
            sources.feed(evs)
        screen = console.console_screen
        screen.tick()
        await pilot.pause()
        pane = console.query_one("#tasks", TasksPane)
        pane.focus()
        await pilot.press("down", "down")
        chosen = pane.cursor_key()
        assert pane.pinned and chosen == first[3]
        assert "new ↑" not in status_of(console)
        # two new tasks and new activity on an old one (first[0] finishes): three rows above
        sources.feed(events.task("sent")[1] + events.task("sent")[1])
        sources.feed([events._ev("task-succeeded", uuid=first[0], hostname="w1@box", runtime=1.0)])
        screen.tick()
        await pilot.pause()
        assert pane.cursor_key() == chosen  # the cursor stays on the operator's row
        assert pane.order[0] == first[0]
        assert pane.cursor_row == 5
        assert pane.new_above() == 3
        assert "3 new ↑" in status_of(console), status_of(console)
        # moving the cursor up past one of them reads it
        await pilot.press("up", "up", "up")
        screen.tick()
        await pilot.pause()
        assert "2 new ↑" in status_of(console), status_of(console)
        # Home: back to the top, the count is gone
        await pilot.press("home")
        screen.tick()
        await pilot.pause()
        assert pane.cursor_row == 0 and not pane.pinned
        assert "new ↑" not in status_of(console), status_of(console)
        # and following the top again, new rows are not "new above"
        sources.feed(events.task("sent")[1])
        screen.tick()
        await pilot.pause()
        assert pane.cursor_row == 0 and "new ↑" not in status_of(console)


async def test_a_filter_shows_the_latest_activity_first_too(console, sources, events):
    async with console.run_test(size=(120, 36)) as pilot:
        early, early_evs = events.task("failure", queue="email")
        sources.feed(early_evs[:3])
        later, later_evs = events.task("failure", queue="email")
        sources.feed(later_evs)
        early_evs[3]["timestamp"] = events.t + 1  # early fails after later did
        sources.feed(early_evs[3:])
        screen = console.console_screen
        screen.tick()
        screen.set_filter("state:failure")
        await pilot.pause()
        pane = console.query_one("#tasks", TasksPane)
        assert pane.order == [early, later]  # early failed last
        # a task that fails while the filter is on appears (at the top)
        third, third_evs = events.task("failure")
        sources.feed(third_evs[:3])
        screen.tick()
        assert not pane.has_key(third)
        third_evs[3]["timestamp"] = events.t + 2
        sources.feed(third_evs[3:])
        screen.tick()
        await pilot.pause()
        assert pane.order[0] == third


# ---- 7: counters that say one thing ------------------------------------------------------
def _stats(processes: int, limit: int, autoscaler: tuple[int, int] | None) -> dict:
    stats: dict = {
        "pool": {
            "implementation": "celery.concurrency.prefork:TaskPool",
            "max-concurrency": limit,
            "processes": list(range(100, 100 + processes)),
        }
    }
    if autoscaler:
        stats["autoscaler"] = {"max": autoscaler[0], "min": autoscaler[1]}
    return stats


async def test_conc_done_and_fail_read_plainly_from_one_source(console, sources, events):
    async with console.run_test(size=(160, 36)) as pilot:
        host, other = "w1@box", "w2@box"
        sources.feed([events.worker_online(host), events.worker_online(other)])
        for outcome in ("success", "success", "failure", "started"):
            sources.feed(events.task(outcome, host=host)[1])
        # the worker's heartbeat: 4 accepted (the running one too)
        sources.feed([events.heartbeat(host, active=1, processed=4)])
        sources.inspection = InspectionResult(
            stats={
                host: _stats(4, 1, (4, 1)),  # what --autoscale=4,1 reports under load
                other: _stats(3, 2, None),  # --concurrency=2, then grown by one
            },
            active_queues={host: ["default"], other: ["default"]},
            taken_at=time.time(),
        )
        screen = console.console_screen
        screen.tick()
        screen.inspect_workers()
        await console.workers.wait_for_complete()
        await pilot.pause()
        pane = console.query_one("#workers", WorkersPane)
        assert cell_text(pane, host, "conc") == "4 (auto 1–4)"
        assert cell_text(pane, other, "conc") == "3 +1"
        assert cell_text(pane, host, "done") == "2"  # not 4: the running job is not done
        assert cell_text(pane, host, "failed") == "1"
        # the worker restarts: its own counter starts at 0 again, the columns do not split
        sources.feed([events.worker_online(host), events.heartbeat(host, processed=0)])
        sources.feed(events.task("failure", host=host)[1])
        screen.tick()
        await pilot.pause()
        assert (cell_text(pane, host, "done"), cell_text(pane, host, "failed")) == ("2", "2")
    helps = dict(help_rows())
    assert "events this console saw" in helps["Workers: Done Fail"]
    assert "auto" in helps["Workers: Conc"]


# ---- 8: running tasks show their elapsed time ----------------------------------------------
async def test_running_task_shows_elapsed_time_and_a_long_running_flag(console, sources, events):
    async with console.run_test(size=(120, 36)) as pilot:
        screen = console.console_screen
        assert screen.settings.console_long_running_after == 600  # the default
        started_at = time.time() - 30
        uuid, evs = events.task("started")
        evs[-1]["timestamp"] = started_at
        done, done_evs = events.task("success")
        sources.feed(evs + done_evs)
        screen.tick()
        await pilot.pause()
        pane = console.query_one("#tasks", TasksPane)
        first = cell_text(pane, uuid, "runtime")
        assert first.startswith("▸") and first.endswith("s"), first
        assert 29 <= float(first[1:-1]) <= 60, first
        assert cell_text(pane, done, "runtime") == "250ms"  # a finished runtime: no mark
        assert "running >" not in status_of(console)

        screen.refresh_running(started_at + 65)
        await pilot.pause()
        assert cell_text(pane, uuid, "runtime") == "▸1m05s"

        screen.refresh_running(started_at + 700)
        screen.update_status()
        await pilot.pause()
        assert cell_text(pane, uuid, "runtime") == "!11m40s"
        assert "bold yellow reverse" in str(pane.get_cell(uuid, "runtime").style)
        assert "1 running > 10m" in status_of(console), status_of(console)

        # it finishes: a plain runtime, and the count is gone
        sources.feed([events._ev("task-succeeded", uuid=uuid, hostname="w1@box", runtime=701.0)])
        screen.tick()
        screen.refresh_running(started_at + 702)
        screen.update_status()
        await pilot.pause()
        assert cell_text(pane, uuid, "runtime") == "11m41s"
        assert "running >" not in status_of(console)


async def test_only_running_rows_are_redrawn(console, sources, events):
    async with console.run_test(size=(120, 36)) as pilot:
        screen = console.console_screen
        running = []
        for _ in range(3):
            uuid, evs = events.task("started")
            running.append(uuid)
            sources.feed(evs)
        for _ in range(20):
            sources.feed(events.task("success")[1])
        screen.tick()
        await pilot.pause()
        pane = console.query_one("#tasks", TasksPane)
        assert pane.refresh_running(console.model.get_task, time.time() + 90) == 3


def test_long_running_after_setting_from_config_and_env(tmp_path, monkeypatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[console]\nlong_running_after = 120\n")
    monkeypatch.setenv("AFIRGEN_CONFIG", str(config))
    monkeypatch.delenv("AFIRGEN_CONSOLE_LONG_RUNNING_AFTER", raising=False)
    assert load_settings(None).console_long_running_after == 120
    monkeypatch.setenv("AFIRGEN_CONSOLE_LONG_RUNNING_AFTER", "0")
    assert load_settings(None).console_long_running_after == 0  # 0 turns the flag off


# ---- issue 17: a flood tick builds only the cells of rows that are drawn -------------------
async def test_a_flood_tick_builds_cells_only_for_the_rows_drawn(console, sources, events):
    async with console.run_test(size=(120, 36)) as pilot:
        screen = console.console_screen
        pane = console.query_one("#tasks", TasksPane)
        built: list[str] = []
        cells = pane.cells

        def counting(task: object, now: float | None = None) -> list:
            built.append(task.uuid)  # type: ignore[attr-defined]
            return cells(task, now)

        pane.cells = counting  # type: ignore[method-assign]
        uuids = []
        for _ in range(400):
            uuid, evs = events.task("success")
            uuids.append(uuid)
            sources.feed(evs)
        screen.tick()
        assert pane.row_count == 400
        assert built == [], "no cells are built in the tick itself"
        await pilot.pause()
        visible = pane.scrollable_content_region.height
        assert 0 < len(built) <= visible + 5, (len(built), visible)
        # the newest is drawn on top, with its real cells
        assert pane.cursor_key() == uuids[-1]
        assert "SUCCESS" in cell_text(pane, uuids[-1], "state")
        # a row never drawn is built when read, and shows what its task is now
        assert uuids[0] not in built
        assert cell_text(pane, uuids[0], "uuid") == uuids[0][:8]
        assert uuids[0] in built


async def test_slices_between_ticks_apply_events_and_the_tick_shows_them(console, sources, events):
    """ConsoleScreen.absorb (the 50 ms slices): events are applied in whole chunks within a
    budget, the panes wait for the tick, and the tick shows everything the slices applied."""
    async with console.run_test(size=(120, 36)) as pilot:
        screen = console.console_screen
        pane = console.query_one("#tasks", TasksPane)
        uuids, evs = [], []
        for _ in range(300):
            uuid, task_evs = events.task("success")
            uuids.append(uuid)
            evs += task_evs
        sources.feed(evs)
        # a zero budget: exactly one chunk, the rest stays buffered
        assert screen.absorb(budget_s=0.0, chunk=100) == 100
        assert sources.buffered == len(evs) - 100
        assert screen.absorb(budget_s=60.0, chunk=100) == len(evs) - 100
        assert not sources.buffered
        assert all(console.model.get_task(u) is not None for u in uuids)
        assert pane.row_count == 0, "the panes change only at the tick"
        applied = screen.events_applied
        assert applied == len(evs)
        screen.tick()
        await pilot.pause()
        assert pane.row_keys == set(uuids)
        assert pane.cursor_key() == uuids[-1]  # latest activity on top
        assert screen.events_applied == applied  # the tick had nothing left to apply
        # the flow the slices counted reaches the Queues pane's rates at the tick
        assert any(r.rate_in > 0 for r in screen.queue_rows.values())


async def test_the_pinned_row_stays_when_a_flood_pushes_it_past_the_row_cap(
    console, sources, events
):
    """Operator review: at 5,000 tasks/s the chosen row sank past the 1,000-row cap within
    0.2 s and the cursor landed on a neighbour (r/t/R/Enter would have acted on it)."""
    from tui.ui.widgets.panes import TASK_ROW_CAP

    async with console.run_test(size=(120, 36)) as pilot:
        screen = console.console_screen
        pane = console.query_one("#tasks", TasksPane)
        first = []
        for _ in range(50):
            uuid, evs = events.task("success")
            first.append(uuid)
            sources.feed(evs)
        screen.tick()
        await pilot.pause()
        chosen = first[-10]
        assert pane.select(chosen) and pane.pinned
        for _ in range(TASK_ROW_CAP + 200):
            sources.feed(events.task("success")[1])
        screen.tick()
        await pilot.pause()
        assert pane.row_count == TASK_ROW_CAP
        assert pane.cursor_key() == chosen
        assert pane.get_row_index(chosen) == TASK_ROW_CAP - 1  # kept, as the last row
        assert not pane.has_key(first[0])  # its neighbours went past the cap as before
        # Home: it follows the top again, and the row is let go at the next tick
        await pilot.press("home")
        sources.feed(events.task("success")[1])
        screen.tick()
        await pilot.pause()
        assert not pane.has_key(chosen)


def test_worker_label_names_the_worker_not_celery_s_default_node_name() -> None:
    from tui.ui.widgets.panes import worker_label

    assert worker_label("w1@fir-worker-01") == "w1"
    assert worker_label("celery@fir-worker-01") == "fir-worker-01"
    assert worker_label("celery") == "celery"
    assert worker_label(None) == "-" and worker_label("") == "-"


async def test_with_many_tasks_the_filter_applies_when_typing_pauses(
    console, sources, events, monkeypatch
):
    """Each filter change scans every task in memory: with many, typing is not slowed by a
    scan per key (operator review: ten keys during a flood froze the screen for 5 s)."""
    import tui.ui.console as console_module

    monkeypatch.setattr(console_module, "FILTER_DEBOUNCE_TASKS", 10)
    async with console.run_test(size=(120, 36)) as pilot:
        screen = console.console_screen
        bad, evs = events.task("failure")
        sources.feed(evs)
        for _ in range(20):
            sources.feed(events.task("success")[1])
        screen.tick()
        await pilot.pause()
        pane = console.query_one("#tasks", TasksPane)
        applied: list[str] = []
        real = screen.set_filter
        monkeypatch.setattr(screen, "set_filter", lambda text: (applied.append(text), real(text)))
        await pilot.press("slash", *"state:fail")
        assert applied == [], "not on every key"
        deadline = time.monotonic() + 10
        while not applied and time.monotonic() < deadline:  # the pause in typing
            await pilot.pause(0.05)
        await pilot.pause()
        assert applied == ["state:fail"] and pane.row_keys == {bad}
        # Enter applies at once
        await pilot.press("backspace", "enter")
        assert applied[-1] == "state:fai"
