"""The direct Redis event reader, as a thread and in its own process, on a real, private
redis-server: a flood arrives whole, a restart is seen (RECONNECTING with the next
attempt's time) and recovered from (connects grows, events flow again), and Redis cutting
off a subscriber that fell behind is a reconnect, not a dead receiver."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from afirgen_tasks.factory import create_app
from afirgen_tasks.settings import Settings
from tests.support.restartable_redis import RestartableRedis
from tests.support.waiting import wait_until
from tui.sources.event_process import ProcessEventReceiver
from tui.sources.events import CONNECTED, RECONNECTING
from tui.sources.redis_events import RedisEventReceiverThread

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def own_redis():
    server = RestartableRedis()
    server.start()
    yield server
    server.cleanup()


def flood(url: str, rate: int, seconds: float, *extra: str) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.flood",
            "--url",
            url,
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
            "--workers",
            "10",
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout)


def receiver_for(url: str, cls: type = RedisEventReceiverThread, **kwargs):
    app = create_app(Settings(celery_broker_url=url, celery_result_backend=url))
    return cls(app, url=url, **kwargs)


@pytest.mark.parametrize("cls", [RedisEventReceiverThread, ProcessEventReceiver])
def test_a_flood_arrives_whole_and_a_restart_is_recovered(own_redis, cls):
    url = own_redis.url(0)
    receiver = receiver_for(url, cls, buffer_size=100_000)
    receiver.start()
    try:
        wait_until(lambda: receiver.status.state == CONNECTED, 20, message="connected")
        first = flood(url, 4000, 1.0, "--group", "1")
        wait_until(
            lambda: receiver.received >= first["published"],
            20,
            message=lambda: f"{receiver.received} of {first['published']}",
        )
        assert receiver.received == first["published"] == receiver.buffered
        assert receiver.invalid == 0 and receiver.dropped == 0
        assert {e["type"] for e in receiver.drain(100_000)} >= {
            "worker-online",
            "task-sent",
            "task-received",
            "task-started",
            "task-succeeded",
        }

        own_redis.stop()
        wait_until(lambda: receiver.status.state == RECONNECTING, 10, message="reconnecting")
        status = receiver.status
        assert status.next_attempt_at is not None and status.next_attempt_at > status.since - 1
        assert status.error and status.connects == 1

        own_redis.start()
        wait_until(
            lambda: receiver.status.state == CONNECTED and receiver.status.connects == 2,
            15,
            message=lambda: f"connected again: {receiver.status}",
        )
        second = flood(url, 2000, 0.5)
        wait_until(
            lambda: receiver.received >= first["published"] + second["published"],
            20,
            message="events after the restart",
        )
        assert receiver.invalid == 0
    finally:
        receiver.stop()
    assert not receiver.is_alive() and receiver.status.state == "stopped"


def pubsub_clients(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return len(client.client_list(_type="pubsub"))
    finally:
        client.close()


@pytest.mark.parametrize("cls", [RedisEventReceiverThread, ProcessEventReceiver])
def test_redis_cutting_off_a_subscriber_that_fell_behind_is_a_reconnect(own_redis, cls):
    url = own_redis.url(0)
    import redis

    # a tiny pub/sub output buffer: Redis closes a subscriber as soon as 64 KB wait for it
    redis.Redis.from_url(url).config_set("client-output-buffer-limit", "pubsub 65536 0 0")
    receiver = receiver_for(url, cls, buffer_size=100_000)
    gate = threading.Event()
    if cls is RedisEventReceiverThread:
        process = receiver._process

        def stalled(data: bytes) -> None:  # a reader that stopped reading, until let go
            gate.wait(30)
            process(data)

        receiver._process = stalled  # type: ignore[method-assign]
    receiver.start()
    try:
        wait_until(lambda: receiver.status.state == CONNECTED, 20, message="connected")
        if cls is ProcessEventReceiver:
            os.kill(receiver.pid, signal.SIGSTOP)  # the whole reader process stops reading
        flood(url, 8000, 1.0, "--group", "1")
        wait_until(lambda: pubsub_clients(url) == 0, 20, message="Redis cut the subscriber off")
        gate.set()
        if cls is ProcessEventReceiver:
            os.kill(receiver.pid, signal.SIGCONT)
        wait_until(
            lambda: receiver.status.connects >= 2 and receiver.status.state == CONNECTED,
            20,
            message=lambda: f"reconnected after the cut: {receiver.status}",
        )
        before = receiver.received
        flood(url, 1000, 0.3)
        wait_until(lambda: receiver.received > before, 10, message="events after the cut")
    finally:
        gate.set()
        receiver.stop()
    assert not receiver.is_alive()
