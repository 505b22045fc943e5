"""Forged ``worker-heartbeat`` events on a real Redis against real ``celery worker`` processes.

Anyone who can publish to the broker can publish on Celery's event exchange.  Celery's
gossip bootstep feeds every other worker's heartbeat into ``events.State``, where a
timestamp of ``"x"`` raises ``ValueError`` out of the consumer: "Unrecoverable error" and
the worker exits (issue 12, item 9).  AFIRGen workers therefore start without gossip by
default (``[celery] worker_gossip = false``); these tests start workers WITHOUT the
``--without-gossip`` flag the test harness normally adds, so what they prove is the app's
own default.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from celery import Celery
from kombu import Producer

from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.integration

#: Each body is published on the event exchange with the heartbeat routing key.
HOSTILE_HEARTBEATS: list[Any] = [
    {"type": "worker-heartbeat", "hostname": "forged@evil.example", "timestamp": "x", "freq": 2.0},
    {
        "type": "worker-heartbeat",
        "hostname": "forged@evil.example",
        "timestamp": float("nan"),
        "freq": 2.0,
    },
    {
        "type": "worker-heartbeat",
        "hostname": "forged@evil.example",
        "timestamp": 1e308 * 10,
        "freq": 2.0,
    },
    {"type": "worker-heartbeat", "hostname": "forged@evil.example", "timestamp": 1.0, "freq": "y"},
    {"type": "worker-heartbeat", "timestamp": 1.0},  # no hostname
    ["worker-heartbeat", "x"],  # not even a dict
]


def publish_hostile_heartbeats(app: Celery) -> None:
    """Publish every :data:`HOSTILE_HEARTBEATS` body once, as a worker's heartbeat would travel."""
    with app.connection_for_write() as conn:
        dispatcher = app.events.Dispatcher(conn, hostname="forged@evil.example", enabled=True)
        producer = Producer(conn)
        for body in HOSTILE_HEARTBEATS:
            producer.publish(
                body,
                exchange=dispatcher.exchange.name,
                routing_key="worker.heartbeat",
                declare=[dispatcher.exchange],
                serializer="json",
                headers={"hostname": "forged@evil.example"}
                if isinstance(body, dict) and "hostname" in body
                else {},
            )
        dispatcher.close()


def app_default_worker(worker_factory, **kwargs: Any) -> WorkerProcess:
    """A started worker whose command line does not choose gossip either way."""
    worker = worker_factory(start=False, **kwargs)
    worker.feature_flags = ("--without-mingle",)
    assert not any("gossip" in arg for arg in worker.argv), worker.argv
    return worker.start().wait_ready()


def test_forged_heartbeats_leave_default_workers_running(afirgen_app, afirgen_env, worker_factory):
    survivor = app_default_worker(worker_factory, queues=("email",))
    # The same hostile traffic kills a worker with gossip on: proof that it reached the
    # workers (a test that publishes into the void would pass as well).
    gossiping = app_default_worker(
        worker_factory, queues=("email",), env={**afirgen_env, "CELERY_WORKER_GOSSIP": "true"}
    )

    def gossiping_worker_died() -> bool:
        publish_hostile_heartbeats(afirgen_app)  # again until it lands: fanout is not queued
        return not gossiping.is_alive()

    wait_until(
        gossiping_worker_died,
        timeout=30,
        interval=0.2,
        message=lambda: f"the gossiping worker survived; log:\n{gossiping.log_tail()}",
    )
    assert "Unrecoverable error" in gossiping.log_text()

    for _ in range(5):
        publish_hostile_heartbeats(afirgen_app)
    assert survivor.is_alive(), survivor.log_tail()
    assert survivor.ping(timeout=2.0), survivor.log_tail()
    subject = f"still here {uuid.uuid4().hex[:8]}"
    res = afirgen_app.send_task(
        "afirgen_tasks.email.send_notification_email", args=("officer@example.org", subject, "body")
    )
    assert res.get(timeout=30)["delivery"] == "outbox"
    assert res.state == "SUCCESS"
    assert survivor.is_alive()
    assert "Unrecoverable error" not in survivor.log_text()


def test_gossip_setting_turns_gossip_back_on(afirgen_env, worker_factory):
    # CELERY_WORKER_GOSSIP=true is Celery's default behaviour: the worker logs the Gossip step
    worker = app_default_worker(
        worker_factory, env={**afirgen_env, "CELERY_WORKER_GOSSIP": "true"}, loglevel="debug"
    )
    wait_until(
        lambda: "Starting Gossip" in worker.log_text(),
        timeout=10,
        message=lambda: worker.log_tail(),
    )
    quiet = app_default_worker(worker_factory, loglevel="debug")
    wait_until(
        lambda: "Starting Heart" in quiet.log_text(), timeout=10, message=lambda: quiet.log_tail()
    )
    assert "Starting Gossip" not in quiet.log_text()
