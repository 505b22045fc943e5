"""Issue 16 (several clusters) against a real Redis: two clusters are two dbs of the test's
own, named in config.toml (the top-level one ``a``, ``[clusters.b]``).

``--check --cluster b`` checks b (its backlog, its thresholds), not a; in the console ``c``
lists both with their live state and switches to b without a restart: b's queues, b's
worker, b's history rows only, the status line and the next audit line name b; switching
back shows a again, and nothing of the cluster left keeps running.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from afirgen_tasks.factory import create_app
from afirgen_tasks.settings import Settings, load_settings
from tests.support.workers import REPO_ROOT, worker_environ
from tui.actions import AuditLog
from tui.history import HistoryStore
from tui.sources.cluster import BrokerSources
from tui.sources.event_process import ProcessEventReceiver
from tui.ui.app import AfirgenApp
from tui.ui.screens.cluster_switch import ClusterSwitchScreen
from tui.ui.widgets.panes import QueuesPane, TasksPane, WorkersPane

pytestmark = pytest.mark.integration

EMAIL = "afirgen_tasks.email.send_notification_email"
REPORT = "afirgen_tasks.reports.generate_pdf_report"
ALL_QUEUES = ("default", "email", "reports", "analytics", "cleanup")


async def until(pilot, predicate, timeout: float = 20.0, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


@pytest.fixture
def second_db(_db_allocator) -> Iterator[int]:
    """Another db of the test's own: cluster b."""
    db = _db_allocator.acquire()
    try:
        yield db
    finally:
        _db_allocator.release(db)


@pytest.fixture
def two_clusters(afirgen_env, redis_server, second_db) -> dict[str, str]:
    """config.toml names the top-level cluster ``a`` and adds ``[clusters.b]`` on the second
    db, with thresholds of its own; returns ``{name: broker URL}``."""
    url_b = redis_server.url(second_db)
    Path(afirgen_env["AFIRGEN_CONFIG"]).write_text(
        '[console]\ncluster_name = "a"\nrefresh_interval = 0.1\nqueue_poll_interval = 0.2\n'
        "inspect_interval = 0.5\ncontrol_timeout = 1.0\n"
        f'[clusters.b]\nbroker = "{url_b}"\nbackend = "{url_b}"\n'
        "backlog_warn = 1\nbacklog_fail = 2\n"
    )
    return {"a": afirgen_env["CELERY_BROKER_URL"], "b": url_b}


def reader_gone(sources: BrokerSources) -> bool:
    """The sources' event reader process (the default on Redis) has exited: stop() lets go
    of it only once it has been waited for."""
    assert isinstance(sources.events, ProcessEventReceiver)
    return sources.events.pid is None


def env_of(afirgen_env: dict[str, str], url: str) -> dict[str, str]:
    """A worker's environment on the broker ``url`` (the same paths)."""
    return {**afirgen_env, "CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url}


def send_waiting(settings: Settings, queue: str, task: str, n: int) -> list[str]:
    app = create_app(settings, main="clusters-test")
    try:
        return [app.send_task(task, queue=queue).id for _ in range(n)]
    finally:
        app.close()


def run_check(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "tui", "--check", *args],
        cwd=REPO_ROOT,
        env=worker_environ(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_check_cluster_checks_the_named_cluster(afirgen_env, two_clusters, worker_factory):
    # a has a worker on every queue and nothing waiting; b has no worker and 3 jobs waiting,
    # over b's own backlog_fail (2; a's is 10,000)
    worker_factory(queues=ALL_QUEUES)
    settings = load_settings()
    send_waiting(settings.for_cluster("b"), "reports", REPORT, 3)

    code, out, err = run_check(afirgen_env, "--timeout", "10")
    assert code == 0, out + err
    assert "cluster 'a'" in out and "cluster a: healthy" in out.splitlines()[-1]

    code, out, err = run_check(afirgen_env, "--cluster", "b", "--json", "--timeout", "10")
    assert code == 1, out + err
    doc = json.loads(out)
    assert doc["cluster"] == "b" and doc["broker"] == two_clusters["b"]
    checks = {c["name"]: c for c in doc["checks"]}
    assert checks["workers"]["status"] == "FAIL"
    assert checks["backlog[reports]"]["status"] == "FAIL"
    assert checks["backlog[reports]"]["threshold"] == {"warn": 1, "fail": 2}
    assert checks["backlog[reports]"]["value"] == 3


async def test_c_switches_clusters_without_a_restart(afirgen_env, two_clusters, worker_factory):
    settings = load_settings()
    settings.ensure_dirs()
    on_b = settings.for_cluster("b")
    app_b = create_app(on_b, main="clusters-test-b")
    worker_a = worker_factory(queues=ALL_QUEUES[:2], start=False)
    worker_b = worker_factory(
        queues=ALL_QUEUES[:2], env=env_of(afirgen_env, two_clusters["b"]), app=app_b, start=False
    )
    for w in (worker_a, worker_b):
        w.start()
    for w in (worker_a, worker_b):
        w.wait_ready(30)
    # 2 jobs waiting in b's reports queue (nobody consumes it there), none in a's
    send_waiting(on_b, "reports", REPORT, 2)

    built: list[BrokerSources] = []

    def connect(cluster: Settings):
        celery_app = create_app(cluster, main="afirgen-tui")
        sources = BrokerSources(cluster, celery_app)
        built.append(sources)
        return sources, celery_app

    store = HistoryStore.from_settings(settings)
    sources, celery_app = connect(settings)
    app = AfirgenApp(settings, sources, celery_app=celery_app, history=store, connect=connect)
    audit_path = settings.console_audit_log

    def status() -> str:
        return str(app.console_screen.query_one("#status").render())

    async def choose(pilot, name: str) -> ClusterSwitchScreen:
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ClusterSwitchScreen), message="switcher")
        switcher = app.screen
        assert isinstance(switcher, ClusterSwitchScreen)
        await until(
            pilot,
            lambda: all(switcher.states.get(n) is not None for n in ("a", "b")),
            message="both clusters looked at",
        )
        table = switcher.query_one("#clusters")
        table.move_cursor(row=["a", "b"].index(name), animate=False)
        await pilot.press("enter")
        await until(
            pilot,
            lambda: (
                app.settings.cluster_name == name
                and app.screen is app.console_screen
                and bool(app.console_screen.query("#workers"))
            ),
            message=f"on {name}",
        )
        await until(
            pilot, lambda: app.sources.status.state == "connected", message=f"{name} connected"
        )
        return switcher

    try:
        async with app.run_test(size=(130, 40)) as pilot:
            await until(pilot, lambda: sources.status.state == "connected", message="receiver")
            history = app.console_screen.history
            await until(pilot, lambda: history.writer is not None, message="history loaded")
            # ---- on a: a's worker, a job recorded in a's history
            job_a = celery_app.send_task(EMAIL, args=["a@example.in", "s", "b"], queue="email").id
            await until(
                pilot,
                lambda: (
                    job_a in app.console_screen.query_one("#tasks", TasksPane).row_keys
                    and app.console_screen.query_one("#workers", WorkersPane).has_key(
                        worker_a.hostname
                    )
                ),
                message="a's job and worker on screen",
            )
            assert status().startswith("a: ")
            history.writer.flush()

            # ---- c: both clusters with their live state, choose b
            console_a = app.console_screen
            switcher = await choose(pilot, "b")
            await until(pilot, lambda: not console_a.is_attached, message="a's screen removed")
            assert switcher.states["a"].reachable and switcher.states["a"].workers == 1
            assert switcher.states["b"].reachable and switcher.states["b"].workers == 1
            assert not built[0].events.is_alive()  # a's receiver stopped
            assert reader_gone(built[0])  # with its reader process

            workers = app.console_screen.query_one("#workers", WorkersPane)
            queues = app.console_screen.query_one("#queues", QueuesPane)
            tasks = app.console_screen.query_one("#tasks", TasksPane)
            await until(
                pilot,
                lambda: (
                    workers.has_key(worker_b.hostname)
                    and queues.has_key("reports")
                    and str(queues.get_cell("reports", "waiting")).strip() == "2"
                ),
                message="b's worker and b's 2 waiting reports on screen",
            )
            assert not workers.has_key(worker_a.hostname)
            assert job_a not in tasks.row_keys
            assert status().startswith("b: ") and two_clusters["b"] in status()
            assert store.cluster == on_b.cluster_id

            job_b = app.celery_app.send_task(
                EMAIL, args=["b@example.in", "s", "b"], queue="email"
            ).id
            await until(pilot, lambda: job_b in tasks.row_keys, message="b's job on screen")
            app.console_screen.history.writer.flush()
            assert [r["uuid"] for r in store.load_recent(100)] == [job_b]

            # an action after the switch: its audit line names b
            await pilot.press("2")
            workers.move_cursor(row=workers.get_row_index(worker_b.hostname), animate=False)
            await pilot.pause()
            await pilot.press("plus")
            runner = app.console_screen.runner
            await until(pilot, lambda: runner.action_log, message="pool_grow outcome")
            lines = AuditLog(audit_path).read()
            assert lines and {(x["cluster_name"], x["cluster"]) for x in lines} == {
                ("b", on_b.cluster_id)
            }
            assert lines[-1]["action"] == "pool_grow" and lines[-1]["target"] == worker_b.hostname

            # ---- and back to a: a's worker, a's job from a's history, b's gone
            await choose(pilot, "a")
            assert not built[1].events.is_alive()  # b's receiver stopped
            assert reader_gone(built[1])
            workers = app.console_screen.query_one("#workers", WorkersPane)
            tasks = app.console_screen.query_one("#tasks", TasksPane)
            await until(
                pilot,
                lambda: workers.has_key(worker_a.hostname) and job_a in tasks.row_keys,
                message="a's worker and a's recorded job back",
            )
            assert not workers.has_key(worker_b.hostname) and job_b not in tasks.row_keys
            assert status().startswith("a: ")
            assert len(app.screen_stack) == 1
            await pilot.press("q")
        # every receiver built along the way is stopped
        assert [s.events.is_alive() for s in built] == [False] * 3
        assert all(reader_gone(s) for s in built)
    finally:
        for s in built:
            s.stop()
        store.close()
        app_b.close()
