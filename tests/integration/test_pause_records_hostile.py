"""Pause records are read on every ``inspect`` round from a hash anyone with the broker URL can
write (``afirgen:paused``): a flood of fields or one huge value must not cross the wire.

Before: ``HGETALL`` brought back all of it every round (300,000 fields and one 200 MB value
took the console from ~60 MB to 600 MB RSS and 20% CPU, for as long as they stayed there).
"""

from __future__ import annotations

import json
import time

import pytest

from tui.sources import pause_records
from tui.sources.pause_records import PAUSED_KEY, PauseRecordStore
from tui.sources.validate import Tally

pytestmark = pytest.mark.integration


def _record(*workers: str) -> str:
    return json.dumps({"workers": list(workers), "paused_at": time.time() - 5, "by": "alice"})


def test_a_flooded_pause_hash_is_read_bounded_and_counted(redis_client, monkeypatch):
    monkeypatch.setattr(pause_records, "MAX_RECORDS", 50)
    monkeypatch.setattr(pause_records, "MAX_SCAN", 400)
    pipe = redis_client.pipeline(transaction=False)
    for i in range(2000):
        pipe.hset(PAUSED_KEY, f"q{i}", _record("w1@h"))
    pipe.execute()
    store = PauseRecordStore(redis_client)
    tally = Tally()
    records = store.read_all(tally)
    assert 0 < len(records) <= 50
    assert tally.invalid >= 1 and "not read" in tally.last


def test_a_huge_pause_record_never_crosses_the_wire(redis_client):
    redis_client.hset(PAUSED_KEY, "default", _record("w1@h"))
    redis_client.hset(PAUSED_KEY, "reports", "x" * (pause_records.MAX_RECORD_BYTES + 1))
    store = PauseRecordStore(redis_client)
    seen: list[int] = []
    real_eval = redis_client.eval

    def eval_(*args):
        reply = real_eval(*args)
        seen.append(sum(len(v) for v in reply[2]))
        return reply

    redis_client.eval = eval_
    tally = Tally()
    records = store.read_all(tally)
    assert set(records) == {"default"} and records["default"].workers == ("w1@h",)
    assert seen and seen[0] < 1024, "the huge value was sent back"
    assert "1 of 2 not read" in tally.last
    # the one-queue read refuses it too, without fetching it
    assert store.read("reports", Tally()) is None
    assert store.read("default").workers == ("w1@h",)
