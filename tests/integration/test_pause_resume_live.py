"""Issue 14, items 1-2: pause and resume give a queue back to exactly the workers that had it,
and the pause mark is derived from the cluster (records in the broker + ``active_queues``).

Two real workers, as in the night shift: w1 on default,email,reports; w2 on
analytics,cleanup,reports.  Every claim is checked at the source too (``inspect
active_queues``, the record in Redis, the audit file).
"""

from __future__ import annotations

import asyncio

import pytest

from tests.integration import test_actions_live
from tests.integration.test_actions_live import (
    audit,
    cell,
    consumed_queues,
    highlight,
    live_console,
    next_outcome,
    show_worker,
    start_workers,
    until,
)
from tui.sources.pause_records import PauseRecordStore
from tui.ui.widgets.panes import QueuesPane

pytestmark = pytest.mark.integration

#: the live tests' settings (fast polls, short control timeout), shared as a fixture
live_settings = test_actions_live.live_settings

W1_QUEUES = ("default", "email", "reports")
W2_QUEUES = ("analytics", "cleanup", "reports")


@pytest.fixture
def two_workers(worker_factory):
    return start_workers(worker_factory, {"queues": W1_QUEUES}, {"queues": W2_QUEUES})


def records(settings, app):
    return PauseRecordStore.for_app(app, settings).read_all()


async def both_shown(pilot, console, w1, w2) -> QueuesPane:
    await show_worker(pilot, console, w1)
    await show_worker(pilot, console, w2)
    queues = console.query_one("#queues", QueuesPane)
    await until(
        pilot, lambda: cell(queues, "reports", "consumers") == "2", message="reports: 2 consumers"
    )
    return queues


async def test_resume_gives_the_queue_back_only_to_the_workers_that_had_it(
    live_settings, afirgen_app, two_workers
):
    """Before: resume broadcast add_consumer, and w2 (never on email) consumed email."""
    w1, w2 = two_workers
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        queues = await both_shown(pilot, console, w1, w2)
        await highlight(pilot, "1", queues, "email")
        await pilot.press("p")
        paused = await next_outcome(pilot, console, 0)
        assert paused.action == "pause_queue" and paused.outcome.ok, paused.outcome
        assert set(paused.outcome.replies) == {w1.hostname}
        record = (await asyncio.to_thread(records, live_settings, afirgen_app))["email"]
        assert record.workers == (w1.hostname,) and record.by and record.paused_at > 0
        assert await asyncio.to_thread(consumed_queues, w1) == {"default", "reports"}
        await until(pilot, lambda: cell(queues, "email", "name") == "email ⏸", message="⏸")

        await pilot.press("p")
        resumed = await next_outcome(pilot, console, 1)
        assert resumed.action == "resume_queue" and resumed.outcome.ok, resumed.outcome
        assert set(resumed.outcome.replies) == {w1.hostname}
        await until(pilot, lambda: cell(queues, "email", "name") == "email", message="no mark")
    assert await asyncio.to_thread(consumed_queues, w1) == set(W1_QUEUES)
    assert await asyncio.to_thread(consumed_queues, w2) == set(W2_QUEUES)  # never got email
    assert "email" not in await asyncio.to_thread(records, live_settings, afirgen_app)
    pause_line, resume_line = audit(live_settings)
    assert pause_line["action"] == "pause_queue" and pause_line["params"]["workers"] == [
        w1.hostname
    ]
    assert resume_line["action"] == "resume_queue" and resume_line["params"]["workers"] == [
        w1.hostname
    ]


async def test_pause_survives_a_console_restart_and_a_partial_resume_shows(
    live_settings, afirgen_app, two_workers
):
    """Before: after a restart the ⏸ was gone and ``p`` paused the paused queue again."""
    w1, w2 = two_workers
    both = sorted([w1.hostname, w2.hostname])
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        queues = await both_shown(pilot, console, w1, w2)
        await highlight(pilot, "1", queues, "reports")
        await pilot.press("p")
        paused = await next_outcome(pilot, console, 0)
        assert paused.outcome.ok and sorted(paused.outcome.replies) == both, paused.outcome
    assert audit(live_settings)[0]["params"]["workers"] == both

    # a new console object: nothing carried over in memory
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        await show_worker(pilot, console, w1)
        await show_worker(pilot, console, w2)
        queues = console.query_one("#queues", QueuesPane)
        await until(pilot, lambda: cell(queues, "reports", "name") == "reports ⏸", message="⏸")
        assert cell(queues, "reports", "consumers") == "0"

        # w2 is given reports back by hand (as `celery control add_consumer` would)
        await asyncio.to_thread(
            afirgen_app.control.add_consumer,
            "reports",
            destination=[w2.hostname],
            reply=True,
            timeout=2.0,
        )
        await until(
            pilot, lambda: cell(queues, "reports", "name") == "reports ⏸ 1/2", message="⏸ 1/2"
        )

        await highlight(pilot, "1", queues, "reports")
        await pilot.press("p")  # offers resume, not pause
        # this console (restarted) never saw w1 consume reports: the record is confirmed first
        await until(
            pilot, lambda: type(console.screen).__name__ == "ConfirmScreen", message="confirm"
        )
        await pilot.press("y")
        resumed = await next_outcome(pilot, console, 0)
        assert resumed.action == "resume_queue" and resumed.outcome.ok, resumed.outcome
        assert set(resumed.outcome.replies) == {w1.hostname}
        await until(pilot, lambda: cell(queues, "reports", "name") == "reports", message="no mark")
    assert await asyncio.to_thread(consumed_queues, w1) == set(W1_QUEUES)
    assert await asyncio.to_thread(consumed_queues, w2) == set(W2_QUEUES)
    assert await asyncio.to_thread(records, live_settings, afirgen_app) == {}


async def test_resumed_outside_the_console_the_mark_goes_and_an_offline_worker_is_named(
    live_settings, afirgen_app, two_workers
):
    """Before: resumed with the celery CLI, the ⏸ stayed."""
    w1, w2 = two_workers
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        queues = await both_shown(pilot, console, w1, w2)
        await highlight(pilot, "1", queues, "reports")
        await pilot.press("p")
        assert (await next_outcome(pilot, console, 0)).outcome.ok
        await until(pilot, lambda: cell(queues, "reports", "name") == "reports ⏸", message="⏸")

        await asyncio.to_thread(
            afirgen_app.control.add_consumer, "reports", reply=True, timeout=2.0
        )
        await until(pilot, lambda: cell(queues, "reports", "name") == "reports", message="no mark")
        assert console.console_screen.paused_queues == set()

        # paused again; then w2 goes away: resume gives it back to w1 and names w2
        await pilot.press("p")
        again = await next_outcome(pilot, console, 1)
        assert again.action == "pause_queue" and again.outcome.ok, again.outcome
        await until(pilot, lambda: cell(queues, "reports", "name") == "reports ⏸", message="⏸")
        await asyncio.to_thread(w2.stop)
        workers = console.query_one("#workers")
        await until(
            pilot, lambda: "offline" in cell(workers, w2.hostname, "state"), message="w2 offline"
        )
        assert cell(queues, "reports", "name") == "reports ⏸"
        await pilot.press("1", "p")
        resumed = await next_outcome(pilot, console, 2)
        assert resumed.action == "resume_queue" and resumed.outcome.ok, resumed.outcome
        assert set(resumed.outcome.replies) == {w1.hostname}
        assert f"not resumed on {w2.hostname} (offline)" in resumed.outcome.message
        await until(pilot, lambda: cell(queues, "reports", "name") == "reports", message="no mark")
    assert await asyncio.to_thread(consumed_queues, w1) == set(W1_QUEUES)
    assert await asyncio.to_thread(records, live_settings, afirgen_app) == {}
