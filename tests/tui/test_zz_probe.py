from textual.widgets import Input, Select
from tests.tui.test_action_keys import mem_settings, mem_app, make_console, settle  # noqa
from tui.ui.screens.forms import EnqueueScreen

async def test_probe(mem_settings, mem_app):
    console, _ = make_console(mem_settings, mem_app)
    async with console.run_test(size=(100, 40)) as pilot:
        await pilot.press("e", "tab", "tab", "tab", "ctrl+u", "1", "1")
        s = console.screen
        print("focused", s.focused, {n: s.query_one(f"#{n}", Input).value for n in ("args","kwargs","queue","priority")})
        await pilot.pause()
        print("after", s.focused, {n: s.query_one(f"#{n}", Input).value for n in ("args","kwargs","queue","priority")})
        await pilot.press("enter")
        await settle(pilot, console, lambda: bool(console.console_screen.runner.action_log))
        print([ (m.outcome.message) for m in console.console_screen.runner.action_log])
