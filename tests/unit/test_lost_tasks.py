"""Issue 14, items 4 and 6: tasks lost with their worker, and what the console knows for sure
(PURGED, LOST, SENT) against the result backend's PENDING ("unknown").

Pure model, formatting and history-store rules; the live tests are in
tests/integration/test_lost_tasks_live.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tui.core.formatting import lost_text, state_text
from tui.core.model import LOST, PURGED, ClusterModel
from tui.core.query import TaskFilter
from tui.core.states import R_RECEIVED, R_SENT, RANK
from tui.history import HistoryStore, load_into_model, meta_to_row, task_to_row
from tui.history.store import SOURCE_BACKEND

W1 = "celery@w1"
W2 = "celery@w2"
T0 = 1_700_000_000.0


def task(kind: str, uuid: str, t: float, host: str = W1, **fields: Any) -> dict[str, Any]:
    return {
        "type": f"task-{kind}",
        "uuid": uuid,
        "hostname": host,
        "timestamp": t,
        "local_received": t,
        **fields,
    }


def worker(kind: str, t: float, host: str = W1, **fields: Any) -> dict[str, Any]:
    return {
        "type": f"worker-{kind}",
        "hostname": host,
        "timestamp": t,
        "local_received": t,
        "freq": 2.0,
        **fields,
    }


def cluster() -> ClusterModel:
    """w1 runs ``a``, holds ``b`` reserved and finished ``c``; w2 runs ``d``; ``e`` waits."""
    m = ClusterModel(heartbeat_timeout=6.0)
    m.apply(
        [
            worker("online", T0, W1, pid=100),
            worker("online", T0, W2, pid=200),
            task("sent", "a", T0 + 1, "client", queue="email", name="x.send"),
            task("received", "a", T0 + 2),
            task("started", "a", T0 + 3),
            task("received", "b", T0 + 2),
            task("received", "c", T0 + 2),
            task("started", "c", T0 + 3),
            task("succeeded", "c", T0 + 4, runtime=1.0),
            task("received", "d", T0 + 2, W2),
            task("started", "d", T0 + 3, W2),
            task("sent", "e", T0 + 1, "client", queue="email"),
            worker("heartbeat", T0 + 8, W2, pid=200),  # w2 is still alive at T0 + 12
        ]
    )
    m.apply([])
    return m


def states(m: ClusterModel) -> dict[str, str]:
    return {t.uuid: t.state for t in m.iter_tasks(newest_first=False)}


def test_missed_heartbeats_mark_the_workers_running_and_reserved_tasks_lost() -> None:
    m = cluster()
    assert m.refresh_liveness(T0 + 12.0) == {W1}
    assert states(m) == {"a": LOST, "b": LOST, "c": "SUCCESS", "d": "STARTED", "e": "SENT"}
    a = m.get_task("a")
    assert a is not None and a.lost is not None
    assert (a.lost.worker, a.lost.why, a.lost.in_broker) == (W1, "missed heartbeats", None)
    assert a.rank == R_SENT and a.hostname == W1
    assert m.apply([]).tasks == {"a", "b"}  # the pane updates them
    assert sorted(m.lost_to_locate()) == ["a", "b"]
    assert m.lost_to_locate() == []  # asked once


def test_a_worker_offline_event_marks_them_in_the_same_batch() -> None:
    m = cluster()
    ch = m.apply([worker("offline", T0 + 6)])
    assert {"a", "b"} <= ch.tasks
    assert states(m)["a"] == LOST and m.get_task("a").lost.why == "worker-offline"  # type: ignore[union-attr]
    assert states(m)["d"] == "STARTED"


def test_a_restarted_worker_loses_what_the_old_process_held_but_not_what_the_new_one_took() -> None:
    m = cluster()
    # kill -9: no offline event; the same hostname comes back and takes a new job at once
    m.apply(
        [
            worker("online", T0 + 20, W1, pid=101),
            task("received", "f", T0 + 21),
            task("started", "f", T0 + 22),
        ]
    )
    s = states(m)
    assert (s["a"], s["b"], s["f"]) == (LOST, LOST, "STARTED")
    assert m.get_task("a").lost.why == "worker restarted"  # type: ignore[union-attr]


def test_a_heartbeat_with_another_pid_is_another_process() -> None:
    m = cluster()
    m.apply([worker("heartbeat", T0 + 5, W1, pid=100)])
    assert states(m)["a"] == "STARTED"  # the same process: nothing lost
    m.apply([worker("heartbeat", T0 + 30, W1, pid=999)])
    assert states(m)["a"] == LOST


def test_any_later_event_replaces_lost_and_the_redelivery_shows_the_new_worker() -> None:
    m = cluster()
    m.refresh_liveness(T0 + 12.0)
    m.apply([task("sent", "a", T0 + 1, "client", queue="email")])  # a duplicate: not news
    assert states(m)["a"] == LOST
    m.apply([task("received", "a", T0 + 3700, W2)])
    a = m.get_task("a")
    assert a is not None and (a.state, a.hostname, a.rank) == ("RECEIVED", W2, R_RECEIVED)
    m.apply([task("started", "a", T0 + 3701, W2), task("succeeded", "a", T0 + 3704, W2)])
    assert a.state == "SUCCESS"
    assert a.lost is not None and "was lost with celery@w1" in lost_text(a.lost, a.state)
    # a late retry of the lost attempt or a revoke finish it as usual
    m.apply([task("failed", "b", T0 + 50, W1, exception="WorkerLostError()")])
    assert states(m)["b"] == "FAILURE"


def test_what_the_broker_said_shows_in_the_row_and_the_detail() -> None:
    m = cluster()
    m.refresh_liveness(T0 + 12.0)
    now = time.time()
    a, b = m.get_task("a"), m.get_task("b")
    assert a is not None and b is not None
    assert state_text(a.state, False, a.lost) == ("✝ LOST", "bold red")
    assert "asking the broker" in lost_text(a.lost, a.state, now)
    back = now + 58 * 60 + 20
    assert m.set_lost_location("a", True, back - 3600, back, now=now)
    assert m.set_lost_location("b", False, now=now)
    assert m.apply([]).tasks == {"a", "b"}
    label, _ = state_text(a.state, False, a.lost)
    assert label == "✝ LOST↻" + time.strftime("%H:%M", time.localtime(back))
    text = lost_text(a.lost, a.state, now)
    assert f"redelivered at {time.strftime('%H:%M:%S', time.localtime(back))} (in 58m)" in text
    assert state_text(b.state, False, b.lost)[0] == "✝ LOST ∅"
    assert "not in the broker: it finished or was restored" in lost_text(b.lost, b.state, now)
    # overdue: said so
    assert "due for redelivery since" in lost_text(a.lost, a.state, back + 120)
    # once a later event replaced LOST, the broker's answer changes nothing
    m.apply([task("received", "a", T0 + 3700, W2)])
    assert not m.set_lost_location("a", False)
    assert "LOST" not in state_text(a.state, False, a.lost)[0]


def test_lost_due_asks_again_after_the_redelivery_time_and_forgets_replaced_tasks() -> None:
    m = cluster()
    m.refresh_liveness(T0 + 12.0)
    m.lost_to_locate()
    now = 1_000.0
    m.set_lost_location("a", True, now - 10, now + 50, now=now)
    m.set_lost_location("b", None, note="the broker could not be asked", now=now)
    assert m.lost_due(now + 1, every=5) == []  # asked a moment ago
    assert m.lost_due(now + 10, every=5) == ["b"]  # unknown: ask again
    assert sorted(m.lost_due(now + 60, every=5)) == ["a", "b"]  # a's redelivery is due
    m.apply([task("received", "a", T0 + 3700, W2)])
    assert m.lost_due(now + 60, every=5) == ["b"]


def test_the_filter_knows_lost() -> None:
    m = cluster()
    m.refresh_liveness(T0 + 12.0)
    flt = TaskFilter("state:lost")
    assert not flt.errors
    assert sorted(t.uuid for t in m.iter_tasks() if flt(t)) == ["a", "b"]


# ---- item 6: a backend PENDING never replaces what the console knows -------------------
@pytest.mark.parametrize("known", ["SENT", PURGED, LOST])
def test_a_backend_pending_never_replaces_a_known_state_in_the_model(known: str) -> None:
    m = ClusterModel()
    m.merge_task_info("x", state=known, hostname=W1, queue="cleanup")
    assert m.get_task("x").state == known  # type: ignore[union-attr]
    assert not m.merge_task_info("x", state="PENDING")
    assert m.get_task("x").state == known  # type: ignore[union-attr]


def purged_model() -> ClusterModel:
    m = ClusterModel()
    m.apply([task("sent", "p", T0, "client", queue="cleanup", name="x.cleanup")])
    assert m.mark_purged("cleanup", T0 + 1) == 1
    m.apply([task("sent", "s", T0 + 2, "client", queue="cleanup")])
    m.apply(
        [
            worker("online", T0, W1),
            task("received", "l", T0 + 1),
            task("started", "l", T0 + 2),
            worker("offline", T0 + 3),
        ]
    )
    assert states(m) == {"p": PURGED, "s": "SENT", "l": LOST}
    return m


def test_purged_lost_and_sent_survive_a_restart_and_a_backend_pending(tmp_path: Path) -> None:
    m = purged_model()
    store = HistoryStore(tmp_path / "history.db")
    try:
        store.upsert([task_to_row(m.get_task(u)) for u in ("p", "s", "l")])  # type: ignore[arg-type]
        # the backfill's PENDING records ("no such task") arrive for all three
        report = store.upsert(
            [meta_to_row(u, {"status": "PENDING"}) for u in ("p", "s", "l")], source=SOURCE_BACKEND
        )
        assert report is not None
        assert {u: store.get(u)["state"] for u in ("p", "s", "l")} == {  # type: ignore[index]
            "p": PURGED,
            "s": "SENT",
            "l": LOST,
        }
        fresh = ClusterModel()
        load_into_model(fresh, store.load_recent(10))
        assert states(fresh) == {"p": PURGED, "s": "SENT", "l": LOST}
        assert fresh.get_task("l").lost.worker == W1  # type: ignore[union-attr]
        assert fresh.lost_to_locate() == ["l"]  # asked again after the restart
        fresh.merge_task_info("p", state="PENDING")
        assert fresh.get_task("p").state == PURGED  # type: ignore[union-attr]
    finally:
        store.close()


def test_the_store_takes_lost_over_started_and_the_redelivery_over_lost(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "history.db")
    try:
        row = {"uuid": "z", "state": "STARTED", "rank": RANK["STARTED"], "hostname": W1}
        store.upsert([row])
        store.upsert([{**row, "state": LOST, "rank": RANK[LOST]}])
        assert store.get("z")["state"] == LOST  # type: ignore[index]
        store.upsert([{"uuid": "z", "state": "RECEIVED", "rank": R_RECEIVED, "hostname": W2}])
        got = store.get("z")
        assert got is not None and (got["state"], got["hostname"]) == ("RECEIVED", W2)
        # but LOST never replaces a finished task (a late write)
        store.upsert([{"uuid": "z", "state": "SUCCESS", "rank": RANK["SUCCESS"]}])
        store.upsert([{"uuid": "z", "state": LOST, "rank": RANK[LOST]}])
        assert store.get("z")["state"] == "SUCCESS"  # type: ignore[index]
    finally:
        store.close()
