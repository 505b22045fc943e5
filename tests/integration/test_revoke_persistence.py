"""Revoked task ids survive a worker restart (``worker_state_db``, one file per node name).

What proves persistence: the id is revoked while the worker runs (so only that worker's
memory knows it), the worker is stopped, and only *then* is a task with that id
published.  A restarted worker with the same node name must discard it (state REVOKED,
side effect absent).  Redis pub/sub keeps no broadcast for later, so the only way the new
process can know the id is the state file.  The control run revokes a second id the same
way but restarts under another node name (another state file): that task runs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from uuid import uuid4

import pytest
from celery.result import AsyncResult

from tests.support.waiting import wait_until

TASK = "afirgen_tasks.cleanup.cleanup_temp_files"
QUEUE = "cleanup"

pytestmark = pytest.mark.integration


def old_file(directory: Path, name: str) -> Path:
    """A file two days old: ``cleanup_temp_files(max_age_hours=1)`` deletes it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("stale")
    two_days_ago = time.time() - 2 * 86400
    os.utime(path, (two_days_ago, two_days_ago))
    return path


def revoke_while_running(app, worker, task_id: str) -> None:
    app.control.revoke(task_id)
    wait_until(
        lambda: task_id in ((worker.inspect().revoked() or {}).get(worker.hostname) or []),
        timeout=10,
        message=f"{worker.hostname} never listed {task_id} as revoked",
    )


def publish_and_drain(app, task_id: str):
    """Publish the task under ``task_id``, then a marker task behind it (same priority, FIFO)."""
    app.send_task(TASK, kwargs={"max_age_hours": 1}, task_id=task_id, queue=QUEUE, priority=1)
    return app.send_task(TASK, kwargs={"max_age_hours": 100_000}, queue=QUEUE, priority=1)


def test_revoked_id_is_discarded_after_restart(afirgen_app, afirgen_settings, worker_factory):
    temp = afirgen_settings.paths_temp_dir
    data = afirgen_settings.paths_data_dir

    # --- with the state file: same node name ------------------------------------------
    victim = old_file(temp, "victim.txt")
    revoked_id = str(uuid4())
    # solo pool: the revoked check happens in the consumer, before any pool is involved
    worker = worker_factory(queues=(QUEUE,), name="keeper", pool="solo")
    revoke_while_running(afirgen_app, worker, revoked_id)
    assert worker.stop() == 0
    assert list(data.glob("worker-keeper*")), (
        f"no state file in {sorted(p.name for p in data.iterdir())}"
    )

    marker = publish_and_drain(afirgen_app, revoked_id)
    worker.start().wait_ready()
    assert marker.get(timeout=30)["status"] == "ok"  # the worker got past the revoked message
    assert AsyncResult(revoked_id, app=afirgen_app).state == "REVOKED"
    assert victim.exists(), "the revoked task ran after the restart"
    assert f"Discarding revoked task: {TASK}[{revoked_id}]" in worker.log_text()
    worker.stop()

    # --- control: another node name has no state for it, so the task runs ---------------
    control_id = str(uuid4())
    worker.start().wait_ready()
    revoke_while_running(afirgen_app, worker, control_id)
    worker.stop()
    marker = publish_and_drain(afirgen_app, control_id)
    worker_factory(queues=(QUEUE,), name="newcomer", pool="solo")
    assert marker.get(timeout=30)["status"] == "ok"
    control = AsyncResult(control_id, app=afirgen_app)
    assert control.state == "SUCCESS" and control.result["deleted"] == 1
    assert not victim.exists()
