"""The Textual app: owns the settings, the sources, the model and the action layer, and opens
the console screen (:mod:`tui.ui.console`), where the panes, the tick and the polls live.

Keys, the help screen and the command palette all come from one registry
(:mod:`tui.ui.commands`).  The app itself keeps only what works over every screen: Tab
between panes or dialog fields, help, the palette, quit, and notifications that never
read data as markup.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from celery import Celery
from textual.app import App, SystemCommand
from textual.markup import escape as escape_markup
from textual.screen import Screen

from afirgen_tasks.settings import Settings
from tui.actions import Actions, AuditLog
from tui.core.model import ClusterModel
from tui.core.redaction import Redactor
from tui.core.safe_text import visible
from tui.history import HistoryBackend
from tui.sources.cluster import Sources
from tui.sources.pause_records import PauseRecordStore
from tui.ui import heap
from tui.ui.commands import PANES, bindings, enabled, help_rows, palette_commands
from tui.ui.console import ConsoleScreen
from tui.ui.screens.help import HelpScreen

#: scope of a screen's own commands -> how to open that screen (said when it is not on top)
_SCREEN_HINTS = {
    "queue_jobs": "open a queue's waiting jobs first: Enter on the Queues pane (1 focuses it)",
    "unacked": "that works in the unacknowledged jobs: u opens them",
    "failures": "that works in the failures grouped: f opens them",
    "worker_detail": "that works in a worker's detail: Enter on the Workers pane (2) opens it",
}


class AfirgenApp(App[None]):
    """afirgen-tui: queues, workers and task history of a Celery cluster, live."""

    CSS_PATH = "app.tcss"
    TITLE = "afirgen-tui"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = bindings("app")
    #: Each cluster watched gets a mode of its own whose base screen is its console screen:
    #: a switch (c) goes to the new mode and removes the old one with its screens (Textual's
    #: public way to replace a base screen; ``switch_screen`` replaces pushed screens only).
    DEFAULT_MODE = "console-0"

    def __init__(
        self,
        settings: Settings,
        sources: Sources,
        celery_app: Celery | None = None,
        read_only: bool = False,
        banner: str = "",
        autostart: bool = True,
        history: HistoryBackend | None = None,
        quit_note: str = "",
        connect: Callable[[Settings], tuple[Sources, Celery | None]] | None = None,
        settle_heap: bool = False,
    ):
        super().__init__()
        #: freeze the start-up heap out of the garbage collector's sight (:mod:`tui.ui.heap`):
        #: the console's own process only, never a test process running many apps
        self.settle_heap = settle_heap
        self._read_only_asked = read_only
        self.banner = banner
        #: said on screen the moment q is pressed (the demo: its sandbox is stopped next)
        self.quit_note = quit_note
        #: False in screen tests: no timers or polls start, the test calls ``tick()`` itself
        self.autostart = autostart
        #: the persisted history (None: no persistence); the console screen writes and reads it
        self.history_store = history
        #: builds a cluster's sources and Celery app (``c`` switches clusters with it; None:
        #: this console watches one cluster)
        self.connect = connect
        self._bind(settings, sources, celery_app)
        self._console_modes = 0
        self.add_mode(self.DEFAULT_MODE, lambda: self.console_screen)

    def _bind(self, settings: Settings, sources: Sources, celery_app: Celery | None) -> None:
        """Point the app at one cluster: its settings, sources, model, actions and a fresh
        console screen (not yet shown: the first is the default screen, later ones come in
        through :meth:`switch_cluster`)."""
        self.settings = settings
        self.sources = sources
        self.celery_app = celery_app
        self.read_only = self._read_only_asked or settings.console_read_only
        self.model = ClusterModel(
            max_tasks=settings.console_max_tasks,
            heartbeat_timeout=settings.console_heartbeat_timeout,
        )
        self.redact: Redactor = Redactor.from_settings(settings)
        audit = AuditLog(
            settings.console_audit_log,
            scrub=self.redact.scrub_secrets,
            redact_value=self.redact.value,
            cluster=settings.cluster_id,
            cluster_name=settings.cluster_name,
        )
        self.actions = Actions(
            celery_app,
            audit,
            read_only=self.read_only,
            timeout=settings.console_control_timeout,
            pause_records=(
                PauseRecordStore.for_app(celery_app, settings, settings.console_control_timeout)
                if celery_app is not None
                else None
            ),
            queue_jobs=sources.queue_jobs,
            unacked_jobs=sources.unacked_jobs,
        )
        self.console_screen = ConsoleScreen(self)

    async def switch_cluster(self, settings: Settings) -> bool:
        """Watch the cluster of ``settings`` instead, without a restart; False if it could
        not be reached (the console stays where it was).

        The new cluster's sources and Celery app are built first; then the current sources
        stop, the history writer flushes, the history store turns to the new cluster's rows,
        and a fresh console screen (new model, panes, polls, action layer, audit lines
        naming the new cluster) replaces the old one, which goes with its timers.
        """
        if self.connect is None:
            self.notify("this console watches one cluster", severity="warning")
            return False
        name = settings.cluster_name
        try:
            sources, celery_app = await asyncio.to_thread(self.connect, settings)
        except Exception as exc:
            reason = self.redact.scrub_secrets(f"{type(exc).__name__}: {exc}")
            self.notify(f"cluster {name} not opened: {reason}", severity="error")
            return False
        old_screen, old_sources, old_app = self.console_screen, self.sources, self.celery_app
        await asyncio.to_thread(old_sources.stop)
        await asyncio.to_thread(old_screen.history.close)
        if old_app is not None and old_app is not celery_app:
            await asyncio.to_thread(old_app.close)
        if self.history_store is not None:
            self.history_store.cluster = settings.cluster_id
        self._bind(settings, sources, celery_app)
        old_mode = self.current_mode
        self._console_modes += 1
        mode = f"console-{self._console_modes}"
        screen: Screen[Any] = self.console_screen
        self.add_mode(mode, lambda: screen)
        await self.switch_mode(mode)
        await self.remove_mode(old_mode)  # the old console screen (and any dialog on it) goes
        self.notify(f"cluster {name}: {settings.broker_display}", timeout=5)
        return True

    def on_mount(self) -> None:
        if self.settle_heap:
            # after the first frame: the widgets exist, the operator already sees the screen
            self.call_after_refresh(heap.settle_heap)
        if self.banner:
            self.notify(self.banner, timeout=8)
        if self.read_only:
            self.notify(
                "read-only: enqueue, revoke, scale, pause and purge are disabled", timeout=6
            )

    def notify(self, message: str, *, markup: bool = False, **kwargs: Any) -> None:
        """Notifications carry task ids, JSON and worker replies: plain text, never markup.

        ``markup`` is ignored: ``Widget.notify`` (a screen's ``self.notify``) passes
        ``markup=True`` by default, and no caller here means markup. Control characters in
        the message or title are shown as visible escapes: a toast must not write a
        worker's ``\\x1b]52;…`` to the terminal.
        """
        if "title" in kwargs:
            kwargs["title"] = visible(kwargs["title"])
        super().notify(visible(message, multiline=True), markup=False, **kwargs)

    def action_help_quit(self) -> None:
        """Ctrl+C does not quit (it copies in inputs); say what does, in plain text."""
        self.notify("Press q to quit (or Ctrl+Q).", title="Do you want to quit?")

    def action_cycle_pane(self, step: int) -> None:
        """Next (or previous) pane; in a dialog, its next (or previous) field."""
        if self.screen is not self.console_screen:
            # This binding has priority, so the dialog never sees Tab itself.
            (self.screen.focus_next if step > 0 else self.screen.focus_previous)()
            return
        self.console_screen.cycle_pane(step)

    def action_help(self) -> None:
        """Show every key."""
        self.push_screen(HelpScreen(help_rows(read_only=self.read_only)))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        # read-only: the commands that change the cluster are left out (the help marks them)
        for command in palette_commands(read_only=self.read_only):
            # palette titles and help are parsed as markup: escape them
            yield SystemCommand(
                escape_markup(command.title),
                escape_markup(command.description),
                lambda c=command: self._run_command(c.scope, c.action),
            )

    async def _run_command(self, scope: str, action: str) -> None:
        """Run a registry command from the palette on the widget that owns it.

        A screen's own command runs only while that screen is on top; a pane's or the
        console's only while the console is (a dialog on top would hide what it acts on).
        """
        console = self.console_screen
        on_top = self.screen
        if scope == "app":
            await self.run_action(action)
        elif scope in _SCREEN_HINTS:
            if getattr(on_top, "SCOPE", None) == scope:
                await on_top.run_action(action)
            else:
                self.notify(_SCREEN_HINTS[scope], severity="warning")
        elif on_top is not console:
            self.notify(
                "that works on the main screen: close this one first (Esc)", severity="warning"
            )
        elif scope in PANES:
            pane = console.query_one(f"#{scope}")
            console.set_focus(pane)
            await pane.run_action(action)
        else:
            await console.run_action(action)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return enabled(action, self.read_only)

    def on_unmount(self) -> None:
        """However the app ends (q, Ctrl+Q, an error, a test's exit): stop the receiver
        thread, whose reconnect loop would otherwise outlive the app, and flush the history."""
        self.sources.stop()
        self.console_screen.history.close()

    async def action_quit(self) -> None:
        """Say what happens next, stop the sources, flush the history and leave."""
        if self.quit_note:
            self.notify(self.quit_note, timeout=30)
        # The receiver thread takes up to a second to stop: wait for it off the event loop,
        # so the screen shows the note (and stays drawn) meanwhile.
        await asyncio.to_thread(self.sources.stop)
        self.console_screen.history.close()
        self.exit()
