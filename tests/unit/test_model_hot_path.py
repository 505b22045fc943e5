"""The paths `ClusterModel.apply` gained for issue 17 (20k events/s): queue flow counted while
applying."""

from __future__ import annotations

from tui.core.model import ClusterModel

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
