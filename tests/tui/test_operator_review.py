"""What an on-call operator tripped over in the console at 3 a.m. (a review by hand, in tmux):
read-only hidden at 80 columns, ↓ in the history search, a palette title cut inside its
parenthesis, load averages cut to a wrong figure, a traceback over the shell on quit."""

from __future__ import annotations

from tui.ui.app import AfirgenApp


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
