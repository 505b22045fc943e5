"""Forged events on a real Redis into a running receiver thread: every good event arrives,
every bad one is counted, and the receiver never leaves its capture loop (no reconnect)."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import pytest
from celery.events.event import get_exchange
from celery.utils.time import utcoffset

from tests.support.waiting import wait_until
from tui.sources.event_process import ProcessEventReceiver
from tui.sources.events import CONNECTED, EventReceiverThread
from tui.sources.redis_events import RedisEventReceiverThread

pytestmark = pytest.mark.integration

OSC52 = "\x1b]52;c;SGFja2VkIQ==\x07"


def event(etype: str, uuid: str, **extra: Any) -> dict[str, Any]:
    ev = {
        "type": etype,
        "uuid": uuid,
        "hostname": "gen1@boundary",
        "timestamp": time.time(),
        "utcoffset": utcoffset(),
        "pid": os.getpid(),
        "clock": 1,
        "name": "afirgen_tasks.cleanup.cleanup_temp_files",
        "queue": "cleanup",
        "priority": 5,
        "args": "()",
        "kwargs": "{}",
    }
    ev.update(extra)
    return ev


# kombu's receiver (any broker), the direct pub/sub reader, and the same in its own
# process (what the console uses on Redis)
RECEIVERS = pytest.mark.parametrize(
    "receiver_class",
    [EventReceiverThread, RedisEventReceiverThread, ProcessEventReceiver],
    ids=["kombu", "redis", "process"],
)


@RECEIVERS
def test_forged_events_are_counted_and_skipped_and_the_receiver_never_reconnects(
    afirgen_app, redis_client, receiver_class
):
    receiver = receiver_class(afirgen_app, buffer_size=10_000)
    receiver.start()
    try:
        wait_until(lambda: receiver.status.state == CONNECTED, 20, message="receiver connected")
        good: list[str] = []
        cleaned_uuids: dict[str, str] = {}
        with afirgen_app.connection_for_write() as conn:
            exchange = get_exchange(conn, name=afirgen_app.conf.event_exchange)
            producer = conn.Producer(exchange=exchange)
            topic = conn.default_channel._get_publish_topic(exchange.name, "task.sent")

            def publish(body: Any, **options: Any) -> None:
                options.setdefault("serializer", "json")
                producer.publish(body, routing_key="task.sent", exchange=exchange, **options)

            def send_good(n: int) -> None:
                for _ in range(n):
                    uuid = f"good-{len(good)}"
                    good.append(uuid)
                    publish(event("task-sent", uuid))

            bad = [
                # each: (what, how to send it, how many events it makes invalid)
                (
                    "timestamp 'now'",
                    lambda: publish(event("task-sent", "bad-now", timestamp="now")),
                    1,
                ),
                ("a JSON list body of non-events", lambda: publish([1, "x", None]), 3),
                (
                    "a dict without type",
                    lambda: publish({"uuid": "bad-notype", "hostname": "h@x"}),
                    1,
                ),
                (
                    "NaN timestamp",
                    lambda: publish(event("task-sent", "bad-nan", timestamp=math.nan)),
                    1,
                ),
                (
                    "-1e18 timestamp",
                    lambda: publish(event("task-sent", "bad-old", timestamp=-1e18)),
                    1,
                ),
                (
                    "hostname with OSC 2",
                    lambda: publish(event("task-sent", "bad-host", hostname="w\x1b]2;x\x07")),
                    1,
                ),
                (
                    "not JSON",
                    lambda: publish(
                        "{not json",
                        serializer=None,
                        content_type="application/json",
                        content_encoding="utf-8",
                    ),
                    1,
                ),
                (
                    "kombu type marker with garbage",
                    lambda: publish(
                        '{"__type__": "datetime", "__value__": "garbage"}',
                        serializer=None,
                        content_type="application/json",
                        content_encoding="utf-8",
                    ),
                    1,
                ),
                (
                    "a content type not accepted",
                    lambda: publish(
                        b"junk",
                        serializer=None,
                        content_type="application/x-python-serialize",
                        content_encoding="binary",
                    ),
                    1,
                ),
                (
                    "an envelope without properties",
                    lambda: redis_client.publish(topic, json.dumps({"body": "x"})),
                    1,
                ),
                (
                    "an envelope that is a list",
                    lambda: redis_client.publish(topic, json.dumps([1, 2])),
                    1,
                ),
            ]
            expected_invalid = 0
            for _what, send, n in bad:
                send_good(3)
                send()
                expected_invalid += n
            # cleaned, not skipped: these events arrive with the bad field dropped or made inert
            publish(event("task-sent", "clean-prio", priority=2**70))
            publish(event("task-sent", "clean-queue", queue=OSC52))
            publish(event("task-received", "clean-clock", clock="x"))
            cleaned_uuids = {
                "clean-prio": "priority",
                "clean-queue": "queue",
                "clean-clock": "clock",
            }
            # Celery's buffered form: a list of events, with one bad element
            good.append("good-in-list")
            publish([event("task-sent", "good-in-list"), {"type": 5}])
            expected_invalid += 1
            send_good(3)  # the last ones: everything before them has been handled

        seen: dict[str, dict[str, Any]] = {}

        def all_arrived() -> bool:
            for ev in receiver.drain(10_000):
                seen[ev.get("uuid", "")] = ev
            return all(u in seen for u in good) and all(u in seen for u in cleaned_uuids)

        wait_until(
            all_arrived,
            20,
            message=lambda: (
                f"good events missing: {sorted(set(good) - set(seen))[:10]}; "
                f"tally {receiver.tally!r} {receiver.tally.reasons}"
            ),
        )
        assert not any(u.startswith("bad-") for u in seen), sorted(
            u for u in seen if u.startswith("bad-")
        )
        assert receiver.invalid == expected_invalid, receiver.tally.reasons
        assert receiver.cleaned == 3, receiver.tally.reasons
        assert "priority" not in seen["clean-prio"]
        assert seen["clean-queue"]["queue"] == "␛]52;c;SGFja2VkIQ==␇"
        assert isinstance(seen["clean-clock"]["clock"], int)
        assert receiver.received == len(good) + len(cleaned_uuids)
        assert receiver.status.state == CONNECTED and receiver.status.connects == 1, receiver.status
    finally:
        receiver.stop()
    assert not receiver.is_alive()
