"""The history is per cluster: rows carry their cluster, a console loads and searches its own,
and a file written before clusters (schema 1) is migrated with its rows kept as ``legacy``."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tui.history import HistoryStore, HistoryWriter
from tui.history.store import LEGACY_CLUSTER, SCHEMA_VERSION

A = "redis://10.0.0.5:6379/0"
B = "redis://10.0.0.5:6379/1"

#: The schema of version 1 as it shipped (tui/history/store.py before clusters), frozen here
#: so the migration is tested against the real old file, not against today's code.
V1_SCHEMA = """
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL,
    name TEXT, state TEXT NOT NULL, rank INTEGER NOT NULL DEFAULT 0,
    queue TEXT, priority INTEGER, hostname TEXT, retries INTEGER,
    sent REAL, received REAL, started REAL, retried REAL, finished REAL, runtime REAL,
    eta TEXT, expires TEXT, root_id TEXT, parent_id TEXT, routing_key TEXT, exchange TEXT,
    revoke_reason TEXT,
    source TEXT NOT NULL DEFAULT 'events',
    seen_by TEXT,
    first_seen REAL NOT NULL,
    updated REAL NOT NULL,
    args TEXT, kwargs TEXT, result TEXT, exception TEXT, traceback TEXT
);
CREATE UNIQUE INDEX ix_tasks_uuid ON tasks(uuid);
CREATE INDEX ix_tasks_scan ON tasks(first_seen, state, name, queue, hostname, priority, uuid);
CREATE INDEX ix_tasks_name ON tasks(name, first_seen);
CREATE INDEX ix_tasks_state ON tasks(state, first_seen);
CREATE INDEX ix_tasks_queue ON tasks(queue, first_seen);
CREATE INDEX ix_tasks_hostname ON tasks(hostname, first_seen);
CREATE INDEX ix_tasks_priority ON tasks(priority, first_seen);
CREATE TABLE vocab (field TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (field, value))
    WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE VIRTUAL TABLE tasks_fts USING fts5(
    args, kwargs, content='tasks', content_rowid='id', tokenize='trigram'
);
CREATE TRIGGER tasks_fts_ai AFTER INSERT ON tasks BEGIN
    INSERT INTO tasks_fts(rowid, args, kwargs) VALUES (new.id, new.args, new.kwargs);
END;
INSERT INTO meta(key, value) VALUES ('schema', '1');
"""


def make_v1_file(path: Path, n: int, now: float) -> list[str]:
    """A history file as a console of schema 1 left it, with ``n`` tasks (one still STARTED)."""
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    uuids = [f"old-{i:04d}" for i in range(n)]
    for i, uuid in enumerate(uuids):
        state = "STARTED" if i == n - 1 else "SUCCESS"
        conn.execute(
            "INSERT INTO tasks (uuid, name, state, rank, queue, priority, hostname, sent,"
            " first_seen, updated, args) VALUES (?, 'afirgen_tasks.reports.generate_pdf_report',"
            " ?, 3, 'reports', 5, 'w1@box', ?, ?, ?, ?)",
            (uuid, state, now - 100 + i, now - 100 + i, now, f"[{i}, 'FIR-{i}']"),
        )
    for field, value in (("state", "SUCCESS"), ("state", "STARTED"), ("queue", "reports")):
        conn.execute("INSERT INTO vocab VALUES (?, ?)", (field, value))
    conn.commit()
    conn.close()
    return uuids


def row(uuid: str, now: float, state: str = "SUCCESS", **extra) -> dict:
    return {
        "uuid": uuid,
        "name": "afirgen_tasks.email.send_notification_email",
        "state": state,
        "queue": "email",
        "priority": 5,
        "hostname": "w2@box",
        "sent": now,
        "args": "['ravi-12345']",
        **extra,
    }


def test_a_schema_1_file_keeps_its_rows_as_legacy_and_new_rows_carry_the_cluster(tmp_path: Path):
    path = tmp_path / "history.sqlite3"
    now = time.time()
    old = make_v1_file(path, 30, now)

    store = HistoryStore(path, cluster=A)
    try:
        conn = store._conn()
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == str(
            SCHEMA_VERSION
        )
        assert store.migrated_legacy_rows == 30
        # every old row is kept, marked legacy, with what it held
        kept = dict(conn.execute("SELECT uuid, cluster FROM tasks").fetchall())
        assert kept == {u: LEGACY_CLUSTER for u in old}
        assert store.count() == 30 and store.count(LEGACY_CLUSTER) == 30
        # every index leads with the cluster now
        for name in ("ix_tasks_uuid", "ix_tasks_scan", "ix_tasks_name", "ix_tasks_state"):
            cols = [r[2] for r in conn.execute(f"PRAGMA index_info({name})")]
            assert cols[0] == "cluster", (name, cols)

        # this console's view holds none of them: not the phantom STARTED job either
        assert store.load_recent(1000) == []
        assert store.search("state:started") == []
        assert store.get(old[-1]) is None

        # new rows carry the cluster; the same id seen now is this cluster's own task
        store.upsert([row("new-1", now), row(old[0], now, "FAILURE")])
        mine = store.load_recent(1000)
        assert {r["uuid"] for r in mine} == {"new-1", old[0]}
        assert {r["cluster"] for r in mine} == {A}
        assert store.get(old[0])["state"] == "FAILURE"
        legacy = {r["uuid"]: r for r in store.search(limit=1000, scope="legacy")}
        assert set(legacy) == set(old) and legacy[old[0]]["state"] == "SUCCESS"
        assert legacy[old[3]]["args"] == "[3, 'FIR-3']"
        # every cluster: all of them, newest first
        everything = store.search(limit=1000, scope="all")
        assert len(everything) == 32
        assert [r["first_seen"] for r in everything] == sorted(
            (r["first_seen"] for r in everything), reverse=True
        )
        assert store.search("args:FIR-7", scope="all")[0]["uuid"] == "old-0007"
        assert store.clusters() == sorted([A, LEGACY_CLUSTER])

        # said once: the first console to ask gets the count, the next none
        assert store.take_legacy_notice() == 30
        assert store.take_legacy_notice() == 0
    finally:
        store.close()

    reopened = HistoryStore(path, cluster=A)
    try:
        assert reopened.migrated_legacy_rows == 0  # migrated once
        assert reopened.count() == 32
    finally:
        reopened.close()


def test_a_second_console_on_the_migrated_file_does_not_migrate_it_again(tmp_path: Path):
    path = tmp_path / "history.sqlite3"
    make_v1_file(path, 5, time.time())
    first = HistoryStore(path, cluster=A)
    second = HistoryStore(path, cluster=B)
    try:
        assert first.migrated_legacy_rows + second.migrated_legacy_rows == 5
        assert first.count(LEGACY_CLUSTER) == 5
    finally:
        first.close()
        second.close()


def test_each_cluster_loads_searches_and_backfills_only_its_own(tmp_path: Path):
    path = tmp_path / "history.sqlite3"
    now = time.time()
    a, b = HistoryStore(path, cluster=A), HistoryStore(path, cluster=B)
    try:
        a.upsert([row(f"a-{i}", now - i, "STARTED" if i == 0 else "SUCCESS") for i in range(20)])
        b.upsert([row("b-0", now)])
        # the same id on both brokers (a forged event on B) does not touch A's row
        b.upsert([row("a-1", now, "FAILURE")])
        assert a.get("a-1")["state"] == "SUCCESS" and b.get("a-1")["state"] == "FAILURE"
        assert {r["uuid"] for r in b.load_recent(100)} == {"b-0", "a-1"}
        assert len(a.load_recent(100)) == 20
        assert b.search("state:started") == []
        assert [r["uuid"] for r in b.search("state:started", scope="all")] == ["a-0"]
        assert [r["cluster"] for r in b.search("state:started", scope=":6379/0")] == [A]
        assert set(b.existing(["a-0", "a-1", "b-0"])) == {"a-1", "b-0"}
        # a driver plan (rare term) and a scan stay in the cluster too
        assert b.search_with_plan("uuid:a-0")[0] == []
        assert b.search_with_plan("name:email", limit=5)[0][0]["cluster"] == B
        with pytest.raises(ValueError, match="no cluster matching 'nope'"):
            b.search(scope="nope")
    finally:
        a.close()
        b.close()


def test_the_writer_writes_its_store_cluster_and_prune_reaches_every_cluster(tmp_path: Path):
    path = tmp_path / "history.sqlite3"
    now = time.time()
    a = HistoryStore(path, cluster=A, max_age_days=1)
    b = HistoryStore(path, cluster=B, max_age_days=1)
    try:
        writer = HistoryWriter(b, interval=0.05)
        writer.submit([row("b-new", now)])
        writer.close()
        assert b.get("b-new")["cluster"] == B and a.get("b-new") is None
        a.upsert([row("a-old", now - 3 * 86400), row("a-new", now)])
        b.upsert([row("b-old", now - 3 * 86400)])
        assert a.prune(now) == 2
        assert {r["uuid"] for r in a.search(scope="all")} == {"a-new", "b-new"}
    finally:
        a.close()
        b.close()
