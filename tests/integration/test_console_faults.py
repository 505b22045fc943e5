"""Console-side faults against real processes: broker outage and return, broker down at start,
a console too slow for the event stream."""

from __future__ import annotations

import shutil
import time

import pytest

from afirgen_tasks.factory import create_app
from afirgen_tasks.settings import load_settings
from tests.support.restartable_redis import RestartableRedis
from tui.sources.cluster import BrokerSources
from tui.ui.app import AfirgenApp
from tui.ui.widgets.keyed_table import KeyedTable
from tui.ui.widgets.panes import TasksPane, WorkersPane

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("redis-server") is None,
        reason="needs redis-server on PATH to stop and restart",
    ),
]


async def until(pilot, predicate, timeout: float, message: str) -> float:
    """Run the app until ``predicate()``; return how long it took (fail after ``timeout``)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


@pytest.fixture
def own_redis():
    server = RestartableRedis()
    yield server
    server.cleanup()


def settings_for(url: str, tmp_path, **extra):
    (tmp_path / "c.toml").write_text("")
    return load_settings(
        tmp_path / "c.toml",
        celery_broker_url=url,
        celery_result_backend=url,
        paths_data_dir=tmp_path / "var",
        console_audit_log=tmp_path / "audit.log",
        console_refresh_interval=0.1,
        console_queue_poll_interval=0.3,
        console_inspect_interval=1.0,
        console_control_timeout=0.5,
        **extra,
    )


def label(app) -> str:
    return app.console_screen.connection_state()[0]


@pytest.mark.parametrize(
    ("reader", "receiver"),
    [("auto", "ProcessEventReceiver"), ("kombu", "EventReceiverThread")],
    ids=["process", "kombu"],
)
async def test_broker_outage_then_recovery(
    own_redis, tmp_path, monkeypatch, worker_factory, afirgen_env, reader, receiver
):
    own_redis.start()
    url = own_redis.url(0)
    env = {**afirgen_env, "CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url}
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    monkeypatch.setenv("CELERY_RESULT_BACKEND", url)
    settings = settings_for(url, tmp_path, console_event_reader=reader)
    celery_app = create_app(settings, main="outage")
    worker = worker_factory(queues=("default", "cleanup"), env=env, app=celery_app)
    sources = BrokerSources(settings, celery_app)
    app = AfirgenApp(settings, sources, celery_app=celery_app)
    async with app.run_test(size=(100, 30)) as pilot:
        tasks = app.query_one("#tasks", TasksPane)
        workers = app.query_one("#workers", WorkersPane)
        await until(pilot, lambda: label(app) == "● connected", 10, "connected")
        await until(pilot, lambda: workers.has_key(worker.hostname), 15, "worker row")
        first = celery_app.send_task("afirgen_tasks.cleanup.cleanup_temp_files", priority=5)
        await until(
            pilot,
            lambda: tasks.has_key(first.id) and "SUCCESS" in str(tasks.get_cell(first.id, "state")),
            20,
            "first task SUCCESS",
        )

        own_redis.stop()
        took = await until(
            pilot, lambda: label(app).startswith("✘"), 3.0, "disconnected within 3 s"
        )
        await until(
            pilot,
            lambda: "retry in" in label(app) or "not answering" in label(app),
            3.0,
            "retry countdown",
        )
        assert took <= 3.0
        await until(
            pilot, lambda: tasks.has_class("-stale"), 3.0 - took, "panes marked stale within 3 s"
        )
        for pane_id in ("queues", "workers", "tasks"):
            pane = app.query_one(f"#{pane_id}", KeyedTable)
            assert pane.has_class("-stale"), pane_id
            assert "stale" in str(pane.border_subtitle)
        assert tasks.has_key(first.id), "the last known data stays on screen"
        # the keyboard still works while the broker is gone
        await pilot.press("1")
        assert app.focused.id == "queues"
        await pilot.press("3", "slash")
        await pilot.press("escape")
        assert app.focused.id == "tasks"

        answered_at = own_redis.start()
        back = await until(pilot, lambda: label(app) == "● connected", 8.0, "connected again")
        await until(pilot, lambda: not tasks.has_class("-stale"), 1.0, "stale marks cleared")
        assert time.monotonic() - answered_at <= 5.5, "live again within ~5 s of Redis answering"
        polled_after = time.time()
        await until(
            pilot,
            lambda: (
                app.console_screen.last_poll is not None
                and not app.console_screen.last_poll.error
                and app.console_screen.last_poll.taken_at >= polled_after
            ),
            5.0,
            "a fresh queue poll",
        )
        # the worker reconnects by itself (exponential backoff) and the console sees it again
        await until(
            pilot, lambda: app.model.get_worker(worker.hostname).online, 30, "worker online again"
        )
        second = celery_app.send_task("afirgen_tasks.cleanup.cleanup_temp_files", priority=5)
        await until(
            pilot,
            lambda: (
                tasks.has_key(second.id) and "SUCCESS" in str(tasks.get_cell(second.id, "state"))
            ),
            30,
            "task after recovery SUCCESS",
        )
        assert sources.status.connects >= 2
        # the reader process (the default on Redis) or kombu's receiver recovered; the
        # readers' own outage tests are in tests/integration/test_redis_events.py
        assert type(sources.events).__name__ == receiver
        print(f"\noutage: disconnected shown after {took:.2f}s; live {back:.2f}s after restart")
    celery_app.close()


async def test_console_started_with_broker_down_connects_when_it_appears(own_redis, tmp_path):
    settings = settings_for(own_redis.url(0), tmp_path)
    celery_app = create_app(settings, main="late-broker")
    sources = BrokerSources(settings, celery_app)
    app = AfirgenApp(settings, sources, celery_app=celery_app)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: label(app).startswith("✘"), 3.0, "says the broker is down")
        await until(
            pilot,
            lambda: "disconnected" in str(app.query_one("#status").render()),
            1.0,
            "status line",
        )
        answered_at = own_redis.start()
        await until(
            pilot, lambda: label(app) == "● connected", 8.0, "connects once the broker appears"
        )
        assert time.monotonic() - answered_at <= 5.5
    # Leaving the app any way (here run_test's exit, not the quit key) stops the receiver
    # thread; its reconnect loop used to outlive the app.
    assert not sources.events.is_alive() and sources.status.state == "stopped"
    celery_app.close()


async def test_slow_console_counts_dropped_events_and_resyncs(own_redis, tmp_path):
    own_redis.start()
    settings = settings_for(own_redis.url(0), tmp_path, console_event_buffer=1000)
    celery_app = create_app(settings, main="slow")
    sources = BrokerSources(settings, celery_app)
    # timers off: the console does not drain, as if it could not keep up
    app = AfirgenApp(settings, sources, celery_app=celery_app, autostart=False)
    async with app.run_test(size=(100, 30)) as pilot:
        sources.start()
        await until(pilot, lambda: sources.status.state == "connected", 10, "receiver connected")
        with celery_app.connection_for_write() as conn:
            dispatcher = celery_app.events.Dispatcher(
                conn, hostname="flood@bench", buffer_while_offline=False
            )
            for i in range(3000):
                dispatcher.send(
                    "task-sent",
                    uuid=f"flood-{i}",
                    name="afirgen_tasks.cleanup.cleanup_temp_files",
                    queue="cleanup",
                    priority=5,
                    args="[]",
                    kwargs="{}",
                )
            dispatcher.close()
        await until(pilot, lambda: sources.received >= 3000, 20, "all 3000 events received")
        assert sources.dropped == 2000 and sources.buffered == 1000
        app.console_screen.tick()
        await pilot.pause()
        status = str(app.query_one("#status").render())
        assert "2,000✗" in status, status
        assert app.console_screen.events_applied == 1000 and app.model.task_count == 1000
    sources.stop()
    celery_app.close()
