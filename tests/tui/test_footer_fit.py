"""Every key the console's footer offers is on screen, down to 80x24 (? Help and q Quit,
the app's keys, come last and were the ones cut off)."""

from __future__ import annotations

import pytest
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from tui.ui.app import AfirgenApp


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (160, 40)])
async def test_every_footer_key_fits(screen_settings, sources, size):
    width, height = size
    app = AfirgenApp(screen_settings, sources, autostart=False)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        keys = list(app.screen.query(FooterKey))
        shown = {k.description for k in keys}
        assert {"Help", "Quit", "Revoke", "Filter"} <= shown
        for pane in ("#tasks", "#workers", "#queues"):
            app.screen.query_one(pane).focus()
            await pilot.pause()
            await pilot.pause()
            keys = list(app.screen.query(FooterKey))
            regions = sorted((k.region.x, k.region.right, k.description) for k in keys)
            assert all(r[1] <= width and r[1] > r[0] for r in regions), (pane, regions)
            overlaps = [(a, b) for a, b in zip(regions, regions[1:], strict=False) if b[0] < a[1]]
            assert overlaps == [], (pane, overlaps)
        footer = app.screen.query_one(Footer)
        assert footer.compact is (width < 100)
        await pilot.resize_terminal(120, 36)
        await pilot.pause()
        await pilot.pause()
        assert footer.compact is False
        assert "palette" in {k.description for k in app.screen.query(FooterKey)}
