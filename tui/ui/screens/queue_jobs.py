"""The jobs waiting in one queue (Enter on the Queues pane): the count of every priority band
and a page of jobs in run order, the next to run first.

Pages are read by a thread worker (:meth:`tui.sources.cluster.Sources.read_queue_jobs`, one
``LRANGE`` window per list it overlaps) and again every few seconds while the screen is
open; the rows are updated by key, so the cursor stays on its job as the queue moves.  Every
value shown came through :func:`tui.sources.validate.clean_queued_message` and is shown as
literal text; arguments are redacted.  ``d``, ``r`` and ``^`` go through the console's
:class:`tui.ui.action_runner.ActionRunner` (confirm, audit, send, outcome).
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

from tui.core.formatting import age, clip, count, duration
from tui.core.safe_text import data_text, visible
from tui.sources.queue_jobs import PAGE_SIZE, JobsPage, QueuedJob
from tui.ui.commands import bindings
from tui.ui.screens.paging import PagedScreen
from tui.ui.widgets.keyed_table import KeyedTable

if TYPE_CHECKING:
    from tui.ui.console import ConsoleScreen

#: Characters of the task, args and kwargs shown in a cell (the rest is cut with "…").
TASK_CLIP = 27
ARGS_CLIP = 22
KWARGS_CLIP = 18
#: Seconds between re-reads of the page while the screen is open.
REFRESH_S = 2.0


class JobsPageRead(Message):
    """A page of a queue's waiting jobs was read (or could not be)."""

    def __init__(self, page: JobsPage):
        super().__init__()
        self.page = page


class QueueJobsScreen(PagedScreen):
    """A queue's waiting jobs by priority band, a page at a time, next to run first."""

    SCOPE = "queue_jobs"
    BINDINGS = [
        *bindings("queue_jobs"),
        Binding("escape,q", "close", "Close"),
    ]

    DEFAULT_CSS = """
    QueueJobsScreen { align: center middle; }
    QueueJobsScreen > Vertical {
        width: 98%; height: 94%; border: round $accent; background: $surface; padding: 0 1;
    }
    QueueJobsScreen #jobs-header { height: auto; }
    QueueJobsScreen #jobs { height: 1fr; }
    """

    def __init__(self, console: ConsoleScreen, queue: str, page_size: int = PAGE_SIZE) -> None:
        super().__init__()
        self.console = console
        self.queue = queue
        self.page_size = page_size
        #: run position of the first job asked for
        self.window_offset = 0
        self.page: JobsPage | None = None
        #: row key -> job, for the page on screen
        self.rows: dict[str, QueuedJob] = {}
        self._timer: Timer | None = None
        self.reads = 0

    # ---- layout ----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Vertical() as box:
            # a queue name comes from the broker: a Text title is never parsed as markup
            box.border_title = Text("Waiting in ") + data_text(self.queue, style="bold")
            box.border_subtitle = (
                # read-only: the keys that change the queue are refused, so not offered
                "PgDn/PgUp page · Esc close"
                if self.console.runner.read_only
                else "d delete · r revoke · ^ to front · PgDn/PgUp page · Esc close"
            )
            yield Static(Text("reading…", style="dim"), id="jobs-header")
            yield KeyedTable(id="jobs")
        yield Footer()  # this screen's keys, not the console's underneath

    def on_mount(self) -> None:
        table = self.table
        table.add_column("#", width=4, key="pos")
        table.add_column("Pri", width=3, key="prio")
        table.add_column("Task", width=TASK_CLIP, key="task")
        table.add_column("ID", width=8, key="id")
        table.add_column("ETA", width=7, key="eta")
        table.add_column("Age", width=6, key="age")
        table.add_column("Args", width=ARGS_CLIP, key="args")
        table.add_column("Kwargs", width=KWARGS_CLIP, key="kwargs")
        table.focus()
        self.load()

    @property
    def table(self) -> KeyedTable:
        """The jobs table."""
        return self.query_one("#jobs", KeyedTable)

    # ---- reading (thread worker) -----------------------------------------------------------
    @work(thread=True, exclusive=True, group="queue-jobs")
    def load(self) -> None:
        """Read the page at :attr:`offset` (in a thread worker); it comes back as a message."""
        # runs in a worker thread: the broker may be slow or down
        try:
            page = self.console.sources.read_queue_jobs(
                self.queue, self.window_offset, self.page_size
            )
        except Exception as exc:  # a source that raises anyway: words, never a crash
            page = JobsPage(
                self.queue,
                self.window_offset,
                self.page_size,
                available=False,
                error=self.console.redact(f"{type(exc).__name__}: {exc}")[:200],
            )
        self.post_message(JobsPageRead(page))

    def on_jobs_page_read(self, message: JobsPageRead) -> None:
        self.apply_page(message.page)

    def refresh_s(self) -> float:
        return REFRESH_S  # read at each call: tests stretch it

    def page_total(self) -> int:
        return self.page.total if self.page is not None else 0

    # ---- drawing ---------------------------------------------------------------------------
    def _show_header(self, page: JobsPage) -> None:
        out = Text()
        if not page.available and not page.supported:
            out.append(visible(page.error), style="bold yellow")
            self.query_one("#jobs-header", Static).update(out)
            return
        shown = self.page or page
        total = shown.total
        out.append(f"{count(total)} waiting", style="bold")
        if total:
            first = shown.offset + 1
            last = min(total, shown.offset + max(shown.read, 1))
            out.append(f" · jobs {count(first)}–{count(last)} in run order (next to run first)")
        out.append("\nby priority: ")
        bands = [(p, n) for p, n in sorted(shown.bands.items(), reverse=True) if n]
        if bands:
            for i, (prio, n) in enumerate(bands):
                out.append(" · " if i else "")
                out.append(f"P{prio} {count(n)}", style="bold red" if prio >= 8 else "")
        else:
            out.append("nothing waiting", style="dim")
        if shown.skipped:
            out.append(
                f"\n{count(shown.skipped)} message(s) in this window could not be read and are "
                f"not shown (last: {visible(shown.tally.last)})",
                style="bold yellow",
            )
        if not page.available:
            out.append(
                f"\n✘ could not read the queue ({visible(page.error)}): showing the last page",
                style="bold red",
            )
        self.query_one("#jobs-header", Static).update(out)

    def _show_rows(self, page: JobsPage) -> None:
        table = self.table
        now = time.time()
        rows: dict[str, QueuedJob] = {}
        order: list[str] = []
        for job in page.jobs:
            key = job.identity
            n = 1
            while key in rows:  # the same message twice in the list: both are shown
                n += 1
                key = f"{job.identity}#{n}"
            rows[key] = job
            order.append(key)
            table.upsert(key, self._cells(job, now))
        table.drop_many([k for k in table.row_keys if k not in rows])
        table.set_order(order)
        self.rows = rows

    def _cells(self, job: QueuedJob, now: float) -> list[Text]:
        redact = self.console.redact
        record = self.console.model.get_task(job.id)
        revoked = record is not None and getattr(record, "revoke_requested", False)
        sent = getattr(record, "sent", None) if record is not None else None
        if job.eta is None:
            eta = "-"
        elif job.eta > now:
            eta = "in " + duration(job.eta - now, 4)
        else:
            eta = "due"
        if revoked:  # "✗ " and the name, in the column's width
            task = Text("✗ ", style="bold red") + data_text(
                clip(job.short_name, TASK_CLIP - 2), style="strike"
            )
        else:
            task = data_text(clip(job.short_name, TASK_CLIP))
        return [
            Text(count(job.position + 1), justify="right"),
            Text(str(job.band), justify="right", style="bold red" if job.band >= 8 else ""),
            task,
            data_text(job.id[:8], style="dim"),
            Text(eta, justify="right"),
            # Celery 5 messages carry no sent time: only a task-sent event the console saw
            Text(age(sent, now, 6) if sent else "-", justify="right"),
            data_text(clip(redact(job.args), ARGS_CLIP)),
            data_text(clip(redact(job.kwargs), KWARGS_CLIP)),
        ]

    # ---- keys ------------------------------------------------------------------------------
    def highlighted(self) -> QueuedJob | None:
        """The job under the cursor, or None."""
        key = self.table.cursor_key()
        return self.rows.get(key) if key is not None else None

    def _job(self) -> QueuedJob | None:
        job = self.highlighted()
        if job is None:
            self.notify("no waiting job highlighted", severity="warning")
        return job

    def action_delete_job(self) -> None:
        """Delete the highlighted job from its queue (after a confirm)."""
        if (job := self._job()) is not None:
            self.console.runner.delete_job(job)

    def action_revoke_job(self) -> None:
        """Revoke the highlighted job (it stays queued; a worker discards it)."""
        if (job := self._job()) is not None:
            self.console.runner.revoke_job(job)

    def action_move_job_to_front(self) -> None:
        """Move the highlighted job to the front of its queue (priority 10)."""
        if (job := self._job()) is not None:
            self.console.runner.move_job_to_front(job)

    def action_close(self) -> None:
        self.dismiss(None)
