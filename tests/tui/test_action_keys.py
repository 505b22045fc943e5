"""Pilot tests for every action binding: forms, validation (nothing sent), confirmations, cancels.

The Celery app here is real but on kombu's in-memory transport: what the console sends is
really published (we count messages), and control commands get no replies (no workers).
"""

from __future__ import annotations

import os
import stat
import time

import pytest
from textual.widgets import Checkbox, Input, Select, Static

from afirgen_tasks.factory import create_app
from afirgen_tasks.routing import QUEUES
from afirgen_tasks.settings import load_settings
from tui.actions import Actions, AuditLog, EnqueueRequest, ReadOnlyRefused
from tui.sources.cluster import StaticSources
from tui.sources.queue_lengths import QueueLength, QueueSnapshot
from tui.ui.app import AfirgenApp
from tui.ui.screens.forms import ConfirmScreen, EnqueueScreen, NumberFormScreen, TypedConfirmScreen
from tui.ui.widgets.panes import TasksPane


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
        console_control_timeout=0.2,
    )


def _purge_all(app) -> None:
    # kombu's memory transport keeps its queues per process: start and end each test empty
    with app.connection_for_write() as conn:
        for queue in QUEUES:
            conn.default_channel.queue_purge(queue)


@pytest.fixture
def mem_app(mem_settings):
    app = create_app(mem_settings, main="pilot")
    _purge_all(app)
    yield app
    _purge_all(app)
    app.close()


def waiting(app, queue: str) -> int:
    with app.connection_for_write() as conn:
        return conn.default_channel._size(queue)


def audit_lines(settings) -> list[dict]:
    return AuditLog(settings.console_audit_log).read()


def make_console(settings, app, read_only=False):
    sources = StaticSources(settings)
    console = AfirgenApp(settings, sources, celery_app=app, autostart=False, read_only=read_only)
    sources.start()
    return console, sources


async def settle(pilot, console, predicate=lambda: True, timeout=5.0):
    """Let thread workers finish and messages be handled until ``predicate()``."""
    deadline = time.monotonic() + timeout
    while True:
        await console.workers.wait_for_complete()
        await pilot.pause()
        if predicate() or time.monotonic() > deadline:
            return


async def open_enqueue(pilot, console, task="afirgen_tasks.cleanup.archive_old_records"):
    await pilot.press("e")
    await pilot.pause()
    screen = console.screen
    assert isinstance(screen, EnqueueScreen)
    screen.query_one("#task", Select).value = task
    await pilot.pause()
    return screen


def fill(screen, **values):
    for name, value in values.items():
        screen.query_one(f"#{name}", Input).value = value


INVALID = [
    ({"args": "[1,"}, "args", "invalid JSON at line 1 column 4"),
    ({"args": '{"days": 3}'}, "args", "must be a JSON array"),
    ({"kwargs": "[1]"}, "kwargs", "must be a JSON object"),
    ({"kwargs": '{"days": 30'}, "kwargs", "invalid JSON"),
    ({"args": "[1, 2, 3]"}, "args", "arguments do not fit archive_old_records"),
    ({"kwargs": '{"weeks": 2}'}, "args", "unexpected keyword argument 'weeks'"),
    ({"priority": "0"}, "priority", "outside 1-10"),
    ({"priority": "11"}, "priority", "outside 1-10"),
    ({"priority": "urgent"}, "priority", "not a whole number"),
    ({"queue": "nope"}, "queue", "does not exist"),
    ({"countdown": "-5"}, "countdown", "must be seconds"),
    ({"countdown": "soon"}, "countdown", "must be seconds"),
    ({"eta": "tomorrow"}, "eta", "not an ISO time"),
    ({"eta": "2001-01-01T00:00"}, "eta", "in the past"),
    ({"countdown": "5", "eta": "2099-01-01T00:00"}, "eta", "not both"),
]


@pytest.mark.parametrize(
    ("values", "field", "message"), INVALID, ids=[f"{i[1]}-{n}" for n, i in enumerate(INVALID)]
)
async def test_enqueue_invalid_input_keeps_form_open_and_sends_nothing(
    mem_settings, mem_app, values, field, message
):
    console, _ = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 40)) as pilot:
        screen = await open_enqueue(pilot, console)
        fill(screen, **values)
        await pilot.press("ctrl+s")
        await settle(pilot, console)
        assert console.screen is screen, "the form must stay open"
        error = screen.query_one(f"#{field}-error", Static)
        assert message in str(error.render()), str(error.render())
        assert error.has_class("-shown")
        if field != "task":
            # editing the field takes its message away (it was about the old text)
            screen.query_one(f"#{field}", Input).value += " "
            await pilot.pause()
            assert not error.has_class("-shown")
    assert waiting(mem_app, "cleanup") == 0
    assert audit_lines(mem_settings) == []
    assert console.console_screen.runner.action_log == []


async def test_enqueue_sends_with_priority_highlights_and_repeats(mem_settings, mem_app):
    console, _ = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 40)) as pilot:
        screen = await open_enqueue(pilot, console)
        # the route pre-fills queue and priority
        assert screen.query_one("#queue", Input).value == "cleanup"
        assert screen.query_one("#priority", Input).value == "1"
        fill(screen, kwargs='{"days": 90}', priority="9")
        await pilot.press("enter")
        await settle(pilot, console, lambda: bool(console.console_screen.runner.action_log))
        assert not isinstance(console.screen, EnqueueScreen)
        done = console.console_screen.runner.action_log[-1]
        assert done.outcome.ok and "priority 9" in done.outcome.message
        task_id = done.outcome.task_id
        pane = console.query_one("#tasks", TasksPane)
        assert pane.highlight_uuid == task_id and pane.cursor_key() == task_id
        assert str(pane.get_cell(task_id, "prio")) == "9"
        assert waiting(mem_app, "cleanup") == 1
        # R (one Shift away from r) is retry now: it asks first, and n sends nothing
        await pilot.press("R")
        await pilot.pause()
        assert isinstance(console.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(pilot, console)
        assert len(console.console_screen.runner.action_log) == 1
        assert waiting(mem_app, "cleanup") == 1
        # the repeat lives in the form: e opens with the last job's values, Enter sends it
        await pilot.press("e")
        await pilot.pause()
        form = console.screen
        assert isinstance(form, EnqueueScreen)
        assert str(form.query_one("#task", Select).value) == (
            "afirgen_tasks.cleanup.archive_old_records"
        )
        assert {
            n: form.query_one(f"#{n}", Input).value for n in ("kwargs", "queue", "priority")
        } == {
            "kwargs": '{"days": 90}',
            "queue": "cleanup",
            "priority": "9",
        }
        assert "the last one sent" in str(form.query_one(".form").border_title)
        await pilot.press("enter")
        await settle(pilot, console, lambda: len(console.console_screen.runner.action_log) == 2)
        assert console.console_screen.runner.action_log[-1].outcome.task_id not in (None, task_id)
        assert waiting(mem_app, "cleanup") == 2
    lines = audit_lines(mem_settings)
    assert [line["action"] for line in lines] == ["enqueue", "enqueue"]
    assert lines[0]["params"]["priority"] == 9 and lines[0]["params"]["kwargs"] == {"days": 90}
    assert stat.S_IMODE(os.stat(mem_settings.console_audit_log).st_mode) == 0o600


async def test_enqueue_cancel_sends_nothing(mem_settings, mem_app):
    console, _ = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 40)) as pilot:
        screen = await open_enqueue(pilot, console)
        assert screen.query_one(".form").border_title == "Enqueue a job"  # nothing sent yet
        fill(screen, kwargs='{"days": 90}')
        await pilot.press("escape")
        await settle(pilot, console)
        assert not isinstance(console.screen, EnqueueScreen)
    assert waiting(mem_app, "cleanup") == 0 and audit_lines(mem_settings) == []


async def _with_tasks(console, pilot, events):
    done_id, done = events.task("success")
    run_id, run = events.task(
        "started", name="afirgen_tasks.email.send_notification_email", queue="email"
    )
    console.sources.feed([events.worker_online("w1@box")] + done + run)
    console.console_screen.tick()
    await pilot.pause()
    await pilot.press("3")
    return done_id, run_id


async def test_revoke_finished_task_says_so_and_sends_nothing(mem_settings, mem_app, events):
    console, _ = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 30)) as pilot:
        done_id, _ = await _with_tasks(console, pilot, events)
        console.query_one("#tasks", TasksPane).select(done_id)
        await pilot.press("r")
        await settle(pilot, console, lambda: bool(console.console_screen.runner.action_log))
        assert not isinstance(console.screen, ConfirmScreen)
        outcome = console.console_screen.runner.action_log[-1].outcome
        assert not outcome.ok and "already finished (SUCCESS)" in outcome.message
    [line] = audit_lines(mem_settings)
    assert (
        line["action"] == "revoke" and line["ok"] is False and "already finished" in line["outcome"]
    )


@pytest.mark.parametrize(
    ("key", "mode", "wording"),
    [("r", "revoke", "Revoke"), ("t", "terminate", "SIGTERM"), ("k", "kill", "SIGKILL")],
)
async def test_revoke_terminate_kill_confirm_and_cancel(
    mem_settings, mem_app, events, key, mode, wording
):
    console, _ = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 30)) as pilot:
        _, run_id = await _with_tasks(console, pilot, events)
        pane = console.query_one("#tasks", TasksPane)
        pane.select(run_id)
        # cancel with n: nothing sent
        await pilot.press(key)
        await pilot.pause()
        assert isinstance(console.screen, ConfirmScreen)
        question = str(console.screen.query_one("#question", Static).render())
        assert run_id in question and wording in question and "send_notification_email" in question
        await pilot.press("n")
        await pilot.pause()
        assert audit_lines(mem_settings) == []
        # confirm with y: "revoke requested" at once, then the outcome in words
        await pilot.press(key)
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert (
            console.model.get_task(run_id).revoke_requested
            or console.console_screen.runner.action_log
        )
        await settle(pilot, console, lambda: bool(console.console_screen.runner.action_log))
        outcome = console.console_screen.runner.action_log[-1].outcome
        # no worker on the in-memory broker: the operator is told nobody acknowledged it
        assert "no worker acknowledged" in outcome.message
        assert "revoke req" not in str(pane.get_cell(run_id, "state"))
    [line] = audit_lines(mem_settings)
    assert line["action"] == mode and line["target"] == run_id


async def test_revoke_requested_shows_on_the_row_at_once(mem_settings, mem_app, events):
    console, _ = make_console(mem_settings, mem_app)
    console.actions.timeout = 3.0  # nobody answers: the request stays pending for 3 s
    async with console.run_test(size=(100, 30)) as pilot:
        _, run_id = await _with_tasks(console, pilot, events)
        pane = console.query_one("#tasks", TasksPane)
        pane.select(run_id)
        await pilot.press("r")
        await pilot.pause()
        console.screen.action_answer(True)
        await pilot.pause()
        # before any reply (workers get control_timeout=0.2 s to answer): the row says so already
        assert "revoke req" in str(pane.get_cell(run_id, "state"))
        await settle(pilot, console, lambda: bool(console.console_screen.runner.action_log))


async def test_pane_specific_keys_elsewhere_explain_instead_of_acting(
    mem_settings, mem_app, events
):
    console, _ = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 30)) as pilot:
        await _with_tasks(console, pilot, events)
        await pilot.press("1")  # queues pane focused
        assert "r" not in {b.key for b in console.focused.BINDINGS}  # not the Queues pane's key
        await pilot.press("r")
        await pilot.pause()
        assert not isinstance(console.screen, ConfirmScreen)
        assert any("Tasks pane" in n.message for n in console._notifications)
    assert audit_lines(mem_settings) == []


async def _with_worker(console, pilot, events):
    console.sources.feed([events.worker_online("w1@box"), events.worker_online("w2@box")])
    console.console_screen.tick()
    await pilot.pause()
    await pilot.press("2")
    console.query_one("#workers").move_cursor(row=0)


@pytest.mark.parametrize(("key", "action"), [("plus", "pool_grow"), ("minus", "pool_shrink")])
async def test_grow_shrink_keys_send_to_the_highlighted_worker(
    mem_settings, mem_app, events, key, action
):
    console, _ = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 30)) as pilot:
        await _with_worker(console, pilot, events)
        await pilot.press(key)
        await settle(pilot, console, lambda: bool(console.console_screen.runner.action_log))
        outcome = console.console_screen.runner.action_log[-1].outcome
        assert not outcome.ok and outcome.replies == {"w1@box": "no reply (worker down or busy?)"}
    [line] = audit_lines(mem_settings)
    assert line["action"] == action and line["target"] == "w1@box" and line["params"]["n"] == 1


async def test_resize_form_validates_and_applies_to_all(mem_settings, mem_app, events):
    console, _ = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 30)) as pilot:
        await _with_worker(console, pilot, events)
        await pilot.press("equals_sign")
        await pilot.pause()
        form = console.screen
        assert isinstance(form, NumberFormScreen)
        form.query_one("#n", Input).value = "0"
        await pilot.press("enter")
        await pilot.pause()
        assert console.screen is form and "between -64 and 64" in str(
            form.query_one("#form-error").render()
        )
        form.query_one("#n", Input).value = "-2"
        form.query_one("#all", Checkbox).value = True
        form.query_one("#n", Input).focus()
        await pilot.press("enter")
        await settle(pilot, console, lambda: bool(console.console_screen.runner.action_log))
    [line] = audit_lines(mem_settings)
    assert line["action"] == "pool_shrink" and line["params"] == {
        "n": 2,
        "workers": ["w1@box", "w2@box"],
    }


def _pool_of(console, host: str, processes: int) -> None:
    """What ``inspect().stats()`` tells the Workers pane about ``host``'s prefork pool."""
    console.model.set_worker_stats(
        host,
        {
            "pool": {
                "implementation": "celery.concurrency.prefork:TaskPool",
                "max-concurrency": processes,
                "processes": list(range(100, 100 + processes)),
            }
        },
    )


async def test_shrink_to_no_pool_process_is_refused_with_the_reason(mem_settings, mem_app, events):
    console, _ = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 30)) as pilot:
        await _with_worker(console, pilot, events)
        _pool_of(console, "w1@box", 1)
        await pilot.press("minus")
        await settle(pilot, console, lambda: bool(console.console_screen.runner.action_log))
        done = console.console_screen.runner.action_log[-1]
        assert done.action == "pool_shrink" and not done.outcome.ok
        assert done.outcome.replies == {}, "nothing may be sent"
        assert done.outcome.message == (
            "pool_shrink refused: would leave w1@box with no pool process (it has 1): "
            "jobs it has reserved could not run; use pause (p) to stop it taking jobs"
        )
        assert any("no pool process" in n.message for n in console._notifications)
    [line] = audit_lines(mem_settings)
    assert (line["action"], line["target"], line["ok"]) == ("pool_shrink", "w1@box", False)
    assert line["params"] == {"n": 1, "workers": ["w1@box"], "current": {"w1@box": 1}}
    assert line["outcome"] == done.outcome.message


async def test_resize_form_refuses_a_shrink_below_one_on_any_worker(mem_settings, mem_app, events):
    console, _ = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 30)) as pilot:
        await _with_worker(console, pilot, events)
        _pool_of(console, "w1@box", 4)
        _pool_of(console, "w2@box", 2)
        await pilot.press("equals_sign")
        await pilot.pause()
        form = console.screen
        form.query_one("#n", Input).value = "-2"
        form.query_one("#all", Checkbox).value = True
        form.query_one("#n", Input).focus()
        await pilot.press("enter")
        await settle(pilot, console, lambda: bool(console.console_screen.runner.action_log))
        outcome = console.console_screen.runner.action_log[-1].outcome
        assert not outcome.ok and outcome.replies == {}
        assert "would leave w2@box with no pool process (it has 2)" in outcome.message
        assert "w1@box" not in outcome.message
    [line] = audit_lines(mem_settings)
    assert line["action"] == "pool_shrink" and line["ok"] is False
    assert line["params"]["current"] == {"w1@box": 4, "w2@box": 2}


def test_pool_resize_refusal_is_in_the_action_layer(mem_settings, mem_app):
    actions = Actions(mem_app, AuditLog(mem_settings.console_audit_log), timeout=0.2)
    refused = actions.pool_resize(["w1@box"], -3, current={"w1@box": 3})
    assert (
        not refused.ok and "would leave w1@box with no pool process (it has 3)" in refused.message
    )
    # shrinking to one process, or with the size unknown, is sent (no worker answers here)
    for current in ({"w1@box": 4}, None, {}):
        sent = actions.pool_resize(["w1@box"], -3, current=current)
        assert sent.replies == {"w1@box": "no reply (worker down or busy?)"}, current
    assert [line["ok"] for line in audit_lines(mem_settings)] == [False, False, False, False]
    assert "no pool process" in audit_lines(mem_settings)[0]["outcome"]


async def test_autoscale_form_rejects_min_above_max_then_sends(mem_settings, mem_app, events):
    console, _ = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 30)) as pilot:
        await _with_worker(console, pilot, events)
        await pilot.press("a")
        await pilot.pause()
        form = console.screen
        form.query_one("#max", Input).value = "2"
        form.query_one("#min", Input).value = "5"
        form.query_one("#max", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert console.screen is form and "min <= max" in str(
            form.query_one("#form-error").render()
        )
        await pilot.press("escape")
        await pilot.pause()
        assert audit_lines(mem_settings) == []
        await pilot.press("a")
        await pilot.pause()
        form = console.screen
        form.query_one("#max", Input).value = "6"
        form.query_one("#min", Input).value = "2"
        form.query_one("#max", Input).focus()
        await pilot.press("enter")
        await settle(pilot, console, lambda: bool(console.console_screen.runner.action_log))
    [line] = audit_lines(mem_settings)
    assert (
        line["action"] == "autoscale" and line["params"]["max"] == 6 and line["params"]["min"] == 2
    )


async def _queues_focused(console, pilot, queue="reports", count=3):
    console.sources.queue_poll = QueueSnapshot.of(
        [QueueLength(queue, count, {5: count}, 0)], taken_at=time.time()
    )
    console.console_screen.poll_queues()
    await settle(pilot, console)
    await pilot.press("1")
    pane = console.query_one("#queues")
    pane.move_cursor(row=pane.get_row_index(queue))
    await pilot.pause()


async def test_pause_key_sends_cancel_consumer(mem_settings, mem_app):
    console, _ = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 30)) as pilot:
        await _queues_focused(console, pilot)
        await pilot.press("p")
        await settle(pilot, console, lambda: bool(console.console_screen.runner.action_log))
        # no worker answered: not marked paused, and the operator is told
        assert "reports" not in console.console_screen.paused_queues
        assert not console.console_screen.runner.action_log[-1].outcome.ok
    [line] = audit_lines(mem_settings)
    assert line["action"] == "pause_queue" and line["target"] == "reports"


async def test_purge_requires_the_typed_name_and_says_how_many(mem_settings, mem_app, events):
    sent = [
        mem_app.send_task("afirgen_tasks.reports.generate_pdf_report", args=[1]).id
        for _ in range(3)
    ]
    assert waiting(mem_app, "reports") == 3
    console, sources = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 30)) as pilot:
        # the console saw them sent, and one more elsewhere that the purge does not touch
        other, other_evs = events.task("sent", queue="email")
        sources.feed(
            [ev for uuid in sent for ev in events.task("sent", uuid=uuid, queue="reports")[1]]
            + other_evs
        )
        console.console_screen.tick()
        await _queues_focused(console, pilot, "reports", 3)
        await pilot.press("x")
        await pilot.pause()
        dialog = console.screen
        assert isinstance(dialog, TypedConfirmScreen)
        assert "3 waiting message(s)" in str(dialog.query_one("#question").render())
        # Esc cancels
        await pilot.press("escape")
        await settle(pilot, console)
        assert waiting(mem_app, "reports") == 3
        # a wrong name keeps the dialog open, deletes nothing
        await pilot.press("x")
        await pilot.pause()
        dialog = console.screen
        await pilot.press(*"report", "enter")
        await pilot.pause()
        assert console.screen is dialog and "not 'reports'" in str(
            dialog.query_one("#typed-error").render()
        )
        assert waiting(mem_app, "reports") == 3
        dialog.query_one("#typed", Input).value = "reports"
        await pilot.press("enter")
        await settle(pilot, console, lambda: bool(console.console_screen.runner.action_log))
        outcome = console.console_screen.runner.action_log[-1].outcome
        assert outcome.ok and outcome.count == 3 and "purged 3" in outcome.message
        # they are gone: the rows say so instead of "SENT" for ever
        tasks = console.query_one("#tasks", TasksPane)
        for uuid in sent:
            assert console.model.get_task(uuid).state == "PURGED"
            assert "PURGED" in str(tasks.get_cell(uuid, "state"))
        assert console.model.get_task(other).state == "SENT"
    assert waiting(mem_app, "reports") == 0
    [line] = audit_lines(mem_settings)
    assert line["action"] == "purge" and line["ok"] is True


async def test_purge_says_both_counts_when_jobs_arrive_after_the_prompt(mem_settings, mem_app):
    for _ in range(3):
        mem_app.send_task("afirgen_tasks.reports.generate_pdf_report", args=[1])
    console, _ = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 30)) as pilot:
        await _queues_focused(console, pilot, "reports", 3)
        await pilot.press("x")
        await pilot.pause()
        dialog = console.screen
        assert "3 waiting message(s)" in str(dialog.query_one("#question").render())
        for _ in range(2):  # jobs keep arriving while the operator types
            mem_app.send_task("afirgen_tasks.reports.generate_pdf_report", args=[2])
        await pilot.press(*"reports", "enter")
        await settle(pilot, console, lambda: bool(console.console_screen.runner.action_log))
        outcome = console.console_screen.runner.action_log[-1].outcome
        assert outcome.ok and outcome.count == 5
        assert (
            outcome.message
            == "purged 5 message(s) from reports (the prompt said 3; 2 more arrived since)"
        )
        assert any(outcome.message in n.message for n in console._notifications)
    assert waiting(mem_app, "reports") == 0
    [line] = audit_lines(mem_settings)
    assert line["params"] == {"expected": 3, "purged": 5} and line["outcome"] == outcome.message


def test_purge_says_so_when_fewer_than_expected_were_left(mem_settings, mem_app):
    mem_app.send_task("afirgen_tasks.reports.generate_pdf_report", args=[1])
    actions = Actions(mem_app, AuditLog(mem_settings.console_audit_log))
    fewer = actions.purge("reports", "reports", 4)
    assert (
        fewer.ok
        and fewer.message
        == "purged 1 message(s) from reports (the prompt said 4; 3 fewer: taken meanwhile)"
    )
    same = actions.purge("reports", "reports", 0)
    assert same.ok and same.message == "purged 0 message(s) from reports"
    unknown = actions.purge("reports", "reports", None)
    assert unknown.message == "purged 0 message(s) from reports"
    assert [line["params"] for line in audit_lines(mem_settings)] == [
        {"expected": 4, "purged": 1},
        {"expected": 0, "purged": 0},
        {"expected": None, "purged": 0},
    ]


async def test_read_only_every_key_explains_and_sends_nothing(mem_settings, mem_app, events):
    console, _ = make_console(mem_settings, mem_app, read_only=True)
    async with console.run_test(size=(100, 30)) as pilot:
        _, run_id = await _with_tasks(console, pilot, events)
        console.query_one("#tasks", TasksPane).select(run_id)
        for key in ("e", "r", "t", "k"):
            await pilot.press(key)
            await pilot.pause()
            assert not isinstance(console.screen, (EnqueueScreen, ConfirmScreen)), key
        await _with_worker(console, pilot, events)
        for key in ("plus", "equals_sign", "a"):
            await pilot.press(key)
            await pilot.pause()
            assert not isinstance(console.screen, NumberFormScreen), key
        await _queues_focused(console, pilot)
        await pilot.press("p")
        await pilot.press("x")
        await settle(pilot, console, lambda: len(console.console_screen.runner.action_log) >= 9)
        assert not isinstance(console.screen, TypedConfirmScreen)
        assert all(
            "read-only" in done.outcome.message for done in console.console_screen.runner.action_log
        )
    assert waiting(mem_app, "cleanup") == waiting(mem_app, "email") == 0
    lines = audit_lines(mem_settings)
    assert len(lines) >= 9 and all(
        line["ok"] is False and "read-only" in line["outcome"] for line in lines
    )


def test_read_only_is_enforced_in_the_action_layer(mem_settings, mem_app):
    from tui.actions import EnqueueRequest

    actions = Actions(mem_app, AuditLog(mem_settings.console_audit_log), read_only=True)
    calls = [
        lambda: actions.enqueue(
            EnqueueRequest("afirgen_tasks.cleanup.archive_old_records", [], {}, "cleanup", 5)
        ),
        lambda: actions.revoke("abc", "STARTED", "kill"),
        lambda: actions.pool_resize(["w1@box"], 1),
        lambda: actions.autoscale(["w1@box"], 4, 1),
        lambda: actions.pause_queue("email"),
        lambda: actions.purge("email", "email", 3),
    ]
    for call in calls:
        with pytest.raises(ReadOnlyRefused):
            call()
    assert waiting(mem_app, "cleanup") == 0
    assert len(audit_lines(mem_settings)) == len(calls)


def test_enqueue_outcome_says_when_a_delayed_job_will_run(mem_settings, mem_app):
    from datetime import UTC, datetime

    from tui.actions import EnqueueRequest

    actions = Actions(mem_app, AuditLog(mem_settings.console_audit_log))
    later = actions.enqueue(
        EnqueueRequest(
            "afirgen_tasks.cleanup.archive_old_records", [], {}, "cleanup", 5, countdown=30
        )
    )
    assert later.ok and later.message.endswith("runs in 30 s"), later.message
    at = datetime(2099, 1, 1, 6, 30, tzinfo=UTC)
    scheduled = actions.enqueue(
        EnqueueRequest("afirgen_tasks.cleanup.archive_old_records", [], {}, "cleanup", 5, eta=at)
    )
    assert scheduled.message.endswith("runs at 2099-01-01T06:30:00+00:00"), scheduled.message
    now = actions.enqueue(
        EnqueueRequest("afirgen_tasks.cleanup.archive_old_records", [], {}, "cleanup", 5)
    )
    assert "runs" not in now.message


# ---- audit first (issue 12, items 6 and 10) ------------------------------------------------
async def test_enqueue_with_a_directory_at_the_audit_path_is_refused_and_sends_nothing(
    mem_settings, mem_app
):
    mem_settings.console_audit_log.mkdir()  # something in the way that root cannot write either
    console, _ = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 40)) as pilot:
        screen = await open_enqueue(pilot, console)
        fill(screen, kwargs='{"days": 90}')
        await pilot.press("enter")
        await settle(pilot, console, lambda: bool(console.console_screen.runner.action_log))
        done = console.console_screen.runner.action_log[-1].outcome
        shown = [str(n.message) for n in console._notifications]
    assert not done.ok
    assert (
        done.message
        == f"enqueue refused: cannot write the audit log {mem_settings.console_audit_log}: Is a directory"
    )
    assert any("cannot write the audit log" in n for n in shown)
    assert waiting(mem_app, "cleanup") == 0


def test_an_audit_log_that_is_a_symlink_is_refused(mem_settings, mem_app, tmp_path):
    target = tmp_path / "elsewhere.log"
    target.write_text("")
    mem_settings.console_audit_log.symlink_to(target)
    actions = Actions(mem_app, AuditLog(mem_settings.console_audit_log), timeout=0.2)
    req = EnqueueRequest(
        "afirgen_tasks.cleanup.archive_old_records", [], {"days": 90}, "cleanup", 1
    )
    out = actions.enqueue(req)
    assert not out.ok and "is a symbolic link" in out.message and "refused" in out.message
    assert target.read_text() == "" and waiting(mem_app, "cleanup") == 0


def test_the_attempt_is_on_disk_before_the_command_is_sent(mem_settings, mem_app, monkeypatch):
    seen_at_send: list[list[dict]] = []
    real_send = mem_app.send_task

    def send_task(*args, **kwargs):
        seen_at_send.append(AuditLog(mem_settings.console_audit_log).read(every_line=True))
        return real_send(*args, **kwargs)

    monkeypatch.setattr(mem_app, "send_task", send_task)
    actions = Actions(mem_app, AuditLog(mem_settings.console_audit_log), timeout=0.2)
    out = actions.enqueue(
        EnqueueRequest("afirgen_tasks.cleanup.archive_old_records", [], {"days": 90}, "cleanup", 1)
    )
    assert out.ok and waiting(mem_app, "cleanup") == 1
    [[attempt]] = seen_at_send
    assert (
        attempt["phase"] == "attempt" and attempt["action"] == "enqueue" and attempt["ok"] is None
    )
    attempt2, outcome = AuditLog(mem_settings.console_audit_log).read(every_line=True)
    assert attempt2 == attempt and outcome["phase"] == "outcome" and outcome["id"] == attempt["id"]
    assert outcome["ok"] is True
    # one record per action for readers; an attempt whose outcome never came stays visible
    assert AuditLog(mem_settings.console_audit_log).read() == [outcome]
    AuditLog(mem_settings.console_audit_log).attempt("purge", "reports", {})
    assert [r["phase"] for r in AuditLog(mem_settings.console_audit_log).read()] == [
        "outcome",
        "attempt",
    ]


def _pause_cluster(console, sources, events):
    """w1 and w2 online; w1 no longer consumes reports, w2 does; the broker holds a pause
    record naming both (paused on both, then w2 given it back by hand)."""
    from tui.core.pauses import PauseRecord
    from tui.sources.inspection import InspectionResult

    sources.feed([events.worker_online("w1@box"), events.worker_online("w2@box")])
    console.console_screen.tick()
    stats = {"pool": {"implementation": "celery.concurrency.prefork:TaskPool", "processes": [1]}}
    sources.inspection = InspectionResult(
        stats={"w1@box": stats, "w2@box": stats},
        active_queues={"w1@box": [{"name": "default"}], "w2@box": [{"name": "reports"}]},
        taken_at=time.time(),
    )
    sources.pauses = {"reports": PauseRecord("reports", ("w1@box", "w2@box"), time.time(), "bob")}


async def test_pause_mark_is_derived_and_p_offers_resume_to_the_recorded_workers(
    mem_settings, mem_app, events
):
    console, sources = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 30)) as pilot:
        await _queues_focused(console, pilot)
        queues = console.query_one("#queues")
        assert str(queues.get_cell("reports", "name")) == "reports"  # no record: no mark
        _pause_cluster(console, sources, events)
        console.console_screen.inspect_workers()
        await settle(pilot, console, lambda: "⏸" in str(queues.get_cell("reports", "name")))
        assert str(queues.get_cell("reports", "name")) == "reports ⏸ 1/2"
        from tui.actions import Outcome

        sent: list[tuple] = []

        def resume_queue(queue, hosts, offline=()):
            sent.append((queue, hosts, offline))
            return Outcome(False, "not sent (test)")

        console.actions.resume_queue = resume_queue
        await pilot.press("p")
        # this console never saw w1 consume reports (paused before it started): confirmed
        await settle(pilot, console, lambda: type(console.screen).__name__ == "ConfirmScreen")
        await pilot.press("y")
        await settle(pilot, console, lambda: bool(sent))
        # resume, not pause; only w1: w2 consumes it already
        assert sent == [("reports", ["w1@box"], [])]

        # the record is gone (resumed elsewhere): the mark goes on the next inspect
        sources.pauses = {}
        console.console_screen.inspect_workers()
        await settle(pilot, console, lambda: "⏸" not in str(queues.get_cell("reports", "name")))
        assert console.console_screen.paused_queues == set()


async def test_a_forged_pause_record_cannot_resume_a_queue_on_a_stranger_with_one_key(
    mem_settings, mem_app, events
):
    """Before: a record written by anyone with the broker URL, naming a worker that never
    consumed the queue, made ``p`` (pressed to pause it) send that worker add_consumer at once."""
    from tui.actions import Outcome
    from tui.core.pauses import PauseRecord

    console, sources = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 30)) as pilot:
        await _queues_focused(console, pilot)
        queues = console.query_one("#queues")
        _pause_cluster(console, sources, events)
        # the forged record: default "paused" on w2, which consumes reports only
        sources.pauses = {"default": PauseRecord("default", ("w2@box",), time.time(), "alice")}
        console.console_screen.inspect_workers()
        await settle(pilot, console, lambda: "⏸" in str(queues.get_cell("default", "name")))
        sent: list[tuple] = []

        def resume_queue(queue, hosts, offline=()):
            sent.append((queue, hosts, offline))
            return Outcome(False, "not sent (test)")

        console.actions.resume_queue = resume_queue
        queues.move_cursor(row=queues.get_row_index("default"))
        await pilot.press("p")
        await settle(pilot, console, lambda: type(console.screen).__name__ == "ConfirmScreen")
        shown = " ".join(str(s.render()) for s in console.screen.query("Static"))
        assert "never saw w2@box consume default" in shown and "alice" in shown
        await pilot.press("n")
        await pilot.pause()
        assert sent == []

        # w1 was seen consuming default: a record naming it is resumed without a question
        sources.pauses = {"default": PauseRecord("default", ("w1@box",), time.time(), "bob")}
        sources.inspection = type(sources.inspection)(
            stats=sources.inspection.stats,
            active_queues={"w1@box": [], "w2@box": [{"name": "reports"}]},
            taken_at=time.time(),
        )
        console.console_screen.inspect_workers()
        await settle(
            pilot,
            console,
            lambda: (
                console.console_screen.pauses.get("default") is not None
                and console.console_screen.pauses["default"].stopped == ("w1@box",)
            ),
        )
        await pilot.press("p")
        await settle(pilot, console, lambda: bool(sent))
        assert sent == [("default", ["w1@box"], [])]


async def test_resume_is_refused_read_only(mem_settings, mem_app, events):
    console, sources = make_console(mem_settings, mem_app, read_only=True)
    async with console.run_test(size=(100, 30)) as pilot:
        await _queues_focused(console, pilot)
        _pause_cluster(console, sources, events)
        console.console_screen.inspect_workers()
        queues = console.query_one("#queues")
        await settle(pilot, console, lambda: "⏸" in str(queues.get_cell("reports", "name")))
        await pilot.press("p")
        await settle(pilot, console, lambda: bool(console.console_screen.runner.action_log))
        done = console.console_screen.runner.action_log[-1]
        assert done.action == "resume_queue" and "read-only" in done.outcome.message
    [line] = audit_lines(mem_settings)
    assert line["action"] == "resume_queue" and line["outcome"] == "refused: read-only mode"


# ---- keyboard hazards (issue 14, item 10) ---------------------------------------------------


async def test_shift_r_repeats_nothing_it_is_retry_now(mem_settings, mem_app):
    from tui.ui.commands import COMMANDS, help_rows

    r_keys = [c for c in COMMANDS if "R" in c.key.split(",")]
    assert all("retry" in c.name for c in r_keys), "R means retry wherever it is bound"
    [retry] = [c for c in r_keys if c.scope == "tasks"]
    assert retry.action == "retry" and retry.mutating
    assert "R" in [keys for keys, _ in help_rows()]
    console, _ = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 40)) as pilot:
        await open_enqueue(pilot, console)
        await pilot.press("enter")
        await settle(pilot, console, lambda: bool(console.console_screen.runner.action_log))
        assert not isinstance(console.screen, EnqueueScreen)
        await pilot.press("R")
        await pilot.pause()
        assert isinstance(console.screen, ConfirmScreen)  # the second R is not a yes
        await pilot.press("R", "escape")
        await settle(pilot, console)
        assert not isinstance(console.screen, ConfirmScreen | EnqueueScreen)
    assert waiting(mem_app, "cleanup") == 1
    assert [line["action"] for line in audit_lines(mem_settings)] == ["enqueue"]


async def test_enter_on_the_checkbox_submits_and_space_ticks_it(mem_settings, mem_app, events):
    console, _ = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 30)) as pilot:
        await _with_worker(console, pilot, events)
        await pilot.press("equals_sign")
        await pilot.pause()
        form = console.screen
        assert isinstance(form, NumberFormScreen)
        form.query_one("#n", Input).value = "2"
        box = form.query_one("#all", Checkbox)
        box.focus()
        await pilot.press("space")
        await pilot.pause()
        assert box.value is True, "Space ticks the checkbox"
        await pilot.press("enter")
        await settle(pilot, console, lambda: bool(console.console_screen.runner.action_log))
        assert console.screen is not form, "Enter on the checkbox submits the form"
        assert box.value is True, "Enter did not toggle it back"
    [line] = audit_lines(mem_settings)
    assert line["action"] == "pool_grow" and line["params"] == {
        "n": 2,
        "workers": ["w1@box", "w2@box"],
    }


async def test_enter_on_the_task_list_sends_the_enqueue_form(mem_settings, mem_app):
    console, _ = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 40)) as pilot:
        form = await open_enqueue(pilot, console)
        form.query_one("#task", Select).focus()
        await pilot.press("enter")
        await settle(pilot, console, lambda: bool(console.console_screen.runner.action_log))
        assert console.screen is not form
    assert waiting(mem_app, "cleanup") == 1


async def test_keys_typed_in_one_burst_with_e_reach_the_form(mem_settings, mem_app):
    """e, the args, Tab to the priority, clear it, 1 0, Enter — all before the form has drawn.

    Seen three times: the job went out at the default priority (the keys typed before the
    form was up were lost, and Ctrl+U ran after the digits it should have come before)."""
    from textual import events as tevents

    console, _ = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 40)) as pilot:
        # the form's first task: analytics.process_analytics_data(start_date, end_date)
        burst = [("e", "e")] + [(c, c) for c in '["a","b"]']
        burst += [("tab", None), ("tab", None), ("tab", None), ("ctrl+u", None)]
        burst += [("1", "1"), ("0", "0"), ("enter", "\r")]
        for key, character in burst:  # posted at once: no pause for the form to mount
            console.post_message(tevents.Key(key, character))
        await settle(pilot, console, lambda: bool(console.console_screen.runner.action_log))
        [done] = console.console_screen.runner.action_log
        assert done.outcome.ok and "at priority 10" in done.outcome.message, done.outcome.message
    [line] = audit_lines(mem_settings)
    assert line["params"]["priority"] == 10 and line["params"]["args"] == ["a", "b"]


async def test_an_emptied_priority_is_an_error_naming_the_default(mem_settings, mem_app):
    console, _ = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 40)) as pilot:
        form = await open_enqueue(pilot, console)
        priority = form.query_one("#priority", Input)
        assert "this task's default: 1" in priority.placeholder  # shown when it is empty
        fill(form, priority="")
        await pilot.press("ctrl+s")
        await settle(pilot, console)
        assert console.screen is form, "not sent at a default the operator did not see"
        error = str(form.query_one("#priority-error", Static).render())
        assert "priority is empty: type 1-10 (this task's default: 1)" in error
        fill(form, priority="", queue="")
        await pilot.press("ctrl+s")
        await settle(pilot, console)
        assert "queue is empty" in str(form.query_one("#queue-error", Static).render())
    assert waiting(mem_app, "cleanup") == 0 and audit_lines(mem_settings) == []


MUTATING_FOOTER = ("Enqueue", "Revoke", "Grow", "Shrink", "Pause", "Purge")


def _footer_keys(console) -> set[str]:
    return {b.binding.description for b in console.screen.active_bindings.values() if b.enabled}


async def test_read_only_hides_mutating_keys_and_refuses_them_at_once(
    mem_settings, mem_app, events
):
    from textual.widgets import Footer

    console, _ = make_console(mem_settings, mem_app, read_only=True)
    async with console.run_test(size=(160, 30)) as pilot:
        _, run_id = await _with_tasks(console, pilot, events)
        console.query_one("#tasks", TasksPane).select(run_id)
        await pilot.pause()
        shown = _footer_keys(console)
        assert "Filter" in shown and not shown & set(MUTATING_FOOTER), shown
        footer_text = " ".join(
            str(w.render()) for w in console.screen.query_one(Footer).query("FooterKey")
        )
        assert "Filter" in footer_text and "Revoke" not in footer_text, footer_text
        await _with_worker(console, pilot, events)  # the Workers pane: + - = a
        assert not _footer_keys(console) & set(MUTATING_FOOTER)
        console.clear_notifications()
        await pilot.press("equals_sign")  # no pause for a thread worker: said at once
        assert not isinstance(console.screen, NumberFormScreen)
        assert [n.message for n in console._notifications] == [
            "read-only: grow or shrink by N, this or all workers is disabled (=)"
        ]
        await pilot.press("a")
        assert not isinstance(console.screen, NumberFormScreen)
        assert "read-only: set autoscale max,min, this or all workers is disabled (a)" in [
            n.message for n in console._notifications
        ]
        await settle(pilot, console, lambda: len(console.console_screen.runner.action_log) == 2)
        # said once (no second toast from the audit), and audited as before
        assert len(console._notifications) == 2
    lines = audit_lines(mem_settings)
    assert [(line["action"], line["target"], line["ok"]) for line in lines] == [
        ("pool_resize", "w1@box", False),
        ("autoscale", "w1@box", False),
    ]


async def test_read_only_palette_omits_and_help_marks_mutating_commands(mem_settings, mem_app):
    from tui.ui.screens.help import HelpScreen

    console, _ = make_console(mem_settings, mem_app, read_only=True)
    async with console.run_test(size=(100, 30)) as pilot:
        titles = [c.title for c in console.get_system_commands(console.screen)]
        assert any("Filter" in t for t in titles)
        for gone in ("Enqueue", "Revoke", "Purge", "Grow every worker"):
            assert not any(t.startswith(gone) for t in titles), (gone, titles)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(console.screen, HelpScreen)
        rows = dict(console.screen.rows)
        assert rows["x"].endswith("(disabled: read-only)")
        assert rows["/"].startswith("filter") and "disabled" not in rows["/"]


async def test_keys_typed_right_after_a_pane_digit_reach_that_pane(mem_settings, mem_app, events):
    """Seen at 3 a.m.: 3, then 1 ↓ p in one burst paused the Tasks-era row, the wrong queue."""
    from textual import events as tevents

    console, sources = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 30)) as pilot:
        sources.feed([events.worker_online("w1@box")])
        console.console_screen.tick()
        await pilot.pause()
        await pilot.press("3")
        for key in ("1", "down"):  # posted at once: no pause for the focus to move
            console.post_message(tevents.Key(key, key if key == "1" else None))
        await settle(pilot, console)
        queues = console.query_one("#queues")
        assert console.focused is queues
        assert queues.cursor_key() == "email"  # the second row: the ↓ reached the Queues pane
