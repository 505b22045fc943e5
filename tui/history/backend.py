"""What every history store offers: :class:`HistoryBackend`.

Two stores implement it: :class:`tui.history.store.HistoryStore` (a SQLite file, one
machine) and :class:`tui.history.postgres.PostgresHistoryStore` (a PostgreSQL database a
team's consoles share).  ``[history] db`` picks one (:func:`open_history`).  The writer, the
backfill, the console's history service and the exports use only what is declared here, and
every row they get back is the same dict: TaskRecord field names plus ``source``,
``first_seen``, ``seen_by`` and ``cluster``.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from afirgen_tasks.settings import is_postgres_url

if TYPE_CHECKING:
    from tui.history.store import UpsertReport

C = TypeVar("C")


def closable_now(
    conns: list[tuple[threading.Thread, C]],
) -> tuple[list[C], list[tuple[threading.Thread, C]]]:
    """Split a store's ``(thread, connection)`` list at close: the connections to close now
    (the calling thread's, and those of threads that ended), and those to keep: closing a
    connection while another thread writes through it crashes the process (the driver
    frees what that thread is using).  A kept one closes with its thread or the process."""
    me = threading.current_thread()
    now, keep = [], []
    for thread, conn in conns:
        if thread is me or not thread.is_alive():
            now.append(conn)
        else:
            keep.append((thread, conn))
    return now, keep


class HistoryBackend(ABC):
    """A task history keyed by ``(cluster, uuid)``; thread-safe (a connection per thread).

    An upsert never moves a task's state backwards (the ranks of :mod:`tui.core.states`) and
    never replaces a known field with an unknown one; a row the store cannot hold is cleaned
    or skipped and said, never raised.
    """

    #: the cluster this console writes and reads by default (its broker's identity)
    cluster: str
    #: ``user@host:pid`` of the console writing (the ``seen_by`` column)
    seen_by: str
    max_rows: int
    max_age_days: float
    #: True when ``args:`` is answered from an index (FTS5 trigram, pg_trgm), else a scan
    has_fts: bool
    #: the schema version the store found (or made)
    schema_version: int
    #: rows a schema migration kept as ``legacy`` (see :meth:`take_legacy_notice`)
    migrated_legacy_rows: int
    #: where the history lives, safe to show (a path, or a URL with its password masked)
    location: str

    # ---- writing ----------------------------------------------------------------------
    def upsert(
        self, rows: Iterable[dict[str, Any]], source: str = "events", now: float | None = None
    ) -> int:
        """Insert or merge ``rows`` (TaskRecord-field dicts); returns the count written.

        See :meth:`upsert_report` (a row that cannot be saved is skipped, not raised).
        """
        return self.upsert_report(rows, source, now).written

    @abstractmethod
    def upsert_report(
        self, rows: Iterable[dict[str, Any]], source: str = "events", now: float | None = None
    ) -> UpsertReport:
        """Insert or merge ``rows`` in one transaction; a bad row never costs the batch.  A
        failure of the write itself (locked, unreachable, disk full) raises: nothing was
        written."""

    @abstractmethod
    def prune(self, now: float | None = None, chunk: int = 20_000, max_chunks: int = 50) -> int:
        """Delete rows past ``max_age_days`` and past ``max_rows``; returns the rows deleted."""

    def index_pending(self, budget_s: float = 0.05, chunk: int = 1_000) -> int:
        """Index rows written but not yet searchable by ``args:`` from an index, for about
        ``budget_s`` seconds; returns the rows indexed.  A store whose index is kept on
        every write (PostgreSQL's pg_trgm) has nothing to do."""
        return 0

    def index_backlog(self) -> int:
        """Rows written but not yet in the ``args:`` index (0 when it is kept on write)."""
        return 0

    @abstractmethod
    def take_legacy_notice(self) -> int:
        """Rows a migration kept as ``legacy`` if no console has said so yet (then 0)."""

    # ---- reading ----------------------------------------------------------------------
    @abstractmethod
    def count(self, cluster: str | None = None) -> int:
        """Rows held, of every cluster or of ``cluster``."""

    @abstractmethod
    def clusters(self) -> list[str]:
        """Every cluster the history holds rows of, sorted."""

    @abstractmethod
    def load_recent(self, limit: int = 10_000) -> list[dict[str, Any]]:
        """The ``limit`` newest tasks of this store's cluster (by first-seen), newest first."""

    def iter_recent(self, limit: int = 10_000, page: int = 5_000) -> Iterator[list[dict[str, Any]]]:
        """:meth:`load_recent` in pages of at most ``page`` rows, newest first, so that a
        reader holds one page of rows at a time, not all of them (a 200k-row history read at
        once took 600 MB that the process kept).  This default reads them all at once."""
        rows = self.load_recent(limit)
        for i in range(0, len(rows), page):
            yield rows[i : i + page]

    @abstractmethod
    def get(self, uuid: str) -> dict[str, Any] | None:
        """One task of this cluster by uuid, or None."""

    @abstractmethod
    def existing(self, uuids: Collection[str]) -> dict[str, int]:
        """``{uuid: rank}`` for those of ``uuids`` this cluster's history holds."""

    @abstractmethod
    def search_with_plan(
        self,
        query: str = "",
        since: float | None = None,
        until: float | None = None,
        limit: int = 500,
        cluster: str | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """:meth:`search` in one cluster (this store's by default), also returning which plan
        ran (for tests and benchmarks)."""

    def resolve_scope(self, scope: str = "") -> list[str]:
        """The clusters a history search covers: ``""``/``this`` is this console's cluster,
        ``all`` (or ``*``) every cluster in the history, other text the clusters whose identity
        holds it (``legacy``, ``:6380``, ``/2``...).  ValueError names the known clusters when
        none matches."""
        scope = scope.strip().lower()
        if scope in ("", "this"):
            return [self.cluster]
        known = self.clusters()
        if scope in ("all", "*"):
            return known
        found = [c for c in known if scope in c.lower()]
        if not found:
            raise ValueError(
                f"no cluster matching {scope!r} in the history"
                f" (clusters: {', '.join(known) or 'none'})"
            )
        return found

    def search(
        self,
        query: str = "",
        since: float | None = None,
        until: float | None = None,
        limit: int = 500,
        scope: str = "",
    ) -> list[dict[str, Any]]:
        """Tasks matching the Tasks pane filter ``query`` (plus ``args:text``), newest first.

        ``since``/``until`` bound the first-seen time (epoch seconds, inclusive).  A query
        with an unreadable ``prio:`` matches nothing (like the pane).  ``scope`` says which
        clusters (:meth:`resolve_scope`): this store's own by default, ``all`` for every one;
        ValueError when it names none.  Runs on the caller's thread: call it from a thread
        worker, not the UI thread.
        """
        clusters = self.resolve_scope(scope)
        if len(clusters) == 1:
            return self.search_with_plan(query, since, until, limit, clusters[0])[0]
        # one indexed search per cluster (each index leads with the cluster), merged
        found: list[dict[str, Any]] = []
        for cluster in clusters:
            found.extend(self.search_with_plan(query, since, until, limit, cluster)[0])
        found.sort(key=lambda r: r["first_seen"], reverse=True)
        return found[:limit]

    # ---- connections ------------------------------------------------------------------
    @abstractmethod
    def close_thread_connection(self) -> None:
        """Close the calling thread's connection, if it has one (a thread about to end)."""

    @abstractmethod
    def connection_count(self) -> int:
        """Connections open now (one per thread that used the store)."""

    @abstractmethod
    def close(self) -> None:
        """Close every connection this store opened (in any thread)."""

    def __enter__(self) -> HistoryBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_history(settings: Any) -> HistoryBackend:
    """The console's store for ``settings``: ``[history] db`` and retention, keyed by the
    broker's cluster.  A ``postgresql://`` URL opens the shared PostgreSQL history (psycopg is
    imported only then), anything else the SQLite file."""
    if is_postgres_url(settings.history_db):
        from tui.history.postgres import PostgresHistoryStore

        return PostgresHistoryStore(
            settings.history_db,
            settings.history_max_rows,
            settings.history_max_age_days,
            cluster=settings.cluster_id,
        )
    from tui.history.store import HistoryStore

    return HistoryStore(
        settings.history_db,
        settings.history_max_rows,
        settings.history_max_age_days,
        cluster=settings.cluster_id,
    )
