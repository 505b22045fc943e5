"""The Textual app: wires sources -> model -> panes, in one direction.

* The receiver thread fills a bounded buffer; :meth:`AfirgenApp.tick` (a timer on the
  UI thread) drains it within a time budget, applies the batch to the model and updates
  the panes by key inside ``batch_update()``.
* Queue lengths and ``inspect`` are thread workers that post a message with the result;
  the handler updates the pane and schedules the next poll, so polls never overlap.
* Broker lost: the status line says so with a countdown, panes keep their last data and
  are marked stale; the sources reconnect by themselves and the app resyncs when back.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable
from typing import Any

from celery import Celery
from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical
from textual.markup import escape as escape_markup
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Input, Static

from afirgen_tasks.routing import QUEUES
from afirgen_tasks.settings import Settings
from tui.actions import Actions, AuditLog
from tui.core.model import ClusterModel, TaskFilter
from tui.core.redaction import Redactor
from tui.core.safe_text import visible
from tui.sources.cluster import QueuePoll, Sources
from tui.sources.events import CONNECTED, RECONNECTING
from tui.sources.inspection import InspectionResult
from tui.ui.app_actions import ActionsMixin
from tui.ui.app_history import HistoryMixin
from tui.ui.lifecycle import while_panes_exist
from tui.ui.messages import (
    ActionCompleted,
    EventsEnabled,
    ExportDone,
    QueueLengthsPolled,
    WorkersInspected,
)
from tui.ui.screens.help import HelpScreen
from tui.ui.screens.task_detail import TaskDetailScreen
from tui.ui.widgets.keyed_table import KeyedTable
from tui.ui.widgets.panes import QueueRow, QueuesPane, TasksPane, WorkersPane
from tui.ui.widgets.plain_input import PlainInput

#: Longest the UI thread spends applying events per tick (the rest of the tick stays interactive).
TICK_BUDGET_S = 0.05
#: Events applied per model call inside a tick.
CHUNK = 2000
#: Seconds of history behind the in/out rates.
RATE_WINDOW_S = 5.0
TREND_POINTS = 10


class AfirgenApp(ActionsMixin, HistoryMixin, App[None]):
    """afirgen-tui: queues, workers and task history of a Celery cluster, live."""

    CSS_PATH = "app.tcss"
    TITLE = "afirgen-tui"
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("slash", "filter", "Filter"),
        Binding("1", "focus_pane('queues')", "Queues", show=False),
        Binding("2", "focus_pane('workers')", "Workers", show=False),
        Binding("3", "focus_pane('tasks')", "Tasks", show=False),
        Binding("tab", "cycle_pane(1)", "Next pane", show=False, priority=True),
        Binding("shift+tab", "cycle_pane(-1)", "Previous pane", show=False, priority=True),
        Binding("z", "zoom", "Zoom"),
        Binding("escape", "escape", "Clear filter", show=False),
        Binding("e", "enqueue", "Enqueue"),
        Binding("R", "repeat_enqueue", "Repeat last", show=False),
        Binding("r", "revoke('revoke')", "Revoke"),
        Binding("t", "revoke('terminate')", "Terminate", show=False),
        Binding("k", "revoke('kill')", "Kill", show=False),
        Binding("plus", "resize(1)", "Grow"),
        Binding("minus", "resize(-1)", "Shrink"),
        Binding("equals_sign", "resize_form", "Resize by N", show=False),
        Binding("a", "autoscale", "Autoscale", show=False),
        Binding("p", "pause_queue", "Pause/resume"),
        Binding("x", "purge_queue", "Purge"),
        Binding("H", "search_history", "History"),
        Binding("E", "export", "Export"),
    ]

    #: action -> the pane it works on (the footer greys it out elsewhere).
    PANE_ACTIONS: dict[str, str] = {
        "revoke": "tasks", "resize": "workers", "resize_form": "workers", "autoscale": "workers",
        "pause_queue": "queues", "purge_queue": "queues",
    }

    #: (key, description) of every binding, for the help screen and the command palette.
    HELP: list[tuple[str, str, str]] = [
        ("Tab / Shift+Tab", "next / previous pane (in a dialog: next / previous field)", "cycle_pane(1)"),
        ("1 2 3", "focus queues / workers / tasks", "focus_pane('tasks')"),
        ("↑ ↓ PgUp PgDn", "move the cursor (it stays on its row as rows stream in)", ""),
        ("Home", "back to the top row, follow the newest tasks", ""),
        ("Enter", "task detail (on the Tasks pane)", "open_detail"),
        ("/", "filter tasks: words, state:failure queue:email worker:w1 name:pdf uuid:ab12 prio:>=8", "filter"),
        ("Esc", "clear the filter / close a dialog", "escape"),
        ("z", "zoom the focused pane (again to restore)", "zoom"),
        ("e", "enqueue a job: task, args, kwargs, queue, priority 1-10, countdown/ETA", "enqueue"),
        ("R", "repeat the last enqueued job", "repeat_enqueue"),
        ("r", "revoke the highlighted task (Tasks pane)", "revoke('revoke')"),
        ("t", "terminate the highlighted running task with SIGTERM (Tasks pane)", "revoke('terminate')"),
        ("k", "kill the highlighted running task with SIGKILL (Tasks pane)", "revoke('kill')"),
        ("+ / -", "grow / shrink the highlighted worker's pool by one (Workers pane)", "resize(1)"),
        ("=", "grow or shrink by N, this or all workers (Workers pane)", "resize_form"),
        ("a", "set autoscale max,min, this or all workers (Workers pane)", "autoscale"),
        ("p", "pause / resume the highlighted queue on every worker (Queues pane)", "pause_queue"),
        ("x", "purge the highlighted queue, after typing its name (Queues pane)", "purge_queue"),
        ("H", "search all persisted history (filter syntax + args:text since:2h until:30m)", "search_history"),
        ("E", "export the filtered history: CSV, Excel (.xlsx) or incident report (PDF)", "export"),
        ("Ctrl+P", "command palette: every action by name", ""),
        ("?", "this help", "help"),
        ("q", "quit", "quit"),
    ]

    def __init__(self, settings: Settings, sources: Sources, celery_app: Celery | None = None,
                 read_only: bool = False, banner: str = "", autostart: bool = True, history: Any = None):
        super().__init__()
        self.settings = settings
        self.sources = sources
        self.celery_app = celery_app
        self.read_only = read_only or settings.console_read_only
        self.banner = banner
        self.autostart = autostart
        self.model = ClusterModel(max_tasks=settings.console_max_tasks,
                                  heartbeat_timeout=settings.console_heartbeat_timeout)
        self.redact: Redactor = Redactor.from_settings(settings)
        self.task_filter = TaskFilter("")
        self.paused_queues: set[str] = set()
        #: queue -> when this console sent its purge (the tasks sent before it are marked PURGED)
        self.purge_sent_at: dict[str, float] = {}
        self.queue_rows: dict[str, QueueRow] = {name: QueueRow(name, None) for name in QUEUES}
        self._rates: dict[str, collections.deque[tuple[float, int, int]]] = collections.defaultdict(collections.deque)
        self._trend: dict[str, collections.deque[float]] = collections.defaultdict(lambda: collections.deque(maxlen=TREND_POINTS))
        self.last_poll: QueuePoll | None = None
        self.last_inspection: InspectionResult | None = None
        self.events_applied = 0
        self.tick_count = 0
        self.last_tick_ms = 0.0
        self._was_connected = False
        self._events_enabled_on: set[str] = set()
        #: workers whose task events the console switched on (they had them off)
        self.events_switched_on: list[str] = []
        self._stale = False
        self._dropped_seen = 0
        self._new_worker_inspect_at = 0.0
        self._connects_seen = 0
        self._poll_timers: dict[str, Timer] = {}
        self.last_enqueue: Any = None
        self.action_log: list[ActionCompleted] = []
        #: tui.history.HistoryStore (None: no persistence) and its writer thread
        self.history = history
        self.history_writer: Any = None
        self.history_loaded = 0
        #: (ts, {queue: waiting}) and (ts, {hostname: online}) for the incident report
        self.queue_samples: collections.deque[tuple[float, dict[str, int]]] = collections.deque(maxlen=7200)
        self.worker_samples: collections.deque[tuple[float, dict[str, bool]]] = collections.deque(maxlen=7200)
        self.started_at = time.time()
        self.exports: list[ExportDone] = []
        redactor = self.redact
        audit = AuditLog(settings.console_audit_log, scrub=redactor.scrub_secrets, redact_value=redactor.value)
        self.actions = Actions(celery_app, audit,
                               read_only=self.read_only, timeout=settings.console_control_timeout)

    def notify(self, message: str, *, markup: bool = False, **kwargs: Any) -> None:  # type: ignore[override]
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

    # ---- layout ----------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="status")
        with Vertical(id="panes"):
            yield QueuesPane(id="queues")
            yield WorkersPane(id="workers")
            with Vertical(id="tasks-box"):
                # PlainInput: a pasted task name must not bring its escapes along
                yield PlainInput(placeholder="filter: words, state:failure queue:email worker:w1 prio:>=8 (Enter keeps, Esc clears)",
                            id="filter")
                yield TasksPane(id="tasks")
        yield Footer()

    def on_mount(self) -> None:
        for pane_id in ("queues", "workers", "tasks"):
            pane = self.query_one(f"#{pane_id}", KeyedTable)
            pane.border_title = pane.BORDER_TITLE
        self.query_one("#filter", Input).display = False
        self.query_one("#tasks", TasksPane).focus()
        self._show_queues()
        self._update_status()
        self._apply_size_class()
        if self.banner:
            self.notify(self.banner, timeout=8)
        if self.read_only:
            self.notify("read-only: enqueue, revoke, scale, pause and purge are disabled", timeout=6)
        if self.history is not None:
            from tui.history import HistoryWriter

            self.history_writer = HistoryWriter(self.history)
            self.load_history()  # the sources start once the recent history is in the model
        elif self.autostart:
            self.start_live()

    def start_live(self) -> None:
        """Start the receiver, the refresh timer and the polls."""
        if not self.autostart:
            return
        self.sources.start()
        self.set_interval(self.settings.console_refresh_interval, self.tick)
        self.poll_queues()
        self.inspect_workers(resync=True)

    def on_resize(self, event: events.Resize) -> None:
        # The event's size: self.size still holds the previous one while this runs.
        self._apply_size_class(event.size.height)

    def _apply_size_class(self, height: int | None = None) -> None:
        # Borders cost two lines per pane: drop them on short terminals (80x24).
        self.screen.set_class((self.size.height if height is None else height) < 30, "-compact")

    # ---- the tick: buffer -> model -> panes ------------------------------------------
    @while_panes_exist
    def tick(self) -> None:
        """Drain buffered events within the time budget, apply them, update panes by key."""
        started = time.perf_counter()
        now = time.time()
        new: list[str] = []
        changed: set[str] = set()
        evicted: set[str] = set()
        workers: set[str] = set()
        flow: dict[str, list[int]] = {}
        while True:
            batch = self.sources.drain(CHUNK)
            # Applied even when empty: apply() also returns what merge_task_info,
            # set_worker_stats and mark_revoke_requested changed since the last tick.
            changes = self.model.apply(batch)
            self.events_applied += len(batch)
            new.extend(changes.new_tasks)
            changed |= changes.tasks
            evicted |= changes.evicted
            workers |= changes.workers
            self._count_flow(batch, flow)
            if not batch or time.perf_counter() - started >= TICK_BUDGET_S:
                break
        # With events still buffered, heartbeats may be waiting too: judging liveness by the
        # wall clock would show every worker offline while the console catches up.
        if not self.sources.buffered:
            workers |= self.model.refresh_liveness(now)
        self._inspect_new_workers(workers, now)
        if self.history_writer is not None and (changed or new):
            from tui.history import task_to_row

            get = self.model.get_task
            self.history_writer.submit([task_to_row(t) for u in changed.union(new) if (t := get(u)) is not None])
        self._record_rates(now, flow)
        with self.batch_update():
            tasks = self.query_one("#tasks", TasksPane)
            tasks.update_rows(self.model.get_task, new, changed - evicted, evicted, self.task_filter)
            self.query_one("#workers", WorkersPane).show(self.model.workers(), now, changed=workers)
            if flow or self.tick_count % 4 == 0:
                self._show_queues()
            self._update_status()
        self.tick_count += 1
        self.last_tick_ms = (time.perf_counter() - started) * 1000
        self._watch_connection()
        self._resync_after_loss()

    def _resync_after_loss(self) -> None:
        """Events were dropped (buffer full) or the receiver reconnected: re-read what was missed."""
        dropped, connects = self.sources.dropped, self.sources.status.connects
        lost = dropped > self._dropped_seen or connects > max(1, self._connects_seen)
        self._dropped_seen, self._connects_seen = dropped, max(connects, self._connects_seen)
        if lost and self.autostart:
            self.inspect_workers(resync=True)

    def _inspect_new_workers(self, hosts: set[str], now: float) -> None:
        # A worker that just appeared in events has no pool or queues yet: inspect it now
        # rather than at the next interval (at most once a second).
        if not self.autostart or now - self._new_worker_inspect_at < 1.0:
            return
        for host in hosts:
            w = self.model.get_worker(host)
            if w is not None and w.online and w.pool is None:
                self._new_worker_inspect_at = now
                self.inspect_workers()
                return

    def _count_flow(self, batch: Iterable[dict[str, Any]], flow: dict[str, list[int]]) -> None:
        # in = task-sent into a queue; out = task-received (a worker took it off the queue)
        for ev in batch:
            kind = ev.get("type") if isinstance(ev, dict) else None
            if kind == "task-sent":
                queue = ev.get("queue")
                if isinstance(queue, str):
                    flow.setdefault(queue, [0, 0])[0] += 1
            elif kind == "task-received":
                task = self.model.get_task(ev.get("uuid", ""))
                queue = getattr(task, "queue", None) if task is not None else None
                if isinstance(queue, str):
                    flow.setdefault(queue, [0, 0])[1] += 1

    def _record_rates(self, now: float, flow: dict[str, list[int]]) -> None:
        for queue, (n_in, n_out) in flow.items():
            self._rates[queue].append((now, n_in, n_out))
        for queue, window in self._rates.items():
            while window and now - window[0][0] > RATE_WINDOW_S:
                window.popleft()
            row = self.queue_rows.get(queue)
            if row is not None:
                row.rate_in = sum(x[1] for x in window) / RATE_WINDOW_S
                row.rate_out = sum(x[2] for x in window) / RATE_WINDOW_S

    # ---- queue-length poll (thread worker) -------------------------------------------
    @work(thread=True, exclusive=True, group="queue-poll")
    def poll_queues(self) -> None:
        # runs in a worker thread
        self.post_message(QueueLengthsPolled(self.sources.poll_queues()))

    @while_panes_exist
    def on_queue_lengths_polled(self, message: QueueLengthsPolled) -> None:
        poll = message.poll
        self.last_poll = poll
        if not poll.error:
            seen = set()
            for q in poll.queues:
                seen.add(q.name)
                row = self.queue_rows.setdefault(q.name, QueueRow(q.name, None, configured=q.name in QUEUES))
                row.waiting, row.by_priority, row.reserved = q.waiting, q.by_priority, q.reserved
                self._trend[q.name].append(float(q.waiting))
                row.trend = list(self._trend[q.name])
            self.queue_samples.append((poll.taken_at, {q.name: q.waiting for q in poll.queues}))
            for name in list(self.queue_rows):
                if name not in seen and name not in QUEUES:
                    del self.queue_rows[name]
        self._show_queues()
        self._update_status()
        if poll.supported:
            self._schedule("queue-poll", self.settings.console_queue_poll_interval, self.poll_queues)

    def _show_queues(self) -> None:
        consumers: dict[str, int] = collections.Counter()
        for w in self.model.workers():
            if getattr(w, "online", False):
                for q in getattr(w, "queues", None) or ():
                    consumers[q] += 1
        rows = []
        for name in sorted(self.queue_rows, key=lambda n: (n not in QUEUES, QUEUES.index(n) if n in QUEUES else 0, n)):
            row = self.queue_rows[name]
            row.consumers = consumers.get(name, 0)
            row.paused = name in self.paused_queues
            rows.append(row)
        self.query_one("#queues", QueuesPane).show(rows)

    # ---- inspect (thread worker) -------------------------------------------------------
    @work(thread=True, exclusive=True, group="inspect")
    def inspect_workers(self, resync: bool = False) -> None:
        # runs in a worker thread; blocks on the broker for up to control_timeout
        online = sum(1 for w in self.model.workers() if getattr(w, "online", False))
        result = self.sources.inspect(online or None, tasks=resync)
        self.post_message(WorkersInspected(result, resync))

    @while_panes_exist
    def on_workers_inspected(self, message: WorkersInspected) -> None:
        result = message.result
        self.last_inspection = result
        changed: set[str] = set()
        for host, stats in result.stats.items():
            if self.model.set_worker_stats(host, stats):
                changed.add(host)
        for host, queues in result.active_queues.items():
            if self.model.set_worker_queues(host, queues):
                changed.add(host)
        if message.resync:
            for state, replies in (("STARTED", result.active), ("RECEIVED", result.reserved)):
                for host, infos in replies.items():
                    for info in infos:
                        if isinstance(info, dict) and info.get("id"):
                            self.model.merge_task_info(info["id"], name=info.get("name"), hostname=host,
                                                       state=state, args=str(info.get("args")),
                                                       kwargs=str(info.get("kwargs")))
        self._enable_events_if_needed(result)
        workers = self.model.workers()
        self.query_one("#workers", WorkersPane).show(workers)
        self.worker_samples.append((time.time(), {w.hostname: w.online for w in workers}))
        self._show_queues()
        # A worker seen in events but not yet inspected (it just started): ask again soon.
        pending = any(w.online and w.pool is None for w in self.model.workers())
        self._schedule("inspect", 0.5 if pending else self.settings.console_inspect_interval, self.inspect_workers)

    def _schedule(self, name: str, delay: float, callback: Callable[[], object]) -> None:
        """One pending timer per poll: extra polls (resync, after an action) replace it, so
        the periodic polls never multiply."""
        previous = self._poll_timers.pop(name, None)
        if previous is not None:
            previous.stop()
        self._poll_timers[name] = self.set_timer(delay, callback)

    def _enable_events_if_needed(self, result: InspectionResult) -> None:
        # Every worker is asked once: "task events already enabled" means nothing to do;
        # "task events enabled" means they were off (started without -E) and now are on.
        new = [h for h in result.stats if h not in self._events_enabled_on]
        if not new or self.celery_app is None:
            return
        self._events_enabled_on.update(new)
        if self.read_only:
            return  # read-only never changes a worker, not even its event settings
        self._enable_events(new)

    @work(thread=True, group="enable-events")
    def _enable_events(self, hosts: list[str]) -> None:
        # runs in a worker thread
        try:
            replies = self.celery_app.control.enable_events(  # type: ignore[union-attr]
                destination=hosts, reply=True, timeout=self.settings.console_control_timeout)
        except Exception as exc:
            self.post_message(EventsEnabled([], self.redact(f"could not enable events on {', '.join(hosts)}: {exc}")))
            return
        switched = sorted(host for reply in replies or [] if isinstance(reply, dict) for host, body in reply.items()
                          if isinstance(body, dict) and body.get("ok") == "task events enabled")
        self.post_message(EventsEnabled(switched, ""))

    def on_events_enabled(self, message: EventsEnabled) -> None:
        if message.error:
            self.notify(message.error, severity="error")
        elif message.hosts:
            self.events_switched_on.extend(message.hosts)
            self.notify(f"task events were off on {', '.join(message.hosts)}: enabled them (enable_events)",
                        timeout=10)

    # ---- connection state ------------------------------------------------------------
    def connection_state(self) -> tuple[str, str]:
        """``(label, style)`` for the status line: connected / reconnecting in Ns / connecting."""
        st = self.sources.status
        poll_error = self.last_poll.error if self.last_poll and self.last_poll.supported else ""
        if st.state == RECONNECTING:
            wait = max(0.0, (st.next_attempt_at or time.time()) - time.time())
            why = f" ({st.error[:60]})" if st.error else ""
            return f"✘ disconnected, retry in {wait:.0f}s{why}", "bold red"
        if st.state == CONNECTED and poll_error:
            return f"✘ broker not answering ({poll_error[:60]})", "bold red"
        if st.state == CONNECTED:
            return "● connected", "green"
        return "… connecting", "yellow"

    def _watch_connection(self) -> None:
        connected = self.sources.status.state == CONNECTED and not (self.last_poll and self.last_poll.error)
        stale = not connected
        if stale != self._stale:
            self._stale = stale
            for pane_id in ("queues", "workers", "tasks"):
                pane = self.query_one(f"#{pane_id}", KeyedTable)
                pane.set_class(stale, "-stale")
                pane.border_subtitle = "stale: broker lost, showing last known data" if stale else ""
        if connected and not self._was_connected and self.tick_count > 1:
            # Back after an outage: re-read workers, active and reserved tasks.
            self.inspect_workers(resync=True)
            self.poll_queues()
        self._was_connected = connected

    def _update_status(self) -> None:
        label, style = self.connection_state()
        workers = self.model.workers()
        online = sum(1 for w in workers if getattr(w, "online", False))
        rate = self.model.tasks_per_second(time.time())
        text = Text(no_wrap=True, overflow="ellipsis")
        # Appended str is literal (never markup); visible() keeps escapes in broker errors
        # and in the typed or pasted filter off the terminal, and the line one line.
        text.append(f"{visible(self.settings.broker_display)} ", style="bold")
        text.append(visible(label), style=style)
        if self.task_filter.text:
            # Early in the line: a line cut at the right edge must not hide that rows are filtered.
            text.append(f" │ filter: {visible(self.task_filter.text)}", style="bold cyan")
            for error in self.task_filter.errors:
                text.append(f" ⚠ {visible(error)}", style="bold red")
        text.append(f" │ {online}/{len(workers)} workers │ {rate:.1f}/s │ ev ")
        dropped = self.sources.dropped
        text.append(f"{self.sources.received:,}↓ {self.events_applied:,}✓ ")
        text.append(f"{dropped:,}✗", style="bold red" if dropped else "")
        if self.sources.buffered:
            text.append(f" {self.sources.buffered:,} buffered", style="yellow")
        m = self.model
        # skipped at the trust boundary (events, inspect replies, backend records, history
        # rows) or by the model itself
        boundary = self.sources.boundary
        bad = m.events_skipped + m.events_unknown + boundary.invalid
        if bad or m.fields_clipped or boundary.cleaned:
            text.append(f" │ {bad:,} bad/unknown events skipped, {m.fields_clipped:,} fields clipped, "
                        f"{boundary.cleaned:,} cleaned", style="yellow")
        reconnects = self.sources.status.connects - 1
        if reconnects > 0:
            text.append(f" │ reconnected {reconnects}×", style="yellow")
        if self.history_writer is not None and (note := self.history_writer.status_note()):
            text.append(f" │ {visible(note)}", style="bold red")  # its reasons may quote data
        if self.read_only:
            text.append(" │ READ-ONLY", style="bold yellow")
        self.query_one("#status", Static).update(text)

    # ---- actions -----------------------------------------------------------------------
    def action_focus_pane(self, pane: str) -> None:
        """Focus the queues, workers or tasks pane."""
        self.query_one(f"#{pane}", KeyedTable).focus()

    def action_cycle_pane(self, step: int) -> None:
        """Focus the next (or previous) pane."""
        order = ["queues", "workers", "tasks"]
        focused = self.focused
        current = focused.id if focused is not None and focused.id in order else "tasks"
        if isinstance(self.screen, Screen) and self.screen is not self.screen_stack[0]:
            # A dialog is open: Tab moves between its fields (this binding has priority,
            # so the dialog never sees the key itself).
            (self.screen.focus_next if step > 0 else self.screen.focus_previous)()
            return
        self.action_focus_pane(order[(order.index(current) + step) % len(order)])

    def action_zoom(self) -> None:
        """Maximise the focused pane, or restore the layout."""
        if self.screen.maximized is not None:
            self.screen.minimize()
        elif self.focused is not None and isinstance(self.focused, KeyedTable):
            self.screen.maximize(self.focused, container=False)

    def action_filter(self) -> None:
        """Open the task filter."""
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def action_escape(self) -> None:
        """Clear the filter (or leave zoom)."""
        box = self.query_one("#filter", Input)
        if box.display or self.task_filter.text:
            box.value = ""
            self._set_filter("")
            box.display = False
            self.query_one("#tasks", TasksPane).focus()
        elif self.screen.maximized is not None:
            self.screen.minimize()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._set_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#filter", Input).display = bool(event.value)
        self.query_one("#tasks", TasksPane).focus()

    def _set_filter(self, text: str) -> None:
        flt = TaskFilter(text)
        if flt.text == self.task_filter.text:
            return
        self.task_filter = flt
        self.query_one("#tasks", TasksPane).rebuild(self.model.iter_tasks(newest_first=True), flt)
        self._update_status()

    def on_key(self, event: Any) -> None:
        # Esc inside the filter box clears it (Input swallows the app binding otherwise).
        if event.key == "escape" and isinstance(self.focused, Input) and self.focused.id == "filter":
            event.stop()
            self.action_escape()
            return
        # A pane's key pressed on another pane is greyed in the footer and does nothing;
        # say so rather than leave the operator wondering whether it was sent.
        action = _PANE_KEYS.get(event.key)
        if action is not None and self.check_action(action, ()) is None:
            pane = self.PANE_ACTIONS[action]
            number = {"queues": 1, "workers": 2, "tasks": 3}[pane]
            self.notify(f"{event.character or event.key} works on the {pane.capitalize()} pane: "
                        f"press {number} to focus it", severity="warning")

    @on(TasksPane.RowSelected, "#tasks")
    def _task_selected(self, event: TasksPane.RowSelected) -> None:
        self.action_open_detail(event.row_key.value)

    def action_open_detail(self, uuid: str | None = None) -> None:
        """Show the highlighted task's detail screen."""
        pane = self.query_one("#tasks", TasksPane)
        uuid = uuid or pane.cursor_key()
        task = self.model.get_task(uuid) if uuid else None
        if task is None:
            self.notify("no task highlighted", severity="warning")
            return
        note = ""
        if uuid in pane.backend_uuids:
            note = "filled in from the result backend: the console did not see this task live"
        self.push_screen(TaskDetailScreen(task, self.redact, self.sources.fetch_result, note=note))

    def action_help(self) -> None:
        """Show every binding."""
        self.push_screen(HelpScreen(self.help_rows()))

    def help_rows(self) -> list[tuple[str, str]]:
        """(keys, what it does) for the help screen."""
        return [(k, d) for k, d, _ in self.HELP]

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for keys, desc, action in self.HELP:
            if action:
                # palette titles and help are parsed as markup: escape them
                yield SystemCommand(escape_markup(f"{desc.split(':')[0].capitalize()} ({keys})"), escape_markup(desc),
                                    lambda a=action: self.run_action(a))
        for title, action in (("Grow every worker's pool by one", "resize_all(1)"),
                              ("Shrink every worker's pool by one", "resize_all(-1)"),
                              ("Set autoscale on every worker", "autoscale_all")):
            yield SystemCommand(title, "applies to all online workers", lambda a=action: self.run_action(a))

    def on_unmount(self) -> None:
        """However the app ends (q, Ctrl+Q, an error, a test's exit): stop the receiver
        thread, whose reconnect loop would otherwise outlive the app, and flush the history."""
        self.sources.stop()
        self.close_history()

    async def action_quit(self) -> None:
        """Stop the sources, flush the history and leave."""
        self.sources.stop()
        self.close_history()
        self.exit()


#: key -> action name, for the bindings that work on one pane only (see AfirgenApp.on_key).
_PANE_KEYS: dict[str, str] = {
    b.key: b.action.split("(")[0] for b in AfirgenApp.BINDINGS
    if isinstance(b, Binding) and b.action.split("(")[0] in AfirgenApp.PANE_ACTIONS
}
