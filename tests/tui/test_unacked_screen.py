"""Pilot tests of the jobs taken but not acknowledged (``u``): hostile entries shown literally,
unreadable ones counted, the holder and its liveness from the events, paging by delivery time,
refusals (read-only, worker alive, worker unknown) that change nothing in Redis, the non-Redis
message, and the keys in the help and the palette.

The console runs on StaticSources; the unacked reader is the real one on the test's own Redis
db (the real read script, the real cleaning).  Requeueing a job of a dead worker is proven
live, in tests/integration/test_unacked_live.py.
"""

from __future__ import annotations

import json
import time
import uuid as uuidlib

import pytest
import redis
from textual.widgets import Static

from tests.tui.test_queue_jobs_screen import envelope
from tui.actions import AuditLog
from tui.sources.unacked import GONE, UnackedJobs, restored_payload
from tui.ui.commands import help_rows, palette_commands
from tui.ui.screens.forms import ConfirmScreen
from tui.ui.screens.unacked import UnackedScreen

TASK = "afirgen_tasks.cleanup.cleanup_temp_files"


def hold(
    client: redis.Redis,
    delivered: float,
    task_id: str | None = None,
    queue: str = "cleanup",
    tag: str | None = None,
    **kw,
) -> tuple[str, bytes]:
    """Put a message in ``unacked``/``unacked_index`` as kombu does; returns (tag, value)."""
    tag = tag or str(uuidlib.uuid4())
    message = json.loads(envelope(task_id=task_id, **kw))
    message["properties"]["delivery_tag"] = tag
    message["properties"]["delivery_info"] = {"exchange": "", "routing_key": queue}
    value = json.dumps([message, "", queue]).encode()
    client.hset("unacked", tag, value)
    client.zadd("unacked_index", {tag: delivered})
    return tag, value


@pytest.fixture
def unacked_console(console, sources, redis_client: redis.Redis):
    sources.unacked_reader = UnackedJobs(
        redis_client, 600, priority_steps=range(10), sep=":", page_size=50
    )
    return console


async def open_unacked(pilot, console, reads: int = 0) -> UnackedScreen:
    await pilot.press("u")
    for _ in range(60):
        await pilot.pause(0.05)
        screen = console.screen
        if isinstance(screen, UnackedScreen) and screen.reads > reads:
            return screen
    raise AssertionError(f"no unacked page read; screen is {console.screen!r}")


def header(screen: UnackedScreen) -> str:
    return str(screen.query_one("#unacked-header", Static).render())


def cells(screen: UnackedScreen) -> list[list[str]]:
    table = screen.table
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def test_hostile_entries_show_literally_with_holder_and_liveness(
    unacked_console, redis_client, events
):
    now = time.time()
    markup = "afirgen_tasks.[bold red]x[/]"
    evil_id = "[link=http://e]ab[/link]"
    hold(redis_client, now - 30, task_id=evil_id, task=markup)
    known_id = "5f0c7a1e-0000-4000-8000-000000000001"
    hold(redis_client, now - 20, task_id=known_id, queue="email")
    # garbage the boundary must count and skip
    redis_client.hset("unacked", "bad-json", b"not json [b]")
    redis_client.zadd("unacked_index", {"bad-json": now - 10})
    redis_client.hset("unacked", "esc\x1b[2J", b'[{}, "", "q"]')
    redis_client.zadd("unacked_index", {"esc\x1b[2J": now - 5})
    redis_client.hset("unacked", "orphan", b"[]")  # in the hash, never indexed
    # the console saw w1 receive the known job, and w1 is alive
    unacked_console.sources.feed(
        [events.worker_online("w1@box"), *events.task("started", uuid=known_id, host="w1@box")[1]]
    )
    async with unacked_console.run_test(size=(130, 36)) as pilot:
        unacked_console.console_screen.tick()
        screen = await open_unacked(pilot, unacked_console)
        rows = cells(screen)
        assert len(rows) == 2, rows
        assert rows[0][1] == "[bold red]x[/]"  # the name's last part, literally
        assert rows[0][2] == evil_id[:8]
        assert rows[0][4] == "unknown" and rows[0][5] == "?"
        assert rows[1][3] == "email" and rows[1][4] == "w1@box" and rows[1][5] == "yes"
        assert "in 9m" in rows[1][7] or "in 10m" in rows[1][7], rows[1]
        assert "\x1b" not in "".join("".join(r) for r in rows)
        text = header(screen)
        assert "5 taken, not acknowledged" in text and "jobs 1–4" in text, text
        assert "1 in unacked without a delivery time" in text
        assert "2 entr(ies) in this window could not be read" in text, text
        assert "\x1b" not in text


async def test_long_names_are_cut_with_a_mark_not_silently(unacked_console, redis_client, events):
    # seen in tmux: "send_notification_emai", cut by the column, read like a typo
    task_id = "5f0c7a1e-0000-4000-8000-000000000009"
    host = "celery@ip-10-0-1-23.eu-west-1.compute.internal"
    hold(
        redis_client,
        time.time() - 5,
        task_id=task_id,
        task="afirgen_tasks.email.send_notification_email",
        queue="notifications-urgent",
    )
    unacked_console.sources.feed(
        [events.worker_online(host), *events.task("started", uuid=task_id, host=host)[1]]
    )
    async with unacked_console.run_test(size=(120, 36)) as pilot:
        unacked_console.console_screen.tick()
        screen = await open_unacked(pilot, unacked_console)
        row = cells(screen)[0]
        assert row[1] == "send_notification_ema…", row
        assert row[3] == "notificat…" and row[4] == "celery@ip-10-0-…", row
        # the confirm names them whole
        await pilot.press("Q")
        await pilot.pause()
        question = str(unacked_console.screen.query_one("#question", Static).render())
        assert "send_notification_email" in question and host in question, question


async def test_a_live_worker_or_an_unknown_one_is_refused_and_nothing_changes(
    unacked_console, redis_client, events
):
    now = time.time()
    live_id = "5f0c7a1e-0000-4000-8000-000000000002"
    hold(redis_client, now - 30, task_id=live_id)
    hold(redis_client, now - 10)  # nobody known holds this one
    before = redis_client.hgetall("unacked"), redis_client.zrange("unacked_index", 0, -1)
    unacked_console.sources.feed(
        [events.worker_online("w1@box"), *events.task("started", uuid=live_id, host="w1@box")[1]]
    )
    async with unacked_console.run_test(size=(130, 36)) as pilot:
        unacked_console.console_screen.tick()
        screen = await open_unacked(pilot, unacked_console)
        log = unacked_console.console_screen.runner.action_log
        for row in (0, 1):
            screen.table.move_cursor(row=row, animate=False)
            await pilot.pause()
            await pilot.press("Q")
            await pilot.pause()
            assert isinstance(unacked_console.screen, ConfirmScreen)
            await pilot.press("y")
            for _ in range(60):
                await pilot.pause(0.05)
                if len(log) > row:
                    break
        outcomes = [m.outcome for m in log]
        assert len(outcomes) == 2 and not any(o.ok for o in outcomes)
        assert "w1@box is alive (heartbeats): it may still run this job" in outcomes[0].message
        assert "wait for it or for the visibility timeout" in outcomes[0].message
        assert "saw no event saying which worker holds it" in outcomes[1].message
    assert (redis_client.hgetall("unacked"), redis_client.zrange("unacked_index", 0, -1)) == before
    assert redis_client.llen("cleanup") == 0
    lines = AuditLog(unacked_console.settings.console_audit_log).read()
    assert [(x["action"], x["ok"]) for x in lines] == [("requeue_unacked", False)] * 2


async def test_read_only_refuses_requeue_and_audits(screen_settings, sources, redis_client):
    from tui.ui.app import AfirgenApp

    sources.unacked_reader = UnackedJobs(redis_client, 600, priority_steps=range(10), sep=":")
    tag, value = hold(redis_client, time.time() - 5)
    console = AfirgenApp(screen_settings, sources, autostart=False, read_only=True)
    sources.start()
    async with console.run_test(size=(120, 36)) as pilot:
        screen = await open_unacked(pilot, console)
        assert screen.table.row_count == 1
        await pilot.press("Q")
        await pilot.pause(0.3)
        assert not isinstance(console.screen, ConfirmScreen)
        await pilot.pause(0.3)
    assert redis_client.hgetall("unacked") == {tag.encode(): value}
    lines = AuditLog(screen_settings.console_audit_log).read()
    assert [(x["action"], x["ok"]) for x in lines] == [("requeue_unacked", False)]
    assert "read-only" in lines[0]["outcome"]


async def test_not_redis_says_so(console):
    async with console.run_test(size=(120, 36)) as pilot:
        screen = await open_unacked(pilot, console)
        assert "unacknowledged jobs can be listed on Redis brokers only" in header(screen)
        await pilot.press("Q")  # nothing highlighted: a warning, nothing else
        await pilot.pause()
        assert console.screen is screen


async def test_paging_by_delivery_time(unacked_console, redis_client):
    now = time.time()
    ids = [f"job-{i:03d}" for i in range(120)]
    pipe = redis_client.pipeline()
    for i, task_id in enumerate(ids):
        hold(pipe, now - 1000 + i, task_id=task_id)
    pipe.execute()
    async with unacked_console.run_test(size=(120, 36)) as pilot:
        screen = await open_unacked(pilot, unacked_console)
        assert [j.id for j in screen.page.jobs] == ids[:50]
        assert "120 taken" in header(screen) and "jobs 1–50" in header(screen)
        await pilot.press("pagedown")
        await page_at(pilot, screen, 50)
        assert [j.id for j in screen.page.jobs] == ids[50:100]
        await pilot.press("pagedown")
        await page_at(pilot, screen, 100)
        assert [j.id for j in screen.page.jobs] == ids[100:]
        reads = screen.reads
        await pilot.press("pagedown")  # the last page: nothing read
        await pilot.pause(0.2)
        assert screen.reads == reads
        await pilot.press("pageup")
        await page_at(pilot, screen, 50)


async def page_at(pilot, screen: UnackedScreen, offset: int) -> None:
    for _ in range(60):
        await pilot.pause(0.05)
        if screen.page is not None and screen.page.offset == offset:
            return
    raise AssertionError(f"page at {offset} not shown: {header(screen)}")


def test_requeue_script_mirrors_kombus_restore_and_does_nothing_once_acked(redis_client):
    reader = UnackedJobs(redis_client, 600, priority_steps=range(10), sep=":")
    tag, value = hold(redis_client, time.time() - 5, priority=3)  # wire priority 7
    job = reader.read_page().jobs[0]
    assert job.queue == "cleanup" and job.wire_priority == 7
    # acked by its worker before the requeue: nothing pushed, nothing removed
    redis_client.hdel("unacked", tag)
    assert reader.requeue(job) == (GONE, ["cleanup"])
    assert redis_client.keys("cleanup*") == [] and redis_client.zscore("unacked_index", tag)
    # back in unacked: requeued onto the step-7 list, flagged redelivered, a wake-up token
    redis_client.hset("unacked", tag, value)
    assert reader.requeue(job)[0] == "requeued"
    assert redis_client.hlen("unacked") == 0 and redis_client.zcard("unacked_index") == 0
    assert redis_client.lrange("cleanup:7", 0, -1) == [restored_payload(value)]
    message = json.loads(redis_client.lindex("cleanup:7", 0))
    assert message["headers"]["redelivered"] is True
    assert message["properties"]["delivery_info"]["redelivered"] is True
    assert redis_client.llen("_afirgen.wakeup.cleanup") == 1


def test_list_key_agrees_with_kombus_q_for_pri() -> None:
    """The list a requeue pushes to is the one kombu's ``_q_for_pri`` names (default steps)."""
    from kombu.transport.redis import Channel

    class Steps:  # kombu's own methods, on the default layout, without a connection
        priority_steps = Channel.priority_steps
        sep = Channel.sep
        priority = Channel.priority

    reader = UnackedJobs(redis.Redis(), 1)
    for wire in (None, -3, 0, 1, 3, 5, 8, 9, 12):
        pri = 0 if wire is None else max(0, min(9, wire))
        assert reader.list_key("q", wire) == Channel._q_for_pri(Steps(), "q", pri)


def test_keys_are_in_the_help_and_the_palette() -> None:
    keys = dict(help_rows())
    assert "u" in keys and "not acknowledged" in keys["u"]
    assert "Q" in keys and "offline" in keys["Q"]
    names = {c.name for c in palette_commands()}
    assert {"unacked", "requeue_unacked"} <= names
    assert "requeue_unacked" not in {c.name for c in palette_commands(read_only=True)}
