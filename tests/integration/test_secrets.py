"""A whole session against a Redis ACL user with a password: the password appears nowhere —
not on screen, not in notifications, the audit log, the worker log or ``--check`` output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
import redis

from afirgen_tasks.factory import create_app
from afirgen_tasks.settings import load_settings
from tests.support.restartable_redis import RestartableRedis
from tui.actions import EnqueueRequest
from tui.sources.cluster import BrokerSources
from tui.ui.app import AfirgenApp
from tui.ui.screens.task_detail import TaskDetailScreen
from tui.ui.widgets.panes import TasksPane

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("redis-server") is None, reason="needs redis-server on PATH for an ACL user"
    ),
]

PASSWORD = "Zq9-s3cr3t-PW-4711"
USER = "afirgen_ops"


@pytest.fixture
def acl_redis():
    server = RestartableRedis()
    server.start()
    admin = redis.Redis(port=server.port)
    # a dedicated ACL user; the default user is switched off, so only the password gets in
    admin.execute_command("ACL", "SETUSER", USER, "on", f">{PASSWORD}", "~*", "&*", "+@all")
    admin.execute_command("ACL", "SETUSER", "default", "off")
    admin.close()
    yield server
    server.cleanup()


async def until(pilot, predicate, timeout, message):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"timed out waiting for {message}")


async def test_password_never_appears_anywhere(
    acl_redis, tmp_path, monkeypatch, worker_factory, afirgen_env
):
    url = f"redis://{USER}:{PASSWORD}@127.0.0.1:{acl_redis.port}/0"
    env = {**afirgen_env, "CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(
        None,
        console_refresh_interval=0.1,
        console_queue_poll_interval=0.3,
        console_inspect_interval=1.0,
        console_control_timeout=1.0,
    )
    assert PASSWORD not in repr(settings)
    celery_app = create_app(settings, main="secrets")
    worker = worker_factory(queues=("default", "cleanup"), env=env, app=celery_app)

    seen: list[str] = []
    sources = BrokerSources(settings, celery_app)
    app = AfirgenApp(settings, sources, celery_app=celery_app)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(
            pilot,
            lambda: app.console_screen.connection_state()[0] == "● connected",
            10,
            "connected",
        )
        await until(
            pilot, lambda: app.query_one("#workers").has_key(worker.hostname), 15, "worker row"
        )
        seen.append(app.export_screenshot())
        out = app.actions.enqueue(
            EnqueueRequest("afirgen_tasks.cleanup.cleanup_temp_files", [], {}, "cleanup", 7)
        )
        assert out.ok
        app.actions.pool_resize([worker.hostname], 1)  # prefork: accepted
        app.actions.purge("cleanup", "cleanup", None)
        tasks = app.query_one("#tasks", TasksPane)
        await until(pilot, lambda: tasks.has_key(out.task_id), 15, "task row")
        app.console_screen.action_open_detail(out.task_id)
        await pilot.pause()
        detail = app.screen
        assert isinstance(detail, TaskDetailScreen)
        # (not workers.wait_for_complete(): the app's exclusive polls get cancelled by design)
        await until(
            pilot,
            lambda: detail.backend is not None or bool(detail.backend_error),
            10,
            "backend answer",
        )
        seen.append(app.screen.render_text().plain)
        seen.append(app.export_screenshot())
        await pilot.press("escape")
        seen.extend(str(n.message) for n in app._notifications)
        seen.append(str(app.query_one("#status").render()))

    seen.append(settings.console_audit_log.read_text())
    seen.append(worker.log_text())
    check = subprocess.run(
        [sys.executable, "-m", "tui", "--check", "--json", "--timeout", "5"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=30,
    )
    seen.extend([check.stdout, check.stderr])
    bad = subprocess.run(
        [sys.executable, "-m", "tui", "--check", "--timeout", "3"],
        capture_output=True,
        text=True,
        env={**os.environ, **env, "CELERY_BROKER_URL": url.replace(PASSWORD, PASSWORD + "x")},
        timeout=30,
    )
    seen.extend([bad.stdout, bad.stderr])
    assert check.returncode in (0, 1) and bad.returncode == 2
    everything = "\n".join(seen)
    assert USER in everything  # the output is there (user names are not secret)...
    assert PASSWORD not in everything  # ...the password is not
    celery_app.close()
