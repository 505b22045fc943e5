"""The pause mark, derived (issue 14 item 2): records + the workers' queues, never memory."""

from __future__ import annotations

import json
import time

from tui.core.pauses import PauseRecord, WorkerQueues, derive_pauses
from tui.sources.validate import Tally, clean_pause_record

NOW = time.time()


def w(host: str, *queues: str, online: bool = True, inspected: bool = True) -> WorkerQueues:
    return WorkerQueues(host, online, inspected, frozenset(queues))


def rec(queue: str, *workers: str) -> PauseRecord:
    return PauseRecord(queue, workers, NOW, "alice")


def test_paused_where_the_recorded_workers_no_longer_consume():
    pauses = derive_pauses(
        {"email": rec("email", "w1")}, [w("w1", "default"), w("w2", "analytics")]
    )
    assert pauses["email"].stopped == ("w1",) and pauses["email"].mark == "⏸"
    assert not pauses["email"].partial


def test_no_record_no_mark_even_with_no_consumer():
    assert derive_pauses({}, [w("w1", "default")]) == {}


def test_partial_when_a_recorded_worker_consumes_again():
    pauses = derive_pauses({"reports": rec("reports", "w1", "w2")}, [w("w1"), w("w2", "reports")])
    assert pauses["reports"].mark == "⏸ 1/2" and pauses["reports"].consuming == ("w2",)
    assert "paused on 1 of 2" in pauses["reports"].describe()


def test_a_worker_started_since_with_the_queue_is_not_paused():
    pauses = derive_pauses({"email": rec("email", "w1")}, [w("w1"), w("w3", "email")])
    assert pauses["email"].mark == "⏸ 1/2" and pauses["email"].consuming == ("w3",)


def test_resumed_everywhere_or_all_offline_derives_nothing():
    record = {"email": rec("email", "w1", "w2")}
    assert derive_pauses(record, [w("w1", "email"), w("w2", "email")]) == {}
    assert derive_pauses(record, [w("w1", online=False)]) == {}


def test_offline_and_uninspected_workers_are_neither_paused_nor_consuming():
    pauses = derive_pauses(
        {"reports": rec("reports", "w1", "w2", "w3")},
        [w("w1"), w("w2", online=False), w("w3", inspected=False)],
    )
    p = pauses["reports"]
    assert p.stopped == ("w1",) and p.offline == ("w2",) and p.consuming == ()
    assert p.mark == "⏸"


def test_records_from_the_broker_are_cleaned():
    tally = Tally()
    raw = json.dumps({"workers": ["w1@a", "bad\x1b[2J", 5], "paused_at": NOW, "by": "a\x1bb"})
    record = clean_pause_record(b"email", raw, tally)
    assert record is not None and record.workers == ("w1@a",) and "\x1b" not in record.by
    assert tally.cleaned >= 1
    for queue, bad in (
        ("email", "{not json"),
        ("email", json.dumps({"workers": []})),
        ("email", json.dumps({"workers": ["\x07"]})),
        ("", json.dumps({"workers": ["w1"]})),
    ):
        assert clean_pause_record(queue, bad, tally) is None
    assert tally.invalid == 4
    future = clean_pause_record("q", json.dumps({"workers": ["w1"], "paused_at": 1e12}), tally)
    assert future is not None and future.paused_at == 0.0
