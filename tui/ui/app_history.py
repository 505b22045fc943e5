"""The console's persisted history: load at start, backfill from the result backend,
search everything (``H``), export (``E``).  Mixed into :class:`tui.ui.app.AfirgenApp`."""

from __future__ import annotations

import time
from typing import Any

from textual import work

from tui.sources.validate import valid_timestamp
from tui.ui.messages import ExportDone, HistoryBackfilled, HistoryLoaded
from tui.ui.widgets.panes import TasksPane


def _first_time(row: Any) -> float | None:
    get = row.get if isinstance(row, dict) else (lambda k: getattr(row, k, None))
    value = get("sent") or get("received") or get("first_seen")
    # rows from before the trust boundary may hold NaN or -1e18: they must not set the
    # incident report's time axis
    return valid_timestamp(value, time.time())


class HistoryMixin:
    """History and export behaviour of the app (needs the app's settings, model, panes, redactor)."""

    # ---- persisted history -----------------------------------------------------------
    @work(thread=True, exclusive=True, group="history-load")
    def load_history(self) -> None:
        # runs in a worker thread: read the newest rows off the UI thread
        try:
            rows = self.history.load_recent(self.model.max_tasks)
            self.post_message(HistoryLoaded(rows, ""))
        except Exception as exc:
            self.post_message(HistoryLoaded([], self.redact(f"{type(exc).__name__}: {exc}")))

    def on_history_loaded(self, message: HistoryLoaded) -> None:
        from tui.history import load_into_model

        if message.error:
            self.notify(f"history not loaded: {message.error}", severity="error")
        else:
            tasks = self.query_one("#tasks", TasksPane)
            tasks.backend_uuids |= load_into_model(self.model, message.rows, self.sources.boundary.history)
            self.history_loaded = len(message.rows)
            self.model.apply([])  # the loaded tasks are not news: drop the pending changes
            tasks.rebuild(self.model.iter_tasks(newest_first=True), self.task_filter)
            if message.rows:
                self.notify(f"loaded {len(message.rows):,} task(s) from the history", timeout=4)
        self.start_live()
        self.backfill_history()

    @work(thread=True, exclusive=True, group="history-backfill")
    def backfill_history(self) -> None:
        # runs in a worker thread: scan the result backend for tasks the console never saw
        from afirgen_tasks.priority import is_redis_transport
        from tui.history import backfill_from_backend
        from tui.sources.redis_conn import redis_client

        url = self.settings.celery_result_backend
        if not is_redis_transport(url):
            return
        try:
            client = redis_client(url, self.settings, socket_connect_timeout=3, socket_timeout=10)
            try:
                result = backfill_from_backend(client, self.history, known_uuids=set(),
                                               tally=self.sources.boundary.backend)
            finally:
                client.close()
            rows = [r for u in result.uuids if (r := self.history.get(u)) is not None]
            self.post_message(HistoryBackfilled(rows, ""))
        except Exception as exc:
            self.post_message(HistoryBackfilled([], self.redact(f"{type(exc).__name__}: {exc}")))

    def on_history_backfilled(self, message: HistoryBackfilled) -> None:
        from tui.history import load_into_model

        if message.error:
            self.notify(f"result backend not read: {message.error}", severity="warning")
            return
        fresh = [r for r in message.rows if self.model.get_task(r["uuid"]) is None]
        if fresh:
            tasks = self.query_one("#tasks", TasksPane)
            tasks.backend_uuids |= (load_into_model(self.model, fresh, self.sources.boundary.history)
                                    | {r["uuid"] for r in fresh})
            self.model.apply([])
            tasks.rebuild(self.model.iter_tasks(newest_first=True), self.task_filter)
            self.notify(f"{len(fresh):,} task(s) the console did not see were filled in from the result backend",
                        timeout=6)

    def action_search_history(self) -> None:
        """Search the whole persisted history (not only what is in memory)."""
        if self.history is None:
            self.notify("no history store: [history] db is not set up", severity="warning")
            return
        from tui.ui.screens.history_search import HistorySearchScreen

        self.push_screen(HistorySearchScreen(self.history.search, self.redact, self.task_filter.text))

    def action_export(self) -> None:
        """Export the filtered history to CSV, Excel or an incident report PDF."""
        from tui.ui.screens.forms import ChoiceScreen

        what = f"tasks matching {self.task_filter.text!r}" if self.task_filter.text else "all tasks"
        source = "the persisted history" if self.history is not None else "memory"
        self.push_screen(ChoiceScreen("Export", f"Export {what} from {source} (redaction applies):",
                                      [("c", "csv", "CSV"), ("x", "xlsx", "Excel workbook (.xlsx)"),
                                       ("p", "pdf", "incident report (PDF): backlog and worker plots, "
                                                    "failures with tracebacks, actions taken")]),
                         self._export_chosen)

    def _export_chosen(self, kind: str | None) -> None:
        if kind is None:
            self.notify("export cancelled", timeout=3)
            return
        rows: Any = None
        if self.history is None:
            rows = [t for t in self.model.iter_tasks(newest_first=True) if self.task_filter(t)]
        self.notify(f"exporting {kind}…", timeout=3)
        self._export(kind, self.task_filter.text, rows)

    @work(thread=True, group="export")
    def _export(self, kind: str, query: str, rows: Any) -> None:
        # runs in a worker thread: queries and file writes off the UI thread
        from tui.actions import AuditLog
        from tui.history.export import export_csv, export_incident_pdf, export_path, export_xlsx

        try:
            if rows is None:
                if self.history_writer is not None:
                    self.history_writer.flush()  # what is on screen is in the file too
                rows = self.history.search(query, limit=1_000_000)
            path = export_path(self.settings.paths_report_dir, kind)
            if kind == "csv":
                export_csv(rows, path, self.redact)
            elif kind == "xlsx":
                export_xlsx(rows, path, self.redact)
            else:
                now = time.time()
                firsts = [t for r in rows if (t := _first_time(r))]
                since = min([self.started_at, *firsts]) if firsts else self.started_at
                export_incident_pdf(path, rows, (since, now), list(self.queue_samples), list(self.worker_samples),
                                    AuditLog(self.settings.console_audit_log).read(), self.redact)
            self.post_message(ExportDone(str(path), len(rows), ""))
        except Exception as exc:
            self.post_message(ExportDone("", 0, self.redact(f"{type(exc).__name__}: {exc}")))

    def on_export_done(self, message: ExportDone) -> None:
        self.exports.append(message)
        if message.error:
            self.notify(f"export failed: {message.error}", severity="error", timeout=10)
        else:
            self.notify(f"exported {message.count:,} task(s) to {message.path}", timeout=10)

    def close_history(self) -> None:
        """Flush the history writer and close the store (idempotent)."""
        if self.history_writer is not None:
            self.history_writer.close()
            self.history_writer = None
