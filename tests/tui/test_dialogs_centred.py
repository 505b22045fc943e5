# ruff: noqa: F401, F811 - jobs_console is a fixture imported from test_queue_jobs_screen
"""Dialogs (confirms, forms) are centred on the terminal whichever screen opened them
(operator review: one opened from a modal screen sat at the top left).  Each dialog's box is
measured where the terminal draws it: its centre within a cell or two of the screen's."""

from __future__ import annotations

import pytest

from tests.tui.test_queue_jobs_screen import envelope, jobs_console, list_key, open_jobs
from tests.tui.test_worker_detail_screen import PLAIN_HOST, hostile_detail, open_detail
from tui.sources.queue_lengths import QueueLength, QueueSnapshot
from tui.ui.screens.forms import ConfirmScreen, DialogScreen, TypedConfirmScreen
from tui.ui.screens.worker_detail import LimitsFormScreen

SIZES = [(120, 36), (80, 24)]


def assert_centred(app, kind: type[DialogScreen]) -> None:
    dialog = app.screen
    assert isinstance(dialog, kind), dialog
    box = dialog.query_one(".form").region
    screen = dialog.region
    assert box.width < screen.width and box.height < screen.height, (box, screen)
    dx = (box.x + box.width / 2) - (screen.x + screen.width / 2)
    dy = (box.y + box.height / 2) - (screen.y + screen.height / 2)
    assert abs(dx) <= 2 and abs(dy) <= 2, f"{kind.__name__} box {box} on {screen}"


@pytest.mark.parametrize("size", SIZES)
async def test_a_confirm_from_the_queues_jobs_screen_is_centred(jobs_console, redis_client, size):
    redis_client.lpush(list_key(7), envelope(priority=7))
    async with jobs_console.run_test(size=size) as pilot:
        jobs = await open_jobs(pilot, jobs_console)
        await pilot.press("d")
        await pilot.pause()
        assert_centred(jobs_console, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert jobs_console.screen is jobs


@pytest.mark.parametrize("size", SIZES)
async def test_a_form_from_the_worker_detail_is_centred(console, sources, events, size):
    sources.feed([events.worker_online(PLAIN_HOST)])
    sources.details[PLAIN_HOST] = hostile_detail(PLAIN_HOST, raw=False)
    async with console.run_test(size=size) as pilot:
        await open_detail(pilot, console, PLAIN_HOST)
        await pilot.press("L")
        await pilot.pause()
        assert_centred(console, LimitsFormScreen)


@pytest.mark.parametrize("size", SIZES)
async def test_a_confirm_from_the_console_is_centred(console, sources, size):
    sources.queue_poll = QueueSnapshot.of([QueueLength("email", 3, {5: 3})])
    async with console.run_test(size=size) as pilot:
        console.console_screen.poll_queues()
        await pilot.pause(0.2)
        await pilot.press("1", "x")  # purge the highlighted queue: type its name to confirm
        await pilot.pause()
        assert_centred(console, TypedConfirmScreen)
