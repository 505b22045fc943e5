"""Pilot tests of the failures grouped (``f``): groups, counts, first/last seen, workers,
hostile texts shown literally, Enter filtering the Tasks pane to exactly one group, the empty
state, ``R`` on the group and in read-only mode, and the keys in the help and palette.

The console runs on StaticSources: failures arrive as real ``task-failed`` event dicts
through the model, with exception texts as Celery's workers send them.
"""

from __future__ import annotations

from typing import Any

from textual.widgets import Input, Static

from tests.tui.test_markup_safety import CLEAR, CLIPBOARD, ESCAPE_REMAINS, assert_clean
from tui.actions import AuditLog
from tui.core.formatting import clock
from tui.ui.app import AfirgenApp
from tui.ui.commands import help_rows, palette_commands
from tui.ui.screens.failures import NO_RETRY, FailuresScreen
from tui.ui.widgets.panes import TasksPane

EMAIL = "afirgen_tasks.email.send_fir_email"
PDF = "afirgen_tasks.reports.generate_pdf_report"
VALUE_TB = (
    'Traceback (most recent call last):\n  File "reports.py", line 40, in generate\n'
    "    raise ValueError(msg)\nValueError: FIR 1 does not exist"
)


def failed(
    events, name: str, exception: str, host: str = "w1@box", traceback: str | None = None
) -> tuple[str, list[dict[str, Any]], float]:
    """One failed task's events, with ``exception`` (and ``traceback``) as the worker sent
    them; returns the uuid, the events and the failure's time."""
    uuid, evs = events.task("failure", name=name, host=host)
    evs[-1]["exception"] = exception
    evs[-1]["traceback"] = traceback or f"Traceback (most recent call last):\n{exception}"
    return uuid, evs, evs[-1]["timestamp"]


async def open_failures(pilot, console) -> FailuresScreen:
    await pilot.press("f")
    await pilot.pause()
    screen = console.screen
    assert isinstance(screen, FailuresScreen), screen
    return screen


def header(screen: FailuresScreen) -> str:
    return str(screen.query_one("#failures-header", Static).render())


def row(screen: FailuresScreen, key: str) -> list[str]:
    return [str(c) for c in screen.table.get_row(key)]


async def test_groups_count_first_last_workers_and_sample(console, sources, events):
    async with console.run_test(size=(160, 40)) as pilot:
        feed: list[dict[str, Any]] = []
        e1, evs, t_e1 = failed(events, EMAIL, "SMTPConnectError(421, b'down')", "w1@box")
        feed += evs
        p1, evs, _ = failed(events, PDF, "PermanentTaskError('FIR 99999 does not exist')")
        feed += evs
        e2, evs, _ = failed(events, EMAIL, "SMTPConnectError(421, b'busy')", "w2@box")
        feed += evs
        v1, evs, _ = failed(events, PDF, "FIR 1 does not exist", "w3@box", VALUE_TB)
        feed += evs
        e3, evs, t_e3 = failed(events, EMAIL, "SMTPConnectError(421, b'later')", "w1@box")
        feed += evs
        feed += events.task("success", name=EMAIL)[1]
        sources.feed(feed)
        console.console_screen.tick()
        await pilot.pause()
        screen = await open_failures(pilot, console)
        keys = [g.key for g in screen.groups.values()]
        assert [(screen.groups[k].name, screen.groups[k].exc_type) for k in keys] == [
            (EMAIL, "SMTPConnectError"),
            (PDF, "ValueError"),  # a bare message, typed by its traceback; the latest first
            (PDF, "PermanentTaskError"),
        ]
        assert screen.table.ordered_keys[:3] == (keys)
        smtp = row(screen, keys[0])
        assert smtp[:3] == ["3", "send_fir_email", "SMTPConnectError"]
        assert smtp[3:5] == [clock(t_e1), clock(t_e3)]
        assert smtp[5] == "w1@box, w2@box"
        assert smtp[6] == "SMTPConnectError(421, b'later')"
        assert row(screen, keys[1])[6] == "FIR 1 does not exist"
        assert "5 failed task(s) in 3 group(s), of the 6 tasks in memory" in header(screen)
        assert "H searches the persisted history" in header(screen)
        assert sorted(screen.groups[keys[0]].uuids) == sorted([e1, e2, e3])
        # the highlighted group in full under the table (the Sample column may be cut)
        detail = str(screen.query_one("#failure-detail", Static).render())
        assert f"{EMAIL} · SMTPConnectError · 3 task(s) on 2 worker(s)" in detail
        assert "latest: SMTPConnectError(421, b'later')" in detail
        await pilot.press("down")
        detail = str(screen.query_one("#failure-detail", Static).render())
        assert "ValueError" in detail and "latest: FIR 1 does not exist" in detail
        # a new failure while the screen is open: the group grows in place
        sources.feed(failed(events, PDF, "PermanentTaskError('FIR 5')", "w9@box")[1])
        console.console_screen.tick()
        screen.regroup()
        await pilot.pause()
        assert row(screen, keys[2])[0] == "2" and "w9@box" in row(screen, keys[2])[5]
        assert p1 in screen.groups[keys[2]].uuids and v1 in screen.groups[keys[1]].uuids


async def test_enter_filters_the_tasks_pane_to_exactly_that_group(console, sources, events):
    async with console.run_test(size=(160, 40)) as pilot:
        want = []
        for i in range(3):
            uuid, evs, _ = failed(events, EMAIL, f"SMTPConnectError(421, b'n{i}')", f"w{i}@box")
            want.append(uuid)
            sources.feed(evs)
        # the same task with another type, another task with the same type, a success,
        # and a message that names the type without being of it
        sources.feed(failed(events, EMAIL, "PermanentTaskError('no FIR')")[1])
        sources.feed(failed(events, PDF, "SMTPConnectError(421)")[1])
        sources.feed(failed(events, EMAIL, "KeyError('SMTPConnectError')")[1])
        sources.feed(events.task("success", name=EMAIL)[1])
        console.console_screen.tick()
        await pilot.pause()
        screen = await open_failures(pilot, console)
        assert screen.highlighted().exc_type == "SMTPConnectError"  # the biggest group first
        await pilot.press("enter")
        await pilot.pause()
        assert console.screen is console.console_screen
        text = f"state:failure name:{EMAIL} exc:SMTPConnectError"
        assert console.console_screen.task_filter.text == text
        box = console.console_screen.query_one("#filter", Input)
        assert box.value == text and box.display
        pane = console.query_one("#tasks", TasksPane)
        shown = set(pane.row_keys)
        # exactly the group, except the KeyError whose message names the type (exc: also
        # matches the exception text)
        keyerror = {
            t.uuid
            for t in console.console_screen.model.iter_tasks()
            if (t.exception or "").startswith("KeyError")
        }
        assert shown == set(want) | keyerror
        assert console.focused is pane


async def test_enter_on_a_group_typed_by_its_traceback_shows_it(console, sources, events):
    async with console.run_test(size=(160, 40)) as pilot:
        uuid, evs, _ = failed(events, PDF, "FIR 1 does not exist", traceback=VALUE_TB)
        sources.feed(evs)
        sources.feed(failed(events, PDF, "PermanentTaskError('FIR 2')")[1])
        sources.feed(failed(events, PDF, "boom", traceback="")[1])
        console.console_screen.tick()
        await pilot.pause()
        screen = await open_failures(pilot, console)
        by_type = {g.exc_type: k for k, g in screen.groups.items()}
        assert set(by_type) == {"ValueError", "PermanentTaskError", "unknown"}
        screen.table.move_cursor(row=screen.table.get_row_index(by_type["ValueError"]))
        await pilot.press("enter")
        await pilot.pause()
        assert set(console.query_one("#tasks", TasksPane).row_keys) == {uuid}


async def test_hostile_names_hosts_and_exceptions_are_shown_literally(console, sources, events):
    name = "[bold red]x[/]"  # no dot: the short name is the whole name
    exception = "ValueError('[/] [link=http://e]x[/link]')"
    host = "[@click=app.quit]w"
    async with console.run_test(size=(160, 40)) as pilot:
        sources.feed(failed(events, name, exception, host)[1])
        sources.feed(failed(events, EMAIL, f"[bold red]boom[/] {CLEAR}")[1])
        sources.feed(failed(events, PDF, f"OSError('{CLIPBOARD}')", "[b]w2[/b]")[1])
        console.console_screen.tick()
        await pilot.pause()
        await open_failures(pilot, console)
        await pilot.pause()
        assert_clean(
            console,
            name,
            "[/] [link=http://e]x[/link]",
            host,
            "[b]w2[/b]",
            "[bold red]boom[/]",
            *ESCAPE_REMAINS[:1],
            where="failures",
        )


async def test_no_failures_in_memory(console, sources, events):
    async with console.run_test(size=(100, 30)) as pilot:
        sources.feed(events.task("success")[1] + events.task("revoked")[1])
        console.console_screen.tick()
        await pilot.pause()
        screen = await open_failures(pilot, console)
        assert screen.table.row_count == 0
        assert "no failures in memory (of the 2 tasks in memory)" in header(screen)
        await pilot.press("enter")  # nothing to filter to: the filter is untouched
        await pilot.pause()
        assert console.console_screen.task_filter.text == ""
        await pilot.press("escape")
        await pilot.pause()
        assert console.screen is console.console_screen


async def test_retry_group_uses_the_runner_when_the_build_has_it(console, sources, events):
    async with console.run_test(size=(160, 40)) as pilot:
        uuids = []
        for _ in range(2):
            uuid, evs, _ = failed(events, EMAIL, "SMTPConnectError(421)")
            uuids.append(uuid)
            sources.feed(evs)
        console.console_screen.tick()
        await pilot.pause()
        await open_failures(pilot, console)
        runner = console.console_screen.runner
        if not hasattr(runner, "retry_tasks"):
            await pilot.press("R")
            await pilot.pause()
            assert any(NO_RETRY in str(n.message) for n in console._notifications)
        # R hands the runner the whole group (the runner confirms, audits and sends)
        asked: list[list[str]] = []
        runner.retry_tasks = asked.append  # type: ignore[attr-defined]
        await pilot.press("R")
        await pilot.pause()
        assert [sorted(a) for a in asked] == [sorted(uuids)]


async def test_read_only_refuses_retry_group_and_audits(screen_settings, sources, events):
    console = AfirgenApp(screen_settings, sources, autostart=False, read_only=True)
    sources.start()
    async with console.run_test(size=(160, 40)) as pilot:
        sources.feed(failed(events, EMAIL, "SMTPConnectError(421)")[1])
        console.console_screen.tick()
        await pilot.pause()
        screen = await open_failures(pilot, console)
        asked: list[list[str]] = []
        console.console_screen.runner.retry_tasks = asked.append  # type: ignore[attr-defined]
        assert not screen.check_action("retry_group", ())  # hidden from the footer
        await pilot.press("R")
        await pilot.pause(0.3)
        await console.workers.wait_for_complete()
        assert asked == []
        assert any("read-only" in str(n.message) for n in console._notifications)
    lines = AuditLog(screen_settings.console_audit_log).read()
    assert [(x["action"], x["ok"]) for x in lines] == [("retry_group", False)]


def test_keys_are_in_the_help_and_the_palette() -> None:
    keys = dict(help_rows())
    assert "failures grouped" in keys["f"]
    assert "retry every task of the highlighted group" in keys["R"]
    names = {c.name for c in palette_commands()}
    assert {"failures", "filter_group", "retry_group"} <= names
    assert "retry_group" not in {c.name for c in palette_commands(read_only=True)}
