# ruff: noqa: F811 - live_settings is a fixture imported from test_actions_live
"""Issue 15 against a real Redis and real ``celery worker`` processes: faithful retries and
bulk revoke of marked tasks, pressed as an operator would in the headless console.

Each claim is checked at the source: the result backend's record of the new task (its args
are the original's, longer than the events' truncated repr), the broker's revoked jobs
(discarded by a worker that starts consuming after the revoke) and the audit file.
"""

from __future__ import annotations

import asyncio

import pytest
from celery.result import AsyncResult

from afirgen_tasks.records import create_sample_db
from tests.integration.test_actions_live import (  # noqa: F401 - live_settings is a fixture
    audit,
    has_state,
    live_console,
    live_settings,
    next_outcome,
    until,
    until_polled,
)
from tui.actions import Actions, AuditLog
from tui.sources.cluster import BrokerSources
from tui.ui.screens.forms import ConfirmScreen
from tui.ui.widgets.panes import TasksPane

pytestmark = pytest.mark.integration

EXCEL = "afirgen_tasks.reports.generate_excel_report"
STATS = "afirgen_tasks.analytics.update_dashboard_stats"


def backend_meta(app, uuid: str) -> dict:
    return app.backend.get_task_meta(uuid)


async def test_retry_reaches_success_with_the_original_args(
    live_settings, afirgen_app, worker_factory
):
    # FIR 21 is missing (the sample db holds 1-20): the report fails until it exists.
    fir_ids = [*range(1, 22)] * 60
    long_repr = repr([fir_ids])
    assert len(long_repr) > 1024  # Celery's argsrepr_maxsize: the events carry a cut repr
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        await asyncio.to_thread(worker_factory, queues=("reports",))
        original = afirgen_app.send_task(EXCEL, args=[fir_ids], queue="reports", priority=7).id
        tasks = console.query_one("#tasks", TasksPane)
        await until(pilot, lambda: has_state(tasks, original, "FAILURE"), message="FAILURE")
        seen = console.console_screen.model.get_task(original)
        assert seen.args != long_repr and len(seen.args) < len(long_repr)  # truncated
        await until_polled(
            pilot,
            lambda: backend_meta(afirgen_app, original),
            lambda m: m.get("status") == "FAILURE",
            message="the failure stored",
        )
        await asyncio.to_thread(create_sample_db, live_settings.fir_db_path, 21, 3)

        tasks.focus()
        assert tasks.select(original)
        await pilot.press("R")
        await until(pilot, lambda: isinstance(console.screen, ConfirmScreen), message="confirm")
        assert "on reports at priority 7" in console.screen.question
        await pilot.press("y")
        done = await next_outcome(pilot, console, 0)
        assert done.action == "retry" and done.outcome.ok, done.outcome.message
        retry = done.outcome.task_id
        await until(pilot, lambda: has_state(tasks, retry, "SUCCESS"), 30, "retry SUCCESS")
        assert str(tasks.get_cell(retry, "prio")) == "7"
        model = console.console_screen.model
        assert model.get_task(retry).retry_of == original
        assert model.retried_as(original) == [retry]

        # A retry sent by another console: the link comes from the task-sent event alone.
        other = Actions(afirgen_app, AuditLog(live_settings.console_audit_log))
        elsewhere = await asyncio.to_thread(
            other.retry,
            original,
            BrokerSources(live_settings, afirgen_app).fetch_stored_job,
            EXCEL,
            "reports",
            7,
        )
        assert elsewhere.ok, elsewhere.message
        await until(
            pilot,
            lambda: (t := model.get_task(elsewhere.task_id)) is not None and t.retry_of == original,
            message="retry_of from the task-sent event",
        )
        for uuid in (retry, elsewhere.task_id):
            meta = await until_polled(
                pilot,
                lambda u=uuid: backend_meta(afirgen_app, u),
                lambda m: m.get("status") == "SUCCESS",
                30,
                "retries SUCCESS in the backend",
            )
            assert meta["args"] == [fir_ids] and meta["kwargs"] == {}
            assert meta["name"] == EXCEL and meta["queue"] == "reports"
    assert AsyncResult(original, app=afirgen_app).state == "FAILURE"
    retries = [x for x in audit(live_settings) if x["action"] == "retry"]
    assert [x["target"] for x in retries] == [original, original]
    assert retries[0]["params"]["args"] == [fir_ids] and retries[0]["params"]["retried_as"] == retry


async def test_retry_refused_without_a_backend_record(live_settings, afirgen_app, worker_factory):
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        # analytics: nobody consumes it, so the job never starts and nothing is stored
        waiting = afirgen_app.send_task(STATS, queue="analytics", priority=5).id
        tasks = console.query_one("#tasks", TasksPane)
        await until(pilot, lambda: has_state(tasks, waiting, "SENT"), message="SENT")
        tasks.focus()
        assert tasks.select(waiting)
        await pilot.press("R")
        await until(pilot, lambda: isinstance(console.screen, ConfirmScreen), message="confirm")
        await pilot.press("y")
        done = await next_outcome(pilot, console, 0)
        assert not done.outcome.ok
        assert (
            f"args were not stored: the result backend has no record of {waiting}"
            in done.outcome.message
        )
        assert "a retry would not be faithful" in done.outcome.message
        assert [t for t in console.console_screen.model.iter_tasks() if t.retry_of] == []
    [line] = audit(live_settings)
    assert line["action"] == "retry" and line["ok"] is False


async def test_bulk_revoke_covers_every_marked_job(live_settings, afirgen_app, worker_factory):
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        # a worker that answers the revoke but does not consume analytics (yet)
        keeper = await asyncio.to_thread(worker_factory, queues=("cleanup",), pool="solo")
        jobs = [afirgen_app.send_task(STATS, queue="analytics").id for _ in range(5)]
        bystander = afirgen_app.send_task(STATS, queue="default").id  # not in the filter
        tasks = console.query_one("#tasks", TasksPane)
        await until(
            pilot,
            lambda: all(has_state(tasks, j, "SENT") for j in [*jobs, bystander]),
            message="every job SENT",
        )
        console.console_screen.set_filter("queue:analytics")
        tasks.focus()
        await pilot.press("asterisk")
        await until(pilot, lambda: isinstance(console.screen, ConfirmScreen), message="mark")
        assert "Mark 5 task(s)" in console.screen.question
        await pilot.press("y")
        await pilot.pause()
        assert tasks.marked == set(jobs)
        await pilot.press("r")
        await until(pilot, lambda: isinstance(console.screen, ConfirmScreen), message="confirm")
        assert "Revoke 5 marked task(s)?" in console.screen.question
        assert "5 × update_dashboard_stats (analytics)" in console.screen.question
        await pilot.press("y")
        done = await next_outcome(pilot, console, 0)
        assert done.action == "bulk_revoke"
        assert done.outcome.message == "revoked 5 of 5; 0 refused", done.outcome.message
        assert tasks.marked == set()

        # the worker now consumes analytics: it discards every revoked job, none runs
        await asyncio.to_thread(
            afirgen_app.control.add_consumer,
            "analytics",
            destination=[keeper.hostname],
            reply=True,
            timeout=5,
        )
        await until(
            pilot,
            lambda: all(has_state(tasks, j, "REVOKED") for j in jobs),
            30,
            "every marked job REVOKED",
        )
        console.console_screen.action_escape()  # the filter off: the bystander still waits
        await pilot.pause()
        assert has_state(tasks, bystander, "SENT")
    for job in jobs:
        assert AsyncResult(job, app=afirgen_app).state == "REVOKED"
    lines = audit(live_settings)
    assert sorted(x["target"] for x in lines) == sorted(jobs)
    assert all(x["action"] == "revoke" and x["ok"] for x in lines)
