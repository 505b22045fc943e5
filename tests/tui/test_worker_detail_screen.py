"""The worker detail screen (Enter on the Workers pane) on StaticSources: hostile data shown
literally, no reply said plainly, read-only keys hidden and refused, help and palette."""

from __future__ import annotations

import time

import pytest

from tests.tui.test_markup_safety import (
    ARGS,
    CLEAR,
    CLIPBOARD,
    ESCAPE_REMAINS,
    NAMES,
    QUEUE_NAMES,
    assert_clean,
    move_to,
    settle,
)
from tui.actions import AuditLog
from tui.sources.cluster import StaticSources
from tui.sources.inspection import WorkerDetail
from tui.sources.validate import (
    Tally,
    clean_detail_stats,
    clean_inspect_tasks,
    clean_registered_replies,
    clean_scheduled_tasks,
)
from tui.ui.app import AfirgenApp
from tui.ui.commands import help_rows, palette_commands
from tui.ui.screens.forms import ChoiceScreen
from tui.ui.screens.worker_detail import WorkerDetailScreen
from tui.ui.widgets.panes import WorkersPane

SIZE = (160, 60)
PLAIN_HOST = "w1@box"
#: a hostname the boundary accepts (no control character) that is markup all the same
HOST = "[@click=app.quit]w@[b]box[/b]"


def hostile_detail(host: str, raw: bool) -> WorkerDetail:
    """A worker whose every reply carries markup and escapes; ``raw`` skips the boundary."""
    now = time.time()
    stats = {
        host: {
            "pid": 4242,
            "uptime": 3700,
            "pool": {
                "implementation": f"[/]{CLEAR}:TaskPool",
                "max-concurrency": 2,
                "processes": [1, 2],
            },
            "prefetch_count": 8,
            "rusage": {"utime": 1.5, "stime": 0.25, "maxrss": 51200},
        }
    }
    info = {"id": "[@click=app.quit]id-1", "name": NAMES[0], "args": ARGS, "kwargs": "{'k': '[/]'}"}
    active = {host: [{**info, "time_start": now - 5}]}
    reserved = {host: [{**info, "id": "[/]-id-2", "name": NAMES[1]}]}
    scheduled = {
        host: [
            {
                "eta": f"[b]2030[/b]{CLEAR}",
                "priority": 6,
                "request": {**info, "id": "id-3", "name": NAMES[3]},
            }
        ]
    }
    registered = {host: [f"{NAMES[2]} [rate_limit=[red]9/m[/red]]", f"{NAMES[3]}{CLIPBOARD}"]}
    if raw:
        return WorkerDetail(
            host,
            answered=True,
            stats=stats[host],
            active=active[host],
            reserved=reserved[host],
            scheduled=[{**e["request"], "eta": e["eta"]} for e in scheduled[host]],
            registered=[
                {"name": NAMES[2], "rate_limit": "[red]9/m[/red]"},
                {"name": NAMES[3] + CLIPBOARD},
            ],
            queues=list(QUEUE_NAMES),
            pool_restarts=True,
            taken_at=now,
        )
    tally = Tally()
    return WorkerDetail(
        host,
        answered=True,
        stats=clean_detail_stats(stats, tally)[host],
        active=clean_inspect_tasks(active, tally)[host],
        reserved=clean_inspect_tasks(reserved, tally)[host],
        scheduled=clean_scheduled_tasks(scheduled, tally)[host],
        registered=clean_registered_replies(registered, tally)[host],
        queues=list(QUEUE_NAMES),
        pool_restarts=True,
        taken_at=now,
    )


async def open_detail(pilot, app: AfirgenApp, host: str) -> WorkerDetailScreen:
    app.console_screen.tick()
    pane = app.console_screen.query_one("#workers", WorkersPane)
    await settle(pilot, app, lambda: pane.has_key(host), message="the worker row")
    move_to(pane, host)
    await pilot.press("enter")
    await settle(pilot, app, lambda: isinstance(app.screen, WorkerDetailScreen), message="detail")
    screen = app.screen
    await settle(pilot, app, lambda: screen.detail is not None, message="the detail read")
    return screen


@pytest.mark.parametrize("raw", [False, True], ids=["through-the-boundary", "raw"])
async def test_hostile_replies_are_shown_literally(screen_settings, events, raw: bool):
    sources = StaticSources(screen_settings)
    app = AfirgenApp(screen_settings, sources, autostart=False)
    sources.start()
    sources.feed([events.worker_online(HOST)])
    sources.details[HOST] = hostile_detail(HOST, raw)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_detail(pilot, app, HOST)
        where = "raw" if raw else "cleaned"
        text = assert_clean(
            app,
            "[bold red]x[/]",  # active and reserved task names
            "[@click=app.quit]q",
            "[link=http://e]l[/link]",  # scheduled
            "[@click=app.quit]id-1",
            "[/]-id-2",
            "[b]2030[/b]",
            "[red]9/m[/red]",  # a rate limit from the registered reply
            "[/]",
            "Queues consumed (4)",
            "[red]q[/red]",
            HOST,  # the title
            where=f"worker detail ({where})",
        )
        # the escape sequences are shown (as ␛...) or dropped, never written raw
        assert ESCAPE_REMAINS[0] in text and "[2J" in text, where
        assert "PID          4242" in text and "Uptime       1h01m" in text
        assert "Processes    2 (max-concurrency 2)" in text and "Prefetch     8" in text
        assert "max RSS 51,200 KiB" in text and "Pool restart on" in text

        # the consume pick list: queue names from inspect, literally
        await pilot.press("c")
        await settle(pilot, app, lambda: isinstance(app.screen, ChoiceScreen), message="pick")
        assert_clean(app, "[red]q[/red]", "● consuming", where=f"consume form ({where})")
        await pilot.press("escape")
        await settle(pilot, app, lambda: app.screen is screen, message="back")


async def test_no_reply_is_said_and_commands_wait_for_one(console, events):
    console.sources.feed([events.worker_online(PLAIN_HOST)])
    async with console.run_test(size=SIZE) as pilot:
        screen = await open_detail(pilot, console, PLAIN_HOST)
        text = assert_clean(console, where="no reply")
        assert f"no reply from {PLAIN_HOST} (down or busy?)" in text
        await pilot.press("c")
        await pilot.pause()
        assert console.screen is screen, "no form for a worker that did not answer"
        assert any("press g" in n.message for n in console._notifications)

        # it answers now: g re-reads
        console.sources.details[PLAIN_HOST] = hostile_detail(PLAIN_HOST, raw=False)
        await pilot.press("g")
        await settle(pilot, console, lambda: screen.detail.answered, message="the re-read")
        assert "PID          4242" in screen.render_text().plain


async def test_read_only_hides_and_refuses_the_worker_commands(screen_settings, events):
    sources = StaticSources(screen_settings)
    app = AfirgenApp(screen_settings, sources, autostart=False, read_only=True)
    sources.start()
    sources.feed([events.worker_online(PLAIN_HOST)])
    sources.details[PLAIN_HOST] = hostile_detail(PLAIN_HOST, raw=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_detail(pilot, app, PLAIN_HOST)
        footer = assert_clean(app, "Refresh", where="read-only footer").splitlines()[-1]
        for hidden in ("Consume", "Limits", "Pool restart", "Shutdown"):
            assert hidden not in footer, f"{hidden} shown in read-only mode: {footer}"
        for n, key in enumerate(("c", "L", "P", "S")):
            await pilot.press(key)
            await settle(pilot, app, lambda n=n: len(screen.outcomes) > n, message=f"{key} refused")
            done = screen.outcomes[n]
            assert not done.outcome.ok and "read-only" in done.outcome.message, done.outcome
            assert app.screen is screen, f"{key}: a dialog opened in read-only mode"
        refusals = AuditLog(screen_settings.console_audit_log).read()
        assert [(r["action"], r["target"], r["outcome"]) for r in refusals] == [
            (action, PLAIN_HOST, "refused: read-only mode")
            for action in ("consume", "limits", "pool_restart", "shutdown")
        ]
        # what the detail screen refused is in the console's action log too
        assert len(app.console_screen.runner.action_log) == 4


async def test_the_keys_are_in_the_footer_help_and_palette(console, events):
    console.sources.feed([events.worker_online(PLAIN_HOST)])
    console.sources.details[PLAIN_HOST] = hostile_detail(PLAIN_HOST, raw=False)
    async with console.run_test(size=SIZE) as pilot:
        await open_detail(pilot, console, PLAIN_HOST)
        footer = assert_clean(console, where="footer").splitlines()[-1]
        for shown in ("Refresh", "Consume", "Limits", "Pool restart", "Shutdown"):
            assert shown in footer, footer
    helps = dict(help_rows())
    for keys in ("c", "L", "P", "S", "g / F5"):
        assert "worker detail" in helps[keys], keys
    assert any("Worker detail" in c.title and c.scope == "workers" for c in palette_commands())
    assert {"consume", "limits", "pool_restart", "shutdown", "refresh"} <= {
        c.action for c in palette_commands() if c.scope == "worker_detail"
    }


async def test_palette_command_outside_the_detail_says_where_it_works(console):
    async with console.run_test(size=SIZE) as pilot:
        await console._run_command("worker_detail", "shutdown")
        await pilot.pause()
        assert any("Workers pane" in n.message for n in console._notifications)
