"""Persistent task history: a local SQLite file that survives restarts and crashes.

Pure Python (stdlib ``sqlite3``, ``json``, ``threading``): no Textual, and redis only
through the client handed to :func:`backfill_from_backend`.

* :class:`HistoryStore` owns the file: WAL mode, ``synchronous=NORMAL``, a busy
  timeout and short ``BEGIN IMMEDIATE`` transactions, so several consoles (several
  operators) can write the same file.  A task is one row keyed by uuid; an upsert
  never moves a task's state backwards (the model's state ranks) and never replaces a
  known field with an unknown one.
* :class:`tui.history.writer.HistoryWriter` is the only writer of a running console: a daemon thread
  that takes the changed tasks of each UI tick (:meth:`HistoryWriter.submit` never
  blocks) and writes them in one transaction at most every ``interval`` seconds, so a
  crash or ``kill -9`` loses at most the last interval's rows.
* :meth:`HistoryStore.search` takes the Tasks pane's filter syntax
  (:class:`tui.core.query.TaskFilter`) plus ``args:text`` and a time range, and picks a
  plan itself (SQLite has no per-value statistics here): the most selective indexed
  term drives the query when it matches few rows, otherwise the newest rows are
  scanned in time order until ``limit`` of them match.
* :func:`tui.history.backfill.backfill_from_backend` fills in tasks the console never saw from Celery's
  Redis result backend (``celery-task-meta-<uuid>``); they are marked
  ``source='backend'``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afirgen_tasks.settings import LEGACY_CLUSTER
from tui.core.failures import failure_type
from tui.core.model import TaskRecord
from tui.core.query import SearchQuery, Term, exc_matches, parse_query
from tui.core.states import LOST, R_CYCLE, R_FINAL, R_RECEIVED, R_STARTED, RANK
from tui.history.backend import HistoryBackend, closable_now, open_history
from tui.sources.validate import Tally, clean_history_row

__all__ = [
    "DEFAULT_CLUSTER",
    "FIELDS",
    "HistoryRefused",
    "LEGACY_CLUSTER",
    "HistoryStore",
    "SearchQuery",
    "UpsertReport",
    "clean_history_rows",
    "load_into_model",
    "merge_history_rows",
    "parse_query",
    "task_to_row",
]

log = logging.getLogger(__name__)

#: TaskRecord fields persisted, in column order (wide text last: reads of the narrow
#: columns then never touch overflow pages).
FIELDS: tuple[str, ...] = (
    "uuid",
    "name",
    "state",
    "queue",
    "priority",
    "hostname",
    "retries",
    "sent",
    "received",
    "started",
    "retried",
    "finished",
    "runtime",
    "eta",
    "expires",
    "root_id",
    "parent_id",
    "routing_key",
    "exchange",
    "revoke_reason",
    "args",
    "kwargs",
    "result",
    "exception",
    "traceback",
)
#: Extra keys of the dicts :meth:`HistoryStore.load_recent` and ``search`` return.
EXTRA_KEYS: tuple[str, ...] = ("source", "first_seen", "seen_by", "cluster")

SOURCE_EVENTS = "events"
SOURCE_BACKEND = "backend"

# The state ranks (tui.core.states): a task only moves to a higher rank, except out of
# the retry cycle into the next attempt, which has a higher retry count.
_STATE_RANK: dict[str, int] = dict(RANK)  # the console's PURGED and LOST included
#: filter field -> the column it searches
_VOCAB_COLUMN = {"state": "state", "queue": "queue", "worker": "hostname", "name": "name"}
_R_CYCLE = R_CYCLE
_FINAL = R_FINAL

#: 1: one history for every broker; 2: each row carries its ``cluster`` (the broker's
#: identity without credentials, :func:`afirgen_tasks.settings.cluster_identity`), rows of
#: version 1 are kept under :data:`LEGACY_CLUSTER`, and every index leads with the cluster.
SCHEMA_VERSION = 2
#: The cluster of a store opened without one (tests, tools); the console names its own.
DEFAULT_CLUSTER = "default"

_TIME_FIELDS = ("sent", "received", "started", "retried", "finished")
_TIME_INDEXES = tuple(FIELDS.index(f) for f in _TIME_FIELDS)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY,
    cluster TEXT NOT NULL DEFAULT '{LEGACY_CLUSTER}',
    uuid TEXT NOT NULL,
    name TEXT, state TEXT NOT NULL, rank INTEGER NOT NULL DEFAULT 0,
    queue TEXT, priority INTEGER, hostname TEXT, retries INTEGER,
    sent REAL, received REAL, started REAL, retried REAL, finished REAL, runtime REAL,
    eta TEXT, expires TEXT, root_id TEXT, parent_id TEXT, routing_key TEXT, exchange TEXT,
    revoke_reason TEXT,
    source TEXT NOT NULL DEFAULT '{SOURCE_EVENTS}',
    seen_by TEXT,
    first_seen REAL NOT NULL,
    updated REAL NOT NULL,
    args TEXT, kwargs TEXT, result TEXT, exception TEXT, traceback TEXT
);
-- a task is one row per cluster: the same id seen on another broker is another task
-- (a forged event there cannot rewrite this cluster's history)
CREATE UNIQUE INDEX IF NOT EXISTS ix_tasks_uuid ON tasks(cluster, uuid);
-- newest-first scans of one cluster: covering every filterable column but args, so a
-- scan that filters by them never reads the table
CREATE INDEX IF NOT EXISTS ix_tasks_scan
    ON tasks(cluster, first_seen, state, name, queue, hostname, priority, uuid);
CREATE INDEX IF NOT EXISTS ix_tasks_name ON tasks(cluster, name, first_seen);
CREATE INDEX IF NOT EXISTS ix_tasks_state ON tasks(cluster, state, first_seen);
CREATE INDEX IF NOT EXISTS ix_tasks_queue ON tasks(cluster, queue, first_seen);
CREATE INDEX IF NOT EXISTS ix_tasks_hostname ON tasks(cluster, hostname, first_seen);
CREATE INDEX IF NOT EXISTS ix_tasks_priority ON tasks(cluster, priority, first_seen);
-- the distinct names / states / queues / hostnames: substring terms resolve here to
-- exact values, which the indexes above can look up
CREATE TABLE IF NOT EXISTS vocab (
    field TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (field, value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
"""

#: The key in ``meta`` of the FTS watermark: every row with ``id <=`` it is in ``tasks_fts``,
#: no row above it is.  Rows are indexed after they are written, in chunks
#: (:meth:`HistoryStore.index_pending`), not by a trigger on every insert: the trigram
#: index of args and kwargs costs ~95 us a row, two thirds of an insert, and under a flood
#: the writer must keep up with the tasks first (docs/performance.md, issue 17).
FTS_WATERMARK = "fts_indexed"
_FTS_DONE = f"coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = '{FTS_WATERMARK}'), 0)"

_FTS_SCHEMA = f"""
CREATE VIRTUAL TABLE IF NOT EXISTS tasks_fts USING fts5(
    args, kwargs, content='tasks', content_rowid='id', tokenize='trigram'
);
-- a row inserted at or below the watermark (an id reused after the newest rows were
-- deleted) is indexed at once: the watermark's promise holds for every id below it
CREATE TRIGGER IF NOT EXISTS tasks_fts_ai_low AFTER INSERT ON tasks
WHEN new.id <= {_FTS_DONE} BEGIN
    INSERT INTO tasks_fts(rowid, args, kwargs) VALUES (new.id, new.args, new.kwargs);
END;
-- only indexed rows are taken out of the index: a 'delete' of a row it never held
-- would corrupt it
CREATE TRIGGER IF NOT EXISTS tasks_fts_ad_low AFTER DELETE ON tasks
WHEN old.id <= {_FTS_DONE} BEGIN
    INSERT INTO tasks_fts(tasks_fts, rowid, args, kwargs)
    VALUES ('delete', old.id, old.args, old.kwargs);
END;
CREATE TRIGGER IF NOT EXISTS tasks_fts_au_low AFTER UPDATE OF args, kwargs ON tasks
WHEN (old.args IS NOT new.args OR old.kwargs IS NOT new.kwargs) AND old.id <= {_FTS_DONE} BEGIN
    INSERT INTO tasks_fts(tasks_fts, rowid, args, kwargs)
    VALUES ('delete', old.id, old.args, old.kwargs);
    INSERT INTO tasks_fts(rowid, args, kwargs) VALUES (new.id, new.args, new.kwargs);
END;
"""
#: The triggers of the files before the watermark, which indexed every row on insert.
_FTS_EAGER_TRIGGERS = ("tasks_fts_ai", "tasks_fts_ad", "tasks_fts_au")


#: The indexes of schema 1, dropped by the migration and made again leading with the cluster.
_V1_INDEXES = (
    "ix_tasks_uuid",
    "ix_tasks_scan",
    "ix_tasks_name",
    "ix_tasks_state",
    "ix_tasks_queue",
    "ix_tasks_hostname",
    "ix_tasks_priority",
)


def _upsert_sql(placeholder: str = "?", least: str = "min") -> str:
    """The upsert with the state-rank rules, for SQLite (default) or PostgreSQL
    (``placeholder="%s", least="LEAST"``): the one definition both stores run."""
    cols = (*FIELDS, "rank", "source", "seen_by", "first_seen", "updated", "cluster")
    # "wins": the incoming row is at least as advanced as the stored one (or is the
    # next attempt out of the retry cycle).  The winner's known fields are preferred;
    # a known field is never replaced by NULL.
    # LOST ranks below RECEIVED (any later event replaces it) but replaces the RECEIVED or
    # STARTED it was marked from: the console saw the worker go.
    wins = (
        f"(excluded.rank >= tasks.rank OR (tasks.rank = {R_CYCLE} AND excluded.rank < {R_FINAL}"
        " AND coalesce(excluded.retries, 0) > coalesce(tasks.retries, 0))"
        f" OR (excluded.state = '{LOST}' AND tasks.rank IN ({R_RECEIVED}, {R_STARTED})))"
    )
    sets = []
    for col in FIELDS[1:]:
        if col == "state":
            sets.append(f"state = CASE WHEN {wins} THEN excluded.state ELSE tasks.state END")
        else:
            sets.append(
                f"{col} = CASE WHEN {wins} THEN coalesce(excluded.{col}, tasks.{col})"
                f" ELSE coalesce(tasks.{col}, excluded.{col}) END"
            )
    sets.append(f"rank = CASE WHEN {wins} THEN excluded.rank ELSE tasks.rank END")
    sets.append(f"first_seen = {least}(tasks.first_seen, excluded.first_seen)")
    sets.append("seen_by = coalesce(tasks.seen_by, excluded.seen_by)")
    sets.append("updated = excluded.updated")
    # a task seen by events is 'events' for good; the backend only fills gaps
    sets.append(
        f"source = CASE WHEN excluded.source = '{SOURCE_EVENTS}'"
        f" THEN '{SOURCE_EVENTS}' ELSE tasks.source END"
    )
    placeholders = ", ".join(placeholder for _ in cols)
    return (
        f"INSERT INTO tasks ({', '.join(cols)}) VALUES ({placeholders})"
        f" ON CONFLICT(cluster, uuid) DO UPDATE SET {', '.join(sets)}"
    )


_UPSERT = _upsert_sql()
_SELECT_COLS = ", ".join((*FIELDS, *EXTRA_KEYS))


def task_to_row(t: TaskRecord) -> dict[str, Any]:
    """A plain dict of ``t`` for :meth:`HistoryWriter.submit`: :data:`FIELDS` and ``rank``.

    Runs in the UI thread once per changed task per tick (~3,000 rows in a 5,000-event
    tick), so it is one dict display: 1.4 us a row where a ``getattr`` per field took 2.6
    (issue 17).  No copies of the (already clipped) strings.  A test holds its keys to
    ``FIELDS``.
    """
    return {
        "uuid": t.uuid,
        "name": t.name,
        "state": t.state,
        "queue": t.queue,
        "priority": t.priority,
        "hostname": t.hostname,
        "retries": t.retries,
        "sent": t.sent,
        "received": t.received,
        "started": t.started,
        "retried": t.retried,
        "finished": t.finished,
        "runtime": t.runtime,
        "eta": t.eta,
        "expires": t.expires,
        "root_id": t.root_id,
        "parent_id": t.parent_id,
        "routing_key": t.routing_key,
        "exchange": t.exchange,
        "revoke_reason": t.revoke_reason,
        "args": t.args,
        "kwargs": t.kwargs,
        "result": t.result,
        "exception": t.exception,
        "traceback": t.traceback,
        "rank": t.rank,
    }


#: SQLite INTEGER is 64-bit signed: a bigger Python int cannot be bound at all.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


def _clean_int(value: Any) -> tuple[int | None, bool]:
    """``(value or None, cleaned)``: an int SQLite can store; anything else is NULL."""
    if value is None:
        return None, False
    if value.__class__ is int and _INT_MIN <= value <= _INT_MAX:
        return value, False
    return None, True


def _clean_float(value: Any) -> tuple[float | None, bool]:
    """``(value or None, cleaned)``: a finite float (NaN, inf and ints past 1e308 are NULL)."""
    if value is None:
        return None, False
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            f = float(value)
        except OverflowError:
            return None, True
        if math.isfinite(f):
            return f, False
    return None, True


def _clean_text(value: Any) -> tuple[str | None, bool]:
    """``(text or None, cleaned)``: UTF-8 encodable text (lone surrogates become U+FFFD)."""
    if value is None:
        return None, False
    cleaned = False
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    elif not isinstance(value, str):
        try:
            value = repr(value)
        except Exception:  # a hostile __repr__: the row is kept, the value is not
            return None, True
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # sqlite3 cannot bind a lone surrogate; through UTF-16 a valid pair survives
            # and a lone one becomes U+FFFD
            value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            cleaned = True
    return value, cleaned


def _first_seen(values: list[Any], now: float) -> float:
    times = [values[i] for i in _TIME_INDEXES if values[i] is not None]
    return min(times) if times else now


def _row_values(
    row: dict[str, Any], source: str, seen_by: str | None, now: float, cluster: str
) -> tuple[tuple, int]:
    """The upsert's parameters for ``row`` and how many of its values had to be cleaned.

    Untrusted data (events, the result backend) may hold anything: what SQLite cannot
    store (ints past 64 bits, NaN, lone surrogates, odd types) is NULLed or replaced, so
    the task is saved without the bad value instead of not at all.
    """
    state, state_cleaned = _clean_text(row.get("state"))
    cleaned = int(state_cleaned)
    state = state.upper() if state else "PENDING"
    rank = row.get("rank")
    if rank.__class__ is not int or not 0 <= rank < 100:
        rank = _STATE_RANK.get(state, 0)
    values: list[Any] = []
    for key in FIELDS:
        if key == "state":
            values.append(state)
            continue
        v = row.get(key)
        if key in ("priority", "retries"):
            v, bad = _clean_int(v)
        elif key in ("sent", "received", "started", "retried", "finished", "runtime"):
            v, bad = _clean_float(v)
        else:
            v, bad = _clean_text(v)
        cleaned += int(bad)
        values.append(v)
    values.extend((rank, source, seen_by, _first_seen(values, now), now, cluster))
    return tuple(values), cleaned


def _reason(exc: BaseException) -> str:
    """A short reason for the status line (the message's first line, bounded)."""
    if isinstance(exc, OverflowError):
        return "integer too large"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:80]


#: What a single row can make SQLite (or the binding of its values) raise.  Anything else
#: (OperationalError: locked, disk full, read-only, I/O) is a write failure of the batch.
_ROW_ERRORS: tuple[type[BaseException], ...] = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.DataError,
    sqlite3.ProgrammingError,
    OverflowError,
    ValueError,
    TypeError,
)


@dataclass(slots=True)
class UpsertReport:
    """What :meth:`HistoryStore.upsert_report` did with a batch."""

    written: int = 0
    #: values NULLed or replaced so their row could be saved
    cleaned: int = 0
    #: ``(uuid or '?', reason)`` of each row that could not be saved
    rejected: list[tuple[str, str]] = field(default_factory=list)


def console_id() -> str:
    """``user@host:pid``: which console wrote a row (the ``seen_by`` column)."""
    try:
        user = os.getlogin()
    except OSError:
        user = os.environ.get("USER") or str(os.getuid())
    return f"{user}@{socket.gethostname()}:{os.getpid()}"


def _prefix_range(prefix: str) -> tuple[str, str]:
    """``[lo, hi)`` of strings starting with ``prefix`` (BINARY collation, UTF-8 order)."""
    last = prefix[-1]
    if ord(last) >= 0x10FFFF:
        return prefix, prefix + "\U0010ffff"
    return prefix, prefix[:-1] + chr(ord(last) + 1)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _in_list(values: list[str]) -> tuple[str, list[Any]]:
    """``IN (?, ?)`` for a few values (fastest to probe), a JSON array for many."""
    if len(values) <= 200:
        return f"IN ({', '.join('?' for _ in values)})", list(values)
    return "IN (SELECT value FROM json_each(?))", [json.dumps(values)]


def _fts_phrase(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


@dataclass(slots=True)
class _Clause:
    """A term in SQL: a filter (``cond``) and, when an index can find its rows, a driver."""

    cond: str
    params: list[Any]
    #: ``SELECT id ...`` subqueries (UNIONed) that list the rows the term can match
    drivers: list[tuple[str, list[Any]]] | None


# ---- the store --------------------------------------------------------------------------
class HistoryStore(HistoryBackend):
    """The task history file (SQLite, WAL).  Safe to share between processes on one machine
    (a team's consoles on many hosts share :class:`tui.history.postgres.PostgresHistoryStore`).

    One connection per thread (thread-local), so the writer thread, a search worker and
    the UI thread never share a connection.  ``max_rows`` and ``max_age_days`` bound
    the file; :meth:`prune` applies them (the writer calls it periodically).
    """

    #: an indexed term that matches fewer rows than this drives the query
    DRIVER_CAP = 20_000
    BUSY_TIMEOUT_MS = 5_000

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_rows: int = 1_000_000,
        max_age_days: float = 30.0,
        seen_by: str | None = None,
        cluster: str = DEFAULT_CLUSTER,
    ) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        #: the cluster this console writes and reads by default (its broker's identity)
        self.cluster = cluster
        #: rows the schema migration found from before clusters (kept as ``legacy``); set
        #: by the store that migrated the file, see :meth:`take_legacy_notice`
        self.migrated_legacy_rows = 0
        self.max_rows = max_rows
        self.max_age_days = max_age_days
        self.seen_by = seen_by if seen_by is not None else console_id()
        self._local = threading.local()
        #: (owning thread, connection); each Textual thread worker is a new thread
        self._conns: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._conns_lock = threading.Lock()
        self._vocab_seen: set[tuple[str, str]] = set()
        self._vocab_lock = threading.Lock()
        self.has_fts = False
        self.schema_version = SCHEMA_VERSION
        created = False
        if self.path.parent and str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _refuse_links(self.path)
            created = _create_private(self.path)
        self._init_schema()
        if created:
            # SQLite gives -wal and -shm the main file's mode; make sure of it (they hold
            # the same unredacted arguments)
            for suffix in ("-wal", "-shm"):
                _chmod_private(Path(f"{self.path}{suffix}"))

    @classmethod
    def from_settings(cls, settings: Any) -> HistoryBackend:
        """The console's store: ``[history]`` db and retention, keyed by the broker's cluster;
        a ``postgresql://`` db opens the shared PostgreSQL history (:func:`open_history`)."""
        return open_history(settings)

    # ---- connections --------------------------------------------------------------
    def connect(self) -> sqlite3.Connection:
        """A new connection configured for this store (autocommit; explicit transactions)."""
        conn = sqlite3.connect(
            self.path,
            timeout=self.BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {self.BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("PRAGMA cache_size = -32000")  # 32 MB per connection
        # scans read the covering index through the OS page cache without a copy per
        # page: 2-3x faster full scans (address space only; nothing is preloaded)
        conn.execute("PRAGMA mmap_size = 1073741824")
        # ``exc:`` in SQL is the Tasks pane's own test (one definition of the term)
        conn.create_function("afirgen_exc_match", 4, _sql_exc_match, deterministic=True)
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.connect()
            with self._conns_lock:
                # Every search or export runs in a new worker thread: close the connections
                # of threads that have ended instead of keeping one per search until quit.
                alive = []
                for thread, other in self._conns:
                    if thread.is_alive():
                        alive.append((thread, other))
                    else:
                        _close_quietly(other)
                alive.append((threading.current_thread(), conn))
                self._conns = alive
        return conn

    def close_thread_connection(self) -> None:
        """Close the calling thread's connection, if it has one (a thread about to end)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            return
        self._local.conn = None
        with self._conns_lock:
            self._conns = [(t, c) for t, c in self._conns if c is not conn]
        _close_quietly(conn)

    def connection_count(self) -> int:
        """Connections open now (one per thread that used the store)."""
        with self._conns_lock:
            return len(self._conns)

    def close(self) -> None:
        """Close every connection this store opened, except those of other threads still
        running: closing a connection while another thread writes through it crashes the
        process (SQLite frees what that thread is using).  Those close with their thread
        (:meth:`close_thread_connection`) or the process."""
        with self._conns_lock:
            now, self._conns = closable_now(self._conns)
        for conn in now:
            _close_quietly(conn)
        self._local.conn = None  # this thread's; a running thread keeps its own

    def _init_schema(self) -> None:
        conn = self._conn()
        # journal_mode=WAL is persistent and needs a moment alone with the file; another
        # console creating it at the same time gets "locked" once: retry.
        deadline = time.monotonic() + self.BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        if str(mode).lower() != "wal":
            log.warning("history %s: journal_mode is %s, not wal", self.path, mode)
        with self.transaction() as c:
            self._migrate(c)
            for stmt in _split_sql(_SCHEMA):
                c.execute(stmt)
            try:
                self._fts_schema(c)
            except sqlite3.OperationalError as exc:  # no FTS5 or no trigram: LIKE scans
                log.warning("history: no FTS5 trigram index (%s); args search scans", exc)
            c.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)",
                (str(SCHEMA_VERSION),),
            )
            found = c.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            try:
                self.schema_version = int(found[0])
            except (TypeError, ValueError):
                self.schema_version = SCHEMA_VERSION
        if self.schema_version > SCHEMA_VERSION:
            log.warning(
                "history %s: schema %s is newer than this console's (%s)",
                self.path,
                self.schema_version,
                SCHEMA_VERSION,
            )
        self.has_fts = bool(
            conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'tasks_fts'").fetchone()
        )

    def _fts_schema(self, c: sqlite3.Connection) -> None:
        """The args/kwargs index and its watermark, inside the schema transaction.

        A file made before the watermark has every row indexed by its eager triggers: they
        are dropped and the watermark set to the last row.  A new index (a new file, or
        SQLite gained FTS5) starts at 0 and :meth:`index_pending` fills it in.  A file
        where both are found (an older console opened it after this one: its triggers
        indexed some rows above the watermark, not others), or whose watermark is not a
        row id, has its index rebuilt from the table: the only state known to be right.
        """
        eager = c.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name IN (?, ?, ?)",
            _FTS_EAGER_TRIGGERS,
        ).fetchone()[0]
        had_index = (
            c.execute("SELECT 1 FROM sqlite_master WHERE name = 'tasks_fts'").fetchone() is not None
        )
        found = c.execute("SELECT value FROM meta WHERE key = ?", (FTS_WATERMARK,)).fetchone()
        for stmt in _split_sql(_FTS_SCHEMA):
            c.execute(stmt)
        for name in _FTS_EAGER_TRIGGERS if eager else ():
            c.execute(f"DROP TRIGGER IF EXISTS {name}")
        top = c.execute("SELECT coalesce(max(id), 0) FROM tasks").fetchone()[0]
        if not had_index:
            mark, why = 0, ""  # a new index: index_pending fills it in
        elif found is None:
            # an index the eager triggers kept (or, with none, a file of an unknown making)
            mark, why = (top, "") if eager else (top, "an index without a watermark")
        elif eager:
            mark, why = top, "an older console's triggers found beside the watermark"
        else:
            value = found[0]
            if (
                isinstance(value, str)
                and value.isascii()
                and value.isdigit()
                and value == str(int(value))
            ):
                mark, why = min(int(value), top), ""  # above the last row: nothing to index
            else:
                mark, why = top, f"the watermark is not a row id ({str(value)[:20]!r})"
        if why:
            log.warning("history %s: %s; the args index is rebuilt", self.path, why)
            c.execute("INSERT INTO tasks_fts(tasks_fts) VALUES ('rebuild')")
        c.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (FTS_WATERMARK, str(mark))
        )

    def _migrate(self, c: sqlite3.Connection) -> None:
        """Schema 1 -> 2, inside the schema transaction (several consoles may open the file at
        once: the first migrates, the others find the column there).

        Rows of schema 1 were written by consoles that did not record their broker, so which
        cluster they came from is unknown: they are kept under :data:`LEGACY_CLUSTER`, which
        no console's own view shows; ``cluster:all`` (or ``cluster:legacy``) in the history
        search finds them.  The indexes are made again, each leading with the cluster.
        """
        columns = {r[1] for r in c.execute("PRAGMA table_info(tasks)")}
        if not columns or "cluster" in columns:
            return  # a new file, or already migrated
        c.execute(f"ALTER TABLE tasks ADD COLUMN cluster TEXT NOT NULL DEFAULT '{LEGACY_CLUSTER}'")
        for name in _V1_INDEXES:
            c.execute(f"DROP INDEX IF EXISTS {name}")
        legacy = c.execute("SELECT count(*) FROM tasks").fetchone()[0]
        c.execute(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID"
        )
        c.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
        )
        if legacy:
            # said once, by the first console that opens the file (take_legacy_notice)
            c.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('legacy_notice', ?)",
                (str(legacy),),
            )
        self.migrated_legacy_rows = legacy
        log.info(
            "history %s: schema 1 -> 2, %d row(s) kept as %r", self.path, legacy, LEGACY_CLUSTER
        )

    def take_legacy_notice(self) -> int:
        """The rows a migration kept as ``legacy``, if no console has said so yet (then 0).

        The first console to call this after the migration gets the count and clears it, so
        the operators are told once, not at every start.
        """
        with self.transaction() as c:
            row = c.execute("SELECT value FROM meta WHERE key = 'legacy_notice'").fetchone()
            if row is None:
                return 0
            c.execute("DELETE FROM meta WHERE key = 'legacy_notice'")
        try:
            return int(row[0])
        except (TypeError, ValueError):
            return 0

    class _Tx:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def __enter__(self) -> sqlite3.Connection:
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, exc_type: object, *rest: object) -> None:
            if exc_type is None:
                self.conn.execute("COMMIT")
            else:
                try:
                    self.conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass

    def transaction(self) -> HistoryStore._Tx:
        """``with store.transaction() as conn:`` a write transaction (BEGIN IMMEDIATE).

        IMMEDIATE takes the write lock up front, so the busy timeout applies and two
        writers never deadlock upgrading a read lock.
        """
        return HistoryStore._Tx(self._conn())

    # ---- writing ------------------------------------------------------------------
    def upsert_report(
        self, rows: Iterable[dict[str, Any]], source: str = SOURCE_EVENTS, now: float | None = None
    ) -> UpsertReport:
        """Insert or merge ``rows`` in one transaction; a bad row never costs the batch.

        Values SQLite cannot store are cleaned first (counted in ``cleaned``).  Should the
        batch still fail on a row, it is written again row by row and each row that fails
        is reported with its reason.  A failure of the write itself (locked, disk full,
        read-only) raises ``sqlite3.OperationalError``: nothing was written.
        """
        now = time.time() if now is None else now
        report = UpsertReport()
        values = []
        seen_by = self.seen_by
        cluster = self.cluster
        for row in rows:
            uuid = row.get("uuid")
            if not isinstance(uuid, str) or not uuid:
                report.rejected.append(("?", "no task id"))
                continue
            try:
                v, cleaned = _row_values(row, source, seen_by, now, cluster)
            except Exception as exc:  # a row cleaning did not foresee: skip it, say why
                report.rejected.append((uuid, _reason(exc)))
                continue
            report.cleaned += cleaned
            values.append(v)
        if not values:
            return report
        try:
            self._write(values, batch=True)
            report.written = len(values)
        except _ROW_ERRORS:
            # one row spoiled the batch: write them one by one, in one transaction
            report.written, failed = self._write(values, batch=False)
            report.rejected.extend(failed)
        return report

    def _write(self, values: list[tuple], batch: bool) -> tuple[int, list[tuple[str, str]]]:
        """Upsert ``values`` (and their vocabulary) in one transaction.

        ``batch``: one ``executemany`` (any error aborts it all); otherwise row by row,
        skipping the rows that fail with a row error (SQLite rolls back only the failed
        statement).  Returns the rows written and the ``(uuid, reason)`` of those skipped.
        """
        failed: list[tuple[str, str]] = []
        written: list[tuple] = []
        with self.transaction() as conn:
            if batch:
                conn.executemany(_UPSERT, values)
                written = values
            else:
                for v in values:
                    try:
                        conn.execute(_UPSERT, v)
                    except _ROW_ERRORS as exc:
                        failed.append((str(v[0]), _reason(exc)))
                    else:
                        written.append(v)
            vocab: set[tuple[str, str]] = set()
            for v in written:
                # the vocabulary is shared by every cluster: a value another cluster uses
                # only widens an IN list, the cluster condition still holds
                vocab.add(("state", v[2]))
                for key, idx in (("name", 1), ("queue", 3), ("hostname", 5)):
                    if v[idx] is not None:
                        vocab.add((key, v[idx]))
            with self._vocab_lock:
                new_vocab = vocab - self._vocab_seen
            if new_vocab:
                conn.executemany(
                    "INSERT OR IGNORE INTO vocab(field, value) VALUES (?, ?)", sorted(new_vocab)
                )
        with self._vocab_lock:
            self._vocab_seen |= new_vocab
        return len(written), failed

    def prune(self, now: float | None = None, chunk: int = 20_000, max_chunks: int = 50) -> int:
        """Delete rows past ``max_age_days`` and past ``max_rows``, in short transactions.

        Count retention keeps the ``max_rows`` most recently *inserted* rows (row ids
        only grow), which needs no count of the table.  Returns the rows deleted.
        """
        now = time.time() if now is None else now
        conn = self._conn()
        deleted = 0
        horizon = now - self.max_age_days * 86400
        # every cluster's old rows (the file's bound, whoever wrote them); per cluster, so
        # the (cluster, first_seen) index finds them
        for cluster in self.clusters():
            deleted += self._delete_chunks(
                "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks INDEXED BY ix_tasks_scan"
                " WHERE cluster = ? AND first_seen < ? LIMIT ?)",
                (cluster, horizon, chunk),
                chunk,
                max_chunks,
            )
        row = conn.execute("SELECT max(id) FROM tasks").fetchone()
        top = row[0] if row else None
        if top is not None and top > self.max_rows:
            deleted += self._delete_chunks(
                "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks WHERE id <= ? ORDER BY id LIMIT ?)",
                (top - self.max_rows, chunk),
                chunk,
                max_chunks,
            )
        return deleted

    def index_pending(self, budget_s: float = 0.05, chunk: int = 1_000) -> int:
        """Add the rows written since the last call to the args/kwargs index, for about
        ``budget_s`` seconds (one short transaction per ``chunk`` rows); returns the rows
        indexed.  The writer thread calls it after each flush, with a small budget while
        rows wait to be written (the history first, the index after).  A search meanwhile
        scans the rows not yet indexed, so ``args:`` finds them all the same.
        """
        if not self.has_fts:
            return 0
        deadline = time.perf_counter() + budget_s
        done = 0
        while True:
            with self.transaction() as c:
                start = c.execute(f"SELECT {_FTS_DONE}").fetchone()[0]
                top = c.execute(
                    "SELECT max(id) FROM (SELECT id FROM tasks WHERE id > ? ORDER BY id LIMIT ?)",
                    (start, chunk),
                ).fetchone()[0]
                if top is None:
                    return done
                n = c.execute(
                    "INSERT INTO tasks_fts(rowid, args, kwargs)"
                    " SELECT id, args, kwargs FROM tasks WHERE id > ? AND id <= ?",
                    (start, top),
                ).rowcount
                c.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                    (FTS_WATERMARK, str(top)),
                )
            done += max(n, 0)
            if time.perf_counter() >= deadline:
                return done

    def index_backlog(self) -> int:
        """Rows written but not yet in the args/kwargs index (0 without one)."""
        if not self.has_fts:
            return 0
        conn = self._conn()
        return conn.execute(f"SELECT count(*) FROM tasks WHERE id > {_FTS_DONE}").fetchone()[0]

    def _delete_chunks(self, sql: str, params: tuple[Any, ...], chunk: int, max_chunks: int) -> int:
        """Run a ``LIMIT chunk`` DELETE, one short transaction each, until a chunk comes up short."""
        deleted = 0
        for _ in range(max_chunks):
            with self.transaction() as c:
                n = c.execute(sql, params).rowcount
            deleted += n
            if n < chunk:
                break
        return deleted

    # ---- reading ------------------------------------------------------------------
    def count(self, cluster: str | None = None) -> int:
        """Rows held, of every cluster or of ``cluster`` (a full count: for tests and the
        status line, not per tick)."""
        if cluster is None:
            return self._conn().execute("SELECT count(*) FROM tasks").fetchone()[0]
        return (
            self._conn()
            .execute("SELECT count(*) FROM tasks WHERE cluster = ?", (cluster,))
            .fetchone()[0]
        )

    def clusters(self) -> list[str]:
        """Every cluster the file holds rows of, sorted (a seek per cluster on the index)."""
        conn = self._conn()
        out: list[str] = []
        row = conn.execute("SELECT min(cluster) FROM tasks").fetchone()
        while row is not None and row[0] is not None:
            out.append(row[0])
            row = conn.execute(
                "SELECT min(cluster) FROM tasks WHERE cluster > ?", (row[0],)
            ).fetchone()
        return out

    def _fetch(self, sql: str, params: Iterable[Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows of a read.  TEXT that is not UTF-8 (a lone surrogate's
        bytes, a file written by another tool or damaged) made the whole read fail with
        "Could not decode to UTF-8": then the read is repeated with such bytes replaced by
        U+FFFD, so one bad value costs neither the load at start nor the search."""
        conn = self._conn()
        params = tuple(params)
        try:
            cur = conn.execute(sql, params)
            return [d[0] for d in cur.description], cur.fetchall()
        except sqlite3.OperationalError as exc:
            if "decode" not in str(exc):
                raise
        conn.text_factory = _lenient_text
        try:
            cur = conn.execute(sql, params)
            return [d[0] for d in cur.description], cur.fetchall()
        finally:
            conn.text_factory = str

    def _rows(self, sql: str, params: Iterable[Any]) -> list[dict[str, Any]]:
        keys, rows = self._fetch(sql, params)
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def load_recent(self, limit: int = 10_000) -> list[dict[str, Any]]:
        """The ``limit`` newest tasks of this store's cluster (by first-seen time), newest first.

        Dicts with TaskRecord field names plus ``source`` ('events' / 'backend'),
        ``first_seen``, ``seen_by`` and ``cluster``; see :func:`load_into_model`.  Another
        cluster's rows (and the ``legacy`` ones) are never loaded into this console.
        """
        return self._rows(
            f"SELECT {_SELECT_COLS} FROM tasks INDEXED BY ix_tasks_scan"
            " WHERE cluster = ? ORDER BY first_seen DESC LIMIT ?",
            (self.cluster, limit),
        )

    def iter_recent(self, limit: int = 10_000, page: int = 5_000) -> Iterator[list[dict[str, Any]]]:
        """:meth:`load_recent` in pages, read with one cursor (the loading thread's own
        connection: the writer goes on writing beside it, WAL).  TEXT that is not UTF-8
        makes SQLite stop the read: it is read again with U+FFFD (as :meth:`_fetch`),
        skipping the rows already given."""
        sql = (
            f"SELECT {_SELECT_COLS} FROM tasks INDEXED BY ix_tasks_scan"
            " WHERE cluster = ? ORDER BY first_seen DESC LIMIT ?"
        )
        conn = self._conn()
        given: set[str] = set()
        for lenient in (False, True):
            if lenient:
                conn.text_factory = _lenient_text
            try:
                cur = conn.execute(sql, (self.cluster, limit))
                keys = [d[0] for d in cur.description]
                while len(given) < limit:
                    chunk = cur.fetchmany(page)
                    if not chunk:
                        return
                    rows = [dict(zip(keys, r, strict=True)) for r in chunk]
                    if given and lenient:
                        rows = [r for r in rows if r["uuid"] not in given]
                        if not rows:
                            continue
                    given.update(r["uuid"] for r in rows)
                    yield rows
                return
            except sqlite3.OperationalError as exc:
                if lenient or "decode" not in str(exc):
                    raise
            finally:
                if lenient:
                    conn.text_factory = str

    def get(self, uuid: str) -> dict[str, Any] | None:
        """One task of this cluster by uuid, or None."""
        rows = self._rows(
            f"SELECT {_SELECT_COLS} FROM tasks WHERE cluster = ? AND uuid = ?",
            (self.cluster, uuid),
        )
        return rows[0] if rows else None

    def existing(self, uuids: Collection[str]) -> dict[str, int]:
        """``{uuid: rank}`` for those of ``uuids`` this cluster's history holds."""
        if not uuids:
            return {}
        _keys, rows = self._fetch(
            "SELECT uuid, rank FROM tasks WHERE cluster = ?"
            " AND uuid IN (SELECT value FROM json_each(?))",
            (self.cluster, json.dumps(list(uuids))),
        )
        return dict(rows)

    def _vocab(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {"state": [], "queue": [], "hostname": [], "name": []}
        for fld, value in self._fetch("SELECT field, value FROM vocab", ())[1]:
            out.setdefault(fld, []).append(value)
        return out

    def search_with_plan(
        self,
        query: str = "",
        since: float | None = None,
        until: float | None = None,
        limit: int = 500,
        cluster: str | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """:meth:`search` in one cluster (this store's by default), also returning which plan
        ran (``scan`` or ``driver:<term>``)."""
        cluster = self.cluster if cluster is None else cluster
        parsed = parse_query(query)
        if parsed.never or limit <= 0:
            return [], "never"
        vocab = (
            self._vocab()
            if any(t.kind in ("bare", "state", "queue", "worker", "name") for t in parsed.terms)
            else {}
        )
        clauses: list[tuple[str, _Clause]] = []
        for term in parsed.terms:
            clause = self._clause(term, vocab, cluster)
            if clause is None:
                return [], "never"  # a term no row can match
            clauses.append((term.kind, clause))
        time_conds: list[str] = []
        time_params: list[Any] = []
        if since is not None:
            time_conds.append("first_seen >= ?")
            time_params.append(float(since))
        if until is not None:
            time_conds.append("first_seen <= ?")
            time_params.append(float(until))
        conds, params = ["cluster = ?", *time_conds], [cluster, *time_params]
        for _kind, clause in clauses:
            conds.append(clause.cond)
            params.extend(clause.params)
        where = " AND ".join(conds)
        conn = self._conn()

        # The plan: the indexed term matching the fewest rows drives, if it matches
        # fewer than DRIVER_CAP (counting stops there, so choosing costs little);
        # otherwise scan newest first: every term then matches often, and ``limit``
        # matches come soon.  A small time window alone makes the scan cheap.
        best: tuple[int, str, str, list[Any]] | None = None
        cap = self.DRIVER_CAP
        small_window = (
            bool(time_conds)
            and self._count_capped(
                conn,
                f"{_IN_CLUSTER} " + " AND ".join(time_conds),
                [cluster, *time_params],
                cap,
            )
            < cap
        )
        if clauses and not small_window:
            for kind, clause in sorted(clauses, key=lambda kc: _KIND_ORDER.get(kc[0], 9)):
                if not clause.drivers:
                    continue
                sub = " UNION ".join(s for s, _ in clause.drivers)
                sub_params = [p for _, ps in clause.drivers for p in ps]
                n = self._count_capped(conn, sub, sub_params, cap)
                if n < cap and (best is None or n < best[0]):
                    best = (n, kind, sub, sub_params)
                if best is not None and best[0] <= limit:
                    break
        if best is None:
            plan = "scan"
            ids_sql = (
                f"SELECT id FROM tasks INDEXED BY ix_tasks_scan WHERE {where}"
                " ORDER BY first_seen DESC LIMIT ?"
            )
            ids_params = [*params, limit]
        else:
            _n, kind, sub, sub_params = best
            plan = f"driver:{kind}"
            ids_sql = (
                f"SELECT id FROM tasks NOT INDEXED WHERE id IN ({sub}) AND {where}"
                " ORDER BY first_seen DESC LIMIT ?"
            )
            ids_params = [*sub_params, *params, limit]
        sql = f"SELECT {_SELECT_COLS} FROM tasks WHERE id IN ({ids_sql}) ORDER BY first_seen DESC"
        return self._rows(sql, ids_params), plan

    @staticmethod
    def _count_capped(conn: sqlite3.Connection, sub: str, params: list[Any], cap: int) -> int:
        return conn.execute(f"SELECT count(*) FROM ({sub} LIMIT ?)", (*params, cap)).fetchone()[0]

    def _clause(self, term: Term, vocab: dict[str, list[str]], cluster: str) -> _Clause | None:
        """SQL for one term, or None when no row can match it."""
        kind = term.kind
        needles = term.needles
        if kind == "uuid" or kind == "bare":
            uuid_conds, uuid_params, uuid_drivers = [], [], []
            for n in needles:
                lo, hi = _prefix_range(n)
                uuid_conds.append("(+uuid >= ? AND +uuid < ?)")
                uuid_params += [lo, hi]
                uuid_drivers.append((f"{_IN_CLUSTER} uuid >= ? AND uuid < ?", [cluster, lo, hi]))
            if kind == "uuid":
                return _Clause("(" + " OR ".join(uuid_conds) + ")", uuid_params, uuid_drivers)
            # bare: uuid prefix, or a substring of name, state, queue or worker
            needle = needles[0]
            conds, params, drivers = list(uuid_conds), list(uuid_params), list(uuid_drivers)
            for col in ("name", "state", "queue", "hostname"):
                values = [v for v in vocab.get(col, ()) if needle in v.lower()]
                if values:
                    in_sql, in_params = _in_list(values)
                    conds.append(f"+{col} {in_sql}")
                    params += in_params
                    drivers.append((f"{_IN_CLUSTER} {col} {in_sql}", [cluster, *in_params]))
            return _Clause("(" + " OR ".join(conds) + ")", params, drivers)
        if kind in _VOCAB_COLUMN:
            col = _VOCAB_COLUMN[kind]
            if kind == "state":
                values = [v for v in vocab.get(col, ()) if v.lower().startswith(tuple(needles))]
            else:
                values = [v for v in vocab.get(col, ()) if any(n in v.lower() for n in needles)]
            if not values:
                return None
            in_sql, in_params = _in_list(values)
            return _Clause(
                f"+{col} {in_sql}",
                in_params,
                [(f"{_IN_CLUSTER} {col} {in_sql}", [cluster, *in_params])],
            )
        if kind == "prio":
            conds, params, drivers = [], [], []
            for alt in term.prio:
                if alt[0] == "range":
                    expr, ps = "BETWEEN ? AND ?", [alt[1], alt[2]]
                else:
                    expr, ps = f"{'<>' if alt[0] == '!=' else alt[0]} ?", [alt[1]]
                conds.append(f"+priority {expr}")
                params += ps
                drivers.append((f"{_IN_CLUSTER} priority {expr}", [cluster, *ps]))
            return _Clause("(" + " OR ".join(conds) + ")", params, drivers)
        if kind == "exc":
            # no index: the exception's type is parsed from its text (or the traceback's
            # last line) by the same function the pane uses; rows with no exception (and
            # not failed) are passed over before it is called
            # as BLOBs: a stored text that is not UTF-8 is read leniently, as everywhere
            conds = [
                "afirgen_exc_match(?, CAST(exception AS BLOB), CAST(traceback AS BLOB), state)"
                for _ in needles
            ]
            return _Clause(
                "((exception IS NOT NULL OR traceback IS NOT NULL OR state = 'FAILURE') AND ("
                + " OR ".join(conds)
                + "))",
                list(needles),
                None,
            )
        if kind == "args":
            conds, params = [], []
            for n in needles:
                pat = f"%{_like_escape(n)}%"
                conds.append("(args LIKE ? ESCAPE '\\' OR kwargs LIKE ? ESCAPE '\\')")
                params += [pat, pat]
            fts: list[tuple[str, list[Any]]] | None = None
            # an FTS5 query cannot hold NUL ("unterminated string"): such a term scans
            if self.has_fts and not any("\x00" in n for n in needles):
                match = " OR ".join(_fts_phrase(n) for n in needles)
                fts = [
                    ("SELECT rowid AS id FROM tasks_fts WHERE tasks_fts MATCH ?", [match]),
                    # the rows not indexed yet (index_pending): the LIKE above decides them
                    (f"SELECT id FROM tasks WHERE id > {_FTS_DONE}", []),
                ]
            return _Clause("(" + " OR ".join(conds) + ")", params, fts)
        raise ValueError(f"unknown term kind {kind!r}")


def _sql_exc_match(
    needle: str, exception: bytes | None, traceback: bytes | None, state: str | None
) -> int:
    """``exc:`` on one row (SQLite calls it): :func:`tui.core.query.exc_matches`."""
    try:
        exc = _lenient_text(exception) if exception is not None else None
        tb = _lenient_text(traceback) if traceback is not None else None
        return int(exc_matches([needle], failure_type(exc, tb, state), exc))
    except Exception:  # a stored value of an unexpected type: no match, never a failed search
        return 0


#: the start of a driver subquery: the ids of one cluster's rows that ...
_IN_CLUSTER = "SELECT id FROM tasks WHERE cluster = ? AND"

# uuid prefixes are the most selective, args the costliest to count
_KIND_ORDER = {
    "uuid": 0,
    "name": 1,
    "worker": 2,
    "queue": 3,
    "state": 4,
    "prio": 5,
    "bare": 6,
    "args": 7,
    "exc": 8,
}


def _create_private(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 unless it exists; True if this call created it.

    The history holds task arguments unredacted (like the exports, which are 0600).  A file
    that exists keeps its mode: several operators' consoles may share it on purpose.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    _chmod_private(path)  # the umask can only remove bits, but be explicit
    return True


class HistoryRefused(OSError):
    """The history file cannot be used safely (the message says why)."""


def _refuse_links(path: Path) -> None:
    """Refuse a history file, ``-wal`` or ``-shm`` that is a symbolic link.

    SQLite follows links: one planted at the path would put the unredacted task history
    wherever it points, created with the umask's mode rather than 0600 (the audit log
    refuses links the same way).
    """
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if p.is_symlink():
            raise HistoryRefused(
                f"{p} is a symbolic link (refused: the task history is never "
                "written through a link)"
            )


def _chmod_private(path: Path) -> None:
    try:
        os.chmod(path, 0o600, follow_symlinks=False)
    except (FileNotFoundError, NotImplementedError):
        pass  # not there (yet), or a platform without lchmod


def _lenient_text(raw: bytes) -> str:
    """SQLite TEXT as str, bytes that are not UTF-8 replaced (see :meth:`HistoryStore._fetch`)."""
    return raw.decode("utf-8", "replace")


def _close_quietly(conn: sqlite3.Connection) -> None:
    try:
        conn.close()
    except sqlite3.Error:
        pass


def _split_sql(script: str) -> Iterator[str]:
    """Statements of a schema script (triggers hold ';' inside BEGIN ... END)."""
    buf: list[str] = []
    for line in script.splitlines():
        if line.strip().startswith("--") or not line.strip():
            continue
        buf.append(line)
        text = "\n".join(buf)
        if sqlite3.complete_statement(text):
            yield text
            buf = []
    if buf:
        yield "\n".join(buf)


def load_into_model(model: Any, rows: list[dict[str, Any]], tally: Tally | None = None) -> set[str]:
    """Feed ``rows`` (newest first, as :meth:`HistoryStore.load_recent` returns them) to a
    :class:`tui.core.model.ClusterModel`, oldest first so the model's first-seen order holds.

    Every row passes the trust boundary first (:func:`clean_history_rows`).  Returns the
    uuids filled from the result backend (``source == 'backend'``), for the pane to mark.
    Runs in the UI thread (only the UI thread mutates the model); the console's start-up
    load cleans in its loader thread and merges in slices (:func:`merge_history_rows`).
    """
    limit = getattr(model, "max_tasks", len(rows))
    return merge_history_rows(model, clean_history_rows(rows, tally, limit))[0]


def clean_history_rows(
    rows: list[dict[str, Any]],
    tally: Tally | None = None,
    limit: int | None = None,
    pause: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """The first ``limit`` of ``rows`` (newest first) through the trust boundary, oldest
    first: :func:`tui.sources.validate.clean_history_row` for each (rows written before it
    existed may hold NaN times, escapes or 2**70 priorities).  A row without a usable uuid
    is skipped, bad fields are dropped or cleaned; both are counted in ``tally``.

    Touches no model: the console runs it in the thread that read the rows (half of a
    200k-row load's time, off the UI thread), with ``pause()`` called every
    :data:`PAUSE_EVERY` rows (to let the UI thread have the GIL)."""
    tally = tally if tally is not None else Tally()
    now = time.time()
    clean = clean_history_row
    out = []
    for i, raw in enumerate(reversed(rows[:limit] if limit is not None else rows)):
        if pause is not None and i % PAUSE_EVERY == 0:
            pause()
        row = clean(raw, tally, now)
        if row is not None:
            out.append(row)
    return out


#: Rows cleaned between two calls of :func:`clean_history_rows`' ``pause``.
PAUSE_EVERY = 1000


def merge_history_rows(
    model: Any, rows: Sequence[dict[str, Any] | None], behind: bool = False
) -> tuple[set[str], int]:
    """Merge cleaned ``rows`` (:func:`clean_history_rows`) into ``model``; returns the uuids
    that came from the result backend and how many tasks the rows added to the model.  UI
    thread only.  The rows' dicts are consumed (their ``uuid`` is popped).

    Oldest first; or, with ``behind``, newest first, each older than anything the model
    holds (the start-up load, merged while live events are applied: see
    :meth:`tui.core.model.ClusterModel.merge_task_info`)."""
    backend: set[str] = set()
    merge = model.merge_task_info
    known = model.get_task
    created = 0
    for row in rows:
        if row is None:
            continue
        uuid = row.pop("uuid")
        new = known(uuid) is None
        if merge(uuid, behind=behind, **row) and new and known(uuid) is not None:
            created += 1
            # marked "backend" only when the row made the task: one the cluster's events
            # made is not the result backend's
            if row.get("source") == SOURCE_BACKEND:
                backend.add(uuid)
        elif not behind and row.get("source") == SOURCE_BACKEND:
            backend.add(uuid)
    return backend, created
