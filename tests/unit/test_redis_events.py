"""The direct Redis event reader's pieces: kombu's channel names, envelope decoding, the
choice of receiver per broker URL."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery

from afirgen_tasks.settings import Settings
from tui.sources.event_process import ProcessEventReceiver
from tui.sources.events import EventReceiverThread
from tui.sources.redis_events import (
    MAX_MESSAGE_BYTES,
    MessageDecoder,
    RedisEventReceiverThread,
    event_channel_pattern,
    make_event_receiver,
)
from tui.sources.validate import Tally


def envelope(payload: Any, encoding: str | None = "base64", **over: Any) -> bytes:
    text = json.dumps(payload)
    env: dict[str, Any] = {
        "body": base64.b64encode(text.encode()).decode() if encoding == "base64" else text,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"hostname": "w@h"},
        "properties": {"body_encoding": encoding, "delivery_tag": "x", "delivery_info": {}},
    }
    env.update(over)
    return json.dumps(env).encode()


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({}, "/3.celeryev/*"),
        ({"fanout_patterns": False}, "/3.celeryev"),
        ({"fanout_prefix": False}, "celeryev/*"),
        ({"fanout_prefix": "x[1]*"}, "x\\[1\\]\\*celeryev/*"),
    ],
)
def test_channel_pattern_is_the_one_kombu_publishes_to(options, pattern):
    app = Celery("t", broker="redis://h/3", set_as_current=False)
    app.conf.broker_transport_options = options
    assert event_channel_pattern(app, 3) == pattern


def test_kombu_publish_topic_matches_the_pattern():
    """kombu's own topic for an event (Channel._get_publish_topic) is what we subscribe to."""
    from kombu.transport.redis import Channel

    app = Celery("t", broker="redis://h/0", set_as_current=False)
    fake = SimpleNamespace(keyprefix_fanout="/0.", fanout_patterns=True)
    topic = Channel._get_publish_topic(fake, "celeryev", "task.succeeded")
    assert topic == "/0.celeryev/task.succeeded"
    assert event_channel_pattern(app, 0) == "/0.celeryev/*"


def test_decoder_reads_base64_and_plain_bodies():
    tally = Tally()
    dec = MessageDecoder(tally)
    ev = {"type": "task-sent", "uuid": "u"}
    assert dec.decode(envelope(ev)) == ev
    assert dec.decode(envelope([ev, ev], encoding=None)) == [ev, ev]
    assert tally.invalid == 0


@pytest.mark.parametrize(
    "data",
    [
        b"{not json",
        b"[1, 2]",
        json.dumps({"body": "x"}).encode(),  # no properties
        envelope({"type": "x"}, **{"content-type": "application/x-python-serialize"}),
        envelope({"type": "x"}, **{"content-encoding": "latin-1"}),
        envelope({"type": "x"}, **{"body": 5}),
        envelope({"type": "x"}, **{"body": "!!!not base64"}),
        envelope({"type": "x"}, **{"properties": {"body_encoding": "rot13"}}),
        envelope({"type": "x"}, **{"properties": []}),
        b'{"body": "' + base64.b64encode(b"\xff\xfe") + b'", "content-type": "application/json", '
        b'"properties": {"body_encoding": "base64"}}',
        b"[" * 100_000 + b"]" * 100_000,
        b" " * (MAX_MESSAGE_BYTES + 1),
        "\udcff".encode("utf-8", "surrogatepass"),
    ],
)
def test_decoder_counts_and_skips_what_kombu_would_refuse(data):
    tally = Tally()
    assert MessageDecoder(tally).decode(data) is None
    assert tally.invalid == 1, tally.reasons


def _settings(url: str, reader: str | None) -> Settings:
    chosen: dict[str, Any] = {} if reader is None else {"console_event_reader": reader}
    if url.startswith("sentinel://"):
        chosen["sentinel_master_name"] = "mymaster"
    return Settings(celery_broker_url=url, celery_result_backend="redis://h/1", **chosen)


@pytest.mark.parametrize(
    ("url", "reader", "cls"),
    [
        ("redis://127.0.0.1:6390/2", None, ProcessEventReceiver),  # the default: auto
        ("redis://127.0.0.1:6390/2", "auto", ProcessEventReceiver),
        ("redis+socket:///tmp/redis.sock", "auto", ProcessEventReceiver),
        ("rediss://127.0.0.1:6390/2", "process", ProcessEventReceiver),
        ("sentinel://127.0.0.1:26379/0", "auto", ProcessEventReceiver),
        ("redis://127.0.0.1:6390/2", "kombu", EventReceiverThread),
        ("redis://127.0.0.1:6390/2", "redis", RedisEventReceiverThread),
        ("rediss://127.0.0.1:6390/2", "redis", RedisEventReceiverThread),
        ("sentinel://127.0.0.1:26379/0", "redis", RedisEventReceiverThread),
        ("amqp://guest@127.0.0.1//", "redis", EventReceiverThread),
        ("amqp://guest@127.0.0.1//", None, EventReceiverThread),
        ("amqp://guest@127.0.0.1//", "process", EventReceiverThread),
    ],
)
def test_the_event_reader_setting_picks_the_receiver_and_amqp_keeps_kombu(url, reader, cls):
    app = Celery("t", broker=url, set_as_current=False)
    tally = Tally()
    receiver = make_event_receiver(app, _settings(url, reader), 100, tally=tally)
    assert type(receiver) is cls
    assert receiver.tally is tally and receiver.buffer_size == 100
    assert not receiver.is_alive()  # built, not started: nothing runs until start()
