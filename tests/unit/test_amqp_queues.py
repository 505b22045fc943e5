"""RabbitMQ parsing and derivation, no broker: the management API's address and credentials
from the broker URL (or the override), its answer cleaned at the trust boundary, plumbing
queues left out, record queue names, the override's password treated as a secret."""

from __future__ import annotations

import pytest

from afirgen_tasks.settings import SettingsError, load_settings
from tui.sources.amqp_queues import (
    MAX_COUNT,
    AmqpQueuePoller,
    ManagedQueue,
    ManagementUnreachable,
    is_amqp_url,
    is_internal_queue,
    management_endpoint,
    parse_management_queues,
)
from tui.sources.pause_records import record_queue_name
from tui.sources.validate import Tally


@pytest.mark.parametrize(
    ("broker", "base", "user", "password", "vhost"),
    [
        ("amqp://guest:guest@127.0.0.1:5672//", "http://127.0.0.1:15672", "guest", "guest", "/"),
        ("amqp://localhost", "http://127.0.0.1:15672", "guest", "guest", "/"),
        ("amqp://u:p%40x@rabbit:5673/ops%2Fq", "http://rabbit:15672", "u", "p@x", "ops/q"),
        ("amqps://u:pw@rabbit.example/v1", "https://rabbit.example:15671", "u", "pw", "v1"),
        ("pyamqp://u@[::1]:5672/v", "http://[::1]:15672", "u", "", "v"),
        ("amqp://a:b@h1//;amqp://a:b@h2//", "http://h1:15672", "a", "b", "/"),
    ],
)
def test_management_endpoint_is_derived_from_the_broker_url(broker, base, user, password, vhost):
    ep = management_endpoint(broker)
    assert (ep.base, ep.user, ep.password, ep.vhost) == (base, user, password, vhost)
    assert "@" not in ep.shown and "password" not in repr(ep)  # never shown, never logged


def test_the_override_sets_the_address_and_its_credentials_win():
    broker = "amqp://app:app-pw@rabbit:5672/prod"
    ep = management_endpoint(broker, "https://mon:mon%2Fpw@mgmt.internal:8443/rabbit/")
    assert ep.base == "https://mgmt.internal:8443/rabbit"
    assert (ep.user, ep.password, ep.vhost) == ("mon", "mon/pw", "prod")
    assert ep.queues_url().startswith("https://mgmt.internal:8443/rabbit/api/queues/prod?")
    # no credentials in the override: the broker's
    ep = management_endpoint(broker, "http://mgmt.internal:15672")
    assert (ep.user, ep.password) == ("app", "app-pw")


def test_the_vhost_is_quoted_whole_in_the_api_path():
    assert "/api/queues/%2F?" in management_endpoint("amqp://h//").queues_url()
    assert "/api/queues/a%2Fb?" in management_endpoint("amqp://h/a%2Fb").queues_url()


def test_management_answer_is_cleaned_at_the_trust_boundary():
    tally = Tally()
    payload = [
        {"name": "email", "messages_ready": 3, "messages_unacknowledged": 2, "consumers": 1},
        {"name": "bad\x1b[31m", "messages_ready": 1},
        {"name": 7},
        "not a dict",
        {"name": "reports", "messages_ready": -1, "messages_unacknowledged": True},
        {"name": "huge", "messages_unacknowledged": MAX_COUNT + 1},
        {"name": "idle"},  # a queue the stats have not reached yet
    ]
    out = parse_management_queues(payload, tally)
    assert out["email"] == ManagedQueue("email", 3, 2, 1)
    assert out["reports"] == ManagedQueue("reports", None, None, None)  # unknown, never 0
    assert out["huge"].unacked is None and out["idle"] == ManagedQueue("idle", None, None, None)
    assert set(out) == {"email", "reports", "huge", "idle"}
    assert tally.invalid == 3 and tally.cleaned == 2
    assert parse_management_queues({"error": "x"}, tally) == {}


@pytest.mark.parametrize(
    ("name", "internal"),
    [
        ("email", False),
        ("celeryev.1234", True),
        ("celery@w1.celery.pidbox", True),
        ("5f0c-reply.reply.celery.pidbox", True),
        ("afirgen.paused.email", True),
        ("amq.gen-abc", True),
        ("reports.pidbox.archive", False),
    ],
)
def test_plumbing_queues_are_left_out_of_the_pane(name, internal):
    assert is_internal_queue(name) is internal


def test_amqp_urls_are_recognised():
    assert is_amqp_url("amqp://h//") and is_amqp_url("AMQPS://h/v") and is_amqp_url("pyamqp://h")
    assert not is_amqp_url("redis://h") and not is_amqp_url("") and not is_amqp_url(None)


def test_a_record_queue_name_fits_amqps_255_bytes():
    assert record_queue_name("email") == "afirgen.paused.email"
    long = "q" * 250
    name = record_queue_name(long)
    assert len(name.encode()) <= 255 and name != record_queue_name("r" * 250)


class _Unreachable:
    def __init__(self):
        self.asked = 0
        self.endpoint = management_endpoint("amqp://h//", "http://127.0.0.1:9")

    def queues(self, tally=None):
        self.asked += 1
        raise ManagementUnreachable("[Errno 111] Connection refused")


class _Declarer:
    def __init__(self, answers):
        self.answers = answers
        self.commands = 0

    def declare(self, name):
        self.commands += 1
        return self.answers.get(name)

    def close(self):
        pass


def test_the_poller_marks_bands_unknown_and_asks_a_dead_api_again_only_after_a_while():
    now = [0.0]
    management = _Unreachable()
    poller = AmqpQueuePoller(lambda: None, ["email", "gone"], management, clock=lambda: now[0])
    poller.declarer = _Declarer({"email": (5, 2)})  # type: ignore[assignment]
    snap = poller.poll()
    email = snap.queues["email"]
    assert (email.waiting, email.consumers, email.reserved) == (5, 2, None)
    assert email.by_priority == {} and not email.bands_known and email.declared
    assert not snap.queues["gone"].declared and snap.queues["gone"].consumers == 0
    assert "not reachable at http://127.0.0.1:9" in snap.notice
    poller.poll()
    now[0] = 31.0
    poller.poll()
    assert management.asked == 2  # once, then again after MANAGEMENT_RETRY_S
    assert "not reachable" in poller.poll().notice  # the notice stands between asks


def test_the_management_password_is_a_secret_and_the_url_is_checked(tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text('[rabbitmq]\nmanagement_url = "http://mon:s3cr3t-mgmt@h:15672"\n')
    for name in ("CELERY_BROKER_URL", "AFIRGEN_RABBITMQ_MANAGEMENT_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(config)
    assert "s3cr3t-mgmt" in settings.secrets()
    config.write_text('[rabbitmq]\nmanagement_url = "ftp://h"\n')
    with pytest.raises(SettingsError):
        load_settings(config)
