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


def test_a_flush_from_another_thread_waits_so_a_newer_snapshot_is_never_overwritten(
    tmp_path: Path,
):
    """An export flushes from a worker thread while the writer thread flushes: the writer's
    older snapshot of a task must not commit after the export's newer one."""
    store = SlowStore(tmp_path / "h.sqlite3")
    store.batches = []
    in_write, go_on = threading.Event(), threading.Event()
    plain = HistoryStore.upsert_report

    def slow_first(self, rows, source="events", now=None):  # the writer's flush, held
        rows = list(rows)
        if not in_write.is_set():
            in_write.set()
            go_on.wait(10)
        return plain(self, rows, source, now)

    store.upsert_report = slow_first.__get__(store)  # type: ignore[method-assign]
    writer = HistoryWriter(store, interval=0.01)
    try:
        writer.submit([{"uuid": "x", "state": "STARTED", "hostname": "w-old"}])
        assert in_write.wait(10)  # the writer thread holds v1, not committed yet
        writer.submit([{"uuid": "x", "state": "STARTED", "hostname": "w-new"}])
        exporter = threading.Thread(target=writer.flush)  # as an export does
        exporter.start()
        time.sleep(0.2)  # the exporter would have committed v2 by now without the lock
        go_on.set()
        exporter.join(10)
    finally:
        go_on.set()
        writer.close()
    assert store.get("x")["hostname"] == "w-new"
    store.close()


def test_under_a_steady_backlog_the_index_and_the_prune_still_get_their_turn(
    tmp_path: Path, monkeypatch
):
    monkeypatch.setattr(writer_module, "FLUSH_ROWS", 100)
    monkeypatch.setattr(writer_module, "ROUND_S", 0.2)
    calls = {"index_busy": 0, "prune": []}

    class Counting(SlowStore):
        def index_pending(self, budget_s=0.05, chunk=1_000):
            if writer.pending:
                calls["index_busy"] += 1
            return super().index_pending(budget_s, chunk)

        def prune(self, now=None, chunk=20_000, max_chunks=50):
            calls["prune"].append(max_chunks)
            return super().prune(now, chunk, max_chunks)

    store = Counting(tmp_path / "h.sqlite3")
    store.batches = []
    store.delay = 0.05  # 100 rows per 0.05 s: 2,000 rows a second at most
    writer = HistoryWriter(store, interval=0.01, prune_every=0.3)
    try:
        deadline = time.monotonic() + 3
        i = 0
        while time.monotonic() < deadline:  # 5,000 rows a second: always a backlog
            writer.submit(rows(100, start=i))
            i += 100
            time.sleep(0.02)
        assert writer.pending > 0
        assert calls["index_busy"] >= 3  # indexed between flush rounds during the backlog
        assert calls["prune"] and all(n == writer_module.PRUNE_CHUNKS for n in calls["prune"])
        assert store.index_backlog() < writer.written  # the index kept up in part at least
    finally:
        writer.close(timeout=1.0)
    assert writer.written + writer.unwritten + writer.dropped == writer.submitted
    store.close()


def test_a_write_that_keeps_failing_is_retried_at_the_interval_not_in_a_spin(tmp_path: Path):
    store = SlowStore(tmp_path / "h.sqlite3")
    store.batches = []

    def refuse(rows, source="events", now=None):
        store.batches.append(len(list(rows)))
        raise OSError(28, "No space left on device")

    store.upsert_report = refuse  # type: ignore[method-assign]
    writer = HistoryWriter(store, interval=0.2)
    try:
        writer.submit(rows(10))
        time.sleep(1.0)
        assert writer.failing and writer.pending == 10
        assert 2 <= len(store.batches) <= 8, len(store.batches)  # ~every 0.2 s
    finally:
        writer.close(timeout=1.0)
    assert writer.unwritten == 10
    store.close()
