"""The console headless against a real Redis and a real worker: events, inspect and queue polls."""

from __future__ import annotations

import asyncio
import time

import pytest

from afirgen_tasks.records import create_sample_db
from tui.sources.cluster import BrokerSources
from tui.ui.app import AfirgenApp
from tui.ui.widgets.panes import QueuesPane, TasksPane, WorkersPane

pytestmark = pytest.mark.integration


async def until(pilot, predicate, timeout: float = 20.0, message: str = "condition"):
    """Let the app run (its timers tick) until ``predicate()`` holds, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def cell(table, key, column) -> str:
    return str(table.get_cell(key, column))


@pytest.fixture
def live_settings(afirgen_settings):
    create_sample_db(afirgen_settings.fir_db_path, count=20, seed=3)
    return afirgen_settings.model_copy(
        update={
            "console_refresh_interval": 0.1,
            "console_queue_poll_interval": 0.2,
            "console_inspect_interval": 0.5,
            "console_control_timeout": 1.0,
        }
    )


async def test_console_follows_a_real_worker(live_settings, afirgen_app, worker_factory):
    worker = worker_factory(queues=("default", "email", "reports", "analytics"), concurrency=2)
    sources = BrokerSources(live_settings, afirgen_app)
    app = AfirgenApp(live_settings, sources, celery_app=afirgen_app)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(
            pilot, lambda: sources.status.state == "connected", message="receiver connected"
        )
        workers = app.query_one("#workers", WorkersPane)
        await until(pilot, lambda: workers.has_key(worker.hostname), message="worker row")
        await until(
            pilot,
            lambda: cell(workers, worker.hostname, "pool") == "prefork",
            message="inspect stats",
        )
        assert cell(workers, worker.hostname, "conc").startswith("2")
        # The Queues cell fits as many names as its width allows, then "+N" (120 columns)
        await until(
            pilot,
            lambda: "reports" in (app.model.get_worker(worker.hostname).queues or ()),
            message="active_queues",
        )
        assert cell(workers, worker.hostname, "queues") in (
            "analytics,default,+2",
            "analytics,default,email,reports",
        )

        ok = afirgen_app.send_task(
            "afirgen_tasks.reports.generate_pdf_report", args=[3], priority=9
        )
        bad = afirgen_app.send_task(
            "afirgen_tasks.reports.generate_pdf_report", args=[987654], priority=2
        )
        tasks = app.query_one("#tasks", TasksPane)
        await until(
            pilot,
            lambda: tasks.has_key(ok.id) and "SUCCESS" in cell(tasks, ok.id, "state"),
            message="SUCCESS row",
        )
        await until(
            pilot,
            lambda: tasks.has_key(bad.id) and "FAILURE" in cell(tasks, bad.id, "state"),
            message="FAILURE row",
        )
        assert cell(tasks, ok.id, "prio") == "9" and cell(tasks, bad.id, "prio") == "2"
        assert cell(tasks, ok.id, "queue") == "reports"
        assert cell(tasks, ok.id, "worker") == worker.hostname.split("@")[0]
        record = app.model.get_task(bad.id)
        assert record is not None and "987654" in (record.exception or "")

        # a job waiting on a queue nobody consumes shows up in its priority band
        queues = app.query_one("#queues", QueuesPane)
        waiting = afirgen_app.send_task("afirgen_tasks.cleanup.cleanup_temp_files", priority=9)
        await until(
            pilot, lambda: cell(queues, "cleanup", "waiting") == "1", message="cleanup waiting 1"
        )
        assert cell(queues, "cleanup", "urgent") == "1"
        assert cell(queues, "cleanup", "consumers") == "0"
        assert cell(queues, "reports", "consumers") == "1"
        await until(pilot, lambda: tasks.has_key(waiting.id), message="sent row")
        assert "SENT" in cell(tasks, waiting.id, "state")
        # purge it ourselves (clean-up), the pane falls back to zero
        with afirgen_app.connection_for_write() as conn:
            conn.default_channel.queue_purge("cleanup")
        await until(
            pilot, lambda: cell(queues, "cleanup", "waiting") == "0", message="cleanup back to 0"
        )
        await pilot.press("q")
    await asyncio.sleep(0)


async def test_console_enables_task_events_on_a_worker_that_has_them_off(
    live_settings, afirgen_app, afirgen_env, tmp_path
):
    from tests.support.workers import WorkerProcess

    class EventsOffWorker(WorkerProcess):
        @property
        def argv(self) -> list[str]:
            return [
                a.replace("afirgen_tasks.celery_app", "tests.support.events_off_app")
                for a in super().argv
            ]

    worker = EventsOffWorker(
        afirgen_app,
        afirgen_env,
        tmp_path / "events-off.log",
        name="quiet",
        queues=("default", "cleanup"),
    )
    try:
        worker.start().wait_ready(30)
        # with events off, a task leaves no trace in the event stream
        silent = afirgen_app.send_task("afirgen_tasks.cleanup.cleanup_temp_files")
        silent.get(timeout=30)
        app = AfirgenApp(
            live_settings, BrokerSources(live_settings, afirgen_app), celery_app=afirgen_app
        )
        async with app.run_test(size=(120, 36)) as pilot:
            await until(
                pilot,
                lambda: worker.hostname in app.console_screen.events_switched_on,
                20,
                "events switched on",
            )
            # App.notify posts a message: the toast is added on the app's next turn
            await until(
                pilot,
                lambda: any("task events were off" in n.message for n in app._notifications),
                5,
                "the notification that events were switched on",
            )
            loud = afirgen_app.send_task("afirgen_tasks.cleanup.cleanup_temp_files")
            tasks = app.query_one("#tasks", TasksPane)
            await until(
                pilot,
                lambda: tasks.has_key(loud.id) and "SUCCESS" in cell(tasks, loud.id, "state"),
                20,
                "task events flow after enable_events",
            )
    finally:
        worker.cleanup()
