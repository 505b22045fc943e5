"""Every AFIRGen task end to end through one real worker on a seeded FIR database.

Each of the nine tasks must finish SUCCESS with its structured dict (checked against the
database and the files it wrote); a permanent failure (unknown FIR id) must be FAILURE at
once, with no retry.
"""

from __future__ import annotations

import os
import sqlite3
import time
from datetime import UTC, datetime, timedelta

import pytest
from celery.result import AsyncResult

from afirgen_tasks.factory import task_names
from afirgen_tasks.records import utc_iso, utc_now
from afirgen_tasks.routing import QUEUES

pytestmark = pytest.mark.integration

FIR_COUNT = 60

ALL_TASKS = {
    "afirgen_tasks.email.send_fir_confirmation_email",
    "afirgen_tasks.email.send_notification_email",
    "afirgen_tasks.reports.generate_pdf_report",
    "afirgen_tasks.reports.generate_excel_report",
    "afirgen_tasks.analytics.update_dashboard_stats",
    "afirgen_tasks.analytics.process_analytics_data",
    "afirgen_tasks.cleanup.archive_old_records",
    "afirgen_tasks.cleanup.clear_expired_cache",
    "afirgen_tasks.cleanup.cleanup_temp_files",
}


@pytest.fixture
def fir_db(afirgen_settings):
    """The test's FIR database, seeded with FIR_COUNT sample FIRs."""
    from afirgen_tasks.records import create_sample_db

    return create_sample_db(afirgen_settings.fir_db_path, count=FIR_COUNT)


def query(db, sql: str, *params):
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchone()[0]
    finally:
        conn.close()


def test_the_nine_tasks_are_registered(afirgen_app):
    assert set(task_names(afirgen_app)) == ALL_TASKS


def test_every_task_succeeds_with_its_structured_result(
    afirgen_app, afirgen_settings, fir_db, worker_factory
):
    s = afirgen_settings
    stale, fresh = s.paths_temp_dir / "stale.tmp", s.paths_temp_dir / "fresh.tmp"
    s.paths_temp_dir.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"x" * 10)
    fresh.write_bytes(b"y")
    two_days_ago = time.time() - 2 * 86400
    os.utime(stale, (two_days_ago, two_days_ago))
    today = datetime.now(UTC).date()
    start = today - timedelta(days=2999)
    in_range = query(
        fir_db,
        "SELECT count(*) FROM firs WHERE filed_at >= ? AND filed_at < ?",
        start.isoformat(),
        (today + timedelta(days=1)).isoformat(),
    )
    expired_cache = query(
        fir_db, "SELECT count(*) FROM cache WHERE expires_at <= ?", utc_iso(utc_now())
    )

    calls = {
        "afirgen_tasks.email.send_fir_confirmation_email": {
            "fir_id": 7,
            "recipient_email": "asha@example.org",
        },
        "afirgen_tasks.email.send_notification_email": {
            "recipient_email": "duty@example.org",
            "subject": "Shift change",
            "body": "Night shift starts at 22:00.",
        },
        "afirgen_tasks.reports.generate_pdf_report": {"fir_id": 3},
        "afirgen_tasks.reports.generate_excel_report": {"fir_ids": [1, 2, 3, 4, 5]},
        "afirgen_tasks.analytics.update_dashboard_stats": {},
        "afirgen_tasks.analytics.process_analytics_data": {
            "start_date": start.isoformat(),
            "end_date": today.isoformat(),
        },
        "afirgen_tasks.cleanup.archive_old_records": {"days": 365},
        "afirgen_tasks.cleanup.clear_expired_cache": {},
        "afirgen_tasks.cleanup.cleanup_temp_files": {"max_age_hours": 1},
    }
    assert set(calls) == ALL_TASKS
    results = {name: afirgen_app.send_task(name, kwargs=kwargs) for name, kwargs in calls.items()}
    worker_factory(queues=QUEUES, concurrency=2)

    out = {}
    for name, res in results.items():
        value = res.get(timeout=60)
        assert res.state == "SUCCESS", name
        assert value["status"] == "ok" and value["duration_s"] >= 0, (name, value)
        assert AsyncResult(res.id, app=afirgen_app).name == name  # result_extended records it
        out[name.rsplit(".", 1)[1]] = value

    conf = out["send_fir_confirmation_email"]
    assert conf["fir_id"] == 7 and conf["delivery"] == "outbox"
    eml = open(conf["path"], encoding="utf-8").read()
    assert "To: asha@example.org" in eml and conf["fir_number"] in eml
    note = out["send_notification_email"]
    assert (
        note["delivery"] == "outbox"
        and "Shift change" in open(note["path"], encoding="utf-8").read()
    )

    pdf = out["generate_pdf_report"]
    with open(pdf["path"], "rb") as fh:
        head = fh.read(5)
    assert head == b"%PDF-" and pdf["bytes"] == os.path.getsize(pdf["path"]) and pdf["fir_id"] == 3
    xlsx = out["generate_excel_report"]
    assert xlsx["rows"] == 5 and open(xlsx["path"], "rb").read(2) == b"PK"

    assert out["update_dashboard_stats"]["total"] == FIR_COUNT
    rng = out["process_analytics_data"]
    assert rng["total"] == in_range and rng["days"] == 3000

    archived = out["archive_old_records"]
    assert archived["archived"] == query(
        fir_db, "SELECT count(*) FROM firs WHERE status = 'archived'"
    )
    assert archived["archived"] > 0, "the sample set should hold closed FIRs older than a year"
    assert out["clear_expired_cache"]["expired"] == expired_cache > 0

    temp = out["cleanup_temp_files"]
    assert (temp["deleted"], temp["bytes_freed"], temp["kept"]) == (1, 10, 1)
    assert not stale.exists() and fresh.exists()


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        (
            "afirgen_tasks.reports.generate_pdf_report",
            {"fir_id": 999_999},
            "FIR 999999 does not exist",
        ),
        (
            "afirgen_tasks.email.send_fir_confirmation_email",
            {"fir_id": 424_242, "recipient_email": "a@example.org"},
            "FIR 424242 does not exist",
        ),
    ],
)
def test_unknown_fir_fails_at_once_without_retry(
    afirgen_app, fir_db, worker_factory, name, kwargs, message
):
    worker = worker_factory(queues=QUEUES, pool="solo")
    sent = time.monotonic()
    res = afirgen_app.send_task(name, kwargs=kwargs)
    with pytest.raises(Exception) as info:
        res.get(timeout=20)
    elapsed = time.monotonic() - sent
    assert type(info.value).__name__ == "PermanentTaskError" and message in str(info.value)
    meta = AsyncResult(res.id, app=afirgen_app)
    assert meta.state == "FAILURE" and meta.retries == 0
    assert elapsed < 5, f"took {elapsed:.1f} s: a retry backoff?"
    assert f"{res.id}] retry" not in worker.log_text()
