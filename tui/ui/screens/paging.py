"""A modal that shows one window of a long broker list and re-reads it while it is open.

The jobs waiting in a queue (:mod:`tui.ui.screens.queue_jobs`) and the jobs taken but not
acknowledged (:mod:`tui.ui.screens.unacked`) both read a page in a thread worker, show it,
re-read it every few seconds and move the window with PgDn/PgUp.  Subclasses say how to
read, how to draw and how long the list is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.screen import ModalScreen
from textual.timer import Timer

from tui.ui.widgets.keyed_table import KeyedTable

if TYPE_CHECKING:
    from tui.ui.console import ConsoleScreen


class PagedScreen(ModalScreen[None]):
    """One window (``window_offset``, ``page_size``) of a list the broker holds."""

    console: ConsoleScreen
    page_size: int
    #: position of the first row asked for
    window_offset: int
    #: the last page read that could be shown
    page: Any
    #: pages read so far (tests wait on it)
    reads: int
    _timer: Timer | None

    # ---- what a subclass provides ----------------------------------------------------------
    def load(self) -> object:
        """Read the page at :attr:`window_offset` (a thread worker posting a message)."""
        raise NotImplementedError

    def refresh_s(self) -> float:
        """Seconds between re-reads while the screen is open."""
        raise NotImplementedError

    def page_total(self) -> int:
        """How many rows the list has (for the last-page check)."""
        raise NotImplementedError

    def _show_rows(self, page: Any) -> None:
        raise NotImplementedError

    def _show_header(self, page: Any) -> None:
        raise NotImplementedError

    @property
    def table(self) -> KeyedTable:
        raise NotImplementedError

    # ---- shared ----------------------------------------------------------------------------
    def apply_page(self, page: Any) -> None:
        """Show a page that was read, and schedule the next read (one timer at a time)."""
        self.reads += 1
        if page.available:
            self.page = page
            self.window_offset = page.offset
            self._show_rows(page)
        self._show_header(page)
        if self._timer is not None:
            self._timer.stop()
        self._timer = None
        if page.supported and self.console.afirgen.autostart:
            self._timer = self.set_timer(self.refresh_s(), self.load)

    def reload(self) -> None:
        """Read the page again now (after an action changed the list)."""
        self.load()

    def action_page(self, step: int) -> None:
        """Next (``step`` 1) or previous (-1) page."""
        offset = max(0, self.window_offset + step * self.page_size)
        if step > 0 and offset >= self.page_total():
            self.notify("this is the last page", timeout=2)
            return
        if step < 0 and self.window_offset == 0:
            self.notify("this is the first page", timeout=2)
            return
        self.window_offset = offset
        self.table.move_cursor(row=0, animate=False)
        self.table.pinned = False
        self.load()
