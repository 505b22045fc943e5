"""The worker detail's pure parts: the limit validators, the boundary's new cleaners and the
action layer's refusals (nothing is sent: the action layer has no broker here)."""

from __future__ import annotations

import math

import pytest

from tui.actions import (
    Actions,
    AuditLog,
    ReadOnlyRefused,
    ValidationFailed,
    validate_rate_limit,
    validate_time_limits,
)
from tui.sources.validate import (
    Tally,
    clean_conf_flags,
    clean_detail_stats,
    clean_inspect_tasks,
    clean_registered_replies,
    clean_scheduled_tasks,
)

H = "w1@box"
TASK = "afirgen_tasks.cleanup.cleanup_temp_files"


@pytest.mark.parametrize("text", ["10/m", "5/s", "100/h", "2.5", " 1/m "])
def test_rate_limits_celery_reads(text: str) -> None:
    assert validate_rate_limit(text) == text.strip()


@pytest.mark.parametrize("text", ["off", "OFF", "0", "none"])
def test_rate_limit_off_means_none(text: str) -> None:
    assert validate_rate_limit(text) is None


@pytest.mark.parametrize("text", ["10/x", "0/m", "-1/m", "abc", "10 /m", "", "1e3/m", "2000000/s"])
def test_bad_rate_limits_are_refused(text: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        validate_rate_limit(text)
    assert "10/m" in exc.value.errors["value"]


def test_time_limits() -> None:
    assert validate_time_limits("50,60") == (50.0, 60.0)
    assert validate_time_limits(" 1.5 2 ") == (1.5, 2.0)
    with pytest.raises(ValidationFailed, match="must be below the hard limit"):
        validate_time_limits("60,50")
    with pytest.raises(ValidationFailed, match="must be below the hard limit"):
        validate_time_limits("60,60")
    for bad in ("0,5", "5", "a,b", "1,2,3", "1,1e9", "nan,5", "-1,5", ""):
        with pytest.raises(ValidationFailed, match="two numbers of seconds"):
            validate_time_limits(bad)


def test_registered_strings_are_parsed_and_checked() -> None:
    tally = Tally()
    out = clean_registered_replies(
        {
            H: [
                f"{TASK} [rate_limit=10/m time_limit=60.0 soft_time_limit=50.0]",
                "afirgen_tasks.plain",
                "x [y] [rate_limit=1/s]",  # a name with brackets of its own: the last pair is info
                "z [exchange=e rate_limit=\x1b[2J]",  # only the shown fields, cleaned
                42,
                "\x1b",
            ],
            "bad\x07host": ["a"],
        },
        tally,
    )
    assert out == {
        H: [
            {"name": TASK, "rate_limit": "10/m", "time_limit": "60.0", "soft_time_limit": "50.0"},
            {"name": "afirgen_tasks.plain"},
            {"name": "x [y]", "rate_limit": "1/s"},
            {"name": "z", "rate_limit": "␛[2J"},
        ]
    }
    assert tally.invalid == 3  # the int, the control-character name, the bad hostname


def test_detail_stats_keep_checked_numbers_only() -> None:
    tally = Tally()
    reply = {
        H: {
            "pid": 7,
            "uptime": 61,
            "prefetch_count": 8,
            "pool": {"implementation": "celery.concurrency.prefork:TaskPool", "processes": [1, 2]},
            "rusage": {"utime": 1.5, "stime": 0, "maxrss": 1024, "minflt": 3},
            "broker": {"password": "secret"},
        },
        "w2@box": {"uptime": True, "prefetch_count": "N/A", "rusage": {"utime": math.nan}},
    }
    out = clean_detail_stats(reply, tally)
    assert out[H]["uptime"] == 61 and out[H]["prefetch_count"] == 8 and out[H]["pid"] == 7
    assert out[H]["rusage"] == {"utime": 1.5, "stime": 0.0, "maxrss": 1024}
    assert "broker" not in out[H]
    assert out["w2@box"] == {"rusage": {}}
    assert tally.cleaned >= 5  # uptime, prefetch, utime, stime, maxrss of w2


def test_scheduled_entries_are_flattened_with_their_eta() -> None:
    tally = Tally()
    out = clean_scheduled_tasks(
        {
            H: [
                {
                    "eta": "2030-01-01T00:00:00+00:00",
                    "priority": 6,
                    "request": {"id": "a", "name": TASK, "args": [1], "kwargs": {}},
                },
                {"eta": "x"},  # no request
                {"eta": 5, "request": {"id": "b"}},  # a bad eta is dropped, the task kept
            ]
        },
        tally,
    )
    assert out == {
        H: [
            {
                "id": "a",
                "name": TASK,
                "args": "[1]",
                "kwargs": "{}",
                "eta": "2030-01-01T00:00:00+00:00",
            },
            {"id": "b"},
        ]
    }
    assert tally.invalid == 1 and tally.cleaned == 1


def test_active_time_start_is_a_checked_timestamp() -> None:
    tally = Tally()
    out = clean_inspect_tasks(
        {H: [{"id": "a", "time_start": 1_700_000_000.5}, {"id": "b", "time_start": math.inf}]},
        tally,
    )
    assert out[H] == [{"id": "a", "time_start": 1_700_000_000.5}, {"id": "b"}]


def test_conf_passes_only_the_asked_booleans() -> None:
    tally = Tally()
    out = clean_conf_flags(
        {
            H: {"worker_pool_restarts": True, "broker_url": "redis://:pw@h"},
            "w2@box": {"worker_pool_restarts": "yes"},
        },
        tally,
        ("worker_pool_restarts",),
    )
    assert out == {H: {"worker_pool_restarts": True}, "w2@box": {}}
    assert tally.cleaned == 1


# ---- the action layer -------------------------------------------------------------------------
@pytest.fixture
def audit(tmp_path) -> AuditLog:
    return AuditLog(tmp_path / "audit.log")


def test_pool_restart_refused_when_off_is_audited_and_not_sent(audit: AuditLog) -> None:
    actions = Actions(None, audit)  # no broker: sending anything would fail
    out = actions.pool_restart(H, enabled=False)
    assert not out.ok
    assert f"pool restarts are off on {H}: start it with worker_pool_restarts=True" in out.message
    lines = audit.read(every_line=True)
    assert [(r["phase"], r["action"], r["ok"]) for r in lines] == [
        ("outcome", "pool_restart", False)
    ]


def test_limits_and_shutdown_are_validated_before_anything_is_written(audit: AuditLog) -> None:
    actions = Actions(None, audit)
    with pytest.raises(ValidationFailed, match="not registered"):
        actions.rate_limit(H, "afirgen_tasks.nope", "10/m", [TASK])
    with pytest.raises(ValidationFailed, match="10/m"):
        actions.rate_limit(H, TASK, "10/x", [TASK])
    with pytest.raises(ValidationFailed, match="below the hard"):
        actions.time_limit(H, TASK, "9,3", [TASK])
    with pytest.raises(ValidationFailed, match="type the worker name"):
        actions.shutdown(H, "w2@box")
    with pytest.raises(ValidationFailed, match="choose a queue"):
        actions.worker_consume(H, " ", True)
    assert audit.read(every_line=True) == []


def test_read_only_refuses_every_worker_command(audit: AuditLog) -> None:
    actions = Actions(None, audit, read_only=True)
    for call in (
        lambda: actions.worker_consume(H, "email", False),
        lambda: actions.rate_limit(H, TASK, "10/m", [TASK]),
        lambda: actions.time_limit(H, TASK, "5,6", [TASK]),
        lambda: actions.pool_restart(H, True),
        lambda: actions.shutdown(H, H),
    ):
        with pytest.raises(ReadOnlyRefused):
            call()
    assert [r["action"] for r in audit.read()] == [
        "cancel_consumer",
        "rate_limit",
        "time_limit",
        "pool_restart",
        "shutdown",
    ]
