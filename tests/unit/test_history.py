"""The persistent task history: upserts, the writer thread, crashes, concurrency, search, retention."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tui.core.model import ALL_STATES, ClusterModel, TaskRecord
from tui.core.query import TaskFilter
from tui.history import (
    SOURCE_BACKEND,
    HistoryStore,
    HistoryWriter,
    backfill_from_backend,
    load_into_model,
    meta_to_row,
    parse_query,
    task_to_row,
)

REPO = Path(__file__).resolve().parents[2]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


# ---- the file and upserts ------------------------------------------------------------


def test_file_is_wal_with_normal_sync_and_busy_timeout(store: HistoryStore):
    conn = store._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == HistoryStore.BUSY_TIMEOUT_MS
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {
        "ix_tasks_uuid",
        "ix_tasks_scan",
        "ix_tasks_name",
        "ix_tasks_state",
        "ix_tasks_queue",
        "ix_tasks_hostname",
    } <= indexes
    assert store.has_fts


def test_state_never_regresses_and_known_fields_are_never_lost(store: HistoryStore):
    store.upsert(
        [
            {
                "uuid": "u1",
                "name": "t.pdf",
                "state": "SUCCESS",
                "result": "'ok'",
                "hostname": "celery@w1",
                "sent": 100.0,
                "finished": 105.0,
            }
        ]
    )
    # a stale snapshot (another console, or an old event) arrives later
    store.upsert(
        [
            {
                "uuid": "u1",
                "name": None,
                "state": "STARTED",
                "hostname": "celery@w2",
                "queue": "reports",
                "started": 101.0,
            }
        ]
    )
    row = store.get("u1")
    assert row["state"] == "SUCCESS"
    assert row["result"] == "'ok'" and row["name"] == "t.pdf"
    assert row["hostname"] == "celery@w1"  # the winner's value stays
    assert row["queue"] == "reports" and row["started"] == 101.0  # gaps are filled
    assert row["first_seen"] == 100.0


def test_retry_cycle_moves_on_to_the_next_attempt_only(store: HistoryStore):
    store.upsert([{"uuid": "r", "state": "RETRY", "retries": 0, "exception": "Timeout()"}])
    store.upsert([{"uuid": "r", "state": "RECEIVED", "retries": 0}])  # late, same attempt
    assert store.get("r")["state"] == "RETRY"
    store.upsert([{"uuid": "r", "state": "STARTED", "retries": 1}])  # the next attempt
    row = store.get("r")
    assert row["state"] == "STARTED" and row["retries"] == 1 and row["exception"] == "Timeout()"


def test_backend_rows_are_marked_and_events_win_the_mark(store: HistoryStore):
    store.upsert([{"uuid": "b", "state": "SUCCESS"}], source=SOURCE_BACKEND)
    assert store.get("b")["source"] == "backend"
    store.upsert([{"uuid": "e", "state": "STARTED"}])
    store.upsert([{"uuid": "e", "state": "SUCCESS"}], source=SOURCE_BACKEND)
    assert store.get("e")["source"] == "events" and store.get("e")["state"] == "SUCCESS"


def test_task_to_row_holds_every_persisted_field_and_the_rank():
    """task_to_row spells the fields out (it runs per changed task per tick): the same keys,
    in column order, as FIELDS, each the record's own value."""
    from tui.history.store import FIELDS

    rec = TaskRecord("u-1")
    for i, name in enumerate(TaskRecord.__slots__):
        if name != "lost":
            setattr(rec, name, f"value-{i}")
    row = task_to_row(rec)
    assert tuple(row) == (*FIELDS, "rank")
    assert all(row[k] is getattr(rec, k) for k in row)


def test_task_to_row_round_trips_through_the_model(tmp_path: Path):
    model = ClusterModel()
    model.apply(
        [
            {
                "type": "task-sent",
                "uuid": "abc-1",
                "hostname": "client",
                "timestamp": 10.0,
                "name": "afirgen_tasks.reports.generate_pdf_report",
                "queue": "reports",
                "priority": 5,
                "args": "(3,)",
                "kwargs": "{}",
            },
            {
                "type": "task-received",
                "uuid": "abc-1",
                "hostname": "celery@w1",
                "timestamp": 10.5,
                "name": "afirgen_tasks.reports.generate_pdf_report",
                "args": "(3,)",
                "kwargs": "{}",
                "retries": 0,
            },
            {"type": "task-started", "uuid": "abc-1", "hostname": "celery@w1", "timestamp": 11.0},
            {
                "type": "task-failed",
                "uuid": "abc-1",
                "hostname": "celery@w1",
                "timestamp": 12.0,
                "exception": "PermanentTaskError('FIR 3 does not exist')",
                "traceback": "Traceback (most recent call last):\n  boom\n",
            },
        ]
    )
    rec = model.get_task("abc-1")
    assert rec is not None
    store = HistoryStore(tmp_path / "h.sqlite3")
    store.upsert([task_to_row(rec)])
    fresh = ClusterModel()
    backend = load_into_model(fresh, store.load_recent(10))
    got = fresh.get_task("abc-1")
    assert got is not None and backend == set()
    for f in (
        "name",
        "state",
        "queue",
        "priority",
        "hostname",
        "args",
        "kwargs",
        "exception",
        "traceback",
        "retries",
        "sent",
        "received",
        "started",
        "finished",
    ):
        assert getattr(got, f) == getattr(rec, f), f
    store.close()


# ---- the writer thread, restarts, crashes, several writers ------------------------------------


def test_restart_finds_the_history_newest_first(tmp_path: Path):
    path = tmp_path / "h.sqlite3"
    store = HistoryStore(path)
    writer = HistoryWriter(store, interval=0.05)
    for i in range(10):  # ten UI ticks
        writer.submit(
            [
                {
                    "uuid": f"t{i * 10 + k:03d}",
                    "name": "n",
                    "state": "SUCCESS",
                    "sent": 1000.0 + i * 10 + k,
                }
                for k in range(10)
            ]
        )
    writer.close()
    assert not writer.alive and writer.written == 100 and writer.errors == 0
    store.close()

    reopened = HistoryStore(path)  # a new console process would do exactly this
    rows = reopened.load_recent(1000)
    assert [r["uuid"] for r in rows] == [f"t{i:03d}" for i in range(99, -1, -1)]
    model = ClusterModel(max_tasks=50)
    load_into_model(model, rows)
    # the model holds the 50 newest, and iterates them newest first like live ones
    assert [t.uuid for t in model.iter_tasks()] == [f"t{i:03d}" for i in range(99, 49, -1)]
    reopened.close()


def test_submit_never_blocks_and_drops_the_oldest_when_full(store: HistoryStore):
    writer = HistoryWriter(store, interval=60)  # no flush during the test
    try:
        writer.max_pending = 100
        start = time.perf_counter()
        for i in range(30):
            writer.submit([{"uuid": f"d{i * 10 + k:04d}", "state": "SENT"} for k in range(10)])
        assert time.perf_counter() - start < 0.5
        assert writer.pending == 100 and writer.dropped == 200
        writer.submit([{"uuid": "d0299", "state": "SUCCESS"}])  # a newer snapshot of a kept row
        assert writer.pending == 100
    finally:
        writer.close()
    got = {r["uuid"]: r["state"] for r in store.load_recent(1000)}
    assert set(got) == {f"d{i:04d}" for i in range(200, 300)}
    assert got["d0299"] == "SUCCESS"


class _ImpatientStore(HistoryStore):
    BUSY_TIMEOUT_MS = 100


def test_a_locked_file_keeps_the_rows_for_the_next_flush(tmp_path: Path):
    store = _ImpatientStore(tmp_path / "h.sqlite3")
    blocker = sqlite3.connect(tmp_path / "h.sqlite3", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another console holding the write lock
    writer = HistoryWriter(store, interval=60)
    try:
        writer.submit([{"uuid": "x1", "state": "SENT"}])
        assert writer.flush() == 0
        assert writer.errors == 1 and "locked" in (writer.last_error or "")
        writer.submit([{"uuid": "x1", "state": "STARTED"}])  # newer snapshot meanwhile
        blocker.execute("COMMIT")
        assert writer.flush() == 1
    finally:
        blocker.close()
        writer.close()
    assert store.get("x1")["state"] == "STARTED"
    store.close()


_STREAM_CHILD = textwrap.dedent("""
    import sys, time
    from tui.history import HistoryStore, HistoryWriter
    writer = HistoryWriter(HistoryStore(sys.argv[1]), interval=0.5)
    n = 0
    while True:
        rows = [{"uuid": f"k{n + i:07d}", "name": "stream", "state": "SUCCESS",
                 "sent": time.time()} for i in range(25)]
        writer.submit(rows)
        n += len(rows)
        print(n, time.time(), flush=True)
        time.sleep(0.02)
""")


def test_kill_9_mid_stream_loses_at_most_the_last_second(tmp_path: Path):
    path = tmp_path / "h.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-c", _STREAM_CHILD, str(path)],
        cwd=REPO,
        env=child_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    submitted: list[tuple[int, float]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            count, when = line.split()
            submitted.append((int(count), float(when)))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while not submitted or submitted[-1][1] - submitted[0][1] < 3.0:
            assert proc.poll() is None, "the writer child died"
            assert time.monotonic() < deadline, "the writer child did not stream"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        killed_at = time.time()
        proc.wait(10)
        reader.join(5)
    assert proc.returncode == -signal.SIGKILL

    assert integrity(path) == "ok"
    store = HistoryStore(path)
    uuids = {r["uuid"] for r in store.load_recent(1_000_000)}
    store.close()
    total = submitted[-1][0]
    # the rows kept are exactly the first ones submitted (one transaction per flush) ...
    assert uuids == {f"k{i:07d}" for i in range(len(uuids))}
    # ... and every row submitted more than a second before the kill is among them
    safe = max((n for n, t in submitted if t <= killed_at - 1.0), default=0)
    assert safe > 0
    assert len(uuids) >= safe, (
        f"lost {total - len(uuids)} of {total} rows: "
        f"{safe - len(uuids)} were submitted more than 1 s before the kill"
    )


_CONCURRENT_CHILD = textwrap.dedent("""
    import sys, time
    from tui.history import HistoryStore, HistoryWriter
    path, who, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
    while time.time() < float(sys.argv[4]):  # start together
        time.sleep(0.001)
    store = HistoryStore(path, seen_by=who)
    writer = HistoryWriter(store, interval=0.01)
    for i in range(start, start + 6000, 50):
        writer.submit([{"uuid": f"c{j:06d}", "name": who, "state": "STARTED" if who == "a"
                        else "SUCCESS", "sent": float(j)} for j in range(i, i + 50)])
        time.sleep(0.01)
    writer.close()
    print(writer.written, writer.errors, writer.flushes, flush=True)
""")


def test_two_processes_writing_the_same_file_do_not_corrupt_it(tmp_path: Path):
    path = tmp_path / "shared.sqlite3"
    go = str(time.time() + 1.0)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CONCURRENT_CHILD, str(path), who, str(start), go],
            cwd=REPO,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who, start in (("a", 0), ("b", 3000))
    ]  # 3000 uuids in common
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        written, errors, flushes = map(int, out.split())
        assert written == 6000 and errors == 0 and flushes > 5
    assert integrity(path) == "ok"
    store = HistoryStore(path)
    rows = {r["uuid"]: r for r in store.load_recent(100_000)}
    assert set(rows) == {f"c{j:06d}" for j in range(9000)}
    # the shared ones end SUCCESS whoever wrote last: the state never regresses
    assert all(rows[f"c{j:06d}"]["state"] == "SUCCESS" for j in range(3000, 9000))
    assert all(rows[f"c{j:06d}"]["state"] == "STARTED" for j in range(3000))
    # the fts index agrees with the table, once the rows both writers left unindexed are in
    store.index_pending(budget_s=30.0)
    assert store.index_backlog() == 0
    conn = store._conn()
    conn.execute("INSERT INTO tasks_fts(tasks_fts, rank) VALUES ('integrity-check', 1)")
    store.close()


# ---- retention -------------------------------------------------------------------------


def test_retention_by_age_and_by_count(tmp_path: Path):
    now = 1_000_000.0
    store = HistoryStore(tmp_path / "h.sqlite3", max_rows=50, max_age_days=1)
    old = [{"uuid": f"old{i}", "state": "SUCCESS", "sent": now - 2 * 86400 + i} for i in range(10)]
    new = [
        {"uuid": f"new{i:03d}", "state": "SUCCESS", "args": f"fir-{i:03d}", "sent": now - 100 + i}
        for i in range(80)
    ]
    store.upsert(old)
    store.upsert(new)
    assert store.prune(now=now, chunk=7) == 10 + 30
    left = [r["uuid"] for r in store.load_recent(1000)]
    assert left == [f"new{i:03d}" for i in range(79, 29, -1)]
    assert store.search("args:fir-005") == []  # the args index forgot the pruned rows too
    assert [r["uuid"] for r in store.search("args:fir-055")] == ["new055"]
    assert store.prune(now=now) == 0
    store.close()


def test_the_writer_prunes_periodically(tmp_path: Path):
    store = HistoryStore(tmp_path / "h.sqlite3", max_rows=20)
    writer = HistoryWriter(store, interval=0.02, prune_every=0.05)
    writer.submit([{"uuid": f"p{i:03d}", "state": "SENT"} for i in range(100)])
    deadline = time.monotonic() + 10
    while writer.written < 100 or store.count() > 20:
        assert time.monotonic() < deadline, "the writer never pruned"
        time.sleep(0.02)
    writer.close()
    assert writer.pruned == 80
    store.close()


# ---- search: the Tasks pane syntax ---------------------------------------------------------

_NAMES = (
    "afirgen_tasks.reports.generate_pdf_report",
    "afirgen_tasks.reports.generate_excel_report",
    "afirgen_tasks.email.send_notification_email",
    "afirgen_tasks.cleanup.clear_expired_cache",
)
_QUEUES = ("reports", "reports", "email", "cleanup")
_HOSTS = ("celery@w1", "celery@w2", "celery@pdf-box", None)
_EXCEPTIONS = (
    None,
    "SMTPConnectError(421, b'busy')",
    "PermanentTaskError('FIR 7 does not exist')",
    "FIR 99999 does not exist",
    "boom",
)


def _records(n: int = 240) -> list[TaskRecord]:
    out = []
    for i in range(n):
        t = TaskRecord(f"{(i * 2654435761) % (1 << 32):08x}-{i:04d}-4000-8000-{i:012x}")
        t.name = _NAMES[i % 4] if i % 17 else None
        t.queue = _QUEUES[i % 4] if i % 13 else None
        t.state = ALL_STATES[i % len(ALL_STATES)]
        t.hostname = _HOSTS[i % 4]
        t.priority = (i % 11) or None
        t.sent = 10_000.0 + i
        t.args = f"({i},)"
        t.kwargs = f"{{'recipient_email': 'user{i}@example.org'}}"
        # exc: typed by the repr, by the traceback (a bare message), or by nothing
        t.exception = _EXCEPTIONS[i % 5]
        if t.exception == "FIR 99999 does not exist":
            t.traceback = 'Traceback (most recent call last):\n  File "x"\nValueError: FIR'
        out.append(t)
    return out


RECORDS = _records()


@pytest.fixture(scope="module")
def search_store(tmp_path_factory: pytest.TempPathFactory):
    s = HistoryStore(tmp_path_factory.mktemp("search") / "h.sqlite3")
    s.upsert([task_to_row(t) for t in RECORDS])
    s.index_pending(budget_s=30.0)  # as the writer does after its flushes
    yield s
    s.close()


_TOKENS = (
    "pdf",
    "PDF",
    "e",
    "celery",
    "retry",
    "w1",
    "report",
    "zzz",
    "foo:bar",
    "state:",
    "state:fail",
    "state:s",
    "s:failure,retry",
    "queue:email",
    "q:mail",
    "worker:w1",
    "host:celery@",
    "name:report",
    "n:excel,pdf",
    "task:notif",
    "uuid:a",
    "id:0",
    "uuid:1,2",
    "prio:10",
    "prio:>=8",
    "prio:<3",
    "prio:3-7",
    "prio:!=5",
    "prio:==4",
    "prio:>=8,1",
    "prio:>9",
    "prio:<=2",
    "exc:smtp",
    "exc:ValueError",
    "exception:perm,busy",
    "exc:unknown",
    "exc:fir",
    "exc:zzz",
)


def _expected(query: str) -> list[str]:
    flt = TaskFilter(query)
    return [t.uuid for t in sorted(RECORDS, key=lambda t: -t.sent) if flt(t)]


@pytest.mark.parametrize("cap", [1, 10**9], ids=["scan", "driver"])
@pytest.mark.parametrize(
    "query",
    [
        *_TOKENS,
        "state:failure queue:email",
        "pdf state:success",
        "prio:x",
        "prio:>=8 worker:w2 name:pdf",
    ],
)
def test_search_matches_the_tasks_pane_filter(search_store: HistoryStore, query: str, cap: int):
    search_store.DRIVER_CAP = cap  # both plans must give the pane's answer
    try:
        got, plan = search_store.search_with_plan(query, limit=10_000)
    finally:
        del search_store.DRIVER_CAP
    assert [r["uuid"] for r in got] == _expected(query), plan


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=3), st.integers(1, 50))
def test_search_agrees_with_the_filter_on_combinations(search_store, tokens, limit):
    query = " ".join(tokens)
    got = [r["uuid"] for r in search_store.search(query, limit=limit)]
    assert got == _expected(query)[:limit]


def test_search_exc_matches_the_exception_type_or_text(search_store: HistoryStore):
    # typed by the traceback's last line: the text ("FIR 99999 ...") does not say ValueError
    got = {r["uuid"] for r in search_store.search("exc:ValueError", limit=10_000)}
    assert got == {t.uuid for t in RECORDS if t.exception == "FIR 99999 does not exist"}
    got = {r["uuid"] for r in search_store.search("exc:smtp state:failure", limit=10_000)}
    want = {t.uuid for t in RECORDS if t.state == "FAILURE" and "SMTP" in (t.exception or "")}
    assert got == want and want
    # a failure with no exception text is "unknown", like a bare message without traceback
    got = {r["uuid"] for r in search_store.search("exc:unknown", limit=10_000)}
    assert got == {
        t.uuid
        for t in RECORDS
        if t.exception == "boom" or (t.exception is None and t.state == "FAILURE")
    }


def test_unreadable_priority_matches_nothing_like_the_pane(search_store: HistoryStore):
    assert parse_query("prio:x").errors == ["bad priority in 'prio:x'"]
    assert search_store.search("prio:x") == []


def test_search_args_text_and_time_range(search_store: HistoryStore):
    got = search_store.search("args:user117@example")
    assert [r["uuid"] for r in got] == [RECORDS[117].uuid]
    assert got[0]["kwargs"] == RECORDS[117].kwargs
    got = search_store.search("args:user11@,user12@")  # alternatives
    assert {r["uuid"] for r in got} == {RECORDS[11].uuid, RECORDS[12].uuid}
    assert search_store.search("args:USER117@") != []  # case-insensitive
    assert search_store.search("args:100%") == []  # LIKE wildcards are literal
    assert parse_query("args:ab").errors  # too short for the trigram index
    got = search_store.search("state:failure", since=10_050, until=10_100)
    assert got and all(10_050 <= r["first_seen"] <= 10_100 and r["state"] == "FAILURE" for r in got)
    assert [r["uuid"] for r in got] == [
        u
        for u in _expected("state:failure")
        if 10_050 <= RECORDS[int(u.split("-")[1])].sent <= 10_100
    ]
    assert len(search_store.search("", since=10_200)) == 40
    assert search_store.search("", limit=3)[0]["uuid"] == RECORDS[-1].uuid


def test_search_picks_an_index_for_rare_terms_and_scans_for_common_ones(search_store):
    _, plan = search_store.search_with_plan(f"uuid:{RECORDS[5].uuid[:8]}")
    assert plan == "driver:uuid"
    search_store.DRIVER_CAP = 50
    try:
        assert search_store.search_with_plan("state:failure")[1] == "driver:state"  # 26 rows
        assert search_store.search_with_plan("queue:reports")[1] == "scan"  # 110 rows
        assert search_store.search_with_plan("args:user1@")[1] == "driver:args"
    finally:
        del search_store.DRIVER_CAP


# Search speed on 1M rows (goal < 200 ms) is a benchmark, not a timed test (CI machines are
# shared): `python -m bench.bench_history` prints every term kind; results in docs/performance.md.


# ---- backfill (unit: fakeredis; the real thing is in tests/integration) ----------------------


def _meta(status: str, **extra) -> bytes:
    meta = {
        "status": status,
        "result": None,
        "traceback": None,
        "children": [],
        "date_done": "2024-05-01T10:00:00.500000+00:00",
        **extra,
    }
    return json.dumps(meta).encode()


def test_backfill_reads_backend_meta_and_skips_what_the_console_knows(store: HistoryStore):
    r = fakeredis.FakeRedis()
    r.set(
        "celery-task-meta-new-ok",
        _meta(
            "SUCCESS",
            result={"status": "ok"},
            name="afirgen_tasks.email.send_notification_email",
            args=[],
            kwargs={"recipient_email": "a@example.org"},
            worker="celery@w9",
            retries=0,
            queue="email",
        ),
    )
    r.set(
        "celery-task-meta-new-fail",
        _meta(
            "FAILURE",
            result={
                "exc_type": "PermanentTaskError",
                "exc_message": ["FIR 9 does not exist"],
                "exc_module": "afirgen_tasks.base",
            },
            traceback="Traceback (most recent call last):\nPermanentTaskError: FIR 9\n",
        ),
    )
    r.set("celery-task-meta-live", _meta("SUCCESS"))
    r.set("celery-task-meta-stuck", _meta("SUCCESS", result=7))
    r.set("celery-task-meta-done", _meta("FAILURE"))
    r.set("celery-task-meta-junk", b"not json")
    r.set("unrelated", b"x")
    store.upsert(
        [
            {"uuid": "stuck", "state": "STARTED", "name": "n"},
            {"uuid": "done", "state": "SUCCESS", "name": "n"},
        ]
    )

    res = backfill_from_backend(r, store, known_uuids={"live"}, batch=2, scan_count=2)
    assert (res.scanned, res.inserted, res.updated, res.unreadable) == (6, 2, 1, 1)
    assert sorted(res.uuids) == ["new-fail", "new-ok"]
    ok = store.get("new-ok")
    assert ok["source"] == "backend" and ok["state"] == "SUCCESS"
    assert ok["hostname"] == "celery@w9" and ok["queue"] == "email" and ok["retries"] == 0
    assert ok["result"] == "{'status': 'ok'}" and "a@example.org" in ok["kwargs"]
    assert ok["finished"] == pytest.approx(1714557600.5)
    fail = store.get("new-fail")
    assert fail["exception"] == "PermanentTaskError('FIR 9 does not exist')"
    assert fail["traceback"].startswith("Traceback")
    stuck = store.get("stuck")
    assert stuck["state"] == "SUCCESS" and stuck["source"] == "events" and stuck["result"] == "7"
    assert store.get("done")["state"] == "SUCCESS"  # finished rows are left alone
    assert store.get("live") is None
    assert [r["uuid"] for r in store.search("state:failure")] == ["new-fail"]


def test_meta_to_row_handles_partial_meta():
    row = meta_to_row("x", {"status": "started", "result": {"pid": 1}, "date_done": None})
    assert row["state"] == "STARTED" and row["finished"] is None and row["name"] is None


def test_connections_of_finished_threads_are_closed(store: HistoryStore):
    """Each search runs in a new worker thread: their connections must not pile up."""
    for _ in range(20):
        t = threading.Thread(target=lambda: store.search("state:success"))
        t.start()
        t.join()
    store.search("")  # this thread's connection; the finished threads' ones are closed now
    assert store.connection_count() <= 2


def test_writer_survives_a_row_sqlite_cannot_store(store: HistoryStore):
    writer = HistoryWriter(store, interval=0.05)
    try:
        bad = {"uuid": "too-big", "name": "afirgen_tasks.x", "state": "SUCCESS", "priority": 2**70}
        writer.submit([bad])
        writer.submit(
            [{"uuid": "fine", "name": "afirgen_tasks.x", "state": "SUCCESS", "priority": 5}]
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and store.get("fine") is None:
            time.sleep(0.02)
        assert store.get("fine") is not None, "the writer thread kept running"
        assert writer._thread.is_alive()
    finally:
        writer.close()
    # the task is kept; only the value SQLite cannot hold is not
    assert store.get("too-big")["priority"] is None and store.get("too-big")["state"] == "SUCCESS"
    assert writer.cleaned == 1 and writer.rejected == 0 and writer.errors == 0


# ---- hostile rows (issue 12, item 5) ----------------------------------------------------
POISON_VALUES = [
    {"priority": 2**70},
    {"retries": -(2**80)},
    {"name": "afirgen_tasks.\ud800lone"},
    {"args": "('\udfff',)", "queue": "q\ud83d"},
    {"sent": float("nan"), "runtime": float("inf")},
    {"started": 10**400},
    {"received": "now", "state": 7},
    {"kwargs": b"\xff\xfe", "hostname": object()},
]


def _persisted(path: Path) -> dict[str, tuple]:
    conn = sqlite3.connect(path)
    try:
        return {r[0]: r[1:] for r in conn.execute("SELECT uuid, name, priority, state FROM tasks")}
    finally:
        conn.close()


def test_one_poison_event_every_few_real_ones_costs_no_real_task(tmp_path: Path):
    """Before: a priority of 2**70 made the writer drop its whole batch (0 of 238 saved)."""
    store = HistoryStore(tmp_path / "h.sqlite3")
    writer = HistoryWriter(store, interval=0.01)
    real, poison = [], []
    try:
        for i in range(240):
            uuid = f"real-{i:03d}"
            real.append(uuid)
            row = {
                "uuid": uuid,
                "name": "afirgen_tasks.reports.x",
                "state": "SUCCESS",
                "priority": 5,
                "sent": 1.7e9 + i,
            }
            batch = [row]
            if i % 3 == 0:
                bad = {
                    "uuid": f"poison-{i:03d}",
                    "state": "SENT",
                    **POISON_VALUES[i % len(POISON_VALUES)],
                }
                poison.append(bad["uuid"])
                batch.insert(0, bad)
            writer.submit(batch)
    finally:
        writer.close()
    saved = _persisted(tmp_path / "h.sqlite3")  # read back by a connection of our own
    assert [u for u in real if u not in saved] == []
    assert all(saved[u] == ("afirgen_tasks.reports.x", 5, "SUCCESS") for u in real)
    # the poison tasks are kept too, their bad values cleaned
    assert [u for u in poison if u not in saved] == []
    assert saved["poison-000"][1] is None  # priority 2**70 -> NULL
    assert "\ufffd" in saved["poison-018"][0]  # the lone surrogate in the name -> U+FFFD
    assert writer.rejected == 0 and writer.errors == 0 and writer.cleaned >= len(poison)
    assert writer.status_note() == ""
    store.close()


def test_a_row_sqlite_refuses_is_counted_and_its_batch_is_saved(tmp_path: Path, monkeypatch):
    """The row-by-row fallback, for whatever the cleaning does not foresee."""
    import tui.history.store as history

    monkeypatch.setattr(history, "_clean_int", lambda v: (v, False))  # let 2**70 reach SQLite
    store = HistoryStore(tmp_path / "h.sqlite3")
    writer = HistoryWriter(store, interval=60)  # flushed by hand: one batch
    try:
        rows = []
        for i in range(12):
            rows.append({"uuid": f"real-{i}", "state": "SUCCESS", "priority": 5})
            if i % 4 == 0:
                rows.append({"uuid": f"poison-{i}", "state": "SENT", "priority": 2**70})
        writer.submit(rows)
        assert writer.flush() == 12
    finally:
        writer.close()
    saved = _persisted(tmp_path / "h.sqlite3")
    assert sorted(saved) == sorted(f"real-{i}" for i in range(12))
    assert writer.rejected == 3 and writer.last_rejected == "integer too large"
    assert writer.status_note() == "history: 3 rows not saved (integer too large)"
    store.close()


def test_a_failed_write_is_counted_shown_and_retried(tmp_path: Path):
    store = _ImpatientStore(tmp_path / "h.sqlite3")
    blocker = sqlite3.connect(tmp_path / "h.sqlite3", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another console holding the write lock
    writer = HistoryWriter(store, interval=60)
    try:
        writer.submit([{"uuid": "x1", "state": "SENT"}])
        assert writer.flush() == 0 and writer.flush() == 0
        assert writer.status_note() == "history: 2 write failures, failing (database is locked)"
        blocker.execute("COMMIT")
        assert writer.flush() == 1
        assert writer.status_note() == "history: 2 write failures, recovered (database is locked)"
    finally:
        blocker.close()
        writer.close()
    store.close()


def test_the_history_file_and_its_wal_and_shm_are_private(tmp_path: Path):
    old = os.umask(0o022)
    try:
        store = HistoryStore(tmp_path / "sub" / "h.sqlite3")
        store.upsert([{"uuid": "a", "state": "SENT", "args": "('secret argument',)"}])
        modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / "sub").iterdir()}
    finally:
        os.umask(old)
    assert modes == {"h.sqlite3": "0o600", "h.sqlite3-wal": "0o600", "h.sqlite3-shm": "0o600"}
    store.close()


def test_the_writer_closes_its_own_connection_through_the_store(tmp_path: Path):
    store = HistoryStore(tmp_path / "h.sqlite3")
    before = store.connection_count()  # this thread's, from creating the schema
    writer = HistoryWriter(store, interval=0.01)
    writer.submit([{"uuid": "a", "state": "SENT"}])
    writer.close()
    assert store.connection_count() == before and store.get("a") is not None
    store.close()
