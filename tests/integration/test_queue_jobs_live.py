"""A queue's waiting jobs (Enter on the Queues pane) against a real Redis and real workers.

Jobs are published with the real app at several priorities into ``cleanup`` while the only
worker consumes another queue; the console lists them in run order with the band counts,
then ``d``, ``^`` and ``r`` act on them, and a worker that then consumes ``cleanup`` shows
what each step did: a deleted job never runs, a moved job runs first, a revoked one is
discarded.  The race (the job taken before the key) touches nothing.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from celery.result import AsyncResult

from tests.integration.test_actions_live import audit, live_console, next_outcome, until
from tui.ui.screens.forms import ConfirmScreen
from tui.ui.screens.queue_jobs import QueueJobsScreen
from tui.ui.widgets.panes import QueuesPane

pytestmark = pytest.mark.integration

CLEANUP = "afirgen_tasks.cleanup.cleanup_temp_files"
KEEP = {"max_age_hours": 100000}  # touches nothing in the temp dir


@pytest.fixture
def live_settings(afirgen_settings):
    """Fast polls, as in the other live console tests."""
    return afirgen_settings.model_copy(
        update={
            "console_refresh_interval": 0.1,
            "console_queue_poll_interval": 0.2,
            "console_inspect_interval": 0.5,
            "console_control_timeout": 1.0,
        }
    )


def publish(app, priorities: list[int]) -> list[tuple[int, str]]:
    """One cleanup job per priority, in order; ``(priority, id)`` each."""
    return [
        (p, app.send_task(CLEANUP, kwargs=KEEP, queue="cleanup", priority=p).id) for p in priorities
    ]


def run_order(jobs: list[tuple[int, str]]) -> list[str]:
    """Most urgent first, first published first within a priority (kombu's FIFO per list)."""
    return [i for _p, i in sorted(jobs, key=lambda pj: -pj[0])]


async def open_cleanup(pilot, console) -> QueueJobsScreen:
    queues = console.query_one("#queues", QueuesPane)
    await until(pilot, lambda: queues.has_key("cleanup"), message="cleanup in the Queues pane")
    await pilot.press("1")
    queues.move_cursor(row=queues.get_row_index("cleanup"), animate=False)
    await pilot.pause()
    await pilot.press("enter")
    await until(
        pilot,
        lambda: isinstance(console.screen, QueueJobsScreen) and console.screen.reads,
        message="the jobs screen read its first page",
    )
    return console.screen


def shown_ids(screen: QueueJobsScreen) -> list[str]:
    return [screen.rows[k].id for k in screen.table.ordered_keys]


async def highlight(pilot, screen: QueueJobsScreen, task_id: str) -> None:
    await until(pilot, lambda: task_id in shown_ids(screen), message=f"{task_id} shown")
    screen.table.move_cursor(row=shown_ids(screen).index(task_id), animate=False)
    await pilot.pause()
    assert screen.highlighted() is not None and screen.highlighted().id == task_id


def waiting_payloads(client, keys: list[str]) -> dict[str, list[bytes]]:
    return {key: client.lrange(key, 0, -1) for key in keys}


def received_order(worker) -> list[str]:
    return re.findall(
        r"Task " + re.escape(CLEANUP) + r"\[([0-9a-f-]{36})\] received", worker.log_text()
    )


CLEANUP_KEYS = ["cleanup"] + [f"cleanup:{step}" for step in range(1, 10)]


async def test_lists_in_run_order_with_band_counts_and_pages(
    live_settings, afirgen_app, worker_factory, redis_client
):
    worker = worker_factory(queues=("default",))  # alive, not consuming cleanup
    jobs = publish(afirgen_app, [3, 10, 7] * 40)  # 120 jobs: more than two pages
    expected = run_order(jobs)
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        screen = await open_cleanup(pilot, console)
        reader = console.sources.queue_jobs()
        assert shown_ids(screen) == expected[:50]
        assert reader.last_read == 50  # one window, never the whole list
        header = str(screen.query_one("#jobs-header").render())
        assert "120 waiting" in header and "P10 40 · P7 40 · P3 40" in header, header
        assert [screen.rows[k].band for k in screen.table.ordered_keys][38:42] == [
            10,
            10,
            7,
            7,
        ]
        await pilot.press("pagedown")
        await until(pilot, lambda: shown_ids(screen) == expected[50:100], message="page 2")
        assert reader.last_read == 50
        await pilot.press("pagedown")
        await until(pilot, lambda: shown_ids(screen) == expected[100:], message="page 3")
        assert reader.last_read == 20
    assert redis_client.llen("cleanup") == redis_client.llen("cleanup:3") == 40  # read only
    assert worker.is_alive()


async def test_deleted_job_never_runs_and_a_taken_job_is_not_touched(
    live_settings, afirgen_app, worker_factory, redis_client, monkeypatch
):
    import tui.ui.screens.queue_jobs as screen_module

    monkeypatch.setattr(screen_module, "REFRESH_S", 3600.0)  # the race needs a stale page
    worker_factory(queues=("default",))
    jobs = publish(afirgen_app, [5, 9, 5, 2, 9])
    order = run_order(jobs)
    victim, taken = order[1], order[3]
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        screen = await open_cleanup(pilot, console)
        assert shown_ids(screen) == order
        await highlight(pilot, screen, victim)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(console.screen, ConfirmScreen)
        await pilot.press("y")
        done = (await next_outcome(pilot, console, 0)).outcome
        assert done.ok and "deleted" in done.message, done.message
        await until(pilot, lambda: victim not in shown_ids(screen), message="victim gone")
        # it will never run: the Tasks pane must not say SENT for ever (operator review)
        assert console.model.get_task(victim).state == "PURGED"

        # the race: a worker (here, by hand) takes the job between the read and the key
        job = next(j for j in screen.rows.values() if j.id == taken)
        screen.reload = lambda: None  # keep the stale page on screen
        assert redis_client.lrem(job.key, 1, job.payload) == 1
        before = waiting_payloads(redis_client, CLEANUP_KEYS + ["unacked"])
        await highlight(pilot, screen, taken)
        await pilot.press("d")
        await pilot.pause()
        await pilot.press("y")
        raced = (await next_outcome(pilot, console, 1)).outcome
        assert not raced.ok and "already taken by a worker" in raced.message, raced.message
        assert waiting_payloads(redis_client, CLEANUP_KEYS + ["unacked"]) == before

    runner = await asyncio.to_thread(worker_factory, queues=("cleanup",))
    survivors = [i for i in order if i not in (victim, taken)]
    for task_id in survivors:
        await asyncio.to_thread(AsyncResult(task_id, app=afirgen_app).get, timeout=30)
        assert AsyncResult(task_id, app=afirgen_app).state == "SUCCESS"
    assert sum(redis_client.llen(k) for k in CLEANUP_KEYS) == 0
    assert AsyncResult(victim, app=afirgen_app).state == "PENDING"
    assert victim not in runner.log_text() and taken not in runner.log_text()
    lines = audit(live_settings)
    assert [(x["action"], x["target"], x["ok"]) for x in lines] == [
        ("delete_job", victim, True),
        ("delete_job", taken, False),
    ]
    attempts = [x for x in audit_every_line(live_settings) if x["phase"] == "attempt"]
    assert [x["target"] for x in attempts] == [victim, taken]  # audited before acting


def audit_every_line(settings):
    from tui.actions import AuditLog

    return AuditLog(settings.console_audit_log).read(every_line=True)


async def test_moved_job_runs_first(live_settings, afirgen_app, worker_factory, redis_client):
    worker_factory(queues=("default",))
    jobs = publish(afirgen_app, [10, 10, 6, 1, 1])
    order = run_order(jobs)
    last = order[-1]
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        screen = await open_cleanup(pilot, console)
        await highlight(pilot, screen, last)
        tokens = redis_client.llen("_afirgen.wakeup.cleanup")
        await pilot.press("circumflex_accent")
        await pilot.pause()
        assert isinstance(console.screen, ConfirmScreen)  # it reorders the queue: asked first
        await pilot.press("y")
        done = (await next_outcome(pilot, console, 0)).outcome
        assert done.ok and "front" in done.message, done.message
        await until(pilot, lambda: shown_ids(screen)[:1] == [last], message="moved job first")
        moved = screen.rows[screen.table.ordered_keys[0]]
        assert moved.band == 10 and moved.priority == 10
        assert redis_client.llen("_afirgen.wakeup.cleanup") == tokens + 1
        assert redis_client.llen("cleanup:9") == 1  # the other priority-1 job stays
    runner = await asyncio.to_thread(
        worker_factory, queues=("cleanup",), concurrency=1, prefetch_multiplier=1
    )
    await asyncio.to_thread(lambda: AsyncResult(order[-2], app=afirgen_app).get(timeout=40))
    ran = received_order(runner)
    assert ran[0] == last, ran
    assert ran == [last] + order[:-1], ran
    assert [x["action"] for x in audit(live_settings)] == ["move_job_to_front"]


async def test_revoked_waiting_job_stays_queued_and_is_discarded(
    live_settings, afirgen_app, worker_factory, redis_client
):
    worker = worker_factory(queues=("default",))
    jobs = publish(afirgen_app, [5, 5])
    victim, keeper = run_order(jobs)
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        screen = await open_cleanup(pilot, console)
        await highlight(pilot, screen, victim)
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(console.screen, ConfirmScreen)
        question = str(console.screen.query_one("#question").render())
        assert "stays in the queue" in question and "discarded" in question
        await pilot.press("y")
        done = (await next_outcome(pilot, console, 0)).outcome
        assert done.ok and worker.hostname in done.replies, done
        assert victim in shown_ids(screen)  # still waiting
    assert redis_client.llen("cleanup:5") == 2
    reply = afirgen_app.control.add_consumer(
        "cleanup", destination=[worker.hostname], reply=True, timeout=5
    )
    assert reply, "the worker did not take the cleanup queue"
    await asyncio.to_thread(lambda: AsyncResult(keeper, app=afirgen_app).get(timeout=30))
    assert AsyncResult(victim, app=afirgen_app).state == "REVOKED"
    assert f"Discarding revoked task: {CLEANUP}[{victim}]" in worker.log_text()
