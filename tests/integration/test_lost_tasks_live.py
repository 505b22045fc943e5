"""Issue 14, items 4 and 6, against a real Redis and real ``celery worker`` processes.

* A worker SIGKILLed mid-job: the console's row reads LOST with the time the broker hands
  the job out again (the ``unacked_index`` score + the visibility timeout, checked against
  Redis here), stays LOST when the same worker comes back, and changes again when the job is
  redelivered and runs to SUCCESS.
* A queue purged in the console, the console restarted on the same history with the result
  backend saying PENDING for those tasks: the rows still read PURGED.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import pytest
from celery.result import AsyncResult

from tests.conftest import make_app
from tests.integration.test_actions_live import (
    cell,
    highlight,
    live_console,
    next_outcome,
    until,
)
from tests.integration.test_worker_faults import notify, with_smtp
from tui.core.formatting import lost_text
from tui.demo import SMTPSink
from tui.history import HistoryStore
from tui.sources.cluster import BrokerSources
from tui.sources.unacked import UnackedLocator
from tui.sources.validate import Tally
from tui.ui.app import AfirgenApp
from tui.ui.screens.task_detail import TaskDetailScreen
from tui.ui.widgets.panes import QueuesPane, TasksPane

pytestmark = pytest.mark.integration

CLEANUP = "afirgen_tasks.cleanup.cleanup_temp_files"
VISIBILITY_S = 20


def delivered_at(redis_client, task_id: str) -> float | None:
    """The ``unacked_index`` score of ``task_id``'s message, read the plain way (whole hash)."""
    for tag, value in redis_client.hgetall("unacked").items():
        message = json.loads(value)[0]
        if message.get("headers", {}).get("id") == task_id:
            return redis_client.zscore("unacked_index", tag)
    return None


@pytest.fixture
def smtp_sink():
    """A local SMTP sink that answers DATA after 3 s: the job is mid-run for 3 s."""
    sink = SMTPSink(delay=(3.0, 3.0), refuse_rate=0.0, seed=1).start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def short_visibility(afirgen_env, afirgen_settings):
    """Workers' env and the console's app with a 20 s visibility timeout (time limit below it)."""
    limits = {
        "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_S),
        "CELERY_TASK_TIME_LIMIT": "10",
        "CELERY_TASK_SOFT_TIME_LIMIT": "8",
    }
    settings = afirgen_settings.model_copy(
        update={
            "celery_visibility_timeout": VISIBILITY_S,
            "celery_task_time_limit": 10,
            "celery_task_soft_time_limit": 8,
            "console_refresh_interval": 0.1,
            "console_queue_poll_interval": 0.5,
            "console_inspect_interval": 1.0,
            "console_control_timeout": 1.0,
        }
    )
    app = make_app(settings)
    try:
        yield settings, app, limits
    finally:
        app.close()


async def test_a_job_lost_with_its_killed_worker_reads_lost_until_the_broker_redelivers_it(
    short_visibility, afirgen_env, redis_client, smtp_sink, worker_factory
):
    settings, app, limits = short_visibility
    env = with_smtp(afirgen_env, smtp_sink, **limits)
    worker = worker_factory(queues=("email",), concurrency=1, env=env, app=app, name="victim")
    async with live_console(settings, app) as (console, pilot):
        tasks = console.query_one("#tasks", TasksPane)
        sent_at = time.time()
        job = notify(app)
        await until(
            pilot,
            lambda: tasks.has_key(job.id) and "STARTED" in cell(tasks, job.id, "state"),
            message="the job STARTED on screen",
        )
        await until(pilot, lambda: smtp_sink.sessions >= 1, message="the job inside SMTP")
        score = await asyncio.to_thread(delivered_at, redis_client, job.id)
        assert score is not None and sent_at - 1 <= score <= time.time()

        worker.kill(signal.SIGKILL, group=True)
        await asyncio.to_thread(worker.proc.wait, 5)
        killed_at = time.time()
        back = time.strftime("%H:%M", time.localtime(score + VISIBILITY_S))
        # missed heartbeats (6 s) -> LOST; the broker's answer -> the redelivery time
        await until(
            pilot,
            lambda: cell(tasks, job.id, "state") == f"✝ LOST↻{back}",
            timeout=VISIBILITY_S,
            message=f"the row reading ✝ LOST↻{back}",
        )
        record = console.model.get_task(job.id)
        assert record is not None and record.lost is not None
        assert record.lost.worker == worker.hostname and record.lost.why == "missed heartbeats"
        assert record.lost.redeliver_at == pytest.approx(score + VISIBILITY_S, abs=0.01)
        # the detail says it in words, with the exact time
        await pilot.press("3")
        assert tasks.select(job.id)
        await pilot.press("enter")
        await pilot.pause()
        detail = console.screen
        assert isinstance(detail, TaskDetailScreen)
        body = detail.render_text().plain
        when = time.strftime("%H:%M:%S", time.localtime(score + VISIBILITY_S))
        assert f"lost with {worker.hostname}" in body and f"redelivered at {when} (in " in body
        await pilot.press("escape")

        # The same worker comes back (a new process): still LOST until the broker redelivers.
        await asyncio.to_thread(worker.start)
        await asyncio.to_thread(worker.wait_ready, 30)
        if time.time() < score + VISIBILITY_S - 2:
            await pilot.pause(0.5)
            assert cell(tasks, job.id, "state").startswith("✝ LOST")
        await until(
            pilot,
            lambda: "SUCCESS" in cell(tasks, job.id, "state"),
            timeout=VISIBILITY_S + 30,
            message="the redelivered job's SUCCESS",
        )
        assert record.state == "SUCCESS" and record.received is not None
        # it came back when the broker said, not before (worker clock = this host's)
        assert record.received >= score + VISIBILITY_S - 1.0
        assert "was lost with" in lost_text(record.lost, record.state)
    assert killed_at < score + VISIBILITY_S
    assert AsyncResult(job.id, app=app).state == "SUCCESS"


async def test_a_lost_job_no_longer_in_the_broker_says_so(
    short_visibility, redis_client, worker_factory
):
    """A job whose message left ``unacked`` (acked, or restored): "not in the broker"."""
    settings, app, _limits = short_visibility
    async with live_console(settings, app) as (console, pilot):
        tasks = console.query_one("#tasks", TasksPane)
        # events of a worker that dies at once (no broker message behind the task)
        console.sources.events.buffer.extend(
            [
                {
                    "type": "task-received",
                    "uuid": "0f3b-gone",
                    "hostname": "celery@ghost",
                    "name": CLEANUP,
                    "timestamp": time.time(),
                    "local_received": time.time(),
                },
                {
                    "type": "worker-offline",
                    "hostname": "celery@ghost",
                    "timestamp": time.time() + 0.1,
                    "local_received": time.time(),
                },
            ]
        )
        await until(
            pilot,
            lambda: tasks.has_key("0f3b-gone") and cell(tasks, "0f3b-gone", "state") == "✝ LOST ∅",
            message="the row reading ✝ LOST ∅",
        )
        record = console.model.get_task("0f3b-gone")
        assert record is not None and record.lost is not None
        assert "not in the broker: it finished or was restored" in lost_text(
            record.lost, record.state
        )


def test_the_locator_reads_kombus_keys_in_pages_and_checks_what_redis_says(redis_client):
    """Many unacked messages (HSCAN pages), a forged score, an id not there."""
    now = time.time()
    for i in range(1200):
        message = {
            "body": "e30=",
            "headers": {"id": f"task-{i}", "argsrepr": '{"id": "task-9999"}'},
            "properties": {"delivery_tag": f"tag-{i}"},
        }
        redis_client.hset("unacked", f"tag-{i}", json.dumps([message, "", "email"]))
        redis_client.zadd("unacked_index", {f"tag-{i}": now - 5})
    redis_client.zadd("unacked_index", {"tag-7": float("inf")})  # hostile: no time at all
    tally = Tally()
    locator = UnackedLocator(redis_client, 60, page=200)
    lookup = locator.locate(["task-1100", "task-7", "task-9999", "gone"], tally)
    holds = lookup.holds
    assert holds["task-1100"].in_broker is True
    assert holds["task-1100"].redeliver_at == pytest.approx(now - 5 + 60)
    assert holds["task-7"].in_broker is True and holds["task-7"].redeliver_at is None
    assert tally.invalid == 1
    # an id quoted inside another header's text is not that message
    assert holds["task-9999"].in_broker is False and holds["gone"].in_broker is False
    assert lookup.scanned >= 1200 and lookup.round_trips > 1200 // 200
    # bounded: a cap below the hash's size says it could not tell
    capped = UnackedLocator(redis_client, 60, page=100, max_scan=300).locate(["gone"])
    assert (
        capped.holds["gone"].in_broker is None and "not all were read" in capped.holds["gone"].note
    )


# ---- item 6 --------------------------------------------------------------------------------
async def test_purged_rows_still_read_purged_after_a_restart_with_the_backend_saying_pending(
    afirgen_settings, afirgen_app, redis_client, tmp_path
):
    settings = afirgen_settings.model_copy(
        update={
            "console_refresh_interval": 0.1,
            "console_queue_poll_interval": 0.2,
            "console_inspect_interval": 0.5,
            "console_control_timeout": 1.0,
        }
    )
    db = tmp_path / "history.sqlite3"
    store = HistoryStore(db)
    try:
        sources = BrokerSources(settings, afirgen_app)
        console = AfirgenApp(settings, sources, celery_app=afirgen_app, history=store)
        try:
            async with console.run_test(size=(130, 40)) as pilot:
                tasks = console.query_one("#tasks", TasksPane)
                queues = console.query_one("#queues", QueuesPane)
                await until(
                    pilot,
                    lambda: sources.status.state == "connected",
                    message="receiver connected",
                )
                ids = [afirgen_app.send_task(CLEANUP, priority=p).id for p in (1, 5, 9)]
                await until(
                    pilot,
                    lambda: (
                        cell(queues, "cleanup", "waiting") == "3"
                        and all(tasks.has_key(i) for i in ids)
                    ),
                    message="3 waiting, their rows shown",
                )
                await highlight(pilot, "1", queues, "cleanup")
                await pilot.press("x")
                await pilot.pause()
                await pilot.press(*"cleanup", "enter")
                done = await next_outcome(pilot, console, 0)
                assert done.outcome.ok and done.outcome.count == 3, done.outcome
                await until(
                    pilot,
                    lambda: all("PURGED" in cell(tasks, i, "state") for i in ids),
                    message="the rows reading PURGED",
                )
                console.console_screen.history.close()  # flush the writer
        finally:
            sources.stop()
        assert {store.get(i)["state"] for i in ids} == {"PURGED"}  # type: ignore[index]
    finally:
        store.close()

    # The result backend holds PENDING for them (as some backends write for unknown ids).
    for i in ids:
        redis_client.set(
            f"celery-task-meta-{i}",
            json.dumps({"status": "PENDING", "result": None, "task_id": i, "traceback": None}),
        )
    store = HistoryStore(db)
    try:
        sources = BrokerSources(settings, afirgen_app)
        console = AfirgenApp(settings, sources, celery_app=afirgen_app, history=store)
        try:
            async with console.run_test(size=(130, 40)) as pilot:
                tasks = console.query_one("#tasks", TasksPane)
                await until(
                    pilot,
                    lambda: all(tasks.has_key(i) for i in ids),
                    message="the rows loaded from the history",
                )
                # let the backfill (it reads the backend in a thread worker) run
                await until(
                    pilot,
                    lambda: (
                        console.console_screen.history.loaded_count == 3
                        and sources.boundary.backend.invalid == 0
                        and not any(
                            w.group == "history-backfill" and not w.is_finished
                            for w in console.workers
                        )
                    ),
                    message="the backfill done",
                )
                await pilot.pause(0.5)
                shown = {i: cell(tasks, i, "state") for i in ids}
                assert all("PURGED" in s for s in shown.values()), shown
                assert {console.model.get_task(i).state for i in ids} == {"PURGED"}  # type: ignore[union-attr]
                assert tasks.select(ids[0])
                await pilot.press("enter")
                await until(
                    pilot,
                    lambda: (
                        isinstance(console.screen, TaskDetailScreen)
                        and console.screen.backend is not None
                    ),
                    message="the detail's backend answer",
                )
                body = console.screen.render_text().plain
                assert "PURGED" in body and "(backend: PENDING)" not in body
        finally:
            sources.stop()
        rows: list[dict[str, Any]] = [store.get(i) for i in ids]  # type: ignore[misc]
        assert {r["state"] for r in rows} == {"PURGED"}
    finally:
        store.close()
