"""The operator priority scale, its wire mapping per transport, routing, and where messages land."""

from __future__ import annotations

import json

import pytest

from afirgen_tasks.factory import REDIS_PRIORITY_SEP
from afirgen_tasks.priority import (
    PRIORITY_HEADER,
    PriorityError,
    from_wire,
    is_redis_transport,
    redis_step_key,
    to_wire,
    validate_priority,
)
from afirgen_tasks.routing import QUEUES, celery_task_routes, route_for

REDIS = "redis://127.0.0.1:6379/0"
AMQP = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.mark.parametrize(
    ("task_name", "queue", "priority"),
    [
        ("afirgen_tasks.email.send_fir_acknowledgement", "email", 3),
        ("afirgen_tasks.email.anything", "email", 3),
        ("afirgen_tasks.reports.generate_fir_pdf", "reports", 5),
        ("afirgen_tasks.analytics.daily_stats", "analytics", 2),
        ("afirgen_tasks.cleanup.cleanup_temp_files", "cleanup", 1),
        ("afirgen_tasks.other.thing", "default", 5),
        ("celery.accumulate", "default", 5),
        ("afirgen_tasks.emailer.x", "default", 5),  # the pattern is "email.*", not "email*"
    ],
)
def test_routes(task_name, queue, priority):
    assert (route_for(task_name).queue, route_for(task_name).priority) == (queue, priority)


def test_celery_task_routes_keep_order_and_cover_every_queue():
    routes = celery_task_routes()
    assert list(routes[-1]) == ["*"]
    assert {opts["queue"] for r in routes for opts in r.values()} == set(QUEUES)


@pytest.mark.parametrize(
    ("operator", "redis_wire", "amqp_wire"), [(10, 0, 10), (5, 5, 5), (1, 9, 1), (7, 3, 7)]
)
def test_to_wire_per_transport(operator, redis_wire, amqp_wire):
    assert to_wire(operator, REDIS) == redis_wire
    assert to_wire(operator, AMQP) == amqp_wire


@pytest.mark.parametrize(
    "broker", [REDIS, "rediss://h:6380/0", "sentinel://h:26379", AMQP, "pyamqp://h//"]
)
def test_round_trip_and_urgency_order(broker):
    wires = [to_wire(p, broker) for p in range(1, 11)]
    assert [from_wire(w, broker) for w in wires] == list(range(1, 11))
    # Urgency order: Redis serves low numbers first, RabbitMQ high numbers first.
    served_first = sorted(
        range(1, 11), key=lambda p: to_wire(p, broker), reverse=not is_redis_transport(broker)
    )
    assert served_first == list(range(10, 0, -1))


def test_from_wire_clamps():
    assert from_wire(42, AMQP) == 10 and from_wire(0, AMQP) == 1
    assert from_wire(-3, REDIS) == 10 and from_wire(15, REDIS) == 1


@pytest.mark.parametrize("bad", [0, 11, -1, "x", "", " ", True, False, None, 1.5, "5.0", [5]])
def test_bad_priorities_rejected(bad):
    with pytest.raises(PriorityError):
        validate_priority(bad)
    with pytest.raises(PriorityError):
        to_wire(bad, REDIS)  # type: ignore[arg-type]


@pytest.mark.parametrize(("good", "value"), [(1, 1), (10, 10), ("7", 7), (" 3 ", 3), (4.0, 4)])
def test_good_priorities(good, value):
    assert validate_priority(good) == value


def test_redis_step_key():
    assert redis_step_key("email", 0, ":") == "email"
    assert redis_step_key("email", 7, ":") == "email:7"


def _one_message(client, key: str) -> dict:
    raw = client.lrange(key, 0, -1)
    assert len(raw) == 1, f"{key} holds {len(raw)} messages"
    return json.loads(raw[0])


@pytest.mark.parametrize("priority", [1, 4, 10])
def test_send_task_lands_in_the_redis_list_for_its_priority(afirgen_app, redis_client, priority):
    afirgen_app.send_task("afirgen_tasks.reports.whatever", priority=priority)
    key = redis_step_key("reports", to_wire(priority, REDIS), REDIS_PRIORITY_SEP)
    message = _one_message(redis_client, key)
    assert message["properties"]["priority"] == 10 - priority
    assert message["headers"][PRIORITY_HEADER] == priority
    other = [k.decode() for k in redis_client.keys("reports*") if k.decode() != key]
    assert other == []


def test_route_priority_applies_when_caller_names_none(afirgen_app, redis_client):
    afirgen_app.send_task("afirgen_tasks.email.send_something")  # route: email, priority 3
    message = _one_message(redis_client, "email:7")
    assert message["headers"][PRIORITY_HEADER] == 3


def test_apply_async_maps_priority_and_queue_override(afirgen_app, redis_client):
    task = afirgen_app.tasks["celery.accumulate"]
    task.apply_async(args=(1,), priority=9, queue="analytics")
    message = _one_message(redis_client, "analytics:1")
    assert message["headers"][PRIORITY_HEADER] == 9


def test_bad_priority_is_refused_before_publishing(afirgen_app, redis_client):
    with pytest.raises(PriorityError):
        afirgen_app.send_task("afirgen_tasks.reports.whatever", priority=11)
    assert [k for k in redis_client.keys("*") if not k.startswith(b"afirgen-test:")] == []


def test_non_redis_transport_keeps_operator_number_on_the_wire(tmp_path):
    """On AMQP-like transports the wire priority is the operator's (checked with kombu's memory transport)."""
    from celery._state import get_current_app

    from afirgen_tasks.factory import create_app
    from afirgen_tasks.settings import load_settings

    previous = get_current_app()
    settings = load_settings(
        None,
        celery_broker_url="memory://",
        celery_result_backend="cache+memory://",
        paths_data_dir=tmp_path,
    )
    app = create_app(settings)
    try:
        app.send_task("afirgen_tasks.cleanup.x", priority=8)
        with app.connection_for_read() as conn:
            message = conn.SimpleQueue("cleanup", no_ack=True).get(timeout=2)
        assert message.properties["priority"] == 8
        assert message.headers[PRIORITY_HEADER] == 8
    finally:
        app.close()
        previous.set_current()
