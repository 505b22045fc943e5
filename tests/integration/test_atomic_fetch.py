"""afirgen_tasks.redis_transport against a real Redis: the fetch records the job atomically.

Each test drives kombu's own poller (``cycle.on_poll_start`` sends the fetch, ``drain_events``
reads replies), so the code under test is exactly what a worker runs.  The stock transport
is run through the same steps where that shows the window the atomic fetch closes.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.transport import redis as kombu_redis

from afirgen_tasks import redis_transport
from afirgen_tasks.redis_transport import WAKEUP_PREFIX, WAKEUP_TTL_MS
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

OURS = "afirgen_tasks.redis_transport:Transport"
STOCK = "kombu.transport.redis:Transport"
QUEUE = Queue("jobs", Exchange("jobs", type="direct"), routing_key="jobs")
OPTIONS = {"priority_steps": list(range(10)), "sep": ":", "visibility_timeout": 3600}


@pytest.fixture
def url(redis_server, redis_db: int) -> str:
    return redis_server.url(redis_db)


@pytest.fixture
def connections(url: str) -> Iterator[list[Connection]]:
    made: list[Connection] = []
    yield made
    for conn in made:
        conn.release()


def connect(made: list[Connection], url: str, transport: str = OURS, **options) -> Connection:
    conn = Connection(url, transport=transport, transport_options={**OPTIONS, **options})
    made.append(conn)
    return conn


def publish(conn: Connection, *bodies: dict, priority: int = 0) -> None:
    producer = Producer(conn)
    for body in bodies:
        producer.publish(
            body, exchange=QUEUE.exchange, routing_key="jobs", declare=[QUEUE], priority=priority
        )


def queued(client: redis.Redis) -> int:
    return sum(client.llen(k) for k in client.keys("jobs*"))


def send_fetch_and_die(conn: Connection, client: redis.Redis) -> None:
    """Have the consumer's poller send its fetch, wait until Redis ran it, never read the reply."""
    consumer = Consumer(conn, [QUEUE], callbacks=[lambda body, message: None])
    consumer.consume()
    conn.transport.cycle.on_poll_start()
    wait_until(lambda: queued(client) == 0, timeout=5, message="the fetch never reached Redis")
    # The worker is SIGKILLed here: its socket closes with the reply unread.
    conn.default_channel.client.connection.disconnect()


def test_a_job_fetched_by_a_killed_consumer_is_in_unacked(connections, url, redis_client) -> None:
    publish(connect(connections, url), {"n": 1})
    send_fetch_and_die(connect(connections, url), redis_client)

    assert redis_client.hlen("unacked") == 1 and redis_client.zcard("unacked_index") == 1
    payload, exchange, routing_key = json.loads(next(iter(redis_client.hvals("unacked"))))
    assert (exchange, routing_key) == ("jobs", "jobs")
    assert json.loads(base64.b64decode(payload["body"])) == {"n": 1}

    # The visibility sweep of any live consumer brings it back, as kombu restores any unacked job.
    survivor = connect(connections, url, visibility_timeout=0)
    survivor.default_channel.qos.restore_visible(num=10, interval=1)
    got: list[dict] = []
    with Consumer(
        survivor, [QUEUE], callbacks=[lambda body, message: (got.append(body), message.ack())]
    ):
        wait_until(
            lambda: _drain(survivor) or got, timeout=10, message="the restored job never came"
        )
    assert got == [{"n": 1}]
    assert redis_client.hlen("unacked") == 0 and redis_client.zcard("unacked_index") == 0


def test_stock_kombu_loses_that_job(connections, url, redis_client) -> None:
    """The same steps with kombu's BRPOP fetch: the job is nowhere.  This is the bug fixed."""
    publish(connect(connections, url, transport=STOCK), {"n": 1})
    send_fetch_and_die(connect(connections, url, transport=STOCK), redis_client)
    assert queued(redis_client) == 0 and redis_client.hlen("unacked") == 0


def test_delivered_job_is_recorded_once(connections, url, redis_client, monkeypatch) -> None:
    publish(connect(connections, url), {"n": 1}, {"n": 2})
    conn = connect(connections, url)
    seen: list[tuple[dict, int]] = []
    kombu_writes: list[str] = []
    stock_append = kombu_redis.QoS.append
    monkeypatch.setattr(
        kombu_redis.QoS,
        "append",
        lambda self, message, tag: (kombu_writes.append(tag), stock_append(self, message, tag)),
    )

    def on_message(body, message) -> None:
        # Recorded by the script before delivery.
        seen.append((body, redis_client.hlen("unacked")))
        message.ack()

    with Consumer(conn, [QUEUE], callbacks=[on_message]):
        wait_until(lambda: _drain(conn) or len(seen) == 2, timeout=10, message="jobs not delivered")
    assert seen == [({"n": 1}, 1), ({"n": 2}, 1)]
    assert kombu_writes == [], "kombu's QoS wrote a job the script had already recorded"
    assert redis_client.hlen("unacked") == 0 and redis_client.zcard("unacked_index") == 0


def test_priority_order_is_kept(connections, url, redis_client) -> None:
    pub = connect(connections, url)
    publish(pub, {"p": "low"}, priority=9)
    publish(pub, {"p": "high"}, priority=0)
    conn = connect(connections, url)
    got: list[str] = []
    with Consumer(
        conn, [QUEUE], callbacks=[lambda body, message: (got.append(body["p"]), message.ack())]
    ):
        wait_until(lambda: _drain(conn) or len(got) == 2, timeout=10, message="jobs not delivered")
    assert got == ["high", "low"]


def test_idle_consumer_wakes_on_publish_long_before_its_timeout(
    connections, url, redis_client
) -> None:
    conn = connect(connections, url)
    conn.transport.brpop_timeout = 30
    got: list[float] = []
    stop = threading.Event()
    with Consumer(
        conn,
        [QUEUE],
        callbacks=[lambda body, message: (got.append(time.monotonic()), message.ack())],
    ):
        channel = conn.default_channel

        def loop() -> None:
            while not stop.is_set() and not got:
                _drain(conn, 1)

        reader = threading.Thread(target=loop, daemon=True)
        reader.start()
        try:
            wait_until(
                lambda: channel._phase == "wait", timeout=10, message="consumer never went idle"
            )
            sent = time.monotonic()
            publish(connect(connections, url), {"n": 1})
            wait_until(lambda: got, timeout=10, message="an idle consumer did not wake for a job")
        finally:
            stop.set()
            reader.join(timeout=35)
    assert got[0] - sent < 10 < 30


def test_jobs_from_a_plain_kombu_producer_are_still_fetched(connections, url, redis_client) -> None:
    """No wake-up token: the idle wait's timeout (1 s) is the latency bound."""
    conn = connect(connections, url)
    got: list[dict] = []
    with Consumer(
        conn, [QUEUE], callbacks=[lambda body, message: (got.append(body), message.ack())]
    ):
        wait_until(
            lambda: _drain(conn, 0.2) or conn.default_channel._phase == "wait",
            timeout=10,
            message="consumer never went idle",
        )
        publish(connect(connections, url, transport=STOCK), {"n": 1})
        assert not redis_client.exists(WAKEUP_PREFIX + "jobs")
        wait_until(lambda: _drain(conn) or got, timeout=10, message="the job was never fetched")
    assert got == [{"n": 1}]


def test_no_ack_consumers_are_not_recorded(connections, url, redis_client) -> None:
    """A pidbox reply queue is consumed without acks; recording it would redeliver it later."""
    publish(connect(connections, url), {"n": 1})
    conn = connect(connections, url)
    got: list[dict] = []
    with Consumer(conn, [QUEUE], no_ack=True, callbacks=[lambda body, message: got.append(body)]):
        wait_until(lambda: _drain(conn) or got, timeout=10, message="job not delivered")
    assert got == [{"n": 1}]
    assert redis_client.hlen("unacked") == 0 and redis_client.zcard("unacked_index") == 0


def test_an_empty_fetch_clears_the_wakeup_tokens(connections, url, redis_client) -> None:
    publish(connect(connections, url), {"n": 1}, {"n": 2}, {"n": 3})
    assert redis_client.llen(WAKEUP_PREFIX + "jobs") == 3
    # Left alone (nobody consumes the queue any more) they expire.
    assert 0 < redis_client.pttl(WAKEUP_PREFIX + "jobs") <= WAKEUP_TTL_MS
    conn = connect(connections, url)
    got: list[dict] = []
    with Consumer(
        conn, [QUEUE], callbacks=[lambda body, message: (got.append(body), message.ack())]
    ):
        wait_until(
            lambda: _drain(conn) or (len(got) == 3 and conn.default_channel._phase == "wait"),
            timeout=10,
            message="consumer did not drain and go idle",
        )
    assert not redis_client.exists(WAKEUP_PREFIX + "jobs")


def test_closing_with_a_fetch_in_flight_puts_the_job_back(connections, url, redis_client) -> None:
    publish(connect(connections, url), {"n": 1})
    conn = connect(connections, url)
    Consumer(conn, [QUEUE], callbacks=[lambda body, message: None]).consume()
    conn.transport.cycle.on_poll_start()
    wait_until(
        lambda: queued(redis_client) == 0, timeout=5, message="the fetch never reached Redis"
    )
    conn.default_channel.close()
    assert queued(redis_client) == 1
    assert redis_client.hlen("unacked") == 0 and redis_client.zcard("unacked_index") == 0


def test_a_server_without_cjson_falls_back_to_brpop_and_loses_nothing(
    connections, url, redis_client, monkeypatch, caplog
) -> None:
    """The script fails before it pops anything, so the first job is not lost either."""
    broken = redis_transport.FETCH_SCRIPT.replace(
        "cjson.decode, cjson.encode", "nocjson.decode, nocjson.encode"
    )
    assert broken != redis_transport.FETCH_SCRIPT
    monkeypatch.setattr(redis_transport, "FETCH_SCRIPT", broken)
    publish(connect(connections, url), {"n": 1}, {"n": 2})
    conn = connect(connections, url)
    got: list[dict] = []
    with caplog.at_level(logging.WARNING, logger="afirgen_tasks.redis_transport"):
        with Consumer(
            conn, [QUEUE], callbacks=[lambda body, message: (got.append(body), message.ack())]
        ):
            wait_until(
                lambda: _drain(conn) or len(got) == 2, timeout=10, message=lambda: f"got only {got}"
            )
    assert got == [{"n": 1}, {"n": 2}]
    assert conn.default_channel.atomic_fetch is False
    assert "using BRPOP from now on" in caplog.text


def test_a_transient_error_is_raised_and_the_script_kept(
    connections, url, redis_client, monkeypatch
) -> None:
    """BUSY, READONLY, LOADING... are raised like kombu raises BRPOP's (Celery reconnects)."""
    monkeypatch.setattr(
        redis_transport, "FETCH_SCRIPT", "return redis.error_reply('BUSY simulated slow script')"
    )
    conn = connect(connections, url)
    with Consumer(conn, [QUEUE], callbacks=[lambda body, message: None]):
        with pytest.raises(redis.ResponseError, match="BUSY"):
            for _ in range(20):
                _drain(conn, 0.2)
    assert conn.default_channel.atomic_fetch is True


def test_closing_with_an_unrecorded_fetch_in_flight_puts_the_job_back(
    connections, url, redis_client
) -> None:
    """A no_ack consumer's job is in no unacked hash; closing must not drop it."""
    publish(connect(connections, url), {"n": 1})
    conn = connect(connections, url)
    Consumer(conn, [QUEUE], no_ack=True, callbacks=[lambda body, message: None]).consume()
    conn.transport.cycle.on_poll_start()
    wait_until(
        lambda: queued(redis_client) == 0, timeout=5, message="the fetch never reached Redis"
    )
    conn.default_channel.close()
    assert queued(redis_client) == 1 and redis_client.hlen("unacked") == 0


def late_reply(conn: Connection, client: redis.Redis, on_message) -> None:
    """Send the fetch, let Redis run it, and make its reply look read 2 s late."""
    Consumer(conn, [QUEUE], callbacks=[on_message]).consume()
    conn.transport.cycle.on_poll_start()
    wait_until(lambda: queued(client) == 0, timeout=5, message="the fetch never reached Redis")
    conn.default_channel._brpop_sent_at -= redis_transport.LATE_READ_S + 1


def test_a_reply_read_late_is_not_delivered_if_the_sweep_requeued_it(
    connections, url, redis_client, caplog
) -> None:
    publish(connect(connections, url), {"n": 1})
    conn = connect(connections, url)
    got: list[dict] = []
    late_reply(conn, redis_client, lambda body, message: (got.append(body), message.ack()))
    # Meanwhile another worker's sweep found it past the visibility timeout and requeued it.
    sweeper = connect(connections, url, visibility_timeout=0)
    sweeper.default_channel.qos.restore_visible(num=10, interval=1)
    assert queued(redis_client) == 1 and redis_client.hlen("unacked") == 0
    with caplog.at_level(logging.WARNING, logger="afirgen_tasks.redis_transport"):
        wait_until(
            lambda: _drain(conn) or (got and conn.default_channel._phase == "wait"),
            timeout=10,
            message="the requeued job was not delivered",
        )
    # Once: the requeued copy.  Without the check the late copy would have been delivered too.
    assert got == [{"n": 1}]
    assert "visibility sweep had requeued it" in caplog.text
    assert queued(redis_client) == 0 and redis_client.hlen("unacked") == 0


def test_a_reply_read_late_restarts_the_visibility_clock(connections, url, redis_client) -> None:
    publish(connect(connections, url), {"n": 1})
    conn = connect(connections, url)
    scores: list[float] = []

    def on_message(body, message) -> None:
        scores.append(redis_client.zscore("unacked_index", message.delivery_tag))
        message.ack()

    late_reply(conn, redis_client, on_message)
    fetched_at = redis_client.zrange("unacked_index", 0, -1, withscores=True)[0][1]
    time.sleep(0.05)  # a later "now" at the score's resolution
    wait_until(lambda: _drain(conn) or scores, timeout=10, message="the job was not delivered")
    assert scores[0] > fetched_at
    assert redis_client.hlen("unacked") == 0


def test_poll_error_reads_the_fetch_reply_with_the_right_parser(
    connections, url, redis_client
) -> None:
    publish(connect(connections, url), {"n": 1})
    conn = connect(connections, url)
    got: list[dict] = []
    Consumer(
        conn, [QUEUE], callbacks=[lambda body, message: (got.append(body), message.ack())]
    ).consume()
    conn.transport.cycle.on_poll_start()
    wait_until(
        lambda: queued(redis_client) == 0, timeout=5, message="the fetch never reached Redis"
    )
    conn.default_channel._poll_error("BRPOP")
    assert got == [{"n": 1}] and conn.default_channel._phase is None


def _drain(conn: Connection, timeout: float = 0.5) -> bool:
    try:
        conn.drain_events(timeout=timeout)
    except TimeoutError:
        pass
    return False
