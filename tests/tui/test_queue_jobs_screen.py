"""Pilot tests of a queue's waiting jobs (Enter on the Queues pane): hostile messages shown
literally, unreadable ones counted and skipped, read-only refusals, the AMQP message, keys.

The console runs on StaticSources (no workers, no events); the waiting-jobs reader is the
real one, on the test's own Redis db, so every message goes through the real read script
and the real decoder.
"""

from __future__ import annotations

import base64
import json
import uuid as uuidlib
from typing import Any

import pytest
import redis
from textual.widgets import Static

from afirgen_tasks.priority import PRIORITY_HEADER, to_wire
from tui.actions import AuditLog
from tui.sources.queue_jobs import QueueJobs
from tui.sources.queue_lengths import QueueLength, QueueSnapshot
from tui.sources.validate import QUEUED_PRIORITY_HEADER
from tui.ui.commands import help_rows, palette_commands
from tui.ui.screens.forms import ConfirmScreen
from tui.ui.screens.queue_jobs import QueueJobsScreen
from tui.ui.widgets.panes import QueuesPane

TASK = "afirgen_tasks.cleanup.cleanup_temp_files"


def envelope(
    task: str = TASK,
    task_id: str | None = None,
    args: Any = (),
    kwargs: Any = None,
    priority: int = 5,
    **headers: Any,
) -> bytes:
    """A message as kombu's Redis transport stores it (protocol 2, base64 JSON body)."""
    task_id = task_id or str(uuidlib.uuid4())
    body = json.dumps([list(args), kwargs or {}, {"callbacks": None, "errbacks": None}])
    return json.dumps(
        {
            "body": base64.b64encode(body.encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py",
                "task": task,
                "id": task_id,
                "eta": None,
                "retries": 0,
                PRIORITY_HEADER: priority,
                **headers,
            },
            "properties": {
                "priority": to_wire(priority, "redis://"),
                "body_encoding": "base64",
                "delivery_tag": str(uuidlib.uuid4()),
                "delivery_info": {"exchange": "", "routing_key": "cleanup"},
            },
        }
    ).encode()


def list_key(priority: int) -> str:
    wire = to_wire(priority, "redis://")
    return f"cleanup:{wire}" if wire else "cleanup"


@pytest.fixture
def jobs_console(console, sources, redis_client: redis.Redis):
    sources.jobs = QueueJobs(redis_client, range(10), ":")
    sources.queue_poll = QueueSnapshot.of(
        [QueueLength("cleanup", 0, dict.fromkeys(range(1, 11), 0))]
    )
    return console


async def open_jobs(pilot, console) -> QueueJobsScreen:
    console.console_screen.poll_queues()
    await pilot.pause(0.2)
    await pilot.press("1")
    queues = console.query_one("#queues", QueuesPane)
    queues.move_cursor(row=queues.get_row_index("cleanup"), animate=False)
    await pilot.pause()
    reads = 0
    await pilot.press("enter")
    for _ in range(50):
        await pilot.pause(0.05)
        screen = console.screen
        if isinstance(screen, QueueJobsScreen) and screen.reads > reads:
            return screen
    raise AssertionError(f"no jobs page read; screen is {console.screen!r}")


def header(screen: QueueJobsScreen) -> str:
    return str(screen.query_one("#jobs-header", Static).render())


def cells(screen: QueueJobsScreen) -> list[list[str]]:
    table = screen.table
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def test_priority_header_names_agree() -> None:
    # validate.py imports nothing from the project: its copy of the header name must match
    assert QUEUED_PRIORITY_HEADER == PRIORITY_HEADER


async def test_hostile_messages_show_literally_and_bad_ones_are_counted(jobs_console, redis_client):
    markup_name = "afirgen_tasks.[bold red]x[/]"
    redis_client.lpush(
        list_key(10),
        envelope(task=markup_name, args=["[link=http://evil]click[/link]", "\x1b]52;c;AAAA\x07"]),
    )
    redis_client.lpush(list_key(10), b"not json at all [b]")
    redis_client.lpush(list_key(5), json.dumps({"headers": {"id": "\x1b[2J"}}).encode())
    redis_client.lpush(list_key(5), envelope(args=["officer@police.example.in"]))
    async with jobs_console.run_test(size=(140, 36)) as pilot:
        screen = await open_jobs(pilot, jobs_console)
        rows = cells(screen)
        assert len(rows) == 2, rows
        name, args = rows[0][2], rows[0][6]
        assert name == "[bold red]x[/]"  # the name's last part, literally
        assert args.startswith("['[link=http://evil]c"), args
        assert "\x1b" not in "".join(rows[0])
        full = screen.rows[screen.table.cursor_key()]
        assert "␛]52;c;AAAA␇" in full.args  # the escape is shown, never written
        assert rows[1][6] == "['***']"  # redacted
        text = header(screen)
        assert "4 waiting" in text and "P10 2" in text and "P5 2" in text
        assert "2 message(s) in this window could not be read" in text, text
        assert screen.page is not None and screen.page.skipped == 2


async def test_amqp_says_what_it_cannot_do(console, sources):
    sources.queue_poll = QueueSnapshot.of(
        [QueueLength("cleanup", 0, dict.fromkeys(range(1, 11), 0))]
    )
    async with console.run_test(size=(120, 36)) as pilot:
        screen = await open_jobs(pilot, console)
        assert "waiting jobs can be listed on Redis brokers only" in header(screen)
        assert screen.table.row_count == 0
        await pilot.press("d")  # nothing highlighted: a warning, nothing else
        await pilot.pause()
        assert isinstance(console.screen, QueueJobsScreen)


async def test_read_only_refuses_delete_and_move_and_audits(screen_settings, sources, redis_client):
    from tui.ui.app import AfirgenApp

    sources.jobs = QueueJobs(redis_client, range(10), ":")
    sources.queue_poll = QueueSnapshot.of(
        [QueueLength("cleanup", 0, dict.fromkeys(range(1, 11), 0))]
    )
    payload = envelope(priority=3)
    redis_client.lpush(list_key(3), payload)
    console = AfirgenApp(screen_settings, sources, autostart=False, read_only=True)
    sources.start()
    async with console.run_test(size=(120, 36)) as pilot:
        screen = await open_jobs(pilot, console)
        assert screen.table.row_count == 1
        # the keys it refuses are not offered in its border either
        subtitle = str(screen.query_one("Vertical").border_subtitle)
        assert "delete" not in subtitle and "front" not in subtitle, subtitle
        assert "Esc close" in subtitle
        for key in ("d", "circumflex_accent"):
            await pilot.press(key)
            await pilot.pause(0.3)
            assert not isinstance(console.screen, ConfirmScreen)
        await pilot.pause(0.3)
    assert redis_client.lrange(list_key(3), 0, -1) == [payload]
    lines = AuditLog(screen_settings.console_audit_log).read()
    assert [(x["action"], x["ok"]) for x in lines] == [
        ("delete_job", False),
        ("move_job_to_front", False),
    ]
    assert all("read-only" in x["outcome"] for x in lines)


async def test_delete_asks_first_and_cancel_changes_nothing(jobs_console, redis_client):
    payload = envelope(priority=7)
    redis_client.lpush(list_key(7), payload)
    async with jobs_console.run_test(size=(120, 36)) as pilot:
        screen = await open_jobs(pilot, jobs_console)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(jobs_console.screen, ConfirmScreen)
        question = str(jobs_console.screen.query_one("#question", Static).render())
        assert "cannot be undone" in question and "cleanup" in question
        await pilot.press("n")
        await pilot.pause()
        assert jobs_console.screen is screen
    assert redis_client.lrange(list_key(7), 0, -1) == [payload]
    assert AuditLog(jobs_console.settings.console_audit_log).read() == []


async def test_move_to_front_asks_first_and_audits_before_it_touches_the_queue(
    jobs_console, redis_client
):
    first, last = envelope(priority=7), envelope(priority=3)
    redis_client.lpush(list_key(7), first)
    redis_client.lpush(list_key(3), last)
    log = AuditLog(jobs_console.settings.console_audit_log)
    reader = jobs_console.sources.jobs
    seen_by_the_broker: list[list[str]] = []  # the audit log when the queue is changed
    real_move = reader.move_to_front

    def move_to_front(job):
        seen_by_the_broker.append([x["phase"] for x in log.read(every_line=True)])
        return real_move(job)

    reader.move_to_front = move_to_front
    async with jobs_console.run_test(size=(120, 36)) as pilot:
        screen = await open_jobs(pilot, jobs_console)
        screen.table.move_cursor(row=1, animate=False)  # the last to run
        await pilot.press("circumflex_accent")
        await pilot.pause()
        assert isinstance(jobs_console.screen, ConfirmScreen)
        question = str(jobs_console.screen.query_one("#question", Static).render())
        assert "front of cleanup" in question and "#2 in run order" in question, question
        assert "priority 10" in question and "runs next" in question, question
        await pilot.press("n")  # cancelled: nothing sent, nothing audited
        await pilot.pause()
        assert jobs_console.screen is screen
        assert redis_client.lrange(list_key(3), 0, -1) == [last]
        assert log.read(every_line=True) == [] and seen_by_the_broker == []
        await pilot.press("circumflex_accent")
        await pilot.pause()
        await pilot.press("y")
        runner = jobs_console.console_screen.runner
        for _ in range(100):
            await pilot.pause(0.05)
            if runner.action_log:
                break
        outcome = runner.action_log[-1]
        assert outcome.action == "move_job_to_front" and outcome.outcome.ok, outcome.outcome
    assert seen_by_the_broker == [["attempt"]]  # written before the queue was touched
    assert redis_client.llen(list_key(3)) == 0 and redis_client.llen(list_key(10)) == 1
    lines = log.read(every_line=True)
    assert [(x["phase"], x["action"]) for x in lines] == [
        ("attempt", "move_job_to_front"),
        ("outcome", "move_job_to_front"),
    ]


async def test_a_revoked_job_keeps_its_mark_and_a_cut_name_within_the_column(
    jobs_console, redis_client, events
):
    task_id = "5f0c7a1e-0000-4000-8000-00000000000a"
    long_name = "afirgen_tasks.reports.generate_quarterly_district_report"  # 34 characters
    redis_client.lpush(list_key(5), envelope(task=long_name, task_id=task_id, priority=5))
    async with jobs_console.run_test(size=(120, 36)) as pilot:
        jobs_console.sources.feed(events.task("sent", uuid=task_id, name=long_name)[1])
        jobs_console.console_screen.tick()
        screen = await open_jobs(pilot, jobs_console)
        assert cells(screen)[0][2] == "generate_quarterly_distric…"
        assert jobs_console.model.mark_revoke_requested(task_id)
        screen.reload()
        await reread_done(pilot, screen, 1)
        for _ in range(40):
            await pilot.pause(0.05)
            if cells(screen)[0][2].startswith("✗"):
                break
        task = cells(screen)[0][2]
        assert task == "✗ generate_quarterly_distr…" and len(task) == 27, task


async def test_paging_reads_one_window_at_a_time(jobs_console, redis_client):
    ids = [f"job-{i:03d}" for i in range(120)]
    for task_id in ids:  # FIFO: the first pushed runs first
        redis_client.lpush(list_key(5), envelope(task_id=task_id))
    reader = jobs_console.sources.jobs
    async with jobs_console.run_test(size=(120, 36)) as pilot:
        screen = await open_jobs(pilot, jobs_console)
        assert reader.last_read == 50 and screen.table.row_count == 50
        assert [screen.rows[k].id for k in screen.table.ordered_keys] == ids[:50]
        assert "jobs 1–50" in header(screen)
        await pilot.press("pagedown")
        await reread_done(pilot, screen, 51)
        assert reader.last_read == 50
        assert [j.id for j in screen.page.jobs] == ids[50:100]
        await pilot.press("pagedown")
        await reread_done(pilot, screen, 101)
        assert reader.last_read == 20 and [j.id for j in screen.page.jobs] == ids[100:]
        reads = screen.reads
        await pilot.press("pagedown")  # the last page: nothing read
        await pilot.pause(0.2)
        assert screen.reads == reads
        await pilot.press("pageup")
        await reread_done(pilot, screen, 51)


async def reread_done(pilot, screen: QueueJobsScreen, first: int) -> None:
    for _ in range(60):
        await pilot.pause(0.05)
        if screen.page is not None and screen.page.offset == first - 1:
            assert f"jobs {first}–" in header(screen)
            return
    raise AssertionError(f"page starting at {first} not shown: {header(screen)}")


def test_keys_are_in_the_help_and_the_palette() -> None:
    keys = dict(help_rows())
    for key in ("d", "r", "^", "PgDn / PgUp", "Enter"):
        assert key in keys
    assert "waiting" in keys["^"] and "priority 10" in keys["^"]
    names = {c.name for c in palette_commands()}
    assert {"open_jobs", "delete_job", "revoke_job", "move_job_to_front"} <= names
