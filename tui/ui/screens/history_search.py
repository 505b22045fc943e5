"""``H``: search the whole persisted history (not only what is in memory)."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Static

from tui.core.formatting import clock, duration, state_text, task_runtime
from tui.core.query import parse_query
from tui.core.safe_text import data_text, visible
from tui.core.timerange import split_time_terms
from tui.ui.screens.task_detail import TaskDetailScreen
from tui.ui.widgets.plain_input import PlainInput

RESULT_LIMIT = 500
_RECORD_FIELDS = (
    "uuid",
    "name",
    "state",
    "queue",
    "priority",
    "hostname",
    "args",
    "kwargs",
    "result",
    "exception",
    "traceback",
    "retries",
    "sent",
    "received",
    "started",
    "finished",
    "runtime",
    "eta",
    "expires",
    "root_id",
    "parent_id",
    "revoke_requested",
)


def row_as_task(row: dict[str, Any]) -> SimpleNamespace:
    """A history row shaped like a TaskRecord, for the detail screen."""
    task = SimpleNamespace(**{f: row.get(f) for f in _RECORD_FIELDS})
    task.revoke_requested = False
    task.state = task.state or "PENDING"
    first = task.sent or task.received
    task.wait_time = (task.started - first) if task.started and first else None
    task.short_name = (task.name or "?").rsplit(".", 1)[-1]
    task.source = row.get("source")
    return task


class HistorySearched(Message):
    """The history store answered a search."""

    def __init__(self, rows: list[dict[str, Any]], took: float, error: str = ""):
        super().__init__()
        self.rows = rows
        self.took = took
        self.error = error


class HistorySearchScreen(ModalScreen[None]):
    """Type a filter (the Tasks pane syntax, plus ``args:text``, ``since:2h``, ``until:…``)."""

    BINDINGS = [Binding("escape", "close", "Close")]
    DEFAULT_CSS = """
    HistorySearchScreen { align: center middle; }
    HistorySearchScreen > Vertical { width: 96%; height: 92%; border: round $accent; background: $surface; }
    HistorySearchScreen #history-query { height: 1; border: none; background: $boost; padding: 0 1; }
    HistorySearchScreen #history-status { height: 1; color: $text-muted; }
    HistorySearchScreen DataTable { height: 1fr; }
    """

    def __init__(
        self,
        search: Callable[..., list[dict[str, Any]]],
        redact: Callable[[str], str],
        query: str = "",
    ):
        super().__init__()
        self.search = search
        self.redact = redact
        self.initial = query
        self.rows: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Search all history"
            box.border_subtitle = "Enter search · ↓ results · Enter on a row: detail · Esc close"
            yield PlainInput(
                value=self.initial,
                placeholder="state:failure queue:email args:FIR since:2h until:30m …",
                id="history-query",
            )
            yield Static("", id="history-status", markup=False)
            table: DataTable[Any] = DataTable(id="history-results", cursor_type="row")
            yield table

    def on_mount(self) -> None:
        table = self.query_one("#history-results", DataTable)
        for label, width in (
            ("State", 11),
            ("Task", 20),
            ("Queue", 9),
            ("Pri", 3),
            ("Worker", 12),
            ("Runtime", 7),
            ("Time", 8),
            ("Src", 7),
            ("UUID", 8),
        ):
            table.add_column(label, width=width)
        self.query_one("#history-query", Input).focus()
        self.run_search(self.initial)

    @on(Input.Submitted, "#history-query")
    def _submitted(self, event: Input.Submitted) -> None:
        self.run_search(event.value)

    def run_search(self, text: str) -> None:
        rest, since, until, errors = split_time_terms(text, time.time())
        errors += parse_query(rest).errors
        if errors:
            # the errors quote the operator's query: shown literally (the Static takes no markup)
            self.query_one("#history-status", Static).update("✘ " + visible("; ".join(errors)))
            # The old results would read as the answer to this query.
            self.rows = []
            self.query_one("#history-results", DataTable).clear()
            return
        self.query_one("#history-status", Static).update("searching…")
        self._search(rest, since, until)

    @work(thread=True, exclusive=True)
    def _search(self, query: str, since: float | None, until: float | None) -> None:
        # runs in a worker thread: SQLite reads off the UI thread
        started = time.perf_counter()
        try:
            rows = self.search(query, since=since, until=until, limit=RESULT_LIMIT)
            self.post_message(HistorySearched(rows, time.perf_counter() - started))
        except Exception as exc:
            self.post_message(
                HistorySearched([], time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
            )

    def on_history_searched(self, message: HistorySearched) -> None:
        status = self.query_one("#history-status", Static)
        if message.error:
            status.update(f"✘ search failed: {visible(self.redact(message.error))}")
            return
        self.rows = message.rows
        table = self.query_one("#history-results", DataTable)
        table.clear()
        for i, row in enumerate(message.rows):
            label, style = state_text(row.get("state") or "PENDING")
            first = row.get("sent") or row.get("received") or row.get("first_seen")
            # Rows are data: a DataTable parses str cells as markup (a name "[/]" raised
            # MarkupError here at every start), so every cell is a literal Text.
            table.add_row(
                data_text(label, style=style),
                data_text(str(row.get("name") or "?").rsplit(".", 1)[-1]),
                data_text(row.get("queue") or "-"),
                data_text(row.get("priority") or "-"),
                data_text(str(row.get("hostname") or "-").split("@")[0]),
                Text(duration(task_runtime(row_as_task(row)))),
                Text(clock(first)),
                Text("backend" if row.get("source") == "backend" else "events"),
                data_text(str(row.get("uuid") or "")[:8]),
                key=str(i),
            )
        more = " (first 500: narrow the search)" if len(message.rows) >= RESULT_LIMIT else ""
        status.update(f"{len(message.rows):,} task(s) in {message.took * 1000:.0f} ms{more}")

    @on(DataTable.RowSelected, "#history-results")
    def _open(self, event: DataTable.RowSelected) -> None:
        row = self.rows[int(event.row_key.value)]
        self.app.push_screen(TaskDetailScreen(row_as_task(row), self.redact, None))

    def action_close(self) -> None:
        self.dismiss(None)
