"""Pure parts of ``afirgen-tui --check``: verdicts from replies, thresholds, scrubbing, budget."""

from __future__ import annotations

import ssl

from afirgen_tasks.settings import Settings
from tui.check import (
    FAIL,
    OK,
    WARN,
    Budget,
    Scrubber,
    _events_result,
    _queues_result,
    _workers_result,
    backlog_results,
    busy_result,
    format_line,
)
from tui.sources.queue_lengths import QueueLength, QueueSnapshot
from tui.sources.redis_conn import NotRedisError, redis_client, redis_db

QUEUES = ["default", "email", "reports"]


def settings(**overrides) -> Settings:
    return Settings(**overrides)


def snapshot(**waiting: int) -> QueueSnapshot:
    return QueueSnapshot(
        queues={q: QueueLength(q, n, dict.fromkeys(range(1, 11), 0)) for q, n in waiting.items()}
    )


def test_workers_below_minimum_fail_and_silent_bound_workers_warn():
    assert _workers_result([], 1, []).status == FAIL
    assert _workers_result([], 0, []).status == OK
    ok = _workers_result([{"a@h": {"ok": "pong"}}, {"b@h": {"ok": "pong"}}], 2, ["a@h", "b@h"])
    assert ok.status == OK and ok.value == 2 and ok.threshold == 2
    silent = _workers_result([{"a@h": {"ok": "pong"}}], 1, ["a@h", "b@h"])
    assert silent.status == WARN and "b@h" in silent.detail


def test_queues_without_consumer_are_named():
    replies = {"a@h": [{"name": "default"}, {"name": "email"}], "b@h": [{"name": "email"}]}
    result = _queues_result(replies, QUEUES)
    assert result.status == FAIL and result.detail.endswith("reports")
    assert result.value == {"default": 1, "email": 2, "reports": 0}
    replies["b@h"].append({"name": "reports"})
    assert _queues_result(replies, QUEUES).status == OK
    assert _queues_result(None, QUEUES).status == FAIL


def test_backlog_levels_and_per_queue_overrides():
    s = settings(
        check_backlog_warn=10,
        check_backlog_fail=100,
        check_queue_backlog_warn={"reports": 1},
        check_queue_backlog_fail={"reports": 5},
    )
    results = {
        r.name: r
        for r in backlog_results(snapshot(default=10, email=11, reports=6, cleanup=101), s)
    }
    assert results["backlog[default]"].status == OK  # at the threshold is not over it
    assert results["backlog[email]"].status == WARN
    assert results["backlog[reports]"].status == FAIL
    assert results["backlog[reports]"].threshold == {"warn": 1, "fail": 5}
    assert results["backlog[cleanup]"].status == FAIL and results["backlog[cleanup]"].value == 101


def test_busy_only_when_every_slot_is_busy_for_too_long():
    now = 10_000.0
    stats = {"a@h": {"pool": {"max-concurrency": 2}}, "b@h": {"pool": {"max-concurrency": 2}}}
    active = {
        "a@h": [{"time_start": now - 500}, {"time_start": now - 100}],  # all busy for 100 s
        "b@h": [{"time_start": now - 500}],  # one slot free
    }
    stuck = busy_result(stats, active, 60, now=now)
    assert stuck.status == FAIL and "a@h" in stuck.detail and "b@h" not in stuck.detail
    assert busy_result(stats, active, 200, now=now).status == OK
    assert busy_result({}, active, 60, now=now).status == OK  # no pool size: cannot tell


def test_events_warn_for_silent_workers():
    assert _events_result({"a@h", "b@h"}, ["a@h", "b@h"]).status == OK
    silent = _events_result({"a@h"}, ["a@h", "b@h"])
    assert silent.status == WARN and "b@h" in silent.detail and silent.value == 1
    assert _events_result(set(), []).status == WARN
    assert _events_result(set(), ["a@h"], error="boom").status == WARN


def test_scrubber_masks_urls_and_secrets():
    scrub = Scrubber(["s3cret"])
    text = scrub("cannot reach redis://:s3cret@host:6379/0 (auth s3cret failed)")
    assert "s3cret" not in text and "redis://:***@host:6379/0" in text


def test_budget_never_goes_negative_and_keeps_a_reserve():
    now = [0.0]
    budget = Budget(1.0, clock=lambda: now[0])
    assert 0.8 < budget.remaining() < 1.0
    now[0] = 5.0
    assert budget.remaining() == 0.0 and budget.socket_timeout() > 0


def test_format_line_is_one_line():
    from tui.check import CheckResult

    line = format_line(CheckResult("broker", OK, "a\nb"))
    assert "\n" not in line and line.startswith("OK    broker")


def test_redis_client_tls_options_and_timeouts():
    s = settings(
        tls_ca_certs="/ca.pem",
        tls_certfile="/c.pem",
        tls_keyfile="/k.pem",
        tls_cert_reqs="optional",
    )
    client = redis_client(
        "rediss://:pw@host:6380/3", s, socket_connect_timeout=0.5, socket_timeout=0.7
    )
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["ssl_ca_certs"] == "/ca.pem" and kwargs["ssl_certfile"] == "/c.pem"
    assert kwargs["ssl_keyfile"] == "/k.pem" and kwargs["ssl_cert_reqs"] == ssl.CERT_OPTIONAL
    assert kwargs["socket_connect_timeout"] == 0.5 and kwargs["socket_timeout"] == 0.7
    assert kwargs["db"] == 3
    plain = redis_client("redis://host/2", s).connection_pool.connection_kwargs
    assert "ssl_ca_certs" not in plain
    assert redis_db("redis://h:1/7") == 7 and redis_db("redis://h:1") == 0


def test_redis_client_refuses_amqp_without_leaking():
    try:
        redis_client("amqp://user:topsecret@host//")
    except NotRedisError as exc:
        assert "topsecret" not in str(exc)
    else:
        raise AssertionError("amqp URL accepted")


def test_a_hostile_worker_name_reaches_the_check_output_as_visible_text():
    """Worker replies are untrusted: an OSC 52 in a hostname must not write the clipboard."""
    from tui.check import OK, CheckResult, format_line

    line = format_line(
        CheckResult("workers", OK, "1 worker(s) answered ping: w1\x1b]52;c;SGFja2VkIQ==\x07@host")
    )
    assert "\x1b" not in line and "\x07" not in line
    assert "w1" in line and "@host" in line


def test_a_default_result_backend_is_named_as_the_default(tmp_path):
    """Operator review: --check --broker X printed 'OK backend redis://127.0.0.1:6379/1'
    as if the cluster named had answered, when that was only the built-in default."""
    from afirgen_tasks.settings import load_settings
    from tui.check import Budget, _check_backend

    (tmp_path / "c.toml").write_text("")
    settings = load_settings(
        tmp_path / "c.toml", celery_broker_url="memory://", celery_result_backend="disabled://"
    )
    assert "default" not in _check_backend(None, settings, Budget(1.0)).detail
    defaulted = load_settings(tmp_path / "c.toml", celery_broker_url="redis://127.0.0.1:1/0")
    result = _check_backend(None, defaulted, Budget(1.0))
    assert "(the default: CELERY_RESULT_BACKEND" in result.detail
