"""Issue 15's worker detail (Enter on the Workers pane) against real ``celery worker`` processes.

The console runs headless with its real sources; keys are pressed as an operator would and
each claim is checked at the source too: ``inspect`` of that worker (and of a second one
that must not change), its pool's process ids, its process exit, the audit file.
"""

from __future__ import annotations

import time

import pytest
from textual.widgets import Input, Select

from tests.integration.test_actions_live import (
    CLEANUP,
    EMAIL,
    consumed_queues,
    highlight,
    live_console,
    show_worker,
    start_workers,
    until,
)
from tui.actions import AuditLog
from tui.ui.screens.forms import ChoiceScreen, ConfirmScreen, TypedConfirmScreen
from tui.ui.screens.worker_detail import LimitsFormScreen, WorkerDetailScreen
from tui.ui.widgets.panes import WorkersPane

pytestmark = pytest.mark.integration


@pytest.fixture
def live_settings(afirgen_settings):
    """Fast polls and a 1 s control timeout (as in test_actions_live)."""
    return afirgen_settings.model_copy(
        update={
            "console_refresh_interval": 0.1,
            "console_queue_poll_interval": 0.2,
            "console_inspect_interval": 0.5,
            "console_control_timeout": 1.0,
        }
    )


async def open_detail(pilot, console, worker) -> WorkerDetailScreen:
    """Highlight ``worker`` in the Workers pane, press Enter, wait until it answered."""
    pane = await show_worker(pilot, console, worker)
    await highlight(pilot, "2", pane, worker.hostname)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(console.screen, WorkerDetailScreen), message="detail")
    screen = console.screen
    assert screen.host == worker.hostname
    await until(
        pilot,
        lambda: screen.detail is not None and screen.detail.answered,
        message=f"{worker.hostname} answered the detail's inspect",
    )
    return screen


async def outcome_of(pilot, screen: WorkerDetailScreen, count_before: int, timeout: float = 20.0):
    await until(pilot, lambda: len(screen.outcomes) > count_before, timeout, "the action's outcome")
    return screen.outcomes[count_before]


def field(label: str, value: object) -> str:
    """A line of the detail's stats block as rendered."""
    return f"{label:<13}{value}"


async def reread_until(pilot, screen: WorkerDetailScreen, check, message: str, timeout=20.0):
    """Press g until the detail's text passes ``check``; returns that text."""
    deadline = time.monotonic() + timeout
    while True:
        text = screen.render_text().plain
        if check(text):
            return text
        assert time.monotonic() < deadline, f"timed out waiting for {message}:\n{text}"
        await pilot.press("g")
        await until(pilot, lambda seen=screen.detail: screen.detail is not seen, message="re-read")


def audit_lines(settings) -> list[dict]:
    return AuditLog(settings.console_audit_log).read(every_line=True)


def pool_pids(worker) -> set[int]:
    return set(worker.pool_pids())


# ---- what it shows; c on this worker only ------------------------------------------------
async def test_detail_shows_the_worker_and_c_changes_only_its_queues(
    live_settings, afirgen_app, worker_factory
):
    w1, w2 = start_workers(
        worker_factory,
        {"queues": ("default", "email", "cleanup"), "concurrency": 2},
        {"queues": ("default", "email")},
    )
    # an ETA job the worker holds in its timer (scheduled), with an address in its args
    scheduled = afirgen_app.send_task(
        EMAIL, args=["victim@example.org", "s", "b"], queue="cleanup", countdown=120
    )
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        screen = await open_detail(pilot, console, w1)

        text = await reread_until(
            pilot, screen, lambda t: scheduled.id in t, "the ETA job under Scheduled"
        )
        assert field("PID", w1.pid) in text
        assert field("Pool", "prefork") in text
        assert field("Processes", "2 (max-concurrency 2)") in text
        assert field("Prefetch", "") in text and field("Rusage", "user ") in text
        assert "max RSS" in text and field("Uptime", "") in text
        assert "Queues consumed (3)" in text and "cleanup, default, email" in text
        assert "Scheduled (1)" in text
        assert "victim@example.org" not in text, "args are redacted as in the task detail"
        assert "Registered (" in text and CLEANUP in text
        assert field("Pool restart", "off") in text  # the default: worker_pool_restarts is False

        # c: stop consuming email on w1 only
        await pilot.press("c")
        await until(pilot, lambda: isinstance(console.screen, ChoiceScreen), message="queue pick")
        chooser = console.screen
        key, _, description = next(o for o in chooser.options if o[1] == "email")
        assert "● consuming" in description
        await pilot.press(key)
        done = await outcome_of(pilot, screen, 0)
        assert done.action == "cancel_consumer" and done.outcome.ok, done.outcome.message
        assert "verified" in done.outcome.message
        assert consumed_queues(w1) == {"default", "cleanup"}
        assert consumed_queues(w2) == {"default", "email"}, "the other worker is unchanged"

        # c again: start it again
        await until(pilot, lambda: "email" not in screen.detail.queues, message="re-read")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(console.screen, ChoiceScreen), message="queue pick")
        await pilot.press(key)
        done = await outcome_of(pilot, screen, 1)
        assert done.action == "add_consumer" and done.outcome.ok, done.outcome.message
        assert consumed_queues(w1) == {"default", "email", "cleanup"}
        assert consumed_queues(w2) == {"default", "email"}

    lines = [r for r in audit_lines(live_settings) if r["action"].endswith("_consumer")]
    assert [(r["phase"], r["action"], r["target"]) for r in lines] == [
        ("attempt", "cancel_consumer", w1.hostname),
        ("outcome", "cancel_consumer", w1.hostname),
        ("attempt", "add_consumer", w1.hostname),
        ("outcome", "add_consumer", w1.hostname),
    ]
    assert lines[0]["params"] == {"queue": "email"}


# ---- L: rate limit and time limits --------------------------------------------------------
async def set_limit(pilot, console, task: str, which: str, value: str) -> LimitsFormScreen:
    await pilot.press("L")
    await until(pilot, lambda: isinstance(console.screen, LimitsFormScreen), message="form")
    form = console.screen
    form.query_one("#task", Select).value = task
    form.query_one("#which", Select).value = which
    form.query_one("#value", Input).value = value
    await pilot.pause()
    form.query_one("#value", Input).focus()
    await pilot.press("enter")
    await pilot.pause()
    return form


async def test_L_sets_a_rate_limit_seen_in_inspect_and_time_limits(
    live_settings, afirgen_app, worker_factory
):
    (worker,) = start_workers(worker_factory, {"queues": ("default",)})
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        screen = await open_detail(pilot, console, worker)

        # a bad value keeps the form open with the reason; nothing is sent
        form = await set_limit(pilot, console, CLEANUP, "rate_limit", "10/x")
        assert console.screen is form
        assert "must look like 10/m" in str(form.query_one("#limit-error").render())
        form.query_one("#value", Input).value = "10/m"
        await pilot.press("enter")
        done = await outcome_of(pilot, screen, 0)
        assert done.action == "rate_limit" and done.outcome.ok, done.outcome.message

        registered = worker.inspect().registered("rate_limit")[worker.hostname]
        assert f"{CLEANUP} [rate_limit=10/m]" in registered
        await until(
            pilot,
            lambda: "rate_limit=10/m" in screen.render_text().plain,
            message="the detail shows the new rate limit",
        )

        # time limits: soft must be below hard
        form = await set_limit(pilot, console, CLEANUP, "time_limit", "60,50")
        assert console.screen is form
        assert "must be below the hard limit" in str(form.query_one("#limit-error").render())
        form.query_one("#value", Input).value = "50,60"
        await pilot.press("enter")
        done = await outcome_of(pilot, screen, 1)
        assert done.action == "time_limit" and done.outcome.ok, done.outcome.message
        assert "time limits set successfully" in done.outcome.replies[worker.hostname]
        info = worker.inspect().registered("time_limit", "soft_time_limit")[worker.hostname]
        assert f"{CLEANUP} [time_limit=60.0 soft_time_limit=50.0]" in info

    sent = [r for r in audit_lines(live_settings) if r["action"] in ("rate_limit", "time_limit")]
    assert [(r["phase"], r["action"]) for r in sent] == [
        ("attempt", "rate_limit"),
        ("outcome", "rate_limit"),
        ("attempt", "time_limit"),
        ("outcome", "time_limit"),
    ]
    assert sent[0]["params"] == {"task": CLEANUP, "rate_limit": "10/m"}
    assert sent[2]["params"] == {"task": CLEANUP, "soft": 50.0, "hard": 60.0}


# ---- P: pool restart -----------------------------------------------------------------------
async def test_P_refused_with_the_reason_when_off_and_replaces_the_pool_when_on(
    live_settings, afirgen_app, afirgen_env, worker_factory
):
    off, on = start_workers(
        worker_factory,
        {"queues": ("default",), "concurrency": 2},
        {
            "queues": ("default",),
            "concurrency": 2,
            "env": {**afirgen_env, "CELERY_WORKER_POOL_RESTARTS": "true"},
        },
    )
    before = pool_pids(on)
    assert len(before) == 2
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        screen = await open_detail(pilot, console, off)
        await pilot.press("P")
        done = await outcome_of(pilot, screen, 0)
        assert not done.outcome.ok
        assert (
            f"pool restarts are off on {off.hostname}: start it with worker_pool_restarts=True"
            in done.outcome.message
        )
        assert console.screen is screen, "no confirm for what will not be sent"
        await pilot.press("escape")

        screen = await open_detail(pilot, console, on)
        assert "Pool restart on" in screen.render_text().plain
        await pilot.press("P")
        await until(pilot, lambda: isinstance(console.screen, ConfirmScreen), message="confirm")
        await pilot.press("y")
        done = await outcome_of(pilot, screen, 0)
        assert done.outcome.ok, done.outcome.message
        assert "reload started" in done.outcome.replies[on.hostname]

    # billiard replaces each process once it finishes a task; Celery sends the pool one noop,
    # so at least one process is new at once (the idle others go at their next job)
    deadline = time.monotonic() + 20
    while not (len(after := pool_pids(on)) == 2 and after - before):
        assert time.monotonic() < deadline, f"pool not restarted: before {before}, now {after}"
        time.sleep(0.2)

    lines = [r for r in audit_lines(live_settings) if r["action"] == "pool_restart"]
    assert [(r["phase"], r["target"], r["ok"]) for r in lines] == [
        ("outcome", off.hostname, False),  # refused: nothing sent, no attempt line
        ("attempt", on.hostname, None),
        ("outcome", on.hostname, True),
    ]


# ---- S: shutdown ----------------------------------------------------------------------------
async def test_S_shuts_the_worker_down_after_its_name_is_typed(
    live_settings, afirgen_app, worker_factory
):
    target, other = start_workers(
        worker_factory, {"queues": ("default",)}, {"queues": ("default",)}
    )
    async with live_console(live_settings, afirgen_app) as (console, pilot):
        screen = await open_detail(pilot, console, target)
        await pilot.press("S")
        await until(pilot, lambda: isinstance(console.screen, TypedConfirmScreen), message="ask")
        typed = console.screen.query_one("#typed", Input)
        typed.value = other.hostname  # the wrong name: refused, nothing sent
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(console.screen, TypedConfirmScreen)
        assert target.is_alive()
        typed.value = target.hostname
        await pilot.press("enter")
        done = await outcome_of(pilot, screen, 0, timeout=30)
        assert done.action == "shutdown" and done.outcome.ok, done.outcome.message
        assert target.proc.wait(20) == 0  # a warm shutdown exits cleanly
        assert other.is_alive() and other.ping(timeout=1.0)
        await until(
            pilot,
            lambda: "no reply from" in screen.render_text().plain,
            message="the detail says the worker no longer answers",
        )
        assert isinstance(console.query_one("#workers", WorkersPane), WorkersPane)

    lines = [r for r in audit_lines(live_settings) if r["action"] == "shutdown"]
    assert [(r["phase"], r["target"]) for r in lines] == [
        ("attempt", target.hostname),
        ("outcome", target.hostname),
    ]
