"""Analytics tasks: aggregate the FIRs with SQL and store the figures where dashboards read them.

Results go to the ``dashboard_stats`` table of the FIR database (``key``, ``value_json``,
``computed_at``), upserted in one transaction, so re-running a task replaces its rows:

``dashboard:totals``       total, open, filed today / in the last 7 and 30 days
``dashboard:by_status``    every status with its count (zeros included)
``dashboard:by_district``  ``dashboard:by_offence``  counts over all FIRs
``dashboard:by_day``       FIRs filed per day over the last 30 days (zeros included)
``range:<start>:<end>``    :func:`process_analytics_data` for that inclusive date range
"""

from __future__ import annotations

import re
import sqlite3
import time
from datetime import date, timedelta
from typing import Any

from celery import Task

from . import records
from .base import PermanentTaskError, afirgen_task, result, task_settings

#: Days in the dashboard's per-day series.
DASHBOARD_DAYS = 30
#: Longest range process_analytics_data accepts, in days.
MAX_RANGE_DAYS = 3660

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_date(value: object, name: str) -> date:
    """``value`` ('YYYY-MM-DD') as a date, or :class:`PermanentTaskError` naming ``name``."""
    if isinstance(value, str) and _ISO_DATE.fullmatch(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise PermanentTaskError(f"{name} {value!r} is not a date like 2025-06-30 (YYYY-MM-DD)")


def _counts(
    conn: sqlite3.Connection, column: str, where: str = "", params: tuple[Any, ...] = ()
) -> dict[str, int]:
    # column is one of our own identifiers, never user input
    sql = f"SELECT {column} AS k, count(*) FROM firs {where} GROUP BY k ORDER BY k"
    return {row[0]: row[1] for row in conn.execute(sql, params)}


def _day_series(conn: sqlite3.Connection, first: date, last: date) -> dict[str, int]:
    """FIRs filed per day from ``first`` to ``last`` inclusive, every day present."""
    found = _counts(
        conn,
        "substr(filed_at, 1, 10)",
        "WHERE filed_at >= ? AND filed_at < ?",
        (first.isoformat(), (last + timedelta(days=1)).isoformat()),
    )
    return {
        (first + timedelta(days=n)).isoformat(): found.get(
            (first + timedelta(days=n)).isoformat(), 0
        )
        for n in range((last - first).days + 1)
    }


def _by_status(
    conn: sqlite3.Connection, where: str = "", params: tuple[Any, ...] = ()
) -> dict[str, int]:
    found = _counts(conn, "status", where, params)
    return {status: found.get(status, 0) for status in records.STATUSES}


def dashboard_stats(conn: sqlite3.Connection, today: date) -> dict[str, Any]:
    """Every ``dashboard:*`` value, computed from ``firs`` as of ``today``."""

    def since(days: int) -> int:
        start = (today - timedelta(days=days - 1)).isoformat()
        return conn.execute("SELECT count(*) FROM firs WHERE filed_at >= ?", (start,)).fetchone()[0]

    by_status = _by_status(conn)
    totals = {
        "total": sum(by_status.values()),
        "open": sum(by_status[s] for s in records.OPEN_STATUSES),
        "filed_today": since(1),
        "filed_last_7_days": since(7),
        "filed_last_30_days": since(30),
    }
    return {
        "dashboard:totals": totals,
        "dashboard:by_status": by_status,
        "dashboard:by_district": _counts(conn, "district"),
        "dashboard:by_offence": _counts(conn, "offence"),
        "dashboard:by_day": _day_series(conn, today - timedelta(days=DASHBOARD_DAYS - 1), today),
    }


@afirgen_task("afirgen_tasks.analytics.update_dashboard_stats")
def update_dashboard_stats(self: Task) -> dict[str, Any]:
    """Recompute the ``dashboard:*`` figures from the FIRs and upsert them."""
    started = time.monotonic()
    settings = task_settings(self)
    now = records.utc_now()
    with records.open_db(settings.fir_db_path) as conn:
        with records.snapshot(conn):  # the scans do not hold the write lock
            stats = dashboard_stats(conn, now.date())
        with records.transaction(conn):
            for key, value in stats.items():
                records.put_stat(conn, key, value, records.utc_iso(now))
    totals = stats["dashboard:totals"]
    return result(
        "ok",
        started,
        keys=sorted(stats),
        total=totals["total"],
        open=totals["open"],
        districts=len(stats["dashboard:by_district"]),
        computed_at=records.utc_iso(now),
    )


@afirgen_task("afirgen_tasks.analytics.process_analytics_data")
def process_analytics_data(self: Task, start_date: str, end_date: str) -> dict[str, Any]:
    """Aggregate FIRs filed from ``start_date`` to ``end_date`` (inclusive, 'YYYY-MM-DD', UTC)
    by status, district, offence and day; store them as ``range:<start>:<end>``."""
    started = time.monotonic()
    settings = task_settings(self)
    start, end = parse_date(start_date, "start_date"), parse_date(end_date, "end_date")
    if start > end:
        raise PermanentTaskError(f"start_date {start} is after end_date {end}")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise PermanentTaskError(f"range {start}..{end} is longer than {MAX_RANGE_DAYS} days")
    where = "WHERE filed_at >= ? AND filed_at < ?"
    params = (start.isoformat(), (end + timedelta(days=1)).isoformat())
    key = f"range:{start}:{end}"
    now = records.utc_iso(records.utc_now())
    with records.open_db(settings.fir_db_path) as conn:
        with records.snapshot(conn):  # the scans do not hold the write lock
            by_status = _by_status(conn, where, params)
            value: dict[str, Any] = {
                "start_date": start.isoformat(),
                "end_date": end.isoformat(),
                "total": sum(by_status.values()),
                "by_status": by_status,
                "by_district": _counts(conn, "district", where, params),
                "by_offence": _counts(conn, "offence", where, params),
                "by_day": _day_series(conn, start, end),
            }
        with records.transaction(conn):
            records.put_stat(conn, key, value, now)
    return result(
        "ok",
        started,
        key=key,
        total=value["total"],
        days=len(value["by_day"]),
        districts=len(value["by_district"]),
        computed_at=now,
    )
