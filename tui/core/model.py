"""The cluster model: workers and task history, fed plain Celery event dicts.

Pure Python (stdlib only): no Textual, no redis, no network.  Only the UI thread
mutates a :class:`ClusterModel`, so there are no locks.

The model follows :class:`celery.events.state.State`'s semantics where they make sense,
but is built for a console that keeps a large, bounded history:

* a task's state never regresses: every state has a rank and an event only moves a
  task to a higher rank (RETRY and a requeued REJECTED form a cycle: the next
  attempt's ``task-received``/``task-started`` moves on again);
* tasks live in one insertion-ordered dict (first seen first), so newest-first
  iteration is ``reversed(dict)``;
* eviction pops the oldest *finished* task from a FIFO of finished tasks (O(1)),
  falling back to the oldest task of all when nothing has finished;
* bad input (non-dicts, missing or mistyped fields, huge strings) is skipped, coerced
  or clipped and counted, never raised.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from tui.core import states as _states
from tui.core.states import (
    ALL_STATES,
    FAILURE,
    LOST,
    PENDING,
    PURGED,
    RECEIVED,
    REJECTED,
    RETRY,
    REVOKED,
    SENT,
    STARTED,
    SUCCESS,
)

__all__ = [
    "ALL_STATES",
    "PURGED",
    "LOST",
    "FAILURE",
    "PENDING",
    "RECEIVED",
    "REJECTED",
    "RETRY",
    "REVOKED",
    "SENT",
    "STARTED",
    "SUCCESS",
    "Changes",
    "ClusterModel",
    "LostInfo",
    "TaskRecord",
    "WorkerRecord",
]


def _make_interner(limit: int = 4096) -> Callable[[str], str]:
    """A bounded ``sys.intern``: one shared copy of each repeated name, queue or hostname.

    Not ``sys.intern`` itself: on Python 3.12 interned strings are immortal, so every
    distinct name a hostile publisher sends would stay in memory for good; on 3.11 the
    interpreter's intern dict still grows to hold them while they live.  Past ``limit``
    entries the table starts again (sharing resumes as values repeat); equal strings
    compare equal either way, so only memory, never behaviour, depends on it.
    """
    return _make_intern_table(limit)[0]


def _make_intern_table(
    limit: int,
) -> tuple[Callable[[str], str], Callable[[str], str | None]]:
    """:func:`_make_interner`'s function and its table's ``get`` (the hot path's inline
    look-up: the shared copy, or None before the first ``intern`` of that value)."""
    table: dict[str, str] = {}
    get = table.get

    def intern(text: str) -> str:
        shared = get(text)
        if shared is None:
            if len(table) >= limit:
                table.clear()
            table[text] = shared = text
        return shared

    return intern, get


_intern, _interned = _make_intern_table(4096)

# Short local names for the hot path (tui.core.states is the definition).
_R_PENDING, _R_SENT, _R_RECEIVED, _R_STARTED = (
    _states.R_PENDING,
    _states.R_SENT,
    _states.R_RECEIVED,
    _states.R_STARTED,
)
_R_CYCLE, _R_REJECTED, _R_REVOKED = _states.R_CYCLE, _states.R_REJECTED, _states.R_REVOKED
_R_FAILURE, _R_SUCCESS, _FINAL = _states.R_FAILURE, _states.R_SUCCESS, _states.R_FINAL
_KIND_STATE = _states.STATE_OF_RANK
_FINISH_EVENT = _states.FINISH_EVENT
_STATE_RANK: dict[str, int] = {s: i for i, s in enumerate(_KIND_STATE)}
#: merge_task_info's ranks: Celery's states and the console's own (PURGED, LOST)
_MERGE_RANK: dict[str, int] = dict(_states.RANK)
_WORKER_ONLINE, _WORKER_HEARTBEAT, _WORKER_OFFLINE = 10, 11, 12

#: event type -> kind; a task kind equals the rank of the state it reports.
_KINDS: dict[str, int] = {
    "task-sent": _R_SENT,
    "task-received": _R_RECEIVED,
    "task-started": _R_STARTED,
    "task-retried": _R_CYCLE,
    "task-rejected": _R_REJECTED,
    "task-revoked": _R_REVOKED,
    "task-failed": _R_FAILURE,
    "task-succeeded": _R_SUCCESS,
    "worker-online": _WORKER_ONLINE,
    "worker-heartbeat": _WORKER_HEARTBEAT,
    "worker-offline": _WORKER_OFFLINE,
}

#: Longest hostname / uuid accepted; longer ones are garbage and the event is skipped.
MAX_KEY_CHARS = 255


def _clip(text: str, limit: int) -> str:
    return f"{text[:limit]}… [clipped {len(text) - limit} of {len(text)} chars]"


def _as_float(value: object) -> float | None:
    cls = value.__class__
    if cls is float:
        return value  # type: ignore[return-value]
    if cls is int:
        return float(value)  # type: ignore[arg-type]
    return None


def _gc_untracker() -> Callable[[object], None]:
    """CPython's ``PyObject_GC_UnTrack`` (public C API), or a no-op where it is not reachable.

    Why: a :class:`TaskRecord` is a container to the cyclic garbage collector (a class with
    ``__slots__``), so with 200,000 of them every full collection visits each record's 30
    fields: ~0.2 s of CPU on the 2-CPU VM, and one ran every ~300k events, because each new
    task is a new long-lived object (docs/performance.md, issue 17).  A record can never be
    part of a reference cycle: it holds only str, float, int, bool, None and its
    :class:`LostInfo` (which holds the same), and nothing it refers to refers back to it.
    So the collector has nothing to find there; untracked, a record is still freed by
    reference counting the moment the model lets go of it, as before.
    """
    try:
        import ctypes

        untrack = ctypes.pythonapi.PyObject_GC_UnTrack
    except (ImportError, AttributeError, OSError):  # not CPython, or no ctypes
        return lambda _obj: None
    untrack.argtypes = [ctypes.py_object]
    untrack.restype = None
    return untrack


#: untrack a new TaskRecord (see :func:`_gc_untracker`)
_untrack = _gc_untracker()


@lru_cache(maxsize=4096)
def _short_name(name: str) -> str:
    return name.rpartition(".")[2]


@dataclass(slots=True, eq=False)
class LostInfo:
    """Why a task reads :data:`LOST`, and what the broker said about its message.

    ``in_broker`` is None until the broker was asked; True with ``delivered_at`` (the
    ``unacked_index`` score: when the message was handed to the lost worker) and
    ``redeliver_at`` (that plus the visibility timeout); False when the message is no longer
    in ``unacked`` (acknowledged, or already restored to its queue).
    """

    #: the worker the task was lost with
    worker: str
    #: when the console noticed (its own clock)
    at: float
    #: how: "missed heartbeats", "worker-offline", "worker restarted"...
    why: str
    in_broker: bool | None = None
    delivered_at: float | None = None
    redeliver_at: float | None = None
    #: why the broker could not be asked (or the look-up was not complete)
    note: str = ""
    #: when the broker was last asked (console clock)
    checked_at: float | None = None


class TaskRecord:
    """One task as the console knows it (first seen by an event, the backend or inspect).

    Timestamps are the event's own (worker/client clock): ``sent`` is the first
    ``task-sent``; ``received``/``started`` are the latest attempt's; ``finished``
    is the time of the event that finished it (``finish_event`` says which).
    """

    __slots__ = (
        "uuid",
        "name",
        "state",
        "rank",
        "revoke_requested",
        "queue",
        "priority",
        "hostname",
        "args",
        "kwargs",
        "result",
        "exception",
        "traceback",
        "retries",
        "sent",
        "received",
        "started",
        "retried",
        "finished",
        "runtime",
        "eta",
        "expires",
        "root_id",
        "parent_id",
        "routing_key",
        "exchange",
        "revoke_reason",
        "last_event",
        "lost",
        "retry_of",
    )

    uuid: str
    name: str | None
    state: str
    rank: int
    revoke_requested: bool
    queue: str | None
    priority: int | None
    hostname: str | None
    args: str | None
    kwargs: str | None
    result: str | None
    exception: str | None
    traceback: str | None
    retries: int | None
    sent: float | None
    received: float | None
    started: float | None
    retried: float | None
    finished: float | None
    runtime: float | None
    eta: str | None
    expires: str | None
    root_id: str | None
    parent_id: str | None
    routing_key: str | None
    exchange: str | None
    revoke_reason: str | None
    #: the latest time of any of its events (event clock), or of what the backend or the
    #: history told (sent, started, finished...): the "latest activity" the pane sorts by
    last_event: float | None
    #: set when the task was lost with its worker (kept after a later event replaced LOST)
    lost: LostInfo | None
    #: the task this one re-sends (a console retry: the ``afirgen_retry_of`` header)
    retry_of: str | None

    def __init__(self, uuid: str) -> None:
        self.uuid = uuid
        self.state = PENDING
        self.rank = _R_PENDING
        self.revoke_requested = False
        self.name = self.queue = self.priority = self.hostname = None
        self.args = self.kwargs = self.result = self.exception = self.traceback = None
        self.retries = self.sent = self.received = self.started = self.retried = None
        self.finished = self.runtime = self.eta = self.expires = None
        self.root_id = self.parent_id = self.routing_key = self.exchange = None
        self.revoke_reason = self.last_event = None
        self.lost = self.retry_of = None

    @property
    def is_finished(self) -> bool:
        """SUCCESS, FAILURE, REVOKED or REJECTED (not requeued): nothing more will happen."""
        return self.rank >= _FINAL

    @property
    def finish_event(self) -> str | None:
        """The event type that finished the task (``task-succeeded``...), or None."""
        return _FINISH_EVENT.get(self.state) if self.rank >= _FINAL else None

    @property
    def wait_time(self) -> float | None:
        """Seconds between sent (or received, when sent is unknown) and started."""
        started = self.started
        if started is None:
            return None
        first = self.sent if self.sent is not None else self.received
        return None if first is None else started - first

    @property
    def short_name(self) -> str:
        """The last dotted part of the task name (``generate_fir_pdf``)."""
        return _short_name(self.name) if self.name else "?"

    @property
    def short_uuid(self) -> str:
        """The first 8 characters of the task id."""
        return self.uuid[:8]

    def __repr__(self) -> str:
        return f"<TaskRecord {self.name} {self.uuid} {self.state}>"


@dataclass(slots=True, eq=False)
class WorkerRecord:
    """One worker: liveness from events, pool and queues from inspect."""

    hostname: str
    online: bool = True
    #: receive time (``local_received``, the console's clock) of the last sign of life
    last_heartbeat: float | None = None
    freq: float | None = None
    pid: int | None = None
    #: pool implementation, short: ``prefork``, ``solo``, ``threads``, ``gevent``...
    pool: str | None = None
    #: current pool processes (``len(stats['pool']['processes'])``)
    concurrency: int | None = None
    max_concurrency: int | None = None
    #: ``(max, min)`` when the worker runs an autoscaler
    autoscale: tuple[int, int] | None = None
    active: int | None = None
    #: the worker's own count from its heartbeats: tasks it *accepted* since it started
    #: (running ones included, reset by a restart); not shown as Done, see ``succeeded``
    processed: int | None = None
    #: ``task-succeeded`` events this console saw from this worker (the Done column)
    succeeded: int = 0
    #: ``task-failed`` events this console saw from this worker (the Fail column)
    failed: int = 0
    loadavg: tuple[float, ...] | None = None
    queues: tuple[str, ...] = ()
    sw_ident: str | None = None
    sw_ver: str | None = None
    sw_sys: str | None = None
    #: tasks processed per task name since the worker started (``stats()['total']``)
    totals: dict[str, int] = field(default_factory=dict)

    @property
    def short_name(self) -> str:
        """The machine part of ``celery@machine`` (the whole hostname without ``@``)."""
        return self.hostname.partition("@")[2] or self.hostname


@dataclass(slots=True)
class Changes:
    """What one :meth:`ClusterModel.apply` changed, by key.

    Apply to a pane in this order: remove ``evicted``, add ``new_tasks`` (arrival
    order), update ``tasks``.  ``tasks`` holds every changed task still in the model,
    new ones included; a task added and evicted in the same batch appears nowhere.
    """

    tasks: set[str] = field(default_factory=set)
    new_tasks: list[str] = field(default_factory=list)
    evicted: set[str] = field(default_factory=set)
    workers: set[str] = field(default_factory=set)
    #: queue -> [tasks sent into it, tasks a worker received from it] in this batch: the
    #: queue of a ``task-sent`` event, and the task's queue for a ``task-received`` one
    #: (known from its ``task-sent``, earlier or later in the batch; unknown: not counted)
    flow: dict[str, list[int]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.tasks or self.new_tasks or self.evicted or self.workers)


_TEXT_FIELDS = ("args", "kwargs", "result", "exception")
_KEY_FIELDS = ("name", "queue", "routing_key", "exchange", "hostname")
_STR_FIELDS = ("eta", "expires", "root_id", "parent_id", "retry_of")
_TIME_FIELDS = ("sent", "received", "started", "finished", "runtime")
_INT_FIELDS = ("priority", "retries")
#: What one run of a task did, as opposed to what the task is: an older run's (a history
#: row further along than the live task) must not be read as this run's.
_RUN_FIELDS = frozenset(
    (
        "result",
        "exception",
        "traceback",
        "hostname",
        "received",
        "started",
        "finished",
        "runtime",
        "retries",
    )
)


class ClusterModel:
    """Workers and a bounded task history, updated from Celery event dicts.

    Counters (ints): ``events_applied``, ``events_skipped`` (non-dicts, missing or
    mistyped type/uuid/hostname), ``events_unknown`` (unknown event types),
    ``fields_clipped`` (strings cut to the size limit), ``fields_invalid`` (optional
    fields of the wrong type, dropped), ``tasks_evicted`` and ``workers_evicted``.

    Workers are bounded too (``max_workers``): any event names its worker, so a flood of
    forged hostnames would otherwise grow the worker map without limit.  Past the bound the
    least recently seen workers are forgotten (a live one comes back with its next event).
    """

    def __init__(
        self,
        max_tasks: int = 100_000,
        heartbeat_timeout: float = 6.0,
        max_field_chars: int = 2000,
        max_traceback_chars: int = 20_000,
        rate_window: float = 5.0,
        max_workers: int = 5000,
    ) -> None:
        if max_tasks < 1:
            raise ValueError("max_tasks must be at least 1")
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_tasks = max_tasks
        self.max_workers = max_workers
        self.heartbeat_timeout = heartbeat_timeout
        self.max_field_chars = max_field_chars
        self.max_traceback_chars = max_traceback_chars
        self.rate_window = rate_window
        self.events_applied = 0
        self.events_skipped = 0
        self.events_unknown = 0
        self.fields_clipped = 0
        self.fields_invalid = 0
        self.tasks_evicted = 0
        self.workers_evicted = 0
        #: the last unexpected error swallowed while applying an event (a bug if set)
        self.last_error: str | None = None
        self._tasks: dict[str, TaskRecord] = {}
        self._workers: dict[str, WorkerRecord] = {}
        # FIFO of records in the order they finished: the eviction order.
        self._finished: deque[TaskRecord] = deque()
        # FIFO of records in first-seen order: the fallback when nothing finished.
        # Holds evicted records until they reach the front or a compaction.
        self._order: deque[TaskRecord] = deque()
        self._order_limit = max_tasks + max(1024, max_tasks // 4)
        # [second, finished count] buckets for tasks_per_second()
        self._rate: deque[list[int]] = deque()
        self._pending: Changes | None = None
        # Tasks that moved to STARTED, pruned lazily by running_tasks(): whatever moves a
        # task on (an event, the backend, eviction) need not know about this index.
        self._running: dict[str, TaskRecord] = {}
        # host -> (why, before): workers gone during this apply(), scanned once at its end
        self._lost_scan: dict[str, tuple[str, float | None]] = {}
        # tasks marked LOST (in order), and those whose message the broker was not asked about
        self._lost: dict[str, None] = {}
        self._lost_unasked: dict[str, None] = {}

    # ---- queries ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def task_count(self) -> int:
        """Tasks currently held (never more than ``max_tasks``)."""
        return len(self._tasks)

    def get_task(self, uuid: str) -> TaskRecord | None:
        """The task with this id, or None."""
        return self._tasks.get(uuid)

    def get_worker(self, hostname: str) -> WorkerRecord | None:
        """The worker with this hostname, or None."""
        return self._workers.get(hostname)

    def iter_tasks(self, newest_first: bool = True) -> Iterator[TaskRecord]:
        """Tasks by first-seen time; do not mutate the model while iterating."""
        values = self._tasks.values()
        return reversed(values) if newest_first else iter(values)

    def running_tasks(self) -> list[TaskRecord]:
        """Tasks in the model that are STARTED now (cheap: an index, not a scan of every task)."""
        running = self._running
        tasks = self._tasks
        gone = [
            uuid
            for uuid, rec in running.items()
            if rec.rank != _R_STARTED or tasks.get(uuid) is not rec
        ]
        for uuid in gone:
            del running[uuid]
        return list(running.values())

    def workers(self) -> list[WorkerRecord]:
        """Every worker seen, online or not, sorted by hostname."""
        return [self._workers[h] for h in sorted(self._workers)]

    def tasks_per_second(self, now: float) -> float:
        """Tasks finished (succeeded + failed) per second over the last ``rate_window`` s.

        ``now`` is on the console's clock (events are bucketed by ``local_received``).
        """
        window = self.rate_window
        low = now - window
        total = 0
        for sec, count in reversed(self._rate):
            if sec + 1 <= low:
                break
            if sec <= now:
                total += count
        return total / window if window > 0 else 0.0

    # ---- the hot path -----------------------------------------------------------------
    def apply(self, events: Iterable[dict[str, Any]]) -> Changes:
        """Apply a batch of Celery event dicts; return what changed.

        Also reports what :meth:`merge_task_info`, :meth:`set_worker_stats`,
        :meth:`set_worker_queues` and :meth:`mark_revoke_requested` changed since the
        last call.
        """
        ch = self._pending or Changes()
        self._pending = None
        if isinstance(events, dict):
            events = (events,)
        changed = ch.tasks
        changed_add = changed.add
        new: dict[str, None] = dict.fromkeys(ch.new_tasks)
        evicted = ch.evicted
        wchanged = ch.workers
        tasks = self._tasks
        tasks_get = tasks.get
        workers = self._workers
        workers_get = workers.get
        kinds_get = _KINDS.get
        kind_state = _KIND_STATE
        order = self._order
        order_append = order.append
        order_limit = self._order_limit
        finished = self._finished
        finished_append = finished.append
        finished_popleft = finished.popleft
        max_tasks = self.max_tasks
        maxc = self.max_field_chars
        maxtb = self.max_traceback_chars
        fix = self._fix_text
        intern = _intern
        interned = _interned
        untrack = _untrack
        running = self._running
        rate = self._rate
        max_workers = self.max_workers
        flow = ch.flow
        flow_get = flow.get
        # task-received events whose task had no queue yet (its task-sent later in the batch)
        unqueued: list[TaskRecord] = []
        applied = skipped = unknown = invalid = evicted_n = 0
        try:
            for ev in events:
                try:
                    if ev.__class__ is not dict and not isinstance(ev, dict):
                        skipped += 1
                        continue
                    get = ev.get
                    etype = get("type")
                    if etype.__class__ is not str:
                        skipped += 1
                        continue
                    kind = kinds_get(etype)
                    if kind is None:
                        unknown += 1
                        continue
                    host = get("hostname")
                    if host.__class__ is not str or not host or len(host) > MAX_KEY_CHARS:
                        skipped += 1
                        continue
                    lr = get("local_received")
                    if lr.__class__ is not float:
                        lr = _as_float(lr)

                    if kind >= _WORKER_ONLINE:
                        self._worker_event(kind, host, lr, ev, wchanged)
                        wchanged.add(host)
                        applied += 1
                        continue

                    uuid = get("uuid")
                    if uuid.__class__ is not str or not uuid or len(uuid) > MAX_KEY_CHARS:
                        skipped += 1
                        continue
                    ts = get("timestamp")
                    if ts.__class__ is not float:
                        ts = _as_float(ts)

                    rec = tasks_get(uuid)
                    if rec is None:
                        rec = TaskRecord(uuid)
                        untrack(rec)
                        tasks[uuid] = rec
                        order_append(rec)
                        new[uuid] = None
                        if len(tasks) > max_tasks:
                            # fast path: the oldest finished task, if it is still here
                            victim = finished_popleft() if finished else None
                            if victim is not None and tasks_get(victim.uuid) is victim:
                                vid = victim.uuid
                                del tasks[vid]
                                evicted_n += 1
                                changed.discard(vid)
                                if vid in new:
                                    del new[vid]
                                else:
                                    evicted.add(vid)
                                head = order[0]
                                if head is victim or len(order) > order_limit:
                                    self._trim_order()
                            else:
                                self._evict(new, changed, evicted)
                    changed_add(uuid)
                    if ts is not None:
                        last = rec.last_event
                        if last is None or ts > last:
                            rec.last_event = ts

                    # the worker: any event from it is a sign of life
                    if kind != _R_SENT:
                        w = workers_get(host)
                        if w is None:
                            w = workers[host] = WorkerRecord(intern(host))
                            wchanged.add(host)
                            if len(workers) > max_workers:
                                self._prune_workers(host, wchanged)
                        if lr is not None:
                            last = w.last_heartbeat
                            if last is None or lr > last:
                                w.last_heartbeat = lr
                        if not w.online:
                            w.online = True
                            wchanged.add(host)
                    else:
                        w = None

                    # does this event move the state?
                    cur = rec.rank
                    new_rank = kind
                    if kind == _R_REJECTED and get("requeue") is True:
                        new_rank = _R_CYCLE
                    if new_rank > cur:
                        move = True
                        if new_rank == _R_CYCLE and cur >= _R_RECEIVED and ts is not None:
                            # a late retry of an earlier attempt must not undo the next one
                            last = rec.received
                            if rec.started is not None and (last is None or rec.started > last):
                                last = rec.started
                            move = last is None or ts >= last
                    elif new_rank == cur:
                        move = True
                    elif cur == _R_CYCLE:
                        # the next attempt after a retry / requeue
                        move = ts is None or rec.retried is None or ts >= rec.retried
                    elif kind <= _R_RECEIVED and cur < _FINAL:
                        # a higher retry count is a newer attempt, whatever arrived first
                        v = get("retries")
                        move = v.__class__ is int and v > (rec.retries or 0)
                    else:
                        move = False

                    if move:
                        if new_rank != cur:
                            rec.state = kind_state[kind]
                            rec.rank = new_rank
                            if new_rank == _R_STARTED:
                                running[uuid] = rec
                            elif new_rank >= _FINAL and cur < _FINAL:
                                finished_append(rec)
                                rec.revoke_requested = False
                                if kind >= _R_FAILURE:
                                    if w is not None:
                                        if kind == _R_FAILURE:
                                            w.failed += 1
                                        else:
                                            w.succeeded += 1
                                        wchanged.add(host)
                                    when = lr if lr is not None else ts
                                    if when is not None:
                                        # the common case inline: this second's bucket
                                        if rate and rate[-1][0] == int(when):
                                            rate[-1][1] += 1
                                        else:
                                            self._count_finish(when)
                        if w is not None:
                            rec.hostname = w.hostname
                    elif w is not None and rec.hostname is None:
                        rec.hostname = w.hostname

                    if kind <= _R_RECEIVED:
                        # sent / received describe the task whatever its state
                        if kind == _R_SENT:
                            if ts is not None and (rec.sent is None or ts < rec.sent):
                                rec.sent = ts
                            v = get("queue")
                            if v is not None:
                                if v.__class__ is str and len(v) <= MAX_KEY_CHARS:
                                    if v != rec.queue:
                                        rec.queue = interned(v) or intern(v)
                                    # into the queue: flow[queue][0]
                                    f = flow_get(v)
                                    if f is None:
                                        flow[rec.queue] = [1, 0]
                                    else:
                                        f[0] += 1
                                else:
                                    invalid += 1
                            v = get("routing_key")
                            if v is not None:
                                if v.__class__ is str and len(v) <= MAX_KEY_CHARS:
                                    if v != rec.routing_key:
                                        rec.routing_key = interned(v) or intern(v)
                                else:
                                    invalid += 1
                            v = get("exchange")
                            if v is not None:
                                if v.__class__ is str and len(v) <= MAX_KEY_CHARS:
                                    if v != rec.exchange:
                                        rec.exchange = interned(v) or intern(v)
                                else:
                                    invalid += 1
                            v = get("priority")
                            if v is not None:
                                if v.__class__ is int:
                                    rec.priority = v
                                else:
                                    invalid += 1
                            v = get("retry_of")
                            if v is not None:
                                if v.__class__ is str and v and len(v) <= MAX_KEY_CHARS:
                                    rec.retry_of = v
                                else:
                                    invalid += 1
                        else:
                            if ts is not None and (rec.received is None or ts > rec.received):
                                rec.received = ts
                            # out of the queue (a worker took it): flow[queue][1]
                            q = rec.queue
                            if q is None:
                                unqueued.append(rec)
                            elif (f := flow_get(q)) is None:
                                flow[q] = [0, 1]
                            else:
                                f[1] += 1
                        v = get("name")
                        if v is not None:
                            if v.__class__ is str and len(v) <= MAX_KEY_CHARS:
                                if v != rec.name:
                                    rec.name = interned(v) or intern(v)
                            else:
                                invalid += 1
                        v = get("args")
                        if v is not None:
                            if v.__class__ is not str or len(v) > maxc:
                                v = fix(v, maxc)
                            rec.args = v
                        v = get("kwargs")
                        if v is not None:
                            if v.__class__ is not str or len(v) > maxc:
                                v = fix(v, maxc)
                            rec.kwargs = v
                        v = get("retries")
                        if v is not None:
                            if v.__class__ is int:
                                if rec.retries is None or v > rec.retries:
                                    rec.retries = v
                            else:
                                invalid += 1
                        v = get("root_id")
                        if v is not None:
                            if v == uuid:
                                rec.root_id = rec.uuid  # share the string
                            elif v.__class__ is str and len(v) <= MAX_KEY_CHARS:
                                rec.root_id = v
                            else:
                                invalid += 1
                        v = get("parent_id")
                        if v is not None:
                            if v.__class__ is str and len(v) <= MAX_KEY_CHARS:
                                rec.parent_id = v
                            else:
                                invalid += 1
                        v = get("eta")
                        if v is not None:
                            if v.__class__ is not str or len(v) > maxc:
                                v = fix(v, maxc)
                            rec.eta = v
                        v = get("expires")
                        if v is not None:
                            if v.__class__ is not str or len(v) > maxc:
                                v = fix(v, maxc)
                            rec.expires = v
                    elif kind == _R_STARTED:
                        if ts is not None and (rec.started is None or ts > rec.started):
                            rec.started = ts
                    elif move:
                        # a finishing event (or a retry) that took effect
                        if kind == _R_CYCLE:
                            if ts is not None and (rec.retried is None or ts > rec.retried):
                                rec.retried = ts
                        elif kind == _R_REJECTED and new_rank == _R_CYCLE:
                            if ts is not None and (rec.retried is None or ts > rec.retried):
                                rec.retried = ts
                        elif new_rank != cur or rec.finished is None:
                            rec.finished = ts
                        if kind == _R_SUCCESS:
                            v = get("result")
                            if v is not None:
                                if v.__class__ is not str or len(v) > maxc:
                                    v = fix(v, maxc)
                                rec.result = v
                            v = get("runtime")
                            if v is not None:
                                if v.__class__ is float or v.__class__ is int:
                                    rec.runtime = v
                                else:
                                    invalid += 1
                        elif kind == _R_FAILURE or kind == _R_CYCLE:
                            v = get("exception")
                            if v is not None:
                                if v.__class__ is not str or len(v) > maxc:
                                    v = fix(v, maxc)
                                rec.exception = v
                            v = get("traceback")
                            if v is not None:
                                if v.__class__ is not str or len(v) > maxtb:
                                    v = fix(v, maxtb)
                                rec.traceback = v
                        elif kind == _R_REVOKED:
                            rec.revoke_reason = _revoke_reason(ev)
                    applied += 1
                except Exception as exc:  # noqa: BLE001 - one bad event must not stop the console
                    skipped += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
            for rec in unqueued:
                q = rec.queue
                if q is not None:  # its task-sent came later in the batch
                    if (f := flow_get(q)) is None:
                        flow[q] = [0, 1]
                    else:
                        f[1] += 1
            if self._lost_scan:
                # one pass over the tasks for every worker that went in this batch
                self._mark_lost_scan(changed)
        except BaseException:
            # the iterable itself failed: keep what was applied for the next call
            ch.new_tasks = list(new)
            self._pending = ch
            raise
        finally:
            self.events_applied += applied
            self.events_skipped += skipped
            self.events_unknown += unknown
            self.fields_invalid += invalid
            self.tasks_evicted += evicted_n
            ch.new_tasks = list(new)
        return ch

    def _fix_text(self, value: object, limit: int) -> str:
        """Coerce a non-string to text and clip it to ``limit`` characters (counted)."""
        if value.__class__ is not str:
            if isinstance(value, str):
                value = str.__str__(value)
            elif isinstance(value, bytes | bytearray):
                value = bytes(value[: limit * 4 + 4]).decode("utf-8", "replace")
            else:
                try:
                    value = repr(value)
                except Exception:  # noqa: BLE001
                    value = f"<unrepresentable {type(value).__name__}>"
        assert isinstance(value, str)
        if len(value) > limit:
            self.fields_clipped += 1
            return _clip(value, limit)
        return value

    def _evict(self, new: dict[str, None], changed: set[str], evicted: set[str]) -> None:
        """Drop tasks until the bound holds: oldest finished first, else the oldest."""
        tasks = self._tasks
        finished = self._finished
        order = self._order
        while len(tasks) > self.max_tasks:
            victim = None
            while finished:
                rec = finished.popleft()
                if tasks.get(rec.uuid) is rec:
                    victim = rec
                    break
            if victim is None:
                while True:  # never runs dry: every live record is in the order
                    rec = order.popleft()
                    if tasks.get(rec.uuid) is rec:
                        victim = rec
                        break
            uuid = victim.uuid
            del tasks[uuid]
            self.tasks_evicted += 1
            changed.discard(uuid)
            if uuid in new:
                del new[uuid]  # added and evicted in one batch: never shown
            else:
                evicted.add(uuid)
        self._trim_order()

    def _trim_order(self) -> None:
        """Release evicted records from the first-seen FIFO (front first, else compact)."""
        tasks = self._tasks
        order = self._order
        while order and tasks.get(order[0].uuid) is not order[0]:
            order.popleft()
        if len(order) > self._order_limit:
            live = [r for r in order if tasks.get(r.uuid) is r]
            order.clear()
            order.extend(live)

    def _count_finish(self, when: float | None) -> None:
        if when is None:
            return
        sec = int(when)
        rate = self._rate
        if rate:
            last = rate[-1]
            if last[0] == sec:
                last[1] += 1
                return
            if sec < last[0]:
                # late event: find its bucket (rare, and only a few buckets are kept)
                for bucket in rate:
                    if bucket[0] == sec:
                        bucket[1] += 1
                        return
                return  # older than what is kept
        rate.append([sec, 1])
        horizon = sec - max(60, int(self.rate_window) + 1)
        while rate[0][0] < horizon:
            rate.popleft()

    def _worker_event(
        self, kind: int, host: str, lr: float | None, ev: dict[str, Any], changed: set[str]
    ) -> None:
        workers = self._workers
        w = workers.get(host)
        if w is None:
            w = workers[host] = WorkerRecord(_intern(host), online=False)
            if len(workers) > self.max_workers:
                self._prune_workers(host, changed)
        get = ev.get
        if kind == _WORKER_HEARTBEAT:
            pid = get("pid")
            if pid.__class__ is int and w.pid is not None and pid != w.pid:
                # the same hostname, another process: the old one is gone
                self._lost_scan[host] = ("worker restarted", _as_float(get("timestamp")))
            w.online = True
            if lr is not None and (w.last_heartbeat is None or lr > w.last_heartbeat):
                w.last_heartbeat = lr
        elif kind == _WORKER_OFFLINE:
            w.online = False
            self._lost_scan[host] = ("worker-offline", _as_float(get("timestamp")))
        else:
            # worker-online is sent once, when a worker process starts: whatever an earlier
            # process of this hostname held is gone with it
            w.online = True
            self._lost_scan[host] = ("worker restarted", _as_float(get("timestamp")))
            if lr is not None and (w.last_heartbeat is None or lr > w.last_heartbeat):
                w.last_heartbeat = lr
        # one field at a time, unrolled: a heartbeat per worker every 2 s adds up
        invalid = 0
        v = get("freq")
        if v is not None:
            if v.__class__ is float:
                w.freq = v
            elif v.__class__ is int:
                w.freq = float(v)
            else:
                invalid += 1
        v = get("active")
        if v is not None:
            if v.__class__ is int:
                w.active = v
            else:
                invalid += 1
        v = get("processed")
        if v is not None:
            if v.__class__ is int:
                w.processed = v
            else:
                invalid += 1
        v = get("pid")
        if v is not None:
            if v.__class__ is int:
                w.pid = v
            else:
                invalid += 1
        v = get("loadavg")
        if v is not None:
            if v.__class__ is list and len(v) == 3:
                a, b, c = v  # the usual shape: three floats (float(x) of a float is x)
                if a.__class__ is float and b.__class__ is float and c.__class__ is float:
                    w.loadavg = (a, b, c)
                else:
                    invalid += self._set_loadavg(w, v)
            else:
                invalid += self._set_loadavg(w, v)
        v = get("sw_ident")
        if v is not None:
            if v.__class__ is str and len(v) <= MAX_KEY_CHARS:
                if v != w.sw_ident:
                    w.sw_ident = _interned(v) or _intern(v)
            else:
                invalid += 1
        v = get("sw_ver")
        if v is not None:
            if v.__class__ is str and len(v) <= MAX_KEY_CHARS:
                if v != w.sw_ver:
                    w.sw_ver = _interned(v) or _intern(v)
            else:
                invalid += 1
        v = get("sw_sys")
        if v is not None:
            if v.__class__ is str and len(v) <= MAX_KEY_CHARS:
                if v != w.sw_sys:
                    w.sw_sys = _interned(v) or _intern(v)
            else:
                invalid += 1
        if invalid:
            self.fields_invalid += invalid

    @staticmethod
    def _set_loadavg(w: WorkerRecord, v: Any) -> int:
        """Set ``w.loadavg`` from up to 3 numbers; 1 (one invalid field) if ``v`` is not that."""
        if isinstance(v, list | tuple) and len(v) <= 3 and all(_as_float(x) is not None for x in v):
            w.loadavg = tuple(float(x) for x in v)
            return 0
        return 1

    def _prune_workers(self, keep: str, changed: set[str]) -> None:
        """Forget the least recently seen workers (never ``keep``) down to 90% of ``max_workers``.

        Pruning a tenth at a time keeps a flood of new hostnames at O(log n) per worker
        instead of a scan per event.  Forgotten hostnames go into ``changed`` (the pane
        drops a row whose worker the model no longer has).
        """
        workers = self._workers
        target = self.max_workers - max(1, self.max_workers // 10)
        if len(workers) <= target:
            return

        def seen(w: WorkerRecord) -> float:
            return w.last_heartbeat if w.last_heartbeat is not None else float("-inf")

        candidates = sorted((w for h, w in workers.items() if h != keep), key=seen)
        for w in candidates[: len(workers) - target]:
            del workers[w.hostname]
            changed.add(w.hostname)
            self.workers_evicted += 1

    # ---- liveness, out-of-band updates ------------------------------------------------
    def refresh_liveness(self, now: float) -> set[str]:
        """Mark workers offline whose last sign of life is older than the timeout.

        The timeout is ``heartbeat_timeout``, or twice the worker's heartbeat
        ``freq`` if that is longer.  ``now`` is on the console's clock.  Returns the
        hostnames whose ``online`` flag changed (only online -> offline here; events
        bring workers back).
        """
        flipped: set[str] = set()
        base = self.heartbeat_timeout
        for host, w in self._workers.items():
            if not w.online or w.last_heartbeat is None:
                continue
            timeout = base
            if w.freq is not None and w.freq * 2 > timeout:
                timeout = w.freq * 2
            if now - w.last_heartbeat > timeout:
                w.online = False
                flipped.add(host)
                self._lost_scan[host] = ("missed heartbeats", None)
        if self._lost_scan:
            self._mark_lost_scan(self._changes().tasks)
        return flipped

    # ---- tasks lost with their worker ------------------------------------------------
    def _mark_lost_scan(self, changed: set[str]) -> None:
        """Mark RECEIVED/STARTED tasks of the workers in ``_lost_scan`` as :data:`LOST`.

        One pass over the tasks whatever the number of workers (a flood of forged
        worker-offline events costs one scan per batch).  ``before`` (the worker's event
        time) spares tasks a new process of the same hostname received after it started.
        """
        scan = self._lost_scan
        self._lost_scan = {}
        now = time.time()
        lost, unasked = self._lost, self._lost_unasked
        for rec in self._tasks.values():
            rank = rec.rank
            if rank != _R_RECEIVED and rank != _R_STARTED:
                continue
            host = rec.hostname
            hit = scan.get(host) if host is not None else None
            if hit is None:
                continue
            why, before = hit
            if before is not None:
                last = rec.started if rec.started is not None else rec.received
                if last is not None and last > before:
                    continue
            rec.state = LOST
            rec.rank = _R_SENT
            rec.lost = LostInfo(host or "?", now, why)
            changed.add(rec.uuid)
            lost[rec.uuid] = None
            unasked[rec.uuid] = None

    def lost_to_locate(self) -> list[str]:
        """Tasks newly marked :data:`LOST`, to look up in the broker (each returned once)."""
        if not self._lost_unasked:
            return []
        tasks = self._tasks
        out = [u for u in self._lost_unasked if (r := tasks.get(u)) is not None and r.state == LOST]
        self._lost_unasked.clear()
        return out

    def lost_due(self, now: float, every: float) -> list[str]:
        """LOST tasks to ask the broker about again: their redelivery time has passed (or
        the last answer was incomplete) and they were last asked ``every`` seconds ago."""
        tasks = self._tasks
        out: list[str] = []
        for uuid in list(self._lost):
            rec = tasks.get(uuid)
            info = rec.lost if rec is not None else None
            if rec is None or rec.state != LOST or info is None:
                del self._lost[uuid]  # replaced by a later event, or evicted
                continue
            if info.checked_at is None or now - info.checked_at < every:
                continue
            if info.in_broker is None or (info.redeliver_at or 0) <= now:
                out.append(uuid)
        return out

    def set_lost_location(
        self,
        uuid: str,
        in_broker: bool | None,
        delivered_at: float | None = None,
        redeliver_at: float | None = None,
        note: str = "",
        now: float | None = None,
    ) -> bool:
        """Record what the broker said about a LOST task's message; False if it is LOST no more."""
        rec = self._tasks.get(uuid)
        if rec is None or rec.state != LOST or rec.lost is None:
            return False
        info = rec.lost
        info.in_broker = in_broker
        info.delivered_at = delivered_at
        info.redeliver_at = redeliver_at
        info.note = note
        info.checked_at = time.time() if now is None else now
        self._changes().tasks.add(uuid)
        return True

    def _changes(self) -> Changes:
        if self._pending is None:
            self._pending = Changes()
        return self._pending

    def mark_purged(self, queue: str, before: float) -> int:
        """Mark the tasks waiting in ``queue`` (SENT by ``before``) as :data:`PURGED`.

        Called after this console purged ``queue``; returns how many were marked.  Without
        it they would read SENT for ever, in the pane and in exports.
        """
        marked = 0
        for rec in self._tasks.values():
            if (
                rec.rank == _R_SENT
                and rec.state == SENT
                and rec.queue == queue
                and (rec.sent or 0) <= before
            ):
                rec.state = PURGED
                self._changes().tasks.add(rec.uuid)
                marked += 1
        return marked

    def mark_deleted(self, uuid: str) -> bool:
        """This console deleted ``uuid``'s message from its queue (the queue's jobs screen, ``d``):
        it will never run, so it reads :data:`PURGED` like the tasks of a purged queue.

        A task the console has not seen is added; one a worker already reported on is left
        alone (the delete found nothing then).  Returns True when the task changed.
        """
        rec = self._tasks.get(uuid)
        if rec is None:
            return self.merge_task_info(uuid, state=PURGED)
        if rec.rank > _R_SENT or rec.state == PURGED:
            return False
        rec.state = PURGED
        rec.rank = _R_SENT
        self._changes().tasks.add(uuid)
        return True

    def retried_as(self, uuid: str) -> list[str]:
        """The tasks held that re-send ``uuid`` (their ``retry_of``), first seen first.

        A scan of the tasks held: called when a task's detail opens, not per event.
        """
        return [rec.uuid for rec in self._tasks.values() if rec.retry_of == uuid]

    def mark_revoke_requested(self, uuid: str) -> bool:
        """Flag a task the console asked to revoke, until an event finishes it.

        Returns False (and flags nothing) for unknown or already finished tasks.
        """
        rec = self._tasks.get(uuid)
        if rec is None or rec.rank >= _FINAL:
            return False
        if not rec.revoke_requested:
            rec.revoke_requested = True
            self._changes().tasks.add(uuid)
        return True

    def merge_task_info(self, uuid: str, *, behind: bool = False, **fields: Any) -> bool:
        """Fill gaps from the result backend or ``inspect().active()/reserved()``.

        Fields are TaskRecord attribute names (``worker`` is an alias of ``hostname``);
        unknown ones and None values are ignored.  Only empty fields are filled and
        ``state`` (a Celery state name) only moves the task forward.  An unknown task
        is created (inspect shows tasks the console never saw an event for).
        Returns True if anything changed.

        ``behind``: older news than anything the model holds (the history read at start,
        merged newest first while live events are applied).  A task the model knows keeps
        its state (what the cluster said since is truer) and only has its empty fields
        filled, and not those of what a run did (worker, times, result, exception) when
        the older source saw it further along than the cluster now does.  An unknown one
        is created as the oldest of all, first in line for eviction, not at all when the
        model is full, and not reported as a change (the pane is rebuilt once the history
        is in: :meth:`history_merged`).
        """
        if uuid.__class__ is not str or not uuid or len(uuid) > MAX_KEY_CHARS:
            return False
        tasks = self._tasks
        rec = tasks.get(uuid)
        created = rec is None
        changed = created
        if rec is None:
            if behind and len(tasks) >= self.max_tasks:
                return False
            rec = tasks[uuid] = TaskRecord(uuid)
            _untrack(rec)
            if behind:
                self._order.appendleft(rec)
            else:
                self._order.append(rec)
        if "worker" in fields and "hostname" not in fields:
            fields["hostname"] = fields["worker"]
        if behind and not created:
            # A task the model knows, from an older source (the history at start): when
            # that source saw it further along (FAILURE, while the cluster now says SENT:
            # a retry or a redelivery), what it says that run did belongs to another run.
            state = fields.get("state")
            rank = (
                _MERGE_RANK.get(state.upper(), _R_PENDING) if state.__class__ is str else _R_PENDING
            )
            if rank > rec.rank:
                fields = {k: v for k, v in fields.items() if k not in _RUN_FIELDS}
        maxc = self.max_field_chars
        for key in _TEXT_FIELDS:
            v = fields.get(key)
            if v is not None and getattr(rec, key) is None:
                setattr(rec, key, self._fix_text(v, maxc))
                changed = True
        v = fields.get("traceback")
        if v is not None and rec.traceback is None:
            rec.traceback = self._fix_text(v, self.max_traceback_chars)
            changed = True
        for key in _KEY_FIELDS + _STR_FIELDS:
            v = fields.get(key)
            if v.__class__ is str and v and len(v) <= MAX_KEY_CHARS and getattr(rec, key) is None:
                setattr(rec, key, _intern(v) if key in _KEY_FIELDS else v)
                changed = True
        for key in _TIME_FIELDS:
            v = _as_float(fields.get(key))
            if v is not None and getattr(rec, key) is None:
                setattr(rec, key, v)
                changed = True
                if key != "runtime" and (rec.last_event is None or v > rec.last_event):
                    rec.last_event = v
        for key in _INT_FIELDS:
            v = fields.get(key)
            if v.__class__ is int and getattr(rec, key) is None:
                setattr(rec, key, v)
                changed = True
        state = fields.get("state")
        if state.__class__ is str and (created or not behind):
            state = state.upper()
            # the console's own states too (a PURGED or LOST row of the history): a
            # backend's PENDING ranks 0 and never replaces anything known
            rank = _MERGE_RANK.get(state, _R_PENDING)
            if rank > rec.rank:
                was = rec.rank
                rec.state = state if state in _MERGE_RANK else _KIND_STATE[rank]
                rec.rank = rank
                if state == LOST:
                    rec.lost = LostInfo(rec.hostname or "?", time.time(), "before a restart")
                    self._lost[uuid] = None
                    self._lost_unasked[uuid] = None
                changed = True
                if rank == _R_STARTED:
                    self._running[uuid] = rec
                if rank >= _FINAL and was < _FINAL:
                    if behind:
                        self._finished.appendleft(rec)  # finished before all the others
                    else:
                        self._finished.append(rec)
                    rec.revoke_requested = False
        if changed and behind and created:
            return True
        if changed:
            ch = self._changes()
            ch.tasks.add(uuid)
            if created:
                ch.new_tasks.append(uuid)
            if len(tasks) > self.max_tasks:
                new = dict.fromkeys(ch.new_tasks)
                self._evict(new, ch.tasks, ch.evicted)
                ch.new_tasks = list(new)
        return changed

    def history_merged(self) -> None:
        """The history is in (:meth:`merge_task_info` with ``behind``): put the tasks in
        first-seen order again, the history's before those seen live, as
        :meth:`iter_tasks` promises.  One pass over the tasks (200k: ~100 ms, once)."""
        tasks = self._tasks
        ordered = {r.uuid: r for r in self._order if tasks.get(r.uuid) is r}
        if len(ordered) == len(tasks):  # every task is in the order; else keep what is
            self._tasks = ordered

    def set_worker_stats(self, hostname: str, stats: dict[str, Any]) -> bool:
        """Merge one worker's ``inspect().stats()`` reply; True if anything changed.

        An unknown worker is created online (it just answered) with no heartbeat: the
        heartbeat timeout then does not apply until its first event.
        """
        if hostname.__class__ is not str or not hostname or not isinstance(stats, dict):
            return False
        w = self._workers.get(hostname)
        created = w is None
        if w is None:
            w = self._workers[hostname] = WorkerRecord(_intern(hostname))
            if len(self._workers) > self.max_workers:
                self._prune_workers(hostname, self._changes().workers)
        before = (w.pool, w.concurrency, w.max_concurrency, w.autoscale, w.pid, w.totals)
        pool = stats.get("pool")
        if isinstance(pool, dict):
            impl = pool.get("implementation")
            if isinstance(impl, str) and impl:
                w.pool = _intern(_pool_name(impl))
            limit = pool.get("max-concurrency")
            if limit.__class__ is int:
                w.max_concurrency = limit
            procs = pool.get("processes")
            if isinstance(procs, list | tuple):
                w.concurrency = len(procs)
            elif limit.__class__ is int:
                w.concurrency = limit  # solo / threads / green pools: no process list
        scaler = stats.get("autoscaler")
        if (
            isinstance(scaler, dict)
            and scaler.get("max").__class__ is int
            and scaler.get("min").__class__ is int
        ):
            w.autoscale = (scaler["max"], scaler["min"])
        elif "pool" in stats:
            w.autoscale = None
        pid = stats.get("pid")
        if pid.__class__ is int:
            w.pid = pid
        total = stats.get("total")
        if isinstance(total, dict):
            w.totals = {_intern(str(k)): v for k, v in total.items() if v.__class__ is int}
        changed = created or before != (
            w.pool,
            w.concurrency,
            w.max_concurrency,
            w.autoscale,
            w.pid,
            w.totals,
        )
        if changed:
            self._changes().workers.add(hostname)
        return changed

    def set_worker_queues(self, hostname: str, queues: Iterable[Any]) -> bool:
        """Set the queues a worker consumes (names, or ``active_queues()`` dicts)."""
        if hostname.__class__ is not str or not hostname:
            return False
        names: list[str] = []
        for q in queues or ():
            name = q.get("name") if isinstance(q, dict) else q
            if isinstance(name, str) and name and len(name) <= MAX_KEY_CHARS:
                names.append(_intern(name))
        w = self._workers.get(hostname)
        created = w is None
        if w is None:
            w = self._workers[hostname] = WorkerRecord(_intern(hostname))
            if len(self._workers) > self.max_workers:
                self._prune_workers(hostname, self._changes().workers)
        value = tuple(sorted(set(names)))
        if not created and w.queues == value:
            return False
        w.queues = value
        self._changes().workers.add(hostname)
        return True


def _pool_name(implementation: str) -> str:
    """``celery.concurrency.prefork:TaskPool`` -> ``prefork``."""
    module = implementation.partition(":")[0]
    return module.rpartition(".")[2] or implementation


def _revoke_reason(ev: dict[str, Any]) -> str:
    if ev.get("expired"):
        return "expired"
    if ev.get("terminated"):
        signum = ev.get("signum")
        return f"terminated (signal {signum})" if signum not in (None, "") else "terminated"
    return "revoked"


# ---- the Tasks pane's filter ---------------------------------------------------------
