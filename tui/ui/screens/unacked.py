"""The jobs workers took and have not acknowledged (``u``): kombu's ``unacked`` hash on Redis.

For each job: its task, id and queue, the worker holding it (the console's events say which
worker received it), when Redis handed it out (the ``unacked_index`` score), when a live
worker's sweep will hand it out again (that + the visibility timeout), and whether that
worker is alive (its heartbeats).  The count of both keys is shown and the jobs a page at a
time, oldest delivery first (PgDn/PgUp); the page is read by a thread worker
(:meth:`tui.sources.cluster.Sources.read_unacked`) and again every few seconds while the
screen is open, rows updated by key.  Every value shown came through
:func:`tui.sources.validate.clean_unacked_entry` and is shown as literal text.

``Q`` requeues the highlighted job through the console's
:class:`tui.ui.action_runner.ActionRunner` (confirm; then the action layer checks that the
worker is offline, audits, and runs one script).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Footer, Static

from tui.core.formatting import age, clip, clock, count, duration
from tui.core.safe_text import data_text, visible
from tui.sources.unacked import UNACKED_PAGE_SIZE, UnackedJob, UnackedPage
from tui.ui.commands import bindings
from tui.ui.screens.paging import PagedScreen
from tui.ui.widgets.keyed_table import KeyedTable

if TYPE_CHECKING:
    from tui.ui.console import ConsoleScreen

#: Seconds between re-reads of the page while the screen is open.
REFRESH_S = 3.0
#: Characters of the task, queue and worker shown in a cell (the rest is cut with "…").
TASK_CLIP, QUEUE_CLIP, WORKER_CLIP = 22, 10, 16


class UnackedPageRead(Message):
    """A page of the unacknowledged jobs was read (or could not be)."""

    def __init__(self, page: UnackedPage):
        super().__init__()
        self.page = page


class UnackedScreen(PagedScreen):
    """Jobs taken but not acknowledged, oldest delivery first, a page at a time."""

    SCOPE = "unacked"
    BINDINGS = [
        *bindings("unacked"),
        Binding("escape,q", "close", "Close"),
    ]

    DEFAULT_CSS = """
    UnackedScreen { align: center middle; }
    UnackedScreen > Vertical {
        width: 98%; height: 94%; border: round $accent; background: $surface; padding: 0 1;
    }
    UnackedScreen #unacked-header { height: auto; }
    UnackedScreen #unacked { height: 1fr; }
    """

    def __init__(self, console: ConsoleScreen, page_size: int = UNACKED_PAGE_SIZE) -> None:
        super().__init__()
        self.console = console
        self.page_size = page_size
        #: position (by delivery time) of the first job asked for
        self.window_offset = 0
        self.page: UnackedPage | None = None
        #: row key (delivery tag) -> job, for the page on screen
        self.rows: dict[str, UnackedJob] = {}
        self._timer: Timer | None = None
        self.reads = 0

    # ---- layout ----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Taken, not acknowledged (Redis unacked)"
            box.border_subtitle = "Q requeue (worker offline) · PgDn/PgUp page · Esc close"
            yield Static(Text("reading…", style="dim"), id="unacked-header")
            yield KeyedTable(id="unacked")
        yield Footer()  # this screen's keys, not the console's underneath

    def on_mount(self) -> None:
        table = self.table
        table.add_column("#", width=4, key="pos")
        table.add_column("Task", width=TASK_CLIP, key="task")
        table.add_column("ID", width=8, key="id")
        table.add_column("Queue", width=QUEUE_CLIP, key="queue")
        table.add_column("Worker", width=WORKER_CLIP, key="worker")
        table.add_column("Alive", width=5, key="alive")
        table.add_column("Delivered", width=14, key="delivered")
        table.add_column("Redelivery", width=17, key="redeliver")
        table.focus()
        self.load()

    @property
    def table(self) -> KeyedTable:
        """The jobs table."""
        return self.query_one("#unacked", KeyedTable)

    # ---- reading (thread worker) -----------------------------------------------------------
    @work(thread=True, exclusive=True, group="unacked")
    def load(self) -> None:
        """Read the page at :attr:`window_offset` (in a thread worker); it comes back as a
        message."""
        # runs in a worker thread: the broker may be slow or down
        try:
            page = self.console.sources.read_unacked(self.window_offset, self.page_size)
        except Exception as exc:  # a source that raises anyway: words, never a crash
            page = UnackedPage(
                self.window_offset,
                self.page_size,
                available=False,
                error=self.console.redact(f"{type(exc).__name__}: {exc}")[:200],
            )
        self.post_message(UnackedPageRead(page))

    def on_unacked_page_read(self, message: UnackedPageRead) -> None:
        self.apply_page(message.page)

    def refresh_s(self) -> float:
        return REFRESH_S

    def page_total(self) -> int:
        return self.page.indexed if self.page is not None else 0

    # ---- drawing ---------------------------------------------------------------------------
    def _show_header(self, page: UnackedPage) -> None:
        out = Text()
        if not page.available and not page.supported:
            out.append(visible(page.error), style="bold yellow")
            self.query_one("#unacked-header", Static).update(out)
            return
        shown = self.page or page
        out.append(f"{count(shown.total)} taken, not acknowledged", style="bold")
        if shown.indexed:
            first = shown.offset + 1
            last = min(shown.indexed, shown.offset + max(shown.read, 1))
            out.append(f" · jobs {count(first)}–{count(last)} by delivery time (oldest first)")
        out.append(
            f"\nRedis hands a job out again {duration(shown.visibility_timeout)} after it was "
            "delivered (visibility timeout), when a live worker sweeps"
        )
        orphans = shown.total - shown.indexed
        if orphans > 0:
            out.append(
                f"\n{count(orphans)} in unacked without a delivery time: never swept back",
                style="bold yellow",
            )
        if shown.skipped:
            out.append(
                f"\n{count(shown.skipped)} entr(ies) in this window could not be read and are "
                f"not shown (last: {visible(shown.tally.last)})",
                style="bold yellow",
            )
        if not page.available:
            out.append(
                f"\n✘ could not read unacked ({visible(page.error)}): showing the last page",
                style="bold red",
            )
        self.query_one("#unacked-header", Static).update(out)

    def _show_rows(self, page: UnackedPage) -> None:
        table = self.table
        now = time.time()
        rows: dict[str, UnackedJob] = {}
        order: list[str] = []
        for position, job in enumerate(page.jobs, start=page.offset):
            rows[job.tag] = job
            order.append(job.tag)
            table.upsert(job.tag, self._cells(job, position, now))
        table.drop_many([k for k in table.row_keys if k not in rows])
        table.set_order(order)
        self.rows = rows

    def holder(self, job: UnackedJob) -> tuple[str | None, bool | None]:
        """``(the worker holding job, whether it is alive)`` from the console's events;
        ``(None, None)`` when no event named the worker."""
        record = self.console.model.get_task(job.id)
        host = record.hostname if record is not None else None
        if not host:
            return None, None
        worker = self.console.model.get_worker(host)
        return host, worker is not None and worker.online

    def _cells(self, job: UnackedJob, position: int, now: float) -> list[Text]:
        host, alive = self.holder(job)
        if alive is None:
            live = Text("?", style="dim")
        elif alive:
            live = Text("yes", style="green")
        else:
            live = Text("no", style="bold red")
        if job.redeliver_at > now:
            back = f"{clock(job.redeliver_at)} in {duration(job.redeliver_at - now, 5)}"
        else:
            back = "due (next sweep)"
        return [
            Text(count(position + 1), justify="right"),
            data_text(clip(job.short_name, TASK_CLIP)),
            data_text(job.id[:8], style="dim"),
            data_text(clip(job.queue or f"{job.routing_key}?", QUEUE_CLIP)),
            data_text(clip(host or "unknown", WORKER_CLIP), style="" if host else "dim"),
            live,
            Text(f"{clock(job.delivered_at)} {age(job.delivered_at, now, 5)}"),
            Text(back, style="" if job.redeliver_at > now else "bold yellow"),
        ]

    # ---- keys ------------------------------------------------------------------------------
    def highlighted(self) -> UnackedJob | None:
        """The job under the cursor, or None."""
        key = self.table.cursor_key()
        return self.rows.get(key) if key is not None else None

    def action_requeue_unacked(self) -> None:
        """Requeue the highlighted job now (only if its worker is offline), after a confirm."""
        job = self.highlighted()
        if job is None:
            self.notify("no unacknowledged job highlighted", severity="warning")
            return
        self.console.runner.requeue_unacked(job)

    def action_close(self) -> None:
        self.dismiss(None)
