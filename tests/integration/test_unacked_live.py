"""Issue 15, ``u``: jobs taken but not acknowledged, against a real Redis and real workers.

* A worker SIGKILLed while running two jobs (late ack: both in ``unacked``): the screen lists
  both with the dead worker, ``alive: no``.  One of them is restored by kombu's own
  ``restore_by_tag`` first (what a sweep does): ``Q`` on it says "already acked or restored"
  and pushes nothing.  ``Q`` on the other requeues it; a second worker started afterwards
  runs each job once (the SMTP sink counts deliveries).
* With the worker alive, ``Q`` is refused (heartbeats), and the action layer refuses again
  when the model has lost its heartbeats but the worker answers a ping; ``unacked`` is the
  same before and after, nothing is pushed.
"""

from __future__ import annotations

import asyncio
import json
import signal

import pytest
from celery.result import AsyncResult

from tests.conftest import make_app
from tests.integration.test_actions_live import live_console, next_outcome, queue_size, until
from tests.integration.test_worker_faults import notify, with_smtp
from tui.demo import SMTPSink
from tui.ui.screens.forms import ConfirmScreen
from tui.ui.screens.unacked import UnackedScreen

pytestmark = pytest.mark.integration

#: Long enough that no worker's own sweep restores anything during a test.
VISIBILITY_S = 300


def tag_of(redis_client, task_id: str) -> str | None:
    """The delivery tag of ``task_id``'s message in ``unacked``, read the plain way."""
    for tag, value in redis_client.hgetall("unacked").items():
        if json.loads(value)[0].get("headers", {}).get("id") == task_id:
            return tag.decode()
    return None


@pytest.fixture
def smtp_sink():
    """A local SMTP sink that answers DATA after 3 s: each job is mid-run for 3 s."""
    sink = SMTPSink(delay=(3.0, 3.0), refuse_rate=0.0, seed=1).start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def long_visibility(afirgen_settings):
    limits = {
        "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_S),
        "CELERY_TASK_TIME_LIMIT": "30",
        "CELERY_TASK_SOFT_TIME_LIMIT": "25",
    }
    settings = afirgen_settings.model_copy(
        update={
            "celery_visibility_timeout": VISIBILITY_S,
            "celery_task_time_limit": 30,
            "celery_task_soft_time_limit": 25,
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


async def open_unacked(pilot, console, count: int) -> UnackedScreen:
    await pilot.press("u")
    await until(pilot, lambda: isinstance(console.screen, UnackedScreen), message="u screen")
    screen = console.screen
    await until(
        pilot,
        lambda: screen.table.row_count == count,
        timeout=10,
        message=f"{count} unacked job(s) listed",
    )
    return screen


def row(screen: UnackedScreen, tag: str) -> list[str]:
    return [str(c) for c in screen.table.get_row(tag)]


async def press_requeue(pilot, console, screen: UnackedScreen, tag: str):
    before = len(console.console_screen.runner.action_log)
    screen.table.move_cursor(row=screen.table.get_row_index(tag), animate=False)
    await pilot.pause()
    await pilot.press("Q")
    await until(pilot, lambda: isinstance(console.screen, ConfirmScreen), message="the confirm")
    await pilot.press("y")
    return (await next_outcome(pilot, console, before, timeout=15)).outcome


async def test_a_dead_workers_job_is_requeued_once_and_a_restored_one_is_left_alone(
    long_visibility, afirgen_env, redis_client, smtp_sink, worker_factory
):
    settings, app, limits = long_visibility
    env = with_smtp(afirgen_env, smtp_sink, **limits)
    victim = worker_factory(queues=("email",), concurrency=2, env=env, app=app, name="victim")
    async with live_console(settings, app) as (console, pilot):
        jobs = [notify(app, 1), notify(app, 2)]
        await until(pilot, lambda: smtp_sink.sessions >= 2, message="both jobs inside SMTP")
        tags = [await asyncio.to_thread(tag_of, redis_client, j.id) for j in jobs]
        assert all(tags), "late ack: both jobs are in unacked while they run"
        victim.kill(signal.SIGKILL, group=True)
        await asyncio.to_thread(victim.proc.wait, 5)
        await until(
            pilot,
            lambda: (w := console.model.get_worker(victim.hostname)) is not None and not w.online,
            timeout=20,
            message="the victim offline (missed heartbeats)",
        )
        screen = await open_unacked(pilot, console, 2)
        for tag, job in zip(tags, jobs, strict=True):
            cells = row(screen, tag)
            assert cells[2] == job.id[:8] and cells[3] == "email"
            assert cells[4] == victim.hostname and cells[5] == "no", cells

        # the race: a sweep restores job 0 first; Q then finds it gone and pushes nothing
        def sweep() -> None:
            with app.connection_for_write() as conn:
                conn.default_channel.qos.restore_by_tag(tags[0])

        await asyncio.to_thread(sweep)
        assert await asyncio.to_thread(queue_size, app, "email") == 1
        outcome = await press_requeue(pilot, console, screen, tags[0])
        assert not outcome.ok and "already acked or restored" in outcome.message
        assert await asyncio.to_thread(queue_size, app, "email") == 1  # not doubled

        # job 1: requeued now, in one step
        outcome = await press_requeue(pilot, console, screen, tags[1])
        assert outcome.ok, outcome.message
        assert "requeued" in outcome.message and victim.hostname in outcome.message
        assert await asyncio.to_thread(redis_client.hlen, "unacked") == 0
        assert await asyncio.to_thread(queue_size, app, "email") == 2
        await until(pilot, lambda: screen.table.row_count == 0, message="the screen emptied")

        # a second worker, started after, runs each job once
        rescuer = worker_factory(queues=("email",), concurrency=2, env=env, app=app, name="rescuer")
        for job in jobs:
            await until_success(pilot, app, job.id)
        await pilot.pause(2.0)  # a second copy of either job would be received by now
        log = rescuer.log_text()
        for job in jobs:
            assert log.count(f"[{job.id}] received") == 1, log
            assert log.count(f"[{job.id}] succeeded") == 1, log
        # SMTP sessions: the two killed runs and one run each afterwards
        assert smtp_sink.sessions == 4, smtp_sink.sessions
        assert await asyncio.to_thread(queue_size, app, "email") == 0
    assert redis_client.hlen("unacked") == 0
    audit = console.actions.audit.read(every_line=True)
    assert [(x["action"], x["phase"], x["ok"]) for x in audit] == [
        ("requeue_unacked", "attempt", None),  # written before the script ran
        ("requeue_unacked", "outcome", False),  # already restored
        ("requeue_unacked", "attempt", None),
        ("requeue_unacked", "outcome", True),
    ]


async def until_success(pilot, app, task_id: str) -> None:
    await until(
        pilot,
        lambda: AsyncResult(task_id, app=app).state == "SUCCESS",
        timeout=30,
        message=f"{task_id[:8]} SUCCESS",
    )


async def test_a_live_worker_keeps_its_job(
    long_visibility, afirgen_env, redis_client, worker_factory
):
    settings, app, limits = long_visibility
    sink = SMTPSink(delay=(10.0, 10.0), refuse_rate=0.0, seed=2).start()
    try:
        env = with_smtp(afirgen_env, sink, **limits)
        worker = worker_factory(queues=("email",), concurrency=1, env=env, app=app, name="busy")
        async with live_console(settings, app) as (console, pilot):
            job = notify(app, 3)
            await until(pilot, lambda: sink.sessions >= 1, message="the job inside SMTP")
            tag = await asyncio.to_thread(tag_of, redis_client, job.id)
            assert tag is not None
            await until(
                pilot,
                lambda: (
                    (t := console.model.get_task(job.id)) is not None
                    and t.hostname == worker.hostname
                ),
                message="the console knows who holds it",
            )
            before = await asyncio.to_thread(redis_client.hgetall, "unacked")
            screen = await open_unacked(pilot, console, 1)
            assert row(screen, tag)[4:6] == [worker.hostname, "yes"]
            outcome = await press_requeue(pilot, console, screen, tag)
            assert not outcome.ok
            assert f"{worker.hostname} is alive (heartbeats): it may still run this job" in (
                outcome.message
            )
            # the model lost its heartbeats (say, events were lost) but it answers a ping
            held = screen.rows[tag]
            outcome = await asyncio.to_thread(
                console.actions.requeue_unacked, held, worker.hostname, False
            )
            assert not outcome.ok
            assert (
                f"{worker.hostname} is alive (answered ping): it may still run this job; wait "
                "for it or for the visibility timeout"
            ) in outcome.message
            assert await asyncio.to_thread(redis_client.hgetall, "unacked") == before
            assert await asyncio.to_thread(queue_size, app, "email") == 0
    finally:
        sink.stop()
    audit = console.actions.audit.read()
    assert [(x["action"], x["ok"]) for x in audit] == [("requeue_unacked", False)] * 2
    assert all("alive" in x["outcome"] for x in audit)
