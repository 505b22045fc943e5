"""clean_queued_message: a message read from a queue's Redis list, checked field by field."""

from __future__ import annotations

import base64
import json
import time

import pytest

from afirgen_tasks.priority import PRIORITY_HEADER
from tui.sources.queue_jobs import front_payload
from tui.sources.validate import Tally, clean_queued_message


def message(body: object = ([7], {"days": 30}, {}), **headers: object) -> dict:
    raw = json.dumps(body).encode()
    return {
        "body": base64.b64encode(raw).decode(),
        "content-type": "application/json",
        "headers": {"task": "afirgen_tasks.x.y", "id": "abc-1", **headers},
        "properties": {"priority": 4, "body_encoding": "base64", "delivery_tag": "t-1"},
    }


def test_a_good_message_keeps_its_fields() -> None:
    tally = Tally()
    eta = "2030-01-02T03:04:05+00:00"
    out = clean_queued_message(
        json.dumps(message(eta=eta, retries=2, **{PRIORITY_HEADER: 6})), tally
    )
    assert out is not None and tally.invalid == tally.cleaned == 0
    assert out["id"] == "abc-1" and out["task"] == "afirgen_tasks.x.y"
    assert out["args"] == "[7]" and out["kwargs"] == "{'days': 30}"
    assert out["priority"] == 6 and out["wire_priority"] == 4 and out["retries"] == 2
    assert out["eta"] == 1893553445.0 and out["delivery_tag"] == "t-1"


def test_unusable_messages_are_skipped_and_counted() -> None:
    tally = Tally()
    deep = "[" * 100_000 + "]" * 100_000
    for raw in (b"not json", b"[1, 2]", deep, json.dumps({"headers": {"id": "\x1b[2J"}}), 42):
        assert clean_queued_message(raw, tally) is None
    assert tally.invalid == 5 and tally.cleaned == 0


def test_bad_fields_are_dropped_or_shown_never_raised() -> None:
    tally = Tally()
    msg = message(
        body="not a call",
        eta="tomorrow",
        retries=-1,
        argsrepr="(1, '\x1b[31m')",
        **{PRIORITY_HEADER: 99},
    )
    msg["headers"]["task"] = "evil\x1b]52;c;x\x07"
    out = clean_queued_message(json.dumps(msg), tally, now=time.time())
    assert out is not None
    assert out["task"] == "evil␛]52;c;x␇"
    assert out["args"] == "(1, '␛[31m')"  # from the headers' repr: the body is no call
    assert out["priority"] is None and out["eta"] is None and out["retries"] is None
    assert tally.invalid == 0 and tally.cleaned >= 4


def test_front_payload_is_the_same_job_at_priority_10() -> None:
    raw = json.dumps(message(**{PRIORITY_HEADER: 2})).encode()
    moved = json.loads(front_payload(raw))
    before = json.loads(raw)
    assert moved["properties"]["priority"] == 0 and moved["headers"][PRIORITY_HEADER] == 10
    before["properties"]["priority"], before["headers"][PRIORITY_HEADER] = 0, 10
    assert moved == before  # nothing else changed


@pytest.mark.parametrize("props", [[], None, "x", 3])
def test_a_job_whose_properties_are_not_an_object_can_still_be_moved_to_the_front(
    props: object,
) -> None:
    """Before: the screen listed such a job (properties ignored) but ^ failed with a TypeError
    in front_payload."""
    raw = json.dumps({"headers": {"id": "abc", "task": "t"}, "properties": props, "body": ""})
    assert clean_queued_message(raw.encode(), Tally()) is not None
    moved = json.loads(front_payload(raw.encode()))
    assert moved["headers"][PRIORITY_HEADER] == 10 and "priority" in moved["properties"]
    assert moved["headers"]["id"] == "abc"
