"""Analytics tasks: SQL aggregates match the records and are upserted into dashboard_stats."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest
from celery import Celery

from afirgen_tasks import records
from afirgen_tasks.analytics import DASHBOARD_DAYS
from afirgen_tasks.base import PermanentTaskError
from afirgen_tasks.factory import create_app
from afirgen_tasks.settings import load_settings

DASH = "afirgen_tasks.analytics.update_dashboard_stats"
RANGE = "afirgen_tasks.analytics.process_analytics_data"


def make_app(tmp_path: Path, count: int = 400) -> Celery:
    settings = load_settings(
        None,
        paths_data_dir=tmp_path / "data",
        paths_report_dir=tmp_path / "reports",
        paths_outbox_dir=tmp_path / "outbox",
        paths_temp_dir=tmp_path / "tmp",
        celery_task_max_retries=2,
    )
    app = create_app(settings)
    if count:
        records.create_sample_db(settings.fir_db_path, count=count, seed=21)
    return app


def all_firs(app: Celery) -> list[records.FIR]:
    with records.open_db(app.afirgen_settings.fir_db_path) as conn:
        return list(records.get_firs(conn, range(1, 100_000)).values())


def stats_rows(app: Celery) -> dict[str, object]:
    with records.open_db(app.afirgen_settings.fir_db_path) as conn:
        keys = [r[0] for r in conn.execute("SELECT key FROM dashboard_stats")]
        return {k: records.get_stat(conn, k) for k in keys}


def test_dashboard_stats_match_the_records(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    res = app.tasks[DASH].apply()
    assert res.state == "SUCCESS", res.traceback
    firs = all_firs(app)
    stats = stats_rows(app)
    assert set(stats) == {
        "dashboard:totals",
        "dashboard:by_status",
        "dashboard:by_district",
        "dashboard:by_offence",
        "dashboard:by_day",
    }
    status = Counter(f.status for f in firs)
    assert stats["dashboard:by_status"] == {s: status.get(s, 0) for s in records.STATUSES}
    assert stats["dashboard:by_district"] == dict(Counter(f.district for f in firs))
    assert stats["dashboard:by_offence"] == dict(Counter(f.offence for f in firs))
    today = records.utc_now().date()
    days = [(today - timedelta(days=n)).isoformat() for n in range(DASHBOARD_DAYS - 1, -1, -1)]
    per_day = Counter(f.filed_at[:10] for f in firs)
    assert stats["dashboard:by_day"] == {d: per_day.get(d, 0) for d in days}
    assert sum(stats["dashboard:by_day"].values()) > 0  # sample data reaches up to yesterday
    totals = stats["dashboard:totals"]
    assert totals["total"] == len(firs) == res.result["total"]
    assert totals["open"] == sum(f.status in records.OPEN_STATUSES for f in firs)
    assert totals["filed_last_30_days"] == sum(per_day.get(d, 0) for d in days)
    assert res.result["keys"] == sorted(stats)


def test_dashboard_stats_rerun_upserts(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    app.tasks[DASH].apply()
    first = stats_rows(app)
    with records.open_db(app.afirgen_settings.fir_db_path) as conn, records.transaction(conn):
        conn.execute("UPDATE firs SET status = 'closed' WHERE id = 1")
    app.tasks[DASH].apply()
    second = stats_rows(app)
    assert set(second) == set(first)
    with records.open_db(app.afirgen_settings.fir_db_path) as conn:
        assert conn.execute("SELECT count(*) FROM dashboard_stats").fetchone()[0] == 5
    assert second["dashboard:by_status"]["closed"] >= first["dashboard:by_status"]["closed"]
    assert second["dashboard:totals"]["total"] == first["dashboard:totals"]["total"]


def test_dashboard_on_an_empty_database(tmp_path: Path) -> None:
    app = make_app(tmp_path, count=0)
    res = app.tasks[DASH].apply()
    assert res.state == "SUCCESS", res.traceback
    stats = stats_rows(app)
    assert stats["dashboard:totals"]["total"] == 0
    assert set(stats["dashboard:by_day"].values()) == {0}
    assert stats["dashboard:by_district"] == {}


def test_range_aggregates_match_the_records(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    firs = all_firs(app)
    days = sorted({f.filed_at[:10] for f in firs})
    start, end = days[len(days) // 3], days[2 * len(days) // 3]
    res = app.tasks[RANGE].apply(args=(start, end))
    assert res.state == "SUCCESS", res.traceback
    key = f"range:{start}:{end}"
    assert res.result["key"] == key
    value = stats_rows(app)[key]
    inside = [f for f in firs if start <= f.filed_at[:10] <= end]
    assert value["total"] == len(inside) == res.result["total"] > 0
    assert value["by_status"] == {s: sum(f.status == s for f in inside) for s in records.STATUSES}
    assert value["by_district"] == dict(Counter(f.district for f in inside))
    assert value["by_offence"] == dict(Counter(f.offence for f in inside))
    span = (date.fromisoformat(end) - date.fromisoformat(start)).days + 1
    assert len(value["by_day"]) == span == res.result["days"]
    assert sum(value["by_day"].values()) == len(inside)
    assert min(value["by_day"]) == start and max(value["by_day"]) == end
    # idempotent: a re-run replaces the one row
    app.tasks[RANGE].apply(args=(start, end))
    with records.open_db(app.afirgen_settings.fir_db_path) as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM dashboard_stats WHERE key LIKE 'range:%'"
            ).fetchone()[0]
            == 1
        )


def test_single_day_range_includes_the_whole_day(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    day = all_firs(app)[-1].filed_at[:10]
    res = app.tasks[RANGE].apply(args=(day, day))
    assert res.result["total"] == sum(f.filed_at.startswith(day) for f in all_firs(app)) >= 1


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2025-02-30", "2025-03-01", "start_date '2025-02-30' is not a date"),
        ("2025/01/01", "2025-03-01", "start_date '2025/01/01' is not a date"),
        ("2025-01-01", "20250301", "end_date '20250301' is not a date"),
        ("2025-01-01", None, "end_date None is not a date"),
        (20250101, "2025-03-01", "start_date 20250101 is not a date"),
        ("2025-03-02", "2025-03-01", "start_date 2025-03-02 is after end_date 2025-03-01"),
        ("1990-01-01", "2025-03-01", "longer than"),
    ],
)
def test_bad_dates_are_permanent(tmp_path: Path, start: object, end: object, message: str) -> None:
    app = make_app(tmp_path, count=5)
    res = app.tasks[RANGE].apply(args=(start, end))
    assert res.state == "FAILURE"
    assert isinstance(res.result, PermanentTaskError)
    assert message in str(res.result)


def test_aggregation_does_not_hold_the_write_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the dashboard figures are computed, other writers (e-mail deliveries, cleanup) go on."""
    import sqlite3

    from afirgen_tasks import analytics

    app = make_app(tmp_path, count=50)
    path = app.afirgen_settings.fir_db_path
    real = analytics.dashboard_stats
    wrote_meanwhile: list[bool] = []

    def stats_with_a_concurrent_writer(conn, today):
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # fails at once if the task holds the write lock
            other.execute("UPDATE firs SET status = status WHERE id = 1")
            other.execute("COMMIT")
            wrote_meanwhile.append(True)
        except sqlite3.OperationalError:
            wrote_meanwhile.append(False)
        finally:
            other.close()
        return real(conn, today)

    monkeypatch.setattr(analytics, "dashboard_stats", stats_with_a_concurrent_writer)
    res = app.tasks["afirgen_tasks.analytics.update_dashboard_stats"].apply()
    assert res.state == "SUCCESS", res.traceback
    assert wrote_meanwhile == [True]
