"""The history writer: the only writer of a running console, on a daemon thread.

The UI thread hands it the changed tasks of each tick (:meth:`HistoryWriter.submit` never
blocks); it writes them in one transaction at most every ``interval`` seconds, so a crash
or ``kill -9`` loses at most the last interval's rows.  A row the store cannot save never
costs its batch; every row not saved and every failed write is counted and said.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from tui.history.backend import HistoryBackend
from tui.history.store import SOURCE_EVENTS, _reason

log = logging.getLogger(__name__)

#: Most rows written in one transaction (~0.5-1 s of the writer's time at 20k events/s).
FLUSH_ROWS = 10_000
#: Longest a round flushes a backlog before the index and the prune get their turn.
ROUND_S = 2.0
#: Most prune chunks (of 20,000 rows) a round deletes; the rest waits for the next round.
PRUNE_CHUNKS = 5


class HistoryWriter:
    """Writes submitted rows to a history store (:class:`HistoryBackend`) from a daemon thread.

    :meth:`submit` (UI thread) never blocks for long: it puts rows in a dict keyed by uuid
    under a lock the writer holds only to swap the dict.  A task submitted twice before a
    flush is written once (the later snapshot).  Past ``max_pending`` rows the oldest are
    dropped and counted (``dropped``).  The thread flushes at most every ``interval``
    seconds, one transaction per flush, and prunes every ``prune_every`` seconds.  After
    each flush it adds the new rows to the store's ``args:`` index
    (:meth:`HistoryBackend.index_pending`): ``index_busy_s`` at most while rows wait (a
    flood: the history first, the index catches up after), ``index_idle_s`` otherwise.

    Counters: ``submitted``, ``written``, ``dropped``, ``flushes``, ``errors``,
    ``pruned``, ``indexed``, ``rejected`` (rows that could not be saved; ``last_rejected`` says why) and
    ``cleaned`` (values NULLed or replaced so their row could be saved); ``last_error``
    holds the last write error (rows are kept and retried), ``failing`` whether the last
    write failed.  :meth:`status_note` puts them in words for the status line.
    """

    def __init__(
        self,
        store: HistoryBackend,
        interval: float = 0.5,
        max_pending: int = 200_000,
        prune_every: float = 60.0,
        source: str = SOURCE_EVENTS,
        index_busy_s: float = 0.1,
        index_idle_s: float = 0.25,
    ) -> None:
        self.store = store
        self.interval = interval
        self.max_pending = max_pending
        self.prune_every = prune_every
        self.source = source
        self.index_busy_s = index_busy_s
        self.index_idle_s = index_idle_s
        self.submitted = self.written = self.dropped = 0
        self.flushes = self.errors = self.pruned = self.indexed = 0
        self.rejected = self.cleaned = 0
        self.last_error: str | None = None
        self.last_rejected: str | None = None
        self.failing = False
        self.last_flush_seconds = 0.0
        #: rows still pending when :meth:`close` gave up waiting (not written)
        self.unwritten = 0
        self._close_deadline: float | None = None
        self._pending: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)
        self._thread.start()

    # runs in the UI thread
    def submit(self, rows: Iterable[dict[str, Any]]) -> None:
        """Queue changed tasks (dicts from :func:`task_to_row`) for the next flush."""
        with self._lock:
            pending = self._pending
            n = 0
            for row in rows:
                uuid = row.get("uuid")
                if uuid is None:
                    continue
                pending.pop(uuid, None)  # move to the end: it is the newest again
                pending[uuid] = row
                n += 1
            self.submitted += n
            over = len(pending) - self.max_pending
            if over > 0:
                it = iter(pending)
                for key in [next(it) for _ in range(over)]:
                    del pending[key]
                self.dropped += over

    @property
    def pending(self) -> int:
        """Rows waiting for the next flush."""
        return len(self._pending)

    def flush(self, max_rows: int | None = None) -> int:
        """Write what is pending now, or its oldest ``max_rows`` rows (any thread; the
        writer thread calls this).

        A row that cannot be saved is skipped and counted (``rejected``, with the latest
        reason in ``last_rejected``); the rest of its batch is written.  A failed write
        (locked, disk full, read-only) keeps the rows for the next flush and is counted in
        ``errors`` (``last_error``, ``failing`` until a write succeeds again).
        """
        # One flush at a time, from taking its rows to their commit: an export's flush
        # (another thread) must not commit a task's newer snapshot before this one commits
        # its older one.
        with self._flush_lock:
            return self._flush(max_rows)

    def _flush(self, max_rows: int | None) -> int:
        with self._lock:
            pending = self._pending
            if max_rows is None or len(pending) <= max_rows:
                batch, self._pending = pending, {}
            else:  # the oldest first: a dict keeps the order rows were (last) submitted in
                batch = {}
                for uuid in list(itertools.islice(pending, max_rows)):
                    batch[uuid] = pending.pop(uuid)
        if not batch:
            return 0
        started = time.perf_counter()
        try:
            report = self.store.upsert_report(batch.values(), source=self.source)
        except Exception as exc:  # sqlite3.Error, OSError: the write itself failed
            self.errors += 1
            self.failing = True
            self.last_error = _reason(exc)
            log.warning(
                "history write failed (%s); %d rows kept for the next try",
                self.last_error,
                len(batch),
            )
            with self._lock:  # put them back (first) unless a newer snapshot arrived meanwhile
                newer = self._pending
                for uuid in newer:
                    batch.pop(uuid, None)
                batch.update(newer)
                self._pending = batch
            return 0
        self.failing = False
        self.cleaned += report.cleaned
        if report.rejected:
            self.rejected += len(report.rejected)
            self.last_rejected = report.rejected[-1][1]
            log.warning(
                "history: %d row(s) not saved (%s)", len(report.rejected), self.last_rejected
            )
        self.written += report.written
        self.flushes += 1
        self.last_flush_seconds = time.perf_counter() - started
        return report.written

    def status_note(self) -> str:
        """``history: 3 rows not saved (integer too large)``: what the status line shows
        when rows were lost or writes fail; empty while all is well."""
        parts = []
        if self.rejected:
            parts.append(
                f"{self.rejected:,} row{'s' if self.rejected != 1 else ''} not saved"
                f" ({self.last_rejected})"
            )
        if self.dropped:
            parts.append(f"{self.dropped:,} rows dropped (writer behind)")
        if self.errors:
            state = "failing" if self.failing else "recovered"
            parts.append(
                f"{self.errors:,} write failure{'s' if self.errors != 1 else ''}, {state}"
                f" ({self.last_error})"
            )
        return "history: " + "; ".join(parts) if parts else ""

    # runs in the writer thread
    def _flush_chunks(self, deadline: float, closing: bool = False) -> None:
        """Flush in transactions of at most FLUSH_ROWS rows until nothing is pending, the
        writer is asked to stop (unless closing) or ``deadline`` passes: a flood's backlog
        is never one transaction of minutes that a quit cannot interrupt, and a round
        leaves time for the index and the prune."""
        while self._pending:
            before = self.errors
            self.flush(FLUSH_ROWS)
            if self.errors != before:
                return  # the write failed: the rows wait for the next round
            if (self._stop.is_set() and not closing) or time.monotonic() >= deadline:
                return

    def _run(self) -> None:
        next_prune = time.monotonic() + min(5.0, self.prune_every)
        try:
            while not self._stop.is_set():
                # a backlog: the next round at once (after the index and prune had theirs);
                # after a failed write (disk full, read-only) the interval, not a spin
                if not self._pending or self.failing:
                    self._wake.wait(self.interval)
                self._wake.clear()
                self._flush_chunks(time.monotonic() + max(self.interval, ROUND_S))
                if self._stop.is_set():
                    break
                self._index()
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self.prune_every
                    try:
                        # a bounded share per round, so a quit is never held up for long
                        self.pruned += self.store.prune(max_chunks=PRUNE_CHUNKS)
                    except Exception as exc:  # the writer thread must not die of it
                        self.errors += 1
                        self.last_error = f"prune: {_reason(exc)}"
            self._flush_chunks(self._close_deadline or time.monotonic(), closing=True)
            self.unwritten = len(self._pending)
            if self.unwritten:
                log.warning(
                    "history: %d row(s) not written: still pending when the console quit",
                    self.unwritten,
                )
        finally:
            self.store.close_thread_connection()

    def _index(self) -> None:
        budget = self.index_busy_s if self._pending else self.index_idle_s
        try:
            self.indexed += self.store.index_pending(budget)
        except Exception as exc:  # locked, disk full: the next round tries again
            self.errors += 1
            self.last_error = f"index: {_reason(exc)}"

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is pending, for at most about ``timeout`` seconds, and stop the thread
        (call on quit).  Rows still pending then are not written: ``unwritten`` counts
        them (a flood's backlog can take longer to write than an operator waits for q).
        The thread has ended when this returns, unless a write is stuck (a lock another
        process holds): then the rows pending are counted as unwritten, and the store's
        close leaves that thread's connection alone (closing a connection a thread is
        writing through crashes the process)."""
        self._close_deadline = time.monotonic() + max(timeout - 1.0, 0.0)
        self._stop.set()
        self._wake.set()
        # one transaction of FLUSH_ROWS rows may still be under way at the deadline
        self._thread.join(timeout + 30.0)
        if self._thread.is_alive():  # stuck (a lock held elsewhere): say what is not written
            self.unwritten = len(self._pending)
            log.warning("history writer still busy at quit; %d row(s) not written", self.unwritten)

    @property
    def alive(self) -> bool:
        """True while the writer thread runs."""
        return self._thread.is_alive()
