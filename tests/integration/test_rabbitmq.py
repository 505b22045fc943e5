"""Issue 16, RabbitMQ in the console and ``--check``: waiting and consumers from AMQP passive
declares, bands unknown (never zeros), reserved ``-`` with one notice when the management API
cannot be reached, pause/resume with a record kept in the broker, purge, backlog thresholds.

Live: the RabbitMQ on 127.0.0.1:5672, on a vhost of the run's own (``rabbitmq_vhost``; never
``/``), real ``celery worker`` subprocesses on it, results in the test's Redis.  The
management API is pointed at a closed port, so these tests pass whether or not the plugin is
enabled on the broker.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from celery.result import AsyncResult

from tests.integration.test_actions_live import (
    cell,
    consumed_queues,
    highlight,
    live_console,
    next_outcome,
    notifications,
    show_worker,
    start_workers,
    until,
)
from tests.integration.test_check import free_port, lines_by_name, run_check
from tests.support.waiting import wait_until
from tui.actions import Actions, AuditLog
from tui.sources.amqp_queues import AmqpQueuePoller, amqp_connection, management_client
from tui.sources.pause_records import AmqpPauseRecordStore, PauseRecordStore, record_queue_name
from tui.sources.queue_lengths import make_queue_poller
from tui.ui.widgets.panes import QueuesPane

pytestmark = pytest.mark.integration

ALL_QUEUES = ("default", "email", "reports", "analytics", "cleanup")
CLEANUP = "afirgen_tasks.cleanup.cleanup_temp_files"
NOTICE = "reserved counts need the RabbitMQ management API"


@pytest.fixture
def amqp(afirgen_env, rabbitmq_vhost, monkeypatch):
    """``(settings, app, env)`` on the run's vhost, every configured queue declared and empty,
    no pause record left over; the management API pointed at a closed port."""
    from celery._state import get_current_app

    from afirgen_tasks.factory import create_app
    from afirgen_tasks.settings import load_settings

    closed = f"http://127.0.0.1:{free_port()}"
    extra = {
        "CELERY_BROKER_URL": rabbitmq_vhost.url,
        "AFIRGEN_RABBITMQ_MANAGEMENT_URL": closed,
    }
    for key, value in extra.items():
        monkeypatch.setenv(key, value)  # Celery itself prefers $CELERY_BROKER_URL
    previous = get_current_app()
    settings = load_settings().model_copy(
        update={
            "console_refresh_interval": 0.1,
            "console_queue_poll_interval": 0.2,
            "console_inspect_interval": 0.5,
            "console_control_timeout": 1.0,
        }
    )
    app = create_app(settings)
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            channel = conn.default_channel
            for name in ALL_QUEUES:
                queue = app.amqp.queues[name](channel)
                queue.declare()
                queue.purge()  # the vhost is ours, but an earlier test may have left jobs
                channel.queue_delete(record_queue_name(name))
        yield settings, app, dict(afirgen_env, **extra)
    finally:
        app.close()
        previous.set_current()


def poll(settings, app):
    poller = make_queue_poller(app, settings=settings, socket_timeout=2.0)
    assert isinstance(poller, AmqpQueuePoller)
    try:
        return poller.poll()
    finally:
        poller.close()


def send(app, n: int, queue: str) -> list[str]:
    return [
        app.send_task(CLEANUP, kwargs={"max_age_hours": 100000}, queue=queue).id for _ in range(n)
    ]


# ---- the Queues pane ---------------------------------------------------------------------


async def test_queues_pane_shows_waiting_and_consumers_bands_unknown_and_one_notice(
    amqp, worker_factory
):
    """Before: every cell of the pane was ``-`` on RabbitMQ (the poll was not supported)."""
    settings, app, env = amqp
    send(app, 4, "analytics")  # nobody consumes analytics
    worker = worker_factory(queues=("default",), env=env, app=app)
    polls = 0
    async with live_console(settings, app) as (console, pilot):
        real_poll = console.sources.poll_queues

        def counted():
            nonlocal polls
            polls += 1
            return real_poll()

        console.sources.poll_queues = counted
        queues = console.query_one("#queues", QueuesPane)
        await until(pilot, lambda: cell(queues, "analytics", "waiting") == "4", message="4 waiting")
        assert [cell(queues, "analytics", band) for band in ("urgent", "normal", "low")] == [
            "-",
            "-",
            "-",
        ]  # RabbitMQ keeps no count per priority: unknown, not 0
        assert cell(queues, "analytics", "reserved") == "-"
        assert cell(queues, "analytics", "consumers") == "0"
        await until(
            pilot, lambda: cell(queues, "default", "consumers") == "1", message="1 consumer"
        )
        assert cell(queues, "default", "waiting") == "0"
        start = polls
        await until(pilot, lambda: polls >= start + 5, message="five more polls")
        said = [n for n in notifications(console) if NOTICE in n]
        assert len(said) == 1, notifications(console)
        assert settings.rabbitmq_management_url.removeprefix("http://") in said[0]
        assert "P-bands -" in str(queues.border_subtitle)
        assert "broker not answering" not in str(console.query_one("#status").render())
    assert worker.is_alive()


def test_a_queue_nobody_declared_shows_as_not_declared_and_the_channel_survives(amqp):
    settings, app, _env = amqp
    missing = f"afirgen-missing-{uuid.uuid4().hex[:8]}"
    send(app, 2, "email")
    poller = AmqpQueuePoller(
        lambda: amqp_connection(app, 2.0),
        [missing, "email", missing + "-2", "reports"],
        management_client(settings, 1.0),
    )
    try:
        for _round in range(2):  # the 404 closed a channel: the next declares still answer
            snap = poller.poll()
            assert not snap.queues[missing].declared and snap.queues[missing].waiting == 0
            assert not snap.queues[missing + "-2"].declared
            assert snap.queues["email"].declared and snap.queues["email"].waiting == 2
            assert snap.queues["reports"].declared and snap.queues["reports"].waiting == 0
            assert snap.queues["email"].by_priority == {}
            assert not snap.queues["email"].bands_known
            assert snap.queues["email"].reserved is None and NOTICE in snap.notice
    finally:
        poller.close()


# ---- pause and resume ----------------------------------------------------------------------


async def test_pause_and_resume_on_rabbitmq_keep_a_record_across_a_console_restart(
    amqp, worker_factory
):
    """Before: on RabbitMQ the pause said "record not kept" and resume had nobody to resume."""
    settings, app, env = amqp
    w1, w2 = start_workers(
        lambda **kw: worker_factory(env=env, app=app, **kw),
        {"queues": ("default", "email")},
        {"queues": ("default",)},
    )
    async with live_console(settings, app) as (console, pilot):
        await show_worker(pilot, console, w1)
        await show_worker(pilot, console, w2)
        queues = console.query_one("#queues", QueuesPane)
        await until(pilot, lambda: cell(queues, "email", "consumers") == "1", message="1 cons")
        await highlight(pilot, "1", queues, "email")
        await pilot.press("p")
        paused = await next_outcome(pilot, console, 0)
        assert paused.action == "pause_queue" and paused.outcome.ok, paused.outcome
        assert "record not kept" not in paused.outcome.message
        assert set(paused.outcome.replies) == {w1.hostname}
    # the broker's own count: nobody consumes email now
    assert wait_until(lambda: poll(settings, app).queues["email"].consumers == 0, 10)
    # a second reader (another console) sees the record
    record = PauseRecordStore.for_app(app, settings, 1.0).read_all()["email"]
    assert record.workers == (w1.hostname,) and record.by

    async with live_console(settings, app) as (console, pilot):  # nothing kept in memory
        await show_worker(pilot, console, w1)
        await show_worker(pilot, console, w2)
        queues = console.query_one("#queues", QueuesPane)
        await until(pilot, lambda: cell(queues, "email", "name") == "email ⏸", message="⏸")
        await highlight(pilot, "1", queues, "email")
        await pilot.press("p")  # offers resume
        # this console (restarted) never saw w1 consume email: the record is confirmed first
        await until(
            pilot, lambda: type(console.screen).__name__ == "ConfirmScreen", message="confirm"
        )
        await pilot.press("y")
        resumed = await next_outcome(pilot, console, 0)
        assert resumed.action == "resume_queue" and resumed.outcome.ok, resumed.outcome
        assert set(resumed.outcome.replies) == {w1.hostname}
        await until(pilot, lambda: cell(queues, "email", "name") == "email", message="no mark")
        await until(pilot, lambda: cell(queues, "email", "consumers") == "1", message="back")
    assert poll(settings, app).queues["email"].consumers == 1
    assert await asyncio.to_thread(consumed_queues, w1) == {"default", "email"}
    assert await asyncio.to_thread(consumed_queues, w2) == {"default"}  # never got email
    assert PauseRecordStore.for_app(app, settings, 1.0).read_all() == {}


def test_a_new_record_replaces_the_old_one_and_a_second_reader_sees_it(amqp):
    from tui.core.pauses import PauseRecord

    settings, app, _env = amqp
    now = round(time.time())
    one, two = (AmqpPauseRecordStore.for_amqp(app, settings, 1.0) for _ in range(2))
    try:
        one.put(PauseRecord("reports", ("w1@h",), now - 10.0, "alice"))
        one.put(PauseRecord("reports", ("w1@h", "w2@h"), now - 5.0, "bob"))
        assert two.read_all() == {
            "reports": PauseRecord("reports", ("w1@h", "w2@h"), now - 5.0, "bob")
        }
        # reading gave the message back: it is still there, once
        assert poll_record_count(app, "reports") == 1
        two.delete("reports")
        assert one.read_all() == {}
    finally:
        one.close()
        two.close()


def poll_record_count(app, queue: str) -> int:
    with app.connection_for_write() as conn:
        return conn.default_channel.queue_declare(record_queue_name(queue), passive=True)[1]


# ---- purge and --check --------------------------------------------------------------------


def test_check_fails_over_the_backlog_threshold_and_passes_after_the_purge(
    amqp, worker_factory, tmp_path
):
    settings, app, env = amqp
    check_env = dict(env, AFIRGEN_CHECK_BACKLOG_WARN="2", AFIRGEN_CHECK_BACKLOG_FAIL="3")
    purged = send(app, 6, "cleanup")  # nobody consumes anything yet
    code, out, err, _ = run_check(check_env, "--json", "--timeout", "4")
    assert code == 1, out + err
    report = {c["name"]: c for c in json.loads(out)["checks"]}
    backlog = report["backlog[cleanup]"]
    assert backlog["status"] == "FAIL" and backlog["value"] == 6, backlog
    assert backlog["threshold"] == {"warn": 2, "fail": 3}
    assert "not declared" not in backlog["detail"]
    assert report["backlog[email]"]["status"] == "OK"
    assert NOTICE in report["reserved"]["detail"]  # where reserved counts would come from
    assert settings.rabbitmq_management_url in report["reserved"]["detail"]

    actions = Actions(app, AuditLog(tmp_path / "audit.log"), timeout=1.0)
    outcome = actions.purge("cleanup", "cleanup", 6)
    assert outcome.ok and outcome.count == 6, outcome
    assert poll(settings, app).queues["cleanup"].waiting == 0

    worker_factory(queues=ALL_QUEUES, env=env, app=app)
    marker = send(app, 1, "cleanup")[0]
    assert AsyncResult(marker, app=app).get(timeout=30) is not None
    # FIFO: had the purged jobs survived, they would have run before the marker
    assert {AsyncResult(i, app=app).state for i in purged} == {"PENDING"}

    code, out, err, _ = run_check(check_env, "--timeout", "4")
    lines = lines_by_name(out)
    assert code == 0, out + err
    assert lines["backlog[cleanup]"][0] == "OK" and lines["queues"][0] == "OK"
    assert "(broker's count)" in lines["queues"][1]


def test_reserved_counts_come_from_the_management_api_when_it_answers(amqp):
    """Runs only where the management plugin is enabled (it is not by default)."""
    from tui.sources.amqp_queues import ManagementUnreachable

    settings, app, _env = amqp
    settings = settings.model_copy(update={"rabbitmq_management_url": ""})  # derived
    try:
        management_client(settings, 1.0).queues()
    except ManagementUnreachable as exc:
        pytest.skip(f"the RabbitMQ management API does not answer here: {exc}")
    send(app, 3, "reports")
    held: list = []
    conn = app.connection_for_write()
    try:
        channel = conn.channel()
        channel.basic_qos(0, 2, False)
        channel.basic_consume("reports", callback=held.append, no_ack=False)

        def two_held() -> bool:
            try:
                conn.drain_events(timeout=0.2)
            except TimeoutError:
                pass
            return len(held) >= 2

        wait_until(two_held, 10)
        # the API's figures lag by its stats interval (5 s by default)
        snap = wait_until(
            lambda: (s := poll(settings, app)).queues["reports"].reserved == 2 and s, 20
        )
        reports = snap.queues["reports"]
        assert (reports.waiting, reports.consumers, snap.notice) == (1, 1, "")
    finally:
        conn.close()
