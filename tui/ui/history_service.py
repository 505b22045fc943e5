"""The console's persisted history: load at start, backfill from the result backend, write
each tick's changes, search everything (``H``), export (``E``, and ``E`` in the search).

The history is per cluster: the store writes and loads the rows of this console's cluster
(its broker's identity without credentials); the search covers other clusters only when
asked (``cluster:all``).

:class:`HistoryService` is a plain object with declared inputs: the console screen it works
for and the history store (None: no persistence).  Reads, backfills and exports run in
thread workers; their results come back to the screen as messages.
"""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tui.core.scope import ALL_CLUSTERS, THIS_CLUSTER, describe_scope
from tui.history import (
    HistoryBackend,
    HistoryWriter,
    clean_history_rows,
    load_into_model,
    merge_history_rows,
    task_to_row,
)
from tui.history.store import LEGACY_CLUSTER
from tui.sources.validate import Tally, clean_history_row, valid_timestamp
from tui.ui.messages import ExportDone, HistoryBackfilled
from tui.ui.tick_changes import ABSORB_BUDGET_S, ABSORB_GAP_S

if TYPE_CHECKING:
    from tui.ui.console import ConsoleScreen
    from tui.ui.screens.history_search import HistorySearch

#: The most rows one export holds.
EXPORT_LIMIT = 1_000_000


def _first_time(row: Any) -> float | None:
    get = row.get if isinstance(row, dict) else (lambda k: getattr(row, k, None))
    value = get("sent") or get("received") or get("first_seen")
    # rows from before the trust boundary may hold NaN or -1e18: they must not set the
    # incident report's time axis
    return valid_timestamp(value, time.time())


def _yield_gil() -> None:
    time.sleep(0)


#: Rows merged between two looks at the clock (a slice is ABSORB_BUDGET_S of them).
MERGE_CHUNK = 500
#: Rows the loading thread reads, cleans and hands over at a time, and how many such pages
#: may wait for the UI thread (the thread waits beyond): what the load holds in memory
#: besides the model (all 200k rows at once took 600 MB the process then kept).
LOAD_PAGE = 2_000
PAGES_WAITING = 2
#: How soon the UI thread looks again when the next page is not read yet.
PAGE_WAIT_S = 0.005


@dataclass
class _LoadEnd:
    """The last thing the loading thread hands over."""

    #: what the trust boundary counted in the rows read
    tally: Tally
    error: str = ""


@dataclass
class _Merge:
    """The start-up load: pages from the loading thread, merged a slice at a time."""

    pages: queue.Queue[list[dict[str, Any]] | _LoadEnd]
    #: rows to read (the store's count, at most max_tasks; -1 until known)
    total: int = -1
    #: the page being merged (newest first) and how far
    page: list[Any] = field(default_factory=list)
    at: int = 0
    #: rows merged so far, and the tasks they brought into the model
    done: int = 0
    merged: int = 0
    backend: set[str] = field(default_factory=set)
    #: when the status line last said how far it is
    said: float = 0.0


class HistoryService:
    """History and exports for one console screen."""

    def __init__(self, screen: ConsoleScreen, store: HistoryBackend | None) -> None:
        self.screen = screen
        self.store = store
        self.writer: HistoryWriter | None = None
        self.loaded_count = 0
        self.exports: list[ExportDone] = []
        #: rows a schema migration kept as ``legacy`` (said once, then 0)
        self.legacy_rows = 0
        self._loading: tuple[int, int] | None = None
        self._merge: _Merge | None = None
        #: set by close(), from any thread
        self._closed = False

    # ---- load and backfill ---------------------------------------------------------------
    def start(self) -> bool:
        """Start the writer and load the newest rows; False when there is no store.

        The screen goes live at once: the rows are merged as older than anything live
        events bring meanwhile (:meth:`_merge_slice`)."""
        if self.store is None:
            return False
        self.writer = HistoryWriter(self.store)
        self._merge = _Merge(queue.Queue(PAGES_WAITING))
        self._loading = (0, -1)
        self.screen.run_worker(self._load, thread=True, exclusive=True, group="history-load")
        asyncio.get_running_loop().call_later(PAGE_WAIT_S, self._merge_slice)
        return True

    def loading(self) -> tuple[int, int] | None:
        """``(rows merged, rows to merge)`` while the start-up load runs (``-1``: not known
        yet); None once it is done."""
        return self._loading

    def _load(self) -> None:
        # runs in a worker thread: read the newest rows a page at a time and put them
        # through the trust boundary off the UI thread (a 200k-row history: 1.4 s to read,
        # 1.9 s to clean), counted in a tally of this thread's own, added to the screen's
        # at the end; a page waits while PAGES_WAITING are not merged yet
        assert self.store is not None
        merge = self._merge
        assert merge is not None
        tally = Tally()
        error = ""
        try:
            self.legacy_rows = self.store.take_legacy_notice()
            limit = self.screen.model.max_tasks
            merge.total = min(limit, self.store.count(self.store.cluster))
            for rows in self.store.iter_recent(limit, LOAD_PAGE):
                # time.sleep(0) every few hundred rows hands the GIL to the UI thread when
                # it waits for it (a key press), instead of after the interpreter's 5 ms
                clean = clean_history_rows(rows, tally, pause=_yield_gil)
                del rows
                clean.reverse()  # newest first: merged behind what the model holds
                if not self._hand_over(merge, clean):
                    return  # closed
        except Exception as exc:
            error = self.screen.redact(f"{type(exc).__name__}: {exc}")
        self._hand_over(merge, _LoadEnd(tally, error))

    def _hand_over(self, merge: _Merge, item: list[dict[str, Any]] | _LoadEnd) -> bool:
        """Queue ``item`` for the UI thread, waiting while it is behind; False once closed."""
        while not self._closed:
            try:
                merge.pages.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _merge_slice(self) -> None:
        merge, screen = self._merge, self.screen
        if merge is None or self._closed or not screen.is_attached:
            return
        started = time.perf_counter()
        end: _LoadEnd | None = None
        while time.perf_counter() - started < ABSORB_BUDGET_S:
            if merge.at >= len(merge.page):
                try:
                    item = merge.pages.get_nowait()
                except queue.Empty:
                    break  # the thread is still reading
                if isinstance(item, _LoadEnd):
                    end = item
                    break
                merge.page, merge.at = item, 0
            stop = min(merge.at + MERGE_CHUNK, len(merge.page))
            backend, created = merge_history_rows(
                screen.model, merge.page[merge.at : stop], behind=True
            )
            merge.backend |= backend
            merge.merged += created
            merge.done += stop - merge.at
            merge.at = stop
        if self._closed:
            return
        if end is None:
            self._loading = (merge.done, merge.total)
            if started - merge.said >= 0.1:  # the progress, ten times a second
                merge.said = started
                screen.update_status()
            # a gap between slices, as the event backlog's: keys and frames get their turn
            busy = merge.at < len(merge.page) or not merge.pages.empty()
            asyncio.get_running_loop().call_later(
                ABSORB_GAP_S if busy else PAGE_WAIT_S, self._merge_slice
            )
            return
        self._loaded(merge, end)

    def _loaded(self, merge: _Merge, end: _LoadEnd) -> None:
        """Every page is in: put the model's order right, rebuild the Tasks pane, say what
        came in (or what went wrong), backfill."""
        screen = self.screen
        self._merge = None
        self._loading = None
        screen.sources.boundary.history.add(end.tally)
        screen.model.history_merged()
        screen.tasks_pane.backend_uuids |= merge.backend
        self.loaded_count = merge.merged
        screen.refresh_tasks(keep_cursor=True)
        screen.update_status()
        if end.error:
            what = f" ({merge.merged:,} task(s) loaded)" if merge.merged else ""
            screen.notify(f"history not loaded{what}: {end.error}", severity="error")
        elif merge.merged:
            # the tasks it brought in: not the rows read (some were known live, refused by
            # a full model, or skipped at the boundary)
            screen.notify(f"loaded {merge.merged:,} task(s) from the history", timeout=4)
        if self.legacy_rows:
            screen.notify(
                f"the history now keeps each cluster's tasks apart: {self.legacy_rows:,}"
                f" task(s) recorded before are kept as cluster {LEGACY_CLUSTER!r}, not shown"
                " here; H with cluster:all (or cluster:legacy) finds them",
                timeout=15,
            )
        self._backfill_soon()

    def _backfill_soon(self) -> None:
        if self._closed:
            return
        self.screen.run_worker(
            self._backfill, thread=True, exclusive=True, group="history-backfill"
        )

    def _backfill(self) -> None:
        # runs in a worker thread: scan the result backend for tasks the console never saw
        from afirgen_tasks.priority import is_redis_transport
        from tui.history import backfill_from_backend
        from tui.sources.backend import ResultBackendReader
        from tui.sources.redis_conn import redis_client

        assert self.store is not None
        settings = self.screen.settings
        url = settings.celery_result_backend
        if not is_redis_transport(url):
            return
        try:
            client = redis_client(url, settings, socket_connect_timeout=3, socket_timeout=10)
            try:
                result = backfill_from_backend(
                    ResultBackendReader(client),
                    self.store,
                    tally=self.screen.sources.boundary.backend,
                    stop=lambda: self._closed,
                )
            finally:
                client.close()
            if result.stopped:
                return
            rows = [r for u in result.uuids if (r := self.store.get(u)) is not None]
            self.screen.post_message(HistoryBackfilled(rows, ""))
        except Exception as exc:
            self.screen.post_message(
                HistoryBackfilled([], self.screen.redact(f"{type(exc).__name__}: {exc}"))
            )

    def backfilled(self, message: HistoryBackfilled) -> None:
        """Tasks the console never saw were found in the result backend: show them."""
        screen = self.screen
        if message.error:
            screen.notify(f"result backend not read: {message.error}", severity="warning")
            return
        fresh = [r for r in message.rows if screen.model.get_task(r["uuid"]) is None]
        if fresh:
            tasks = screen.tasks_pane
            tasks.backend_uuids |= load_into_model(
                screen.model, fresh, screen.sources.boundary.history
            ) | {r["uuid"] for r in fresh}
            screen.model.apply([])
            screen.refresh_tasks(keep_cursor=True)  # the operator may be reading a row
            screen.notify(
                f"{len(fresh):,} task(s) the console did not see were filled in from the result backend",
                timeout=6,
            )

    # ---- writing -------------------------------------------------------------------------
    def persist(self, uuids: Iterable[str]) -> None:
        """Hand the writer the current state of ``uuids`` (a tick's changed tasks)."""
        if self.writer is None:
            return
        get = self.screen.model.get_task
        rows = [task_to_row(t) for u in uuids if (t := get(u)) is not None]
        if rows:
            self.writer.submit(rows)

    def status_note(self) -> str:
        """What the writer could not save, in words for the status line ('' when all is well)."""
        return self.writer.status_note() if self.writer is not None else ""

    def close(self) -> int:
        """Flush the history writer (idempotent); the store is closed by its owner.  Returns
        the rows it could not write in time (see :meth:`HistoryWriter.close`).

        Tasks a slice applied since the last tick (:meth:`ConsoleScreen.absorb`) have not
        been handed to the writer yet: they are, first."""
        # First: a closing screen (quit, or a cluster switch that turns the shared store to
        # another cluster) merges no more, says nothing and starts or continues no backfill.
        self._closed = True
        self._merge = None
        self._loading = None
        unwritten = 0
        if self.writer is not None:
            self.persist(self.screen.not_yet_persisted())
            self.writer.close()
            unwritten = self.writer.unwritten
            self.writer = None
        return unwritten

    # ---- search and export ---------------------------------------------------------------
    def search(self, query: str | None = None) -> None:
        """Search the whole persisted history (not only what is in memory), opened with
        ``query`` (default: the Tasks pane's filter)."""
        if self.store is None:
            self.screen.notify("no history store: [history] db is not set up", severity="warning")
            return
        from tui.ui.screens.history_search import HistorySearchScreen

        self.screen.app.push_screen(
            HistorySearchScreen(
                self.search_rows,
                self.screen.redact,
                self.screen.task_filter.text if query is None else query,
                cluster=self.store.cluster,
                export=self.export_search,
            )
        )

    def search_rows(
        self,
        query: str = "",
        since: float | None = None,
        until: float | None = None,
        limit: int = 500,
        scope: str = "",
    ) -> list[dict[str, Any]]:
        """:meth:`HistoryStore.search` through the trust boundary, like the rows loaded at start.

        The store returns what the file holds: rows written before the boundary existed (or
        by anything else that can write the file) may hold a time ``'NaN'`` or ``'now'``, a
        BLOB name or an escape, which the search screen would show or compute with (``H``
        crashed on ``'now' - 'NaN'``).  Runs in the search's thread worker, so it counts in a
        tally of its own (the history tally has one writer, the UI thread); a row without a
        usable uuid is left out.  ``scope``: this cluster (``""``), ``all`` or text naming
        clusters (:meth:`HistoryStore.resolve_scope`; ValueError when it names none).
        """
        assert self.store is not None
        tally = Tally()
        now = time.time()
        rows = self.store.search(query, since=since, until=until, limit=limit, scope=scope)
        return [row for raw in rows if (row := clean_history_row(raw, tally, now)) is not None]

    @property
    def cluster(self) -> str:
        """This console's cluster (the key of its history rows)."""
        return self.store.cluster if self.store is not None else self.screen.settings.cluster_id

    def export(self) -> None:
        """Export the filtered history to CSV, Excel or an incident report PDF."""
        query = self.screen.task_filter.text
        what = f"tasks matching {query!r}" if query else "all tasks"
        source = "the persisted history" if self.store is not None else "memory"
        self._ask_kind(
            f"Export {what} of cluster {self.cluster} from {source} (redaction applies):",
            self._export_chosen,
        )

    def export_search(self, search: HistorySearch, rows: list[dict[str, Any]] | None) -> None:
        """``E`` in the history search: export exactly that search (its filter, time range
        and cluster scope).  ``rows`` are the rows it shows; None when it showed only the
        first of more, and the export then holds every match."""
        where = describe_scope(search.scope, self.cluster)
        what = f"search {search.text!r}" if search.text else "search (everything)"
        count = (
            f"the {search.shown:,} task(s) shown"
            if rows is not None
            else f"every task matching (more than the {search.shown:,} shown)"
        )
        self._ask_kind(
            f"Export {count} of the history {what}, {where} (redaction applies):",
            lambda kind: self._search_export_chosen(kind, search, rows),
        )

    def _ask_kind(self, question: str, then: Any) -> None:
        from tui.ui.screens.forms import ChoiceScreen

        self.screen.app.push_screen(
            ChoiceScreen(
                "Export",
                question,
                [
                    ("c", "csv", "CSV"),
                    ("x", "xlsx", "Excel workbook (.xlsx)"),
                    (
                        "p",
                        "pdf",
                        "incident report (PDF): backlog and worker plots, "
                        "failures with tracebacks, actions taken",
                    ),
                ],
            ),
            then,
        )

    def _search_export_chosen(
        self, kind: str | None, search: HistorySearch, rows: list[dict[str, Any]] | None
    ) -> None:
        screen = self.screen
        if kind is None:
            screen.notify("export cancelled", timeout=3)
            return
        screen.notify(f"exporting {kind}…", timeout=3)
        screen.run_worker(
            lambda: self._export(
                kind,
                search.query,
                rows,
                since=search.since,
                until=search.until,
                scope=search.scope,
            ),
            thread=True,
            group="export",
        )

    def _export_chosen(self, kind: str | None) -> None:
        screen = self.screen
        if kind is None:
            screen.notify("export cancelled", timeout=3)
            return
        rows: Any = None
        if self.store is None:
            rows = [t for t in screen.model.iter_tasks(newest_first=True) if screen.task_filter(t)]
        screen.notify(f"exporting {kind}…", timeout=3)
        query = screen.task_filter.text
        screen.run_worker(lambda: self._export(kind, query, rows), thread=True, group="export")

    def _export(
        self,
        kind: str,
        query: str,
        rows: Any,
        since: float | None = None,
        until: float | None = None,
        scope: str = THIS_CLUSTER,
    ) -> None:
        # runs in a worker thread: queries and file writes off the UI thread
        from tui.actions import AuditLog
        from tui.history.export import export_csv, export_incident_pdf, export_path, export_xlsx

        screen = self.screen
        settings = screen.settings
        cluster = self.cluster
        try:
            clusters = [cluster]
            if self.store is not None:
                clusters = self.store.resolve_scope(scope)
            if rows is None:
                assert self.store is not None
                if self.writer is not None:
                    self.writer.flush()  # what is on screen is in the file too
                rows = self.store.search(
                    query, since=since, until=until, limit=EXPORT_LIMIT, scope=scope
                )
            path = export_path(settings.paths_report_dir, kind)
            if kind == "csv":
                export_csv(rows, path, screen.redact, cluster=cluster)
            elif kind == "xlsx":
                export_xlsx(rows, path, screen.redact, cluster=cluster)
            else:
                now = time.time()
                firsts = [t for r in rows if (t := _first_time(r))]
                start = min([screen.started_at, *firsts]) if firsts else screen.started_at
                window = (start if since is None else since, now if until is None else until)
                ours = cluster in clusters  # the live samples are of this console's cluster
                audit = AuditLog(settings.console_audit_log).read()
                if scope != ALL_CLUSTERS:
                    # lines from before the audit log named clusters have no cluster
                    audit = [r for r in audit if r.get("cluster") in (None, *clusters)]
                export_incident_pdf(
                    path,
                    rows,
                    window,
                    list(screen.queue_samples) if ours else [],
                    list(screen.worker_samples) if ours else [],
                    audit,
                    screen.redact,
                    title=f"Incident report: {describe_scope(scope, cluster)}",
                )
            screen.post_message(ExportDone(str(path), len(rows), ""))
        except Exception as exc:
            screen.post_message(ExportDone("", 0, screen.redact(f"{type(exc).__name__}: {exc}")))

    def export_done(self, message: ExportDone) -> None:
        """Say where the export went, or why it failed."""
        self.exports.append(message)
        if message.error:
            self.screen.notify(f"export failed: {message.error}", severity="error", timeout=10)
        else:
            self.screen.notify(f"exported {message.count:,} task(s) to {message.path}", timeout=10)
