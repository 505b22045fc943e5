"""The queue-length poller: key layout, discovery, reserved counts, one round trip per poll.

Fast tests run on fakeredis; the ``real_*`` tests publish through a real Celery app into
this test's Redis db (``afirgen_app`` / ``redis_client`` fixtures) and read kombu's own keys.
"""

from __future__ import annotations

import json

import fakeredis
import pytest
import redis

from afirgen_tasks.priority import REDIS_PRIORITY_STEPS
from tui.sources.queue_lengths import (
    NOT_AVAILABLE,
    QueueLengthPoller,
    make_queue_poller,
    parse_binding_member,
    parse_unacked_route,
    pidbox_hostnames,
    transport_layout,
)

QUEUES = ("default", "email", "reports", "analytics", "cleanup")


class Counting:
    """Counts what a redis client sends: single commands and pipeline executions."""

    def __init__(self, client: redis.Redis) -> None:
        self.commands = 0
        self.pipelines = 0
        self.pipelined_commands = 0
        original_execute = client.execute_command
        original_pipeline = client.pipeline

        def execute_command(*args, **kwargs):
            self.commands += 1
            return original_execute(*args, **kwargs)

        def pipeline(*args, **kwargs):
            pipe = original_pipeline(*args, **kwargs)
            original = pipe.execute

            def execute(*a, **k):
                self.pipelines += 1
                self.pipelined_commands += len(pipe.command_stack)
                return original(*a, **k)

            pipe.execute = execute
            return pipe

        client.execute_command = execute_command
        client.pipeline = pipeline

    @property
    def round_trips(self) -> int:
        return self.commands + self.pipelines


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def unacked_value(queue: str, body: str = "x") -> str:
    message = {"body": body, "headers": {"note": f'tricky ", "{queue}", "no"]'}, "properties": {}}
    return json.dumps([message, queue, queue])


@pytest.fixture
def fake() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def make(client, *, keyprefix: str = "", clock=None, **kwargs) -> QueueLengthPoller:
    return QueueLengthPoller(
        client, QUEUES, REDIS_PRIORITY_STEPS, ":", keyprefix, clock=clock or FakeClock(), **kwargs
    )


# ---- parsing ---------------------------------------------------------------------------


def test_binding_member_plain_and_ambiguous_separator():
    assert parse_binding_member(b"email::email", ":") == ("email", "", "email")
    # a queue name holding the separator: the direct binding (rk == queue) resolves it
    assert parse_binding_member("a:b::a:b", ":") == ("a:b", "", "a:b")
    assert parse_binding_member("::w1@h.celery.pidbox", ":") == ("", "", "w1@h.celery.pidbox")
    assert parse_binding_member("rk\x06\x16\x06\x16q", "\x06\x16") == ("rk", "", "q")


def test_unacked_route_reads_the_tail_even_with_a_tricky_body():
    assert parse_unacked_route(unacked_value("email").encode()) == ("email", "email")
    big = json.dumps([{"body": "y" * 5000}, "reports", "reports"])
    assert parse_unacked_route(big) == ("reports", "reports")
    assert parse_unacked_route(json.dumps([{}, None, "q"])) == ("", "q")
    assert parse_unacked_route(b"not json") is None


# ---- polling on fakeredis --------------------------------------------------------------


def test_bands_map_wire_steps_to_operator_priority(fake):
    fake.rpush("email", "a")  # wire 0 = operator 10
    fake.rpush("email:9", "b", "c")  # wire 9 = operator 1
    fake.rpush("email:5", "d")  # wire 5 = operator 5
    fake.rpush("default:3", *["e"] * 4)  # wire 3 = operator 7
    snap = make(fake).poll()
    email = snap.queues["email"]
    assert email.waiting == 4
    assert email.by_priority[10] == 1 and email.by_priority[1] == 2 and email.by_priority[5] == 1
    assert sorted(email.by_priority) == list(range(1, 11))
    assert snap.queues["default"].by_priority[7] == 4
    assert snap.total_waiting == 8
    assert snap.available and snap.duration >= 0 and snap.taken_at > 0


def test_global_keyprefix_is_honoured(fake):
    fake.rpush("pfx:email:2", "a")
    fake.rpush("email:2", "not ours")
    fake.sadd("pfx:_kombu.binding.extra", "extra::extra")
    fake.sadd("_kombu.binding.other", "other::other")
    fake.hset("pfx:unacked", "t1", unacked_value("email"))
    poller = make(fake, keyprefix="pfx:")
    snap = poller.poll()
    assert snap.queues["email"].waiting == 1 and snap.queues["email"].by_priority[8] == 1
    assert snap.queues["email"].reserved == 1 and snap.unacked == 1
    assert "extra" in snap.queues and "other" not in snap.queues


def test_discovery_adds_bound_queues_and_skips_celery_internals(fake):
    fake.sadd("_kombu.binding.email", "email::email")
    fake.sadd("_kombu.binding.extra", "extra::extra")
    fake.sadd("_kombu.binding.celery.pidbox", "::w1@h.celery.pidbox")
    fake.sadd("_kombu.binding.reply.celery.pidbox", "abc::abc.reply.celery.pidbox")
    fake.sadd("_kombu.binding.celeryev", "worker.#::celeryev.1234")
    fake.sadd("_kombu.binding_permanent.email", "email::email")
    poller = make(fake)
    assert poller.discover() == [*QUEUES, "extra"]


def test_discovery_uses_scan_never_keys(fake, monkeypatch):
    def no_keys(*args, **kwargs):
        raise AssertionError("KEYS blocks Redis; use SCAN")

    monkeypatch.setattr(fake, "keys", no_keys)
    for i in range(50):
        fake.sadd(f"_kombu.binding.q{i}", f"q{i}::q{i}")
    assert len(make(fake).discover()) == len(QUEUES) + 50


def test_one_round_trip_per_poll_and_rare_discovery(fake):
    counting = Counting(fake)
    clock = FakeClock()
    poller = make(fake, clock=clock, discover_interval=10.0)
    poller.poll()  # first poll discovers (SCAN + one pipelined SMEMBERS, or just SCAN)
    before = counting.round_trips, poller.round_trips
    for _ in range(5):
        clock.now += 1
        poller.poll()
    assert counting.round_trips - before[0] == 5
    assert counting.commands == 1  # the single SCAN of the first poll; never again
    assert poller.round_trips - before[1] == 5
    # every LLEN for 5 queues x 10 steps, HLEN and HVALS/HSCAN, all in that one pipeline
    assert counting.pipelined_commands >= 5 * (5 * 10 + 2)
    clock.now += 10
    poller.poll()
    assert counting.commands == 2  # discovery again after the interval


def test_slow_discovery_runs_less_often(fake, monkeypatch):
    """A keyspace that takes 0.5 s to scan is scanned every 25 s, not every 10 s."""
    clock = FakeClock()
    scans: list[float] = []
    real_scan = fake.scan

    def slow_scan(*args, **kwargs):
        scans.append(clock.now)
        clock.now += 0.5
        return real_scan(*args, **kwargs)

    monkeypatch.setattr(fake, "scan", slow_scan)
    poller = make(fake, clock=clock, discover_interval=10.0)
    poller.poll()
    assert len(scans) == 1 and poller.next_discovery_in() == pytest.approx(25.0)
    clock.now += 11
    poller.poll()
    assert len(scans) == 1
    clock.now += 15
    poller.poll()
    assert len(scans) == 2


def test_reserved_counted_per_queue_from_unacked_hash(fake):
    fake.sadd("_kombu.binding.email", "email::email")
    for i in range(3):
        fake.hset("unacked", f"e{i}", unacked_value("email"))
    fake.hset("unacked", "r0", unacked_value("reports"))
    fake.zadd("unacked_index", {"e0": 1.0})
    poller = make(fake)
    first = poller.poll()  # first read is a capped HSCAN
    second = poller.poll()  # then HVALS, the hash being small
    for snap in (first, second):
        assert snap.unacked == 4 and snap.reserved_exact
        assert snap.queues["email"].reserved == 3 and snap.queues["reports"].reserved == 1
        assert snap.queues["email"].waiting == 0


def test_reserved_work_is_capped_on_a_huge_hash(fake):
    for i in range(300):
        fake.hset("unacked", f"t{i}", unacked_value("email" if i % 3 else "reports"))
    poller = make(fake, reserved_cap=30)
    snap = poller.poll()
    snap = poller.poll()
    assert snap.unacked == 300
    assert not snap.reserved_exact
    total = snap.queues["email"].reserved + snap.queues["reports"].reserved
    assert 270 <= total <= 330  # scaled from a sample of about 30


def test_wrong_type_key_does_not_break_the_poll(fake):
    fake.set("email:4", "a string, not a list")
    fake.rpush("email", "a")
    snap = make(fake).poll()
    assert snap.queues["email"].waiting == 1


def test_not_available_on_amqp():
    class App:
        class conf:
            task_queues = ()

    poller = make_queue_poller(
        App(), broker_url="amqp://guest:pw@localhost//", configured_queues=QUEUES
    )
    snap = poller.poll()
    assert not snap.available and NOT_AVAILABLE in snap.error and "amqp" in snap.error
    assert poller.queues == list(QUEUES) and poller.discover() == list(QUEUES)


def test_pidbox_hostnames(fake):
    fake.sadd("_kombu.binding.celery.pidbox", "::w1@h.celery.pidbox", "::w2@h.celery.pidbox")
    assert pidbox_hostnames(fake, ":") == ["w1@h", "w2@h"]


# ---- against the real broker -----------------------------------------------------------


def test_layout_is_read_from_the_app_conf(afirgen_app):
    layout = transport_layout(afirgen_app)
    opts = afirgen_app.conf.broker_transport_options
    assert layout["priority_steps"] == list(opts["priority_steps"]) == list(range(10))
    assert layout["sep"] == opts["sep"] == ":"
    assert layout["keyprefix"] == "" and layout["unacked_key"] == "unacked"


def test_real_publish_lands_in_the_right_bands(afirgen_app, afirgen_settings, redis_client):
    sent = {10: 2, 7: 1, 5: 3, 1: 4}
    for priority, n in sent.items():
        for _ in range(n):
            afirgen_app.send_task("afirgen_tasks.email.probe", queue="email", priority=priority)
    afirgen_app.send_task("afirgen_tasks.reports.probe", queue="reports", priority=9)

    # kombu names the queues in its binding sets, joined with our ':' separator.  Declared
    # here: a publish skips a queue kombu's declaration cache says is declared, and in full
    # runs (never alone) the set was empty at this point.
    with afirgen_app.connection_for_write() as conn:
        afirgen_app.amqp.queues["email"](conn.default_channel).declare()
    assert redis_client.smembers("_kombu.binding.email") == {b"email::email"}

    poller = make_queue_poller(afirgen_app, settings=afirgen_settings)
    counting = Counting(poller.client)
    snap = poller.poll()
    email = snap.queues["email"]
    assert email.waiting == 10
    assert {p: c for p, c in email.by_priority.items() if c} == sent
    assert snap.queues["reports"].by_priority[9] == 1 and snap.queues["reports"].waiting == 1
    assert snap.queues["default"].waiting == 0

    before = counting.round_trips
    again = poller.poll()
    assert counting.round_trips - before == 1
    assert again.queues["email"].by_priority == email.by_priority


def test_real_reserved_message_counts_as_reserved(afirgen_app, afirgen_settings):
    afirgen_app.send_task("afirgen_tasks.email.probe", queue="email", priority=3)
    afirgen_app.send_task("afirgen_tasks.email.probe", queue="email", priority=3)
    with afirgen_app.connection_for_write() as conn:
        channel = conn.channel()
        message = channel.basic_get("email", no_ack=False)  # reserved, not acked: in `unacked`
        assert message is not None
        poller = make_queue_poller(afirgen_app, settings=afirgen_settings)
        snap = poller.poll()
        assert snap.unacked == 1 and snap.reserved_exact
        assert snap.queues["email"].reserved == 1
        assert snap.queues["email"].waiting == 1
        channel.basic_ack(message.delivery_tag)
    assert poller.poll().queues["email"].reserved == 0


def test_forged_bindings_cannot_make_the_poller_poll_thousands_of_queues(
    afirgen_app, afirgen_settings, redis_client
):
    """Anyone who can write to the broker can add binding members (attacker review): the
    queues found beyond the configured ones are capped, counted and said, never polled."""
    from tui.sources.queue_lengths import MAX_DISCOVERED_QUEUES

    forged = [f"evil{i:05d}::evil{i:05d}".encode() for i in range(MAX_DISCOVERED_QUEUES + 300)]
    redis_client.sadd("_kombu.binding.evil", *forged)
    poller = make_queue_poller(afirgen_app, settings=afirgen_settings)
    counting = Counting(poller.client)
    snap = poller.poll()
    extra = [name for name in snap.queues if name.startswith("evil")]
    assert len(extra) == MAX_DISCOVERED_QUEUES
    assert "default" in snap.queues and "email" in snap.queues  # the configured ones stay
    assert "300 more queue(s)" in snap.notice
    before = counting.pipelined_commands
    poller.poll()
    # one LLEN per queue and priority step, bounded by the cap (plus the unacked reads)
    assert counting.pipelined_commands - before <= (MAX_DISCOVERED_QUEUES + 5) * 10 + 5
