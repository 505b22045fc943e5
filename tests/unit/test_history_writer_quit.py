"""The history writer under a backlog: bounded transactions, a quit that ends in bounded time
and says what it could not write, and a store that never closes a connection another
thread is writing through (that crashed the process: a segfault after a 60 s 20k/s run)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tui.history import HistoryStore, HistoryWriter
from tui.history import writer as writer_module


def rows(n: int, start: int = 0) -> list[dict]:
    return [
        {"uuid": f"t{i:06d}", "state": "SUCCESS", "sent": float(i)} for i in range(start, start + n)
    ]


class SlowStore(HistoryStore):
    """A store whose every write takes ``delay`` seconds (a disk far behind, a flood)."""

    delay = 0.0
    batches: list[int]

    def upsert_report(self, rows, source="events", now=None):  # type: ignore[override]
        rows = list(rows)
        self.batches.append(len(rows))
        time.sleep(self.delay)
        return super().upsert_report(rows, source, now)


def test_a_backlog_is_written_in_bounded_transactions_oldest_first(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(writer_module, "FLUSH_ROWS", 1_000)
    store = SlowStore(tmp_path / "h.sqlite3")
    store.batches = []
    writer = HistoryWriter(store, interval=60)  # no timed flush: the close flushes
    writer.submit(rows(2_500))
    writer.close()
    assert store.batches == [1_000, 1_000, 500]
    assert writer.written == 2_500 and writer.unwritten == 0
    assert store.count() == 2_500
    store.close()


def test_a_quit_under_a_backlog_ends_in_time_and_counts_what_was_not_written(
    tmp_path: Path, monkeypatch
):
    monkeypatch.setattr(writer_module, "FLUSH_ROWS", 100)
    store = SlowStore(tmp_path / "h.sqlite3")
    store.batches = []
    store.delay = 0.3
    writer = HistoryWriter(store, interval=60)
    writer.submit(rows(5_000))  # 50 transactions of 0.3 s: 15 s
    started = time.monotonic()
    writer.close(timeout=2.0)
    took = time.monotonic() - started
    assert not writer.alive
    assert took < 5.0, took
    assert 0 < writer.written < 5_000
    assert writer.written + writer.unwritten == 5_000
    assert store.count() == writer.written
    store.close()


def test_closing_the_store_leaves_a_running_threads_connection_open(tmp_path: Path):
    store = HistoryStore(tmp_path / "h.sqlite3")
    store.upsert(rows(10))
    opened, release, result = threading.Event(), threading.Event(), []

    def reader() -> None:
        store.count()  # this thread's own connection
        opened.set()
        release.wait(10)
        result.append(store._local.__dict__.get("conn") is not None)
        try:
            result.append(store._conn().execute("SELECT count(*) FROM tasks").fetchone()[0])
        finally:
            store.close_thread_connection()

    t = threading.Thread(target=reader)
    t.start()
    assert opened.wait(10)
    store.close()  # the main thread's connection; not the reader's, still in use
    assert store.connection_count() == 1
    release.set()
    t.join(10)
    assert result == [True, 10]  # its own connection, still open
    assert store.connection_count() == 0
