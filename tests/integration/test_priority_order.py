"""A real worker starts waiting jobs most urgent first, on Redis and on RabbitMQ.

While no worker consumes, a shuffled mix of operator priorities (1-10, 10 = most urgent,
with repeats) is enqueued into one queue.  Then one worker starts with concurrency 1,
prefetch 1 and late ack: it holds at most one message and asks for the next only after
acknowledging the previous one, and every message was already waiting when it started.
So the start order must be exactly: priority descending, and FIFO within one priority.
With -c 1 tasks run one after another, so the order of ``date_done`` in the result
backend (``result_extended``) is the start order.
"""

from __future__ import annotations

import random

import pytest
from celery.result import AsyncResult

from tests.support.waiting import wait_until

TASK = "afirgen_tasks.cleanup.cleanup_temp_files"
QUEUE = "cleanup"
#: Repeats (1, 5, 10) check FIFO within one priority.
PRIORITIES = [1, 10, 5, 5, 3, 8, 1, 10, 7, 2, 5, 9, 6, 4]

pytestmark = pytest.mark.integration


def enqueue_shuffled(app, seed: int) -> list[tuple[int, int, str]]:
    """Publish PRIORITIES in a shuffled order; return ``(priority, send_index, task_id)``."""
    order = list(PRIORITIES)
    random.Random(seed).shuffle(order)
    sent = []
    for index, priority in enumerate(order):
        # A huge max age: the task finds nothing to delete, quickly.
        res = app.send_task(TASK, kwargs={"max_age_hours": 100_000}, queue=QUEUE, priority=priority)
        sent.append((priority, index, res.id))
    return sent


def observed_start_order(app, sent: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    results = {tid: AsyncResult(tid, app=app) for _, _, tid in sent}
    wait_until(
        lambda: all(r.state == "SUCCESS" for r in results.values()),
        timeout=60,
        interval=0.1,
        message=lambda: (
            "not all tasks succeeded: " + ", ".join(sorted({r.state for r in results.values()}))
        ),
    )
    done = {tid: r.date_done for tid, r in results.items()}
    assert all(done.values()), "date_done missing (is result_extended on?)"
    assert len(set(done.values())) == len(done), "two tasks finished at the same instant"
    return sorted(sent, key=lambda item: done[item[2]])


def assert_urgent_first(app, worker_factory, seed: int, **worker_kwargs) -> None:
    """Enqueue shuffled, start one -c 1 / prefetch 1 worker, assert the exact start order."""
    sent = enqueue_shuffled(app, seed)
    assert [p for p, _, _ in sent] != sorted(PRIORITIES, reverse=True), "shuffle left them sorted"
    worker_factory(queues=(QUEUE,), concurrency=1, prefetch_multiplier=1, app=app, **worker_kwargs)
    observed = observed_start_order(app, sent)
    expected = sorted(sent, key=lambda item: (-item[0], item[1]))
    assert [(p, i) for p, i, _ in observed] == [(p, i) for p, i, _ in expected]


def test_redis_starts_waiting_jobs_most_urgent_first(afirgen_app, worker_factory, redis_client):
    assert_urgent_first(afirgen_app, worker_factory, seed=1)
    assert redis_client.llen(QUEUE) == 0


# ---- RabbitMQ ---------------------------------------------------------------------------


@pytest.fixture
def rabbitmq_app(afirgen_settings, afirgen_env, rabbitmq_vhost, monkeypatch):
    """An app on a RabbitMQ vhost of the run's own (results in the test's Redis db)."""
    from celery._state import get_current_app

    from afirgen_tasks.factory import create_app
    from afirgen_tasks.settings import load_settings

    # Celery itself prefers $CELERY_BROKER_URL over the app's broker_url: keep them equal.
    monkeypatch.setenv("CELERY_BROKER_URL", rabbitmq_vhost.url)
    previous = get_current_app()
    app = create_app(load_settings())
    env = dict(afirgen_env, CELERY_BROKER_URL=rabbitmq_vhost.url)
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            queue = app.amqp.queues[QUEUE](conn.default_channel)
            queue.declare()
            queue.purge()  # the vhost is ours, but an earlier test in this run may have left jobs
        yield app, env
    finally:
        app.close()
        previous.set_current()


def test_rabbitmq_starts_waiting_jobs_most_urgent_first(rabbitmq_app, worker_factory):
    app, env = rabbitmq_app
    assert_urgent_first(app, worker_factory, seed=2, env=env)
