# ruff: noqa: F811 - the fixtures are imported from test_action_keys
"""Issue 15, the Tasks pane: marks (Space, *, Esc), the order (s), retry (R) and bulk r/R.

Screens on StaticSources (no broker); sends go to an in-memory broker whose queues are read
back, so "what was sent" is checked at the broker, not on a mock.
"""

from __future__ import annotations

import json

from afirgen_tasks.factory import RETRY_OF_HEADER
from tests.tui.test_action_keys import (  # noqa: F401 - fixtures
    audit_lines,
    make_console,
    mem_app,
    mem_settings,
    settle,
    waiting,
)
from tui.ui.screens.forms import ConfirmScreen
from tui.ui.screens.task_detail import TaskDetailScreen
from tui.ui.widgets.panes import TasksPane

REPORT = "afirgen_tasks.reports.generate_excel_report"


def status_text(app) -> str:
    return str(app.console_screen.query_one("#status").render())


def question(app) -> str:
    assert isinstance(app.screen, ConfirmScreen), app.screen
    return app.screen.question


def stored(uuid: str, args: list, kwargs: dict, status: str = "FAILURE") -> dict:
    """A result-backend record as Celery writes it with result_extended (decoded)."""
    return {
        "status": status,
        "result": {"exc_type": "PermanentTaskError", "exc_message": ["unknown FIR ids: 21"]},
        "traceback": "Traceback ...",
        "children": [],
        "date_done": "2026-01-01T00:00:00",
        "task_id": uuid,
        "name": REPORT,
        "args": args,
        "kwargs": kwargs,
        "worker": "w1@box",
        "retries": 0,
        "queue": "reports",
    }


def take(app, queue: str) -> list[dict]:
    """Every message waiting in ``queue`` on the in-memory broker: headers and body."""
    out = []
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        while (msg := channel.basic_get(queue, no_ack=True)) is not None:
            out.append({"headers": msg.headers, "body": json.loads(msg.body)})
    return out


async def _tasks(pilot, app, events, *outcomes: str, name: str = REPORT) -> list[str]:
    uuids = []
    for outcome in outcomes:
        uuid, evs = events.task(outcome, name=name, queue="reports", priority=6)
        app.console_screen.sources.feed(evs)
        uuids.append(uuid)
    app.console_screen.tick()
    await pilot.pause()
    return uuids


async def test_space_marks_star_marks_the_filtered_esc_clears_marks_then_filter(
    mem_settings, mem_app, events
):
    app, _ = make_console(mem_settings, mem_app)
    async with app.run_test(size=(100, 30)) as pilot:
        a, b, c = await _tasks(pilot, app, events, "failure", "failure", "success")
        pane = app.query_one("#tasks", TasksPane)
        pane.focus()
        assert pane.select(b)
        await pilot.press("space")
        assert pane.marked == {b}
        assert str(pane.get_cell(b, "state")).startswith("* ")
        assert "1 marked" in status_text(app)
        # re-sorting keeps the mark on the task, not on the row position
        await pilot.press("s")
        await pilot.pause()
        assert "newest sent first" in str(pane.border_title)
        assert pane.marked == {b} and str(pane.get_cell(b, "state")).startswith("* ")
        assert not str(pane.get_cell(a, "state")).startswith("* ")
        await pilot.press("space")  # the cursor went to the top row: marks that one too
        top = pane.cursor_key()
        assert pane.marked == {b, top}
        await pilot.press("space")
        assert pane.marked == {b}
        # * marks what the filter shows, after saying how many
        app.console_screen.set_filter("state:failure")
        await pilot.pause()
        await pilot.press("asterisk")
        await pilot.pause()
        assert "Mark 1 task(s): every task the filter 'state:failure' shows (1 marked already)" in (
            question(app)
        )
        await pilot.press("y")
        await pilot.pause()
        assert pane.marked == {a, b}
        assert "2 marked" in status_text(app)
        # Esc: the marks first, the filter second
        await pilot.press("escape")
        await pilot.pause()
        assert pane.marked == set() and app.console_screen.task_filter.text == "state:failure"
        assert "marked" not in status_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert app.console_screen.task_filter.text == ""
        assert pane.row_count == 3 and c in pane.row_keys


async def test_s_cycles_activity_sent_runtime_state(mem_settings, mem_app, events):
    app, _ = make_console(mem_settings, mem_app)
    async with app.run_test(size=(100, 30)) as pilot:
        ok, failed, running = await _tasks(pilot, app, events, "success", "failure", "started")
        pane = app.query_one("#tasks", TasksPane)
        pane.focus()
        assert "latest activity first" in str(pane.border_title)
        seen = []
        for _ in range(4):
            await pilot.press("s")
            await pilot.pause()
            seen.append(pane.task_order.name)
            if pane.task_order.name == "runtime":
                assert pane.order[0] == running  # still running: above the finished ones
                assert "longest runtime first (s)" in status_text(app)
            if pane.task_order.name == "state":
                assert pane.order == [failed, running, ok]
        assert seen == ["sent", "runtime", "state", "activity"]


async def test_marked_task_evicted_from_the_model_is_unmarked(mem_settings, mem_app, events):
    app, _ = make_console(mem_settings, mem_app)
    async with app.run_test(size=(100, 30)) as pilot:
        app.console_screen.model.max_tasks = 2
        [first] = await _tasks(pilot, app, events, "success")
        pane = app.query_one("#tasks", TasksPane)
        pane.focus()
        assert pane.select(first)
        await pilot.press("space")
        assert pane.marked == {first}
        await _tasks(pilot, app, events, "success", "success")
        assert app.console_screen.model.get_task(first) is None
        assert pane.marked == set() and "marked" not in status_text(app)


async def test_R_retries_with_the_stored_args_and_the_link_both_ways(mem_settings, mem_app, events):
    app, sources = make_console(mem_settings, mem_app)
    long_ids = list(range(1, 400))  # its repr is longer than argsrepr_maxsize (1024)
    async with app.run_test(size=(100, 30)) as pilot:
        [failed] = await _tasks(pilot, app, events, "failure")
        sources.results[failed] = stored(failed, [long_ids], {})
        pane = app.query_one("#tasks", TasksPane)
        pane.focus()
        assert pane.select(failed)
        await pilot.press("R")
        await pilot.pause()
        ask = question(app)
        assert f"Retry generate_excel_report [{failed}] (FAILURE) on reports at priority 6?" in ask
        await pilot.press("y")
        await settle(pilot, app, lambda: bool(app.console_screen.runner.action_log))
        done = app.console_screen.runner.action_log[-1]
        assert done.action == "retry" and done.outcome.ok, done.outcome.message
        new = done.outcome.task_id
        [msg] = take(mem_app, "reports")
        assert msg["body"][0] == [long_ids] and msg["body"][1] == {}
        assert msg["headers"][RETRY_OF_HEADER] == failed
        assert msg["headers"]["task"] == REPORT and msg["headers"]["id"] == new
        assert msg["headers"]["afirgen_priority"] == 6
        # the link, both ways, on the detail screens
        model = app.console_screen.model
        assert model.get_task(new).retry_of == failed and model.retried_as(failed) == [new]
        assert pane.cursor_key() == new
        app.console_screen.action_open_detail(failed)
        await pilot.pause()
        assert isinstance(app.screen, TaskDetailScreen)
        assert f"Retried as  {new}" in app.screen.render_text().plain
        await pilot.press("escape")
        app.console_screen.action_open_detail(new)
        await pilot.pause()
        assert f"Retry of    {failed}" in app.screen.render_text().plain
    [line] = audit_lines(mem_settings)
    assert line["action"] == "retry" and line["target"] == failed and line["ok"]
    assert line["params"]["args"] == [long_ids] and line["params"]["retried_as"] == new


async def test_R_refused_where_the_backend_has_no_record(mem_settings, mem_app, events):
    app, _ = make_console(mem_settings, mem_app)
    async with app.run_test(size=(100, 30)) as pilot:
        [failed] = await _tasks(pilot, app, events, "failure")
        pane = app.query_one("#tasks", TasksPane)
        pane.focus()
        assert pane.select(failed)
        await pilot.press("R", "y")
        await settle(pilot, app, lambda: bool(app.console_screen.runner.action_log))
        done = app.console_screen.runner.action_log[-1]
        assert not done.outcome.ok
        assert (
            f"args were not stored: the result backend has no record of {failed}"
            in done.outcome.message
        )
        assert "a retry would not be faithful" in done.outcome.message
    assert waiting(mem_app, "reports") == 0
    [line] = audit_lines(mem_settings)
    assert line["action"] == "retry" and line["ok"] is False and "no record" in line["outcome"]


async def test_bulk_retry_lists_count_names_queues_and_sums_up(mem_settings, mem_app, events):
    app, sources = make_console(mem_settings, mem_app)
    async with app.run_test(size=(100, 30)) as pilot:
        a, b, c = await _tasks(pilot, app, events, "failure", "failure", "failure")
        sources.results[a] = stored(a, [[1]], {})
        sources.results[b] = stored(b, [[2]], {})
        # c: no record -> refused
        pane = app.query_one("#tasks", TasksPane)
        pane.focus()
        await pilot.press("asterisk", "y")
        await pilot.pause()
        assert pane.marked == {a, b, c}
        await pilot.press("R")
        await pilot.pause()
        ask = question(app)
        assert "Retry 3 tasks?" in ask and "3 × generate_excel_report (reports)" in ask
        await pilot.press("y")
        await settle(pilot, app, lambda: bool(app.console_screen.runner.action_log))
        done = app.console_screen.runner.action_log[-1]
        assert done.action == "bulk_retry"
        assert done.outcome.message == "retried 2 of 3; 1 refused"
        assert "no record" in done.outcome.replies[c[:8]]
        assert pane.marked == set()  # acted on: not acted on again by the next key
    sent = take(mem_app, "reports")
    assert sorted(m["body"][0] for m in sent) == [[[1]], [[2]]]
    assert sorted(m["headers"][RETRY_OF_HEADER] for m in sent) == sorted([a, b])
    lines = audit_lines(mem_settings)
    assert sorted((x["target"], x["ok"]) for x in lines) == sorted(
        [(a, True), (b, True), (c, False)]
    )


async def test_bulk_revoke_confirm_says_how_many_and_audits_each(mem_settings, mem_app, events):
    app, _ = make_console(mem_settings, mem_app)
    async with app.run_test(size=(100, 30)) as pilot:
        waiting_ids = await _tasks(pilot, app, events, "sent", "sent")
        [done_id] = await _tasks(pilot, app, events, "success")
        pane = app.query_one("#tasks", TasksPane)
        pane.focus()
        await pilot.press("asterisk", "y", "r")
        await pilot.pause()
        ask = question(app)
        assert "Revoke 3 marked task(s)?" in ask and "1 of them finished already" in ask
        await pilot.press("y")
        await settle(pilot, app, lambda: bool(app.console_screen.runner.action_log))
        done = app.console_screen.runner.action_log[-1]
        # no worker on the in-memory broker answers: sent, not acknowledged, said so
        assert done.action == "bulk_revoke" and done.outcome.message.startswith("revoked 0 of 3")
        assert "1 refused" in done.outcome.message
    lines = audit_lines(mem_settings)
    assert {x["target"] for x in lines} == {*waiting_ids, done_id}
    assert all(x["action"] == "revoke" for x in lines)


async def test_read_only_refuses_R_at_once_and_audits_it(mem_settings, mem_app, events):
    app, _ = make_console(mem_settings, mem_app, read_only=True)
    async with app.run_test(size=(100, 30)) as pilot:
        [failed] = await _tasks(pilot, app, events, "failure")
        pane = app.query_one("#tasks", TasksPane)
        pane.focus()
        assert pane.select(failed)
        await pilot.press("R")
        await settle(pilot, app, lambda: bool(audit_lines(mem_settings)))
        assert not isinstance(app.screen, ConfirmScreen)
    [line] = audit_lines(mem_settings)
    assert line["action"] == "retry" and line["outcome"] == "refused: read-only mode"
    assert waiting(mem_app, "reports") == 0
