"""Pilot tests of the console: panes show what the model holds; filter, detail, switching, sizes."""

from __future__ import annotations

import time

from textual.widgets import Input

from tui.sources.events import RECONNECTING, ReceiverStatus
from tui.sources.inspection import InspectionResult
from tui.sources.queue_lengths import QueueLength, QueueSnapshot
from tui.ui.screens.help import HelpScreen
from tui.ui.screens.task_detail import TaskDetailScreen
from tui.ui.widgets.panes import QueuesPane, TasksPane, WorkersPane


def cell_text(table, key: str, column: str) -> str:
    return str(table.get_cell(key, column))


async def test_tasks_pane_shows_model_states_newest_first(console, sources, events):
    async with console.run_test(size=(100, 30)) as pilot:
        sources.feed([events.worker_online()])
        ok_id, ok_evs = events.task("success", priority=9)
        bad_id, bad_evs = events.task("failure", queue="reports", priority=2)
        run_id, run_evs = events.task(
            "started", name="afirgen_tasks.email.send_notification_email", queue="email"
        )
        sources.feed(ok_evs + bad_evs + run_evs)
        console.console_screen.tick()
        await pilot.pause()
        pane = console.query_one("#tasks", TasksPane)
        assert pane.row_count == 3
        # newest first: the last task sent is the top row
        assert pane.order == [run_id, bad_id, ok_id]
        assert "SUCCESS" in cell_text(pane, ok_id, "state") and "✔" in cell_text(
            pane, ok_id, "state"
        )
        assert "FAILURE" in cell_text(pane, bad_id, "state")
        assert "STARTED" in cell_text(pane, run_id, "state")
        assert cell_text(pane, ok_id, "prio") == "9"
        assert cell_text(pane, run_id, "name") == "send_notification_email"
        assert cell_text(pane, bad_id, "queue") == "reports"
        assert cell_text(pane, ok_id, "worker") == "w1"
        assert cell_text(pane, ok_id, "runtime") == "250ms"
        # the running task finishes: its row is updated in place, not re-added
        sources.feed(
            [events._ev("task-succeeded", uuid=run_id, hostname="w1@box", result="{}", runtime=1.5)]
        )
        console.console_screen.tick()
        await pilot.pause()
        assert pane.row_count == 3
        assert "SUCCESS" in cell_text(pane, run_id, "state")
        assert cell_text(pane, run_id, "runtime") == "1.5s"


async def test_cursor_stays_on_the_operators_row_while_rows_stream_in(console, sources, events):
    async with console.run_test(size=(100, 30)) as pilot:
        for _ in range(10):
            sources.feed(events.task("success")[1])
        console.console_screen.tick()
        await pilot.pause()
        pane = console.query_one("#tasks", TasksPane)
        pane.focus()
        await pilot.press("down", "down", "down")
        chosen = pane.cursor_key()
        assert chosen == pane.order[3]
        for _ in range(5):
            sources.feed(events.task("success")[1])
        console.console_screen.tick()
        await pilot.pause()
        assert pane.row_count == 15
        assert pane.cursor_key() == chosen
        assert pane.cursor_row == 8  # five new rows above it
        # Home returns to the top and follows the newest again
        await pilot.press("home")
        sources.feed(events.task("success")[1])
        console.console_screen.tick()
        await pilot.pause()
        assert pane.cursor_row == 0 and pane.cursor_key() == pane.order[0]


async def test_workers_pane_from_events_completed_by_inspect(console, sources, events):
    async with console.run_test(size=(100, 30)) as pilot:
        sources.feed(
            [
                events.worker_online("alpha@host"),
                events.heartbeat("alpha@host", active=1, processed=12),
            ]
        )
        sources.inspection = InspectionResult(
            stats={
                "alpha@host": {
                    "pool": {
                        "implementation": "celery.concurrency.prefork:TaskPool",
                        "max-concurrency": 4,
                        "processes": [11, 12, 13],
                    },
                    "autoscaler": {"max": 4, "min": 2},
                }
            },
            active_queues={"alpha@host": ["default", "email"]},
            taken_at=time.time(),
        )
        console.console_screen.tick()
        console.console_screen.inspect_workers()
        await console.workers.wait_for_complete()
        await pilot.pause()
        pane = console.query_one("#workers", WorkersPane)
        assert pane.has_key("alpha@host")
        assert "online" in cell_text(pane, "alpha@host", "state")
        assert cell_text(pane, "alpha@host", "pool") == "prefork"
        # the processes now and the autoscaler's bounds, min–max
        assert cell_text(pane, "alpha@host", "conc") == "3 (auto 2–4)"
        assert cell_text(pane, "alpha@host", "active") == "1"
        # Done counts task-succeeded events, not the heartbeat's "processed" (accepted tasks)
        assert cell_text(pane, "alpha@host", "done") == "0"
        assert cell_text(pane, "alpha@host", "queues") == "default,email"
        # the queues pane counts it as a consumer of default and email
        queues = console.query_one("#queues", QueuesPane)
        assert cell_text(queues, "default", "consumers") == "1"
        assert cell_text(queues, "reports", "consumers") == "0"


async def test_worker_goes_offline_after_missed_heartbeats(
    console, sources, events, screen_settings
):
    async with console.run_test(size=(100, 30)) as pilot:
        online = events.worker_online("beta@host")
        online["local_received"] = time.time() - screen_settings.console_heartbeat_timeout - 5
        sources.feed([online])
        console.console_screen.tick()
        await pilot.pause()
        assert "offline" in cell_text(
            console.query_one("#workers", WorkersPane), "beta@host", "state"
        )


async def test_queues_pane_shows_bands_reserved_and_unknown_queues(console, sources):
    async with console.run_test(size=(100, 30)) as pilot:
        sources.queue_poll = QueueSnapshot.of(
            [
                QueueLength("email", 45, {10: 40, 5: 3, 1: 2}, 2),
                QueueLength("default", 0, {}, 0),
                QueueLength("legacy", 7, {5: 7}, 0),
            ],
            taken_at=time.time(),
        )
        console.console_screen.poll_queues()
        await console.workers.wait_for_complete()
        await pilot.pause()
        pane = console.query_one("#queues", QueuesPane)
        assert cell_text(pane, "email", "waiting") == "45"
        assert cell_text(pane, "email", "urgent") == "40"
        assert cell_text(pane, "email", "normal") == "3"
        assert cell_text(pane, "email", "low") == "2"
        assert cell_text(pane, "email", "reserved") == "2"
        # a queue only the broker knows of is listed too, after the configured five
        assert pane.has_key("legacy")
        keys = pane.ordered_keys
        assert (
            keys[:5] == ["default", "email", "reports", "analytics", "cleanup"]
            and keys[5] == "legacy"
        )
        # never polled yet: the configured queue shows unknown, not zero
        assert cell_text(pane, "reports", "waiting") == "-"


async def test_filter_by_text_and_escape_clears(console, sources, events):
    async with console.run_test(size=(100, 30)) as pilot:
        ok_id, ok_evs = events.task("success")
        bad_id, bad_evs = events.task("failure")
        mail_id, mail_evs = events.task(
            "success",
            name="afirgen_tasks.email.send_notification_email",
            queue="email",
            host="mailer@box",
        )
        sources.feed(ok_evs + bad_evs + mail_evs)
        console.console_screen.tick()
        await pilot.pause()
        pane = console.query_one("#tasks", TasksPane)
        await pilot.press("slash")
        assert isinstance(console.focused, Input)
        await pilot.press(*"state:fail")
        await pilot.pause()
        assert pane.row_keys == {bad_id}
        # new tasks that do not match stay out; matching ones come in
        new_bad, evs = events.task("failure")
        sources.feed(evs + events.task("success")[1])
        console.console_screen.tick()
        await pilot.pause()
        assert pane.row_keys == {bad_id, new_bad}
        await pilot.press("escape")
        await pilot.pause()
        assert pane.row_count == 5
        assert not console.query_one("#filter", Input).display
        # other filter forms: worker, uuid prefix, bare word
        for query, expected in (
            ("worker:mailer", {mail_id}),
            (ok_id[:6], {ok_id}),
            ("email", {mail_id}),
        ):
            console.console_screen.set_filter(query)
            await pilot.pause()
            assert pane.row_keys == expected, query


async def test_enter_opens_detail_with_traceback_and_backend_fill(console, sources, events):
    async with console.run_test(size=(100, 30)) as pilot:
        bad_id, bad_evs = events.task("failure", args="[99999]")
        sources.feed(bad_evs)
        sources.results[bad_id] = {
            "status": "FAILURE",
            "date_done": "2026-11-24T07:00:00",
            "retries": 0,
        }
        console.console_screen.tick()
        await pilot.pause()
        console.query_one("#tasks", TasksPane).focus()
        await pilot.press("enter")
        await pilot.pause()
        screen = console.screen
        assert isinstance(screen, TaskDetailScreen)
        await screen.workers.wait_for_complete()
        await pilot.pause()
        text = screen.render_text().plain
        assert bad_id in text
        assert "[99999]" in text
        assert "PermanentTaskError: FIR 99999 does not exist" in text  # the traceback
        assert "backend: FAILURE" in text and "2026-11-24T07:00:00" in text
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(console.screen, TaskDetailScreen)


async def test_detail_redacts_personal_data(console, sources, events):
    async with console.run_test(size=(100, 30)) as pilot:
        uid, evs = events.task(
            "success",
            name="afirgen_tasks.email.send_fir_confirmation_email",
            args="[12, 'ravi.kumar@example.in']",
            kwargs="{'phone': '+91 98765 43210'}",
        )
        sources.feed(evs)
        console.console_screen.tick()
        await pilot.pause()
        console.console_screen.action_open_detail(uid)
        await pilot.pause()
        text = console.screen.render_text().plain
        assert "ravi.kumar@example.in" not in text and "98765" not in text
        assert "[12, '***']" in text


async def test_pane_switching_with_tab_and_numbers(console):
    async with console.run_test(size=(100, 30)) as pilot:
        assert console.focused.id == "tasks"
        await pilot.press("tab")
        assert console.focused.id == "queues"
        await pilot.press("tab")
        assert console.focused.id == "workers"
        await pilot.press("shift+tab")
        assert console.focused.id == "queues"
        await pilot.press("3")
        assert console.focused.id == "tasks"
        await pilot.press("2")
        assert console.focused.id == "workers"
        await pilot.press("z")
        assert console.screen.maximized is console.query_one("#workers")
        await pilot.press("z")
        assert console.screen.maximized is None


async def test_help_lists_every_binding_and_palette_has_actions(console):
    async with console.run_test(size=(100, 30)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(console.screen, HelpScreen)
        keys = [k for k, _ in console.screen.rows]
        for key in ("Tab / Shift+Tab", "Enter", "/", "Esc", "?", "q", "z"):
            assert key in keys
        await pilot.press("escape")
        titles = [c.title for c in console.get_system_commands(console.screen)]
        assert any("Filter" in t for t in titles) and any("Zoom" in t for t in titles)


def _key_columns_fit(table, n_key: int) -> bool:
    used = sum(col.get_render_width(table) for col in table.ordered_columns[:n_key])
    return used <= table.scrollable_content_region.width


async def test_80x24_shows_the_key_columns_unclipped(console, sources, events):
    async with console.run_test(size=(80, 24)) as pilot:
        sources.feed([events.worker_online()] + events.task("success")[1])
        console.console_screen.tick()
        await pilot.pause()
        tasks = console.query_one("#tasks", TasksPane)
        queues = console.query_one("#queues", QueuesPane)
        workers = console.query_one("#workers", WorkersPane)
        assert console.screen.has_class("-compact")
        # state, task, queue, priority, worker, runtime
        assert _key_columns_fit(tasks, 6)
        # queue, waiting, three bands, reserved, consumers
        assert _key_columns_fit(queues, 7)
        # worker, state, pool, concurrency, active
        assert _key_columns_fit(workers, 5)
        # every queue row and at least a few task rows are on screen
        assert queues.size.height >= 6 and tasks.size.height >= 4


async def test_disconnected_status_countdown_and_stale_panes(console, sources, events):
    async with console.run_test(size=(100, 30)) as pilot:
        sources.feed(events.task("success")[1])
        console.console_screen.tick()
        await pilot.pause()
        sources.set_status(
            ReceiverStatus(
                RECONNECTING,
                time.time(),
                next_attempt_at=time.time() + 4.2,
                error="ConnectionError: Connection refused",
                attempt=2,
            )
        )
        console.console_screen.tick()
        await pilot.pause()
        label, _ = console.console_screen.connection_state()
        assert label.startswith("✘ disconnected, retry in")
        assert "Connection refused" in label  # why, not only that
        assert console.query_one("#tasks", TasksPane).has_class("-stale")
        # last data kept
        assert console.query_one("#tasks", TasksPane).row_count == 1
        status = str(console.query_one("#status").render())
        assert "disconnected" in status
        sources.start()  # connected again
        console.console_screen.tick()
        await pilot.pause()
        assert not console.query_one("#tasks", TasksPane).has_class("-stale")


async def test_status_line_counts_and_masks_password(tmp_path, monkeypatch, events):
    from afirgen_tasks.settings import load_settings
    from tui.sources.cluster import StaticSources
    from tui.ui.app import AfirgenApp

    (tmp_path / "c.toml").write_text("")
    monkeypatch.setenv("AFIRGEN_CONFIG", str(tmp_path / "c.toml"))
    settings = load_settings(
        None,
        celery_broker_url="redis://:hunter2secret@10.0.0.5:6379/0",
        console_audit_log=tmp_path / "a.log",
    )
    src = StaticSources(settings)
    app = AfirgenApp(settings, src, autostart=False)
    src.start()
    async with app.run_test(size=(120, 30)) as pilot:
        src.feed(events.task("success")[1])
        app.console_screen.tick()
        await pilot.pause()
        status = str(app.query_one("#status").render())
        assert "hunter2secret" not in status
        assert "redis://:***@10.0.0.5:6379/0" in status
        assert "4↓ 4✓ 0✗" in status


async def test_malformed_events_are_skipped_clipped_and_counted_on_screen(console, sources, events):
    async with console.run_test(size=(160, 30)) as pilot:
        uid, evs = events.task("success", args="[" + "x" * 3_000_000 + "]")  # MB-sized args
        garbage = [
            "not a dict",
            {"type": "task-sent"},
            {"type": "worker-bogus", "hostname": "h"},
            {"type": "task-succeeded", "uuid": 42, "hostname": "w"},
            {"no": "type"},
            None,
        ]
        sources.feed(evs + garbage)
        console.console_screen.tick()
        await pilot.pause()
        task = console.model.get_task(uid)
        assert task is not None and task.state == "SUCCESS"
        assert len(task.args) < 10_000  # clipped
        status = str(console.query_one("#status").render())
        assert "bad/unknown events skipped" in status and "fields clipped" in status
        assert console.model.events_skipped + console.model.events_unknown >= 5


async def test_tasks_pane_caps_rows_keeping_the_newest(console, sources, events):
    from tui.ui.widgets.panes import TASK_ROW_CAP

    async with console.run_test(size=(100, 30)) as pilot:
        ids = []
        for _ in range(TASK_ROW_CAP + 150):
            uid, evs = events.task("success")
            ids.append(uid)
            sources.feed(evs)
        console.console_screen.tick()
        await pilot.pause()
        pane = console.query_one("#tasks", TasksPane)
        assert pane.row_count == TASK_ROW_CAP
        assert pane.order == list(reversed(ids))[:TASK_ROW_CAP]
        assert pane.ordered_keys[:3] == pane.order[:3]
        # more arrive one tick at a time: the oldest shown rows go, the index stays consistent
        for _ in range(3):
            more = [events.task("success") for _ in range(40)]
            for _, evs in more:
                sources.feed(evs)
            console.console_screen.tick()
            await pilot.pause()
            ids.extend(u for u, _ in more)
        assert pane.row_count == TASK_ROW_CAP
        assert pane.ordered_keys == list(reversed(ids))[:TASK_ROW_CAP]
        assert pane.get_row_index(ids[-1]) == 0


async def test_fixed_width_columns_keep_their_width_and_virtual_size(console, sources, events):
    async with console.run_test(size=(100, 30)) as pilot:
        uid, evs = events.task(
            "success", name="afirgen_tasks." + "x" * 80
        )  # longer than its column
        sources.feed(evs)
        console.console_screen.tick()
        await pilot.pause()
        pane = console.query_one("#tasks", TasksPane)
        widths = [c.get_render_width(pane) for c in pane.ordered_columns]
        # State fits "➤ ◔ RECEIVED"; Task is fitted to the 100-column pane, not measured from the name
        assert [c.width for c in pane.ordered_columns][:2] == [12, 15]
        assert pane.virtual_size.width == sum(widths)
        assert pane.virtual_size.height == pane.row_count + 1  # rows + header
        assert str(pane.get_cell(uid, "name")).startswith("xxxx")


async def test_command_palette_lists_and_runs_actions(console):
    from textual.command import CommandPalette

    async with console.run_test(size=(100, 30)) as pilot:
        for query in ("grow", "revoke", "purge", "export", "zoom", "help"):
            await pilot.press("ctrl+p")
            await pilot.pause(0.3)
            assert isinstance(console.screen, CommandPalette)
            await pilot.press(*query)
            await pilot.pause(0.7)  # the search runs in a worker: let it build the prompts
            assert console._exception is None, console._exception
            assert isinstance(console.screen, CommandPalette), query
            await pilot.press("escape")
            await pilot.pause()
        # running one from the palette works like its key
        await pilot.press("ctrl+p")
        await pilot.press(*"zoom the focused")
        await pilot.pause(0.7)
        await pilot.press("enter")
        await pilot.pause()
        assert console.screen.maximized is not None


async def test_extra_polls_do_not_multiply_the_periodic_timers(console, sources):
    async with console.run_test(size=(100, 30)) as pilot:
        for _ in range(5):  # resyncs and post-action re-reads each trigger a poll
            console.console_screen.inspect_workers()
            console.console_screen.poll_queues()
            await pilot.pause(0.2)  # (exclusive polls cancel each other: no wait_for_complete)
        pending = [t for t in console.console_screen._poll_timers.values() if t._active.is_set()]
        assert sorted(console.console_screen._poll_timers) == ["inspect", "queue-poll"]
        assert len(pending) == 2


async def test_no_color_terminals_still_tell_states_apart(screen_settings, events, monkeypatch):
    """With NO_COLOR the states keep their symbols and words (colour is never the only signal)."""
    from tui.sources.cluster import StaticSources
    from tui.ui.app import AfirgenApp

    monkeypatch.setenv("NO_COLOR", "1")
    src = StaticSources(screen_settings)
    app = AfirgenApp(screen_settings, src, autostart=False)
    src.start()
    assert app.no_color
    async with app.run_test(size=(100, 30)) as pilot:
        ids = {}
        for outcome in ("success", "failure", "started", "retry", "revoked"):
            uid, evs = events.task(outcome)
            ids[outcome] = uid
            src.feed(evs)
        app.console_screen.tick()
        await pilot.pause()
        pane = app.query_one("#tasks", TasksPane)
        labels = {o: str(pane.get_cell(u, "state")) for o, u in ids.items()}
        assert labels == {
            "success": "✔ SUCCESS",
            "failure": "✘ FAILURE",
            "started": "▶ STARTED",
            "retry": "↻ RETRY",
            "revoked": "⊘ REVOKED",
        }
        assert len({label.split()[0] for label in labels.values()}) == 5  # distinct symbols


async def test_tab_moves_between_a_dialogs_fields(console):
    """Tab switches panes on the main screen; in a dialog it must reach every field."""
    from tui.ui.screens.forms import NumberFormScreen

    async with console.run_test(size=(100, 30)) as pilot:
        form = NumberFormScreen(
            "Autoscale",
            [("max", "Max", "8"), ("min", "Min", "2")],
            "w1@box",
            check=lambda values: None,
        )
        console.push_screen(form)
        await pilot.pause()
        assert console.focused.id == "max"
        await pilot.press("tab")
        assert console.focused.id == "min"
        await pilot.press("9")
        assert form.query_one("#min").value.endswith("9") and form.query_one("#max").value == "8"
        await pilot.press("tab")
        assert console.focused.id == "all"
        await pilot.press("shift+tab")
        assert console.focused.id == "min"
        await pilot.press("escape")
        await pilot.pause()
        assert console.screen is console.screen_stack[0]
        await pilot.press("tab")
        assert console.focused.id == "queues"  # back on the main screen: panes again


async def test_compact_layout_follows_each_resize_at_once(console):
    async with console.run_test(size=(100, 30)) as pilot:
        assert not console.screen.has_class("-compact")
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert console.screen.has_class("-compact")
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        assert not console.screen.has_class("-compact")


async def test_filter_mistakes_are_shown_not_silently_empty(console, sources, events):
    async with console.run_test(size=(120, 30)) as pilot:
        sources.feed([events.worker_online()] + events.task("success")[1])
        console.console_screen.tick()
        await pilot.press("slash")
        for ch in "prio:>=abc":
            await pilot.press(ch)
        await pilot.pause()
        status = str(console.query_one("#status").render())
        assert "filter: prio:>=abc" in status and "bad priority" in status


async def test_ctrl_c_says_how_to_quit_in_plain_words(console):
    async with console.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+c")
        await pilot.pause()
        messages = [n.message for n in console._notifications]
        assert any("Press q to quit" in m for m in messages), messages
        assert not any("[b]" in m for m in messages)


async def test_zoom_enlarges_the_queues_and_workers_panes_too(console):
    async with console.run_test(size=(100, 30)) as pilot:
        for key, pane_id in (("1", "queues"), ("2", "workers"), ("3", "tasks")):
            await pilot.press(key)
            normal = console.query_one(f"#{pane_id}").outer_size.height
            await pilot.press("z")
            await pilot.pause()
            zoomed = console.query_one(f"#{pane_id}").outer_size.height
            assert zoomed >= 25 > normal or pane_id == "tasks" and zoomed >= 25, (
                pane_id,
                normal,
                zoomed,
            )
            await pilot.press("z")
            await pilot.pause()


async def test_a_pane_key_pressed_on_another_pane_says_where_it_works(console):
    async with console.run_test(size=(100, 30)) as pilot:
        await pilot.press("3")  # Tasks focused: p (pause a queue) and + (grow a pool) do not apply
        await pilot.press("p", "plus")
        await pilot.pause()
        messages = [n.message for n in console._notifications]
        assert any("p works on the Queues pane: press 1" in m for m in messages), messages
        assert any("+ works on the Workers pane: press 2" in m for m in messages), messages


async def test_typing_in_the_filter_box_is_not_taken_for_pane_keys(console):
    async with console.run_test(size=(100, 30)) as pilot:
        await pilot.press("slash", "p", "x", "plus")
        await pilot.pause()
        assert console.query_one("#filter").value == "px+"
        assert not [n for n in console._notifications if "works on the" in n.message]


async def test_conc_reads_as_processes_and_autoscale_is_not_offered_without_an_autoscaler(
    console, sources, events
):
    async with console.run_test(size=(100, 30)) as pilot:
        sources.feed([events.worker_online("beta@host")])
        # grown by hand from 2 to 3: Celery still reports max-concurrency 2
        sources.inspection = InspectionResult(
            stats={
                "beta@host": {
                    "pool": {
                        "implementation": "celery.concurrency.prefork:TaskPool",
                        "max-concurrency": 2,
                        "processes": [1, 2, 3],
                    }
                }
            },
            active_queues={"beta@host": ["default"]},
            taken_at=time.time(),
        )
        console.console_screen.tick()
        console.console_screen.inspect_workers()
        await console.workers.wait_for_complete()
        await pilot.pause()
        pane = console.query_one("#workers", WorkersPane)
        assert cell_text(pane, "beta@host", "conc") == "3 +1"
        await pilot.press("2")
        pane.move_cursor(row=0)
        await pilot.press("a")
        await pilot.pause()
        assert console.screen is console.screen_stack[0]  # no form: it could only be refused
        assert any("without an autoscaler" in n.message for n in console._notifications)


async def test_detail_says_a_failed_task_was_terminated_first(console, sources, events):
    """Terminate an e-mail job: smtplib turns the SIGTERM into an SMTP error, which outranks REVOKED."""
    async with console.run_test(size=(100, 30)) as pilot:
        uuid, evs = events.task(
            "started", name="afirgen_tasks.email.send_notification_email", queue="email"
        )
        evs.append(
            events._ev(
                "task-revoked",
                uuid=uuid,
                hostname="w1@box",
                terminated=True,
                signum=15,
                expired=False,
            )
        )
        evs.append(
            events._ev(
                "task-failed",
                uuid=uuid,
                hostname="w1@box",
                exception="SMTPResponseException(250, b'2.0.0 queued')",
                traceback="Traceback ...",
            )
        )
        sources.feed(evs)
        console.console_screen.tick()
        await pilot.pause()
        console.query_one("#tasks", TasksPane).focus()
        await pilot.press("enter")
        await pilot.pause()
        text = console.screen.render_text().plain
        assert "FAILURE" in text
        assert "terminated (signal 15)" in text and "then FAILURE" in text


async def test_rows_added_in_one_step_behave_like_add_row(console):
    """KeyedTable.add_many replaces DataTable.add_row for the Tasks pane's new rows."""
    async with console.run_test(size=(100, 30)) as pilot:
        tasks = console.query_one("#tasks", TasksPane)
        width = len(tasks.columns)
        tasks.add_many([("k1", ["a"] * width), ("k2", ["b"] * width), ("k1", ["dup"] * width)])
        tasks.add_many([])
        await pilot.pause()
        assert tasks.row_count == 2 and tasks.row_keys == {"k1", "k2"}
        assert str(tasks.get_cell("k1", "state")) == "a" and tasks.get_row_index("k2") == 1
        assert tasks.cursor_key() == "k1"  # the first row appeared under the cursor
        tasks.upsert("k2", ["c"] * width)
        assert str(tasks.get_cell("k2", "queue")) == "c"
        tasks.drop_many(["k1"])
        await pilot.pause()
        assert tasks.row_count == 1 and tasks.get_row_index("k2") == 0


async def test_queues_pane_on_rabbitmq_bands_and_reserved_unknown_not_zero(console, sources):
    """RabbitMQ: waiting and consumers are the broker's, bands and reserved are ``-``."""
    async with console.run_test(size=(100, 30)) as pilot:
        notice = "reserved counts need the RabbitMQ management API (not reachable at http://h:15672: refused)"
        sources.queue_poll = QueueSnapshot.of(
            [
                QueueLength("email", 12, {}, None, bands_known=False, consumers=2),
                QueueLength("reports", 0, {}, None, bands_known=False, consumers=0, declared=False),
            ],
            taken_at=time.time(),
            notice=notice,
        )
        for _ in range(3):
            console.console_screen.poll_queues()
            await console.workers.wait_for_complete()
            await pilot.pause()
        pane = console.query_one("#queues", QueuesPane)
        assert cell_text(pane, "email", "waiting") == "12"
        assert [cell_text(pane, "email", c) for c in ("urgent", "normal", "low")] == ["-"] * 3
        assert cell_text(pane, "email", "reserved") == "-"
        assert cell_text(pane, "email", "consumers") == "2"  # the broker's count, no worker known
        assert cell_text(pane, "reports", "waiting") == "-"
        assert cell_text(pane, "reports", "trend") == "undeclared"
        assert "P-bands -" in str(pane.border_subtitle) and "Rsv -" in str(pane.border_subtitle)
        assert [n.message for n in console._notifications].count(notice) == 1


async def test_queue_in_and_out_rates_come_from_the_models_flow(console, sources, events):
    """In/s and Out/s count task-sent into and task-received off each queue over the last
    5 s; the model counts them while applying (issue 17), across a tick's chunks."""
    async with console.run_test(size=(120, 36)) as pilot:
        screen = console.console_screen
        feed: list = []
        for _ in range(4):
            feed += events.task("started", queue="reports")[1]  # 4 in, 4 out
        late_uuid, late = events.task("received", queue="email")
        feed += [late[1], late[0]]  # the worker's event overtook the client's: still out
        feed += events.task("sent", queue="email")[1] * 3  # a task-sent seen 3 times: 3 in
        sources.feed(feed)
        screen.tick()
        await pilot.pause()
        pane = console.query_one("#queues", QueuesPane)
        assert cell_text(pane, "reports", "in") == f"{4 / 5:.1f}"
        assert cell_text(pane, "reports", "out") == f"{4 / 5:.1f}"
        assert cell_text(pane, "email", "in") == f"{4 / 5:.1f}"
        assert cell_text(pane, "email", "out") == f"{1 / 5:.1f}"
        assert cell_text(pane, "analytics", "in") == "0.0"
        # the next tick adds to the window
        sources.feed(events.task("received", queue="reports")[1])
        screen.tick()
        await pilot.pause()
        assert cell_text(pane, "reports", "in") == f"{5 / 5:.1f}"
        assert cell_text(pane, "reports", "out") == f"{5 / 5:.1f}"
        assert console.model.get_task(late_uuid).queue == "email"
