"""What an on-call operator tripped over in the console at 3 a.m. (a review by hand, in tmux):
read-only hidden at 80 columns, ↓ in the history search, a palette title cut inside its
parenthesis, load averages cut to a wrong figure, a traceback over the shell on quit."""

from __future__ import annotations

import socket
import time

from tui.core.safe_text import data_text
from tui.demo.sandbox import SMTPSink
from tui.history import HistoryStore
from tui.sources.cluster import StaticSources
from tui.ui.app import AfirgenApp
from tui.ui.commands import COMMANDS
from tui.ui.screens.history_search import HistorySearchScreen
from tui.ui.widgets.panes import LOAD_WIDTH, load_text


async def test_read_only_shows_on_the_status_line_at_80_columns(screen_settings, sources, events):
    console = AfirgenApp(screen_settings, sources, autostart=False, read_only=True)
    sources.start()
    async with console.run_test(size=(80, 24)) as pilot:
        sources.feed([events.worker_online("demo-a@vm"), events.worker_online("demo-b@vm")])
        console.console_screen.tick()
        await pilot.pause()
        status = console.query_one("#status")
        # what is on screen: the line as rendered in the status widget's width
        shown = status.render_line(0).text
        assert "READ-ONLY" in shown, shown


async def open_history(screen_settings, pilot, console) -> HistorySearchScreen:
    for _ in range(100):
        await pilot.pause(0.05)
        if console.console_screen.history.writer is not None:
            break
    await pilot.press("H")
    await pilot.pause()
    screen = console.screen
    assert isinstance(screen, HistorySearchScreen)
    return screen


def history_console(screen_settings) -> tuple[AfirgenApp, HistoryStore]:
    store = HistoryStore(screen_settings.history_db)
    sources = StaticSources(screen_settings)
    console = AfirgenApp(screen_settings, sources, autostart=False, history=store)
    sources.start()
    return console, store


async def test_down_in_the_history_query_moves_to_the_results(screen_settings):
    console, store = history_console(screen_settings)
    async with console.run_test(size=(120, 36)) as pilot:
        screen = await open_history(screen_settings, pilot, console)
        assert isinstance(screen, HistorySearchScreen)
        assert console.focused is screen.query_one("#history-query")
        await pilot.press("down")
        await pilot.pause()
        assert console.focused is screen.query_one("#history-results")
        await pilot.press("x")  # typed on the results, not into the query
        assert screen.query_one("#history-query").value == ""
    store.close()


async def test_history_results_show_the_longest_task_name_whole(screen_settings):
    console, store = history_console(screen_settings)
    async with console.run_test(size=(120, 36)) as pilot:
        screen = await open_history(screen_settings, pilot, console)
        table = screen.query_one("#history-results")
        task = next(c for c in table.columns.values() if str(c.label) == "Task")
        assert task.width >= len("send_fir_confirmation_email")
        used = sum(c.get_render_width(table) for c in table.columns.values())
        assert used <= table.scrollable_content_region.width, (used, table.size)
    store.close()


def test_palette_titles_never_stop_inside_a_parenthesis():
    for command in COMMANDS:
        title = command.title
        assert title.count("(") == title.count(")"), title
    pause = next(c for c in COMMANDS if c.action.startswith("pause_queue"))
    assert pause.title.startswith("Pause the highlighted queue")
    assert "or resume it" in pause.title, pause.title


def test_load_averages_fit_their_column_without_cutting_a_figure():
    assert load_text([0.5, 0.25, 0.125]) == "0.50 0.25 0.12"
    busy = load_text([12.33, 9.87, 7.05])
    assert len(busy) <= LOAD_WIDTH and busy == "12.3 9.9 7.0", busy
    huge = load_text([123.4, 99.9, 80.0])
    assert len(huge) <= LOAD_WIDTH and huge.split() == ["123", "100", "80"], huge
    assert load_text(None) == "-" and load_text([]) == "-"
    assert str(data_text(load_text([1.0]))) == "1.00"


def test_smtp_sink_is_quiet_when_a_client_hangs_up(capsys):
    sink = SMTPSink(delay=(0.0, 0.0), refuse_rate=0.0).start()
    try:
        try:
            raise BrokenPipeError(32, "Broken pipe")
        except BrokenPipeError:
            sink.handle_error(None, ("127.0.0.1", 1))
        assert capsys.readouterr().err == ""
        try:
            raise ValueError("a real bug")
        except ValueError:
            sink.handle_error(None, ("127.0.0.1", 1))
        assert "ValueError: a real bug" in capsys.readouterr().err  # real errors still show
        # a session that hangs up at once does not disturb the next one
        with socket.create_connection(("127.0.0.1", sink.port), timeout=5):
            pass
        deadline = time.monotonic() + 5
        with socket.create_connection(("127.0.0.1", sink.port), timeout=5) as s:
            banner = s.recv(100)
            while not banner.endswith(b"\r\n") and time.monotonic() < deadline:
                banner += s.recv(100)
        assert banner.startswith(b"220 ")
    finally:
        sink.stop()


async def test_the_palette_does_not_act_on_panes_hidden_under_a_dialog(screen_settings):
    """Operator review: "pause the highlighted queue" from the palette inside H acted on a
    pane the operator could not see."""
    console, store = history_console(screen_settings)
    try:
        async with console.run_test(size=(120, 36)) as pilot:
            await open_history(screen_settings, pilot, console)
            await console._run_command("queues", "pause_queue")
            await pilot.pause()
            assert isinstance(console.screen, HistorySearchScreen)  # nothing opened, nothing sent
            assert any("close this one first" in n.message for n in console._notifications)
            assert console.console_screen.runner.action_log == []
            await console._run_command("worker_detail", "refresh")
            await pilot.pause()
            assert any("Enter on the Workers pane" in n.message for n in console._notifications)
    finally:
        store.close()


async def test_end_moves_to_the_last_row_and_home_back_to_the_first(
    screen_settings, sources, events
):
    """Operator review: End only scrolled sideways, so a following ^ acted on the first job."""
    console = AfirgenApp(screen_settings, sources, autostart=False)
    sources.start()
    async with console.run_test(size=(120, 36)) as pilot:
        feed = []
        for _ in range(5):
            feed += events.task("success")[1]
        sources.feed(feed)
        console.console_screen.tick()
        await pilot.pause()
        tasks = console.query_one("#tasks")
        await pilot.press("3", "end")
        await pilot.pause()
        assert tasks.cursor_row == tasks.row_count - 1 == 4
        await pilot.press("home")
        await pilot.pause()
        assert tasks.cursor_row == 0
