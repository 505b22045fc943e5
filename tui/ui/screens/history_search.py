"""``H``: search the whole persisted history of this cluster (not only what is in memory);
``cluster:all`` searches every cluster the history file holds; ``E`` exports the search."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
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
from tui.core.scope import THIS_CLUSTER, describe_scope, split_cluster_term
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


@dataclass(frozen=True, slots=True)
class HistorySearch:
    """One search as it ran: the filter, the time range resolved to epoch seconds when it
    ran (``since:2h`` means the same rows later), the cluster scope (``""``: this cluster,
    ``all``, or text to match) and how many rows it showed (``truncated``: the first
    :data:`RESULT_LIMIT` of more)."""

    text: str
    query: str
    since: float | None
    until: float | None
    scope: str
    shown: int = 0
    truncated: bool = False


class HistorySearched(Message):
    """The history store answered a search."""

    def __init__(
        self,
        rows: list[dict[str, Any]],
        took: float,
        error: str = "",
        search: HistorySearch | None = None,
    ):
        super().__init__()
        self.rows = rows
        self.took = took
        self.error = error
        self.search = search


#: ``export(search, rows)``: rows are what the screen shows, None when it showed only the
#: first RESULT_LIMIT (the exporter then asks the store for every match of ``search``).
Exporter = Callable[[HistorySearch, list[dict[str, Any]] | None], None]


class HistorySearchScreen(ModalScreen[None]):
    """Type a filter (the Tasks pane syntax, plus ``args:text``, ``since:2h``, ``until:…``,
    ``cluster:all``); ``E`` in the results exports exactly this search."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("E", "export", "Export this search"),
        # the query box has no use for ↓: it goes to the results, as the subtitle says (a
        # focused results table keeps ↓ for its cursor)
        Binding("down", "results", "Results", show=False),
    ]
    DEFAULT_CSS = """
    HistorySearchScreen { align: center middle; }
    HistorySearchScreen > Vertical { width: 96%; height: 92%; border: round $accent; background: $surface; }
    HistorySearchScreen #history-query { height: 1; border: none; background: $boost; padding: 0 1; }
    HistorySearchScreen #history-status { height: auto; color: $text-muted; padding: 0 1; }
    HistorySearchScreen DataTable { height: 1fr; }
    """

    def __init__(
        self,
        search: Callable[..., list[dict[str, Any]]],
        redact: Callable[[str], str],
        query: str = "",
        *,
        cluster: str = "",
        export: Exporter | None = None,
    ):
        """``search(query, since=, until=, limit=, scope=)`` is the store's; ``cluster`` names
        this console's cluster (the default scope); ``export`` runs ``E``."""
        super().__init__()
        self.search = search
        self.redact = redact
        self.initial = query
        self.cluster = cluster
        self.exporter = export
        self.rows: list[dict[str, Any]] = []
        #: the search whose rows are shown (None while none is)
        self.shown: HistorySearch | None = None

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Search the history of this cluster (cluster:all for every one)"
            # fits the border at 80 columns (the longer wording was cut before "Esc close")
            box.border_subtitle = "Enter search · ↓ results · Enter detail · E export · Esc close"
            yield PlainInput(
                value=self.initial,
                placeholder="state:failure queue:email args:FIR since:2h until:30m cluster:all …",
                id="history-query",
            )
            yield Static("", id="history-status", markup=False)
            table: DataTable[Any] = DataTable(id="history-results", cursor_type="row")
            yield table

    def on_mount(self) -> None:
        table = self.query_one("#history-results", DataTable)
        for label, width in (
            ("State", 11),
            ("Task", 28),  # send_fir_confirmation_email whole
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
        rest, scope, errors = split_cluster_term(text)
        rest, since, until, time_errors = split_time_terms(rest, time.time())
        errors += time_errors + parse_query(rest).errors
        if errors:
            # the errors quote the operator's query: shown literally (the Static takes no markup)
            self.query_one("#history-status", Static).update("✘ " + visible("; ".join(errors)))
            # The old results would read as the answer to this query.
            self._clear()
            return
        self.query_one("#history-status", Static).update("searching…")
        self._search(HistorySearch(text.strip(), rest, since, until, scope))

    def _clear(self) -> None:
        self.rows = []
        self.shown = None
        self.query_one("#history-results", DataTable).clear()

    @work(thread=True, exclusive=True)
    def _search(self, search: HistorySearch) -> None:
        # runs in a worker thread: SQLite reads off the UI thread
        started = time.perf_counter()
        try:
            kwargs: dict[str, Any] = {}
            if search.scope != THIS_CLUSTER:
                kwargs["scope"] = search.scope
            rows = self.search(
                search.query, since=search.since, until=search.until, limit=RESULT_LIMIT, **kwargs
            )
            self.post_message(HistorySearched(rows, time.perf_counter() - started, "", search))
        except ValueError as exc:  # a cluster: term that names no cluster
            self.post_message(HistorySearched([], time.perf_counter() - started, str(exc), search))
        except Exception as exc:
            self.post_message(
                HistorySearched(
                    [],
                    time.perf_counter() - started,
                    f"search failed: {type(exc).__name__}: {exc}",
                    search,
                )
            )

    def on_history_searched(self, message: HistorySearched) -> None:
        status = self.query_one("#history-status", Static)
        if message.error:
            status.update(f"✘ {visible(self.redact(message.error))}")
            self._clear()
            return
        self.rows = message.rows
        if message.search is not None:
            self.shown = HistorySearch(
                message.search.text,
                message.search.query,
                message.search.since,
                message.search.until,
                message.search.scope,
                len(message.rows),
                len(message.rows) >= RESULT_LIMIT,
            )
        table = self.query_one("#history-results", DataTable)
        table.clear()
        scope = message.search.scope if message.search is not None else THIS_CLUSTER
        # rows of several clusters need their cluster beside them; one's own do not
        with_cluster = scope != THIS_CLUSTER
        if with_cluster and "cluster" not in table.columns:
            table.add_column("Cluster", width=24, key="cluster")
        elif not with_cluster and "cluster" in table.columns:
            table.remove_column("cluster")
        for i, row in enumerate(message.rows):
            extra = [data_text(str(row.get("cluster") or "?"))] if with_cluster else []
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
                *extra,
                key=str(i),
            )
        more = " (first 500: narrow the search)" if len(message.rows) >= RESULT_LIMIT else ""
        where = describe_scope(scope, self.cluster or "this cluster")
        hint = " · cluster:all searches every cluster" if scope == THIS_CLUSTER else ""
        # the cluster is data (a broker identity): the Static takes no markup
        status.update(
            f"{len(message.rows):,} task(s) in {message.took * 1000:.0f} ms{more}"
            f" · {visible(where)}{hint}"
        )

    @on(DataTable.RowSelected, "#history-results")
    def _open(self, event: DataTable.RowSelected) -> None:
        row = self.rows[int(event.row_key.value or 0)]
        self.app.push_screen(TaskDetailScreen(row_as_task(row), self.redact, None))

    def action_export(self) -> None:
        """``E``: export the search shown (its rows; every match when it showed the first 500)."""
        if self.exporter is None:
            self.notify("export is not available here", severity="warning")
            return
        if self.shown is None:
            self.notify("nothing to export: run a search first (Enter)", severity="warning")
            return
        self.exporter(self.shown, None if self.shown.truncated else list(self.rows))

    def action_results(self) -> None:
        """``↓`` in the query box: move to the results."""
        self.query_one("#history-results", DataTable).focus()

    def action_close(self) -> None:
        self.dismiss(None)
