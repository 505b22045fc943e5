"""The persisted task history: the store (SQLite), its writer thread, the backfill from the
result backend, and the exports (CSV, Excel, incident PDF).  No Textual here."""

from tui.history.backfill import BackfillResult, backfill_from_backend, meta_to_row, parse_utc_iso
from tui.history.store import (
    FIELDS,
    SOURCE_BACKEND,
    SOURCE_EVENTS,
    HistoryStore,
    SearchQuery,
    UpsertReport,
    load_into_model,
    parse_query,
    task_to_row,
)
from tui.history.writer import HistoryWriter

__all__ = [
    "FIELDS",
    "SOURCE_BACKEND",
    "SOURCE_EVENTS",
    "BackfillResult",
    "HistoryStore",
    "HistoryWriter",
    "SearchQuery",
    "UpsertReport",
    "backfill_from_backend",
    "load_into_model",
    "meta_to_row",
    "parse_query",
    "parse_utc_iso",
    "task_to_row",
]
