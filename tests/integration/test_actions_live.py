"""Issue 4's keyboard actions against a real Redis and real ``celery worker`` processes.

The console runs headless (``App.run_test``) with its real sources (events receiver,
queue poller, inspect); keys are pressed as an operator would, and every claim is checked
twice where it matters: on screen (panes, outcome) and at the source (the broker's queue
lengths, ``inspect().stats()``, the result backend, the job's side effect, the audit file).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from celery.result import AsyncResult
from textual.widgets import Input, Select, Static

from afirgen_tasks.records import create_sample_db
from tui.actions import Actions, AuditLog, EnqueueRequest, ReadOnlyRefused
from tui.demo import SMTPSink, free_port
from tui.sources.cluster import BrokerSources
from tui.ui.app import AfirgenApp
from tui.ui.screens.forms import ConfirmScreen, EnqueueScreen, NumberFormScreen, TypedConfirmScreen
from tui.ui.widgets.panes import QueuesPane, TasksPane, WorkersPane

pytestmark = pytest.mark.integration

EMAIL = "afirgen_tasks.email.send_notification_email"
COUNTDOWN_S = 6
CLEANUP = "afirgen_tasks.cleanup.cleanup_temp_files"


# ---- helpers ---------------------------------------------------------------------------
async def until(
    pilot, predicate: Callable[[], Any], timeout: float = 20.0, message: str = "condition"
) -> Any:
    """Let the app run (its timers tick) until ``predicate()`` is truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await pilot.pause(0.1)


async def until_polled(
    pilot,
    fetch: Callable[[], Any],
    check: Callable[[Any], bool],
    timeout: float = 15.0,
    message: str = "condition",
) -> Any:
    """Like :func:`until`, but ``fetch`` blocks on the broker: it runs in a thread, the UI keeps ticking."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = await asyncio.to_thread(fetch)
        if check(last):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {message}; last: {last!r}"
            )
        await pilot.pause(0.2)


def cell(table, key: str, column: str) -> str:
    return str(table.get_cell(key, column))


def has_state(tasks: TasksPane, uuid: str, state: str) -> bool:
    return tasks.has_key(uuid) and state in cell(tasks, uuid, "state")


async def next_outcome(pilot, console: AfirgenApp, count_before: int, timeout: float = 10.0):
    """The ActionCompleted posted after ``count_before`` earlier ones."""
    await until(
        pilot,
        lambda: len(console.console_screen.runner.action_log) > count_before,
        timeout,
        "an ActionCompleted",
    )
    return console.console_screen.runner.action_log[count_before]


def queue_size(app, queue: str) -> int:
    """Waiting messages of ``queue`` on the broker, every priority list (kombu's own count)."""
    with app.connection_for_write() as conn:
        return conn.default_channel._size(queue)


def pool_processes(worker) -> int | None:
    stats = (worker.inspect(timeout=1.0).stats() or {}).get(worker.hostname)
    return len(stats["pool"]["processes"]) if stats else None


def consumed_queues(worker) -> set[str] | None:
    replies = (worker.inspect(timeout=1.0).active_queues() or {}).get(worker.hostname)
    return None if replies is None else {q["name"] for q in replies}


def start_workers(factory, *specs: dict[str, Any]):
    """Start several workers at once (each boot costs ~2 s), then wait until all answer pings."""
    workers = [factory(start=False, **spec) for spec in specs]
    for w in workers:
        w.start()
    for w in workers:
        w.wait_ready(30)
    return workers


def audit(settings) -> list[dict[str, Any]]:
    return AuditLog(settings.console_audit_log).read()


def notifications(console: AfirgenApp) -> list[str]:
    return [n.message for n in console._notifications]


@contextlib.asynccontextmanager
async def live_console(
    settings, celery_app, read_only: bool = False
) -> AsyncIterator[tuple[AfirgenApp, Any]]:
    """The real console (real sources) headless, with its events receiver connected."""
    sources = BrokerSources(settings, celery_app)
    console = AfirgenApp(settings, sources, celery_app=celery_app, read_only=read_only)
    try:
        async with console.run_test(size=(130, 40)) as pilot:
            await until(
                pilot, lambda: sources.status.state == "connected", message="receiver connected"
            )
            yield console, pilot
    finally:
        sources.stop()


async def show_worker(pilot, console: AfirgenApp, worker, pool: str = "prefork") -> WorkersPane:
    pane = console.query_one("#workers", WorkersPane)
    await until(
        pilot,
        lambda: pane.has_key(worker.hostname) and cell(pane, worker.hostname, "pool") == pool,
        message=f"{worker.hostname} inspected in the Workers pane",
    )
    return pane


async def highlight(pilot, pane_key: str, table, row_key: str) -> None:
    """Focus a pane with its number key and put the cursor on ``row_key``."""
    await pilot.press(pane_key)
    if isinstance(table, TasksPane):
        assert table.select(row_key)
    else:
        table.move_cursor(row=table.get_row_index(row_key), animate=False)
    await pilot.pause()
    assert console_focus(table) and table.cursor_key() == row_key


def console_focus(table) -> bool:
    return table.app.focused is table


def row_state_when_sent(console: AfirgenApp, tasks: TasksPane, uuid: str) -> list[str]:
    """Record what ``uuid``'s row shows at the moment the revoke is handed to the action layer.

    That moment is after the operator confirmed and before anything goes to the broker, so
    the record proves "revoke requested" was on screen before any worker could answer (an
    ordinary check after ``pilot.pause()`` races the worker's task-revoked event).
    """
    seen: list[str] = []
    send = console.actions.revoke

    def revoke(task_id: str, state: str | None, mode: str = "revoke"):
        # runs in the action thread; reading a rendered cell is harmless
        seen.append(cell(tasks, uuid, "state"))
        return send(task_id, state, mode)

    console.actions.revoke = revoke
    return seen


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


# ---- enqueue -----------------------------------------------------------------------------
async def test_enqueue_from_the_form_runs_with_its_priority_and_R_retries_it(
    live_settings, afirgen_app, worker_factory
):
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        await pilot.press("e")
        await pilot.pause()
        form = console.screen
        assert isinstance(form, EnqueueScreen)
        form.query_one("#task", Select).value = CLEANUP
        await pilot.pause()
        assert form.query_one("#queue", Input).value == "cleanup"  # pre-filled from the route
        assert form.query_one("#priority", Input).value == "1"
        form.query_one("#kwargs", Input).value = '{"max_age_hours": 100000}'
        form.query_one("#priority", Input).value = "9"
        await pilot.press("enter")
        first = await next_outcome(pilot, console, 0)
        assert not isinstance(console.screen, EnqueueScreen)
        assert first.outcome.ok and "priority 9" in first.outcome.message, first.outcome.message
        task_id = first.outcome.task_id
        tasks = console.query_one("#tasks", TasksPane)
        assert tasks.highlight_uuid == task_id and tasks.cursor_key() == task_id
        # The priority is on the wire, not only on the row: the broker holds it in the urgent band.
        queues = console.query_one("#queues", QueuesPane)
        await until(
            pilot, lambda: cell(queues, "cleanup", "urgent") == "1", message="cleanup P8-10 == 1"
        )
        assert queue_size(afirgen_app, "cleanup") == 1

        worker = await asyncio.to_thread(worker_factory, queues=("cleanup",))
        await until(
            pilot, lambda: has_state(tasks, task_id, "SUCCESS"), message="first job SUCCESS"
        )
        assert cell(tasks, task_id, "prio") == "9"
        assert cell(tasks, task_id, "worker") == worker.hostname.split("@")[0]

        # R: the same job again (issue 15's retry), its args read from the result backend
        await pilot.press("R")
        await until(pilot, lambda: isinstance(console.screen, ConfirmScreen), message="confirm")
        await pilot.press("y")
        again = await next_outcome(pilot, console, 1)
        repeat_id = again.outcome.task_id
        assert again.outcome.ok and repeat_id not in (None, task_id), again.outcome.message
        assert tasks.cursor_key() == repeat_id
        await until(
            pilot, lambda: has_state(tasks, repeat_id, "SUCCESS"), message="repeated job SUCCESS"
        )
        assert cell(tasks, repeat_id, "prio") == "9"
    assert (
        AsyncResult(task_id, app=afirgen_app).state
        == AsyncResult(repeat_id, app=afirgen_app).state
        == "SUCCESS"
    )
    lines = audit(live_settings)
    assert [(x["action"], x["target"], x["ok"]) for x in lines] == [
        ("enqueue", CLEANUP, True),
        ("retry", task_id, True),
    ]
    assert lines[1]["params"]["kwargs"] == {"max_age_hours": 100000}
    assert lines[0]["params"]["priority"] == 9 and lines[0]["params"]["kwargs"] == {
        "max_age_hours": 100000
    }


# ---- revoke / terminate ------------------------------------------------------------------
async def test_revoked_countdown_job_never_runs(live_settings, afirgen_app, worker_factory):
    outbox = live_settings.paths_outbox_dir
    worker = worker_factory(queues=("email",))
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        await pilot.press("e")
        await pilot.pause()
        form = console.screen
        form.query_one("#task", Select).value = EMAIL
        await pilot.pause()
        form.query_one(
            "#args", Input
        ).value = '["officer7@police.example.in", "revoke me", "never sent"]'
        # 6 s, not 4: on a loaded 2-core box the confirm must still land before the ETA
        form.query_one("#countdown", Input).value = str(COUNTDOWN_S)
        await pilot.press("enter")
        done = await next_outcome(pilot, console, 0)
        sent_at = time.monotonic()
        assert done.outcome.ok, done.outcome.message
        victim = done.outcome.task_id
        # the control: same countdown, sent after it (so its ETA comes later), not revoked
        control = afirgen_app.send_task(
            EMAIL, args=["officer8@police.example.in", "keep me", "sent"], countdown=COUNTDOWN_S
        )

        tasks = console.query_one("#tasks", TasksPane)
        await until(
            pilot,
            lambda: has_state(tasks, victim, "RECEIVED"),
            message="worker holds the scheduled job",
        )
        seen = row_state_when_sent(console, tasks, victim)
        await highlight(pilot, "3", tasks, victim)
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(console.screen, ConfirmScreen)
        assert victim in str(console.screen.query_one("#question", Static).render())
        await pilot.press("y")
        assert time.monotonic() - sent_at < COUNTDOWN_S - 0.5, (
            "test too slow: confirmed after the job's ETA"
        )
        outcome = (await next_outcome(pilot, console, 1)).outcome
        assert len(seen) == 1 and "revoke req" in seen[0], (
            seen
        )  # on the row before anything was sent
        assert outcome.ok and worker.hostname in outcome.replies, outcome
        await until(
            pilot, lambda: has_state(tasks, victim, "REVOKED"), timeout=15, message="victim REVOKED"
        )

        # the control job's e-mail appears once the shared ETA has passed: the victim's moment is gone too
        await until(
            pilot,
            lambda: has_state(tasks, control.id, "SUCCESS"),
            timeout=15,
            message="control SUCCESS",
        )
        await pilot.pause(0.5)  # margin for an out-of-order run (there must be none)
        assert has_state(tasks, victim, "REVOKED")
    emails = sorted(outbox.glob("*.eml"))
    assert len(emails) == 1, emails
    assert "keep me" in emails[0].read_text() and not any(
        "revoke me" in p.read_text() for p in emails
    )
    assert AsyncResult(victim, app=afirgen_app).state == "REVOKED"
    assert f"Discarding revoked task: {EMAIL}[{victim}]" in worker.log_text()
    assert [x["action"] for x in audit(live_settings)] == ["enqueue", "revoke"]


@pytest.fixture
def slow_smtp():
    sink = SMTPSink(delay=(20.0, 20.0), refuse_rate=0.0, seed=1).start()
    yield sink
    sink.stop()


async def test_terminate_stops_a_long_running_job_at_once(
    live_settings, afirgen_app, afirgen_env, worker_factory, slow_smtp
):
    env = {
        **afirgen_env,
        "AFIRGEN_SMTP_HOST": "127.0.0.1",
        "AFIRGEN_SMTP_PORT": str(slow_smtp.port),
        "AFIRGEN_SMTP_SECURITY": "none",
        "AFIRGEN_SMTP_TIMEOUT": "60",
    }
    worker = worker_factory(queues=("email",), env=env)
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        job = afirgen_app.send_task(
            EMAIL, args=["officer9@police.example.in", "slow", "twenty seconds"]
        )
        tasks = console.query_one("#tasks", TasksPane)
        await until(
            pilot,
            lambda: has_state(tasks, job.id, "STARTED") and slow_smtp.sessions >= 1,
            message="job running and talking to the slow SMTP sink",
        )
        seen = row_state_when_sent(console, tasks, job.id)
        await highlight(pilot, "3", tasks, job.id)
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(console.screen, ConfirmScreen)
        assert "SIGTERM" in str(console.screen.query_one("#question", Static).render())
        pressed = time.monotonic()
        await pilot.press("y")
        outcome = (await next_outcome(pilot, console, 0)).outcome
        assert len(seen) == 1 and "revoke req" in seen[0], seen
        assert outcome.ok and outcome.replies == {worker.hostname: f"terminating {job.id[:8]}"}, (
            outcome
        )
        await until(
            pilot, lambda: has_state(tasks, job.id, "REVOKED"), timeout=15, message="job REVOKED"
        )
        took = time.monotonic() - pressed
        record = console.model.get_task(job.id)
        assert record.state == "REVOKED"
        # the model derives this from the task-revoked event's terminated=True and signum
        assert record.revoke_reason == "terminated (signal 15)", record.revoke_reason
        assert took < 8, f"terminate took {took:.1f}s: the job was not stopped, it ran out its 20 s"
        # the pool replaces the killed process; the terminated job stays REVOKED (no late FAILURE)
        await until_polled(
            pilot, lambda: pool_processes(worker), lambda n: n == 1, message="pool back to 1"
        )
        assert has_state(tasks, job.id, "REVOKED")
    assert AsyncResult(job.id, app=afirgen_app).state == "REVOKED"
    assert slow_smtp.delivered == 0
    assert [(x["action"], x["target"]) for x in audit(live_settings)] == [("terminate", job.id)]


@pytest.fixture
def short_smtp():
    sink = SMTPSink(delay=(2.5, 2.5), refuse_rate=0.0, seed=1).start()
    yield sink
    sink.stop()


@pytest.mark.parametrize(("key", "mode"), [("t", "terminate"), ("k", "kill")])
async def test_terminate_of_a_job_that_finished_before_the_send_is_not_shown_as_done(
    live_settings, afirgen_app, afirgen_env, worker_factory, short_smtp, key, mode
):
    """The job runs when the operator presses t, and finishes while the confirm prompt is open:
    every worker answers ``terminate: tasks unknown`` and the console must say nobody ran it."""
    env = {
        **afirgen_env,
        "AFIRGEN_SMTP_HOST": "127.0.0.1",
        "AFIRGEN_SMTP_PORT": str(short_smtp.port),
        "AFIRGEN_SMTP_SECURITY": "none",
        "AFIRGEN_SMTP_TIMEOUT": "60",
    }
    worker = worker_factory(queues=("email",), env=env)
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        job = afirgen_app.send_task(
            EMAIL, args=["officer9@police.example.in", "quick", "2.5 seconds"]
        )
        tasks = console.query_one("#tasks", TasksPane)
        await until(pilot, lambda: has_state(tasks, job.id, "STARTED"), message="job running")
        await highlight(pilot, "3", tasks, job.id)
        await pilot.press(key)
        await pilot.pause()
        assert isinstance(console.screen, ConfirmScreen)
        assert "(STARTED)" in str(console.screen.query_one("#question", Static).render())
        # The operator hesitates: the job ends while the prompt is still open.  Wait for the
        # worker's task-succeeded event, not the result backend: the pool child stores the
        # result before the worker's main process forgets the request (celery's
        # Request.on_success: task_ready, then the event), so in between a terminate is still
        # answered "terminating" -- the job really was running as far as the worker knew.
        await until(
            pilot,
            lambda: (rec := console.model.get_task(job.id)) is not None and rec.state == "SUCCESS",
            message="task-succeeded received while the prompt is open",
        )
        await pilot.press("y")
        outcome = (await next_outcome(pilot, console, 0)).outcome
        assert not outcome.ok, outcome
        assert outcome.message.endswith(
            f"no worker was running {job.id[:8]} (it had already finished or not "
            "started); it stays marked revoked"
        ), outcome.message
        assert outcome.replies == {worker.hostname: "was not running it"}, outcome.replies
        shown = [n for n in console._notifications if "no worker was running" in n.message]
        assert len(shown) == 1 and shown[0].severity == "warning", [
            (n.message, n.severity) for n in shown
        ]
        assert "tasks unknown" not in shown[0].message and "{" not in shown[0].message
        await until(pilot, lambda: has_state(tasks, job.id, "SUCCESS"), message="row shows SUCCESS")
    assert (
        AsyncResult(job.id, app=afirgen_app).state == "SUCCESS"
    )  # a revoke never overwrites a result
    assert short_smtp.delivered == 1
    [line] = audit(live_settings)
    assert (line["action"], line["target"], line["ok"]) == (mode, job.id, False)
    assert "no worker was running" in line["outcome"] and "was not running it" in line["outcome"]


async def test_revoke_and_terminate_of_a_waiting_job_in_plain_words(
    live_settings, afirgen_app, worker_factory
):
    """Nobody consumes ``cleanup``: a revoke is flagged by the (default-queue) worker, a success;
    a terminate finds nothing running, and the job stays revoked: it never runs."""
    worker = worker_factory(queues=("default",))
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        tasks = console.query_one("#tasks", TasksPane)
        revoked = afirgen_app.send_task(CLEANUP, kwargs={"max_age_hours": 100000})
        terminated = afirgen_app.send_task(CLEANUP, kwargs={"max_age_hours": 100000})
        await until(
            pilot,
            lambda: (
                has_state(tasks, revoked.id, "SENT") and has_state(tasks, terminated.id, "SENT")
            ),
            message="both jobs waiting",
        )
        await highlight(pilot, "3", tasks, revoked.id)
        await pilot.press("r", "y")
        first = (await next_outcome(pilot, console, 0)).outcome
        assert first.ok and first.message == f"revoke of {revoked.id[:8]} requested", first
        assert first.replies == {worker.hostname: f"flagged {revoked.id[:8]} as revoked"}, (
            first.replies
        )
        await until(
            pilot,
            lambda: any(first.replies[worker.hostname] in n for n in notifications(console)),
            message="the readable reply in a notification",
        )
        assert not any("{'" in n for n in notifications(console))

        await highlight(pilot, "3", tasks, terminated.id)
        await pilot.press("t", "y")
        second = (await next_outcome(pilot, console, 1)).outcome
        assert not second.ok and "no worker was running" in second.message, second
        assert "revoke req" in cell(tasks, terminated.id, "state"), "the worker did take the revoke"

        # the worker that answered starts consuming cleanup: both stay revoked, neither runs
        await asyncio.to_thread(
            afirgen_app.control.add_consumer,
            "cleanup",
            destination=[worker.hostname],
            reply=True,
            timeout=2.0,
        )
        await until(
            pilot,
            lambda: (
                has_state(tasks, revoked.id, "REVOKED")
                and has_state(tasks, terminated.id, "REVOKED")
            ),
            timeout=20,
            message="both REVOKED",
        )
    assert f"Discarding revoked task: {CLEANUP}[{terminated.id}]" in worker.log_text()
    assert AsyncResult(terminated.id, app=afirgen_app).state == "REVOKED"
    assert [(x["action"], x["ok"]) for x in audit(live_settings)] == [
        ("revoke", True),
        ("terminate", False),
    ]


# ---- worker concurrency ------------------------------------------------------------------
async def test_grow_and_shrink_a_prefork_pool(live_settings, afirgen_app, worker_factory):
    worker = worker_factory(queues=("default",), concurrency=1)
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        workers = await show_worker(pilot, console, worker)
        assert cell(workers, worker.hostname, "conc") == "1"
        await highlight(pilot, "2", workers, worker.hostname)

        await pilot.press("plus")
        grown = await next_outcome(pilot, console, 0)
        assert grown.action == "pool_grow" and grown.outcome.ok, grown.outcome
        assert grown.outcome.replies == {worker.hostname: "pool will grow"}
        await until_polled(
            pilot, lambda: pool_processes(worker), lambda n: n == 2, message="stats: 2 processes"
        )
        await until(
            pilot,
            lambda: cell(workers, worker.hostname, "conc") == "2 +1",
            message="Conc column shows 2",
        )
        assert len(worker.pool_pids()) == 2

        await pilot.press("minus")
        shrunk = await next_outcome(pilot, console, 1)
        assert shrunk.action == "pool_shrink" and shrunk.outcome.ok, shrunk.outcome
        await until_polled(
            pilot, lambda: pool_processes(worker), lambda n: n == 1, message="stats: 1 process"
        )
        await until(
            pilot,
            lambda: cell(workers, worker.hostname, "conc") == "1",
            message="Conc column back to 1",
        )
    assert [(x["action"], x["target"], x["ok"]) for x in audit(live_settings)] == [
        ("pool_grow", worker.hostname, True),
        ("pool_shrink", worker.hostname, True),
    ]


async def test_shrink_that_would_leave_no_pool_process_is_refused(
    live_settings, afirgen_app, worker_factory
):
    worker = worker_factory(queues=("default",), concurrency=2)
    host = worker.hostname
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        workers = await show_worker(pilot, console, worker)
        assert cell(workers, host, "conc") == "2"
        await highlight(pilot, "2", workers, host)

        # "=" with N = -2 on a pool of 2: refused, nothing sent
        await pilot.press("equals_sign")
        await pilot.pause()
        form = console.screen
        assert isinstance(form, NumberFormScreen)
        form.query_one("#n", Input).value = "-2"
        await pilot.press("enter")
        first = await next_outcome(pilot, console, 0)
        assert first.action == "pool_shrink" and not first.outcome.ok, first.outcome
        assert f"would leave {host} with no pool process" in first.outcome.message
        assert "use pause (p) to stop it taking jobs" in first.outcome.message
        assert await asyncio.to_thread(pool_processes, worker) == 2

        # "-" twice at once: the first shrinks to 1, the second is refused even before a new inspect
        await highlight(pilot, "2", workers, host)
        await pilot.press("minus", "minus")
        second = await next_outcome(pilot, console, 1)
        third = await next_outcome(pilot, console, 2)
        assert sorted([second.outcome.ok, third.outcome.ok]) == [False, True], (
            second.outcome,
            third.outcome,
        )
        await until_polled(
            pilot, lambda: pool_processes(worker), lambda n: n == 1, message="stats: 1 process"
        )
        # (max-concurrency stays 2: the column reads 1/2)
        await until(
            pilot,
            lambda: cell(workers, host, "conc").split()[0] == "1",
            message="Conc column shows 1",
        )

        # "-" on a pool of 1: refused, with the reason shown
        await pilot.press("minus")
        fourth = await next_outcome(pilot, console, 3)
        assert (
            not fourth.outcome.ok
            and f"would leave {host} with no pool process" in fourth.outcome.message
        )
        await until(
            pilot,
            lambda: any("no pool process" in n for n in notifications(console)),
            message="the refusal in a notification",
        )

        # a job still runs: the pool was never emptied
        job = afirgen_app.send_task(CLEANUP, kwargs={"max_age_hours": 100000}, queue="default")
        tasks = console.query_one("#tasks", TasksPane)
        await until(
            pilot,
            lambda: has_state(tasks, job.id, "SUCCESS"),
            message="job ran on the 1-process pool",
        )

    # the action layer refuses whatever calls it, and audits it
    layer = Actions(afirgen_app, AuditLog(live_settings.console_audit_log), timeout=1.0)
    direct = layer.pool_resize([host], -1, current={host: 1})
    assert not direct.ok and "no pool process" in direct.message
    assert pool_processes(worker) == 1
    lines = audit(live_settings)
    assert [(x["action"], x["target"], x["ok"]) for x in lines] == [
        ("pool_shrink", host, False),
        ("pool_shrink", host, True),
        ("pool_shrink", host, False),
        ("pool_shrink", host, False),
        ("pool_shrink", host, False),
    ]
    assert lines[0]["params"] == {"n": 2, "workers": [host], "current": {host: 2}}
    assert all("no pool process" in x["outcome"] for x in lines if not x["ok"])


async def test_a_frozen_worker_is_reported_as_not_answering_within_the_timeout(
    live_settings, afirgen_app, worker_factory
):
    """SIGSTOP: the worker is connected but answers nothing, the hardest case to tell apart."""
    worker = worker_factory(queues=("default",), concurrency=1)
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        workers = await show_worker(pilot, console, worker)
        await highlight(pilot, "2", workers, worker.hostname)
        worker.kill(signal.SIGSTOP, group=True)
        try:
            sent = time.monotonic()
            await pilot.press("plus")
            grown = await next_outcome(pilot, console, 0, timeout=console.actions.timeout + 10)
            took = time.monotonic() - sent
            assert not grown.outcome.ok
            assert grown.outcome.replies == {worker.hostname: "no reply (worker down or busy?)"}
            assert took < console.actions.timeout + 5, took
            # The keyboard still works while the worker is silent.
            await pilot.press("question_mark")
            await until(
                pilot,
                lambda: console.screen.__class__.__name__ == "HelpScreen",
                message="help opens",
            )
        finally:
            worker.kill(signal.SIGCONT, group=True)
    assert [(x["action"], x["target"], x["ok"]) for x in audit(live_settings)] == [
        ("pool_grow", worker.hostname, False)
    ]


async def test_autoscale_bounds_and_refusals_in_the_workers_words(
    live_settings, afirgen_app, worker_factory
):
    scaled, solo = start_workers(
        worker_factory,
        {"queues": ("default",), "name": "scaled", "extra_args": ("--autoscale=4,1",)},
        {"queues": ("default",), "name": "solo", "pool": "solo"},
    )
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        workers = await show_worker(pilot, console, scaled)
        await show_worker(pilot, console, solo, pool="solo")
        await until(
            pilot,
            lambda: "(auto 1–4)" in cell(workers, scaled.hostname, "conc"),
            message="autoscale 4,1 shown",
        )

        await highlight(pilot, "2", workers, scaled.hostname)
        await pilot.press("a")
        await pilot.pause()
        form = console.screen
        assert isinstance(form, NumberFormScreen)
        assert (form.query_one("#max", Input).value, form.query_one("#min", Input).value) == (
            "4",
            "1",
        )
        form.query_one("#max", Input).value = "3"
        form.query_one("#min", Input).value = "2"
        await pilot.press("enter")
        done = await next_outcome(pilot, console, 0)
        assert done.action == "autoscale" and done.outcome.ok, done.outcome
        assert done.outcome.replies == {scaled.hostname: "autoscale now max=3 min=2"}
        stats = await asyncio.to_thread(lambda: scaled.inspect().stats()[scaled.hostname])
        assert (stats["autoscaler"]["max"], stats["autoscaler"]["min"]) == (3, 2)
        await until(
            pilot,
            lambda: "(auto 2–3)" in cell(workers, scaled.hostname, "conc"),
            message="Conc shows (auto 2–3)",
        )

        # "+" on an autoscaled worker: the worker's own refusal, in words
        await pilot.press("plus")
        refused = (await next_outcome(pilot, console, 1)).outcome
        assert not refused.ok
        assert "pool_grow is not supported with autoscale" in refused.replies[scaled.hostname]

        # "+" on a solo pool: refused by the worker, shown to the operator, nothing changes
        await highlight(pilot, "2", workers, solo.hostname)
        await pilot.press("plus")
        solo_out = (await next_outcome(pilot, console, 2)).outcome
        reply = solo_out.replies.get(solo.hostname, "")
        assert not solo_out.ok and reply.startswith("refused:") and "grow" in reply, solo_out
        await until(
            pilot,
            lambda: any(reply in n for n in notifications(console)),
            message="the worker's refusal in a notification",
        )
        stats = await asyncio.to_thread(lambda: solo.inspect().stats()[solo.hostname])
        assert stats["pool"]["max-concurrency"] == 1
    lines = audit(live_settings)
    assert [(x["action"], x["ok"]) for x in lines] == [
        ("autoscale", True),
        ("pool_grow", False),
        ("pool_grow", False),
    ]
    assert reply in lines[-1]["outcome"]


# ---- queues ------------------------------------------------------------------------------
async def test_paused_queue_holds_its_jobs_until_resumed(
    live_settings, afirgen_app, worker_factory
):
    worker = worker_factory(queues=("cleanup",))
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        queues = console.query_one("#queues", QueuesPane)
        tasks = console.query_one("#tasks", TasksPane)
        await show_worker(pilot, console, worker)
        await until(
            pilot,
            lambda: cell(queues, "cleanup", "consumers") == "1",
            message="cleanup has a consumer",
        )
        await highlight(pilot, "1", queues, "cleanup")

        await pilot.press("p")
        paused = await next_outcome(pilot, console, 0)
        assert paused.action == "pause_queue" and paused.outcome.ok, paused.outcome
        # the mark is derived from the workers' queues: it shows after the next inspect
        await until(
            pilot,
            lambda: "⏸" in cell(queues, "cleanup", "name"),
            message="cleanup marked paused",
        )
        assert console.console_screen.paused_queues == {"cleanup"}
        assert await asyncio.to_thread(consumed_queues, worker) == set()

        jobs = [afirgen_app.send_task(CLEANUP, kwargs={"max_age_hours": 100000}) for _ in range(3)]
        await until(
            pilot, lambda: cell(queues, "cleanup", "waiting") == "3", message="3 jobs waiting"
        )
        # Nobody takes them: observe a window (a negative cannot be awaited), then check the broker too.
        window_end = time.monotonic() + 1.5
        while time.monotonic() < window_end:
            assert all(has_state(tasks, j.id, "SENT") for j in jobs), [
                cell(tasks, j.id, "state") for j in jobs
            ]
            await pilot.pause(0.1)
        assert queue_size(afirgen_app, "cleanup") == 3 and cell(queues, "cleanup", "waiting") == "3"

        assert queues.cursor_key() == "cleanup" and console.focused is queues
        await pilot.press("p")
        resumed = await next_outcome(pilot, console, 1)
        assert resumed.action == "resume_queue" and resumed.outcome.ok, resumed.outcome
        await until(
            pilot,
            lambda: "⏸" not in cell(queues, "cleanup", "name"),
            message="cleanup no longer marked paused",
        )
        assert console.console_screen.paused_queues == set()
        await until(
            pilot, lambda: all(has_state(tasks, j.id, "SUCCESS") for j in jobs), message="jobs ran"
        )
        await until(
            pilot, lambda: cell(queues, "cleanup", "waiting") == "0", message="cleanup drained"
        )
    assert await asyncio.to_thread(consumed_queues, worker) == {"cleanup"}
    assert [x["action"] for x in audit(live_settings)] == ["pause_queue", "resume_queue"]


async def test_purge_needs_the_typed_name_and_reports_the_count(live_settings, afirgen_app):
    for priority in (1, 5, 9, 9, 3):  # several priority lists: all of them must go
        afirgen_app.send_task(CLEANUP, priority=priority)
    afirgen_app.send_task(
        "afirgen_tasks.analytics.update_dashboard_stats"
    )  # another queue: must stay
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        queues = console.query_one("#queues", QueuesPane)
        await until(
            pilot,
            lambda: queues.has_key("cleanup") and cell(queues, "cleanup", "waiting") == "5",
            message="5 waiting in cleanup",
        )
        await highlight(pilot, "1", queues, "cleanup")
        await pilot.press("x")
        await pilot.pause()
        dialog = console.screen
        assert isinstance(dialog, TypedConfirmScreen)
        assert "5 waiting message(s)" in str(dialog.query_one("#question", Static).render())

        await pilot.press(*"cleanu", "enter")
        await pilot.pause()
        assert console.screen is dialog, "a wrong name must keep the dialog open"
        assert dialog.query_one("#typed-error", Static).has_class("-shown")
        assert (
            queue_size(afirgen_app, "cleanup") == 5
            and console.console_screen.runner.action_log == []
        )

        dialog.query_one("#typed", Input).value = ""
        await pilot.press(*"cleanup", "enter")
        done = await next_outcome(pilot, console, 0)
        assert done.action == "purge" and done.outcome.ok and done.outcome.count == 5, done.outcome
        assert "purged 5 message(s) from cleanup" in done.outcome.message
        assert queue_size(afirgen_app, "cleanup") == 0
        await until(
            pilot, lambda: cell(queues, "cleanup", "waiting") == "0", message="pane shows 0"
        )
    assert queue_size(afirgen_app, "analytics") == 1
    [line] = audit(live_settings)
    assert (line["action"], line["target"], line["ok"], line["params"]) == (
        "purge",
        "cleanup",
        True,
        {"expected": 5, "purged": 5},
    )


# ---- safety ------------------------------------------------------------------------------
async def test_read_only_console_sends_nothing(live_settings, afirgen_app, worker_factory):
    worker = worker_factory(queues=("default",), concurrency=1)
    async with live_console(live_settings, afirgen_app, read_only=True) as (console, pilot):
        queues = console.query_one("#queues", QueuesPane)
        tasks = console.query_one("#tasks", TasksPane)
        workers = await show_worker(pilot, console, worker)
        waiting = afirgen_app.send_task(CLEANUP, priority=4)  # nobody consumes cleanup
        await until(
            pilot,
            lambda: cell(queues, "cleanup", "waiting") == "1" and tasks.has_key(waiting.id),
            message="the waiting job on screen",
        )

        async def refused(count: int, action: str) -> None:
            done = await next_outcome(pilot, console, count)
            assert done.action == action and not done.outcome.ok, done.outcome
            assert "read-only" in done.outcome.message
            assert console.screen is console.screen_stack[0], (
                f"{action}: a dialog opened in read-only mode"
            )

        await pilot.press("e")
        await refused(0, "enqueue")
        await highlight(pilot, "3", tasks, waiting.id)
        await pilot.press("r")
        await refused(1, "revoke")
        await highlight(pilot, "2", workers, worker.hostname)
        await pilot.press("plus")
        await refused(2, "pool_grow")
        await highlight(pilot, "1", queues, "default")
        await pilot.press("p")
        await refused(3, "pause_queue")
        await highlight(pilot, "1", queues, "cleanup")
        await pilot.press("x")
        await refused(4, "purge")
        assert console.console_screen.paused_queues == set()
        assert any("read-only" in n for n in notifications(console))

    # nothing reached the broker or the worker
    assert queue_size(afirgen_app, "cleanup") == 1 and queue_size(afirgen_app, "default") == 0
    assert pool_processes(worker) == 1
    assert consumed_queues(worker) == {"default"}
    assert waiting.id not in (worker.inspect().revoked() or {}).get(worker.hostname, [])

    # the enforcement is in the action layer, not only in the keys
    layer = Actions(
        afirgen_app, AuditLog(live_settings.console_audit_log), read_only=True, timeout=1.0
    )
    for call in (
        lambda: layer.enqueue(EnqueueRequest(CLEANUP, [], {}, "cleanup", 5)),
        lambda: layer.revoke(waiting.id, "SENT", "terminate"),
        lambda: layer.pool_resize([worker.hostname], 1),
        lambda: layer.autoscale([worker.hostname], 3, 1),
        lambda: layer.pause_queue("default"),
        lambda: layer.purge("cleanup", "cleanup", 1),
    ):
        with pytest.raises(ReadOnlyRefused):
            call()
    assert queue_size(afirgen_app, "cleanup") == 1 and queue_size(afirgen_app, "default") == 0
    assert pool_processes(worker) == 1 and consumed_queues(worker) == {"default"}
    lines = audit(live_settings)
    assert [x["action"] for x in lines] == [
        "enqueue",
        "revoke",
        "pool_grow",
        "pause_queue",
        "purge",
        "enqueue",
        "terminate",
        "pool_grow",
        "autoscale",
        "pause_queue",
        "purge",
    ]
    assert all(x["ok"] is False and x["outcome"] == "refused: read-only mode" for x in lines)


@pytest.fixture
def password_redis(tmp_path):
    """A private redis-server that requires a password (the shared one does not)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server binary to start a password-protected broker")
    port = free_port()
    password = "Br0ker-s3cret-pw"
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            password,
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    import redis

    client = redis.Redis(port=port, password=password)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("the password-protected redis-server did not start")
            time.sleep(0.05)
    client.close()
    yield port, password
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(5)


async def test_audit_lines_for_every_attempt_without_secrets(
    afirgen_env, password_redis, monkeypatch
):
    from afirgen_tasks.factory import create_app
    from afirgen_tasks.settings import load_settings

    port, broker_pw = password_redis
    smtp_pw = "Smtp-pa55word-xyz"
    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://:{broker_pw}@127.0.0.1:{port}/0")
    monkeypatch.setenv("CELERY_RESULT_BACKEND", f"redis://:{broker_pw}@127.0.0.1:{port}/1")
    monkeypatch.setenv("AFIRGEN_SMTP_PASSWORD", smtp_pw)
    monkeypatch.setenv("SSH_CONNECTION", "203.0.113.7 52144 10.0.0.2 22")
    settings = load_settings().model_copy(
        update={
            "console_refresh_interval": 0.1,
            "console_queue_poll_interval": 0.2,
            "console_control_timeout": 0.5,
        }
    )
    settings.ensure_dirs()
    app = create_app(settings, main="audit-test")
    try:
        async with live_console(settings, app) as (console, pilot):
            # an operator pastes the SMTP password into a job: the job gets it, the audit must not
            await pilot.press("e")
            await pilot.pause()
            form = console.screen
            form.query_one("#task", Select).value = EMAIL
            await pilot.pause()
            form.query_one("#args", Input).value = json.dumps(
                ["ops@police.example.in", "creds", f"pw is {smtp_pw}"]
            )
            await pilot.press("enter")
            sent = await next_outcome(pilot, console, 0)
            assert sent.outcome.ok, sent.outcome
            queues = console.query_one("#queues", QueuesPane)
            await until(
                pilot, lambda: cell(queues, "email", "waiting") == "1", message="email waiting 1"
            )
            # (the "email" queue is not paused here: see test_audit_line_of_a_refusal_on_the_email_queue)
            await highlight(pilot, "1", queues, "cleanup")
            await pilot.press("p")  # no worker to answer: a failed attempt, audited too
            paused = await next_outcome(pilot, console, 1)
            assert not paused.outcome.ok and paused.outcome.replies == {"*": "no worker replied"}, (
                paused.outcome
            )
            await highlight(pilot, "1", queues, "email")
            await pilot.press("x")
            await pilot.pause()
            await pilot.press(*"email", "enter")
            purged = await next_outcome(pilot, console, 2)
            assert purged.outcome.ok and purged.outcome.count == 1, purged.outcome
            await pilot.press("3")
            assert console.query_one("#tasks", TasksPane).select(sent.outcome.task_id)
            await pilot.press("r", "y")  # nobody acknowledges it: a failed attempt
            revoked = await next_outcome(pilot, console, 3)
            assert not revoked.outcome.ok
            shown = "\n".join(notifications(console))
    finally:
        app.close()

    path = settings.console_audit_log
    text = path.read_text()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert smtp_pw not in text and broker_pw not in text
    assert smtp_pw not in shown and broker_pw not in shown
    every = [json.loads(line) for line in text.splitlines()]
    # each action: its attempt line (on disk before the send), then its outcome line
    assert [x["phase"] for x in every] == ["attempt", "outcome"] * 4
    assert all(
        a["id"] == o["id"] and a["action"] == o["action"]
        for a, o in zip(every[::2], every[1::2], strict=True)
    )
    lines = every[1::2]
    assert [(x["action"], x["target"], x["ok"]) for x in lines[:3]] == [
        ("enqueue", EMAIL, True),
        ("pause_queue", "cleanup", False),
        ("purge", "email", True),
    ]
    assert (lines[3]["action"], lines[3]["ok"]) == ("revoke", False)
    for line in lines:
        assert {"user", "ts", "action", "target", "params", "outcome", "ok"} <= set(line), line
        assert line["user"] == getpass.getuser() and line["ssh_client"] == "203.0.113.7"
        assert line["outcome"]
    assert lines[0]["params"]["queue"] == "email"
    assert "no worker replied" in lines[1]["outcome"]
    assert "***" in json.dumps(lines[0]["params"]["args"])
    assert "purged 1" in lines[2]["outcome"]
    assert (
        lines[3]["target"] == sent.outcome.task_id
        and "no worker acknowledged" in lines[3]["outcome"]
    )


# ---- regressions: bugs found by these tests, fixed in tui/ -----------------------------------
async def test_audit_line_of_a_refusal_on_the_email_queue(live_settings, afirgen_app):
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        queues = console.query_one("#queues", QueuesPane)
        await until(pilot, lambda: queues.has_key("email"), message="email row")
        await highlight(pilot, "1", queues, "email")
        await pilot.press("p")  # no worker runs: nobody can take the request
        done = await next_outcome(pilot, console, 0)
        assert not done.outcome.ok and done.outcome.replies == {"*": "no worker replied"}
        shown = "\n".join(notifications(console))
    attempt, line = live_settings.console_audit_log.read_text().splitlines()
    assert json.loads(attempt)["phase"] == "attempt"
    record = json.loads(line)  # fails today: the line is cut inside a string
    assert record["action"] == "pause_queue" and "no worker replied" in record["outcome"]
    assert "no worker replied" in shown


async def test_enqueued_row_is_marked_even_when_its_event_came_first(live_settings, afirgen_app):
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        tasks = console.query_one("#tasks", TasksPane)
        send = console.actions.enqueue

        def enqueue_after_its_event_is_shown(req):
            # runs in the action thread: the real send, then hold the outcome until a tick has
            # shown the row from the task-sent event (fixes the race's order; nothing is faked)
            outcome = send(req)
            deadline = time.monotonic() + 10
            while outcome.task_id not in tasks.row_keys and time.monotonic() < deadline:
                time.sleep(0.02)
            return outcome

        console.actions.enqueue = enqueue_after_its_event_is_shown
        await pilot.press("e")
        await pilot.pause()
        console.screen.query_one("#task", Select).value = CLEANUP
        await pilot.pause()
        await pilot.press("enter")
        done = await next_outcome(pilot, console, 0)
        task_id = done.outcome.task_id
        assert done.outcome.ok and tasks.highlight_uuid == task_id and tasks.cursor_key() == task_id
        assert cell(tasks, task_id, "state").startswith("➤"), cell(tasks, task_id, "state")


# ---- audit first (issue 12, item 6) -----------------------------------------------------------
async def test_pause_with_an_unwritable_audit_log_is_refused_and_sends_nothing(
    live_settings, afirgen_app, worker_factory, tmp_path
):
    """Before: ``p`` paused the queue, said "failed", and nothing was audited."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a regular file where the log's directory should be\n")
    settings = live_settings.model_copy(update={"console_audit_log": blocker / "audit.log"})
    worker = worker_factory(queues=("cleanup",))
    async with live_console(settings, afirgen_app) as (console, pilot):
        queues = console.query_one("#queues", QueuesPane)
        await show_worker(pilot, console, worker)
        await until(
            pilot,
            lambda: cell(queues, "cleanup", "consumers") == "1",
            message="cleanup has a consumer",
        )
        await highlight(pilot, "1", queues, "cleanup")
        await pilot.press("p")
        done = await next_outcome(pilot, console, 0)
        shown = "\n".join(notifications(console))
    assert not done.outcome.ok and console.console_screen.paused_queues == set()
    assert done.outcome.message == (
        f"pause_queue refused: cannot write the audit log {blocker / 'audit.log'}:"
        f" {blocker} is not a directory"
    )
    assert "cannot write the audit log" in shown
    # the worker never got the cancel_consumer: it still consumes cleanup
    assert await asyncio.to_thread(consumed_queues, worker) == {"cleanup"}
