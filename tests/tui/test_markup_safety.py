"""Data is never markup, never a terminal escape (issue 12, "Data is never markup").

Every screen is rendered with markup- and escape-bearing data (task names, uuids, queues,
hostnames, args, results, tracebacks, worker replies, the typed filter, history rows) and
the whole composed screen — what the driver would write to the terminal — is read back:

* every data string is on screen literally (a parsed ``[bold red]x[/]`` would lose its
  brackets, a parsed ``[/]`` raises MarkupError);
* no segment carries an action (``@click`` meta) or a hyperlink: the console's own widgets
  use none, so any there came from the data;
* no segment holds a control character (ESC, BEL, C1): ``\\x1b]52;…`` would set the
  operator's clipboard, ``\\x1b[2J`` blank the screen.

Data arrives the normal ways: events through ``StaticSources`` and ``model.apply``, inspect
replies, queue polls, the result backend, history rows loaded at start and searched. The
last test skips every source and model and hands raw records to the screens, so the display
layer is proven on its own, whatever the validation boundary upstream removes.
"""

from __future__ import annotations

import os
import re
import time
from types import SimpleNamespace

import pytest
from textual.events import Paste
from textual.strip import Strip
from textual.widgets import Input

from afirgen_tasks.factory import create_app
from afirgen_tasks.settings import load_settings
from tui.actions import Outcome
from tui.history import HistoryStore
from tui.sources.cluster import StaticSources
from tui.sources.inspection import InspectionResult
from tui.sources.queue_lengths import QueueLength, QueueSnapshot
from tui.ui.app import AfirgenApp
from tui.ui.messages import ActionCompleted, EventsEnabled
from tui.ui.screens.forms import (
    ChoiceScreen,
    ConfirmScreen,
    EnqueueScreen,
    NumberFormScreen,
    TypedConfirmScreen,
)
from tui.ui.screens.help import HelpScreen
from tui.ui.screens.history_search import HistorySearchScreen, row_as_task
from tui.ui.screens.task_detail import TaskDetailScreen
from tui.ui.widgets.keyed_table import KeyedTable
from tui.ui.widgets.panes import QueueRow, QueuesPane, TasksPane, WorkersPane

SIZE = (160, 50)

# ---- hostile data ---------------------------------------------------------------------------
GROW_UUID = "[@click=app.resize_all(5)]GROW"
QUIT_UUID = "[@click=app.quit]quit-uuid-0002"
CLOSE_UUID = "[/]-uuid-0003"
LINK_UUID = "[link=http://e]l[/link]-0004"
#: task names: their short name (after the last dot) is what the Tasks pane shows
NAMES = ["[bold red]x[/]", "afirgen_tasks.[@click=app.quit]q", "[/]", "[link=http://e]l[/link]"]
CLIPBOARD = "\x1b]52;c;SGFja2VkIQ==\x07"
CLEAR = "\x1b[2J"
TITLE = "\x1b]2;pwned\x07"
#: queue names (events, polls, inspect)
QUEUE_NAMES = [CLIPBOARD, CLEAR, "[/]", "[red]q[/red]"]
HOST = "[@click=app.quit]w\x07@[b]box[/b]"
HOST2 = f"w{TITLE}@h"
TRACEBACK = (
    'Traceback (most recent call last):\n  File "[/]", line 1, in [@click=app.quit]run\n'
    f"ValueError: [bold]boom[/] {CLEAR}"
)
EXCEPTION = "ValueError('[/] [link=http://e]x[/link]')"
RESULT = "{'r': '[@click=app.resize_all(5)]again'}"
ARGS = f"['[/]', '{CLIPBOARD}']"

#: printable fragments of the escape-bearing strings: on screen whether the sources strip
#: the control characters or the display shows them (as ␛: both are fine; raw is not)
ESCAPE_REMAINS = ["]52;c;SGFja2VkIQ==", "]2;pwned"]

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
#: What Textual's ScrollBar puts on its own cells (``@mouse.down``), never from data.
_SCROLLBAR = {"grab", "scroll_up", "scroll_down", "scroll_left", "scroll_right"}


# ---- reading the screen back --------------------------------------------------------------
def screen_lines(app: AfirgenApp) -> list[Strip]:
    """The composed screen, one Strip per line, as the compositor hands it to the driver
    (modal screens over the screens beneath them, toasts included)."""
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    return [Strip.join(line) for line in update.strips]


def assert_clean(app: AfirgenApp, *literals: str, where: str = "") -> str:
    """Fail on any action, link or control character on screen, or a literal missing.

    Returns the screen's text, one line per row, for further checks.
    """
    lines = screen_lines(app)
    for y, strip in enumerate(lines):
        for seg in strip:
            bad = _CONTROL.search(seg.text)
            assert bad is None, f"{where}: raw control {bad.group()!r} in {seg.text!r} (row {y})"
            style = seg.style
            if style is None:
                continue
            assert not style.link, f"{where}: link {style.link!r} on {seg.text!r} (row {y})"
            # a scrollbar's own handle and arrows (a long help) are Textual's, not data's
            actions = {
                k: v
                for k, v in style.meta.items()
                if k.startswith("@") and not (k == "@mouse.down" and v in _SCROLLBAR)
            }
            assert not actions, f"{where}: action {actions} on {seg.text!r} (row {y})"
    text = "\n".join(strip.text for strip in lines)
    for literal in literals:
        assert literal in text, f"{where}: {literal!r} not on screen:\n{text}"
    return text


async def settle(pilot, app, predicate=lambda: True, timeout=10.0, message="condition"):
    """Let thread workers finish and messages be handled until ``predicate()`` (deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        await app.workers.wait_for_complete()
        await pilot.pause()
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}; screen {app.screen}")


# ---- fixtures: a console with a real Celery app on kombu's in-memory transport ------------
@pytest.fixture
def mem_settings(tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text("")
    monkeypatch.setenv("AFIRGEN_CONFIG", str(tmp_path / "config.toml"))
    for name in [n for n in os.environ if n.startswith(("AFIRGEN_", "CELERY_"))]:
        monkeypatch.delenv(name)
    return load_settings(
        None,
        celery_broker_url="memory://",
        celery_result_backend="cache+memory://",
        paths_data_dir=tmp_path / "var",
        console_audit_log=tmp_path / "audit.log",
        history_db=tmp_path / "history.sqlite3",
        console_control_timeout=0.2,
    )


@pytest.fixture
def mem_app(mem_settings):
    app = create_app(mem_settings, main="markup-safety")
    yield app
    app.close()


def hostile_cluster(sources: StaticSources, events) -> dict[str, str]:
    """Feed workers, tasks, an inspect reply, a queue poll and backend records; returns
    uuid -> the name each task was sent with."""
    sources.feed([events.worker_online(HOST), events.worker_online(HOST2)])
    sent = {}
    for uuid, name, queue, outcome in (
        (GROW_UUID, NAMES[0], QUEUE_NAMES[0], "failure"),
        (QUIT_UUID, NAMES[1], QUEUE_NAMES[1], "started"),
        (CLOSE_UUID, NAMES[2], QUEUE_NAMES[2], "success"),
        (LINK_UUID, NAMES[3], QUEUE_NAMES[3], "retry"),
    ):
        _, evs = events.task(
            outcome,
            name=name,
            queue=queue,
            host=HOST if outcome != "retry" else HOST2,
            args=ARGS,
            kwargs="{'k': '[/]'}",
            uuid=uuid,
        )
        for ev in evs:  # results and failures from the data too
            if ev["type"] == "task-failed":
                ev.update(exception=EXCEPTION, traceback=TRACEBACK)
            elif ev["type"] == "task-succeeded":
                ev["result"] = RESULT
        sources.feed(evs)
        sent[uuid] = name
    sources.inspection = InspectionResult(
        stats={
            HOST: {
                "pool": {
                    "implementation": "[/]\x1b[2J:TaskPool",
                    "max-concurrency": 2,
                    "processes": [1],
                },
                "autoscaler": {"max": 4, "min": 1},
            }
        },
        active_queues={HOST: QUEUE_NAMES, HOST2: ["default"]},
        taken_at=time.time(),
    )
    sources.queue_poll = QueueSnapshot.of(
        [QueueLength(q, 3, {5: 3}, 1) for q in QUEUE_NAMES], taken_at=time.time()
    )
    sources.results[GROW_UUID] = {
        "status": "FAILURE",
        "result": "[/] backend says [@click=app.quit]no",
        "traceback": TRACEBACK,
        "date_done": f"[b]2026[/b]{CLEAR}",
    }
    return sent


def move_to(pane: KeyedTable, key: str) -> None:
    pane.focus()
    pane.pinned = True
    pane.move_cursor(row=pane.get_row_index(key), animate=False)


# ---- the main console, the detail screen and the toasts ------------------------------------
async def test_console_panes_status_and_toasts_show_hostile_data_literally(screen_settings, events):
    sources = StaticSources(screen_settings)
    app = AfirgenApp(screen_settings, sources, autostart=False)
    sources.start()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sent = hostile_cluster(sources, events)
        app.console_screen.tick()
        app.console_screen.poll_queues()
        app.console_screen.inspect_workers(resync=True)
        await settle(
            pilot,
            app,
            lambda: (
                app.query_one("#workers", WorkersPane).row_count == 2
                and app.console_screen.last_inspection is not None
            ),
            message="inspect",
        )
        tasks = app.query_one("#tasks", TasksPane)
        assert tasks.row_keys == set(sent)
        # every data cell is a literal Text (a str cell would be parsed as markup)
        for uuid in sent:
            row = tasks.get_row(uuid)
            assert all(not isinstance(cell, str) for cell in row), row
        shown = [app.model.get_task(u).short_name for u in sent]
        # (cells are cut at the column width with an ellipsis: "[red]q[/…" is the queue
        # "[red]q[/red]", "[@click=app.quit]…" the worker "[@click=app.quit]w␛]2;pwned␇@h")
        assert_clean(
            app,
            *shown,
            "[@click=",
            "[/]-uuid",
            "[link=ht",
            "[red]q[/…",
            "[/]",
            "[@click=app.quit]…",
            where="main console",
        )

        # the typed filter (operator text) in the status line: literal, the rows still match
        app.console_screen.set_filter("[/]")
        await pilot.pause()
        assert CLOSE_UUID in tasks.row_keys  # the name "[/]" matches as typed
        assert_clean(app, "filter: [/]", where="status line with filter")
        app.console_screen.action_escape()
        await pilot.pause()
        # a task name pasted into the filter leaves its escapes behind
        await pilot.press("slash")
        box = app.query_one("#filter", Input)
        box.post_message(Paste(f"[/]{CLIPBOARD}"))
        await settle(pilot, app, lambda: box.value != "", message="paste")
        assert box.value == "[/]]52;c;SGFja2VkIQ=="
        assert_clean(app, "filter: [/]]52;c;", where="pasted filter")
        app.console_screen.action_escape()
        await pilot.pause()

        # toasts built from worker replies and hostnames
        app.console_screen.post_message(EventsEnabled([HOST, HOST2], ""))
        app.console_screen.post_message(
            ActionCompleted(
                "pause_queue",
                QUEUE_NAMES[0],
                Outcome(
                    False,
                    f"pause {QUEUE_NAMES[0]} [/]: no reply",
                    replies={HOST: f"[bold]error[/] {CLIPBOARD}"},
                ),
                False,
            )
        )
        app.console_screen.post_message(
            EventsEnabled([], f"could not enable events on {HOST}: {TITLE}[/]")
        )
        await settle(
            pilot, app, lambda: len(app.screen.query("Toast")) >= 3, message="toasts on screen"
        )
        assert_clean(app, "[@click=app.quit]w", "[bold]error[/]", where="toasts")

        # the detail screen: the border title that was a clickable pool_grow to every worker
        grown: list[tuple] = []
        app.console_screen.action_resize_all = lambda *args: grown.append(args)  # type: ignore[method-assign]
        app.console_screen.action_open_detail(GROW_UUID)
        await settle(
            pilot,
            app,
            lambda: isinstance(app.screen, TaskDetailScreen) and app.screen.backend is not None,
            message="detail with backend",
        )
        # Click where the uuid's tail is drawn in the title (found whether it is literal or
        # was parsed into "Task GROW"): nothing may run.
        lines = [strip.text for strip in screen_lines(app)]
        row = next(y for y, line in enumerate(lines) if "Task " in line and "GROW" in line)
        x = lines[row].index("GROW")
        actions_before = len(app.console_screen.runner.action_log)
        await pilot.click(offset=(x + 1, row))
        await pilot.click(offset=(x - 4, row))
        await settle(pilot, app)
        assert grown == [], "a click on the uuid in the title ran an action"
        assert len(app.console_screen.runner.action_log) == actions_before
        assert_clean(
            app,
            f"Task {GROW_UUID}",
            "[bold red]x[/]",
            "ValueError('[/] [link=http://e]x[/link]')",
            "[@click=app.quit]run",
            "[bold]boom[/]",
            "(backend: FAILURE)",
            "[b]2026[/b]",
            "'[/]'",
            "{'k': '[/]'}",
            *ESCAPE_REMAINS[:1],
            where="task detail",
        )
        await pilot.press("escape")

        # a finished task with a result, and the retried one on the other host
        for uuid, literals in (
            (CLOSE_UUID, ["[/]-uuid-0003", RESULT]),
            (LINK_UUID, [LINK_UUID, "[link=http://e]"]),
        ):
            app.console_screen.action_open_detail(uuid)
            await settle(
                pilot, app, lambda: isinstance(app.screen, TaskDetailScreen), message="detail"
            )
            assert_clean(app, *literals, where=f"detail {uuid}")
            await pilot.press("escape")
            await pilot.pause()


# ---- every dialog ----------------------------------------------------------------------------
async def test_dialogs_show_hostile_data_literally(mem_settings, mem_app, events):
    sources = StaticSources(mem_settings)
    app = AfirgenApp(mem_settings, sources, celery_app=mem_app, autostart=False)
    sources.start()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        hostile_cluster(sources, events)
        app.console_screen.tick()
        app.console_screen.poll_queues()
        await settle(
            pilot, app, lambda: app.query_one("#queues", QueuesPane).has_key(CLEAR), message="poll"
        )

        # revoke confirmation: name, uuid and state in the question
        move_to(app.query_one("#tasks", TasksPane), QUIT_UUID)
        await pilot.press("r")
        await settle(pilot, app, lambda: isinstance(app.screen, ConfirmScreen), message="confirm")
        assert_clean(app, f"quit]q [{QUIT_UUID}] (STARTED)?", where="revoke confirm")
        await pilot.press("n")
        await pilot.pause()

        # purge: the queue name in the title, the question, the placeholder and the error
        move_to(app.query_one("#queues", QueuesPane), "[/]")
        await pilot.press("x")
        await settle(
            pilot, app, lambda: isinstance(app.screen, TypedConfirmScreen), message="purge"
        )
        assert_clean(
            app, "Purge [/]", "from [/]. Reserved", "type [/] to confirm", where="purge confirm"
        )
        app.screen.query_one("#typed", Input).value = "[b]nope"
        await pilot.press("enter")
        await pilot.pause()
        assert_clean(app, "that is not '[/]'", where="purge typed wrong")
        await pilot.press("escape")
        await pilot.pause()
        move_to(app.query_one("#queues", QueuesPane), CLIPBOARD)
        await pilot.press("x")
        await settle(
            pilot,
            app,
            lambda: isinstance(app.screen, TypedConfirmScreen),
            message="purge escape queue",
        )
        assert_clean(app, *ESCAPE_REMAINS[:1], where="purge confirm, escape queue")
        await pilot.press("escape")
        await pilot.pause()

        # worker forms: the hostname in the checkbox label
        move_to(app.query_one("#workers", WorkersPane), HOST)
        await pilot.press("equals_sign")
        await settle(
            pilot, app, lambda: isinstance(app.screen, NumberFormScreen), message="resize form"
        )
        assert_clean(app, "not only [@click=app.quit]w", where="resize form")
        app.screen.query_one("#n", Input).value = "[/]"
        await pilot.press("enter")
        await pilot.pause()
        assert_clean(app, "'[/]' is not a whole number", where="resize form error")
        await pilot.press("escape")
        await pilot.pause()
        move_to(app.query_one("#workers", WorkersPane), HOST2)
        await pilot.press("a")
        await settle(
            pilot, app, lambda: isinstance(app.screen, NumberFormScreen), message="autoscale form"
        )
        assert_clean(app, *ESCAPE_REMAINS[1:], where="autoscale form")
        await pilot.press("escape")
        await pilot.pause()

        # export: the filter quoted in the question
        app.console_screen.set_filter("[/]")
        await pilot.press("E")
        await settle(pilot, app, lambda: isinstance(app.screen, ChoiceScreen), message="export")
        assert_clean(app, "matching '[/]'", where="export choice")
        await pilot.press("escape")
        await pilot.pause()
        app.console_screen.action_escape()

        # help
        app.query_one("#tasks", TasksPane).focus()
        await pilot.press("question_mark")
        await settle(pilot, app, lambda: isinstance(app.screen, HelpScreen), message="help")
        assert_clean(app, "prio:>=8", where="help")
        await pilot.press("escape")
        await pilot.pause()

        # enqueue: the validator quotes the typed queue and lists the broker's queues
        await pilot.press("e")
        await settle(pilot, app, lambda: isinstance(app.screen, EnqueueScreen), message="enqueue")
        form = app.screen
        form.query_one("#queue", Input).value = f"[b]q[/b]{CLEAR}"  # as if pasted
        assert form.query_one("#queue", Input).value == "[b]q[/b][2J"  # the field drops the ESC
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is form
        assert_clean(app, "queue '[b]q[/b]", "[red]q[/red]", where="enqueue error")
        await pilot.press("escape")
        await pilot.pause()


# ---- history rows loaded at start and searched -----------------------------------------------
def hostile_rows(now: float) -> list[dict]:
    rows = []
    for n, (uuid, name, queue) in enumerate(
        zip((GROW_UUID, QUIT_UUID, CLOSE_UUID, LINK_UUID), NAMES, QUEUE_NAMES, strict=True)
    ):
        rows.append(
            {
                "uuid": uuid,
                "name": name,
                "state": "FAILURE" if n == 0 else "SUCCESS",
                "queue": queue,
                "priority": 5,
                "hostname": HOST if n % 2 else HOST2,
                "args": ARGS,
                "kwargs": "{}",
                "result": RESULT,
                "exception": EXCEPTION if n == 0 else None,
                "traceback": TRACEBACK if n == 0 else None,
                "sent": now - 60 + n,
                "started": now - 59 + n,
                "finished": now - 58 + n,
                "runtime": 1.0,
            }
        )
    return rows


async def test_history_rows_loaded_at_start_and_searched_are_literal(screen_settings):
    store = HistoryStore(screen_settings.history_db)
    assert store.upsert(hostile_rows(time.time())) == 4  # as an older console wrote them
    sources = StaticSources(screen_settings)
    app = AfirgenApp(screen_settings, sources, autostart=False, history=store)
    sources.start()
    try:
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await settle(
                pilot,
                app,
                lambda: app.console_screen.history.loaded_count == 4,
                message="history loaded",
            )
            tasks = app.query_one("#tasks", TasksPane)
            assert tasks.row_count == 4
            assert_clean(
                app, "[bold red]x[/]", "[@click=", "[red]q[/…", where="history in the Tasks pane"
            )

            # H: a name or queue "[/]" raised MarkupError here at every start
            await pilot.press("H")
            await settle(
                pilot,
                app,
                lambda: isinstance(app.screen, HistorySearchScreen) and len(app.screen.rows) == 4,
                message="search results",
            )
            search = app.screen
            assert_clean(
                app,
                "[bold red]x[/]",
                "[/]",
                "[@click=",
                "[link=ht",
                "[red]q[/r",
                "4 task(s)",
                where="history search",
            )
            search.run_search("since:[b]x[/b]")
            await pilot.pause()
            assert_clean(app, "since: '[b]x[/b]' is neither", where="history search error")
            search.run_search("")
            await settle(pilot, app, lambda: len(search.rows) == 4, message="all rows again")
            table = search.query_one("#history-results")
            table.focus()
            table.move_cursor(
                row=next(i for i, r in enumerate(search.rows) if r["uuid"] == GROW_UUID)
            )
            await pilot.press("enter")
            await settle(
                pilot,
                app,
                lambda: isinstance(app.screen, TaskDetailScreen),
                message="detail from history",
            )
            assert_clean(
                app,
                f"Task {GROW_UUID}",
                "[bold]boom[/]",
                "[@click=app.quit]run",
                where="history detail",
            )
    finally:
        store.close()


# ---- the display layer alone: raw records, no source, no model, no store ---------------------
async def test_screens_render_raw_hostile_records_without_any_validation(screen_settings):
    """The last line of defence: even data that skipped the validation boundary is literal."""
    raw = {
        "uuid": f"{GROW_UUID}{CLIPBOARD}",
        "name": f"[bold red]x[/]{TITLE}",
        "state": "FAILURE",
        "queue": CLIPBOARD,
        "priority": 5,
        "hostname": HOST,
        "args": ARGS,
        "kwargs": "{}",
        "result": RESULT,
        "exception": f"{EXCEPTION}\x9b2J\u202e\udc80",
        "traceback": TRACEBACK,
        "sent": time.time() - 5,
        "started": time.time() - 4,
        "finished": time.time() - 3,
        "runtime": 1.0,
    }
    sources = StaticSources(screen_settings)
    app = AfirgenApp(screen_settings, sources, autostart=False)
    sources.start()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        record = row_as_task(raw)
        tasks = app.query_one("#tasks", TasksPane)
        tasks.upsert(raw["uuid"], tasks.cells(record))
        tasks.upsert(
            "plain-str-cells", ["[/]", f"[@click=app.quit]{CLEAR}"]
        )  # a str cell slipping through
        worker = SimpleNamespace(
            hostname=raw["hostname"],
            online=True,
            pool=f"[/]{CLEAR}",
            concurrency=2,
            max_concurrency=2,
            autoscale=None,
            active=0,
            processed=1,
            failed=0,
            last_heartbeat=time.time(),
            loadavg=None,
            queues=[CLIPBOARD, "[red]q[/red]"],
        )
        app.query_one("#workers", WorkersPane).show([worker])
        app.query_one("#queues", QueuesPane).show(
            [QueueRow(f"[/]{TITLE}", 1), QueueRow(CLEAR, 2, paused="⏸")]
        )
        await pilot.pause()
        # C0 controls are shown as their Control Pictures (ESC -> ␛), as the sources' boundary does
        assert_clean(
            app,
            "[bold red]x[/]␛]2;pwned␇",
            "␛]52;",
            "[/]␛]2",
            "[@click=app.quit]…",
            "[@click=app.quit]␛[2J",
            where="panes with raw records",
        )

        app.push_screen(TaskDetailScreen(record, str, None))
        await pilot.pause()
        assert_clean(
            app,
            f"Task {GROW_UUID}␛]52;c;SGFja2VkIQ==␇",
            "\\x9b2J\\u202e\ufffd",
            "[bold]boom[/] ␛[2J",
            where="detail of a raw record",
        )
        await pilot.press("escape")

        app.push_screen(HistorySearchScreen(lambda *a, **k: [raw], str))
        await settle(
            pilot,
            app,
            lambda: isinstance(app.screen, HistorySearchScreen) and app.screen.rows,
            message="raw search",
        )
        assert_clean(app, "␛]52;c", "[@click=", where="history search of a raw row")
