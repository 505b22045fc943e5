"""The console screen: the status line and the three live panes, fed in one direction.

* The receiver thread fills a bounded buffer; :meth:`ConsoleScreen.tick` (a timer on the
  UI thread) drains it within a time budget, applies the batch to the model and updates
  the panes by key inside ``batch_update()``.
* Queue lengths and ``inspect`` are thread workers that post a message with the result;
  the handler updates the pane and schedules the next poll, so polls never overlap.
* Broker lost: the status line says so with a countdown, panes keep their last data and
  are marked stale; the sources reconnect by themselves and the screen resyncs when back.
* What the operator asks for arrives as :class:`CommandRequested` from the panes (their
  keys) or as this screen's own actions; the :class:`ActionRunner` and the
  :class:`HistoryService` carry them out.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from textual import events, on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Input, Static

from afirgen_tasks.routing import QUEUES
from tui.core.formatting import threshold
from tui.core.model import TaskRecord, WorkerRecord
from tui.core.ordering import next_order
from tui.core.pauses import PauseRecord, QueuePause, WorkerQueues, derive_pauses
from tui.core.query import TaskFilter
from tui.core.safe_text import visible
from tui.sources.events import CONNECTED, RECONNECTING
from tui.sources.inspection import InspectionResult
from tui.sources.queue_lengths import QueueSnapshot
from tui.ui.action_runner import ActionRunner
from tui.ui.commands import PANE_NUMBER, PANES, bindings, command_for_key, enabled, pane_of_key
from tui.ui.history_service import HistoryService
from tui.ui.lifecycle import while_panes_exist
from tui.ui.messages import (
    ActionCompleted,
    CommandRequested,
    EventsEnabled,
    ExportDone,
    HistoryBackfilled,
    LostTasksLocated,
    QueueLengthsPolled,
    WorkersInspected,
)
from tui.ui.screens.task_detail import TaskDetailScreen
from tui.ui.screens.worker_detail import WorkerDetailScreen
from tui.ui.status_line import StatusFacts, status_line
from tui.ui.tick_changes import (
    ABSORB_BUDGET_S,
    ABSORB_CHUNK,
    ABSORB_GAP_S,
    ABSORB_INTERVAL_S,
    PendingChanges,
)
from tui.ui.widgets.keyed_table import KeyedTable
from tui.ui.widgets.panes import QueueRow, QueuesPane, TasksPane, WorkersPane
from tui.ui.widgets.plain_input import PlainInput

if TYPE_CHECKING:
    from tui.ui.app import AfirgenApp

#: Longest a tick spends applying events when no slices run between ticks (screen tests,
#: whose ticks are called by hand); with slices a tick applies one slice's worth.
TICK_BUDGET_S = 0.05
#: Events applied per model call inside a tick.
CHUNK = 2000
#: Seconds of history behind the in/out rates.
RATE_WINDOW_S = 5.0
#: Seconds between look-ups of lost tasks whose redelivery is due (or was not known).
LOST_RECHECK_S = 5.0
TREND_POINTS = 10


#: Tasks in memory from which the filter is applied when typing pauses, not on every key.
FILTER_DEBOUNCE_TASKS = 20_000
#: The pause in typing after which the filter is applied (with that many tasks).
FILTER_DEBOUNCE_S = 0.3

#: Queues whose consumers :attr:`ConsoleScreen.seen_consuming` remembers (replies are forgeable).
MAX_SEEN_QUEUES = 10_000
#: Longest wait between inspections asking a worker that has not answered one (seconds).
UNANSWERED_MAX_S = 60.0
#: Terminal width below which the footer's keys are drawn without padding and without the
#: palette key (80 columns then fit every key the console shows).
COMPACT_FOOTER_BELOW = 100


class ConsoleScreen(Screen[None]):
    """Queues, workers and task history of a Celery cluster, live (the App's base screen)."""

    BINDINGS = bindings("console")
    #: Zoom (z) keeps the status line: the connection state, READ-ONLY, the filter, the
    #: marks and the dropped count stay on screen whatever is zoomed (Textual's default
    #: keeps only the footer).
    ALLOW_IN_MAXIMIZED_VIEW = "Footer, #status"

    def __init__(self, app: AfirgenApp) -> None:
        super().__init__()
        self.afirgen = app
        self.settings = app.settings
        self.sources = app.sources
        self.model = app.model
        self.redact = app.redact
        self.task_filter = TaskFilter("")
        self.queue_rows: dict[str, QueueRow] = {name: QueueRow(name, None) for name in QUEUES}
        #: the pause records in the broker, as last read (with each inspect round)
        self.pause_records: dict[str, PauseRecord] = {}
        #: queue -> workers this console has seen consume it (``active_queues``).  A pause
        #: record anyone with the broker URL can write names the workers resume gives the queue
        #: to: a worker not in here is named in a confirm before it is sent add_consumer.
        self.seen_consuming: dict[str, set[str]] = {}
        #: queue -> where it is paused, derived from the records and the workers' queues
        self.pauses: dict[str, QueuePause] = {}
        self._rates: dict[str, collections.deque[tuple[float, int, int]]] = collections.defaultdict(
            collections.deque
        )
        self._trend: dict[str, collections.deque[float]] = collections.defaultdict(
            lambda: collections.deque(maxlen=TREND_POINTS)
        )
        self.last_poll: QueueSnapshot | None = None
        #: queue -> consumers as the broker counts them (AMQP passive declare)
        self._broker_consumers: dict[str, int] = {}
        #: what the last poll could not count, for the Queues pane's subtitle
        self.queues_note = ""
        self._notice_said = ""
        self.last_inspection: InspectionResult | None = None
        self.events_applied = 0
        self._pending_changes = PendingChanges()
        #: the slice a backlog scheduled (see ABSORB_GAP_S)
        self._absorb_next: asyncio.TimerHandle | None = None
        #: True once slices apply the buffer between ticks (start_live): the tick then
        #: applies one slice's worth, not TICK_BUDGET_S (a key waits for the whole tick)
        self._slicing = False
        self._filter_timer: Timer | None = None
        self.tick_count = 0
        self._was_connected = False
        self._events_enabled_on: set[str] = set()
        #: workers whose task events the console switched on (they had them off)
        self.events_switched_on: list[str] = []
        self._stale = False
        self._dropped_seen = 0
        self._new_worker_inspect_at = 0.0
        #: online workers that an inspection left without a pool (they did not answer:
        #: remote control off, wedged, or not a worker): host -> (times, next ask at)
        self._unanswered: dict[str, tuple[int, float]] = {}
        self._connects_seen = 0
        self._poll_timers: dict[str, Timer] = {}
        self._lost_checked_at = 0.0
        #: (ts, {queue: waiting}) and (ts, {hostname: online}) for the incident report
        self.queue_samples: collections.deque[tuple[float, dict[str, int]]] = collections.deque(
            maxlen=7200
        )
        self.worker_samples: collections.deque[tuple[float, dict[str, bool]]] = collections.deque(
            maxlen=7200
        )
        self.started_at = time.time()
        #: tasks running longer than ``[console] long_running_after`` (counted once a second)
        self.long_running = 0
        self._running_counted_at = 0.0
        self.runner = ActionRunner(
            self, app.actions, read_only=app.read_only, celery_app=app.celery_app
        )
        self.history = HistoryService(self, app.history_store)

    # ---- layout ----------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="status")
        with Vertical(id="panes"):
            yield QueuesPane(id="queues")
            yield WorkersPane(id="workers")
            with Vertical(id="tasks-box"):
                # PlainInput: a pasted task name must not bring its escapes along
                yield PlainInput(
                    placeholder="filter: words, state:failure queue:email worker:w1 prio:>=8 "
                    "(Enter keeps, Esc clears)",
                    id="filter",
                )
                yield TasksPane(id="tasks")
        yield Footer()

    def on_mount(self) -> None:
        for pane_id in PANES:
            pane = self.query_one(f"#{pane_id}", KeyedTable)
            pane.border_title = pane.BORDER_TITLE
        self.query_one("#filter", Input).display = False
        self.tasks_pane.show_order()
        self.tasks_pane.long_running_after = self.settings.console_long_running_after
        self.tasks_pane.focus()
        self.show_queues()
        self.update_status()
        self._apply_size_class(self.app.size.width, self.app.size.height)
        # Live at once, a history or not: its rows are merged behind what events bring
        # meanwhile (HistoryService.loaded), so a large one does not hold the first paint.
        self.history.start()
        self.start_live()

    @property
    def tasks_pane(self) -> TasksPane:
        """The Tasks pane."""
        return self.query_one("#tasks", TasksPane)

    def start_live(self) -> None:
        """Start the receiver, the refresh timer and the polls."""
        if not self.afirgen.autostart:
            return
        self.sources.start()
        self.set_interval(self.settings.console_refresh_interval, self.tick)
        self.set_interval(ABSORB_INTERVAL_S, self._absorb_between_ticks)
        self._slicing = True
        self.poll_queues()
        self.inspect_workers(resync=True)

    def on_resize(self, event: events.Resize) -> None:
        # The event's size: self.size may still hold the previous one while this runs.
        self._apply_size_class(event.size.width, event.size.height)
        # the status line is fitted to its width: fit it again once the layout has the new one
        self.call_after_refresh(self.update_status)

    def _apply_size_class(self, width: int, height: int) -> None:
        # Borders cost two lines per pane: drop them on short terminals (80x24).
        self.set_class(height < 30, "-compact")
        # Below 100 columns the footer's keys lose their padding and the ^p palette key
        # (still bound, and in the help) gives way: at 80 the last keys, ? Help and q Quit
        # (the app's, listed last), were cut off or drawn under it.
        footer = self.query_one(Footer)
        narrow = width < COMPACT_FOOTER_BELOW
        footer.compact = narrow
        if footer.show_command_palette is narrow:
            footer.show_command_palette = not narrow
            footer.refresh(recompose=True)

    # ---- the tick: buffer -> model -> panes ------------------------------------------
    def absorb(self, budget_s: float = ABSORB_BUDGET_S, chunk: int = ABSORB_CHUNK) -> int:
        """Apply buffered events for up to ``budget_s`` (whole chunks); the panes are updated
        at the next tick from what changed.  Returns the events applied."""
        started = time.perf_counter()
        pending = self._pending_changes
        applied = 0
        while True:
            batch = self.sources.drain(chunk)
            # Applied even when empty: apply() also returns what merge_task_info,
            # set_worker_stats and mark_revoke_requested changed since the last call.
            pending.add(self.model.apply(batch))
            applied += len(batch)
            if not batch or time.perf_counter() - started >= budget_s:
                break
        self.events_applied += applied
        return applied

    def not_yet_persisted(self) -> set[str]:
        """Tasks applied since the last tick, not yet handed to the history writer."""
        pending = self._pending_changes
        return pending.changed.union(pending.new)

    def _absorb_between_ticks(self) -> None:
        if self._absorb_next is None:  # else a backlog's slices are under way
            self._absorb_slice()

    def _absorb_chained(self) -> None:
        self._absorb_next = None
        self._absorb_slice()

    def _absorb_slice(self) -> None:
        if not self.sources.buffered or not self.is_attached:
            return
        self.absorb()
        if self.sources.buffered:
            # a backlog: the next slice after a short gap, not at the next interval
            self._absorb_next = asyncio.get_running_loop().call_later(
                ABSORB_GAP_S, self._absorb_chained
            )

    @while_panes_exist
    def tick(self) -> None:
        """Apply what is still buffered (within the tick's budget), then update the panes by
        key from everything applied since the last tick."""
        now = time.time()
        if self._slicing:
            self.absorb()
        else:
            self.absorb(TICK_BUDGET_S, CHUNK)
        pending, self._pending_changes = self._pending_changes, PendingChanges()
        new, changed, evicted = pending.new, pending.changed, pending.evicted
        workers, flow = pending.workers, pending.flow
        # With events still buffered, heartbeats may be waiting too: judging liveness by the
        # wall clock would show every worker offline while the console catches up.
        if not self.sources.buffered:
            workers |= self.model.refresh_liveness(now)
            # the tasks lost with a worker that just went: on screen this tick
            pending.add(self.model.apply([]))
        self._locate_lost(now)
        self._inspect_new_workers(workers, now)
        self.history.persist(changed.union(new))
        self._record_rates(now, flow)
        if evicted and self.tasks_pane.marked:
            self.tasks_pane.unmark(evicted)  # gone from the model: nothing left to act on
        with self.app.batch_update():
            self.tasks_pane.update_rows(
                self.model.get_task, new, changed - evicted, evicted, self.task_filter
            )
            self.refresh_running(now)
            self.query_one("#workers", WorkersPane).show(self.model.workers(), now, changed=workers)
            if flow or self.tick_count % 4 == 0:
                self.show_queues()
            self.update_status()
        self.tick_count += 1
        self._watch_connection()
        self._resync_after_loss()

    def refresh_running(self, now: float) -> None:
        """Elapsed time of the running rows and the long-running count, at most once a second."""
        if now - self._running_counted_at < 1.0:
            return
        self._running_counted_at = now
        self.tasks_pane.refresh_running(self.model.get_task, now)
        limit = self.settings.console_long_running_after
        worker = self.model.get_worker

        def on_a_live_worker(t: TaskRecord) -> bool:
            # A task the history last saw STARTED on a worker that is not online now: nobody
            # knows that it runs (its row keeps the last state seen); an operator read
            # "3,976 running > 10m" after a restart on a history of yesterday's tasks.
            w = worker(t.hostname) if t.hostname else None
            return w is not None and w.online

        self.long_running = (
            sum(
                1
                for t in self.model.running_tasks()
                if (t.started or now) < now - limit and on_a_live_worker(t)
            )
            if limit
            else 0
        )

    def refresh_tasks(self, keep_cursor: bool = False) -> None:
        """Rebuild the Tasks pane from the model (after a history load or a new filter);
        ``keep_cursor``: see :meth:`TasksPane.rebuild`."""
        self.tasks_pane.rebuild(
            self.model.iter_tasks(newest_first=True), self.task_filter, keep_cursor
        )

    def _resync_after_loss(self) -> None:
        """Events were dropped (buffer full) or the receiver reconnected: re-read what was missed."""
        dropped, connects = self.sources.dropped, self.sources.status.connects
        lost = dropped > self._dropped_seen or connects > max(1, self._connects_seen)
        self._dropped_seen, self._connects_seen = dropped, max(connects, self._connects_seen)
        if lost and self.afirgen.autostart:
            self.inspect_workers(resync=True)

    def _inspect_new_workers(self, hosts: set[str], now: float) -> None:
        # A worker that just appeared in events has no pool or queues yet: inspect it now
        # rather than at the next interval (at most once a second).
        if not self.afirgen.autostart or now - self._new_worker_inspect_at < 1.0:
            return
        for host in hosts:
            w = self.model.get_worker(host)
            if w is not None and self._wants_inspection(w, now):
                self._new_worker_inspect_at = now
                self.inspect_workers()
                return

    def _wants_inspection(self, worker: WorkerRecord, now: float) -> bool:
        """An online worker with no pool yet, not waiting out its backoff (see
        :meth:`_note_unanswered`)."""
        if not worker.online or worker.pool is not None:
            return False
        asked = self._unanswered.get(worker.hostname)
        return asked is None or asked[1] <= now

    def _note_unanswered(self, now: float) -> float | None:
        """After an inspection: back off from the online workers it left without a pool
        (0.5 s, 1, 2 ... up to UNANSWERED_MAX_S), so a worker that never answers (remote
        control off, or a forged heartbeat) is not asked twice a second for ever, each ask a
        broadcast to the whole cluster.  Returns when the next of them is due, or None."""
        previous, unanswered = self._unanswered, {}
        for w in self.model.workers():
            if w.online and w.pool is None:
                times = previous.get(w.hostname, (0, 0.0))[0]
                # 2**times capped: a worker silent for a day must not overflow a float
                wait = min(UNANSWERED_MAX_S, 0.5 * 2 ** min(times, 16))
                unanswered[w.hostname] = (min(times + 1, 1_000), now + wait)
        self._unanswered = unanswered
        return min((at for _, at in unanswered.values()), default=None)

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

    # ---- tasks lost with their worker: ask the broker (thread worker) ------------------
    def _locate_lost(self, now: float) -> None:
        uuids = self.model.lost_to_locate()
        if now - self._lost_checked_at >= LOST_RECHECK_S:
            self._lost_checked_at = now
            uuids += self.model.lost_due(now, LOST_RECHECK_S)
        if uuids:
            self.locate_lost(uuids)

    @work(thread=True, group="locate-lost")
    def locate_lost(self, uuids: list[str]) -> None:
        """Ask the broker where lost tasks' messages are and when they come back (thread worker)."""
        # runs in a worker thread: HSCAN pages of the unacked hash, then one pipeline
        self.post_message(LostTasksLocated(uuids, self.sources.locate_unacked(uuids)))

    @while_panes_exist
    def on_lost_tasks_located(self, message: LostTasksLocated) -> None:
        lookup = message.lookup
        for uuid in message.uuids:
            hold = lookup.holds.get(uuid)
            if hold is None:
                note = f"the broker could not be asked: {lookup.error or 'no answer'}"
                self.model.set_lost_location(uuid, None, note=note)
            else:
                self.model.set_lost_location(
                    uuid, hold.in_broker, hold.delivered_at, hold.redeliver_at, hold.note
                )

    # ---- queue-length poll (thread worker) -------------------------------------------
    @work(thread=True, exclusive=True, group="queue-poll")
    def poll_queues(self) -> None:
        """Read every queue's lengths (in a thread worker); the result comes back as a message."""
        # runs in a worker thread
        self.post_message(QueueLengthsPolled(self.sources.poll_queues()))

    @while_panes_exist
    def on_queue_lengths_polled(self, message: QueueLengthsPolled) -> None:
        poll = message.poll
        self.last_poll = poll
        if poll.available:
            seen = set()
            for q in poll.queues.values():
                seen.add(q.name)
                row = self.queue_rows.setdefault(
                    q.name, QueueRow(q.name, None, configured=q.name in QUEUES)
                )
                row.waiting, row.by_priority, row.reserved = (
                    q.waiting,
                    dict(q.by_priority),
                    q.reserved,
                )
                row.bands_known, row.declared = q.bands_known, q.declared
                if q.consumers is not None:
                    self._broker_consumers[q.name] = q.consumers
                else:
                    self._broker_consumers.pop(q.name, None)
                self._trend[q.name].append(float(q.waiting))
                row.trend = list(self._trend[q.name])
            self.queue_samples.append(
                (poll.taken_at, {q.name: q.waiting for q in poll.queues.values()})
            )
            for name in list(self.queue_rows):
                if name not in seen and name not in QUEUES:
                    del self.queue_rows[name]
            self._note_queue_poll(poll)
        self.show_queues()
        self.update_status()
        if poll.supported:
            self._schedule(
                "queue-poll", self.settings.console_queue_poll_interval, self.poll_queues
            )

    def _note_queue_poll(self, poll: QueueSnapshot) -> None:
        """Say what a poll could not count: in the Queues pane's subtitle, and a standing
        notice (reserved counts need the RabbitMQ management API) once, not every poll."""
        notes = []
        if any(not q.bands_known for q in poll.queues.values()):
            notes.append("P-bands -: RabbitMQ keeps no count per priority")
        if poll.notice:
            notes.append("Rsv -: no management API")
            if poll.notice != self._notice_said:
                self.notify(visible(poll.notice), severity="warning", timeout=10)
        self._notice_said = poll.notice
        self.queues_note = "; ".join(notes)
        if not self._stale:
            self.query_one("#queues", QueuesPane).border_subtitle = self.queues_note

    @property
    def paused_queues(self) -> set[str]:
        """The queues paused on some worker now (derived: see :mod:`tui.core.pauses`)."""
        return set(self.pauses)

    def derive_pauses(self) -> None:
        """Where each recorded pause holds now, from the workers' ``active_queues``."""
        if not self.pause_records:  # nothing paused: no need to look at 1,000 workers a tick
            self.pauses = {}
            return
        self.pauses = derive_pauses(
            self.pause_records,
            (
                WorkerQueues(
                    w.hostname,
                    w.online,
                    inspected=w.pool is not None or bool(w.queues),
                    queues=frozenset(w.queues),
                )
                for w in self.model.workers()
            ),
        )

    def show_queues(self) -> None:
        """Redraw the Queues pane from the last poll and the workers' consumers."""
        self.derive_pauses()
        consumers: dict[str, int] = collections.Counter()
        for w in self.model.workers():
            if getattr(w, "online", False):
                for q in getattr(w, "queues", None) or ():
                    consumers[q] += 1
        rows = []
        for name in sorted(
            self.queue_rows,
            key=lambda n: (n not in QUEUES, QUEUES.index(n) if n in QUEUES else 0, n),
        ):
            row = self.queue_rows[name]
            # the broker's own count when it gives one (AMQP), else the inspected workers'
            row.consumers = self._broker_consumers.get(name, consumers.get(name, 0))
            pause = self.pauses.get(name)
            row.paused = pause.mark if pause is not None else ""
            rows.append(row)
        self.query_one("#queues", QueuesPane).show(rows)

    # ---- inspect (thread worker) -------------------------------------------------------
    @work(thread=True, exclusive=True, group="inspect")
    def inspect_workers(self, resync: bool = False) -> None:
        """Ask the workers for stats and queues (in a thread worker); ``resync`` also their tasks."""
        # runs in a worker thread; blocks on the broker for up to control_timeout
        online = sum(1 for w in self.model.workers() if getattr(w, "online", False))
        result = self.sources.inspect(online or None, tasks=resync)
        self.post_message(WorkersInspected(result, resync, self.sources.pause_records()))

    @while_panes_exist
    def on_workers_inspected(self, message: WorkersInspected) -> None:
        result = message.result
        self.last_inspection = result
        if message.pauses is not None:  # unread (broker down): keep the last ones
            self.pause_records = message.pauses
        for host, stats in result.stats.items():
            self.model.set_worker_stats(host, stats)
        for host, queues in result.active_queues.items():
            self.model.set_worker_queues(host, queues)
            if len(self.seen_consuming) < MAX_SEEN_QUEUES:
                for queue in queues:
                    name = queue.get("name") if isinstance(queue, dict) else queue
                    if isinstance(name, str):
                        self.seen_consuming.setdefault(name, set()).add(host)
        if message.resync:
            for state, replies in (("STARTED", result.active), ("RECEIVED", result.reserved)):
                for host, infos in replies.items():
                    for info in infos:
                        if isinstance(info, dict) and info.get("id"):
                            self.model.merge_task_info(
                                info["id"],
                                name=info.get("name"),
                                hostname=host,
                                state=state,
                                args=str(info.get("args")),
                                kwargs=str(info.get("kwargs")),
                            )
        self._enable_events_if_needed(result)
        workers = self.model.workers()
        self.query_one("#workers", WorkersPane).show(workers)
        self.worker_samples.append((time.time(), {w.hostname: w.online for w in workers}))
        self.show_queues()
        # A worker seen in events but not yet inspected (it just started): ask again soon,
        # and less and less often while it does not answer.
        now = time.time()
        due = self._note_unanswered(now)
        interval = self.settings.console_inspect_interval
        self._schedule(
            "inspect",
            interval if due is None else min(interval, max(0.5, due - now)),
            self.inspect_workers,
        )

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
        if not new or self.afirgen.celery_app is None:
            return
        self._events_enabled_on.update(new)
        if self.afirgen.read_only:
            return  # read-only never changes a worker, not even its event settings
        self._enable_events(new)

    @work(thread=True, group="enable-events")
    def _enable_events(self, hosts: list[str]) -> None:
        # runs in a worker thread
        try:
            replies = self.sources.enable_events(hosts)
        except Exception as exc:
            self.post_message(
                EventsEnabled(
                    [], self.redact(f"could not enable events on {', '.join(hosts)}: {exc}")
                )
            )
            return
        switched = sorted(
            host
            for reply in replies or []
            if isinstance(reply, dict)
            for host, body in reply.items()
            if isinstance(body, dict) and body.get("ok") == "task events enabled"
        )
        self.post_message(EventsEnabled(switched, ""))

    def on_events_enabled(self, message: EventsEnabled) -> None:
        if message.error:
            self.notify(message.error, severity="error")
        elif message.hosts:
            self.events_switched_on.extend(message.hosts)
            self.notify(
                f"task events were off on {', '.join(message.hosts)}: enabled them (enable_events)",
                timeout=10,
            )

    # ---- connection state and the status line ----------------------------------------
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
        poll_error = bool(self.last_poll and self.last_poll.error and self.last_poll.supported)
        connected = self.sources.status.state == CONNECTED and not poll_error
        stale = not connected
        if stale != self._stale:
            self._stale = stale
            for pane_id in PANES:
                pane = self.query_one(f"#{pane_id}", KeyedTable)
                pane.set_class(stale, "-stale")
                pane.border_subtitle = (
                    "stale: broker lost, showing last known data"
                    if stale
                    else (self.queues_note if pane_id == "queues" else "")
                )
        if connected and not self._was_connected and self.tick_count > 1:
            # Back after an outage: re-read workers, active and reserved tasks.
            self.inspect_workers(resync=True)
            self.poll_queues()
        self._was_connected = connected

    def update_status(self) -> None:
        """Redraw the status line: broker, connection, filter, workers, rates and every counter,
        fitted to the line's width (:mod:`tui.ui.status_line` says what gives way first)."""
        label, style = self.connection_state()
        workers = self.model.workers()
        m, src = self.model, self.sources
        order = self.tasks_pane.task_order
        # visible() keeps escapes in broker errors and in the typed or pasted filter off the
        # terminal, and the line one line; the line's Text is never parsed as markup.
        facts = StatusFacts(
            broker=visible(self.settings.broker_display),
            connection=visible(label),
            connection_style=style,
            cluster=visible(self.settings.cluster_name)
            if self.settings.has_several_clusters
            else "",
            read_only=self.afirgen.read_only,
            filter_text=visible(self.task_filter.text),
            filter_errors=[visible(e) for e in self.task_filter.errors],
            marked=len(self.tasks_pane.marked),
            order=order.label if order.name != "activity" else "",
            new_above=self.tasks_pane.new_above(),
            long_running=self.long_running,
            long_running_limit=threshold(self.settings.console_long_running_after),
            workers_online=sum(1 for w in workers if getattr(w, "online", False)),
            workers=len(workers),
            rate=m.tasks_per_second(time.time()),
            received=src.received,
            applied=self.events_applied,
            dropped=src.dropped,
            buffered=src.buffered,
            # skipped at the trust boundary (events, inspect replies, backend records,
            # history rows) or by the model itself
            bad=m.events_skipped + m.events_unknown + src.boundary.invalid,
            clipped=m.fields_clipped,
            cleaned=src.boundary.cleaned,
            reconnects=src.status.connects - 1,
            history_note=visible(self.history.status_note()),  # its reasons may quote data
            history_loading=self.history.loading(),
        )
        status = self.query_one("#status", Static)
        status.update(status_line(facts, status.size.width or self.app.size.width))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "enqueue" and isinstance(self.focused, Input):
            return False  # a priority key: typed into the filter box, it is a letter
        # read-only: hidden from the footer; on_key refuses the key with a reason
        return enabled(action, self.afirgen.read_only)

    # ---- what the operator asked for -----------------------------------------------------
    def on_command_requested(self, message: CommandRequested) -> None:
        """A pane's key: the runner validates, confirms and sends (or says why not)."""
        message.stop()
        if message.action == "open_detail":
            self.action_open_detail(message.target)
        elif message.action == "open_jobs":
            self.open_queue_jobs(message.target)
        elif message.action == "worker_detail":
            self.open_worker_detail(message.target)
        elif message.action == "marks_changed":
            self.tasks_pane.redraw(self.model.get_task, [message.args[0]])
            self.update_status()
        elif message.action == "mark_all":
            self.mark_all()
        elif message.action == "cycle_order":
            self.cycle_order()
        else:
            self.runner.request(message.action, message.args, message.target)

    def on_action_completed(self, message: ActionCompleted) -> None:
        self.runner.completed(message)

    def on_history_backfilled(self, message: HistoryBackfilled) -> None:
        # Textual finds a handler by the message's own name (on_history_backfilled), not by
        # its base class: without this method the backfilled tasks never reached the model.
        self.history.backfilled(message)

    def on_export_done(self, message: ExportDone) -> None:
        self.history.export_done(message)

    def action_focus_pane(self, pane: str) -> None:
        """Focus the queues, workers or tasks pane, at once.

        Not ``Widget.focus()``, which defers the change to a later callback: keys typed
        right behind the digit (``1`` ``↓`` ``p``) would reach the pane that had the focus
        before and act on the wrong row.
        """
        self.set_focus(self.query_one(f"#{pane}", KeyedTable))

    def cycle_pane(self, step: int) -> None:
        """Focus the next (or previous) pane."""
        focused = self.focused
        current = focused.id if focused is not None and focused.id in PANES else "tasks"
        self.action_focus_pane(PANES[(PANES.index(current) + step) % len(PANES)])

    def action_zoom(self) -> None:
        """Maximise the focused pane, or restore the layout."""
        if self.maximized is not None:
            self.minimize()
        elif self.focused is not None and isinstance(self.focused, KeyedTable):
            self.maximize(self.focused, container=False)

    def action_filter(self) -> None:
        """Open the task filter."""
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def action_escape(self) -> None:
        """Clear the marks first, then the filter (or leave zoom)."""
        box = self.query_one("#filter", Input)
        if self.tasks_pane.marked:
            self.clear_marks()
        elif box.display or self.task_filter.text:
            box.value = ""
            self.set_filter("")
            box.display = False
            self.tasks_pane.focus()
        elif self.maximized is not None:
            self.minimize()

    # ---- marks and order (the Tasks pane) ---------------------------------------------------
    def clear_marks(self) -> None:
        """Unmark every task."""
        pane = self.tasks_pane
        marked, pane.marked = pane.marked, set()
        pane.redraw(self.model.get_task, marked)
        self.notify(f"{len(marked):,} mark(s) cleared", timeout=3)
        self.update_status()

    def mark_all(self) -> None:
        """Mark every task the filter shows (the Tasks pane's rows), after the count is confirmed."""
        pane = self.tasks_pane
        shown = [uuid for uuid in pane.order if pane.has_key(uuid)]
        fresh = [uuid for uuid in shown if uuid not in pane.marked]
        if not fresh:
            self.notify(
                "every task shown is marked already" if shown else "no task shown to mark",
                severity="warning",
            )
            return
        from tui.ui.screens.forms import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if not yes:
                self.notify("nothing marked", timeout=3)
                return
            pane.marked.update(fresh)
            pane.redraw(self.model.get_task, fresh)
            self.update_status()

        which = f"the filter {self.task_filter.text!r} shows" if self.task_filter.text else "shown"
        already = (
            f" ({len(shown) - len(fresh):,} marked already)" if len(fresh) < len(shown) else ""
        )
        self.app.push_screen(
            ConfirmScreen(
                "Mark tasks",
                f"Mark {len(fresh):,} task(s): every task {which}{already}?\n"
                "r t k R then act on all the marked tasks; Esc clears the marks.",
            ),
            answered,
        )

    def cycle_order(self) -> None:
        """Show the tasks in the next order (``s``)."""
        pane = self.tasks_pane
        pane.task_order = next_order(pane.task_order)
        pane.show_order()
        self.refresh_tasks()
        self.update_status()
        self.notify(f"tasks: {pane.task_order.label}", timeout=2)

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
            self._filter_timer = None
        if len(self.model) < FILTER_DEBOUNCE_TASKS:
            self.set_filter(event.value)
            return
        # Each filter change scans every task in memory (~100 ms for 100k): while the
        # operator types, apply it once they pause, not on every key (during a flood ten
        # keys were a 5 s freeze and 100k dropped events).
        value = event.value
        self._filter_timer = self.set_timer(FILTER_DEBOUNCE_S, lambda: self.set_filter(value))

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
            self._filter_timer = None
        self.set_filter(event.value)
        self.query_one("#filter", Input).display = bool(event.value)
        self.tasks_pane.focus()

    def set_filter(self, text: str) -> None:
        """Show only the tasks ``text`` matches (the filter syntax of :mod:`tui.core.model`)."""
        flt = TaskFilter(text)
        if flt.text == self.task_filter.text:
            return
        self.task_filter = flt
        self.refresh_tasks()
        self.update_status()

    def on_key(self, event: events.Key) -> None:
        # Esc inside the filter box clears it (Input swallows the screen binding otherwise).
        if (
            event.key == "escape"
            and isinstance(self.focused, Input)
            and self.focused.id == "filter"
        ):
            event.stop()
            self.action_escape()
            return
        focused = self.focused
        if self.afirgen.read_only:
            pressed = command_for_key(event.key, focused.id if focused is not None else None)
            pressed = pressed or pane_of_key(event.key)
            if pressed is not None and not enabled(pressed.name, read_only=True):
                # hidden from the footer and refused here, at once, with the reason (and audited)
                event.stop()
                event.prevent_default()
                target = None
                if pressed.scope in PANES:
                    target = self.query_one(f"#{pressed.scope}", KeyedTable).cursor_key()
                self.runner.refuse_read_only(pressed, target)
                return
        # A pane's key pressed on another pane does nothing there; say where it works
        # rather than leave the operator wondering whether it was sent.
        command = pane_of_key(event.key)
        if command is not None and (focused is None or focused.id != command.scope):
            self.notify(
                f"{event.character or event.key} works on the {command.scope.capitalize()} pane: "
                f"press {PANE_NUMBER[command.scope]} to focus it",
                severity="warning",
            )

    @on(QueuesPane.RowSelected, "#queues")
    def _queue_selected(self, event: QueuesPane.RowSelected) -> None:
        self.open_queue_jobs(event.row_key.value)

    def open_queue_jobs(self, queue: str | None) -> None:
        """Show the jobs waiting in ``queue``, by priority band, a page at a time."""
        if queue is None:
            self.notify(
                "highlight a queue in the Queues pane first (1 focuses it)", severity="warning"
            )
            return
        from tui.ui.screens.queue_jobs import QueueJobsScreen

        self.app.push_screen(QueueJobsScreen(self, queue))

    @on(TasksPane.RowSelected, "#tasks")
    def _task_selected(self, event: TasksPane.RowSelected) -> None:
        self.action_open_detail(event.row_key.value)

    @on(WorkersPane.RowSelected, "#workers")
    def _worker_selected(self, event: WorkersPane.RowSelected) -> None:
        self.open_worker_detail(event.row_key.value)

    def open_worker_detail(self, host: str | None) -> None:
        """Show ``host`` in detail (stats, tasks, registry, queues) with its own commands."""
        if host is None:
            self.notify(
                "highlight a worker in the Workers pane first (2 focuses it)", severity="warning"
            )
            return
        self.app.push_screen(
            WorkerDetailScreen(
                host,
                self.sources,
                self.afirgen.actions,
                self.redact,
                read_only=self.afirgen.read_only,
                known_queues=sorted(set(QUEUES) | set(self.queue_rows)),
                on_outcome=self._worker_action_done,
            )
        )

    def _worker_action_done(self, message: ActionCompleted) -> None:
        # the detail screen showed it; keep it in the log and bring the panes up to date
        self.runner.action_log.append(message)
        if self.afirgen.autostart:
            self.inspect_workers()

    def action_open_detail(self, uuid: str | None = None) -> None:
        """Show the highlighted task's detail screen."""
        pane = self.tasks_pane
        uuid = uuid or pane.cursor_key()
        task = self.model.get_task(uuid) if uuid else None
        if task is None:
            self.notify("no task highlighted", severity="warning")
            return
        note = ""
        if uuid in pane.backend_uuids:
            note = "filled in from the result backend: the console did not see this task live"
        self.app.push_screen(
            TaskDetailScreen(
                task,
                self.redact,
                self.sources.fetch_result,
                note=note,
                retried_as=self.model.retried_as,
            )
        )

    # ---- console-wide commands (keys and palette) ----------------------------------------
    async def action_enqueue(self) -> None:
        """Open the enqueue form (with the last job's values after a send)."""
        opened = self.runner.enqueue()
        if opened is not None:
            # Keys typed in the same burst as ``e`` wait until the form's fields exist: the
            # App handles its next key only when this action returns.
            await opened

    def action_resize_all(self, delta: int) -> None:
        """Grow or shrink every online worker's pool (command palette)."""
        self.runner.resize(delta, all_workers=True)

    def action_autoscale_all(self) -> None:
        """Set autoscale on every online worker (command palette)."""
        self.runner.autoscale(None, all_workers=True)

    def action_unacked(self) -> None:
        """Show the jobs workers took and have not acknowledged (Redis ``unacked``)."""
        from tui.ui.screens.unacked import UnackedScreen

        self.app.push_screen(UnackedScreen(self))

    def action_switch_cluster(self) -> None:
        """List the configured clusters with their live state; Enter switches to one."""
        from tui.check import probe_cluster
        from tui.ui.screens.cluster_switch import ClusterSwitchScreen

        names = self.settings.cluster_names()
        if len(names) < 2:
            self.notify(
                f"one cluster ({self.settings.cluster_name}): add [clusters.NAME] tables to"
                " config.toml to switch between clusters",
                severity="warning",
            )
            return
        # every table was checked when the settings were loaded
        clusters = [(name, self.settings.for_cluster(name)) for name in names]
        self.app.push_screen(
            ClusterSwitchScreen(clusters, self.settings.cluster_name, probe_cluster),
            self._cluster_chosen,
        )

    def _cluster_chosen(self, name: str | None) -> None:
        if name is None or name == self.settings.cluster_name:
            return
        # an App worker: the switch replaces this screen, which must not be the one awaiting it
        self.app.run_worker(
            self.afirgen.switch_cluster(self.settings.for_cluster(name)),
            group="switch-cluster",
            exclusive=True,
        )

    def action_search_history(self) -> None:
        """Search the whole persisted history (not only what is in memory)."""
        self.history.search()

    def action_failures(self) -> None:
        """Show the failed tasks in memory grouped by task and exception type."""
        from tui.ui.screens.failures import FailuresScreen

        self.app.push_screen(FailuresScreen(self))

    def filter_to(self, text: str) -> None:
        """Set the task filter to ``text``, shown in the filter box, and focus the Tasks pane."""
        box = self.query_one("#filter", Input)
        box.value = text
        box.display = bool(text)
        self.set_filter(text)
        self.tasks_pane.focus()

    def action_export(self) -> None:
        """Export the filtered history to CSV, Excel or an incident report PDF."""
        self.history.export()
