"""Chaos: jobs across all five queues and priorities 1-10 while workers are SIGKILLed and restarted.

Three real workers (prefork, concurrency 2) consume every queue.  While jobs are being
published at a steady rate, a seeded schedule kills, every 2-5 s, either a whole worker
(SIGKILL to its process group: main process and pool; its jobs stay in Redis' ``unacked``
hash until the visibility timeout) or one pool process (the job is requeued at once by
``task_reject_on_worker_lost``), preferring workers that are running jobs; a killed worker
is started again 0.5-2 s later.  At the end every job must be SUCCESS in the result
backend: ``lost = 0``.

``AFIRGEN_TEST_CHAOS_JOBS`` (default 120, ~1 min) sets the number of jobs, ``AFIRGEN_TEST_CHAOS_SEED``
the schedule, ``AFIRGEN_TEST_CHAOS_RATE`` the jobs published per second (default 5); they
carry the ``AFIRGEN_TEST_`` prefix because tests/conftest.py removes every other AFIRGEN_*
variable from the session.  The full run documented in docs/reliability.md::

    AFIRGEN_TEST_CHAOS_JOBS=500 python -m pytest tests/integration/test_chaos.py -s

The figures (jobs, kills, redeliveries, lost) are printed to the terminal even without ``-s``.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from afirgen_tasks.routing import QUEUES
from tests.support.chaos import TaskEventRecorder, backend_states, broker_locations
from tests.support.waiting import wait_until
from tui.demo import SMTPSink

pytestmark = pytest.mark.integration

JOBS = int(os.environ.get("AFIRGEN_TEST_CHAOS_JOBS", "120"))
SEED = int(os.environ.get("AFIRGEN_TEST_CHAOS_SEED", "20261124"))
RATE = float(os.environ.get("AFIRGEN_TEST_CHAOS_RATE", "5"))
WORKERS = 3
CONCURRENCY = 2
KILL_GAP = (2.0, 5.0)
RESTART_DELAY = (0.5, 2.0)
#: Probability that a kill takes the whole worker rather than one pool process.
WHOLE_WORKER = 0.6
VISIBILITY_TIMEOUT = 8
FIR_COUNT = 60


def job_for(rng: random.Random, queue: str) -> tuple[str, dict]:
    """A real library task and its arguments for ``queue`` (``default`` gets routed-elsewhere tasks)."""
    today = datetime.now(UTC).date()
    n = rng.randrange(1_000_000)
    choices: dict[str, list[tuple[str, dict]]] = {
        "email": [
            (
                "afirgen_tasks.email.send_notification_email",
                {
                    "recipient_email": f"duty{n}@example.org",
                    "subject": f"Chaos {n}",
                    "body": "Shift change at 22:00.",
                },
            ),
            (
                "afirgen_tasks.email.send_fir_confirmation_email",
                {"fir_id": rng.randint(1, FIR_COUNT), "recipient_email": f"c{n}@example.org"},
            ),
        ],
        "reports": [
            ("afirgen_tasks.reports.generate_pdf_report", {"fir_id": rng.randint(1, FIR_COUNT)}),
            (
                "afirgen_tasks.reports.generate_excel_report",
                {"fir_ids": rng.sample(range(1, FIR_COUNT + 1), 5)},
            ),
        ],
        "analytics": [
            ("afirgen_tasks.analytics.update_dashboard_stats", {}),
            (
                "afirgen_tasks.analytics.process_analytics_data",
                {
                    "start_date": (today - timedelta(days=rng.randint(30, 700))).isoformat(),
                    "end_date": today.isoformat(),
                },
            ),
        ],
        "cleanup": [
            ("afirgen_tasks.cleanup.cleanup_temp_files", {"max_age_hours": 24}),
            ("afirgen_tasks.cleanup.clear_expired_cache", {}),
        ],
        "default": [
            ("afirgen_tasks.cleanup.cleanup_temp_files", {"max_age_hours": 48}),
            ("afirgen_tasks.analytics.update_dashboard_stats", {}),
        ],
    }
    return rng.choice(choices[queue])


def drain(
    client, ids: list[str], timeout: float, settle: float = 3 * VISIBILITY_TIMEOUT
) -> tuple[dict[str, str], list[str]]:
    """Wait until every job is SUCCESS; return the states and the ids that are not.

    Gives up early once the stragglers have had no message in the broker (queue lists or
    the unacked hash) for ``settle`` seconds: nothing can bring those back.
    """
    deadline = time.monotonic() + timeout
    gone_since: float | None = None
    while True:
        states = backend_states(client, ids)
        stragglers = [i for i, state in states.items() if state != "SUCCESS"]
        now = time.monotonic()
        if not stragglers or now >= deadline:
            return states, stragglers
        if any(broker_locations(client, stragglers).values()) or any(
            states[i] != "PENDING" for i in stragglers
        ):
            gone_since = None
        elif gone_since is None:
            gone_since = now
        elif now - gone_since >= settle:
            return states, stragglers
        time.sleep(0.5)


def test_chaos_every_job_completes_while_workers_are_killed(
    afirgen_app,
    afirgen_env,
    afirgen_settings,
    redis_client,
    worker_factory,
    capsys,
    record_property,
):
    from afirgen_tasks.records import create_sample_db

    create_sample_db(afirgen_settings.fir_db_path, count=FIR_COUNT)
    sink = SMTPSink(delay=(0.2, 1.0), refuse_rate=0.0, seed=SEED).start()
    env = {
        **afirgen_env,
        "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
        "CELERY_TASK_TIME_LIMIT": "6",
        "CELERY_TASK_SOFT_TIME_LIMIT": "5",
        "AFIRGEN_SMTP_HOST": "127.0.0.1",
        "AFIRGEN_SMTP_PORT": str(sink.port),
        "AFIRGEN_SMTP_SECURITY": "none",
    }
    rng = random.Random(SEED)
    workers = [
        worker_factory(
            queues=QUEUES, concurrency=CONCURRENCY, env=env, name=f"chaos{i}", start=False
        )
        for i in range(WORKERS)
    ]
    started_at: dict[str, float] = {}
    for w in workers:
        w.start()
        started_at[w.name] = time.monotonic()
    for w in workers:
        w.wait_ready(60)
        started_at[w.name] = float("-inf")  # it answered a ping: up, whatever events say

    ids: list[str] = []
    names: dict[str, str] = {}
    published_at: dict[str, float] = {}
    kill_log: list[tuple[float, str, str]] = []
    sent: Counter[tuple[str, int]] = Counter()
    kills: Counter[str] = Counter()
    in_flight_at_kills = 0
    restart_at: dict[str, float] = {}
    begun = time.monotonic()
    try:
        with TaskEventRecorder(afirgen_app) as events:

            def is_up(w) -> bool:
                """Alive and announced itself (worker-online) since its last start."""
                return (
                    w.is_alive()
                    and events.online.get(w.hostname, float("-inf")) >= started_at[w.name]
                )

            next_kill = time.monotonic() + rng.uniform(*KILL_GAP)
            while len(ids) < JOBS or restart_at:
                now = time.monotonic()
                due = min(JOBS, int((now - begun) * RATE) + 1)
                while len(ids) < due:
                    queue, priority = rng.choice(QUEUES), rng.randint(1, 10)
                    name, kwargs = job_for(rng, queue)
                    task_id = afirgen_app.send_task(
                        name, kwargs=kwargs, queue=queue, priority=priority
                    ).id
                    ids.append(task_id)
                    names[task_id] = name
                    published_at[task_id] = time.monotonic()
                    sent[queue, priority] += 1
                for w in workers:
                    if w.name in restart_at and now >= restart_at[w.name]:
                        del restart_at[w.name]
                        w.start()
                        started_at[w.name] = time.monotonic()
                if len(ids) < JOBS and now >= next_kill:
                    next_kill = now + rng.uniform(*KILL_GAP)
                    up = [w for w in workers if is_up(w)]
                    busy = [w for w in up if events.running_on(w.hostname)]
                    whole = rng.random() < WHOLE_WORKER and len(up) >= 2
                    if up:
                        victim = rng.choice(busy or up)
                        running = events.running_on(victim.hostname)
                        if whole:
                            victim.kill(signal.SIGKILL, group=True)
                            victim.proc.wait(5)
                            restart_at[victim.name] = time.monotonic() + rng.uniform(*RESTART_DELAY)
                            in_flight_at_kills += len(running)
                            kills["worker"] += 1
                            kill_log.append(
                                (round(time.monotonic() - begun, 2), "worker", victim.name)
                            )
                        else:
                            pool = victim.pool_pids()
                            targets = sorted(set(running.values()) & set(pool)) or pool
                            if targets:
                                os.kill(rng.choice(targets), signal.SIGKILL)
                                in_flight_at_kills += bool(set(running.values()) & set(targets))
                                kills["pool"] += 1
                                kill_log.append(
                                    (round(time.monotonic() - begun, 2), "pool", victim.name)
                                )
                time.sleep(0.05)
            published = time.monotonic()

            states, stragglers = drain(redis_client, ids, timeout=60 + JOBS * 0.1)
            finished = time.monotonic()
            if not stragglers:
                wait_until(
                    lambda: redis_client.hlen("unacked") == 0,
                    timeout=10,
                    message="messages left unacked",
                )
            logs = "".join(w.log_text() for w in workers)
            diagnosis = {
                i: {
                    "task": names[i],
                    "state": states[i],
                    "received_by_a_worker": f"[{i}] received" in logs,
                    "in_broker": where,
                    "published_s": round(published_at[i] - begun, 2),
                    "kills_after": [
                        k for k in kill_log if 0 <= k[0] - (published_at[i] - begun) < 1.0
                    ],
                }
                for i, where in broker_locations(redis_client, stragglers).items()
            }
            redeliveries = events.redeliveries(ids)
            repeated = events.repeated_runs(ids)
    finally:
        sink.stop()

    # A job that no worker ever logged as received and that is in no queue list and not in
    # the unacked hash was popped by a worker SIGKILLed before it recorded the job as
    # unacked: stock kombu's BRPOP fetch has that window, afirgen_tasks.redis_transport's
    # atomic fetch closes it.  Counted apart so a regression there is named as such.
    fetch_window = [
        i for i, d in diagnosis.items() if not d["received_by_a_worker"] and not d["in_broker"]
    ]
    lost = len(stragglers)
    figures = {
        "jobs": len(ids),
        "queues": len({q for q, _ in sent}),
        "priorities": len({p for _, p in sent}),
        "workers": WORKERS,
        "kills": sum(kills.values()),
        "worker_kills": kills["worker"],
        "pool_kills": kills["pool"],
        "jobs_in_flight_at_kills": in_flight_at_kills,
        "redeliveries": redeliveries,
        "repeated_runs": repeated,
        "smtp_sessions": sink.sessions,
        "lost": lost,
        "lost_in_fetch_window": len(fetch_window),
        "seed": SEED,
        "publish_s": round(published - begun, 1),
        "total_s": round(finished - begun, 1),
    }
    for key, value in figures.items():
        record_property(f"chaos_{key}", value)
    # Captured (shown with -s or on failure), not printed among the progress dots.
    print("\nchaos: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    for task_id, d in diagnosis.items():
        print(f"chaos: not completed {task_id}: {d}")

    assert lost == 0, diagnosis
    assert len(ids) == JOBS and figures["queues"] == len(QUEUES)
    assert figures["priorities"] == 10 or JOBS < 50
    assert kills["worker"] >= 1 and kills["pool"] >= 1, kills
    assert redeliveries >= 1, "no kill hit a job: the chaos proved nothing"
