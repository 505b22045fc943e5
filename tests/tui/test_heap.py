"""The console sets its start-up heap aside from the garbage collector (tui/ui/heap.py)."""

from __future__ import annotations

import gc

from tui.ui.app import AfirgenApp
from tui.ui.heap import GC_THRESHOLDS, settle_heap


def test_settle_heap_freezes_what_start_up_left_and_collects_less_often():
    thresholds = gc.get_threshold()
    try:
        frozen = settle_heap()
        assert frozen > 1_000  # this process's modules at least
        assert gc.get_freeze_count() == frozen
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > thresholds[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


async def test_the_console_settles_its_heap_after_the_first_frame_only_when_asked(
    screen_settings, sources
):
    gc.unfreeze()
    try:
        app = AfirgenApp(screen_settings, sources, autostart=False)
        async with app.run_test() as pilot:
            await pilot.pause()
            assert gc.get_freeze_count() == 0  # the default: a test process runs many apps
        app = AfirgenApp(screen_settings, sources, autostart=False, settle_heap=True)
        async with app.run_test() as pilot:
            await pilot.pause()
            await pilot.pause()
            assert gc.get_freeze_count() > 1_000
    finally:
        gc.unfreeze()
        gc.set_threshold(700, 10, 10)
