"""The FIR records database: schema, connections, lookups, the sample generator and its CLI."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import pytest

from afirgen_tasks import records
from afirgen_tasks.base import DatabaseLockedError, PermanentTaskError, is_transient

END = date(2025, 6, 30)
REPO = Path(__file__).resolve().parents[2]


def test_schema_is_idempotent_and_versioned(tmp_path: Path) -> None:
    db = tmp_path / "firs.sqlite3"
    for _ in range(2):
        with records.open_db(db) as conn:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            assert {"firs", "dashboard_stats", "cache", "email_deliveries"} <= tables
            assert conn.execute("PRAGMA user_version").fetchone()[0] == records.SCHEMA_VERSION
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == int(
                records.DEFAULT_BUSY_TIMEOUT * 1000
            )


def test_status_check_constraint_rejects_unknown_status(tmp_path: Path) -> None:
    fir = records.sample_firs(1, seed=1, end=END)[0]
    bad = records.FIR(**{**fir.as_dict(), "status": "lost"})
    with records.open_db(tmp_path / "f.db") as conn, pytest.raises(sqlite3.IntegrityError):
        with records.transaction(conn):
            records.insert_firs(conn, [bad])


def test_sample_is_deterministic_by_seed() -> None:
    a = records.sample_firs(200, seed=7, end=END)
    b = records.sample_firs(200, seed=7, end=END)
    c = records.sample_firs(200, seed=8, end=END)
    assert a == b
    assert a != c
    assert [f.id for f in a] == list(range(1, 201))


def test_sample_fields_are_realistic() -> None:
    firs = records.sample_firs(500, seed=3, end=END)
    stations = {
        (d, ps)
        for districts in records.PLACES.values()
        for d, sts in districts.items()
        for ps in sts
    }
    offences = {o[0]: o[1] for o in records.OFFENCES}
    assert len({f.fir_number for f in firs}) == 500
    for f in firs:
        assert (f.district, f.police_station) in stations
        assert f.district in records.PLACES[f.state]
        assert offences[f.offence] == f.act_section
        assert re.fullmatch(r"[a-z]+\.[a-z]+\d+@example\.(com|org|net)", f.contact_email)
        assert re.fullmatch(r"\+91 [6-9]\d{9}", f.contact_phone)
        assert f.status in records.STATUSES and f.status != "archived"
        assert f.complainant in f.description and f.police_station in f.description
        assert "\n\n" in f.description
        filed = datetime.fromisoformat(f.filed_at)
        assert f.filed_at.endswith("Z")
        assert filed.date() < END
        assert (END - filed.date()).days <= 731
    # filing order follows ids, and the data has variety worth a dashboard
    assert [f.filed_at for f in firs] == sorted(f.filed_at for f in firs)
    assert len({f.district for f in firs}) >= 10
    assert {f.status for f in firs} == {
        "registered",
        "under_investigation",
        "chargesheeted",
        "closed",
    }
    assert len({f.offence for f in firs}) == len(records.OFFENCES)


def test_old_cases_are_mostly_closed_and_new_ones_open() -> None:
    firs = records.sample_firs(1000, seed=5, end=END)
    old = [f for f in firs if (END - datetime.fromisoformat(f.filed_at).date()).days > 365]
    new = [f for f in firs if (END - datetime.fromisoformat(f.filed_at).date()).days < 7]
    assert old and new
    assert sum(f.status == "closed" for f in old) / len(old) > 0.4
    assert all(f.status in ("registered", "under_investigation") for f in new)


def test_create_sample_db_replaces_and_adds_cache(tmp_path: Path) -> None:
    db = tmp_path / "data" / "firs.sqlite3"
    records.create_sample_db(db, count=50, seed=11, end=END)
    records.create_sample_db(db, count=30, seed=11, end=END)
    with records.open_db(db) as conn:
        assert records.count_firs(conn) == 30
        assert records.get_fir(conn, 30) == records.sample_firs(30, 11, END)[29]
        assert records.get_fir(conn, 31) is None
        assert conn.execute("SELECT count(*) FROM cache").fetchone()[0] >= 3
        expired = conn.execute(
            "SELECT count(*) FROM cache WHERE expires_at < ?", (records.utc_iso(records.utc_now()),)
        ).fetchone()[0]
        assert expired >= 1


def test_lookups(tmp_path: Path) -> None:
    db = records.create_sample_db(tmp_path / "f.db", count=20, seed=2, end=END)
    with records.open_db(db) as conn:
        assert records.require_fir(conn, "7").id == 7
        assert set(records.get_firs(conn, [3, 5, 99, 3])) == {3, 5}
        with pytest.raises(PermanentTaskError, match="FIR 99 does not exist"):
            records.require_fir(conn, 99)
        for bad in (0, -1, "abc", True, 1.5, None):
            with pytest.raises(PermanentTaskError, match="not a positive whole number"):
                records.require_fir(conn, bad)


def test_stats_and_cache_helpers_upsert(tmp_path: Path) -> None:
    with records.open_db(tmp_path / "f.db") as conn, records.transaction(conn):
        records.put_stat(conn, "k", {"a": 1}, "2025-01-01T00:00:00Z")
        records.put_stat(conn, "k", {"a": 2}, "2025-01-02T00:00:00Z")
        records.cache_put(conn, "c", "v1", datetime(2030, 1, 1))
        records.cache_put(conn, "c", "v2", datetime(2031, 1, 1))
    with records.open_db(tmp_path / "f.db") as conn:
        assert records.get_stat(conn, "k") == {"a": 2}
        assert records.get_stat(conn, "missing") is None
        assert [tuple(r) for r in conn.execute("SELECT value, expires_at FROM cache")] == [
            ("v2", "2031-01-01T00:00:00Z")
        ]


def test_locked_database_is_a_transient_error(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    with records.open_db(db):
        pass
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(DatabaseLockedError, match="locked") as info:
            with records.open_db(db, timeout=0.05) as conn, records.transaction(conn):
                pass
        assert is_transient(info.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "out" / "a.bin"
    records.atomic_write_bytes(target, b"one")
    records.atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["a.bin"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "afirgen_tasks.records", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_seeds_and_refuses_to_overwrite_without_replace(tmp_path: Path) -> None:
    db = tmp_path / "firs.sqlite3"
    ok = _cli("seed", "--count", "25", "--db", str(db), "--end", "2025-06-30")
    assert ok.returncode == 0, ok.stderr
    assert "25 sample FIRs" in ok.stdout
    again = _cli("seed", "--count", "10", "--db", str(db))
    assert again.returncode == 2
    assert "--replace" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    replaced = _cli("seed", "--count", "10", "--db", str(db), "--replace")
    assert replaced.returncode == 0, replaced.stderr
    with records.open_db(db) as conn:
        assert records.count_firs(conn) == 10


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("seed", "--count", "x"), "'x' is not a whole number"),
        (("seed", "--count", "-3"), "must be between 1 and 1000000"),
        (("seed", "--end", "2025-02-30"), "is not a date"),
        (("frobnicate",), "invalid choice"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(args: tuple[str, ...], message: str) -> None:
    proc = _cli(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_cli_uses_data_dir_from_environment(tmp_path: Path) -> None:
    import os

    env = {
        **os.environ,
        "AFIRGEN_PATHS_DATA_DIR": str(tmp_path / "d"),
        "AFIRGEN_CONFIG": str(tmp_path / "none.toml"),
    }
    (tmp_path / "none.toml").write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "afirgen_tasks.records", "seed", "--count", "5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "d" / "firs.sqlite3").is_file()
