"""Start the console (or the demo sandbox around it). Imports Textual; --check never comes here."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from afirgen_tasks.settings import Settings, SettingsError, load_settings, state_home

if TYPE_CHECKING:
    from celery import Celery


def _fail(lines: list[str]) -> int:
    for line in lines:
        print(f"afirgen-tui: config error: {line}", file=sys.stderr)
    return 2


def _stop_sandbox_on_hangup(sandbox) -> None:  # noqa: ANN001 - tui.demo.Sandbox
    """The SSH session drops (SIGHUP) or the console is told to stop (SIGTERM): stop the
    sandbox's processes and remove its files before leaving."""

    def handler(signum: int, _frame: object) -> None:
        sandbox.stop()
        os._exit(128 + signum)

    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, handler)


def prepare_state_dir(settings: Settings) -> Path | None:
    """Create the console's state directory (mode 0700: the history holds task arguments
    unredacted) when the history or the audit log lives there, i.e. was not configured
    elsewhere; returns it, or None when neither uses it."""
    home = state_home()
    paths = (settings.history_db, settings.console_audit_log)  # history_db: or a postgresql:// URL
    if not any(isinstance(p, Path) and p.parent == home for p in paths):
        return None
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    return home


def run_console(args: argparse.Namespace) -> int:
    """Open the console for ``args``; returns the process exit code."""
    sandbox = None
    banner = ""
    said_stopping = False
    try:
        if args.demo:
            if args.broker:
                return _fail(
                    ["--broker cannot be combined with --demo (the demo brings its own broker)"]
                )
            from tui.demo import Sandbox

            sandbox = Sandbox()
            _stop_sandbox_on_hangup(sandbox)
            print(
                "afirgen-tui: starting the demo sandbox (Redis, 2 workers, jobs)…", file=sys.stderr
            )
            sandbox.start()
            os.environ.update(sandbox.env)
            banner = (
                f"demo sandbox: {sandbox.redis_kind} on port {sandbox.redis_port}, 2 workers, "
                f"a job every ~0.3 s; {sandbox.failure_note()} — everything stops when you quit"
            )
        if args.broker:
            # Celery reads $CELERY_BROKER_URL itself (it beats its config): make both agree.
            os.environ["CELERY_BROKER_URL"] = args.broker
        try:
            settings = load_settings(args.config)
            if getattr(args, "cluster", None) is not None:
                settings = settings.for_cluster(args.cluster)
        except SettingsError as exc:
            return _fail(exc.lines)

        if sandbox is not None:
            # the sandbox directory goes when the demo quits; exports the operator asked for stay
            settings = settings.model_copy(
                update={"paths_report_dir": Path.cwd() / "afirgen-exports"}
            )

        from afirgen_tasks.factory import create_app
        from tui.core.redaction import Redactor
        from tui.history import HistoryStore
        from tui.sources.cluster import BrokerSources
        from tui.ui.app import AfirgenApp

        def connect(cluster: Settings) -> tuple[BrokerSources, Celery]:
            """A cluster's Celery app and sources (at start, and for each switch: c)."""
            celery_app = create_app(cluster, main="afirgen-tui")
            return BrokerSources(
                cluster, celery_app, scrub=Redactor.from_settings(cluster)
            ), celery_app

        sources, celery_app = connect(settings)
        try:
            prepare_state_dir(settings)
            # keyed by the broker's cluster: another broker's tasks are never loaded here
            history = HistoryStore.from_settings(settings)
        except Exception as exc:  # a history problem must not keep the operator from the console
            history = None
            banner = (
                banner + " · " if banner else ""
            ) + f"history disabled: {type(exc).__name__}: {exc}"
        app = AfirgenApp(
            settings,
            sources,
            celery_app=celery_app,
            read_only=args.read_only,
            banner=banner,
            history=history,
            quit_note="stopping the demo sandbox…" if sandbox is not None else "",
            connect=connect,
            settle_heap=True,
        )

        def after_app() -> None:
            nonlocal said_stopping
            if sandbox is not None:
                # the moment the screen is restored, not seconds later
                print("afirgen-tui: stopping the demo sandbox…", file=sys.stderr, flush=True)
                said_stopping = True
            app.sources.stop()  # the cluster watched last (c switches)
            unwritten = app.console_screen.history.close()
            if unwritten:
                print(
                    f"afirgen-tui: history: {unwritten:,} task row(s) were still waiting to be"
                    " written at quit and are not in the history",
                    file=sys.stderr,
                    flush=True,
                )
            if history is not None:
                history.close()
            if sandbox is not None:
                # Now, inside the event loop: asyncio.run() then waits for the thread
                # workers (an inspect waits out its reply timeout), which a stopped broker
                # ends at once instead of seconds later.
                sandbox.stop()

        async def run_app() -> None:
            try:
                await app.run_async()
            finally:
                after_app()

        asyncio.run(run_app())
        # Textual sets return_code 1 when an unhandled exception ended the app (it has
        # printed the traceback): a crash must not look like a quit to scripts and systemd
        return app.return_code or 0
    except KeyboardInterrupt:
        return 130
    finally:
        if sandbox is not None:
            if not said_stopping:
                print("afirgen-tui: stopping the demo sandbox…", file=sys.stderr, flush=True)
            sandbox.stop()
