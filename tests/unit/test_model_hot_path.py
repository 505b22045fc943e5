"""The paths `ClusterModel.apply` gained for issue 17 (20k events/s): queue flow counted while
applying, the worker-event fields one by one, and records the garbage collector skips."""

from __future__ import annotations

import gc
import platform

import pytest

from tui.core.model import ClusterModel, LostInfo, TaskRecord

W1 = "celery@w1"
T0 = 1_700_000_000.0


def ev(kind: str, **fields):
    base = {"type": kind, "timestamp": T0, "local_received": T0}
    base.update(fields)
    return base


def sent(uuid: str, queue: object = "email", **fields):
    return ev("task-sent", uuid=uuid, hostname="gen1@api", queue=queue, **fields)


def received(uuid: str, host: str = W1, **fields):
    return ev("task-received", uuid=uuid, hostname=host, **fields)


# ---- queue flow: in = task-sent into a queue, out = task-received off it ------------------
def test_flow_counts_sent_into_and_received_off_each_queue():
    model = ClusterModel()
    ch = model.apply([sent("a"), sent("b"), sent("c", queue="reports"), received("a")])
    assert ch.flow == {"email": [2, 1], "reports": [1, 0]}
    # a later batch: out is counted from the queue the task-sent gave the task
    ch = model.apply([received("b"), received("c"), ev("task-started", uuid="c", hostname=W1)])
    assert ch.flow == {"email": [0, 1], "reports": [0, 1]}
    # nothing sent or received: no flow (the console then shows the queues every 4th tick)
    assert model.apply([ev("task-succeeded", uuid="c", hostname=W1)]).flow == {}


def test_flow_counts_a_receive_that_overtook_its_send_in_the_same_batch():
    model = ClusterModel()
    ch = model.apply([received("a"), received("b"), sent("a")])
    # "a" is out of email (its queue was known by the end of the batch); "b" has no
    # task-sent at all: its queue is unknown, so it is not counted anywhere
    assert ch.flow == {"email": [1, 1]}
    # b's task-sent in a later batch counts b into the queue, not out again
    assert model.apply([sent("b")]).flow == {"email": [1, 0]}


def test_flow_counts_every_sent_and_received_event_even_duplicates_and_late_ones():
    model = ClusterModel()
    model.apply([sent("a"), received("a"), ev("task-succeeded", uuid="a", hostname=W1)])
    # a duplicate received after the task finished does not move it, but was a delivery
    ch = model.apply([received("a"), sent("a")])
    assert ch.flow == {"email": [1, 1]}
    assert model.get_task("a").state == "SUCCESS"


def test_flow_skips_what_the_model_skips_and_queues_it_cannot_hold():
    model = ClusterModel()
    ch = model.apply(
        [
            sent("a", queue="x" * 300),  # too long: the field is dropped (fields_invalid)
            sent("b", queue=7),
            {"type": "task-sent", "uuid": "c", "queue": "email"},  # no hostname: skipped
            sent("d", queue=""),  # an empty name is a name (the validator lets it through)
        ]
    )
    assert ch.flow == {"": [1, 0]}
    assert model.fields_invalid == 2 and model.events_skipped == 1


def test_flow_is_empty_for_changes_made_outside_apply():
    model = ClusterModel()
    model.merge_task_info("a", state="SENT", queue="email")
    model.mark_revoke_requested("a")
    ch = model.apply([])
    assert ch.tasks == {"a"} and ch.flow == {}


def test_flow_counts_a_task_received_and_evicted_in_the_same_batch():
    # it left its queue whether or not the console can still hold it
    model = ClusterModel(max_tasks=2)
    model.apply([sent("a"), sent("b")])
    ch = model.apply([received("a"), sent("c"), sent("d")])
    assert model.get_task("a") is None and "a" not in ch.tasks
    assert ch.flow == {"email": [2, 1]}


def test_flow_keys_share_the_models_queue_strings():
    model = ClusterModel()
    first = "".join(["em", "ail"])
    model.apply([sent("a", queue=first)])
    ch = model.apply([sent("b", queue="".join(["e", "mail"]))])
    (key,) = ch.flow
    assert key is model.get_task("a").queue is model.get_task("b").queue


# ---- worker events: each field on its own ---------------------------------------------------
def heartbeat(**fields):
    fields.setdefault("hostname", W1)
    return ev("worker-heartbeat", **fields)


def test_heartbeat_fields_are_copied_and_bad_ones_counted():
    model = ClusterModel()
    model.apply(
        [
            heartbeat(
                freq=2,
                active=3,
                processed=40,
                pid=4000,
                loadavg=[0.5, 1, 2.25],
                sw_ident="py-celery",
                sw_ver="5.7.0",
                sw_sys="Linux",
            )
        ]
    )
    w = model.get_worker(W1)
    assert (w.freq, w.active, w.processed, w.pid) == (2.0, 3, 40, 4000)
    assert w.freq.__class__ is float
    assert w.loadavg == (0.5, 1.0, 2.25) and all(x.__class__ is float for x in w.loadavg)
    assert (w.sw_ident, w.sw_ver, w.sw_sys) == ("py-celery", "5.7.0", "Linux")
    assert model.fields_invalid == 0
    model.apply(
        [
            heartbeat(
                freq="2",
                active=1.5,
                processed=None,
                pid="4000",
                loadavg=[1.0, 2.0, "x"],
                sw_ident=["py-celery"],
                sw_ver="v" * 300,
                sw_sys=b"Linux",
            )
        ]
    )
    # seven bad fields counted (processed=None is "absent"); the good values stay
    assert model.fields_invalid == 7
    assert (w.freq, w.active, w.processed, w.pid) == (2.0, 3, 40, 4000)
    assert w.loadavg == (0.5, 1.0, 2.25) and w.sw_ver == "5.7.0"


@pytest.mark.parametrize(
    ("loadavg", "expected", "invalid"),
    [
        ([0.1, 0.2, 0.3], (0.1, 0.2, 0.3), 0),
        ((0.1, 0.2, 0.3), (0.1, 0.2, 0.3), 0),
        ([1, 2, 3], (1.0, 2.0, 3.0), 0),
        ([0.5], (0.5,), 0),
        ([], (), 0),
        ([0.1, 0.2, 0.3, 0.4], None, 1),
        ([True, 0.2, 0.3], None, 1),
        ([0.1, None, 0.3], None, 1),
        ("0.1 0.2 0.3", None, 1),
        ({"a": 1.0}, None, 1),
    ],
)
def test_heartbeat_loadavg_shapes(loadavg, expected, invalid):
    model = ClusterModel()
    model.apply([heartbeat(loadavg=loadavg)])
    assert model.get_worker(W1).loadavg == expected
    assert model.fields_invalid == invalid


def test_out_of_order_heartbeats_keep_the_latest_sign_of_life():
    model = ClusterModel()
    model.apply([heartbeat(local_received=T0 + 10, active=2), heartbeat(local_received=T0 + 5)])
    w = model.get_worker(W1)
    assert w.last_heartbeat == T0 + 10
    # a late heartbeat's fields still apply (as Celery's State does); liveness does not regress
    model.apply([heartbeat(local_received=T0 + 1, active=7)])
    assert w.last_heartbeat == T0 + 10 and w.active == 7
    # task events are signs of life too, in any order within a batch
    model.apply(
        [
            received("a", local_received=T0 + 30),
            ev("task-started", uuid="a", hostname=W1, local_received=T0 + 20),
        ]
    )
    assert w.last_heartbeat == T0 + 30
    assert model.refresh_liveness(T0 + 33) == set() and w.online
    assert model.refresh_liveness(T0 + 40) == {W1} and not w.online
    # an old heartbeat arriving late brings the worker back online, but not its clock
    ch = model.apply([heartbeat(local_received=T0 + 2)])
    assert w.online and w.last_heartbeat == T0 + 30 and W1 in ch.workers


def test_a_heartbeat_from_a_new_pid_marks_the_old_process_tasks_lost():
    model = ClusterModel()
    model.apply([heartbeat(pid=100), received("a", timestamp=T0 - 5), heartbeat(pid=100)])
    assert model.get_task("a").state == "RECEIVED"
    model.apply([heartbeat(pid=200, timestamp=T0)])
    rec = model.get_task("a")
    assert rec.state == "LOST" and rec.lost is not None and rec.lost.why == "worker restarted"
    assert model.get_worker(W1).pid == 200


def test_worker_strings_are_shared_between_workers():
    model = ClusterModel()
    model.apply(
        [
            heartbeat(hostname="celery@a", sw_ver="".join(["5.", "7.0"])),
            heartbeat(hostname="celery@b", sw_ver="".join(["5.7", ".0"])),
        ]
    )
    assert model.get_worker("celery@a").sw_ver is model.get_worker("celery@b").sw_ver


# ---- task records and the garbage collector ---------------------------------------------------
@pytest.mark.skipif(
    platform.python_implementation() != "CPython", reason="untracking is CPython's C API"
)
def test_task_records_are_not_visited_by_the_cyclic_garbage_collector():
    model = ClusterModel()
    model.apply([sent("a"), received("a")])
    model.merge_task_info("b", state="STARTED")  # history load, inspect
    assert not gc.is_tracked(model.get_task("a"))
    assert not gc.is_tracked(model.get_task("b"))
    assert gc.is_tracked(TaskRecord("c"))  # only the model's own records


def test_what_a_record_holds_cannot_form_a_reference_cycle():
    """Untracking is safe only while a record holds atomic values and its LostInfo: even
    hostile events must not put a container into one."""
    model = ClusterModel(max_tasks=50)
    junk: list[object] = [[1, 2], {"a": [1]}, ("t", ["x"]), b"raw", bytearray(b"raw"), 2**70]
    batch = []
    for i, value in enumerate(junk * 3):
        u = f"t{i}"
        batch += [
            sent(u, queue=value, name=value, args=value, kwargs=value, retries=value),
            received(u, root_id=value, parent_id=value, eta=value, expires=value),
            ev("task-retried", uuid=u, hostname=W1, exception=value, traceback=value),
            ev("task-succeeded", uuid=u, hostname=W1, result=value, runtime=value),
        ]
    batch.append(ev("worker-offline", hostname="celery@gone"))
    model.apply(batch)
    model.merge_task_info("m", args=[1], kwargs={"a": 1}, result={"x": [1]}, state="STARTED")
    model.merge_task_info("m2", worker="celery@gone", state="STARTED")
    model.apply([ev("worker-offline", hostname="celery@gone")])
    atomic = (str, float, int, bool, type(None))
    for rec in model.iter_tasks():
        for name in TaskRecord.__slots__:
            value = getattr(rec, name)
            if name == "lost" and value is not None:
                assert isinstance(value, LostInfo)
                assert all(
                    isinstance(getattr(value, f), atomic) for f in LostInfo.__dataclass_fields__
                )
            else:
                assert isinstance(value, atomic), (name, type(value))
