"""Fixtures for screen tests: a real app, real model and panes, fed by StaticSources (no broker)."""

from __future__ import annotations

import itertools
import os
import time
import uuid as uuidlib
from typing import Any

import pytest

from afirgen_tasks.settings import load_settings
from tui.sources.cluster import StaticSources
from tui.ui.app import AfirgenApp


class EventMaker:
    """Builds Celery-shaped event dicts (as the Receiver delivers them) for one fake cluster."""

    def __init__(self) -> None:
        self.t = time.time()
        self._clock = itertools.count(1)

    def _ev(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.t += 0.001
        base = {
            "type": kind,
            "timestamp": self.t,
            "local_received": time.time(),
            "clock": next(self._clock),
            "pid": 4242,
        }
        base.update(fields)
        return base

    def worker_online(self, host: str = "w1@box") -> dict[str, Any]:
        return self._ev(
            "worker-online",
            hostname=host,
            freq=2.0,
            active=0,
            processed=0,
            loadavg=[0.5, 0.4, 0.3],
            sw_ident="py-celery",
            sw_ver="5.7.0",
            sw_sys="Linux",
        )

    def heartbeat(
        self, host: str = "w1@box", active: int = 0, processed: int = 0
    ) -> dict[str, Any]:
        return self._ev(
            "worker-heartbeat",
            hostname=host,
            freq=2.0,
            active=active,
            processed=processed,
            loadavg=[0.5, 0.4, 0.3],
        )

    def task(
        self,
        outcome: str = "success",
        name: str = "afirgen_tasks.reports.generate_pdf_report",
        queue: str = "reports",
        priority: int = 5,
        host: str = "w1@box",
        args: str = "[7]",
        kwargs: str = "{}",
        uuid: str | None = None,
    ) -> tuple[str, list[dict[str, Any]]]:
        """One task's events up to ``outcome`` (sent, received, started, success|failure|retry|revoked)."""
        uuid = uuid or str(uuidlib.uuid4())
        evs = [
            self._ev(
                "task-sent",
                uuid=uuid,
                hostname="publisher@client",
                name=name,
                args=args,
                kwargs=kwargs,
                queue=queue,
                priority=priority,
                retries=0,
                eta=None,
                expires=None,
            )
        ]
        if outcome == "sent":
            return uuid, evs
        evs.append(
            self._ev(
                "task-received",
                uuid=uuid,
                hostname=host,
                name=name,
                args=args,
                kwargs=kwargs,
                retries=0,
            )
        )
        if outcome == "received":
            return uuid, evs
        evs.append(self._ev("task-started", uuid=uuid, hostname=host))
        if outcome == "started":
            return uuid, evs
        if outcome == "success":
            evs.append(
                self._ev(
                    "task-succeeded",
                    uuid=uuid,
                    hostname=host,
                    result="{'status': 'ok'}",
                    runtime=0.25,
                )
            )
        elif outcome == "failure":
            evs.append(
                self._ev(
                    "task-failed",
                    uuid=uuid,
                    hostname=host,
                    exception="PermanentTaskError('FIR 99999 does not exist')",
                    traceback='Traceback (most recent call last):\n  File "reports.py", line 40\n'
                    "PermanentTaskError: FIR 99999 does not exist",
                )
            )
        elif outcome == "retry":
            evs.append(
                self._ev(
                    "task-retried", uuid=uuid, hostname=host, exception="SMTPConnectError(421)"
                )
            )
        elif outcome == "revoked":
            evs.append(
                self._ev(
                    "task-revoked",
                    uuid=uuid,
                    hostname=host,
                    terminated=False,
                    signum=None,
                    expired=False,
                )
            )
        return uuid, evs


@pytest.fixture
def events() -> EventMaker:
    return EventMaker()


@pytest.fixture
def screen_settings(tmp_path, monkeypatch):
    """Settings for screen tests: nothing read from the repository, files under tmp_path."""
    config = tmp_path / "config.toml"
    config.write_text("")
    for name in [n for n in os.environ if n.startswith(("AFIRGEN_", "CELERY_"))]:
        monkeypatch.delenv(name)  # nothing from the caller's environment either
    monkeypatch.setenv("AFIRGEN_CONFIG", str(config))
    return load_settings(
        None,
        paths_data_dir=tmp_path / "var",
        console_audit_log=tmp_path / "audit.log",
        history_db=tmp_path / "history.sqlite3",
    )


@pytest.fixture
def sources(screen_settings) -> StaticSources:
    return StaticSources(screen_settings)


@pytest.fixture
def console(screen_settings, sources):
    """An AfirgenApp on StaticSources with timers off: tests call ``app.console_screen.tick()`` themselves."""
    app = AfirgenApp(screen_settings, sources, autostart=False)
    sources.start()
    return app
