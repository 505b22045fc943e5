"""Retry vs no-retry: transient errors (locked DB, Redis, SMTP) go through ``self.retry``;
permanent ones fail on the first attempt.  Runs the tasks eagerly with ``apply``."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.exceptions
from celery import Celery, Task
from celery.exceptions import Retry

from afirgen_tasks import analytics, records
from afirgen_tasks.base import DatabaseLockedError, PermanentTaskError
from afirgen_tasks.factory import create_app, task_names
from afirgen_tasks.settings import load_settings

ALL_TASKS = [
    "afirgen_tasks.analytics.process_analytics_data",
    "afirgen_tasks.analytics.update_dashboard_stats",
    "afirgen_tasks.cleanup.archive_old_records",
    "afirgen_tasks.cleanup.cleanup_temp_files",
    "afirgen_tasks.cleanup.clear_expired_cache",
    "afirgen_tasks.email.send_fir_confirmation_email",
    "afirgen_tasks.email.send_notification_email",
    "afirgen_tasks.reports.generate_excel_report",
    "afirgen_tasks.reports.generate_pdf_report",
]


def make_app(tmp_path: Path, retries: int = 2) -> Celery:
    settings = load_settings(
        None,
        paths_data_dir=tmp_path / "data",
        paths_report_dir=tmp_path / "reports",
        paths_outbox_dir=tmp_path / "outbox",
        paths_temp_dir=tmp_path / "tmp",
        celery_task_max_retries=retries,
    )
    app = create_app(settings)
    records.create_sample_db(settings.fir_db_path, count=10, seed=3)
    return app


def spy_retries(monkeypatch: pytest.MonkeyPatch, task: Task) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    original = task.retry

    def retry(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(task, "retry", retry)
    return calls


@pytest.fixture
def locked_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Celery]:
    """An app whose FIR database another connection holds the write lock on."""
    app = make_app(tmp_path)
    monkeypatch.setattr(records, "DEFAULT_BUSY_TIMEOUT", 0.05)
    holder = sqlite3.connect(app.afirgen_settings.fir_db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield app
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_the_nine_tasks_are_registered_under_their_public_names(tmp_path: Path) -> None:
    assert task_names(make_app(tmp_path)) == ALL_TASKS


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("afirgen_tasks.analytics.update_dashboard_stats", ()),
        ("afirgen_tasks.cleanup.archive_old_records", (30,)),
        ("afirgen_tasks.cleanup.clear_expired_cache", ()),
    ],
)
def test_locked_database_is_retried(
    locked_db: Celery, monkeypatch: pytest.MonkeyPatch, name: str, args: tuple
) -> None:
    task = locked_db.tasks[name]
    calls = spy_retries(monkeypatch, task)
    res = task.apply(args=args)
    assert len(calls) == 2  # celery_task_max_retries=2
    assert all(isinstance(c["exc"], DatabaseLockedError) for c in calls)
    assert all(c["max_retries"] == 2 and c["countdown"] > 0 for c in calls)
    assert res.state == "FAILURE"
    assert isinstance(res.result, DatabaseLockedError)
    assert "locked" in str(res.result)


def test_locked_database_recovers_on_retry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first attempt meets a lock, the retry succeeds: the job ends SUCCESS."""
    app = make_app(tmp_path)
    task = app.tasks["afirgen_tasks.analytics.update_dashboard_stats"]
    calls = spy_retries(monkeypatch, task)
    real = analytics.dashboard_stats
    attempts = []

    def flaky(conn: sqlite3.Connection, today: Any) -> dict[str, Any]:
        attempts.append(1)
        if len(attempts) == 1:
            raise sqlite3.OperationalError("database is locked")
        return real(conn, today)

    monkeypatch.setattr(analytics, "dashboard_stats", flaky)
    res = task.apply()
    assert res.state == "SUCCESS", res.traceback
    assert len(attempts) == 2 and len(calls) == 1
    assert isinstance(calls[0]["exc"], DatabaseLockedError)
    assert res.result["total"] == 10


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.ConnectionError("Error 111 connecting to redis"),
        redis.exceptions.TimeoutError("timed out"),
        ConnectionResetError("reset by peer"),
    ],
)
def test_redis_and_connection_errors_are_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    app = make_app(tmp_path, retries=3)
    task = app.tasks["afirgen_tasks.analytics.update_dashboard_stats"]
    calls = spy_retries(monkeypatch, task)

    def broken(conn: sqlite3.Connection, today: Any) -> dict[str, Any]:
        raise error

    monkeypatch.setattr(analytics, "dashboard_stats", broken)
    res = task.apply()
    assert [c["exc"] for c in calls] == [error] * 3
    assert res.state == "FAILURE" and res.result is error


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("afirgen_tasks.reports.generate_pdf_report", (99_999,)),
        ("afirgen_tasks.reports.generate_excel_report", ([1, 99_999],)),
        ("afirgen_tasks.email.send_fir_confirmation_email", (99_999, "a@example.com")),
        ("afirgen_tasks.email.send_notification_email", ("bad", "s", "b")),
        ("afirgen_tasks.analytics.process_analytics_data", ("2025-12-01", "2025-01-01")),
        ("afirgen_tasks.cleanup.archive_old_records", (-1,)),
        ("afirgen_tasks.cleanup.clear_expired_cache", (-1,)),
        ("afirgen_tasks.cleanup.cleanup_temp_files", (-1,)),
    ],
)
def test_permanent_errors_fail_on_the_first_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, args: tuple
) -> None:
    app = make_app(tmp_path)
    task = app.tasks[name]
    calls = spy_retries(monkeypatch, task)
    res = task.apply(args=args)
    assert res.state == "FAILURE"
    assert isinstance(res.result, PermanentTaskError)
    assert calls == []


def test_retry_raises_celery_retry_on_a_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off the eager path (``throw`` and not called directly) the wrapper raises ``Retry``,
    which a worker turns into the RETRY state and a re-queued message."""
    app = make_app(tmp_path)
    task = app.tasks["afirgen_tasks.email.send_notification_email"]
    monkeypatch.setattr(app.afirgen_settings, "smtp_host", "127.0.0.1")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(app.afirgen_settings, "smtp_port", port)
    monkeypatch.setattr(app.afirgen_settings, "smtp_security", "none")
    sent = []
    monkeypatch.setattr(task, "apply_async", lambda *a, **kw: sent.append(kw))
    task.push_request(id="t-1", retries=0, is_eager=False, called_directly=False)
    try:
        with pytest.raises(Retry) as info:
            task.run("a@example.com", "s", "b")
    finally:
        task.pop_request()
    assert "cannot reach SMTP server" in str(info.value.exc)
    assert len(sent) == 1 and sent[0]["countdown"] > 0
