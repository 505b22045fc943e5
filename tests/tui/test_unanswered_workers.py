"""A worker that sends events but never answers an inspection (remote control off, wedged,
or a forged heartbeat) is asked less and less often, not twice a second for ever: each
ask is a broadcast to the whole cluster."""

from __future__ import annotations

import time

from tui.sources.inspection import InspectionResult


async def _inspect(console, pilot) -> None:
    console.console_screen.inspect_workers()
    await console.workers.wait_for_complete()
    await pilot.pause()


async def test_a_silent_worker_is_asked_with_backoff_and_an_answer_ends_it(
    console, sources, events
):
    async with console.run_test() as pilot:
        screen = console.console_screen
        sources.feed([events.worker_online("mute@host"), events.heartbeat("mute@host")])
        screen.tick()
        worker = console.model.get_worker("mute@host")
        assert worker.online and worker.pool is None
        now = time.time()
        assert screen._wants_inspection(worker, now)  # new: asked at once
        waits = []
        for _ in range(4):  # no answer each time
            sources.inspection = InspectionResult(taken_at=time.time())
            await _inspect(console, pilot)
            times, due = screen._unanswered["mute@host"]
            waits.append(round(due - time.time()))
            assert not screen._wants_inspection(worker, time.time())
            assert screen._wants_inspection(worker, due + 0.01)
        assert times == 4
        assert waits == [0, 1, 2, 4]  # 0.5 s, 1, 2, 4 ...
        # the next inspection is scheduled for when it is due, not every 0.5 s
        timer = screen._poll_timers["inspect"]
        assert timer._interval >= 3.5
        # an answer: the worker has a pool, the backoff is forgotten
        sources.inspection = InspectionResult(
            stats={"mute@host": {"pool": {"implementation": "prefork", "max-concurrency": 2}}},
            taken_at=time.time(),
        )
        await _inspect(console, pilot)
        assert "mute@host" not in screen._unanswered
        assert console.model.get_worker("mute@host").pool is not None


async def test_the_backoff_is_capped(console, sources, events, monkeypatch):
    from tui.ui import console as console_module

    async with console.run_test() as pilot:
        screen = console.console_screen
        sources.feed([events.worker_online("mute@host"), events.heartbeat("mute@host")])
        screen.tick()
        screen._unanswered["mute@host"] = (5_000, 0.0)  # silent for days: 2**5000 overflows a float
        sources.inspection = InspectionResult(taken_at=time.time())
        await _inspect(console, pilot)
        _times, due = screen._unanswered["mute@host"]
        assert due - time.time() <= console_module.UNANSWERED_MAX_S + 1
        assert screen._poll_timers["inspect"]._interval <= console.settings.console_inspect_interval
