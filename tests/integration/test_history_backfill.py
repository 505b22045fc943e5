"""Backfill from the result backend: tasks that ran while no console watched reach the history.

A real worker runs real tasks against a real Redis (the test's own db) with no console
and no event receiver; the history is then filled by SCANning ``celery-task-meta-*``.
"""

from __future__ import annotations

import pytest

from tui.history import HistoryStore, backfill_from_backend

pytestmark = pytest.mark.integration


def test_tasks_run_while_no_console_ran_are_backfilled_and_marked(
    afirgen_app, afirgen_settings, worker_factory, redis_client, tmp_path
):
    from afirgen_tasks.records import create_sample_db
    from afirgen_tasks.routing import QUEUES

    create_sample_db(afirgen_settings.fir_db_path, count=5)
    worker = worker_factory(queues=QUEUES, pool="solo")
    ok = afirgen_app.send_task(
        "afirgen_tasks.email.send_notification_email",
        kwargs={"recipient_email": "duty@example.org", "subject": "Backfill", "body": "seen later"},
    )
    stats = afirgen_app.send_task("afirgen_tasks.analytics.update_dashboard_stats")
    bad = afirgen_app.send_task(
        "afirgen_tasks.reports.generate_pdf_report", kwargs={"fir_id": 999_999}
    )
    seen = afirgen_app.send_task("afirgen_tasks.cleanup.clear_expired_cache")
    for res in (ok, stats, seen):
        res.get(timeout=60)
    with pytest.raises(Exception, match="FIR 999999 does not exist"):
        bad.get(timeout=60)

    store = HistoryStore(tmp_path / "history.sqlite3")
    # the console knew one of them (e.g. it is in the live model): it is left to the events
    result = backfill_from_backend(redis_client, store, known_uuids={seen.id})
    assert set(result.uuids) == {ok.id, stats.id, bad.id}
    assert result.inserted == 3 and result.skipped >= 1
    assert store.get(seen.id) is None

    rows = {r["uuid"]: r for r in store.load_recent(100)}
    assert set(rows) == {ok.id, stats.id, bad.id}
    assert all(r["source"] == "backend" for r in rows.values())
    good = rows[ok.id]
    assert (
        good["state"] == "SUCCESS" and good["name"] == "afirgen_tasks.email.send_notification_email"
    )
    assert good["hostname"] == worker.hostname and good["queue"] == "email"
    assert "duty@example.org" in good["kwargs"] and "'status': 'ok'" in good["result"]
    assert good["finished"] is not None and good["first_seen"] == good["finished"]
    failed = rows[bad.id]
    assert failed["state"] == "FAILURE" and "PermanentTaskError" in failed["exception"]
    assert "FIR 999999 does not exist" in failed["exception"]
    assert failed["traceback"] and "Traceback" in failed["traceback"]

    # the pane's syntax finds them in the persisted history
    assert [r["uuid"] for r in store.search("state:failure")] == [bad.id]
    assert [r["uuid"] for r in store.search("queue:email args:duty@")] == [ok.id]
    assert {r["uuid"] for r in store.search(f"worker:{worker.hostname}")} == set(rows)

    # a second backfill finds nothing new: finished tasks are not rewritten
    again = backfill_from_backend(redis_client, store, known_uuids={seen.id})
    assert again.inserted == 0 and again.updated == 0
    store.close()
