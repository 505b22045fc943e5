"""Issue 15's pure parts: the Tasks pane's orders, the stored job a retry re-sends, the
retry link in the model."""

from __future__ import annotations

import time
from types import SimpleNamespace

from tui.core.model import ClusterModel
from tui.core.ordering import TASK_ORDERS, by_runtime, by_state, next_order
from tui.sources.validate import EventValidator, StoredJob, stored_job


def task(**fields):
    base = dict(state="SUCCESS", started=None, finished=None, runtime=None, last_event=None)
    return SimpleNamespace(**(base | fields))


def test_orders_cycle_activity_sent_runtime_state():
    order = TASK_ORDERS["activity"]
    names = []
    for _ in range(4):
        order = next_order(order)
        names.append(order.name)
    assert names == ["sent", "runtime", "state", "activity"]


def test_runtime_order_running_first_longest_on_top_then_finished_by_runtime():
    now = time.time()
    long_running = task(state="STARTED", started=now - 600)
    new_running = task(state="STARTED", started=now - 5)
    slow = task(runtime=90.0)
    fast = task(runtime=0.2)
    derived = task(started=now - 40, finished=now - 10)  # no runtime field: 30 s
    never = task(state="REVOKED")
    ranked = sorted(
        [fast, never, new_running, derived, slow, long_running], key=by_runtime, reverse=True
    )
    assert ranked == [long_running, new_running, slow, derived, fast, never]


def test_state_order_failures_first_then_running_waiting_ended_success():
    now = time.time()
    ok_new = task(state="SUCCESS", last_event=now)
    failed_old = task(state="FAILURE", last_event=now - 3600)
    running = task(state="STARTED", last_event=now - 10)
    waiting = task(state="SENT", last_event=now - 5)
    revoked = task(state="REVOKED", last_event=now - 1)
    ranked = sorted([ok_new, revoked, waiting, running, failed_old], key=by_state, reverse=True)
    assert ranked == [failed_old, running, waiting, revoked, ok_new]


def test_stored_job_is_the_uncut_args_or_says_why_not():
    long_body = "x" * 50_000 + "\x1b]2;t\x07"  # longer than any display cap, with an escape
    job = stored_job(
        "u1",
        {
            "status": "FAILURE",
            "name": "afirgen_tasks.email.send_notification_email",
            "queue": "email",
            "args": ["a@b.c", "s", long_body],
            "kwargs": {},
        },
    )
    assert isinstance(job, StoredJob)
    assert job.args[2] == long_body  # sent back exactly, never shown
    assert job.queue == "email"
    assert "no record of u2" in stored_job("u2", {"status": "PENDING", "result": None})
    assert "no record of u3" in stored_job("u3", {})
    no_args = stored_job("u4", {"status": "SUCCESS", "result": 1})
    assert isinstance(no_args, str) and "result_extended" in no_args
    assert "not JSON" in stored_job(
        "u5", {"status": "SUCCESS", "args": [float("nan")], "kwargs": {}}
    )


def test_retry_of_comes_from_task_sent_and_retried_as_finds_it():
    validate = EventValidator()
    now = time.time()
    sent = validate(
        {
            "type": "task-sent",
            "uuid": "new-1",
            "hostname": "client@box",
            "timestamp": now,
            "local_received": now,
            "name": "afirgen_tasks.reports.generate_pdf_report",
            "retry_of": "old-1",
        }
    )
    assert sent is not None and sent["retry_of"] == "old-1"
    model = ClusterModel()
    model.apply([sent])
    assert model.get_task("new-1").retry_of == "old-1"
    assert model.retried_as("old-1") == ["new-1"] and model.retried_as("new-1") == []
    # a forged, non-string retry_of is dropped at the boundary
    bad = validate({**sent, "uuid": "new-2", "retry_of": {"x": 1}})
    assert bad is None or "retry_of" not in bad
