"""The trust boundary (tui.sources.validate): one rule per test, on dict fixtures."""

from __future__ import annotations

import math
import sqlite3
import time
from typing import Any

import pytest

from tui.core import formatting
from tui.core.model import ClusterModel
from tui.history import HistoryStore, load_into_model
from tui.sources.validate import (
    MAX_KEY_CHARS,
    MAX_TEXT_CHARS,
    Boundary,
    EventValidator,
    Tally,
    clean_backend_meta,
    clean_history_row,
    clean_inspect_tasks,
    clean_queue_replies,
    clean_stats_replies,
    clean_text,
    is_key,
)

NOW = 1_750_000_000.0
OSC52 = "\x1b]52;c;SGFja2VkIQ==\x07"


def validator() -> EventValidator:
    return EventValidator(now=lambda: NOW)


def sent(**extra: Any) -> dict[str, Any]:
    ev = {
        "type": "task-sent",
        "uuid": "u-1",
        "hostname": "gen1@api",
        "timestamp": NOW - 5.0,
        "name": "afirgen_tasks.reports.generate_fir_pdf",
        "queue": "reports",
        "priority": 5,
        "args": "('FIR-1',)",
        "kwargs": "{}",
        "retries": 0,
        "clock": 12,
        "utcoffset": 0,
        "pid": 311,
    }
    ev.update(extra)
    return ev


def one(ev: Any, v: EventValidator | None = None) -> dict[str, Any] | None:
    return (v or validator()).validate(ev)


# ---- good events pass, unchanged ----------------------------------------------------------------
def test_a_typical_task_event_passes_with_its_fields_and_receive_time() -> None:
    v = validator()
    ev = sent()
    out = v.validate(ev)
    assert out is not None and out is not ev
    for key in (
        "type",
        "uuid",
        "hostname",
        "name",
        "queue",
        "priority",
        "args",
        "kwargs",
        "retries",
        "clock",
        "pid",
    ):
        assert out[key] == ev[key], key
    assert out["local_received"] == NOW
    assert v.tally.invalid == 0 and v.tally.cleaned == 0


def test_a_failure_keeps_the_traceback_lines_and_a_heartbeat_its_numbers() -> None:
    v = validator()
    tb = (
        'Traceback (most recent call last):\n  File "x.py", line 1, in f\n\tboom()\nValueError: x\n'
    )
    out = v.validate(
        {
            "type": "task-failed",
            "uuid": "u",
            "hostname": "w@h",
            "timestamp": NOW,
            "exception": "ValueError('x')",
            "traceback": tb,
        }
    )
    assert out is not None and out["traceback"] == tb
    hb = v.validate(
        {
            "type": "worker-heartbeat",
            "hostname": "w@h",
            "timestamp": NOW,
            "freq": 2.0,
            "active": 3,
            "processed": 10**12,
            "loadavg": [0.5, 1, 2.25],
            "sw_ver": "5.5.3",
        }
    )
    assert hb is not None
    assert hb["freq"] == 2.0 and hb["active"] == 3 and hb["processed"] == 10**12
    assert hb["loadavg"] == [0.5, 1.0, 2.25] and hb["sw_ver"] == "5.5.3"
    assert v.tally.invalid == v.tally.cleaned == 0


def test_fields_the_console_does_not_use_are_not_passed_on() -> None:
    out = one(sent(local_received=-1.0, evil={"nested": OSC52}, __class__="x"))
    assert out is not None
    assert "evil" not in out and "__class__" not in out
    assert out["local_received"] == NOW  # the receive time is ours, never the sender's


def test_an_unknown_event_type_passes_bare_for_the_model_to_count() -> None:
    v = validator()
    out = v.validate({"type": "custom-thing", "payload": OSC52})
    assert out == {"type": "custom-thing", "local_received": NOW}
    model = ClusterModel()
    model.apply([out])
    assert model.events_unknown == 1


# ---- a bad event is counted and skipped -------------------------------------------------------
@pytest.mark.parametrize("body", [["a", "list"], "a string", None, 42, 1.5, b"bytes", ("tuple",)])
def test_a_body_that_is_not_an_object_is_skipped(body: Any) -> None:
    v = validator()
    assert v.validate(body) is None
    assert v.tally.invalid == 1 and "not a JSON object" in v.tally.last


@pytest.mark.parametrize("etype", [None, 7, "", "x" * 65, "task-sent\x1b[2J", ["task-sent"]])
def test_a_missing_or_unprintable_type_skips_the_event(etype: Any) -> None:
    v = validator()
    ev = sent()
    if etype is None:
        del ev["type"]
    else:
        ev["type"] = etype
    assert v.validate(ev) is None and v.tally.invalid == 1


@pytest.mark.parametrize(
    "host",
    [
        None,
        "",
        5,
        "w@" + "h" * MAX_KEY_CHARS,
        "w\x1b]2;pwned\x07@h",
        "w\n@h",
        "w\u202e@h",
        "w\ud800@h",
    ],
)
def test_a_bad_hostname_skips_the_event(host: Any) -> None:
    v = validator()
    ev = sent(hostname=host)
    if host is None:
        del ev["hostname"]
    assert v.validate(ev) is None and v.tally.invalid == 1 and "hostname" in v.tally.last


@pytest.mark.parametrize(
    "uuid", [None, "", 12345, ["u"], "u" * (MAX_KEY_CHARS + 1), "[@click=app.quit]\x1b[0m"]
)
def test_a_task_event_without_a_valid_uuid_is_skipped(uuid: Any) -> None:
    v = validator()
    ev = sent(uuid=uuid)
    if uuid is None:
        del ev["uuid"]
    assert v.validate(ev) is None and v.tally.invalid == 1 and "uuid" in v.tally.last


def test_a_worker_event_needs_no_uuid() -> None:
    assert one({"type": "worker-online", "hostname": "w@h", "timestamp": NOW}) is not None


@pytest.mark.parametrize(
    "ts",
    [
        "now",
        "1750000000",
        math.nan,
        math.inf,
        -math.inf,
        -1e18,
        -1.0,
        0,
        1e18,
        NOW + 2 * 86_400,
        946_684_799.0,
        True,
        [NOW],
        {"__type__": "datetime"},
    ],
)
def test_a_timestamp_that_is_not_a_sane_time_skips_the_event(ts: Any) -> None:
    v = validator()
    assert v.validate(sent(timestamp=ts)) is None
    assert v.tally.invalid == 1 and "timestamp" in v.tally.last


def test_timestamp_window_edges_and_int_timestamps() -> None:
    assert one(sent(timestamp=946_684_800))["timestamp"] == 946_684_800.0
    assert one(sent(timestamp=NOW + 86_000.0)) is not None
    out = one(sent(timestamp=int(NOW)))
    assert out["timestamp"] == float(NOW) and out["timestamp"].__class__ is float


def test_a_missing_timestamp_is_allowed() -> None:
    ev = sent()
    del ev["timestamp"]
    out = one(ev)
    assert out is not None and "timestamp" not in out


def test_utcoffset_localises_the_timestamp_like_celery_and_a_bad_one_is_ignored() -> None:
    from celery.utils.time import adjust_timestamp

    out = one(sent(timestamp=NOW - 7200, utcoffset=-2))
    assert out["timestamp"] == pytest.approx(adjust_timestamp(NOW - 7200, -2))
    v = validator()
    out = v.validate(sent(timestamp=NOW - 60, utcoffset="x"))
    assert out["timestamp"] == NOW - 60 and "utcoffset" not in out and v.tally.cleaned == 1
    assert one(sent(timestamp=NOW, utcoffset=math.nan))["timestamp"] == NOW


# ---- optional fields: dropped or cleaned, counted, the event kept -----------------------------
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("priority", 2**70),
        ("priority", -1),
        ("priority", 256),
        ("priority", "5"),
        ("priority", True),
        ("priority", 5.0),
        ("retries", 2**40),
        ("pid", -5),
        ("clock", 2**64),
        ("clock", "12"),
    ],
)
def test_an_integer_out_of_type_or_bounds_is_dropped(key: str, value: Any) -> None:
    v = validator()
    out = v.validate(sent(**{key: value}))
    assert out is not None and key not in out
    assert v.tally.cleaned == 1 and v.tally.invalid == 0 and key in v.tally.last


def test_integer_bounds_are_inclusive() -> None:
    out = one(sent(priority=255, retries=0))
    assert out["priority"] == 255 and out["retries"] == 0
    assert one(sent(priority=0))["priority"] == 0


@pytest.mark.parametrize("runtime", [math.nan, math.inf, -0.5, "1.0", 1e12, None])
def test_a_runtime_that_is_not_a_finite_duration_is_dropped(runtime: Any) -> None:
    v = validator()
    out = v.validate(
        {
            "type": "task-succeeded",
            "uuid": "u",
            "hostname": "w@h",
            "timestamp": NOW,
            "runtime": runtime,
            "result": "42",
        }
    )
    assert out is not None and "runtime" not in out and out["result"] == "42"
    assert v.tally.cleaned == (0 if runtime is None else 1)


def test_an_int_runtime_becomes_a_float() -> None:
    out = one({"type": "task-succeeded", "uuid": "u", "hostname": "w@h", "runtime": 3})
    assert out["runtime"] == 3.0 and out["runtime"].__class__ is float


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("freq", math.nan),
        ("freq", -1),
        ("active", 2**40),
        ("processed", 2**64),
        ("loadavg", [1, 2, 3, 4]),
        ("loadavg", [math.nan]),
        ("loadavg", "1 2 3"),
        ("loadavg", [-1.0]),
        ("sw_ident", ["x"]),
    ],
)
def test_bad_heartbeat_fields_are_dropped_and_the_heartbeat_kept(key: str, value: Any) -> None:
    v = validator()
    out = v.validate({"type": "worker-heartbeat", "hostname": "w@h", "timestamp": NOW, key: value})
    assert out is not None and key not in out and v.tally.cleaned == 1


@pytest.mark.parametrize(
    ("value", "kept"), [(True, True), (False, False), ("yes", None), (1, None)]
)
def test_flags_must_be_booleans(value: Any, kept: Any) -> None:
    out = one({"type": "task-rejected", "uuid": "u", "hostname": "w@h", "requeue": value})
    assert out.get("requeue") == kept


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        (15, 15),
        ("SIGTERM", "SIGTERM"),
        ("SIG\x1b[2J", "SIG␛[2J"),
        (2**70, None),
        ("x" * 40, None),
        (1.5, None),
    ],
)
def test_signum_is_a_signal_number_or_a_short_name(value: Any, kept: Any) -> None:
    out = one(
        {
            "type": "task-revoked",
            "uuid": "u",
            "hostname": "w@h",
            "terminated": True,
            "signum": value,
        }
    )
    assert out.get("signum") == kept


# ---- text is made inert ------------------------------------------------------------------------
def test_escape_sequences_become_visible_control_pictures() -> None:
    v = validator()
    out = v.validate(sent(queue=OSC52, name="x\x1b[2Jy", args="('\x00',)"))
    assert out["queue"] == "␛]52;c;SGFja2VkIQ==␇"
    assert out["name"] == "x␛[2Jy"
    assert out["args"] == "('␀',)"
    assert "\x1b" not in repr(out.values()) and v.tally.cleaned == 3


def test_c1_controls_bidi_overrides_and_line_separators_become_escape_text() -> None:
    assert clean_text("a\x9b2Jb") == "a\\x9b2Jb"
    assert clean_text("a\u202eb\u2066c") == "a\\u202eb\\u2066c"
    assert clean_text("a\u2028b\u2029c\x85d") == "a\\u2028b\\u2029c\\x85d"
    assert clean_text("del\x7f") == "del␡"


def test_a_lone_surrogate_becomes_the_replacement_character() -> None:
    out = one(sent(args="('\ud83d',)"))
    assert out["args"] == "('\ufffd',)"
    out["args"].encode("utf-8")  # encodable now


def test_newlines_survive_only_in_multi_line_fields() -> None:
    v = validator()
    out = v.validate(
        {
            "type": "task-failed",
            "uuid": "u",
            "hostname": "w@h",
            "timestamp": NOW,
            "exception": "E('a\nb')",
            "traceback": "line 1\r\nline 2\n\x1b[31mred\x1b[0m\tend\rx",
            "name": "multi\nline",
        }
    )
    assert out["traceback"] == "line 1\nline 2\n␛[31mred␛[0m\tend␍x"
    assert out["exception"] == "E('a\nb')"
    assert out["name"] == "multi␊line"
    assert clean_text("a\tb") == "a␉b" and clean_text("a\tb", multiline=True) == "a\tb"


def test_printable_unicode_is_left_alone_and_the_same_object_returned() -> None:
    for text in ("ünïcödé", "日本語", "emoji 👩\u200d💻", "nbsp\u00a0here", "plain"):
        assert clean_text(text) is text or clean_text(text) == text
    plain = "plain ascii"
    assert clean_text(plain) is plain


def test_too_long_identifiers_are_dropped_and_long_text_is_cut_with_a_marker() -> None:
    v = validator()
    out = v.validate(sent(queue="q" * (MAX_KEY_CHARS + 1), args="a" * (MAX_TEXT_CHARS + 10)))
    assert "queue" not in out
    assert out["args"].startswith("a" * 100) and "cut at the source boundary: 10 of" in out["args"]
    assert len(out["args"]) < MAX_TEXT_CHARS + 100
    assert v.tally.cleaned == 2


def test_text_of_another_type_is_shown_as_its_repr() -> None:
    v = validator()
    out = v.validate(sent(args=["FIR-1", "\x1b[2J"], kwargs={"k": 1}, result=None))
    assert out["args"] == "['FIR-1', '\\x1b[2J']"  # repr escapes; nothing raw gets through
    assert out["kwargs"] == "{'k': 1}"
    assert "result" not in out
    assert v.tally.cleaned == 2


# ---- messages and robustness -----------------------------------------------------------------
def test_a_list_message_yields_its_good_events_and_counts_the_rest() -> None:
    v = validator()
    got = v.validate_message(
        [sent(uuid="a"), 5, {"no": "type"}, sent(uuid="b", timestamp="now"), sent(uuid="c")]
    )
    assert [e["uuid"] for e in got] == ["a", "c"]
    assert v.tally.invalid == 3
    assert v.validate_message(sent(uuid="d"))[0]["uuid"] == "d"
    assert v.validate_message([]) == []


def test_the_validator_never_raises_even_on_a_hostile_mapping() -> None:
    from collections.abc import Mapping

    class Hostile(Mapping):
        def __getitem__(self, key: Any) -> Any:
            raise RuntimeError("boom")

        def __iter__(self) -> Any:
            return iter(["type"])

        def __len__(self) -> int:
            return 1

    v = validator()
    assert v.validate(Hostile()) is None
    assert v.tally.invalid == 1 and "validator error" in v.tally.last


def test_validated_events_apply_to_the_model_without_any_model_complaint() -> None:
    v = validator()
    bad = [
        sent(uuid="a", priority=2**70, queue=OSC52),
        sent(uuid="b", timestamp=math.nan),
        {
            "type": "task-succeeded",
            "uuid": "a",
            "hostname": "w@h",
            "timestamp": NOW,
            "runtime": math.inf,
            "result": "\x1b[2J",
        },
    ]
    model = ClusterModel()
    model.apply(v.validate_message(bad))
    task = model.get_task("a")
    assert task is not None and task.priority is None and task.queue == "␛]52;c;SGFja2VkIQ==␇"
    assert task.result == "␛[2J" and task.runtime is None
    assert model.get_task("b") is None
    assert model.events_skipped == 0 and model.fields_invalid == 0
    assert v.tally.invalid == 1 and v.tally.cleaned == 4


def test_is_key() -> None:
    assert is_key("celery@afirgen-worker-01") and is_key("ünï@høst")
    assert not is_key("") and not is_key(None) and not is_key("a\x1bb") and not is_key("x" * 256)

    class S(str):
        pass

    assert not is_key(S("looks fine"))  # a str subclass could lie about itself


def test_tally_and_boundary_sum_their_sources() -> None:
    b = Boundary()
    b.events.skip("x")
    b.inspect.clean("y")
    b.backend.skip("z")
    b.history.clean("y")
    assert b.invalid == 2 and b.cleaned == 2
    t = Tally()
    for i in range(500):
        t.clean(f"reason {i}")
    assert t.cleaned == 500 and len(t.reasons) == 200  # bounded, whatever is sent


# ---- inspect replies ---------------------------------------------------------------------------
def test_stats_replies_keep_checked_values_only() -> None:
    t = Tally()
    out = clean_stats_replies(
        {
            "celery@ok": {
                "pool": {
                    "implementation": "celery.concurrency.prefork:TaskPool",
                    "max-concurrency": 4,
                    "processes": [11, 12, "x"],
                },
                "autoscaler": {"max": 8, "min": 2},
                "pid": 42,
                "total": {"t.a": 3, "t\x1bb": 1, "t.c": 2**70},
                "broker": {"password": "not passed on"},
            },
            "celery@bad\x1b]2;x\x07": {"pid": 1},
            "celery@huge": {
                "pid": 2**70,
                "pool": {"max-concurrency": 2**70, "implementation": "x" * 300},
                "autoscaler": {"max": "8", "min": 2},
            },
            "celery@notdict": ["x"],
        },
        t,
    )
    assert set(out) == {"celery@ok", "celery@huge"}
    ok = out["celery@ok"]
    assert ok["pool"] == {
        "implementation": "celery.concurrency.prefork:TaskPool",
        "max-concurrency": 4,
        "processes": [11, 12, 0],
    }
    assert (
        ok["autoscaler"] == {"max": 8, "min": 2} and ok["pid"] == 42 and ok["total"] == {"t.a": 3}
    )
    assert "broker" not in ok
    assert out["celery@huge"] == {"pool": {}}
    assert t.invalid == 2  # the bad hostname, the non-dict reply
    assert t.cleaned == 6  # two totals, pid, max-concurrency, implementation, autoscaler
    model = ClusterModel()
    for host, stats in out.items():
        model.set_worker_stats(host, stats)
    assert (
        model.get_worker("celery@ok").max_concurrency == 4
        and model.get_worker("celery@huge").pid is None
    )


def test_queue_replies_drop_names_with_escapes_and_bad_hosts() -> None:
    t = Tally()
    out = clean_queue_replies(
        {
            "w@h": [{"name": "email"}, {"name": OSC52}, {"name": 5}, "x", {"name": "q" * 300}],
            "w\x1b@h": [{"name": "email"}],
            "w2@h": {"name": "not a list"},
        },
        t,
    )
    assert out == {"w@h": ["email"]}
    assert t.cleaned == 4 and t.invalid == 2
    assert clean_queue_replies(None, t) == {} and clean_queue_replies(["x"], t) == {}


def test_active_and_reserved_task_infos_are_checked() -> None:
    t = Tally()
    out = clean_inspect_tasks(
        {
            "w@h": [
                {
                    "id": "u1",
                    "name": "t\x1b[2J",
                    "args": ["\x1b"],
                    "kwargs": "{'a': '\x07'}",
                    "hostname": "ignored",
                },
                {"id": "u\x1b"},
                {"name": "no id"},
                "junk",
            ]
        },
        t,
    )
    assert out == {
        "w@h": [{"id": "u1", "name": "t␛[2J", "args": "['\\x1b']", "kwargs": "{'a': '␇'}"}]
    }
    assert t.invalid == 3 and t.cleaned == 2


# ---- result backend --------------------------------------------------------------------------
def test_backend_meta_is_cleaned_and_keeps_its_structure() -> None:
    t = Tally()
    meta = {
        "status": "FAILURE\x1b[2J",
        "worker": "w@h",
        "queue": OSC52,
        "retries": 2**70,
        "date_done": "2024-01-01T00:00:00",
        "traceback": "Traceback:\n  \x1b]52;c;x\x07\n",
        "result": {"exc_type": "E\x1b[31m", "exc_message": ["m\x07", 2**70]},
        "args": ["a\x1b", {"k": ("v\x1b",)}],
        "kwargs": {"\x1bk": 1},
        "children": [],
        "unknown": "\x1b",
    }
    out = clean_backend_meta(meta, t)
    assert (
        out["status"] == "FAILURE␛[2J"
        and out["queue"] == "␛]52;c;SGFja2VkIQ==␇"
        and "retries" not in out
    )
    assert out["traceback"] == "Traceback:\n  ␛]52;c;x␇\n"
    assert out["result"] == {"exc_type": "E␛[31m", "exc_message": ["m␇", 2**70]}
    assert out["args"] == ["a␛", {"k": ("v␛",)}] and out["kwargs"] == {"␛k": 1}
    assert "unknown" not in out and out["date_done"] == "2024-01-01T00:00:00"
    assert "\x1b" not in repr(out) and "\x07" not in repr(out)
    assert clean_backend_meta(["x"], t) == {} and t.invalid == 1
    assert clean_backend_meta({}, Tally()) == {}


def test_backend_meta_nested_too_deep_is_cut() -> None:
    deep: Any = "x"
    for _ in range(50):
        deep = [deep]
    t = Tally()
    out = clean_backend_meta({"status": "SUCCESS", "result": deep}, t)
    assert "…" in repr(out["result"]) and t.cleaned == 1


# ---- history rows ------------------------------------------------------------------------------
def test_history_rows_from_before_the_fix_are_cleaned_field_by_field() -> None:
    t = Tally()
    row = {
        "uuid": "u1",
        "name": "t",
        "state": "SUCCESS",
        "queue": "\x1b]52;c;x\x07",
        "priority": 2**70,
        "sent": math.nan,
        "received": -1e18,
        "started": math.inf,
        "finished": NOW,
        "first_seen": NOW,
        "runtime": math.nan,
        "retries": 1.5,
        "traceback": "a\nb\x1b",
        "args": b"('\xff',)",
        "source": "events",
        "rank": 8,
        "updated": NOW,
    }
    out = clean_history_row(row, t, now=NOW)
    assert out == {
        "uuid": "u1",
        "name": "t",
        "state": "SUCCESS",
        "queue": "␛]52;c;x␇",
        "finished": NOW,
        "first_seen": NOW,
        "traceback": "a\nb␛",
        "args": "('\ufffd',)",
        "source": "events",
    }
    # queue, priority, sent, received, started, runtime, retries, traceback, args
    assert t.cleaned == 9 and t.invalid == 0
    assert (
        clean_history_row({"uuid": 5}, t) is None
        and clean_history_row({"uuid": "a\x1b"}, t) is None
    )
    assert clean_history_row("row", t) is None and t.invalid == 3


def test_history_rows_accept_times_from_the_epoch() -> None:
    # rows are the console's own output: small test times and old rows are fine, only
    # what cannot be shown or sorted is refused
    assert clean_history_row({"uuid": "u", "sent": 10.0}, Tally(), now=NOW)["sent"] == 10.0


def test_poisoned_rows_in_a_real_store_load_cleaned_and_counted(tmp_path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite3")
    now = time.time()
    store.upsert(
        [
            {
                "uuid": f"u{i}",
                "name": "t",
                "state": "SUCCESS",
                "queue": "q",
                "priority": 5,
                "sent": now - 10,
                "finished": now - 5,
            }
            for i in range(3)
        ]
    )
    # what a console before the fix could have written, planted with SQL
    conn = sqlite3.connect(tmp_path / "h.sqlite3")
    conn.execute(
        "UPDATE tasks SET queue = ?, priority = ? WHERE uuid = 'u0'", (OSC52, 1.1805916207174113e21)
    )
    conn.execute(
        "UPDATE tasks SET sent = ?, priority = '1180591620717411303424' WHERE uuid = 'u1'", (-1e18,)
    )
    conn.execute("UPDATE tasks SET uuid = ? WHERE uuid = 'u2'", ("u2\x1b[2J",))
    conn.commit()
    conn.close()
    rows = store.load_recent(10)
    assert len(rows) == 3
    tally = Tally()
    model = ClusterModel()
    load_into_model(model, rows, tally)
    assert model.task_count == 2
    u0, u1 = model.get_task("u0"), model.get_task("u1")
    assert u0.queue == "␛]52;c;SGFja2VkIQ==␇" and u0.priority is None
    assert u1.sent is None and u1.priority is None and u1.queue == "q"
    assert tally.invalid == 1 and tally.cleaned == 4
    formatting.clock(u1.sent)
    store.close()


# ---- formatting never crashes on a time that slipped through -----------------------------------
@pytest.mark.parametrize("ts", [math.nan, math.inf, -math.inf, -1e18, 1e18])
def test_formatting_shows_a_question_mark_for_an_impossible_time(ts: float) -> None:
    assert formatting.clock(ts) == "?"
    assert formatting.timestamp(ts) == "?"
    assert formatting.age(ts, now=NOW, width=6) in (
        "?",
        "0ms",
        "0.0s",
    )  # 1e18 is in the future: age 0
    assert formatting.duration(ts) in ("?", "-") or formatting.duration(ts).endswith("d")


def test_formatting_of_bad_times_is_exact() -> None:
    assert formatting.clock(math.nan) == "?" and formatting.clock(-1e18) == "?"
    assert formatting.timestamp(math.nan) == "?" and formatting.timestamp("x") == "?"
    assert formatting.age(math.nan, now=NOW) == "?" and formatting.age(math.inf, now=NOW) == "?"
    assert formatting.duration(math.inf) == "?"
    assert formatting.clock(None) == "--:--:--" and formatting.age(None) == "never"


def test_clock_gives_the_day_of_a_time_older_than_a_day(monkeypatch) -> None:
    """A history holds 30 days: a month-old failure showed as "First 06:38:59", read as
    today's."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        now = 1_764_633_600.0  # 2025-12-02 00:00:00 UTC
        assert formatting.clock(now - 60, now) == "23:59:00"
        assert formatting.clock(now - 86_000, now) == "00:06:40"  # within 24 h: the time
        assert formatting.clock(now - 2 * 86_400 - 3600, now) == "29 Nov"
        assert formatting.clock(now + 30, now) == "00:00:30"  # a little ahead: still a time
    finally:
        monkeypatch.undo()
        time.tzset()


# ---- the upstream names the receiver leans on ------------------------------------------------
def test_upstream_contract_of_the_receiver_override() -> None:
    """If this fails, revisit tui/sources/events.py (_Receiver): the names it overrides or wraps moved."""
    import inspect

    from celery.events.receiver import EventReceiver
    from kombu import Consumer
    from kombu.transport.virtual.base import Channel, Transport

    for name in ("_receive", "event_from_message", "get_consumers", "on_consume_ready", "process"):
        assert hasattr(EventReceiver, name), name
    init = inspect.getsource(EventReceiver.__init__)
    assert "self.adjust_clock =" in init and "self.forward_clock =" in init
    assert "on_decode_error" in inspect.signature(Consumer.__init__).parameters
    assert "_callbacks" in inspect.getsource(Transport.__init__)
    # basic_consume registers the delivery callback under the queue's name
    assert "self.connection._callbacks[queue] = _callback" in inspect.getsource(
        Channel.basic_consume
    )


def test_an_empty_key_field_in_a_history_row_is_absent_not_cleaned() -> None:
    """The console writes exchange '' (the default exchange): reading it back counted one
    'cleaned' per row, a yellow figure on the status line that grew every start."""
    tally = Tally()
    row = clean_history_row({"uuid": "u1", "exchange": "", "queue": "email"}, tally)
    assert row == {"uuid": "u1", "queue": "email"}
    assert tally.cleaned == 0 and tally.invalid == 0
