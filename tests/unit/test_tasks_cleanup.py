"""Cleanup tasks: archiving, cache expiry, temp files (never outside the temp dir)."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from celery import Celery

from afirgen_tasks import records
from afirgen_tasks.base import PermanentTaskError
from afirgen_tasks.factory import create_app
from afirgen_tasks.settings import load_settings

ARCHIVE = "afirgen_tasks.cleanup.archive_old_records"
CACHE = "afirgen_tasks.cleanup.clear_expired_cache"
TEMP = "afirgen_tasks.cleanup.cleanup_temp_files"


def make_app(tmp_path: Path) -> Celery:
    settings = load_settings(
        None,
        paths_data_dir=tmp_path / "data",
        paths_report_dir=tmp_path / "reports",
        paths_outbox_dir=tmp_path / "outbox",
        paths_temp_dir=tmp_path / "tmp",
        celery_task_max_retries=2,
    )
    return create_app(settings)


def db(app: Celery) -> Path:
    return app.afirgen_settings.fir_db_path


# ---- archive_old_records ----------------------------------------------------------------


def seed_firs(app: Celery) -> None:
    """Five FIRs: ids 1-2 closed 400 and 800 days ago, 3 closed 10 days ago, 4 open 900 days ago,
    5 chargesheeted 500 days ago."""
    base = records.sample_firs(5, seed=1)
    now = records.utc_now()
    spec = {
        1: ("closed", 400),
        2: ("closed", 800),
        3: ("closed", 10),
        4: ("under_investigation", 900),
        5: ("chargesheeted", 500),
    }
    firs = [
        records.FIR(
            **{
                **f.as_dict(),
                "status": spec[f.id][0],
                "filed_at": records.utc_iso(now - timedelta(days=spec[f.id][1])),
            }
        )
        for f in base
    ]
    with records.open_db(db(app)) as conn, records.transaction(conn):
        records.insert_firs(conn, firs)


def statuses(app: Celery) -> dict[int, tuple[str, str | None]]:
    with records.open_db(db(app)) as conn:
        return {
            r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, status, archived_at FROM firs")
        }


def test_archive_marks_only_old_closed_firs(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    seed_firs(app)
    res = app.tasks[ARCHIVE].apply()
    assert res.state == "SUCCESS", res.traceback
    assert (
        res.result["archived"] == 2
        and res.result["fir_ids"] == [1, 2]
        and res.result["days"] == 365
    )
    now = statuses(app)
    assert now[1][0] == now[2][0] == "archived"
    assert now[1][1] is not None and now[1][1].endswith("Z")
    assert now[3] == ("closed", None)
    assert now[4] == ("under_investigation", None) and now[5] == ("chargesheeted", None)
    # idempotent: nothing left to archive, timestamps unchanged
    again = app.tasks[ARCHIVE].apply().result
    assert again["archived"] == 0 and statuses(app) == now


def test_archive_days_parameter(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    seed_firs(app)
    assert app.tasks[ARCHIVE].apply(kwargs={"days": 600}).result["fir_ids"] == [2]
    assert app.tasks[ARCHIVE].apply(args=(0,)).result["fir_ids"] == [1, 3]


@pytest.mark.parametrize(
    ("days", "message"),
    [
        (-1, "must not be negative"),
        ("soon", "not a number"),
        (True, "not a number"),
        (1.5, "not a whole number"),
        (10**6, "at most"),
    ],
)
def test_archive_bad_days_is_permanent(tmp_path: Path, days: object, message: str) -> None:
    app = make_app(tmp_path)
    seed_firs(app)
    res = app.tasks[ARCHIVE].apply(args=(days,))
    assert res.state == "FAILURE"
    assert isinstance(res.result, PermanentTaskError)
    assert message in str(res.result)
    assert all(s != "archived" for s, _ in statuses(app).values())


# ---- clear_expired_cache ----------------------------------------------------------------


def fill_cache(app: Celery) -> None:
    now = records.utc_now()
    with records.open_db(db(app)) as conn, records.transaction(conn):
        for i in range(3):
            records.cache_put(conn, f"old{i}", "x", now - timedelta(minutes=i + 1))
        for i in range(4):
            records.cache_put(conn, f"live{i}", "x", now + timedelta(hours=i + 1))


def cache_keys(app: Celery) -> list[str]:
    with records.open_db(db(app)) as conn:
        return sorted(r[0] for r in conn.execute("SELECT key FROM cache"))


def test_clear_expired_cache_deletes_only_expired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from afirgen_tasks import cleanup

    monkeypatch.setattr(cleanup, "CACHE_DELETE_BATCH", 2)  # several batches
    app = make_app(tmp_path)
    fill_cache(app)
    res = app.tasks[CACHE].apply()
    assert res.state == "SUCCESS", res.traceback
    assert (
        res.result["expired"] == 3 and res.result["evicted"] == 0 and res.result["remaining"] == 4
    )
    assert cache_keys(app) == ["live0", "live1", "live2", "live3"]
    assert app.tasks[CACHE].apply().result["expired"] == 0


def test_clear_expired_cache_max_entries_keeps_the_longest_lived(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    fill_cache(app)
    res = app.tasks[CACHE].apply(kwargs={"max_entries": 2}).result
    assert res["expired"] == 3 and res["evicted"] == 2 and res["remaining"] == 2
    assert cache_keys(app) == ["live2", "live3"]


def test_clear_expired_cache_rejects_negative(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    res = app.tasks[CACHE].apply(kwargs={"max_entries": -5})
    assert res.state == "FAILURE" and isinstance(res.result, PermanentTaskError)
    assert "max_entries=-5 must not be negative" in str(res.result)


# ---- cleanup_temp_files -----------------------------------------------------------------


def age(path: Path, hours: float) -> None:
    moment = time.time() - hours * 3600
    os.utime(path, (moment, moment), follow_symlinks=False)


def test_cleanup_temp_files_deletes_old_regular_files_only(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    temp = tmp_path / "tmp"
    (temp / "nested" / "deeper").mkdir(parents=True)
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    old_a, old_b = temp / "old.pdf", temp / "nested" / "deeper" / "old.part"
    fresh = temp / "nested" / "fresh.tmp"
    precious, precious_in_dir = outside / "precious.txt", outside / "dir" / "also-precious.txt"
    for f in (old_a, old_b, fresh, precious, precious_in_dir):
        f.write_bytes(b"12345")
    link_file, link_dir = temp / "link-to-file", temp / "nested" / "link-to-dir"
    link_file.symlink_to(precious)
    link_dir.symlink_to(outside / "dir")
    for f in (old_a, old_b, precious, precious_in_dir, link_file, link_dir):
        age(f, 48)
    age(fresh, 1)

    res = app.tasks[TEMP].apply()
    assert res.state == "SUCCESS", res.traceback
    out = res.result
    assert (
        out["deleted"] == 2
        and out["bytes_freed"] == 10
        and out["kept"] == 1
        and out["skipped"] == 1
    )
    assert not old_a.exists() and not old_b.exists()
    assert fresh.exists() and precious.exists() and precious_in_dir.exists()
    assert link_file.is_symlink() and link_dir.is_symlink()
    assert (temp / "nested" / "deeper").is_dir()
    assert app.tasks[TEMP].apply().result["deleted"] == 0

    # max_age_hours=0.5 also takes the one-hour-old file
    assert app.tasks[TEMP].apply(kwargs={"max_age_hours": 0.5}).result["deleted"] == 1
    assert not fresh.exists() and precious.exists()


def test_cleanup_temp_files_without_a_temp_dir(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    res = app.tasks[TEMP].apply()
    assert res.state == "SUCCESS" and res.result["deleted"] == 0


@pytest.mark.parametrize("hours", [-1, "x", float("nan"), None])
def test_cleanup_temp_files_bad_age_is_permanent(tmp_path: Path, hours: object) -> None:
    app = make_app(tmp_path)
    (tmp_path / "tmp").mkdir()
    victim = tmp_path / "tmp" / "f"
    victim.write_text("x")
    age(victim, 100)
    res = app.tasks[TEMP].apply(args=(hours,))
    assert res.state == "FAILURE" and isinstance(res.result, PermanentTaskError)
    assert "max_age_hours" in str(res.result)
    assert victim.exists()


def test_clear_expired_cache_max_entries_evicts_in_batches(tmp_path: Path, monkeypatch) -> None:
    from afirgen_tasks import cleanup

    monkeypatch.setattr(cleanup, "CACHE_DELETE_BATCH", 1)  # force several batches
    app = make_app(tmp_path)
    fill_cache(app)
    res = app.tasks[CACHE].apply(kwargs={"max_entries": 1}).result
    assert res["evicted"] == 3 and res["remaining"] == 1
    assert cache_keys(app) == ["live3"]
