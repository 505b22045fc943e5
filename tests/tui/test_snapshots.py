"""Layout snapshots: the main screen at 120x36 and 80x24, the task detail, help, the enqueue
form and the history search.  A layout regression fails here; a deliberate change is
accepted with ``pytest tests/tui/test_snapshots.py --snapshot-update`` after looking at the
new SVGs (they are in ``tests/tui/__snapshots__/``).

Everything on screen is made deterministic: a fixed clock (``time.time``), UTC, fixed task
ids, worker names and event times, no broker (StaticSources on a ``memory://`` app).
"""

from __future__ import annotations

import time

import pytest

from afirgen_tasks.factory import create_app
from afirgen_tasks.settings import load_settings
from tui.history import HistoryStore
from tui.sources.cluster import StaticSources
from tui.sources.queue_lengths import QueueLength, QueueSnapshot
from tui.ui.app import AfirgenApp
from tui.ui.screens import forms, help, history_search, task_detail  # noqa: F401  (frozen too)

#: 2026-05-01 10:00:00 UTC
NOW = 1_777_629_600.0
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class _FrozenTime:
    """The ``time`` module as the console's own modules see it: the clocks stand still.

    Only ``tui.*`` modules get it (Textual's own timing must keep running)."""

    def __getattr__(self, name: str):
        return getattr(time, name)

    @staticmethod
    def time() -> float:
        return NOW

    @staticmethod
    def perf_counter() -> float:
        return 1000.0  # "found 3 task(s) in 0 ms": durations on screen stand still too


@pytest.fixture
def fixed_clock(monkeypatch):
    import sys

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    frozen = _FrozenTime()
    for name, module in list(sys.modules.items()):
        if name.startswith("tui.") and getattr(module, "time", None) is time:
            monkeypatch.setattr(module, "time", frozen)
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def snap_settings(tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text("")
    monkeypatch.setenv("AFIRGEN_CONFIG", str(tmp_path / "config.toml"))
    return load_settings(
        None,
        celery_broker_url="memory://",
        celery_result_backend="cache+memory://",
        paths_data_dir=tmp_path / "var",
        console_audit_log=tmp_path / "audit.log",
        history_db=tmp_path / "history.sqlite3",
        console_control_timeout=0.2,
        # only the test's own poll: the Trend column must not depend on how many seconds
        # a loaded machine took to reach the screenshot (one more poll, one more point)
        console_queue_poll_interval=60,
    )


def _events() -> list[dict]:
    """Two workers and six tasks in every state, at fixed times before NOW."""
    evs: list[dict] = []
    clock = iter(range(1, 1000))

    def ev(kind: str, at: float, **fields) -> None:
        evs.append(
            {
                "type": kind,
                "timestamp": NOW - at,
                "local_received": NOW - at,
                "clock": next(clock),
                "pid": 4242,
            }
            | fields
        )

    for host in ("w1@fir-worker-01", "w2@fir-worker-02"):
        ev(
            "worker-online",
            300,
            hostname=host,
            freq=2.0,
            active=0,
            processed=0,
            loadavg=[0.5, 0.4, 0.3],
        )
    tasks = [
        (
            "3f9c2a1e-aaaa-4000-8000-000000000001",
            "afirgen_tasks.reports.generate_fir_pdf",
            "reports",
            7,
            "success",
        ),
        (
            "b71d04c5-aaaa-4000-8000-000000000002",
            "afirgen_tasks.email.send_fir_acknowledgement",
            "email",
            3,
            "failure",
        ),
        (
            "5e8a9f30-aaaa-4000-8000-000000000003",
            "afirgen_tasks.analytics.daily_stats",
            "analytics",
            2,
            "started",
        ),
        (
            "c02b7d6a-aaaa-4000-8000-000000000004",
            "afirgen_tasks.cleanup.cleanup_temp_files",
            "cleanup",
            1,
            "sent",
        ),
        (
            "91e4f8b2-aaaa-4000-8000-000000000005",
            "afirgen_tasks.email.send_notification_email",
            "email",
            9,
            "retry",
        ),
        (
            "6ad3c5e7-aaaa-4000-8000-000000000006",
            "afirgen_tasks.reports.generate_fir_excel",
            "reports",
            5,
            "revoked",
        ),
    ]
    for i, (uuid, name, queue, prio, outcome) in enumerate(tasks):
        at = 240 - i * 20
        host = "w1@fir-worker-01" if i % 2 == 0 else "w2@fir-worker-02"
        ev(
            "task-sent",
            at,
            uuid=uuid,
            hostname="api@fir-web",
            name=name,
            args="[1042]",
            kwargs="{}",
            queue=queue,
            priority=prio,
            retries=0,
        )
        if outcome == "sent":
            continue
        ev(
            "task-received",
            at - 1,
            uuid=uuid,
            hostname=host,
            name=name,
            args="[1042]",
            kwargs="{}",
            retries=0,
        )
        ev("task-started", at - 2, uuid=uuid, hostname=host)
        if outcome == "success":
            ev(
                "task-succeeded",
                at - 5,
                uuid=uuid,
                hostname=host,
                result="{'pages': 3}",
                runtime=2.75,
            )
        elif outcome == "failure":
            ev(
                "task-failed",
                at - 4,
                uuid=uuid,
                hostname=host,
                exception="PermanentTaskError('FIR 99999 does not exist')",
                traceback='Traceback (most recent call last):\n  File "email.py", line 40\n'
                "PermanentTaskError: FIR 99999 does not exist",
            )
        elif outcome == "retry":
            ev(
                "task-retried",
                at - 3,
                uuid=uuid,
                hostname=host,
                exception="SMTPConnectError(421, 'busy')",
            )
        elif outcome == "revoked":
            ev(
                "task-revoked",
                at - 3,
                uuid=uuid,
                hostname=host,
                terminated=False,
                signum=None,
                expired=False,
            )
    for host in ("w1@fir-worker-01", "w2@fir-worker-02"):
        ev(
            "worker-heartbeat",
            1,
            hostname=host,
            freq=2.0,
            active=1,
            processed=3,
            loadavg=[0.5, 0.4, 0.3],
        )
    return evs


def _console(settings, history: bool = False) -> AfirgenApp:
    sources = StaticSources(settings)
    sources.queue_poll = QueueSnapshot.of(
        [
            QueueLength("default", 0, {}, 0),
            QueueLength("email", 45, {10: 40, 5: 3, 1: 2}, 2),
            QueueLength("reports", 7, {7: 7}, 1),
            QueueLength("analytics", 1, {2: 1}, 1),
            QueueLength("cleanup", 0, {}, 0),
        ],
        taken_at=NOW,
    )
    sources.feed(_events())
    app = AfirgenApp(
        settings,
        sources,
        celery_app=create_app(settings, main="snapshots"),
        autostart=False,
        history=HistoryStore.from_settings(settings) if history else None,
    )
    sources.start()
    return app


async def _settled(pilot) -> None:
    """Let workers, messages, layout and animations finish (a loaded machine is slow)."""
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.wait_for_scheduled_animations()
        await pilot.pause(0.1)


async def _fed(pilot) -> None:
    await pilot.pause()  # the auto-pilot starts before the first screen has composed
    screen = pilot.app.console_screen
    screen.tick()
    screen.poll_queues()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    screen.tick()
    await _settled(pilot)


def test_main_screen_120x36(snap_compare, fixed_clock, snap_settings):
    assert snap_compare(_console(snap_settings), terminal_size=(120, 36), run_before=_fed)


def test_main_screen_80x24(snap_compare, fixed_clock, snap_settings):
    assert snap_compare(_console(snap_settings), terminal_size=(80, 24), run_before=_fed)


def test_task_detail(snap_compare, fixed_clock, snap_settings):
    async def open_detail(pilot) -> None:
        await _fed(pilot)
        pilot.app.console_screen.action_open_detail("b71d04c5-aaaa-4000-8000-000000000002")
        await _settled(pilot)

    assert snap_compare(_console(snap_settings), terminal_size=(120, 36), run_before=open_detail)


def test_help(snap_compare, fixed_clock, snap_settings):
    async def open_help(pilot) -> None:
        await _fed(pilot)
        await pilot.press("question_mark")
        await _settled(pilot)

    assert snap_compare(_console(snap_settings), terminal_size=(120, 36), run_before=open_help)


def test_enqueue_form(snap_compare, fixed_clock, snap_settings):
    async def open_form(pilot) -> None:
        await _fed(pilot)
        await pilot.press("e")
        await _settled(pilot)
        for box in pilot.app.screen.query("Input"):
            box.cursor_blink = False
        await _settled(pilot)

    assert snap_compare(_console(snap_settings), terminal_size=(120, 36), run_before=open_form)


def test_history_search(snap_compare, fixed_clock, snap_settings):
    async def search(pilot) -> None:
        await _fed(pilot)
        await pilot.app.workers.wait_for_complete()
        history = pilot.app.console_screen.history
        if history.writer is not None:
            history.writer.flush()
        await pilot.press("H")
        await pilot.pause()
        await pilot.press(*"state:failure")
        await pilot.press("enter")
        await _settled(pilot)
        for box in pilot.app.screen.query("Input"):
            box.cursor_blink = False  # a blinking cursor would make the screenshot depend on timing
        await _settled(pilot)

    assert snap_compare(
        _console(snap_settings, history=True), terminal_size=(120, 36), run_before=search
    )
