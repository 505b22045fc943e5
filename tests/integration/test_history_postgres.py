"""The shared history on PostgreSQL: the same store as the SQLite file, run against both.

Live: a database of the run's own on the PostgreSQL at 127.0.0.1:5432 (or
``$AFIRGEN_TEST_PG_URL``), dropped at the end (tests/support/postgres.py).  Skipped, saying
why, when no PostgreSQL can be reached.  The tests that take ``make``/``store`` run once per
backend (``[sqlite]`` and ``[postgres]``): both must give the same answers.
"""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from afirgen_tasks.settings import load_settings
from tui.core.model import ClusterModel
from tui.core.states import RANK
from tui.history import HistoryBackend, HistoryStore, HistoryWriter, load_into_model, task_to_row
from tui.history.export import export_csv, export_xlsx
from tui.sources.validate import Tally

from ..support.postgres import PostgresUnavailable, pg_database, reset_schema
from ..unit.test_history import _TOKENS, RECORDS, _expected, child_env

postgres = pytest.importorskip("tui.history.postgres")
PostgresHistoryStore = postgres.PostgresHistoryStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pg_db() -> Iterator[str]:
    try:
        with pg_database() as url:
            yield url
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def pg_url(pg_db: str) -> str:
    reset_schema(pg_db)  # every test starts on an empty database
    return pg_db


Maker = Callable[..., HistoryBackend]


@pytest.fixture(params=["sqlite", "postgres"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Maker]:
    """Opens stores of one backend on one history (a file, or the test database)."""
    opened: list[HistoryBackend] = []
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")

        def factory(**kw) -> HistoryBackend:
            s = PostgresHistoryStore(url, **kw)
            opened.append(s)
            return s
    else:

        def factory(**kw) -> HistoryBackend:
            s = HistoryStore(tmp_path / "history.sqlite3", **kw)
            opened.append(s)
            return s

    yield factory
    for s in opened:
        s.close()


@pytest.fixture
def store(make: Maker) -> HistoryBackend:
    return make()


# ---- upserts: the rank rules ------------------------------------------------------------


def test_state_never_regresses_and_known_fields_are_never_lost(store: HistoryBackend):
    done = {
        "uuid": "u1",
        "name": "t.pdf",
        "state": "SUCCESS",
        "result": "'ok'",
        "hostname": "celery@w1",
        "sent": 100.0,
        "finished": 105.0,
    }
    store.upsert([done])
    stale = {"uuid": "u1", "state": "STARTED", "hostname": "celery@w2", "queue": "reports"}
    store.upsert([stale | {"started": 101.0, "name": None}])
    row = store.get("u1")
    assert row is not None
    assert row["state"] == "SUCCESS"
    assert row["result"] == "'ok'" and row["name"] == "t.pdf"
    assert row["hostname"] == "celery@w1"  # the winner's value stays
    assert row["queue"] == "reports" and row["started"] == 101.0  # gaps are filled
    assert row["first_seen"] == 100.0 and row["cluster"] == "default"


def test_retry_cycle_lost_and_backend_marks(store: HistoryBackend):
    store.upsert([{"uuid": "r", "state": "RETRY", "retries": 0, "exception": "Timeout()"}])
    store.upsert([{"uuid": "r", "state": "RECEIVED", "retries": 0}])  # late, same attempt
    assert store.get("r")["state"] == "RETRY"
    store.upsert([{"uuid": "r", "state": "STARTED", "retries": 1}])  # the next attempt
    assert store.get("r")["state"] == "STARTED" and store.get("r")["exception"] == "Timeout()"
    # LOST replaces the STARTED it was marked from; any later event replaces LOST
    store.upsert([{"uuid": "r", "state": "LOST"}])
    assert store.get("r")["state"] == "LOST"
    store.upsert([{"uuid": "r", "state": "SUCCESS"}])
    assert store.get("r")["state"] == "SUCCESS"
    store.upsert([{"uuid": "b", "state": "SUCCESS"}], source="backend")
    assert store.get("b")["source"] == "backend"
    store.upsert([{"uuid": "e", "state": "STARTED"}])
    store.upsert([{"uuid": "e", "state": "SUCCESS"}], source="backend")
    assert store.get("e")["source"] == "events" and store.get("e")["state"] == "SUCCESS"
    assert store.existing(["r", "b", "nope"]) == {"r": RANK["SUCCESS"], "b": RANK["SUCCESS"]}


# ---- search: the Tasks pane syntax ------------------------------------------------------------

_QUERIES = [
    *_TOKENS,
    "state:failure queue:email",
    "pdf state:success",
    "prio:x",
    "prio:>=8 worker:w2 name:pdf",
    # pairs of tokens (the SQLite suite tries random combinations with hypothesis)
    *(f"{a} {b}" for a, b in zip(_TOKENS[::3], _TOKENS[1::3], strict=False)),
    *(f"{a} {b}" for a, b in zip(_TOKENS[::2], reversed(_TOKENS), strict=False)),
]


def test_search_matches_the_tasks_pane_filter(store: HistoryBackend):
    store.upsert([task_to_row(t) for t in RECORDS])
    for query in _QUERIES:
        got = [r["uuid"] for r in store.search(query, limit=10_000)]
        assert got == _expected(query), query
        assert [r["uuid"] for r in store.search(query, limit=7)] == _expected(query)[:7], query


def test_search_args_text_and_time_range(store: HistoryBackend):
    store.upsert([task_to_row(t) for t in RECORDS])
    got = store.search("args:user117@example")
    assert [r["uuid"] for r in got] == [RECORDS[117].uuid]
    assert got[0]["kwargs"] == RECORDS[117].kwargs
    got = store.search("args:user11@,user12@")  # alternatives
    assert {r["uuid"] for r in got} == {RECORDS[11].uuid, RECORDS[12].uuid}
    assert store.search("args:USER117@") != []  # case-insensitive
    assert store.search("args:100%") == []  # LIKE wildcards are literal
    assert store.search("args:(1_") == []  # so is _
    got = store.search("state:failure", since=10_050, until=10_100)
    assert got and all(10_050 <= r["first_seen"] <= 10_100 for r in got)
    assert [r["uuid"] for r in got] == [
        u
        for u in _expected("state:failure")
        if 10_050 <= RECORDS[int(u.split("-")[1])].sent <= 10_100
    ]
    assert len(store.search("", since=10_200)) == 40
    assert store.search("", limit=3)[0]["uuid"] == RECORDS[-1].uuid
    assert store.has_fts  # FTS5 trigram / pg_trgm: args: is answered from an index


def test_each_cluster_loads_and_searches_only_its_own(make: Maker):
    a, b = make(cluster="redis://a:6379/0"), make(cluster="redis://b:6379/0")
    a.upsert([{"uuid": f"a{i}", "state": "SUCCESS", "sent": 100.0 + i} for i in range(5)])
    b.upsert([{"uuid": f"b{i}", "state": "FAILURE", "sent": 200.0 + i} for i in range(3)])
    b.upsert([{"uuid": "a0", "state": "STARTED", "sent": 300.0}])  # the same id on b
    assert [r["uuid"] for r in a.load_recent()] == [f"a{i}" for i in range(4, -1, -1)]
    assert [r["uuid"] for r in b.load_recent()] == ["a0", "b2", "b1", "b0"]
    assert a.get("a0")["state"] == "SUCCESS" and b.get("a0")["state"] == "STARTED"
    assert [r["uuid"] for r in a.load_recent(2)] == ["a4", "a3"]
    assert a.search("state:failure") == []
    assert [r["uuid"] for r in a.search("state:failure", scope="all")] == ["b2", "b1", "b0"]
    assert a.clusters() == ["redis://a:6379/0", "redis://b:6379/0"]
    assert a.resolve_scope("b:6379") == ["redis://b:6379/0"]
    with pytest.raises(ValueError, match="no cluster matching"):
        a.search("", scope="nowhere")
    assert a.count() == 9 and a.count("redis://b:6379/0") == 4


# ---- retention ----------------------------------------------------------------------------


def test_retention_by_age_and_by_count(make: Maker):
    now = 1_000_000.0
    store = make(max_rows=50, max_age_days=1)
    old = [{"uuid": f"old{i}", "state": "SUCCESS", "sent": now - 2 * 86400 + i} for i in range(10)]
    new = [
        {"uuid": f"new{i:03d}", "state": "SUCCESS", "args": f"fir-{i:03d}", "sent": now - 100 + i}
        for i in range(80)
    ]
    store.upsert(old)
    store.upsert(new)
    store.upsert(new[:5])  # updates take no new place (PostgreSQL's ids jump on conflicts)
    assert store.prune(now=now, chunk=7) == 10 + 30
    left = [r["uuid"] for r in store.load_recent(1000)]
    assert left == [f"new{i:03d}" for i in range(79, 29, -1)]
    assert store.search("args:fir-005") == []  # the args index forgot the pruned rows too
    assert [r["uuid"] for r in store.search("args:fir-055")] == ["new055"]
    assert store.prune(now=now) == 0


def test_only_one_console_prunes_at_a_time(pg_url: str):
    """Consoles sharing the database prune in turn: while one holds the prune lock another
    skips the round instead of deleting the same rows."""
    import psycopg

    now = 1_000_000.0
    store = PostgresHistoryStore(pg_url, max_age_days=1)
    store.upsert([{"uuid": f"o{i}", "state": "SUCCESS", "sent": now - 3 * 86400} for i in range(5)])
    with psycopg.connect(pg_url, autocommit=True) as other, other.transaction():
        other.execute("SELECT pg_advisory_xact_lock(%s)", (postgres._LOCK_PRUNE,))
        assert store.prune(now=now) == 0 and store.count() == 5  # skipped: another prunes
    assert store.prune(now=now) == 5 and store.count() == 0
    store.close()


# ---- hostile rows -----------------------------------------------------------------------


class _Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("boom")


def test_rows_neither_store_can_hold_are_cleaned_or_refused_never_raised(store: HistoryBackend):
    rows = [
        {"uuid": "nul", "state": "SUCCESS", "name": "a\x00b", "args": "(\x00,)", "sent": 1.0},
        {"uuid": "sur", "state": "STARTED", "name": "x\ud800y", "queue": "q"},
        {"uuid": "big", "state": "SENT", "priority": 2**70, "retries": -(2**65)},
        {"uuid": "nan", "state": "FAILURE", "sent": float("nan"), "runtime": float("inf")},
        {"uuid": "odd", "state": "SUCCESS", "result": _Hostile(), "kwargs": b"\xff{}"},
        {"uuid": "", "state": "SUCCESS"},
        {"uuid": 7, "state": "SUCCESS"},
        {"uuid": "fine", "state": "SUCCESS", "name": "afirgen_tasks.x", "sent": 5.0},
    ]
    report = store.upsert_report(rows)
    assert report.written == 6 and len(report.rejected) == 2
    got = {r["uuid"]: r for r in store.load_recent()}
    assert set(got) == {"nul", "sur", "big", "nan", "odd", "fine"}
    assert got["sur"]["name"] == "x\ufffdy"
    assert got["big"]["priority"] is None and got["big"]["retries"] is None
    assert got["nan"]["runtime"] is None
    assert got["odd"]["result"] is None and got["odd"]["kwargs"] == "\ufffd{}"
    if isinstance(store, PostgresHistoryStore):  # PostgreSQL text holds no NUL
        assert got["nul"]["name"] == "a\ufffdb" and report.cleaned >= 6
    # a search term with NUL or escapes is data, never SQL
    for query in ("zz\x00zz", "name:'; DROP TABLE tasks; --", "uuid:%", "args:';--"):
        assert store.search(query) == [], query
    store.search("args:\x00\x00\x00")  # SQLite's FTS5 raised "unterminated string" here
    assert store.count() == 6
    # the rows read back pass the trust boundary into the model
    model, tally = ClusterModel(), Tally()
    load_into_model(model, store.load_recent(), tally)
    assert all(model.get_task(u) is not None for u in got)
    # the console's start-up read, a page at a time: the same rows in the same order
    pages = list(store.iter_recent(100, 4))
    assert [len(p) for p in pages] == [4, 2]
    assert [r["uuid"] for p in pages for r in p] == [r["uuid"] for r in store.load_recent()]


def test_the_writer_thread_writes_to_either_backend(make: Maker):
    store = make(max_rows=1000)
    writer = HistoryWriter(store, interval=0.02, prune_every=0.05)
    writer.submit([{"uuid": f"w{i:03d}", "state": "SENT"} for i in range(100)])
    writer.submit([{"uuid": "w001", "state": "SUCCESS", "name": "late"}])
    deadline = time.monotonic() + 20
    while store.count() < 100 or (store.get("w001") or {}).get("state") != "SUCCESS":
        assert time.monotonic() < deadline, writer.status_note()
        time.sleep(0.02)
    writer.close()
    # 100 when both submits met in one flush (the later snapshot of w001 wins), else 101
    assert writer.written in (100, 101) and writer.errors == 0, writer.status_note()
    assert store.get("w001")["name"] == "late"


# ---- many consoles on one database --------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import json, sys
    from tui.history.postgres import PostgresHistoryStore
    url, who, plan = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    store = PostgresHistoryStore(url, seen_by=who)
    print("ready", flush=True)
    sys.stdin.readline()  # both start writing at once
    written = 0
    for batch in plan:  # [[uuid, state], ...] per transaction
        written += store.upsert([{"uuid": u, "state": s, "name": who} for u, s in batch])
    store.close()
    print(written, flush=True)
    """
)


def _plan(order: list[str], uuids: list[str], rounds: int) -> list[list[list[str]]]:
    """Per round one transaction with every uuid, in a shuffled order, in the next state."""
    out = []
    for r in range(rounds):
        state = order[r % len(order)]
        batch = [[u, state] for u in uuids]
        batch = batch[r % 7 :] + batch[: r % 7]
        out.append(batch if r % 2 else batch[::-1])
    return out


def test_two_consoles_writing_the_same_tasks_at_once_keep_the_highest_rank(pg_url: str):
    """Two processes (two consoles on two hosts) upsert the same 300 tasks at once, one
    walking the states up, the other down, in different row orders: every task ends in the
    highest-ranked state either wrote, nothing deadlocks and nothing is lost."""
    PostgresHistoryStore(pg_url).close()  # schema made (the consoles would race to it too)
    uuids = [f"task-{i:04d}" for i in range(300)]
    up = ["SENT", "RECEIVED", "STARTED", "RETRY", "FAILURE"]
    down = ["SUCCESS", "STARTED", "RECEIVED", "SENT", "PENDING"]
    plans = {"A": _plan(up, uuids, 10), "B": _plan(down, uuids, 10)}
    procs = {
        who: subprocess.Popen(
            [sys.executable, "-c", _WRITER, pg_url, who, json.dumps(plan)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for who, plan in plans.items()
    }
    try:
        for p in procs.values():
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs.values():
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = {who: p.communicate(timeout=120) for who, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    for who, (out, err) in outs.items():
        assert procs[who].returncode == 0, err
        assert out.strip() == str(300 * 10), (who, err)
    store = PostgresHistoryStore(pg_url)
    rows = {r["uuid"]: r for r in store.search("", limit=10_000)}
    store.close()
    assert set(rows) == set(uuids)
    # SUCCESS (B's first round) outranks anything A writes, whenever it lands
    assert {r["state"] for r in rows.values()} == {"SUCCESS"}
    assert {r["name"] for r in rows.values()} <= {"A", "B"}


# ---- schema and migrations ----------------------------------------------------------------


def test_the_console_creates_and_migrates_the_schema_once(pg_url: str, caplog):
    import psycopg

    stores: list[PostgresHistoryStore] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            stores.append(PostgresHistoryStore(pg_url))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]  # consoles starting at once
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert sorted(len(s.applied) for s in stores) == [0, 0, 0, len(postgres.MIGRATIONS)]
    assert all(s.schema_version == postgres.PG_SCHEMA_VERSION and s.has_fts for s in stores)
    for s in stores:
        s.close()
    with psycopg.connect(pg_url) as conn:
        versions = conn.execute("SELECT version, applied_by FROM schema_version").fetchall()
        assert [v for v, _ in versions] == [m[0] for m in postgres.MIGRATIONS]
        assert all("@" in by for _, by in versions)  # user@host:pid of the console
        conn.execute("INSERT INTO schema_version VALUES (99, 0, 'a newer console')")
    with caplog.at_level(logging.WARNING, logger="tui.history.postgres"):
        newer = PostgresHistoryStore(pg_url)
    assert newer.schema_version == 99 and newer.applied == []
    assert "newer than this console's" in caplog.text
    newer.close()


# ---- settings, secrets, exports -------------------------------------------------------------


def test_history_db_takes_a_postgres_url_and_hides_its_password(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("AFIRGEN_HISTORY_DB", raising=False)
    config = tmp_path / "config.toml"
    config.write_text('[history]\ndb = "postgresql://afirgen:s3cr%2Ft@db.example:5432/history"\n')
    settings = load_settings(config)
    assert settings.history_db == "postgresql://afirgen:s3cr%2Ft@db.example:5432/history"
    assert "s3cr" not in repr(settings)
    assert {"s3cr%2Ft", "s3cr/t"} <= set(settings.secrets())
    config.write_text('[history]\ndb = "h/history.sqlite3"\n')
    assert load_settings(config).history_db == tmp_path / "h/history.sqlite3"  # still a path


def test_an_unreachable_history_is_said_without_its_password(tmp_path: Path):
    settings = load_settings(None, history_db="postgresql://afirgen:hunter2@127.0.0.1:1/history")
    with pytest.raises(postgres.HistoryUnavailable) as exc:
        HistoryStore.from_settings(settings)
    assert "127.0.0.1" in str(exc.value) and "hunter2" not in str(exc.value)


def test_from_settings_picks_the_backend_and_exports_take_its_rows(pg_url: str, tmp_path: Path):
    settings = load_settings(None, history_db=pg_url)
    store = HistoryStore.from_settings(settings)
    assert isinstance(store, PostgresHistoryStore) and store.cluster == settings.cluster_id
    store.upsert([task_to_row(t) for t in RECORDS[:30]])
    rows = store.search("state:failure")
    assert rows
    n = export_csv(rows, tmp_path / "t.csv", cluster=store.cluster)
    assert n == len(rows)
    with open(tmp_path / "t.csv", newline="", encoding="utf-8-sig") as fh:
        assert {r["State"] for r in csv.DictReader(fh)} == {"FAILURE"}
    assert export_xlsx(rows, tmp_path / "t.xlsx", cluster=store.cluster) == len(rows)
    store.close()
    sqlite = HistoryStore.from_settings(load_settings(None, history_db=tmp_path / "h.sqlite3"))
    assert isinstance(sqlite, HistoryStore)
    sqlite.close()
