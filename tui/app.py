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
import functools
import time
from collections.abc import Callable, Iterable
from typing import Any

from celery import Celery
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from afirgen_tasks.routing import QUEUES
from afirgen_tasks.settings import Settings
from tui.model import ClusterModel, TaskFilter
from tui.redaction import Redactor
from tui.screens.help import HelpScreen
from tui.screens.task_detail import TaskDetailScreen
from tui.sources.cluster import QueuePoll, Sources
from tui.sources.events import CONNECTED, RECONNECTING
from tui.sources.inspection import InspectionResult
from tui.widgets.keyed_table import KeyedTable
from tui.widgets.panes import QueueRow, QueuesPane, TasksPane, WorkersPane

#: Longest the UI thread spends applying events per tick (the rest of the tick stays interactive).
TICK_BUDGET_S = 0.05
#: Events applied per model call inside a tick.
CHUNK = 2000
#: Seconds of history behind the in/out rates.
RATE_WINDOW_S = 5.0
TREND_POINTS = 10


def _while_panes_exist(method: Callable[..., Any]) -> Callable[..., Any]:
    """Timer and message callbacks can fire while the app shuts down and its panes are gone."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except NoMatches:
            if self.is_running and self.screen_stack and self.screen_stack[0].is_attached:
                raise
            return None

    return wrapper


class QueueLengthsPolled(Message):
    """A queue-length poll finished (successfully or not)."""

    def __init__(self, poll: QueuePoll):
        super().__init__()
        self.poll = poll


class WorkersInspected(Message):
    """An ``inspect`` round finished."""

    def __init__(self, result: InspectionResult, resync: bool):
        super().__init__()
        self.result = result
        self.resync = resync


class HistoryLoaded(Message):
    """The newest persisted tasks were read (or could not be)."""

    def __init__(self, rows: list[dict[str, Any]], error: str):
        super().__init__()
        self.rows = rows
        self.error = error


class HistoryBackfilled(HistoryLoaded):
    """Tasks the console never saw were read from the result backend into the history."""


class ExportDone(Message):
    """An export finished: ``path`` written with ``count`` tasks, or ``error``."""

    def __init__(self, path: str, count: int, error: str):
        super().__init__()
        self.path = path
        self.count = count
        self.error = error


def _first_time(row: Any) -> float | None:
    get = row.get if isinstance(row, dict) else (lambda k: getattr(row, k, None))
    value = get("sent") or get("received") or get("first_seen")
    return value if isinstance(value, (int, float)) else None


class EventsEnabled(Message):
    """``enable_events`` was sent to new workers; ``hosts`` had task events off and now have them on."""

    def __init__(self, hosts: list[str], error: str):
        super().__init__()
        self.hosts = hosts
        self.error = error


class ActionCompleted(Message):
    """A mutating action finished; ``outcome`` says what happened, in words."""

    def __init__(self, action: str, target: str, outcome: Any, reinspect: bool):
        super().__init__()
        self.action = action
        self.target = target
        self.outcome = outcome
        self.reinspect = reinspect


class AfirgenApp(App[None]):
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
        ("Tab / Shift+Tab", "next / previous pane", "cycle_pane(1)"),
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
        ("H", "search all persisted history (filter syntax + args:text since:2h until:30m)", "search_history"),
        ("E", "export the filtered history: CSV, Excel (.xlsx) or incident report (PDF)", "export"),
        ("x", "purge the highlighted queue, after typing its name (Queues pane)", "purge_queue"),
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
        self.last_enqueue: Any = None
        self.action_log: list[ActionCompleted] = []
        from tui.actions import Actions, AuditLog

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
        """Notifications carry task ids, JSON and worker replies: plain text, never markup."""
        super().notify(message, markup=markup, **kwargs)

    # ---- layout ----------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="status")
        with Vertical(id="panes"):
            yield QueuesPane(id="queues")
            yield WorkersPane(id="workers")
            with Vertical(id="tasks-box"):
                yield Input(placeholder="filter: words, state:failure queue:email worker:w1 prio:>=8 (Enter keeps, Esc clears)",
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

    # ---- persisted history -----------------------------------------------------------
    @work(thread=True, exclusive=True, group="history-load")
    def load_history(self) -> None:
        # runs in a worker thread: read the newest rows off the UI thread
        try:
            rows = self.history.load_recent(self.model.max_tasks)
            self.post_message(HistoryLoaded(rows, ""))
        except Exception as exc:
            self.post_message(HistoryLoaded([], self.redact(f"{type(exc).__name__}: {exc}")))

    def on_history_loaded(self, message: HistoryLoaded) -> None:
        from tui.history import load_into_model

        if message.error:
            self.notify(f"history not loaded: {message.error}", severity="error")
        else:
            tasks = self.query_one("#tasks", TasksPane)
            tasks.backend_uuids |= load_into_model(self.model, message.rows)
            self.history_loaded = len(message.rows)
            self.model.apply([])  # the loaded tasks are not news: drop the pending changes
            tasks.rebuild(self.model.iter_tasks(newest_first=True), self.task_filter)
            if message.rows:
                self.notify(f"loaded {len(message.rows):,} task(s) from the history", timeout=4)
        self.start_live()
        self.backfill_history()

    @work(thread=True, exclusive=True, group="history-backfill")
    def backfill_history(self) -> None:
        # runs in a worker thread: scan the result backend for tasks the console never saw
        from afirgen_tasks.priority import is_redis_transport
        from tui.history import backfill_from_backend
        from tui.sources.redis_conn import redis_client

        url = self.settings.celery_result_backend
        if not is_redis_transport(url):
            return
        try:
            client = redis_client(url, self.settings, socket_connect_timeout=3, socket_timeout=10)
            try:
                result = backfill_from_backend(client, self.history, known_uuids=set())
            finally:
                client.close()
            rows = [r for u in result.uuids if (r := self.history.get(u)) is not None]
            self.post_message(HistoryBackfilled(rows, ""))
        except Exception as exc:
            self.post_message(HistoryBackfilled([], self.redact(f"{type(exc).__name__}: {exc}")))

    def on_history_backfilled(self, message: HistoryBackfilled) -> None:
        from tui.history import load_into_model

        if message.error:
            self.notify(f"result backend not read: {message.error}", severity="warning")
            return
        fresh = [r for r in message.rows if self.model.get_task(r["uuid"]) is None]
        if fresh:
            tasks = self.query_one("#tasks", TasksPane)
            tasks.backend_uuids |= load_into_model(self.model, fresh) | {r["uuid"] for r in fresh}
            self.model.apply([])
            tasks.rebuild(self.model.iter_tasks(newest_first=True), self.task_filter)
            self.notify(f"{len(fresh):,} task(s) the console did not see were filled in from the result backend",
                        timeout=6)

    def on_resize(self) -> None:
        self._apply_size_class()

    def _apply_size_class(self) -> None:
        # Borders cost two lines per pane: drop them on short terminals (80x24).
        self.screen.set_class(self.size.height < 30, "-compact")

    # ---- the tick: buffer -> model -> panes ------------------------------------------
    @_while_panes_exist
    def tick(self) -> None:
        """Drain buffered events within the time budget, apply them, update panes by key."""
        started = time.perf_counter()
        now = time.time()
        new: list[str] = []
        changed: set[str] = set()
        evicted: set[str] = set()
        workers: set[str] = set()
        flow: dict[str, list[int]] = {}
        first = True
        while time.perf_counter() - started < TICK_BUDGET_S:
            batch = self.sources.drain(CHUNK)
            # The first apply runs even without events: it also returns what merge_task_info,
            # set_worker_stats and mark_revoke_requested changed since the last tick.
            if not batch and not first:
                break
            first = False
            changes = self.model.apply(batch)
            self.events_applied += len(batch)
            new.extend(changes.new_tasks)
            changed |= changes.tasks
            evicted |= changes.evicted
            workers |= changes.workers
            self._count_flow(batch, flow)
            if not batch:
                break
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
            self.query_one("#workers", WorkersPane).show(self.model.workers(), now)
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

    @_while_panes_exist
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
            self.set_timer(self.settings.console_queue_poll_interval, self.poll_queues)

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

    @_while_panes_exist
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
        self.set_timer(0.5 if pending else self.settings.console_inspect_interval, self.inspect_workers)

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
            return f"✘ disconnected, retry in {wait:.0f}s", "bold red"
        if st.state == CONNECTED and poll_error:
            return "✘ broker not answering", "bold red"
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
        text.append(f"{self.settings.broker_display} ", style="bold")
        text.append(label, style=style)
        text.append(f" │ {online}/{len(workers)} workers │ {rate:.1f}/s │ ev ")
        dropped = self.sources.dropped
        text.append(f"{self.sources.received:,}↓ {self.events_applied:,}✓ ")
        text.append(f"{dropped:,}✗", style="bold red" if dropped else "")
        if self.sources.buffered:
            text.append(f" {self.sources.buffered:,}…", style="yellow")
        m = self.model
        bad = m.events_skipped + m.events_unknown
        if bad or m.fields_clipped:
            text.append(f" │ {bad:,} bad/unknown events skipped, {m.fields_clipped:,} fields clipped", style="yellow")
        reconnects = self.sources.status.connects - 1
        if reconnects > 0:
            text.append(f" │ reconnected {reconnects}×", style="yellow")
        if self.read_only:
            text.append(" │ READ-ONLY", style="bold yellow")
        if self.task_filter.text:
            text.append(f" │ filter: {self.task_filter.text}", style="bold cyan")
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

    def action_search_history(self) -> None:
        """Search the whole persisted history (not only what is in memory)."""
        if self.history is None:
            self.notify("no history store: [history] db is not set up", severity="warning")
            return
        from tui.screens.history_search import HistorySearchScreen

        self.push_screen(HistorySearchScreen(self.history.search, self.redact, self.task_filter.text))

    def action_export(self) -> None:
        """Export the filtered history to CSV, Excel or an incident report PDF."""
        from tui.screens.forms import ChoiceScreen

        what = f"tasks matching {self.task_filter.text!r}" if self.task_filter.text else "all tasks"
        source = "the persisted history" if self.history is not None else "memory"
        self.push_screen(ChoiceScreen("Export", f"Export {what} from {source} (redaction applies):",
                                      [("c", "csv", "CSV"), ("x", "xlsx", "Excel workbook (.xlsx)"),
                                       ("p", "pdf", "incident report (PDF): backlog and worker plots, "
                                                    "failures with tracebacks, actions taken")]),
                         self._export_chosen)

    def _export_chosen(self, kind: str | None) -> None:
        if kind is None:
            self.notify("export cancelled", timeout=3)
            return
        rows: Any = None
        if self.history is None:
            rows = [t for t in self.model.iter_tasks(newest_first=True) if self.task_filter(t)]
        self.notify(f"exporting {kind}…", timeout=3)
        self._export(kind, self.task_filter.text, rows)

    @work(thread=True, group="export")
    def _export(self, kind: str, query: str, rows: Any) -> None:
        # runs in a worker thread: queries and file writes off the UI thread
        from tui.actions import AuditLog
        from tui.export import export_csv, export_incident_pdf, export_path, export_xlsx

        try:
            if rows is None:
                if self.history_writer is not None:
                    self.history_writer.flush()  # what is on screen is in the file too
                rows = self.history.search(query, limit=1_000_000)
            path = export_path(self.settings.paths_report_dir, kind)
            if kind == "csv":
                export_csv(rows, path, self.redact)
            elif kind == "xlsx":
                export_xlsx(rows, path, self.redact)
            else:
                now = time.time()
                firsts = [t for r in rows if (t := _first_time(r))]
                since = min([self.started_at, *firsts]) if firsts else self.started_at
                export_incident_pdf(path, rows, (since, now), list(self.queue_samples), list(self.worker_samples),
                                    AuditLog(self.settings.console_audit_log).read(), self.redact)
            self.post_message(ExportDone(str(path), len(rows), ""))
        except Exception as exc:
            self.post_message(ExportDone("", 0, self.redact(f"{type(exc).__name__}: {exc}")))

    def on_export_done(self, message: ExportDone) -> None:
        self.exports.append(message)
        if message.error:
            self.notify(f"export failed: {message.error}", severity="error", timeout=10)
        else:
            self.notify(f"exported {message.count:,} task(s) to {message.path}", timeout=10)

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
                yield SystemCommand(f"{desc.split(':')[0].capitalize()} [{keys}]", desc,
                                    lambda a=action: self.run_action(a))
        for title, action in (("Grow every worker's pool by one", "resize_all(1)"),
                              ("Shrink every worker's pool by one", "resize_all(-1)"),
                              ("Set autoscale on every worker", "autoscale_all")):
            yield SystemCommand(title, "applies to all online workers", lambda a=action: self.run_action(a))

    # ---- mutating actions (issue: validated, confirmed, audited) ------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Grey out pane-specific keys in the footer when another pane has focus.
        pane = self.PANE_ACTIONS.get(action)
        if pane is None or not isinstance(self.screen, Screen) or self.screen is not self.screen_stack[0]:
            return True
        focused = self.focused
        return True if focused is not None and focused.id == pane else None

    def _pane_key(self, pane: str, what: str) -> str | None:
        table = self.query_one(f"#{pane}", KeyedTable)
        key = table.cursor_key() if self.focused is table else None
        if key is None:
            self.notify(f"highlight a {what} in the {pane.capitalize()} pane first "
                        f"({ {'queues': 1, 'workers': 2, 'tasks': 3}[pane]} focuses it)", severity="warning")
        return key

    def _refuse_read_only(self, action: str, target: str) -> bool:
        """In read-only mode: say why (and audit the refusal) instead of acting."""
        if not self.read_only:
            return False
        self.run_action_worker(action, target, {}, None)
        return True

    def action_enqueue(self) -> None:
        """Open the enqueue form."""
        if self._refuse_read_only("enqueue", "-"):
            return
        if self.celery_app is None:
            self.notify("no broker connection to send jobs to", severity="error")
            return
        from afirgen_tasks.celery_app import task_names
        from tui.screens.forms import EnqueueScreen

        queues = sorted(set(QUEUES) | set(self.queue_rows))
        self.push_screen(EnqueueScreen(self.celery_app, task_names(self.celery_app), queues), self._enqueue_chosen)

    def _enqueue_chosen(self, req: Any) -> None:
        if req is None:
            self.notify("enqueue cancelled: nothing sent", timeout=3)
            return
        self.last_enqueue = req
        self.run_action_worker("enqueue", req.task, {"request": req}, lambda: self.actions.enqueue(req))

    def action_repeat_enqueue(self) -> None:
        """Send the previous job again (a new task id)."""
        if self._refuse_read_only("enqueue", "-"):
            return
        if self.last_enqueue is None:
            self.notify("nothing to repeat yet: enqueue a job with e first", severity="warning")
            return
        req = self.last_enqueue
        self.run_action_worker("enqueue", req.task, {"request": req}, lambda: self.actions.enqueue(req))

    def action_revoke(self, mode: str) -> None:
        """Revoke, terminate (SIGTERM) or kill (SIGKILL) the highlighted task, after confirmation."""
        uuid = self._pane_key("tasks", "task")
        if uuid is None:
            return
        task = self.model.get_task(uuid)
        state = task.state if task is not None else None
        name = (task.short_name if task is not None else "?")
        if self.read_only or (task is not None and task.is_finished):
            # the action layer says why (read-only, or finished) and audits it; nothing is sent
            self.run_action_worker(mode, uuid, {}, lambda: self.actions.revoke(uuid, state, mode))
            return
        verbs = {"revoke": "Revoke", "terminate": "Terminate (SIGTERM)", "kill": "Kill (SIGKILL)"}
        effect = {"revoke": "a waiting job is discarded when it reaches a worker; a scheduled one never runs",
                  "terminate": "the worker sends SIGTERM to the process running it",
                  "kill": "the worker sends SIGKILL to the process running it (no clean-up)"}[mode]
        from tui.screens.forms import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if not yes:
                self.notify(f"{mode} cancelled: nothing sent", timeout=3)
                return
            self.model.mark_revoke_requested(uuid)
            self.tick()
            self.run_action_worker(mode, uuid, {}, lambda: self.actions.revoke(uuid, state, mode))

        self.push_screen(ConfirmScreen(f"{verbs[mode]} task", f"{verbs[mode]} {name} [{uuid}] ({state})?\n{effect}."),
                         answered)

    def _worker_targets(self, all_workers: bool) -> list[str]:
        if all_workers:
            return [w.hostname for w in self.model.workers() if w.online]
        key = self._pane_key("workers", "worker")
        return [key] if key else []

    def action_resize(self, delta: int, all_workers: bool = False) -> None:
        """Grow (+) or shrink (-) the highlighted worker's pool (or every worker's)."""
        hosts = self._worker_targets(all_workers)
        if not hosts:
            return
        self.run_action_worker("pool_grow" if delta > 0 else "pool_shrink", ",".join(hosts), {},
                               lambda: self.actions.pool_resize(hosts, delta), reinspect=True)

    def action_resize_all(self, delta: int) -> None:
        """Grow or shrink every online worker's pool (command palette)."""
        self.action_resize(delta, all_workers=True)

    def action_resize_form(self) -> None:
        """Ask for N (negative shrinks) and whether to apply to all workers."""
        target = self._pane_key("workers", "worker")
        if target is None:
            return
        from tui.screens.forms import NumberFormScreen

        def chosen(values: dict[str, Any] | None) -> None:
            if values is not None:
                hosts = self._worker_targets(values["all"]) if values["all"] else [target]
                n = values["n"]
                self.run_action_worker("pool_grow" if n > 0 else "pool_shrink", ",".join(hosts), {},
                                       lambda: self.actions.pool_resize(hosts, n), reinspect=True)

        self.push_screen(NumberFormScreen("Resize pool", [("n", "By N", "1")], target,
                                          lambda v: None if v["n"] and abs(v["n"]) <= 64 else
                                          "N must be between -64 and 64, not 0"), chosen)

    def action_autoscale(self, all_workers: bool = False) -> None:
        """Set autoscale max,min on the highlighted worker (or all, from the form)."""
        target = "all workers" if all_workers else self._pane_key("workers", "worker")
        if target is None:
            return
        worker = self.model.get_worker(target) if not all_workers else None
        cur = worker.autoscale if worker is not None and worker.autoscale else (8, 2)
        from tui.screens.forms import NumberFormScreen

        def chosen(values: dict[str, Any] | None) -> None:
            if values is not None:
                hosts = self._worker_targets(True) if (values["all"] or all_workers) else [target]
                self.run_action_worker("autoscale", ",".join(hosts), {},
                                       lambda: self.actions.autoscale(hosts, values["max"], values["min"]),
                                       reinspect=True)

        def check(v: dict[str, int]) -> str | None:
            if not 1 <= v["max"] <= 512 or not 0 <= v["min"] <= v["max"]:
                return "need 1 <= max <= 512 and 0 <= min <= max"
            return None

        self.push_screen(NumberFormScreen("Autoscale", [("max", "Max", str(cur[0])), ("min", "Min", str(cur[1]))],
                                          target, check), chosen)

    def action_autoscale_all(self) -> None:
        """Set autoscale on every online worker (command palette)."""
        self.action_autoscale(all_workers=True)

    def action_pause_queue(self) -> None:
        """Pause (or resume) consumption of the highlighted queue on every worker."""
        queue = self._pane_key("queues", "queue")
        if queue is None:
            return
        resume = queue in self.paused_queues
        action = "resume_queue" if resume else "pause_queue"
        self.run_action_worker(action, queue, {"queue": queue, "resume": resume},
                               lambda: self.actions.set_consuming(queue, consume=resume), reinspect=True)

    def action_purge_queue(self) -> None:
        """Purge the highlighted queue after the operator types its name."""
        queue = self._pane_key("queues", "queue")
        if queue is None:
            return
        if self._refuse_read_only("purge", queue):
            return
        row = self.queue_rows.get(queue)
        waiting = row.waiting if row is not None else None
        count = f"{waiting:,} waiting message(s)" if waiting is not None else "every waiting message (count unknown)"
        from tui.screens.forms import TypedConfirmScreen

        def typed(name: str | None) -> None:
            if name is None:
                self.notify("purge cancelled: nothing deleted", timeout=3)
                return
            self.run_action_worker("purge", queue, {}, lambda: self.actions.purge(queue, name, waiting))

        self.push_screen(TypedConfirmScreen(f"Purge {queue}",
                                            f"This deletes {count} from {queue}. Reserved (running) jobs are "
                                            f"not affected. Type the queue name to confirm.", queue), typed)

    def run_action_worker(self, action: str, target: str, params: dict[str, Any], call: Callable[[], Any] | None,
                          reinspect: bool = False) -> None:
        """Run an action in a thread worker; the outcome comes back as :class:`ActionCompleted`."""
        self._run_action(action, target, call, reinspect)

    @work(thread=True, group="actions")
    def _run_action(self, action: str, target: str, call: Callable[[], Any] | None, reinspect: bool) -> None:
        # runs in a worker thread: the broker may be slow; the outcome is posted back
        from tui.actions import Outcome, ReadOnlyRefused, ValidationFailed

        try:
            if self.read_only or call is None:
                self.actions.guard(action, target, {})
                outcome = Outcome(False, f"{action}: not available")
            else:
                outcome = call()
        except ReadOnlyRefused as exc:
            outcome = Outcome(False, str(exc))
        except ValidationFailed as exc:
            outcome = Outcome(False, "; ".join(exc.errors.values()))
        except Exception as exc:  # never into the event loop: shown as words
            outcome = Outcome(False, self.redact(f"{action} failed: {type(exc).__name__}: {exc}"))
        self.post_message(ActionCompleted(action, target, outcome, reinspect))

    @_while_panes_exist
    def on_action_completed(self, message: ActionCompleted) -> None:
        out = message.outcome
        self.action_log.append(message)
        text = out.message
        if out.replies:
            text += "\n" + "\n".join(f"{h}: {w}" for h, w in sorted(out.replies.items()))
        self.notify(self.redact(text), severity="information" if out.ok else "error", timeout=6 if out.ok else 10)
        if message.action == "enqueue" and out.ok and out.task_id:
            req = self.last_enqueue
            self.model.merge_task_info(out.task_id, name=req.task if req else None, queue=req.queue if req else None,
                                       priority=req.priority if req else None, state="SENT")
            tasks = self.query_one("#tasks", TasksPane)
            previous, tasks.highlight_uuid = tasks.highlight_uuid, out.task_id
            self.tick()
            # redraw both rows: the mark moves even when the task-sent event came first
            for uuid in (previous, out.task_id):
                task = self.model.get_task(uuid) if uuid else None
                if task is not None and tasks.has_key(uuid):
                    tasks.upsert(uuid, tasks.cells(task))
            tasks.select(out.task_id)
        if message.action in ("revoke", "terminate", "kill") and not out.ok:
            task = self.model.get_task(message.target)
            if task is not None and task.revoke_requested and not task.is_finished:
                # nobody took the request: do not leave "revoke requested" on the row
                task.revoke_requested = False
                tasks = self.query_one("#tasks", TasksPane)
                if tasks.has_key(task.uuid):
                    tasks.upsert(task.uuid, tasks.cells(task))
        if message.action in ("pause_queue", "resume_queue") and out.ok:
            if message.action == "pause_queue":
                self.paused_queues.add(message.target)
            else:
                self.paused_queues.discard(message.target)
            self._show_queues()
        if message.action == "purge" and out.ok:
            self.poll_queues()
        if message.reinspect:
            self.inspect_workers()
        self._update_status()

    def close_history(self) -> None:
        """Flush the history writer and close the store (idempotent)."""
        if self.history_writer is not None:
            self.history_writer.close()
            self.history_writer = None

    async def action_quit(self) -> None:
        """Stop the sources, flush the history and leave."""
        self.sources.stop()
        self.close_history()
        self.exit()
