"""The metric collectors of ``--serve-metrics`` on dict fixtures, the listen address parser,
and the queue poller's tail read (fakeredis)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import fakeredis
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from afirgen_tasks.priority import REDIS_PRIORITY_STEPS
from tui.metrics.address import parse_listen
from tui.metrics.exporter import OTHER, UNKNOWN, ClusterMetrics, exception_class, node_host
from tui.sources.inspection import InspectionResult
from tui.sources.queue_lengths import (
    QueueLength,
    QueueLengthPoller,
    QueueSnapshot,
    tail_identity,
)

TASK = "afirgen_tasks.reports.generate_pdf_report"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sample(metrics: ClusterMetrics, metric: str, /, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(metric, labels)


def task(etype: str, uuid: str, host: str = "w1@web-1", **fields) -> dict:
    return {"type": etype, "uuid": uuid, "hostname": host, **fields}


# ---- task events -----------------------------------------------------------------------------


def test_task_lifecycle_counted_under_the_name_from_received():
    m = ClusterMetrics()
    m.apply_events(
        [
            task("task-sent", "a", host="gen7@api-1", name=TASK, queue="reports"),
            task("task-received", "a", name=TASK),
            task("task-started", "a"),
            task("task-succeeded", "a", runtime=0.25),
        ]
    )
    labels = {"name": TASK, "hostname": "web-1", "queue_name": "reports"}
    assert (
        sample(m, "celery_task_sent_total", name=TASK, hostname="api-1", queue_name="reports") == 1
    )
    assert sample(m, "celery_task_received_total", **labels) == 1
    assert sample(m, "celery_task_started_total", **labels) == 1
    assert sample(m, "celery_task_succeeded_total", **labels) == 1
    assert sample(m, "celery_task_runtime_count", **labels) == 1
    assert sample(m, "celery_task_runtime_sum", **labels) == 0.25
    assert sample(m, "celery_task_runtime_bucket", le="0.25", **labels) == 1
    # the others exist at 0 so that ratios of rates have both sides
    assert sample(m, "celery_task_retried_total", **labels) == 0
    assert sample(m, "celery_task_revoked_total", **labels) == 0
    # a finished task is forgotten
    assert "a" not in m._tasks


def test_failed_carries_the_exception_class_and_unseen_tasks_are_unknown():
    m = ClusterMetrics()
    m.apply_event(task("task-failed", "zz", exception="PermanentTaskError('FIR 9 does not exist')"))
    assert (
        sample(
            m,
            "celery_task_failed_total",
            name=UNKNOWN,
            hostname="web-1",
            exception="PermanentTaskError",
            queue_name=UNKNOWN,
        )
        == 1
    )
    assert exception_class("not a repr") == "UnknownException"
    assert exception_class(None) == "UnknownException"
    assert node_host("w1@web-1") == "web-1" and node_host("lonely") == "lonely"


def test_task_names_capped_with_other_and_counted():
    m = ClusterMetrics(max_task_names=3)
    for i in range(5):
        m.apply_event(task("task-received", f"u{i}", name=f"forged.{i}"))
    names = {
        s.labels["name"]
        for f in m.registry.collect()
        if f.name == "celery_task_received"
        for s in f.samples
        if s.name.endswith("_total")
    }
    assert names == {"forged.0", "forged.1", "forged.2", OTHER}
    assert sample(m, "afirgen_metrics_labels_dropped_total", label="name") == 2


def test_series_per_family_capped_whatever_the_label_caps():
    m = ClusterMetrics(max_series=10)
    for i in range(30):
        m.apply_event(task("task-received", f"u{i}", host=f"w@h{i}", name=f"n{i}"))
    received = [
        s
        for f in m.registry.collect()
        if f.name == "celery_task_received"
        for s in f.samples
        if s.name.endswith("_total")
    ]
    assert len(received) == 11  # 10 kept, then everything else in one (other, other, other) series
    assert (
        sample(m, "celery_task_received_total", name=OTHER, hostname=OTHER, queue_name=OTHER) == 20
    )
    assert sample(m, "afirgen_metrics_labels_dropped_total", label="series") >= 20


def test_tracked_tasks_bounded():
    m = ClusterMetrics(max_tasks_tracked=100)
    for i in range(1000):
        m.apply_event(task("task-sent", f"u{i}", name=TASK, queue="reports"))
    assert len(m._tasks) == 100


# ---- workers -------------------------------------------------------------------------------------


def test_worker_up_from_heartbeats_by_host_and_node():
    clock = Clock()
    m = ClusterMetrics(heartbeat_timeout=6.0, clock=clock)
    m.apply_event({"type": "worker-online", "hostname": "a@web-1", "freq": 2.0})
    m.apply_event({"type": "worker-heartbeat", "hostname": "b@web-1", "freq": 2.0, "active": 3})
    assert sample(m, "celery_worker_up", hostname="web-1") == 1
    assert sample(m, "celery_worker_tasks_active", hostname="web-1") == 3
    assert sample(m, "afirgen_worker_up", worker="a@web-1") == 1

    m.apply_event({"type": "worker-offline", "hostname": "b@web-1"})
    assert sample(m, "afirgen_worker_up", worker="b@web-1") == 0
    assert sample(m, "celery_worker_up", hostname="web-1") == 1  # a is still up
    assert sample(m, "celery_worker_tasks_active", hostname="web-1") == 0

    clock.now += 7  # a's heartbeats stopped
    assert sample(m, "celery_worker_up", hostname="web-1") == 0
    clock.now += 700  # long gone: forgotten
    assert sample(m, "celery_worker_up", hostname="web-1") is None


def test_workers_tracked_are_bounded():
    m = ClusterMetrics(max_workers=5)
    for i in range(50):
        m.apply_event({"type": "worker-heartbeat", "hostname": f"w{i}@h{i}"})
    assert len(m._nodes) == 5
    assert sample(m, "afirgen_metrics_labels_dropped_total", label="worker") == 45


# ---- queues --------------------------------------------------------------------------------------


def snapshot(
    waiting: dict[int, int], tails: dict[int, str], reserved: int = 0, name: str = "cleanup"
):
    bands = dict.fromkeys(range(1, 11), 0)
    bands.update(waiting)
    q = QueueLength(name, sum(bands.values()), bands, reserved, tails)
    return QueueSnapshot(queues={name: q})


def test_queue_waiting_by_priority_reserved_and_length():
    m = ClusterMetrics()
    m.apply_queue_snapshot(snapshot({7: 2, 1: 1}, {7: "tag:x", 1: "tag:y"}, reserved=4))
    assert sample(m, "afirgen_queue_waiting", queue_name="cleanup", priority="7") == 2
    assert sample(m, "afirgen_queue_waiting", queue_name="cleanup", priority="10") == 0
    assert sample(m, "celery_queue_length", queue_name="cleanup") == 3
    assert sample(m, "afirgen_queue_reserved", queue_name="cleanup") == 4


def test_oldest_age_counts_from_first_sight_and_restarts_with_a_new_tail():
    clock = Clock()
    m = ClusterMetrics(clock=clock)
    m.apply_queue_snapshot(snapshot({7: 1}, {7: "tag:old"}))
    assert sample(m, "afirgen_queue_oldest_waiting_age_seconds", queue_name="cleanup") == 0
    clock.now += 30
    m.apply_queue_snapshot(snapshot({7: 2, 3: 1}, {7: "tag:old", 3: "tag:new"}))
    assert sample(m, "afirgen_queue_oldest_waiting_age_seconds", queue_name="cleanup") == 30
    clock.now += 5  # the old one was taken: the next in line was first seen 5 s ago
    m.apply_queue_snapshot(snapshot({7: 1, 3: 1}, {7: "tag:next", 3: "tag:new"}))
    assert sample(m, "afirgen_queue_oldest_waiting_age_seconds", queue_name="cleanup") == 5
    m.apply_queue_snapshot(snapshot({}, {}))
    assert sample(m, "afirgen_queue_oldest_waiting_age_seconds", queue_name="cleanup") == 0


def test_age_unknown_without_tails_and_queue_families_gone_when_the_poll_fails():
    m = ClusterMetrics()
    m.apply_queue_snapshot(snapshot({5: 3}, {}))  # a server that cannot run the script
    assert sample(m, "afirgen_queue_oldest_waiting_age_seconds", queue_name="cleanup") is None
    assert sample(m, "celery_queue_length", queue_name="cleanup") == 3
    m.apply_queue_snapshot(None)
    assert sample(m, "celery_queue_length", queue_name="cleanup") is None
    m.apply_queue_snapshot(QueueSnapshot(available=False, error="amqp"))
    assert sample(m, "afirgen_queue_waiting", queue_name="cleanup", priority="5") is None


def test_hostile_queue_names_dropped_and_capped():
    m = ClusterMetrics(max_queues=2)
    queues = {}
    for name in ("a", "b", "c", "evil\x1b[2J", "x" * 300):
        queues[name] = QueueLength(name, 0, dict.fromkeys(range(1, 11), 0))
    m.apply_queue_snapshot(QueueSnapshot(queues=queues))
    text = generate_latest(m.registry).decode()
    shown = {
        s.labels["queue_name"]
        for f in text_string_to_metric_families(text)
        if f.name == "celery_queue_length"
        for s in f.samples
    }
    assert shown == {"a", "b"}
    assert sample(m, "afirgen_metrics_labels_dropped_total", label="queue_name") == 3
    assert "\x1b" not in text


def test_consumers_per_queue_from_inspect():
    m = ClusterMetrics()
    m.apply_inspection(
        InspectionResult(
            stats={
                "w1@h": {"pool": {"processes": [1, 2, 3]}},
                "w2@h": {"pool": {"processes": [4]}},
            },
            active_queues={"w1@h": ["default", "email"], "w2@h": ["default"]},
        )
    )
    assert sample(m, "celery_active_worker_count", queue_name="default") == 2
    assert sample(m, "celery_active_process_count", queue_name="default") == 4
    assert sample(m, "celery_active_process_count", queue_name="email") == 3
    m.apply_inspection(InspectionResult(error="broker down"))  # keeps the last answer
    assert sample(m, "celery_active_worker_count", queue_name="default") == 2


def test_exporter_health():
    source = SimpleNamespace(
        received=10, invalid=2, dropped=1, status=SimpleNamespace(state="connected")
    )
    m = ClusterMetrics(events_source=source)
    assert sample(m, "afirgen_broker_up") == 0
    m.broker_up = True
    assert sample(m, "afirgen_broker_up") == 1
    assert sample(m, "afirgen_events_received_total") == 10
    assert sample(m, "afirgen_events_invalid_total") == 2
    assert sample(m, "afirgen_events_dropped_total") == 1
    assert sample(m, "afirgen_events_connected") == 1


# ---- address and tails ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9808", ("127.0.0.1", 9808)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
        ("[::1]:9808", ("::1", 9808)),
        ("metrics.internal:65535", ("metrics.internal", 65535)),
    ],
)
def test_parse_listen(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "9808",
        ":9808",
        "host:",
        "host:0",
        "host:65536",
        "host:８０",
        "::1:9808",
        "[::1:9808",
        "a b:9808",
        "h\x1b:1",
    ],
)
def test_parse_listen_refuses(text):
    with pytest.raises(ValueError):
        parse_listen(text)


def test_tail_identity_prefers_the_delivery_tag():
    msg = json.dumps(
        {"body": "x" * 2000, "properties": {"delivery_tag": "d-1", "priority": 3}}
    ).encode()
    assert tail_identity(msg[-512:]) == "tag:d-1"
    assert tail_identity(b"garbage") == tail_identity(b"garbage") != tail_identity(b"other")
    assert tail_identity(b"garbage").startswith("sha1:")
    assert tail_identity(b"") == "" and tail_identity(None) == ""


def test_poller_reads_the_oldest_tail_of_each_priority_list_in_the_same_round_trip():
    client = fakeredis.FakeRedis()
    poller = QueueLengthPoller(client, ["cleanup"], REDIS_PRIORITY_STEPS, ":")
    poller.discover()

    def push(key: str, tag: str) -> None:
        client.lpush(key, json.dumps({"body": "b" * 5000, "properties": {"delivery_tag": tag}}))

    push("cleanup:3", "first")  # operator priority 7
    push("cleanup:3", "second")
    push("cleanup", "urgent")  # wire 0 = operator 10
    trips = poller.round_trips
    snap = poller.poll(tails=True)
    assert poller.round_trips == trips + 1
    q = snap.queues["cleanup"]
    assert q.by_priority[7] == 2 and q.by_priority[10] == 1
    assert q.tails == {7: "tag:first", 10: "tag:urgent"}
    assert poller.poll().queues["cleanup"].tails == {}  # only when asked
