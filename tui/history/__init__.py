"""The persisted task history: the store (a SQLite file, or PostgreSQL a team shares), its
writer thread, the backfill from the result backend, and the exports (CSV, Excel, incident
PDF).  No Textual here."""

from tui.history.backend import HistoryBackend, open_history
from tui.history.backfill import BackfillResult, backfill_from_backend, meta_to_row, parse_utc_iso
from tui.history.store import (
    FIELDS,
    SOURCE_BACKEND,
    SOURCE_EVENTS,
    HistoryStore,
    SearchQuery,
    UpsertReport,
    clean_history_rows,
    load_into_model,
    merge_history_rows,
    parse_query,
    task_to_row,
)
from tui.history.writer import HistoryWriter

__all__ = [
    "FIELDS",
    "SOURCE_BACKEND",
    "SOURCE_EVENTS",
    "BackfillResult",
    "HistoryBackend",
    "HistoryStore",
    "HistoryWriter",
    "SearchQuery",
    "UpsertReport",
    "backfill_from_backend",
    "clean_history_rows",
    "load_into_model",
    "merge_history_rows",
    "meta_to_row",
    "open_history",
    "parse_query",
    "parse_utc_iso",
    "task_to_row",
]
