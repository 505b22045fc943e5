"""The history's args/kwargs index filled in after the rows are written (issue 17).

Rows are written without touching the FTS5 trigram index; :meth:`HistoryStore.index_pending`
adds them later behind a watermark.  What must hold: ``args:`` finds every row whether it
is indexed yet or not, the index never holds a row twice or one that is gone (FTS5's own
integrity check, which compares it with the table), and files made before the watermark
keep working.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tui.history import HistoryStore, HistoryWriter
from tui.history.store import FTS_WATERMARK

pytestmark = pytest.mark.skipif(
    not HistoryStore(":memory:").has_fts, reason="this SQLite has no FTS5 trigram tokenizer"
)


def rows(start: int, n: int, **extra) -> list[dict]:
    return [
        {
            "uuid": f"t{i:05d}",
            "name": "afirgen_tasks.reports.generate_pdf_report",
            "state": "RECEIVED",
            "sent": 1000.0 + i,
            "args": f"('FIR-{i:05d}',)",
            "kwargs": "{'station': 'north'}",
            **extra,
        }
        for i in range(start, start + n)
    ]


def in_index(store: HistoryStore) -> set[int]:
    """The row ids the index holds (every test row's kwargs hold "station"; a plain SELECT
    of an external-content FTS table reads the table, not the index)."""
    conn = store._conn()
    return {
        r[0] for r in conn.execute("SELECT rowid FROM tasks_fts WHERE tasks_fts MATCH 'station'")
    }


def fts_consistent(store: HistoryStore) -> None:
    """The index holds exactly the rows at or below the watermark (and, with nothing left
    to index, FTS5's own integrity check against the table passes)."""
    conn = store._conn()
    watermark = int(
        conn.execute("SELECT value FROM meta WHERE key = ?", (FTS_WATERMARK,)).fetchone()[0]
    )
    if store.index_backlog() == 0:
        conn.execute("INSERT INTO tasks_fts(tasks_fts, rank) VALUES ('integrity-check', 1)")
    indexed = in_index(store)
    below = {r[0] for r in conn.execute("SELECT id FROM tasks WHERE id <= ?", (watermark,))}
    assert indexed == below


def found(store: HistoryStore, query: str) -> set[str]:
    return {r["uuid"] for r in store.search(query, limit=10_000)}


def test_rows_are_written_unindexed_and_indexed_later(store: HistoryStore):
    store.upsert(rows(0, 300))
    assert store.index_backlog() == 300
    assert in_index(store) == set()
    assert store.index_pending(budget_s=0.0, chunk=100) == 100  # one chunk at least
    assert store.index_backlog() == 200
    fts_consistent(store)
    assert store.index_pending(budget_s=5.0, chunk=100) == 200
    assert store.index_backlog() == 0
    fts_consistent(store)
    assert store.index_pending() == 0


def test_args_search_finds_rows_on_both_sides_of_the_watermark(store: HistoryStore):
    store.upsert(rows(0, 50))
    store.index_pending(budget_s=5.0)
    store.upsert(rows(50, 50))  # not indexed yet
    assert store.index_backlog() == 50
    for query, want in (
        ("args:FIR-00007", {"t00007"}),  # indexed
        ("args:FIR-00077", {"t00077"}),  # not yet
        ("args:FIR-0004", {f"t{i:05d}" for i in range(40, 50)}),
        ("args:FIR-0005", {f"t{i:05d}" for i in range(50, 60)}),
        ("args:north", {f"t{i:05d}" for i in range(100)}),
        ("args:FIR-00077 args:north", {"t00077"}),
        ("args:nowhere", set()),
    ):
        rows_found, plan = store.search_with_plan(query, limit=10_000)
        assert {r["uuid"] for r in rows_found} == want, query
        assert plan in ("driver:args", "scan"), plan
    assert store.search_with_plan("args:FIR-00077")[1] == "driver:args"
    store.index_pending(budget_s=5.0)
    assert found(store, "args:FIR-00077") == {"t00077"}
    assert found(store, "args:FIR-0005") == {f"t{i:05d}" for i in range(50, 60)}


def test_updates_and_deletes_on_both_sides_keep_the_index_exact(store: HistoryStore):
    store.upsert(rows(0, 100))
    store.index_pending(budget_s=0.0, chunk=60)  # rows 1-60 indexed, 61-100 not
    # new args for indexed and unindexed rows alike (a later event told the arguments)
    store.upsert(rows(55, 10, state="SUCCESS", args="('FIR-NEW',)"))
    with store.transaction() as c:  # as prune does: some indexed, some not
        c.execute("DELETE FROM tasks WHERE uuid IN ('t00001', 't00002', 't00090', 't00091')")
    fts_consistent(store)
    store.index_pending(budget_s=5.0)
    fts_consistent(store)
    assert found(store, "args:FIR-NEW") == {f"t{i:05d}" for i in range(55, 65)}
    assert found(store, "args:FIR-00057") == set()  # its old args are out of the index
    assert found(store, "args:FIR-00090") == set()
    assert len(in_index(store)) == 96


def test_a_reused_row_id_below_the_watermark_is_indexed_at_once(store: HistoryStore):
    store.upsert(rows(0, 20))
    store.index_pending(budget_s=5.0)
    with store.transaction() as c:  # the newest rows go (ids 16-20): their ids come again
        c.execute("DELETE FROM tasks WHERE id > 15")
    store.upsert(rows(100, 3))
    ids = [r[0] for r in store._conn().execute("SELECT id FROM tasks WHERE uuid >= 't00100'")]
    assert ids == [16, 17, 18]  # at or below the watermark (20)
    assert store.index_backlog() == 0
    fts_consistent(store)
    assert found(store, "args:FIR-00101") == {"t00101"}


def test_a_file_with_the_eager_triggers_is_taken_over_without_reindexing(tmp_path: Path):
    path = tmp_path / "h.sqlite3"
    old = HistoryStore(path)
    old.upsert(rows(0, 30))
    old.index_pending(budget_s=5.0)
    conn = old._conn()
    # as the consoles before the watermark left a file: every row indexed by a trigger
    conn.executescript("""
        DROP TRIGGER tasks_fts_ai_low; DROP TRIGGER tasks_fts_ad_low; DROP TRIGGER tasks_fts_au_low;
        DELETE FROM meta WHERE key = 'fts_indexed';
        CREATE TRIGGER tasks_fts_ai AFTER INSERT ON tasks BEGIN
            INSERT INTO tasks_fts(rowid, args, kwargs) VALUES (new.id, new.args, new.kwargs);
        END;
        CREATE TRIGGER tasks_fts_ad AFTER DELETE ON tasks BEGIN
            INSERT INTO tasks_fts(tasks_fts, rowid, args, kwargs)
            VALUES ('delete', old.id, old.args, old.kwargs);
        END;
    """)
    old.upsert(rows(30, 10))  # indexed by the old trigger
    old.close()
    store = HistoryStore(path)
    triggers = {
        r[0] for r in store._conn().execute("SELECT name FROM sqlite_master WHERE type='trigger'")
    }
    assert triggers == {"tasks_fts_ai_low", "tasks_fts_ad_low", "tasks_fts_au_low"}
    assert store.index_backlog() == 0  # nothing indexed twice
    fts_consistent(store)
    store.upsert(rows(40, 5))
    assert store.index_backlog() == 5
    assert found(store, "args:FIR-00035") == {"t00035"}
    assert found(store, "args:FIR-00042") == {"t00042"}
    store.index_pending(budget_s=5.0)
    fts_consistent(store)
    store.close()


def test_the_writer_indexes_what_it_wrote(tmp_path: Path):
    store = HistoryStore(tmp_path / "h.sqlite3")
    writer = HistoryWriter(store, interval=0.05)
    try:
        writer.submit(rows(0, 500))
        deadline = time.monotonic() + 30
        while writer.indexed < 500 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert writer.written == 500 and writer.indexed == 500
        assert writer.errors == 0
    finally:
        writer.close()
    check = HistoryStore(tmp_path / "h.sqlite3")
    assert check.index_backlog() == 0
    fts_consistent(check)
    check.close()
    store.close()


def test_a_locked_file_costs_the_index_a_round_not_the_writer(tmp_path: Path):
    store = HistoryStore(tmp_path / "h.sqlite3")
    store.BUSY_TIMEOUT_MS = 100  # the writer's connection waits 0.1 s for the lock
    store.upsert(rows(0, 10))
    blocker = sqlite3.connect(tmp_path / "h.sqlite3", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another console holds the write lock
    writer = HistoryWriter(store, interval=0.05)
    try:
        deadline = time.monotonic() + 30
        while writer.errors == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert writer.errors >= 1 and writer.last_error.startswith("index: ")
        assert writer.alive
        blocker.execute("ROLLBACK")
        deadline = time.monotonic() + 30
        while writer.indexed < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert writer.indexed == 10
    finally:
        blocker.close()
        writer.close()
        store.close()


_EAGER = """
CREATE TRIGGER tasks_fts_ai AFTER INSERT ON tasks BEGIN
    INSERT INTO tasks_fts(rowid, args, kwargs) VALUES (new.id, new.args, new.kwargs);
END;
"""


def test_an_older_console_on_the_same_file_gets_the_index_rebuilt(tmp_path: Path):
    path = tmp_path / "h.sqlite3"
    store = HistoryStore(path)
    store.upsert(rows(0, 100))
    store.index_pending(budget_s=0.0, chunk=50)  # rows 1-50 indexed, 51-100 not
    conn = store._conn()
    conn.executescript(_EAGER)  # an older console opened the file: its trigger is back
    store.upsert(rows(100, 10))  # indexed by it, above the watermark
    store.close()
    again = HistoryStore(path)
    assert again.index_backlog() == 0
    fts_consistent(again)
    assert found(again, "args:FIR-00075") == {"t00075"}
    assert found(again, "args:FIR-000") == {f"t{i:05d}" for i in range(100)}
    assert found(again, "args:FIR-00105") == {"t00105"}
    again.close()


@pytest.mark.parametrize("value", ["abc", "", None, "-5", "1e3", "2.9", " 60", "0x10", "٣"])
def test_a_watermark_that_is_not_a_row_id_gets_the_index_rebuilt(tmp_path: Path, value):
    path = tmp_path / "h.sqlite3"
    store = HistoryStore(path)
    store.upsert(rows(0, 60))
    store.index_pending(budget_s=0.0, chunk=20)
    store._conn().execute("UPDATE meta SET value = ? WHERE key = ?", (value, FTS_WATERMARK))
    store.close()
    again = HistoryStore(path)
    assert again.index_backlog() == 0
    fts_consistent(again)
    assert found(again, "args:FIR-0005") == {f"t{i:05d}" for i in range(50, 60)}
    again.close()


def test_a_watermark_past_the_last_row_is_brought_down_to_it(tmp_path: Path):
    path = tmp_path / "h.sqlite3"
    store = HistoryStore(path)
    store.upsert(rows(0, 30))
    store.index_pending(budget_s=5.0)
    with store.transaction() as c:  # the newest rows pruned: the watermark is past the end
        c.execute("DELETE FROM tasks WHERE id > 10")
    store.close()
    again = HistoryStore(path)
    mark = again._conn().execute("SELECT value FROM meta WHERE key = ?", (FTS_WATERMARK,))
    assert mark.fetchone()[0] == "10"
    again.upsert(rows(100, 5))  # ids 11-15: above the watermark, indexed later
    assert again.index_backlog() == 5
    again.index_pending(budget_s=5.0)
    fts_consistent(again)
    again.close()
