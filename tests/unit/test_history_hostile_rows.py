"""History rows no writer of ours produces, read back: TEXT that is not UTF-8, and times or
numbers of the wrong type, must cost neither the load at start nor the ``H`` search.

Found by tests/integration/test_fuzz_hostile.py::test_hostile_history_rows_planted_before_start.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tui.history import HistoryStore
from tui.history.store import HistoryRefused
from tui.ui.history_service import HistoryService


def _plant(path: Path) -> None:
    """Three rows: a name and queue whose TEXT is a lone surrogate's bytes (not UTF-8),
    times stored as text, and a well-formed row (in the cluster of a store opened without
    one, ``default``)."""
    HistoryStore(path).close()
    now = time.time()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(
            "INSERT INTO tasks (cluster, uuid, name, queue, state, first_seen, updated)"
            " VALUES ('default', 'bad-utf8', CAST(? AS TEXT), CAST(? AS TEXT), 'SUCCESS', ?, ?)",
            (b"a\xed\xa0\x80b", b"q\xff", now, now),
        )
        conn.execute(
            "INSERT INTO tasks (cluster, uuid, name, state, sent, started, runtime, priority, first_seen, updated)"
            " VALUES ('default', 'text-times', 'n', 'STARTED', 'NaN', 'now', 'x', 'high', ?, ?)",
            (now, now),
        )
        conn.execute(
            "INSERT INTO tasks (cluster, uuid, name, state, sent, first_seen, updated)"
            " VALUES ('default', 'fine', 'afirgen_tasks.x.y', 'SUCCESS', ?, ?, ?)",
            (now, now, now),
        )
        conn.execute(
            "INSERT INTO vocab (field, value) VALUES ('name', CAST(? AS TEXT))", (b"v\xed\xb2\x80",)
        )
    finally:
        conn.close()


def test_text_that_is_not_utf8_is_read_with_replacement_characters(tmp_path: Path) -> None:
    """load_recent, get, search (with its vocabulary) and existing read every row; the
    bytes that are not UTF-8 come back as U+FFFD instead of failing the whole read."""
    path = tmp_path / "h.sqlite3"
    _plant(path)
    with HistoryStore(path) as store:
        rows = {r["uuid"]: r for r in store.load_recent()}
        assert set(rows) == {"bad-utf8", "text-times", "fine"}
        assert (
            rows["bad-utf8"]["name"] == "a\ufffd\ufffd\ufffdb"
            and rows["bad-utf8"]["queue"] == "q\ufffd"
        )
        assert store.get("bad-utf8")["queue"] == "q\ufffd"
        assert [r["uuid"] for r in store.search("uuid:bad")] == ["bad-utf8"]
        assert store.search("name:v") == []  # reads the vocabulary, which holds bad bytes too
        assert store.existing(["bad-utf8", "fine", "missing"]) == {"bad-utf8": 0, "fine": 0}
        # the fast path is back for the next read
        assert store._conn().text_factory is str


def test_the_paged_read_at_start_gives_every_row_once_bad_bytes_too(tmp_path: Path) -> None:
    """iter_recent (the console's start-up read, a page at a time): the same rows as
    load_recent, newest first, however small the page; a page holding bytes that are not
    UTF-8 is read again with U+FFFD, and no row comes twice."""
    path = tmp_path / "h.sqlite3"
    _plant(path)
    with HistoryStore(path) as store:
        store.upsert([{"uuid": f"more-{i}", "name": "n", "state": "SUCCESS"} for i in range(7)])
        whole = [r["uuid"] for r in store.load_recent()]
        for page in (1, 2, 3, 100):
            pages = list(store.iter_recent(100, page))
            assert all(0 < len(p) <= page for p in pages)
            assert [r["uuid"] for p in pages for r in p] == whole
        limited = [r["uuid"] for p in store.iter_recent(4, 3) for r in p]
        assert limited == whole[:4]
        bad = next(r for p in store.iter_recent(100, 2) for r in p if r["uuid"] == "bad-utf8")
        assert bad["name"] == "a\ufffd\ufffd\ufffdb"
        assert store._conn().text_factory is str


def test_search_results_pass_the_trust_boundary(tmp_path: Path) -> None:
    """What ``H`` shows is cleaned like the rows loaded at start: a time stored as 'NaN'
    or 'now', a runtime 'x' and a priority 'high' are dropped, not computed with."""
    path = tmp_path / "h.sqlite3"
    _plant(path)
    with HistoryStore(path) as store:
        service = SimpleNamespace(store=store)
        rows = {r["uuid"]: r for r in HistoryService.search_rows(service, "")}  # type: ignore[arg-type]
    assert set(rows) == {"bad-utf8", "text-times", "fine"}
    weird = rows["text-times"]
    assert not {"sent", "started", "runtime", "priority"} & set(weird), weird
    assert isinstance(rows["fine"]["sent"], float)


@pytest.mark.parametrize("name", ["h.sqlite3", "h.sqlite3-wal", "h.sqlite3-shm"])
def test_a_history_file_that_is_a_symbolic_link_is_refused(tmp_path: Path, name: str) -> None:
    """A link planted at the history path (or its -wal / -shm) is refused, like the audit
    log's: SQLite would follow it and create the target with the umask's mode."""
    (tmp_path / name).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(HistoryRefused, match="symbolic link"):
        HistoryStore(tmp_path / "h.sqlite3")
    assert not (tmp_path / "elsewhere").exists()
