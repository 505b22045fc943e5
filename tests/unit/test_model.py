"""ClusterModel: recorded Celery event sequences in, task/worker records and Changes out."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tui.core.model import (
    FAILURE,
    PURGED,
    RECEIVED,
    REJECTED,
    RETRY,
    REVOKED,
    SENT,
    STARTED,
    SUCCESS,
    Changes,
    ClusterModel,
    TaskRecord,
)
from tui.core.query import TaskFilter


def matches(task: TaskRecord, query: str) -> bool:
    """The Tasks pane's verdict on ``task`` for ``query``."""
    return TaskFilter(query)(task)


W1 = "celery@afirgen-worker-01"
W2 = "celery@afirgen-worker-02"
CLIENT = "gen311@afirgen-api-1"
T0 = 1_700_000_000.0
_clock = itertools.count(1)


def ev(
    type_: str, uuid: str | None = None, t: float = 0.0, host: str | None = None, **fields: Any
) -> dict[str, Any]:
    """An event dict as celery.events.Receiver delivers it."""
    if host is None:
        host = CLIENT if type_ == "task-sent" else W1
    e: dict[str, Any] = {
        "type": type_,
        "hostname": host,
        "timestamp": T0 + t,
        "local_received": T0 + t + 0.01,
        "clock": next(_clock),
        "pid": 4242,
        "utcoffset": 0,
    }
    if uuid is not None:
        e["uuid"] = uuid
    e.update(fields)
    return e


def sent(uuid: str, t: float = 0.0, **fields: Any) -> dict[str, Any]:
    base = {
        "name": "afirgen_tasks.reports.generate_fir_pdf",
        "args": "('FIR-2024-MUM-000123',)",
        "kwargs": "{'watermark': 'AFIRGen'}",
        "retries": 0,
        "eta": None,
        "expires": None,
        "root_id": uuid,
        "parent_id": None,
        "queue": "reports",
        "exchange": "",
        "routing_key": "reports",
        "priority": 5,
    }
    base.update(fields)
    return ev("task-sent", uuid, t, **base)


def received(uuid: str, t: float = 1.0, host: str = W1, **fields: Any) -> dict[str, Any]:
    base = {
        "name": "afirgen_tasks.reports.generate_fir_pdf",
        "args": "('FIR-2024-MUM-000123',)",
        "kwargs": "{'watermark': 'AFIRGen'}",
        "retries": 0,
        "root_id": uuid,
        "parent_id": None,
        "eta": None,
        "expires": None,
    }
    base.update(fields)
    return ev("task-received", uuid, t, host, **base)


def started(uuid: str, t: float = 2.0, host: str = W1) -> dict[str, Any]:
    return ev("task-started", uuid, t, host)


def succeeded(uuid: str, t: float = 3.0, host: str = W1, runtime: float = 1.0) -> dict[str, Any]:
    return ev(
        "task-succeeded", uuid, t, host, result="{'status': 'ok', 'pages': 3}", runtime=runtime
    )


def failed(
    uuid: str,
    t: float = 3.0,
    host: str = W1,
    tb: str = "Traceback...\nLookupError: x\n",
) -> dict[str, Any]:
    return ev("task-failed", uuid, t, host, exception="LookupError('FIR not found')", traceback=tb)


def lifecycle(uuid: str, t: float = 0.0, host: str = W1) -> list[dict[str, Any]]:
    return [
        sent(uuid, t),
        received(uuid, t + 1, host),
        started(uuid, t + 2, host),
        succeeded(uuid, t + 3, host),
    ]


# ---- happy path, retries, failures ---------------------------------------------------
def test_happy_path_fills_the_record_and_reports_changes() -> None:
    m = ClusterModel()
    ch = m.apply(lifecycle("a1b2c3d4-0000"))
    t = m.get_task("a1b2c3d4-0000")
    assert t is not None
    assert (t.state, t.is_finished, t.finish_event) == (SUCCESS, True, "task-succeeded")
    assert t.name == "afirgen_tasks.reports.generate_fir_pdf"
    assert t.short_name == "generate_fir_pdf"
    assert t.short_uuid == "a1b2c3d4"
    assert (t.queue, t.priority, t.routing_key, t.exchange) == ("reports", 5, "reports", "")
    assert t.hostname == W1  # the worker, not the client that sent it
    assert (t.sent, t.received, t.started, t.finished) == (T0, T0 + 1, T0 + 2, T0 + 3)
    assert t.wait_time == pytest.approx(2.0)
    assert t.runtime == 1.0
    assert t.result == "{'status': 'ok', 'pages': 3}"
    assert t.args == "('FIR-2024-MUM-000123',)"
    assert t.root_id == t.uuid and t.parent_id is None
    assert ch.new_tasks == ["a1b2c3d4-0000"]
    assert ch.tasks == {"a1b2c3d4-0000"}
    assert ch.evicted == set()
    assert ch.workers == {W1}
    assert bool(ch)
    assert m.events_applied == 4 and m.events_skipped == m.events_unknown == 0
    assert m.last_error is None
    w = m.get_worker(W1)
    assert w is not None and w.online and w.last_heartbeat == T0 + 3.01


def test_states_step_by_step_and_wait_time_from_received_when_sent_unknown() -> None:
    m = ClusterModel()
    seen = []
    for e in lifecycle("t")[1:]:
        m.apply([e])
        seen.append(m.get_task("t").state)  # type: ignore[union-attr]
    assert seen == [RECEIVED, STARTED, SUCCESS]
    assert m.get_task("t").wait_time == pytest.approx(1.0)  # type: ignore[union-attr]


def test_retry_then_success() -> None:
    m = ClusterModel()
    m.apply(
        [sent("r", 0), received("r", 1), started("r", 2), sent("r", 2.9, retries=1)]
    )  # Task.retry() re-sends before the worker reports
    assert m.get_task("r").state == SENT  # type: ignore[union-attr]
    m.apply(
        [
            ev(
                "task-retried",
                "r",
                3.0,
                W1,
                exception="Retry in 1s: SMTPServerDisconnected()",
                traceback="Traceback ...\nsmtplib.SMTPServerDisconnected\n",
            )
        ]
    )
    t = m.get_task("r")
    assert t is not None and t.state == RETRY and not t.is_finished
    assert t.exception is not None and t.exception.startswith("Retry in 1s")
    assert t.retries == 1
    m.apply([received("r", 4.0, W2, retries=1)])
    assert t.state == RECEIVED and t.hostname == W2 and t.received == T0 + 4
    m.apply([started("r", 4.5, W2), succeeded("r", 5.0, W2)])
    assert t.state == SUCCESS and t.is_finished
    assert t.sent == T0  # the first send
    assert t.started == T0 + 4.5  # the last attempt


def test_a_late_retry_of_the_earlier_attempt_does_not_undo_the_next_one() -> None:
    m = ClusterModel()
    m.apply(
        [
            received("r", 1),
            started("r", 2),
            received("r", 10, W2, retries=1),
            ev("task-retried", "r", 3.0, W1, exception="x"),
        ]
    )
    assert m.get_task("r").state == RECEIVED  # type: ignore[union-attr]
    # and a stale received of attempt 1 after the retry does not leave RETRY
    m2 = ClusterModel()
    m2.apply(
        [received("s", 1), started("s", 2), ev("task-retried", "s", 3.0, W1), received("s", 1.5)]
    )
    assert m2.get_task("s").state == RETRY  # type: ignore[union-attr]


def test_failure_keeps_the_traceback_and_counts_per_worker_once() -> None:
    tb = "Traceback (most recent call last):\n" + "  File 'x.py', line 1, in f\n" * 200
    m = ClusterModel()
    ch = m.apply([sent("f"), received("f"), started("f"), failed("f", tb=tb), failed("f", tb=tb)])
    t = m.get_task("f")
    assert t is not None and t.state == FAILURE and t.finish_event == "task-failed"
    assert t.traceback == tb  # ~6 kB, under the traceback limit: kept whole
    assert t.exception == "LookupError('FIR not found')"
    assert m.get_worker(W1).failed == 1  # type: ignore[union-attr]
    assert W1 in ch.workers
    assert m.fields_clipped == 0


def test_success_beats_a_late_failure_and_keeps_its_finish_time() -> None:
    m = ClusterModel()
    m.apply([succeeded("x", 3.0), failed("x", 4.0)])
    t = m.get_task("x")
    assert t is not None and t.state == SUCCESS and t.finished == T0 + 3 and t.exception is None
    assert m.get_worker(W1).failed == 0  # type: ignore[union-attr]


# ---- revoke / reject -----------------------------------------------------------------
def test_revoke_requested_until_the_worker_confirms() -> None:
    m = ClusterModel()
    m.apply([sent("v"), received("v")])
    assert m.mark_revoke_requested("v") is True
    t = m.get_task("v")
    assert t is not None and t.revoke_requested and t.state == RECEIVED
    ch = m.apply([])
    assert ch.tasks == {"v"} and ch.new_tasks == []
    assert not m.apply([])  # reported once
    m.apply([ev("task-revoked", "v", 5.0, W1, terminated=True, signum=15, expired=False)])
    assert t.state == REVOKED and not t.revoke_requested and t.is_finished
    assert t.revoke_reason == "terminated (signal 15)"
    assert t.finished == T0 + 5
    assert m.mark_revoke_requested("v") is False  # already finished
    assert m.mark_revoke_requested("nope") is False


def test_expired_revoke_reason() -> None:
    m = ClusterModel()
    m.apply([ev("task-revoked", "e", 1.0, W1, terminated=False, signum=None, expired=True)])
    assert m.get_task("e").revoke_reason == "expired"  # type: ignore[union-attr]


def test_rejected_is_final_unless_requeued() -> None:
    m = ClusterModel()
    m.apply([received("j", 1), ev("task-rejected", "j", 1.5, W1, requeue=False), started("j", 2)])
    assert m.get_task("j").state == REJECTED  # type: ignore[union-attr]
    m.apply([received("k", 1), ev("task-rejected", "k", 1.5, W1, requeue=True)])
    k = m.get_task("k")
    assert k is not None and k.state == REJECTED and not k.is_finished
    m.apply([received("k", 3, W2), started("k", 4, W2)])
    assert k.state == STARTED and k.hostname == W2


# ---- disorder and duplicates ---------------------------------------------------------
def test_out_of_order_events_never_regress() -> None:
    m = ClusterModel()
    m.apply([started("o", 2), received("o", 1)])
    t = m.get_task("o")
    assert t is not None and t.state == STARTED and t.received == T0 + 1
    assert t.name == "afirgen_tasks.reports.generate_fir_pdf"  # filled by the late event
    m.apply([succeeded("p", 3), started("p", 2), received("p", 1), sent("p", 0)])
    p = m.get_task("p")
    assert p is not None and p.state == SUCCESS
    assert (p.sent, p.received, p.started) == (T0, T0 + 1, T0 + 2)
    assert (p.queue, p.priority) == ("reports", 5)
    assert p.wait_time == pytest.approx(2.0)


def test_a_late_received_does_not_steal_the_task_from_its_current_worker() -> None:
    m = ClusterModel()
    m.apply([started("h", 2, W2), received("h", 1, W1)])
    assert m.get_task("h").hostname == W2  # type: ignore[union-attr]


def test_duplicates_are_idempotent() -> None:
    events = lifecycle("d")
    m = ClusterModel()
    m.apply(events)
    t = m.get_task("d")
    snapshot = {k: getattr(t, k) for k in TaskRecord.__slots__}
    ch = m.apply([dict(e) for e in events] + [dict(e) for e in reversed(events)])
    assert {k: getattr(t, k) for k in TaskRecord.__slots__} == snapshot
    assert ch.new_tasks == [] and len(m) == 1
    assert m.events_applied == 12


# ---- bad input -----------------------------------------------------------------------
def test_unknown_types_are_counted_not_applied() -> None:
    m = ClusterModel()
    m.apply([ev("task-progress", "u"), ev("worker-dance"), ev("task-cancelled", "u")])
    assert m.events_unknown == 3 and len(m) == 0 and m.workers() == []


@pytest.mark.parametrize(
    "bad",
    [
        None,
        5,
        "task-sent",
        ["type", "task-sent"],
        b"{}",
        {},
        {"uuid": "x", "hostname": W1},  # no type
        {"type": None, "uuid": "x", "hostname": W1},
        {"type": ["task-sent"], "uuid": "x", "hostname": W1},
        {"type": "task-started", "hostname": W1},  # no uuid
        {"type": "task-started", "uuid": "", "hostname": W1},
        {"type": "task-started", "uuid": 17, "hostname": W1},
        {"type": "task-started", "uuid": "x"},  # no hostname
        {"type": "task-started", "uuid": "x", "hostname": {"a": 1}},
        {"type": "task-started", "uuid": "x" * 300, "hostname": W1},
        {"type": "worker-heartbeat"},
    ],
)
def test_malformed_events_are_skipped_and_counted(bad: object) -> None:
    m = ClusterModel()
    ch = m.apply([bad, succeeded("ok")])  # type: ignore[list-item]
    assert m.events_skipped == 1 and m.events_applied == 1
    assert len(m) == 1 and ch.new_tasks == ["ok"]
    assert m.last_error is None


def test_wrong_field_types_are_dropped_or_coerced() -> None:
    m = ClusterModel()
    m.apply(
        [
            sent(
                "w",
                priority="high",
                retries="3",
                queue=["q"],
                name=42,
                args=[1, 2],
                kwargs={"a": 1},
                root_id=7,
            ),
            ev("task-started", "w", host=W1, timestamp="yesterday", local_received=None),
            ev("task-succeeded", "w", host=W1, runtime="fast", result=b"bytes"),
        ]
    )
    t = m.get_task("w")
    assert t is not None and t.state == SUCCESS
    assert t.priority is None and t.retries is None and t.queue is None and t.name is None
    assert t.args == "[1, 2]" and t.kwargs == "{'a': 1}"
    assert t.started is None and t.runtime is None and t.result == "bytes"
    assert m.fields_invalid == 6
    assert m.events_skipped == 0


def test_huge_args_are_clipped_and_counted() -> None:
    m = ClusterModel(max_field_chars=2000)
    mb = "x" * (3 * 1024 * 1024)
    m.apply(
        [
            sent("big", args=mb, kwargs=mb),
            received("big", args=mb, kwargs="{}"),
            failed("big", tb="T" * 100_000),
        ]
    )
    t = m.get_task("big")
    assert t is not None and t.args is not None and t.kwargs is not None
    assert t.args.startswith("x" * 2000) and len(t.args) < 2100 and "clipped" in t.args
    assert len(t.kwargs) == 2  # the later, small value
    assert t.traceback is not None and 20_000 < len(t.traceback) < 20_100
    assert m.fields_clipped == 4
    assert m.events_skipped == 0


def test_a_single_dict_is_one_event() -> None:
    m = ClusterModel()
    m.apply(sent("one"))  # type: ignore[arg-type]
    assert len(m) == 1


# ---- eviction ------------------------------------------------------------------------
def test_history_is_bounded_and_evicts_finished_tasks_first() -> None:
    m = ClusterModel(max_tasks=3)
    m.apply([sent("stuck"), received("stuck")])  # oldest, never finishes
    m.apply(lifecycle("f1", 10) + lifecycle("f2", 20))
    ch = m.apply(lifecycle("n1", 30))
    assert len(m) == 3 and m.task_count == 3
    assert m.get_task("f1") is None and m.get_task("stuck") is not None
    assert ch.evicted == {"f1"} and ch.new_tasks == ["n1"] and "f1" not in ch.tasks
    ch = m.apply([sent("n2", 40)])
    assert ch.evicted == {"f2"}
    assert [t.uuid for t in m.iter_tasks()] == ["n2", "n1", "stuck"]
    assert m.tasks_evicted == 2


def test_finished_tasks_go_in_the_order_they_finished() -> None:
    m = ClusterModel(max_tasks=3)
    m.apply([received("a", 1), received("b", 2), received("c", 3)])
    m.apply([succeeded("b", 4), succeeded("a", 5)])
    m.apply([sent("d", 6)])
    assert m.get_task("b") is None and m.get_task("a") is not None


def test_when_nothing_finished_the_oldest_goes_anyway() -> None:
    m = ClusterModel(max_tasks=2)
    ch = m.apply([sent("a", 0), sent("b", 1)])
    ch = m.apply([sent("c", 2), sent("d", 3)])
    assert len(m) == 2 and [t.uuid for t in m.iter_tasks(newest_first=False)] == ["c", "d"]
    assert ch.evicted == {"a", "b"}
    # added and evicted within one batch: reported nowhere
    ch = m.apply([sent("e", 4), sent("f", 5), sent("g", 6)])
    assert ch.new_tasks == ["f", "g"] and ch.evicted == {"c", "d"} and ch.tasks == {"f", "g"}


def test_finished_and_evicted_within_one_batch_is_reported_nowhere() -> None:
    m = ClusterModel(max_tasks=2)
    ch = m.apply(lifecycle("a", 0) + lifecycle("b", 10) + lifecycle("c", 20))
    assert ch.new_tasks == ["b", "c"] and ch.tasks == {"b", "c"} and ch.evicted == set()
    assert m.tasks_evicted == 1


def test_a_failing_iterable_keeps_what_was_applied() -> None:
    m = ClusterModel()

    def stream():
        yield sent("a")
        raise ConnectionError("broker went away")

    with pytest.raises(ConnectionError):
        m.apply(stream())
    assert m.events_applied == 1
    ch = m.apply([])
    assert ch.new_tasks == ["a"] and ch.tasks == {"a"}


def test_an_evicted_task_can_come_back() -> None:
    m = ClusterModel(max_tasks=1)
    m.apply([sent("a")])
    ch = m.apply([sent("b"), received("a", 5)])
    assert ch.evicted == {"a"} and ch.new_tasks == ["a"]  # b came and went unseen
    assert m.get_task("a").state == RECEIVED and len(m) == 1  # type: ignore[union-attr]


def test_many_evictions_stay_bounded_with_stuck_tasks_in_front() -> None:
    m = ClusterModel(max_tasks=50)
    m.apply([received(f"stuck{i}", i) for i in range(10)])
    for n in range(3000):
        m.apply(lifecycle(f"t{n}", 100 + n))
    assert len(m) == 50
    assert all(m.get_task(f"stuck{i}") is not None for i in range(10))
    assert len(m._order) <= m._order_limit + 1  # first-seen FIFO gets compacted
    assert len(m._finished) <= 50


# ---- ordering and queries ------------------------------------------------------------
def test_iter_tasks_by_first_seen() -> None:
    m = ClusterModel()
    m.apply([sent("a", 0), sent("b", 1), received("c", 2), received("a", 3)])
    assert [t.uuid for t in m.iter_tasks()] == ["c", "b", "a"]
    assert [t.uuid for t in m.iter_tasks(newest_first=False)] == ["a", "b", "c"]


def test_repeated_strings_are_shared() -> None:
    m = ClusterModel()
    m.apply(lifecycle("a") + lifecycle("b"))
    a, b = m.get_task("a"), m.get_task("b")
    assert a is not None and b is not None
    name_b = "".join(["afirgen_tasks.reports.", "generate_fir_pdf"])  # a fresh object
    m.apply([received("c", name=name_b)])
    c = m.get_task("c")
    assert c is not None and c.name is a.name and a.queue is b.queue and c.hostname is a.hostname


def test_tasks_per_second_over_the_window() -> None:
    m = ClusterModel(rate_window=5.0)
    events = []
    for i in range(20):  # 20 finishes spread over 10 s (2/s), one failure among them
        events.append(succeeded(f"s{i}", i * 0.5) if i != 7 else failed(f"s{i}", i * 0.5))
    m.apply(events)
    now = T0 + 10.0
    assert m.tasks_per_second(now) == pytest.approx(2.0, abs=0.41)
    assert m.tasks_per_second(now + 60) == 0.0


# ---- workers -------------------------------------------------------------------------
def heartbeat(host: str, t: float, **fields: Any) -> dict[str, Any]:
    base = {
        "freq": 2.0,
        "sw_ident": "py-celery",
        "sw_ver": "5.7.0",
        "sw_sys": "Linux",
        "active": 1,
        "processed": 42,
        "loadavg": [0.5, 0.4, 0.3],
    }
    base.update(fields)
    return ev("worker-heartbeat", None, t, host, **base)


def test_worker_online_offline_by_heartbeat_timeout() -> None:
    m = ClusterModel(heartbeat_timeout=6.0)
    ch = m.apply([ev("worker-online", None, 0.0, W1, freq=2.0), heartbeat(W2, 0.0)])
    assert ch.workers == {W1, W2}
    m.apply([heartbeat(W1, 4.0)])
    w1, w2 = m.get_worker(W1), m.get_worker(W2)
    assert w1 is not None and w2 is not None
    assert (w2.active, w2.processed, w2.loadavg, w2.sw_ver, w2.freq) == (
        1,
        42,
        (0.5, 0.4, 0.3),
        "5.7.0",
        2.0,
    )
    assert m.refresh_liveness(T0 + 6.0) == set()
    assert m.refresh_liveness(T0 + 6.5) == {W2}  # 6.49 s since its last heartbeat
    assert not w2.online and w1.online
    assert m.refresh_liveness(T0 + 6.6) == set()  # reported once
    assert m.refresh_liveness(T0 + 10.5) == {W1}
    ch = m.apply([heartbeat(W2, 11.0)])
    assert w2.online and ch.workers == {W2}
    m.apply([ev("worker-offline", None, 12.0, W2)])
    assert not w2.online
    assert [w.hostname for w in m.workers()] == [W1, W2]


def test_slow_heartbeat_freq_stretches_the_timeout() -> None:
    m = ClusterModel(heartbeat_timeout=6.0)
    m.apply([heartbeat(W1, 0.0, freq=5.0)])
    assert m.refresh_liveness(T0 + 9.0) == set()
    assert m.refresh_liveness(T0 + 10.5) == {W1}


def test_task_events_are_signs_of_life() -> None:
    m = ClusterModel()
    m.apply([heartbeat(W1, 0.0)])
    m.refresh_liveness(T0 + 100)
    ch = m.apply([started("z", 101.0)])
    assert m.get_worker(W1).online and W1 in ch.workers  # type: ignore[union-attr]


PREFORK_STATS = {
    "total": {"afirgen_tasks.email.send_status_update": 12, "afirgen_tasks.reliability.ping": 3},
    "pid": 4242,
    "clock": "77",
    "uptime": 120,
    "pool": {
        "implementation": "celery.concurrency.prefork:TaskPool",
        "max-concurrency": 8,
        "processes": [101, 102, 103, 104],
        "max-tasks-per-child": "N/A",
        "put-guarded-by-semaphore": False,
        "timeouts": [0, 0],
        "writes": "N/A",
    },
    "autoscaler": {"max": 8, "min": 2, "current": 4, "qty": 0},
    "broker": {"hostname": "127.0.0.1", "transport": "redis"},
    "prefetch_count": 32,
    "rusage": "N/A",
}


def test_worker_stats_merge() -> None:
    m = ClusterModel()
    assert m.set_worker_stats(W1, PREFORK_STATS) is True
    w = m.get_worker(W1)
    assert w is not None
    assert (w.pool, w.concurrency, w.max_concurrency, w.autoscale, w.pid) == (
        "prefork",
        4,
        8,
        (8, 2),
        4242,
    )
    assert w.totals == {
        "afirgen_tasks.email.send_status_update": 12,
        "afirgen_tasks.reliability.ping": 3,
    }
    assert m.set_worker_stats(W1, PREFORK_STATS) is False
    assert m.apply([]).workers == {W1}
    solo = {"pool": {"implementation": "celery.concurrency.solo:TaskPool", "max-concurrency": 1}}
    assert m.set_worker_stats(W1, solo) is True
    assert (w.pool, w.concurrency, w.max_concurrency, w.autoscale) == ("solo", 1, 1, None)
    assert m.set_worker_stats(W2, "N/A") is False  # type: ignore[arg-type]


def test_worker_queues_merge() -> None:
    m = ClusterModel()
    assert m.set_worker_queues(W1, ["email", "default"]) is True
    assert m.get_worker(W1).queues == ("default", "email")  # type: ignore[union-attr]
    assert (
        m.set_worker_queues(W1, [{"name": "default", "routing_key": "default"}, {"name": "email"}])
        is False
    )
    assert m.set_worker_queues(W1, [{"name": "reports"}, None, 3]) is True
    assert m.get_worker(W1).queues == ("reports",)  # type: ignore[union-attr]


# ---- merge_task_info -----------------------------------------------------------------
def test_merge_task_info_fills_gaps_and_never_regresses() -> None:
    m = ClusterModel()
    m.apply([succeeded("g", 3.0)])
    t = m.get_task("g")
    assert (
        m.merge_task_info(
            "g",
            state="STARTED",
            name="afirgen_tasks.email.send_status_update",
            result="overwritten?",
            args="('FIR-1',)",
            bogus=1,
        )
        is True
    )
    assert t is not None and t.state == SUCCESS and t.result == "{'status': 'ok', 'pages': 3}"
    assert t.name == "afirgen_tasks.email.send_status_update" and t.args == "('FIR-1',)"
    assert m.merge_task_info("g", state="STARTED", name="other") is False


def test_merge_task_info_creates_tasks_seen_by_inspect_only() -> None:
    m = ClusterModel()
    assert (
        m.merge_task_info(
            "i",
            state="STARTED",
            worker=W2,
            name="afirgen_tasks.reliability.ping",
            started=T0,
            priority=9,
        )
        is True
    )
    t = m.get_task("i")
    assert t is not None and t.state == STARTED and t.hostname == W2 and t.priority == 9
    ch = m.apply([])
    assert ch.new_tasks == ["i"] and ch.tasks == {"i"}
    m.apply([succeeded("i", 5.0, W2)])
    assert t.state == SUCCESS
    assert m.merge_task_info("j", state="FAILURE", exception="X" * 5000) is True
    assert m.get_task("j").is_finished and m.fields_clipped == 1  # type: ignore[union-attr]


def test_merge_task_info_behind_puts_history_older_than_everything_quietly() -> None:
    m = ClusterModel(max_tasks=4)
    m.apply([succeeded("live", 3.0)])
    m.apply([])
    # the history, newest first, merged behind the live task
    for uuid in ("h3", "h2", "h1"):
        assert m.merge_task_info(uuid, behind=True, state="SUCCESS", name="n", sent=T0) is True
    # the live task keeps its state; its empty fields are filled
    assert m.merge_task_info("live", behind=True, state="FAILURE", queue="reports") is True
    live = m.get_task("live")
    assert live is not None and live.state == SUCCESS and live.queue == "reports"
    ch = m.apply([])
    assert ch.new_tasks == [] and ch.tasks == {"live"}  # created behind: not news
    m.history_merged()
    assert [t.uuid for t in m.iter_tasks(newest_first=False)] == ["h1", "h2", "h3", "live"]
    # a full model takes no more history: it would be the first evicted anyway
    assert m.merge_task_info("h0", behind=True, state="SUCCESS") is False
    assert m.get_task("h0") is None and len(m) == 4
    # the oldest finished goes first when the bound is reached: the history's oldest
    m.apply([succeeded("new", 4.0)])
    assert [t.uuid for t in m.iter_tasks(newest_first=False)] == ["h2", "h3", "live", "new"]


def test_a_history_row_further_along_lends_a_live_task_no_outcome_of_another_run() -> None:
    """The history saw report-FIR-123 fail yesterday; today the cluster sends it again (a
    retry or a redelivery): it must not read SENT with yesterday's worker and exception."""
    m = ClusterModel()
    m.apply([sent("r", 5.0, name=None, args=None)])
    m.merge_task_info(
        "r",
        behind=True,
        state="FAILURE",
        name="afirgen_tasks.reports.generate_pdf_report",
        args="(123,)",
        hostname="old@box",
        started=T0 - 86_400,
        finished=T0 - 86_399,
        runtime=1.0,
        exception="Boom('yesterday')",
        traceback="Boom",
    )
    t = m.get_task("r")
    assert t is not None and t.state == "SENT"
    assert t.name == "afirgen_tasks.reports.generate_pdf_report" and t.args == "(123,)"
    assert (t.hostname, t.started, t.finished, t.runtime, t.exception, t.traceback) == ((None,) * 6)
    # a history row at the same stage or before fills what this run left empty
    m.apply([ev("task-succeeded", "s", 9.0, runtime=0.5)])
    m.merge_task_info("s", behind=True, state="STARTED", hostname=W2, started=T0 - 1)
    s = m.get_task("s")
    assert s is not None and s.state == SUCCESS and s.hostname == W1 and s.started == T0 - 1


# ---- Changes -------------------------------------------------------------------------
def test_changes_is_falsy_when_nothing_changed() -> None:
    assert not Changes()
    assert Changes(workers={W1})
    m = ClusterModel()
    assert not m.apply([])
    assert not m.apply([None, ev("task-progress", "x")])  # type: ignore[list-item]


def test_changes_keep_arrival_order_of_new_tasks() -> None:
    m = ClusterModel()
    ch = m.apply([received("c", 1), sent("a", 0), started("b", 2), received("a", 3)])
    assert ch.new_tasks == ["c", "a", "b"] and ch.tasks == {"a", "b", "c"}


# ---- the filter ----------------------------------------------------------------------
def _task(
    uuid: str = "3f2a9c1e-aaaa",
    name: str = "afirgen_tasks.email.send_status_update",
    state: str = FAILURE,
    queue: str = "email",
    host: str = W1,
    prio: int | None = 8,
) -> TaskRecord:
    t = TaskRecord(uuid)
    t.name, t.state, t.queue, t.hostname, t.priority = name, state, queue, host, prio
    return t


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", True),
        ("   ", True),
        ("EMAIL", True),  # queue and name, any case
        ("status_update", True),
        ("fail", True),  # state substring
        ("worker-01", True),
        ("3f2a", True),  # uuid prefix
        ("aaaa", False),  # not a prefix
        ("pdf", False),
        ("state:failure", True),
        ("state:FAIL", True),
        ("state:success", False),
        ("state:success,failure", True),
        ("queue:email", True),
        ("queue:reports", False),
        ("worker:w", True),
        ("worker:worker-02", False),
        ("host:worker-01", True),
        ("name:status", True),
        ("name:pdf", False),
        ("uuid:3F2A", True),
        ("uuid:2a", False),
        ("prio:8", True),
        ("prio:>=8", True),
        ("prio:>8", False),
        ("prio:<=3", False),
        ("prio:7-9", True),
        ("prio:10", False),
        ("prio:!=8", False),
        ("email state:failure prio:>=8", True),  # ANDed
        ("email state:success", False),
        ("state:", True),  # still typing
        ("prio:high", False),
        ("foo:bar", False),  # unknown key: a bare term
    ],
)
def test_filter_syntax(query: str, expected: bool) -> None:
    assert matches(_task(), query) is expected
    assert TaskFilter(query)(_task()) is expected


def test_filter_details() -> None:
    f = TaskFilter("prio:>x")
    assert f.errors and not f(_task())
    assert TaskFilter("").empty and not TaskFilter("a").empty
    assert not matches(_task(prio=None), "prio:>=1")
    assert matches(_task(name="odd:name"), "odd:name")
    unknown = TaskRecord("u1")
    assert matches(unknown, "") and not matches(unknown, "state:failure")
    assert matches(unknown, "pending") and matches(unknown, "u1")


# ---- properties ----------------------------------------------------------------------
_TYPES = [
    "task-sent",
    "task-received",
    "task-started",
    "task-succeeded",
    "task-failed",
    "task-retried",
    "task-revoked",
    "task-rejected",
    "worker-online",
    "worker-heartbeat",
    "worker-offline",
    "task-progress",
    "bogus",
]
_junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
_event = st.fixed_dictionaries(
    {
        "type": st.one_of(st.sampled_from(_TYPES), _junk),
        "uuid": st.one_of(st.sampled_from(["a", "b", "c", "d", "e", "f"]), _junk),
        "hostname": st.one_of(st.sampled_from([W1, W2, CLIENT]), _junk),
        "timestamp": st.one_of(st.floats(0, 100), _junk),
    },
    optional={
        "local_received": st.one_of(st.floats(0, 100), _junk),
        "name": st.one_of(st.just("afirgen_tasks.x.y"), _junk),
        "args": _junk,
        "result": _junk,
        "traceback": st.one_of(st.text(), _junk),
        "priority": _junk,
        "retries": _junk,
        "runtime": _junk,
        "requeue": _junk,
        "queue": _junk,
        "root_id": _junk,
        "loadavg": _junk,
        "freq": _junk,
        "active": _junk,
        "eta": _junk,
        "signum": _junk,
        "terminated": _junk,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.lists(st.lists(st.one_of(_event, _junk), max_size=12), max_size=8),
    max_tasks=st.integers(1, 4),
)
def test_random_event_streams_never_crash_or_regress(
    batches: list[list[Any]], max_tasks: int
) -> None:
    m = ClusterModel(max_tasks=max_tasks, max_field_chars=8)
    ranks: dict[int, tuple[TaskRecord, int]] = {}
    total = 0
    for batch in batches:
        ch = m.apply(batch)
        total += len(batch)
        assert len(m) <= max_tasks
        assert m.last_error is None
        assert set(ch.new_tasks) <= ch.tasks
        assert not (ch.tasks & ch.evicted - set(ch.new_tasks))
        for uuid in ch.tasks:
            assert m.get_task(uuid) is not None
        for t in m.iter_tasks():
            prev = ranks.get(id(t))
            if prev is not None and prev[0] is t:
                # only the retry cycle (rank 4) may step back, into the next attempt, and a
                # task lost with its worker (LOST ranks with SENT: any later event replaces it)
                assert t.rank >= prev[1] or prev[1] == 4 or t.state == "LOST", (t, prev[1])
            ranks[id(t)] = (t, t.rank)
            for attr in ("args", "result", "kwargs", "exception"):
                value = getattr(t, attr)
                assert value is None or (isinstance(value, str) and len(value) < 60)
        m.refresh_liveness(50.0)
    assert m.events_applied + m.events_skipped + m.events_unknown == total


def test_filter_understands_everyday_state_words_and_names_its_mistakes():
    from tui.core.query import TaskFilter

    assert TaskFilter("state:failed").errors == []
    model = ClusterModel(max_tasks=10)
    for uuid, kind in (("a1", "task-failed"), ("b2", "task-succeeded")):
        model.apply(
            [
                {
                    "type": "task-received",
                    "uuid": uuid,
                    "name": "t",
                    "timestamp": 1.0,
                    "hostname": "w1@h",
                },
                {"type": kind, "uuid": uuid, "timestamp": 2.0, "hostname": "w1@h"},
            ]
        )
    failed = [t.uuid for t in model.iter_tasks(newest_first=True) if TaskFilter("state:failed")(t)]
    assert failed == ["a1"]
    assert [t.uuid for t in model.iter_tasks(newest_first=True) if TaskFilter("state:ok")(t)] == [
        "b2"
    ]
    assert TaskFilter("state:bogus").errors == [
        "no state 'bogus' (states: pending sent received started retry rejected revoked failure success purged lost)"
    ]
    assert TaskFilter("foo:bar").errors == [
        "no field 'foo' (fields: state queue worker name uuid prio exc)"
    ]
    assert TaskFilter("prio:>=abc").errors == ["bad priority in 'prio:>=abc'"]
    # still typing, and words with a colon that are no field name, are not mistakes
    assert TaskFilter("state: 10:15").errors == []


def test_mark_purged_marks_only_what_waited_in_that_queue_and_later_events_win():
    from tui.core.model import PURGED

    model = ClusterModel(max_tasks=10)

    def sent(uuid, queue, ts):
        return {
            "type": "task-sent",
            "uuid": uuid,
            "name": "t",
            "queue": queue,
            "timestamp": ts,
            "hostname": "pub@h",
        }

    model.apply(
        [
            sent("a", "reports", 1.0),
            sent("b", "email", 1.0),
            sent("c", "reports", 5.0),
            sent("d", "reports", 1.0),
            {"type": "task-received", "uuid": "d", "timestamp": 2.0, "hostname": "w1@h"},
        ]
    )
    assert model.mark_purged("reports", before=3.0) == 1
    states = {t.uuid: t.state for t in model.iter_tasks(newest_first=True)}
    # a: waited in reports; b: another queue; c: sent after the purge; d: a worker had it
    assert states == {"a": PURGED, "b": "SENT", "c": "SENT", "d": "RECEIVED"}
    # a worker had "a" after all: its event replaces the guess
    model.apply([{"type": "task-received", "uuid": "a", "timestamp": 4.0, "hostname": "w1@h"}])
    assert model.get_task("a").state == "RECEIVED"


# ---- memory stays bounded under a flood of unique ids (issue 12) -------------------------


def _flood(model: ClusterModel, start: int, stop: int, unique_hosts: bool) -> None:
    """Unique task ids: odd ones only received (never finish), even ones sent then succeeded."""
    t = 1_700_000_000.0
    for lo in range(start, stop, 1000):
        batch: list[dict[str, Any]] = []
        for i in range(lo, min(lo + 1000, stop)):
            uuid, host, ts = (
                f"{i:08x}-flood",
                f"w{i}@forged" if unique_hosts else "celery@w1",
                t + i / 1000,
            )
            if i % 2:
                batch.append(
                    {
                        "type": "task-received",
                        "uuid": uuid,
                        "hostname": host,
                        "timestamp": ts,
                        "local_received": ts,
                        "name": f"n{i}",
                        "args": "(1, 2)",
                    }
                )
            else:
                batch += [
                    {
                        "type": "task-sent",
                        "uuid": uuid,
                        "hostname": "gen@api",
                        "timestamp": ts,
                        "local_received": ts,
                        "name": "afirgen.x",
                        "queue": "email",
                        "args": "(1, 2)",
                    },
                    {
                        "type": "task-succeeded",
                        "uuid": uuid,
                        "hostname": host,
                        "timestamp": ts,
                        "local_received": ts,
                        "result": "'ok'",
                        "runtime": 0.1,
                    },
                ]
        model.apply(batch)


@pytest.mark.parametrize(
    "unique_hosts", [False, True], ids=["one-worker", "a-new-worker-per-event"]
)
def test_referenced_memory_stays_bounded_past_max_tasks(unique_hosts: bool) -> None:
    # tracemalloc's current size is what is still referenced (RSS also counts memory that
    # was freed but not returned to the OS).  The model holds max_tasks tasks and
    # max_workers workers whatever arrives: 10x the ids must not cost 10x the memory.
    import gc
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        model = ClusterModel(max_tasks=3000, max_workers=300)
        _flood(model, 0, 9000, unique_hosts)
        gc.collect()
        at_9k = tracemalloc.get_traced_memory()[0] - base
        _flood(model, 9000, 90_000, unique_hosts)
        gc.collect()
        at_90k = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert len(model) == 3000
    assert len(model.workers()) <= 300
    assert model.tasks_evicted == 87_000
    assert len(model._order) <= model._order_limit and len(model._finished) <= 3000
    assert at_90k < 1.5 * at_9k, (
        f"{at_9k / 1e6:.1f} MB after 9k ids, {at_90k / 1e6:.1f} MB after 90k"
    )


def test_least_recently_seen_workers_are_forgotten_past_max_workers() -> None:
    model = ClusterModel(max_workers=10)
    model.apply(
        [
            {
                "type": "worker-heartbeat",
                "hostname": f"w{i}@h",
                "local_received": 100.0 + i,
                "freq": 2.0,
            }
            for i in range(10)
        ]
    )
    model.apply(
        {"type": "worker-heartbeat", "hostname": "w0@h", "local_received": 200.0}
    )  # w0 is fresh again
    ch = model.apply({"type": "worker-heartbeat", "hostname": "new@h", "local_received": 201.0})
    hosts = {w.hostname for w in model.workers()}
    assert len(hosts) == 9 and {"w0@h", "new@h"} <= hosts
    gone = {"w1@h", "w2@h"}
    assert not hosts & gone and gone <= ch.workers  # the pane drops their rows
    assert model.workers_evicted == 2
    # inspect replies from unknown workers are bounded the same way
    for i in range(20):
        model.set_worker_queues(f"x{i}@h", ["email"])
    assert len(model.workers()) <= 10 and model.get_worker("x19@h") is not None


def test_the_interner_shares_copies_but_holds_a_bounded_number_and_never_immortal_ones() -> None:
    import sys

    from tui.core.model import _make_interner

    intern = _make_interner(limit=100)
    first = intern("".join(["celery@", "w1"]))
    assert intern("".join(["celery@", "w", "1"])) is first  # equal values share one copy
    import tracemalloc

    tracemalloc.start()
    try:
        for i in range(50_000):  # a flood of distinct 200-character names: 10 MB if all were kept
            intern(f"forged-{i:09d}".ljust(200, "x"))
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held < 200_000, held
    # sys.intern makes strings immortal on Python 3.12 (refcount 2**32 - 1): never for data
    assert sys.getrefcount(intern("".join(["unique-", "name"]))) < 1000


# ---- issue 14: latest activity, running tasks, Done/Fail from one source ------------------
def test_last_event_is_the_latest_event_time_whatever_arrives_first() -> None:
    m = ClusterModel()
    m.apply([sent("a", 0.0), received("a", 1.0), succeeded("a", 5.0), started("a", 2.0)])
    assert m.get_task("a").last_event == T0 + 5  # type: ignore[union-attr]
    # from the backend or the history: the latest of the times it knows
    m.merge_task_info("b", state="FAILURE", sent=T0 + 1, started=T0 + 2, finished=T0 + 9)
    assert m.get_task("b").last_event == T0 + 9  # type: ignore[union-attr]


def test_running_tasks_is_an_index_of_the_started_ones() -> None:
    m = ClusterModel(max_tasks=100)
    m.apply([sent("r"), received("r"), started("r"), sent("s"), received("s"), started("s")])
    m.merge_task_info("i", state="STARTED", started=T0)
    assert sorted(t.uuid for t in m.running_tasks()) == ["i", "r", "s"]
    m.apply([succeeded("r", 9.0)])
    m.merge_task_info("i", state="SUCCESS")
    assert [t.uuid for t in m.running_tasks()] == ["s"]


def test_done_and_fail_both_count_task_events_and_not_the_heartbeat() -> None:
    m = ClusterModel()
    hb = ev("worker-heartbeat", None, 0.0, W1, processed=3, active=1)
    m.apply([hb, succeeded("a"), failed("b"), received("c"), started("c")])
    w = m.get_worker(W1)
    assert w is not None and (w.succeeded, w.failed, w.processed) == (1, 1, 3)
    m.apply([succeeded("a", 4.0)])  # a duplicate event does not count twice
    assert (w.succeeded, w.failed) == (1, 1)


def test_a_job_deleted_from_its_queue_reads_purged_not_sent_for_ever():
    model = ClusterModel(max_tasks=10)
    model.apply(
        [
            {
                "type": "task-sent",
                "uuid": "d1",
                "name": "t",
                "queue": "email",
                "timestamp": 1.0,
                "hostname": "pub@h",
            }
        ]
    )
    assert model.mark_deleted("d1") is True
    assert model.get_task("d1").state == PURGED
    assert "d1" in model.apply([]).tasks
    # a task the console never saw is added as PURGED; one a worker reported on is left alone
    assert model.mark_deleted("unseen") is True and model.get_task("unseen").state == PURGED
    model.apply(
        [{"type": "task-received", "uuid": "d2", "name": "t", "timestamp": 2.0, "hostname": "w1@h"}]
    )
    assert model.mark_deleted("d2") is False and model.get_task("d2").state == RECEIVED
    # any later event about it replaces PURGED (the worker had it after all)
    model.apply(
        [{"type": "task-received", "uuid": "d1", "name": "t", "timestamp": 3.0, "hostname": "w1@h"}]
    )
    assert model.get_task("d1").state == RECEIVED
