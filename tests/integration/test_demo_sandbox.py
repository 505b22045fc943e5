"""``--demo``: the sandbox comes alive (workers, jobs at every priority, failures) and leaves
nothing behind — no processes, no files."""

from __future__ import annotations

import os
import time

import pytest

from tui.demo import Sandbox

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("kind", ["redis-server", "fakeredis"])
def test_demo_sandbox_runs_jobs_and_cleans_up(kind, monkeypatch):
    if kind == "fakeredis":
        monkeypatch.setenv("AFIRGEN_DEMO_FAKEREDIS", "1")
    elif not __import__("shutil").which("redis-server"):
        pytest.skip("redis-server is not on PATH")
    sandbox = Sandbox(jobs_per_second=20)
    try:
        sandbox.start()
        assert sandbox.redis_kind == (
            "embedded fakeredis" if kind == "fakeredis" else "redis-server"
        )
        from afirgen_tasks.factory import create_app

        app = create_app(sandbox.settings(), main="demo-probe")
        deadline = time.monotonic() + 60
        replies = []
        while time.monotonic() < deadline and len(replies) < 2:
            replies = app.control.ping(timeout=0.5)
        assert len(replies) == 2, f"two demo workers answer ping: {replies}"
        # jobs flow: the generator has sent some and workers finished them
        deadline = time.monotonic() + 60
        done = 0
        while time.monotonic() < deadline and (sandbox.jobs_sent < 20 or done < 5):
            stats = app.control.inspect(timeout=1).stats() or {}
            done = sum(sum(s.get("total", {}).values()) for s in stats.values())
            time.sleep(0.2)
        assert sandbox.jobs_sent >= 20 and done >= 5
        pids = [p.pid for p in sandbox._workers]
        if sandbox._redis_proc is not None:
            pids.append(sandbox._redis_proc.pid)
        directory = sandbox.dir
        app.close()
    finally:
        sandbox.stop()
    assert not directory.exists(), "the sandbox directory is removed"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)], "every process the sandbox started is gone"


def test_demo_stop_is_quick_with_jobs_running_on_both_workers():
    """``q`` in the demo gave the shell back after 5-6 s: the workers were stopped one after
    another, each waiting out its running job.  Now they are stopped together, briefly."""
    if not __import__("shutil").which("redis-server"):
        pytest.skip("redis-server is not on PATH")
    sandbox = Sandbox(jobs_per_second=0.001)  # only the jobs this test sends
    try:
        sandbox.start()
        from afirgen_tasks.factory import create_app

        app = create_app(sandbox.settings(), main="demo-probe")
        deadline = time.monotonic() + 60
        replies = []
        while time.monotonic() < deadline and len(replies) < 2:
            replies = app.control.ping(timeout=0.5)
        assert len(replies) == 2, f"two demo workers answer ping: {replies}"
        assert sandbox._smtp is not None
        sandbox._smtp.delay = (20.0, 20.0)  # every e-mail job now runs for 20 s
        sandbox._smtp.refuse_rate = 0.0
        for n in range(4):
            app.send_task(
                "afirgen_tasks.email.send_notification_email",
                args=[f"officer{n}@police.example.in", "stop test", "body"],
            )
        deadline = time.monotonic() + 30
        busy: dict = {}
        while time.monotonic() < deadline and len(busy) < 2:
            busy = {h: a for h, a in (app.control.inspect(timeout=1).active() or {}).items() if a}
        assert len(busy) == 2, f"both workers are running a job: {busy}"
        pids = [p.pid for p in sandbox._workers]
        app.close()
        started = time.monotonic()
        sandbox.stop()
        took = time.monotonic() - started
    finally:
        sandbox.stop()
    assert took < 4.0, f"Sandbox.stop() took {took:.1f}s with a job running on each worker"
    assert not [p for p in pids if _alive(p)], "every worker is gone"
