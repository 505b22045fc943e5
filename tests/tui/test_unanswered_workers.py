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


def record_inspect_schedule(screen, monkeypatch) -> list[float]:
    """The delays the console asks for before its next inspection, with no timer set: a
    timer due in 0.5 s fired an inspection of its own between the test's on a loaded
    machine (5 asks counted where the test made 4)."""
    delays: list[float] = []
    real = screen._schedule

    def schedule(name, delay, callback):
        if name == "inspect":
            delays.append(delay)
        else:
            real(name, delay, callback)

    monkeypatch.setattr(screen, "_schedule", schedule)
    return delays


async def test_a_silent_worker_is_asked_with_backoff_and_an_answer_ends_it(
    console, sources, events, monkeypatch
):
    async with console.run_test() as pilot:
        screen = console.console_screen
        delays = record_inspect_schedule(screen, monkeypatch)
        sources.feed([events.worker_online("mute@host"), events.heartbeat("mute@host")])
        screen.tick()
        worker = console.model.get_worker("mute@host")
        assert worker.online and worker.pool is None
        now = time.time()
        assert screen._wants_inspection(worker, now)  # new: asked at once
        for _ in range(4):  # no answer each time
            sources.inspection = InspectionResult(taken_at=time.time())
            await _inspect(console, pilot)
            times, due = screen._unanswered["mute@host"]
            # judged on the due time, not the clock: a loaded machine takes 0.5 s to get here
            assert not screen._wants_inspection(worker, due - 0.01)
            assert screen._wants_inspection(worker, due + 0.01)
        assert times == 4
        # the next inspection is scheduled for when it is due: 0.5 s, 1, 2, 4 ..., not
        # every 0.5 s
        assert [round(d, 3) for d in delays] == [0.5, 1.0, 2.0, 4.0]
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
        delays = record_inspect_schedule(screen, monkeypatch)
        sources.feed([events.worker_online("mute@host"), events.heartbeat("mute@host")])
        screen.tick()
        screen._unanswered["mute@host"] = (5_000, 0.0)  # silent for days: 2**5000 overflows a float
        sources.inspection = InspectionResult(taken_at=time.time())
        await _inspect(console, pilot)
        _times, due = screen._unanswered["mute@host"]
        assert due - time.time() <= console_module.UNANSWERED_MAX_S + 1
        assert delays[-1] <= console.settings.console_inspect_interval
