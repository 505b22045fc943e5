"""The three live panes: queues, workers and tasks.  They render what they are given;
they never talk to the broker (the app feeds them from the model and the pollers)."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from rich.text import Text

from tui.core.formatting import (
    age,
    clock,
    count,
    duration,
    elapsed,
    sparkline,
    state_text,
    task_runtime,
    task_wait,
)
from tui.core.ordering import DEFAULT_ORDER, TaskOrder
from tui.core.safe_text import data_text
from tui.core.states import STARTED
from tui.ui.commands import bindings, enabled
from tui.ui.messages import CommandRequested
from tui.ui.widgets.keyed_table import KeyedTable

# Priority bands on the operator scale (10 = most urgent).
BANDS: tuple[tuple[str, range], ...] = (
    ("urgent", range(8, 11)),
    ("normal", range(4, 8)),
    ("low", range(1, 4)),
)


@dataclass(slots=True)
class QueueRow:
    """One line of the Queues pane."""

    name: str
    waiting: int | None
    by_priority: dict[int, int] = field(default_factory=dict)
    reserved: int | None = None
    consumers: int = 0
    rate_in: float = 0.0
    rate_out: float = 0.0
    trend: list[float] = field(default_factory=list)
    #: the pause mark, "" when not paused: "⏸", or "⏸ 1/2" when paused on 1 of 2 consumers
    paused: str = ""
    configured: bool = True
    #: False on a broker that keeps no count per priority (RabbitMQ): every band shows ``-``
    bands_known: bool = True
    #: False when the broker has no such queue (AMQP: nobody declared it yet)
    declared: bool = True

    def band(self, levels: range) -> int | None:
        """Waiting messages whose operator priority is in ``levels`` (None: unknown)."""
        if self.waiting is None or not self.bands_known:
            return None
        return sum(self.by_priority.get(p, 0) for p in levels)


class _CommandPane(KeyedTable):
    """A pane whose keys (from the command registry) ask for something on its highlighted row."""

    SCOPE = ""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # read-only: hidden from the footer; the console screen refuses the key with a reason
        return enabled(action, getattr(self.app, "read_only", False))

    def request(self, action: str, *args: object) -> None:
        """Post what the operator asked for; the console screen carries it out."""
        self.post_message(CommandRequested(action, args, self.cursor_key(), self.SCOPE))


class QueuesPane(_CommandPane):
    """Every configured queue and every queue the broker knows of, with lengths by priority band."""

    BORDER_TITLE = "1 Queues"
    SCOPE = "queues"
    BINDINGS = bindings("queues")

    def action_pause_queue(self) -> None:
        """Pause (or resume) the highlighted queue."""
        self.request("pause_queue")

    def action_purge_queue(self) -> None:
        """Purge the highlighted queue (after typing its name)."""
        self.request("purge_queue")

    def action_open_jobs(self) -> None:
        """Show the jobs waiting in the highlighted queue (Enter)."""
        self.request("open_jobs")

    def on_mount(self) -> None:
        self.add_column("Queue", width=14, key="name")  # "analytics ⏸ 1/2"
        self.add_column("Wait", width=6, key="waiting")
        self.add_column("P8-10", width=5, key="urgent")
        self.add_column("P4-7", width=5, key="normal")
        self.add_column("P1-3", width=5, key="low")
        self.add_column("Rsv", width=4, key="reserved")
        self.add_column("Cons", width=4, key="consumers")
        self.add_column("In/s", width=5, key="in")
        self.add_column("Out/s", width=5, key="out")
        self.add_column("Trend", width=10, key="trend")

    def show(self, rows: Iterable[QueueRow]) -> None:
        """Upsert one row per queue, in the given order."""
        order = []
        for row in rows:
            order.append(row.name)
            # queue names come from the broker (KEYS, events): literal text, escapes visible
            name = data_text(row.name, style="bold" if row.configured else "italic")
            if row.paused:
                name = data_text(f"{row.name} {row.paused}", style="bold yellow")
            urgent = row.band(BANDS[0][1])
            cells = [
                name,
                Text(count(row.waiting if row.declared else None), justify="right"),
                Text(count(urgent), justify="right", style="bold red" if urgent else ""),
                Text(count(row.band(BANDS[1][1])), justify="right"),
                Text(count(row.band(BANDS[2][1])), justify="right"),
                Text(count(row.reserved), justify="right"),
                Text(
                    str(row.consumers),
                    justify="right",
                    style="" if row.consumers or not row.configured else "bold red",
                ),
                Text(f"{row.rate_in:.1f}", justify="right"),
                Text(f"{row.rate_out:.1f}", justify="right"),
                Text(sparkline(row.trend), style="cyan")
                if row.declared
                else Text("undeclared", style="dim"),
            ]
            self.upsert(row.name, cells)
        self.drop_many(set(self.row_keys) - set(order))
        self.set_order(order)


HB_WIDTH = 5
#: "4 (auto 1–4)" fits; two-digit bounds drop the word ("12 (10–20)").
CONC_WIDTH = 12
#: The Workers pane's Queues column: fits at 120 columns beside the others.
QUEUES_WIDTH = 20
LOAD_WIDTH = 14


def load_text(load: Iterable[float] | None, width: int = LOAD_WIDTH) -> str:
    """The 1, 5 and 15 minute load averages in ``width`` cells: two decimals while they fit,
    fewer on a busy host (``12.33 9.87 7.05`` was cut to ``12.33 9.87 7.0``, a wrong figure)."""
    values = list(load or ())[:3]
    if not values:
        return "-"
    for decimals in (2, 1, 0):
        text = " ".join(f"{x:.{decimals}f}" for x in values)
        if len(text) <= width:
            return text
    return text[: width - 1] + "…"


def queues_text(queues: Iterable[object] | None, width: int) -> str:
    """A worker's queues in ``width`` cells: as many names as fit, then ``+N`` for the rest
    (``default,email,+1``), so a cut column never hides that there are more."""
    names = [str(q) for q in queues or ()]
    if not names:
        return "-"
    for shown in range(len(names), 0, -1):
        text = ",".join(names[:shown])
        if shown < len(names):
            text += f",+{len(names) - shown}"
        if len(text) <= width:
            return text
    more = f",+{len(names) - 1}" if len(names) > 1 else ""
    return names[0][: max(1, width - len(more) - 1)] + "…" + more


class WorkersPane(_CommandPane):
    """Workers from events (heartbeats) completed by ``inspect`` (pool, concurrency, queues)."""

    BORDER_TITLE = "2 Workers"
    SCOPE = "workers"
    BINDINGS = bindings("workers")

    def action_resize(self, delta: int) -> None:
        """Grow (+1) or shrink (-1) the highlighted worker's pool."""
        self.request("resize", delta)

    def action_resize_form(self) -> None:
        """Grow or shrink by N (a form)."""
        self.request("resize_form")

    def action_autoscale(self) -> None:
        """Set the highlighted worker's autoscale bounds (a form)."""
        self.request("autoscale")

    def action_worker_detail(self) -> None:
        """Open the highlighted worker in detail."""
        self.request("worker_detail")

    def on_mount(self) -> None:
        self.add_column("Worker", width=18, key="host")
        self.add_column("State", width=9, key="state")
        self.add_column("Pool", width=7, key="pool")
        self.add_column("Conc", width=CONC_WIDTH, key="conc")
        self.add_column("Act", width=3, key="active")
        self.add_column("Done", width=6, key="done")
        self.add_column("Fail", width=4, key="failed")
        self.add_column("HB", width=HB_WIDTH, key="hb")
        self.add_column("Load", width=LOAD_WIDTH, key="load")
        self.add_column("Queues", width=QUEUES_WIDTH, key="queues")

    def __init__(self, **kwargs: object):
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._ages_at = 0.0

    def show(
        self, workers: Iterable[object], now: float | None = None, changed: set[str] | None = None
    ) -> None:
        """Upsert worker rows (``tui.core.model.WorkerRecord``-like), sorted by hostname.

        With ``changed``, only those rows are rebuilt, and every row once a second (the
        heartbeat ages); a row's cells are built when it is drawn, so rows off screen cost
        nothing but a dictionary entry.
        """
        now = now or time.time()
        workers = sorted(workers, key=lambda w: w.hostname)  # type: ignore[attr-defined]
        ages_due = now - self._ages_at >= 1.0
        if ages_due:
            self._ages_at = now
        order = []
        for w in workers:
            host = w.hostname  # type: ignore[attr-defined]
            order.append(host)
            if ages_due or changed is None or host in changed or not self.has_key(host):
                # built when drawn: 1,000 workers all change in a flood tick, ~10 are seen
                self.defer(host, partial(self._cells, w, now))
        self.drop_many(set(self.row_keys) - set(order))
        self.set_order(order)

    def _cells(self, w: object, now: float) -> list[Text]:
        online = bool(getattr(w, "online", False))
        load = getattr(w, "loadavg", None)
        queues = getattr(w, "queues", None)
        return [
            data_text(w.hostname, style="bold" if online else "dim"),  # type: ignore[attr-defined]
            Text("● online" if online else "○ offline", style="green" if online else "bold red"),
            data_text(getattr(w, "pool", None) or "-"),
            data_text(_concurrency(w), justify="right"),  # autoscale figures come from inspect
            Text(count(getattr(w, "active", None)), justify="right"),
            # Done and Fail: both counted from the task events this console saw (one source;
            # the heartbeat's "processed" counts accepted tasks, running ones included, and
            # restarts at 0 with the worker)
            Text(count(getattr(w, "succeeded", None)), justify="right"),
            Text(
                count(getattr(w, "failed", None)),
                justify="right",
                style="red" if getattr(w, "failed", 0) else "",
            ),
            Text(age(getattr(w, "last_heartbeat", None), now, HB_WIDTH), justify="right"),
            Text(load_text(load)),
            data_text(queues_text(queues, QUEUES_WIDTH)),
        ]


def _concurrency(w: object, width: int = CONC_WIDTH) -> str:
    """Pool processes now, then how they may change: ``4 (auto 1–4)``, ``3 +1``, ``4``."""
    cur = getattr(w, "concurrency", None)
    mx = getattr(w, "max_concurrency", None)
    auto = getattr(w, "autoscale", None)
    if cur is None and mx is None:
        return "-"
    if auto:
        # Autoscaled: the processes now and the autoscaler's bounds, min–max.  Celery's
        # max-concurrency is then the pool's starting size, not a ceiling ("4/1" read as
        # "4 of at most 1"), so it is not shown.
        high, low = auto
        text = f"{count(cur)} (auto {low}–{high})"
        return text if len(text) <= width else f"{count(cur)} ({low}–{high})"
    if cur is not None and mx is not None and cur != mx:
        # Grown or shrunk by hand: Celery keeps reporting the configured size as the
        # maximum, so "3/2" read as nonsense; show the processes and the change instead.
        return f"{cur} {cur - mx:+d}"
    return count(cur if cur is not None else mx)


TASK_ROW_CAP = 1000


def worker_label(hostname: str | None) -> str:
    """A worker in a narrow column: its node name (``w1`` of ``w1@box``), or its host when
    the node name is Celery's default ``celery`` (every row read ``celery`` otherwise)."""
    if not hostname:
        return "-"
    name, _, host = hostname.partition("@")
    return host or name if name == "celery" else name


#: Marks the operator's own enqueued job in the State column.
MARK = "➤ "
#: A task marked with Space (or ``*``), in front of its state: r t k R act on the marked ones.
SELECTED = "* "
#: (header, width, key) of the Tasks pane; the Task column's width is fitted to the pane.
TASK_COLUMNS: tuple[tuple[str, int, str], ...] = (
    # "➤ ◔ RECEIVED" fits; "… revoke req" with the mark gives up its symbol (see TasksPane.cells)
    ("State", len(MARK) + len("◔ RECEIVED"), "state"),
    ("Task", 20, "name"),
    ("Queue", 9, "queue"),
    ("Pri", 3, "prio"),
    ("Worker", 10, "worker"),
    ("Runtime", 7, "runtime"),
    ("Wait", 6, "wait"),
    ("Time", 8, "time"),
    ("UUID", 8, "uuid"),
)
_W = {key: width for _, width, key in TASK_COLUMNS}
#: The Task column gives way first, down to this, so the other columns stay whole.
TASK_NAME_MIN, TASK_NAME_MAX = 12, 40


def fit_name_width(available: int, widths: list[int], padding: int, name_index: int = 1) -> int:
    """Width of the name column so that the row ends on a column boundary within ``available``.

    All columns when they fit with the name at least :data:`TASK_NAME_MIN` wide, else as many
    leading columns as fit, filling ``available`` exactly: the rest start beyond the edge and
    are reached by scrolling, so no value is shown cut at the edge (``2ms`` as ``2m``).
    """
    for shown in range(len(widths), name_index, -1):
        others = sum(w + 2 * padding for i, w in enumerate(widths[:shown]) if i != name_index)
        name = available - others - 2 * padding
        if name >= TASK_NAME_MIN:
            return min(name, TASK_NAME_MAX)
    return TASK_NAME_MIN


class TasksPane(_CommandPane):
    """Task history in :attr:`task_order` (latest activity first); rows are updated by uuid.

    A row whose task changes is re-keyed and moves to its place without rebuilding the
    table (:meth:`KeyedTable.set_order`).  While the operator's cursor is pinned below the
    top, rows that arrive or move above it are counted (:meth:`new_above`) until Home.
    Running tasks show their elapsed time, refreshed by :meth:`refresh_running`.

    The vertical scrollbar is always there, so the width the columns are fitted to does not
    change when the rows outgrow the pane.
    """

    BORDER_TITLE = "3 Tasks"
    SCOPE = "tasks"
    BINDINGS = bindings("tasks")

    def action_revoke(self, mode: str) -> None:
        """Revoke, terminate or kill the highlighted task, or the marked ones (after a confirm)."""
        self.request("revoke", mode)

    def action_retry(self) -> None:
        """Retry the highlighted task, or the marked ones (after a confirm)."""
        self.request("retry")

    def action_toggle_mark(self) -> None:
        """Mark or unmark the highlighted task (Space)."""
        uuid = self.cursor_key()
        if uuid is None:
            return
        if uuid in self.marked:
            self.marked.discard(uuid)
        else:
            self.marked.add(uuid)
        self.request("marks_changed", uuid)

    def action_mark_all(self) -> None:
        """Mark every task the filter shows (the console confirms the count first)."""
        self.request("mark_all")

    def action_cycle_order(self) -> None:
        """Show the rows in the next order (latest activity, sent, runtime, state)."""
        self.request("cycle_order")

    def show_order(self) -> None:
        """The order in the pane's title."""
        self.border_title = f"{self.BORDER_TITLE} · {self.task_order.label}"

    DEFAULT_CSS = """
    TasksPane { overflow-y: scroll; }
    """

    def __init__(self, **kwargs: object):
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.order: list[str] = []  # the keys shown, top first
        self.highlight_uuid: str | None = None
        #: tasks filled in from the result backend (the console did not see them live)
        self.backend_uuids: set[str] = set()
        #: the order of the rows (:mod:`tui.core.ordering`)
        self.task_order: TaskOrder = DEFAULT_ORDER
        #: the tasks marked (Space, ``*``), by uuid: they survive re-sorts and filters; a
        #: task evicted from the model is unmarked (:meth:`unmark`)
        self.marked: set[str] = set()
        #: seconds after which a running task is flagged (``[console] long_running_after``)
        self.long_running_after: float = 0.0
        #: the console's clock, for the elapsed time of running tasks (tests set it)
        self.clock: Callable[[], float] = time.time
        self._sort_keys: dict[str, float] = {}
        self._new_above: set[str] = set()
        self._running_rows: set[str] = set()
        self._fitted_to = -1

    def on_mount(self) -> None:
        for header, width, key in TASK_COLUMNS:
            self.add_column(header, width=width, key=key)

    def on_resize(self) -> None:
        self.fit_columns()

    def fit_columns(self) -> None:
        """Size the Task column to the pane's width (see :func:`fit_name_width`)."""
        available = self.scrollable_content_region.width
        if available <= 0 or available == self._fitted_to:
            return
        self._fitted_to = available
        widths = [width for _, width, _ in TASK_COLUMNS]
        if "name" in self.columns:
            self.set_column_width("name", fit_name_width(available, widths, self.cell_padding))

    def cells(self, task: object, now: float | None = None) -> list[Text]:
        """The row for a ``tui.core.model.TaskRecord``-like object (a running task's
        elapsed time at ``now``, default the pane's clock)."""
        t = task
        label, style = state_text(
            t.state,  # type: ignore[attr-defined]
            getattr(t, "revoke_requested", False),
            getattr(t, "lost", None),
        )
        if t.uuid == self.highlight_uuid:  # type: ignore[attr-defined]
            # the mark takes the symbol's place when both would not fit: the word stays whole
            label = MARK + (
                label if len(MARK) + len(label) <= _W["state"] else label.split(" ", 1)[-1]
            )
        if t.uuid in self.marked:  # type: ignore[attr-defined]
            label = SELECTED + (
                label if len(SELECTED) + len(label) <= _W["state"] else label.split(" ", 1)[-1]
            )
            style = f"{style} reverse".strip()
        host = worker_label(getattr(t, "hostname", None))
        prio = getattr(t, "priority", None)
        first = (
            getattr(t, "sent", None) or getattr(t, "received", None) or getattr(t, "started", None)
        )
        return [
            data_text(label, style=style),  # an unknown state is shown as the event named it
            data_text(getattr(t, "short_name", None) or t.name or "?"),  # type: ignore[attr-defined]
            data_text(getattr(t, "queue", None) or "-"),
            Text(
                "-" if prio is None else str(prio),
                justify="right",
                style="bold red" if (prio or 0) >= 8 else "",
            ),
            data_text(host),
            self._runtime_cell(t, now),
            Text(duration(task_wait(t), _W["wait"]), justify="right"),
            Text("backend", style="italic yellow")
            if t.uuid in self.backend_uuids  # type: ignore[attr-defined]
            else Text(clock(self.task_order.time(t) or first)),
            data_text(t.uuid[:8], style="dim"),  # type: ignore[attr-defined]
        ]

    def _runtime_cell(self, task: object, now: float | None) -> Text:
        """A finished runtime; for a STARTED task its elapsed time so far, marked (``▸3m12s``)."""
        uuid: str = task.uuid  # type: ignore[attr-defined]
        if getattr(task, "state", None) != STARTED:
            self._running_rows.discard(uuid)
            return Text(duration(task_runtime(task), _W["runtime"]), justify="right")
        self._running_rows.add(uuid)
        text, long = elapsed(
            getattr(task, "started", None),
            self.clock() if now is None else now,
            _W["runtime"],
            self.long_running_after,
        )
        return Text(text, justify="right", style="bold yellow reverse" if long else "italic cyan")

    def refresh_running(self, get: Callable[[str], object | None], now: float) -> int:
        """Re-draw the running rows shown, their elapsed time at ``now`` (the console: once a
        second).  Only those rows are touched, and their cells are built only if drawn.
        Returns the number of rows re-drawn."""
        redrawn = 0
        for uuid in list(self._running_rows):
            if get(uuid) is None or not self.has_key(uuid):
                self._running_rows.discard(uuid)
                continue
            self.defer(uuid, partial(self._deferred_cells, get, uuid, now))
            redrawn += 1
        return redrawn

    def _deferred_cells(
        self, get: Callable[[str], object | None], uuid: str, now: float | None = None
    ) -> list[Text] | None:
        task = get(uuid)
        return None if task is None else self.cells(task, now)

    def _track_running(self, task: object) -> None:
        # what _runtime_cell notes when the cells are built, known now (the cells may never be)
        uuid: str = task.uuid  # type: ignore[attr-defined]
        if getattr(task, "state", None) == STARTED:
            self._running_rows.add(uuid)
        else:
            self._running_rows.discard(uuid)

    def new_above(self) -> int:
        """Rows that arrived or moved above the pinned cursor since the operator moved it."""
        if not self.pinned:
            self._new_above.clear()
            return 0
        cursor = self.cursor_row
        return sum(1 for k in self._new_above if self.has_key(k) and self.get_row_index(k) < cursor)

    def unpin(self) -> None:
        """Follow the top row again (Home); the count of new rows above is read."""
        self._new_above.clear()
        super().unpin()

    def update_rows(
        self,
        get: Callable[[str], object | None],
        new: list[str],
        changed: Iterable[str],
        removed: Iterable[str],
        keep: Callable[[Any], bool],
    ) -> None:
        """Apply one tick: ``new`` uuids in arrival order, ``changed`` and ``removed`` ones.

        A changed task not shown (beyond the row cap, or it now matches the filter) comes
        back: its new activity puts it near the top.
        """
        drops = [uuid for uuid in removed if self.has_key(uuid)]
        fresh: list[str] = []
        adds: list[tuple[str, Callable[[], list[Text] | None]]] = []
        # Cells are built when a row is drawn or read (KeyedTable.defer): a flood tick
        # touches ~1,000 rows of which ~30 are on screen.
        deferred = partial(partial, self._deferred_cells, get)
        for uuid in new[-TASK_ROW_CAP:]:
            task = get(uuid)
            if task is not None and keep(task) and not self.has_key(uuid):
                adds.append((uuid, deferred(uuid)))
                self._track_running(task)
                fresh.append(uuid)
        just_added = set(fresh)
        moved: list[str] = []
        for uuid in changed:
            if uuid in just_added:
                continue  # its row was built from the same record a moment ago
            task = get(uuid)
            if task is None:
                continue
            if not self.has_key(uuid):
                if keep(task):
                    adds.append((uuid, deferred(uuid)))
                    self._track_running(task)
                    fresh.append(uuid)
                continue
            if keep(task):
                self.defer(uuid, deferred(uuid))
                self._track_running(task)
                moved.append(uuid)
            else:
                drops.append(uuid)
        self.add_many(adds)
        if not (fresh or moved or drops):
            return
        key = self.task_order.key
        sort_keys = self._sort_keys
        rose = list(fresh)  # rows new to the pane or whose key went up: new activity
        for uuid in fresh:
            sort_keys[uuid] = key(get(uuid))
        for uuid in moved:
            before, sort_keys[uuid] = sort_keys.get(uuid), key(get(uuid))
            if before is None or sort_keys[uuid] > before:
                rose.append(uuid)
        dropped = set(drops)
        fresh.reverse()  # the newest arrival first among equal keys
        fresh_set = set(fresh)
        order = fresh + [
            k for k in self.order if k not in dropped and k not in fresh_set and self.has_key(k)
        ]
        # Stable, and the rows not re-keyed are already in order: close to linear.
        order.sort(key=sort_keys.__getitem__, reverse=True)
        shown = order[:TASK_ROW_CAP]
        if len(order) > TASK_ROW_CAP:
            held = self.cursor_key() if self.pinned else None
            if held is not None and held in sort_keys and held not in shown:
                # The operator's row sank past the cap (5,000 new tasks a second push a row
                # down 1,000 places in 0.2 s): it stays, as the last row, so the cursor and
                # r/t/R/Enter stay on the task they chose instead of its neighbour.
                shown = [*order[: TASK_ROW_CAP - 1], held]
            kept = set(shown)
            drops.extend(k for k in order[TASK_ROW_CAP - 1 :] if k not in kept)
        self.drop_many(drops)  # one re-index for all of them
        for uuid in drops:
            sort_keys.pop(uuid, None)
        self.order = shown
        self.set_order(self.order)
        if self.pinned:
            cursor = self.cursor_row
            for uuid in rose:
                if self.has_key(uuid) and self.get_row_index(uuid) < cursor:
                    self._new_above.add(uuid)
            self._new_above &= self.row_keys

    def rebuild(
        self, tasks: Iterable[object], keep: Callable[[Any], bool], keep_cursor: bool = False
    ) -> None:
        """Show the top matching tasks in :attr:`task_order` again (after the filter changed).

        ``tasks`` newest first-seen first: among equal keys, the newest stays on top.  The
        cursor goes to the top row; with ``keep_cursor`` (the history arrived while the
        operator was reading), a pinned cursor stays on its task while it is still shown.
        """
        held = self.cursor_key() if keep_cursor and self.pinned else None
        key = self.task_order.key
        wanted = heapq.nlargest(TASK_ROW_CAP, (t for t in tasks if keep(t)), key=key)
        keys = {t.uuid for t in wanted}  # type: ignore[attr-defined]
        self.drop_many([k for k in self.row_keys if k not in keys])
        for t in wanted:
            self.upsert(t.uuid, self.cells(t))  # type: ignore[attr-defined]
        self._sort_keys = {t.uuid: key(t) for t in wanted}  # type: ignore[attr-defined]
        self.order = [t.uuid for t in wanted]  # type: ignore[attr-defined]
        if held is not None and held in keys:
            self.set_order(self.order)  # pinned: the cursor follows its row
            self._new_above &= keys  # "n new ↑" still counts what rose above it
            return
        self._new_above.clear()
        self.pinned = False
        self.set_order(self.order)
        if self.row_count:
            self.move_cursor(row=0, animate=False)

    def redraw(self, get: Callable[[str], object | None], uuids: Iterable[str]) -> None:
        """Re-draw the rows of ``uuids`` shown (a mark set or cleared)."""
        for uuid in uuids:
            task = get(uuid)
            if task is not None and self.has_key(uuid):
                self.upsert(uuid, self.cells(task))

    def unmark(self, uuids: Iterable[str]) -> None:
        """Forget the marks of ``uuids`` (evicted from the model: nothing left to act on)."""
        self.marked.difference_update(uuids)

    def select(self, uuid: str) -> bool:
        """Move the cursor to ``uuid``'s row (pinning it); False when not shown."""
        if not self.has_key(uuid):
            return False
        self.pinned = True
        self.move_cursor(row=self.get_row_index(uuid), animate=False)
        return True
