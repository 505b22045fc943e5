"""Worker crashes against real ``celery worker`` subprocesses: no job is lost.

* a pool process SIGKILLed mid-task: the job is requeued (``task_reject_on_worker_lost``
  with ``task_acks_late``) and runs again to SUCCESS;
* the whole worker SIGKILLed while it holds reserved jobs: they stay in Redis' ``unacked``
  hash, come back once the visibility timeout has passed, and another worker completes them;
* a queued job revoked, then its worker restarted (warm, or SIGKILLed and started again):
  the job stays revoked.

The slow job is a real library task, ``send_notification_email``, delivering to a local
SMTP sink that delays its reply to DATA (the demo's sink, :class:`tui.demo.SMTPSink`).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from celery.result import AsyncResult

from tests.support.chaos import TaskEventRecorder, backend_states
from tests.support.waiting import wait_until
from tui.demo import SMTPSink

pytestmark = pytest.mark.integration

NOTIFY = "afirgen_tasks.email.send_notification_email"
CLEANUP = "afirgen_tasks.cleanup.cleanup_temp_files"


@pytest.fixture
def smtp_sink():
    """A local SMTP sink that answers DATA after 3 s and never refuses a session."""
    sink = SMTPSink(delay=(3.0, 3.0), refuse_rate=0.0, seed=1).start()
    try:
        yield sink
    finally:
        sink.stop()


def with_smtp(env: dict[str, str], sink: SMTPSink, **extra: str) -> dict[str, str]:
    """``env`` plus the SMTP settings that deliver to ``sink`` (and ``extra`` overrides)."""
    return {
        **env,
        "AFIRGEN_SMTP_HOST": "127.0.0.1",
        "AFIRGEN_SMTP_PORT": str(sink.port),
        "AFIRGEN_SMTP_SECURITY": "none",
        **extra,
    }


def notify(app, n: int = 0) -> AsyncResult:
    return app.send_task(
        NOTIFY,
        kwargs={
            "recipient_email": f"duty{n}@example.org",
            "subject": f"Shift change {n}",
            "body": "Night shift at 22:00.",
        },
    )


def active_pid(worker, task_id: str) -> int | None:
    """The pool pid running ``task_id`` according to ``inspect().active()``, or None."""
    replies = worker.inspect(timeout=1.0).active() or {}
    for request in replies.get(worker.hostname) or []:
        if request.get("id") == task_id and request.get("worker_pid"):
            return int(request["worker_pid"])
    return None


def test_pool_process_killed_mid_task_job_is_redelivered_and_completes(
    afirgen_app, afirgen_env, smtp_sink, worker_factory
):
    worker = worker_factory(queues=("email",), concurrency=1, env=with_smtp(afirgen_env, smtp_sink))
    with TaskEventRecorder(afirgen_app) as events:
        result = notify(afirgen_app)
        # The run is inside the SMTP conversation (the sink holds its DATA reply for 3 s).
        wait_until(
            lambda: smtp_sink.sessions >= 1,
            timeout=20,
            message="the job never reached the SMTP sink",
        )
        pid = wait_until(
            lambda: active_pid(worker, result.id),
            timeout=5,
            message="inspect().active() never listed the job",
        )
        assert pid in worker.pool_pids()
        os.kill(pid, signal.SIGKILL)

        value = result.get(timeout=30)
        assert result.state == "SUCCESS"
        assert value["status"] == "ok" and value["delivery"] == "smtp"
        # The first run died before it recorded the delivery, so the second one sent it.
        assert value["already_sent"] is False
        wait_until(
            lambda: result.id in events.succeeded, timeout=5, message="no task-succeeded event"
        )
        assert events.received[result.id] == 2, "the job was not redelivered once"
        assert events.started[result.id] == 2, "the job did not run twice"
    assert smtp_sink.sessions == 2
    assert worker.is_alive() and pid not in worker.pool_pids(), (
        "the worker did not replace the dead pool process"
    )
    log = worker.log_text()
    assert "WorkerLostError" in log and f"{NOTIFY}[{result.id}] succeeded" in log


def test_whole_worker_killed_reserved_jobs_come_back_after_visibility_timeout(
    afirgen_app, afirgen_env, redis_client, smtp_sink, worker_factory
):
    visibility = 8
    env = with_smtp(
        afirgen_env,
        smtp_sink,
        CELERY_VISIBILITY_TIMEOUT=str(visibility),
        CELERY_TASK_TIME_LIMIT="6",
        CELERY_TASK_SOFT_TIME_LIMIT="5",
    )
    # The rescuer runs before the crash, like the rest of a real cluster: its periodic
    # sweep of the unacked index (not a fresh start) must bring the jobs back.
    rescuer = worker_factory(queues=("cleanup",), concurrency=1, env=env, name="rescuer")
    victim = worker_factory(
        queues=("email",), concurrency=1, prefetch_multiplier=4, env=env, name="victim"
    )
    with TaskEventRecorder(afirgen_app) as events:
        results = [notify(afirgen_app, n) for n in range(4)]
        ids = [r.id for r in results]
        # concurrency 1 x prefetch 4: one job runs, three wait in the worker's buffer; all
        # four are unacknowledged in Redis.  The fetch records a job in unacked before the
        # worker has read it, so wait for its task-received events too: a job killed before
        # that is delivered once, not twice, and proves nothing about reserved jobs.
        wait_until(
            lambda: (
                redis_client.hlen("unacked") == 4
                and events.running_on(victim.hostname)
                and all(events.received[i] == 1 for i in ids)
            ),
            timeout=20,
            message=lambda: (
                f"the victim never reserved 4 jobs ({redis_client.hlen('unacked')}, "
                f"received {dict(events.received)})"
            ),
        )
        reserved_at = time.monotonic()
        victim.kill(signal.SIGKILL, group=True)
        victim.proc.wait(5)
        assert not victim.pool_pids()
        killed_at = time.monotonic()

        reply = afirgen_app.control.add_consumer(
            "email", destination=[rescuer.hostname], reply=True, timeout=5
        )
        assert reply and "ok" in reply[0][rescuer.hostname], reply
        # Deadline: the visibility timeout, two restore sweeps, four 3-second deliveries and slack.
        deadline = visibility + 2 * 2 + 4 * 3 + 10
        wait_until(
            lambda: set(backend_states(redis_client, ids).values()) == {"SUCCESS"},
            timeout=deadline,
            interval=0.2,
            message=lambda: (
                f"jobs not completed: {backend_states(redis_client, ids)}; "
                f"unacked={redis_client.hlen('unacked')}"
            ),
        )
        done_at = time.monotonic()
        assert all(AsyncResult(i, app=afirgen_app).worker == rescuer.hostname for i in ids)
        # Every job was delivered twice: to the victim, then (restored) to the rescuer, and
        # not before the visibility timeout had passed since the victim reserved them.
        assert all(events.received[i] == 2 for i in ids), dict(events.received)
        first_rescue = min(
            t for i in ids for t, host in events.received_at[i] if host == rescuer.hostname
        )
        assert first_rescue - reserved_at >= visibility - 1.0
    assert redis_client.hlen("unacked") == 0
    print(
        f"\nworker SIGKILLed holding 4 jobs: back after {first_rescue - killed_at:.1f} s "
        f"(visibility timeout {visibility} s), all done {done_at - killed_at:.1f} s after the kill"
    )


# ---- revoked queued job + restart -------------------------------------------------------


def old_file(directory: Path, name: str) -> Path:
    """A file two days old: ``cleanup_temp_files(max_age_hours=1)`` deletes it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("stale")
    two_days_ago = time.time() - 2 * 86400
    os.utime(path, (two_days_ago, two_days_ago))
    return path


@pytest.mark.parametrize("restart", ["warm", "crash"])
def test_revoked_queued_job_stays_revoked_after_worker_restart(
    restart, afirgen_app, afirgen_env, afirgen_settings, redis_client, smtp_sink, worker_factory
):
    """tests/integration/test_revoke_persistence.py publishes the revoked id after a clean stop;
    here the job is already waiting in the queue when it is revoked, and the worker is
    restarted warm (SIGTERM) or after a crash (SIGKILL: no exit handler runs)."""
    victim_file = old_file(afirgen_settings.paths_temp_dir, "victim.txt")
    worker = worker_factory(
        queues=("email", "cleanup"),
        concurrency=1,
        env=with_smtp(afirgen_env, smtp_sink),
        name="keeper",
    )
    blocker = notify(afirgen_app)
    wait_until(
        lambda: smtp_sink.sessions >= 1,
        timeout=20,
        message="the blocker never reached the SMTP sink",
    )
    # Prefetch 1 and the blocker unacknowledged: the victim waits in the broker's list.
    queued = afirgen_app.send_task(
        CLEANUP, kwargs={"max_age_hours": 1}, queue="cleanup", priority=1
    )
    wait_until(
        lambda: sum(redis_client.llen(k) for k in redis_client.scan_iter("cleanup*")) == 1,
        timeout=5,
        message="the victim is not waiting in the cleanup queue",
    )
    afirgen_app.control.revoke(queued.id)
    wait_until(
        lambda: queued.id in ((worker.inspect().revoked() or {}).get(worker.hostname) or []),
        timeout=10,
        message="the worker never listed the job as revoked",
    )

    if restart == "warm":
        assert worker.stop() == 0  # waits for the blocker, saves the state db
        assert blocker.get(timeout=5)["status"] == "ok"
    else:
        worker.kill(signal.SIGKILL, group=True)
        worker.proc.wait(5)
    marker = afirgen_app.send_task(
        CLEANUP, kwargs={"max_age_hours": 100_000}, queue="cleanup", priority=1
    )
    worker.start().wait_ready()

    assert marker.get(timeout=30)["status"] == "ok"  # FIFO: the worker got past the victim
    assert queued.state == "REVOKED"
    assert victim_file.exists(), f"the revoked job ran after a {restart} restart"
    assert f"Discarding revoked task: {CLEANUP}[{queued.id}]" in worker.log_text()
