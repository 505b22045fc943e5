"""Metric families built from what :mod:`tui.sources` reads: events, queue polls, inspect.

Names follow danihodovic/celery-exporter where they overlap, with its labels, so its
dashboards and alerts work unchanged:

* ``celery_task_{sent,received,started,succeeded,failed,retried,revoked,rejected}_total``
  with ``name``, ``hostname``, ``queue_name`` (``failed`` also ``exception``);
* ``celery_task_runtime`` (histogram, ``name``, ``hostname``, ``queue_name``);
* ``celery_worker_up`` and ``celery_worker_tasks_active`` (``hostname``);
* ``celery_queue_length``, ``celery_active_worker_count`` and ``celery_active_process_count``
  (``queue_name``).

As in celery-exporter, ``hostname`` is the host part of a Celery node name
(``worker1@web-3`` -> ``web-3``); ``afirgen_worker_up{worker}`` keeps the full node name.

The ``afirgen_*`` families are what no exporter has: waiting jobs per operator priority,
reserved jobs and the age of the oldest waiting job per queue, and the exporter's own
health.

Every event reaching :meth:`ClusterMetrics.apply_event` has passed the trust boundary
(:class:`tui.sources.validate.EventValidator`), but names still come from whoever can
publish to the broker: each label keeps at most a fixed number of distinct values (beyond
it the value is ``other``) and each family at most :data:`MAX_SERIES` label sets, and what
was folded is counted in ``afirgen_metrics_labels_dropped_total{label}``.  Memory is
bounded whatever is published.

Threads: ``apply_*`` run in the serve loop's thread; ``collect`` runs in the HTTP server's
threads.  prometheus_client's metrics lock themselves; the state read at collect time is
swapped whole or guarded by :attr:`ClusterMetrics._lock`.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from afirgen_tasks.priority import MAX_PRIORITY, MIN_PRIORITY
from tui.sources.events import CONNECTED
from tui.sources.inspection import InspectionResult
from tui.sources.queue_lengths import QueueSnapshot
from tui.sources.validate import is_key

#: The value a label takes once its cap of distinct values is reached.
OTHER = "other"
#: The task name or queue of a task whose sent/received event this exporter never saw.
UNKNOWN = "unknown"
MAX_TASK_NAMES = 500
MAX_HOSTNAMES = 1000
MAX_QUEUES = 200
MAX_EXCEPTIONS = 200
#: Worker nodes tracked for ``*_worker_up`` (least recently seen forgotten first).
MAX_WORKERS = 1000
#: Label sets per family: the product of capped labels can still be large.
MAX_SERIES = 5000
#: Tasks remembered (uuid -> name, queue) so that started/succeeded/failed events, which
#: carry no name, are counted under the right one.  Oldest forgotten first.
MAX_TASKS_TRACKED = 50_000
#: A worker silent this long after its last heartbeat is forgotten (its series go away).
FORGET_WORKER_AFTER_S = 600.0

TASK_EVENTS: dict[str, str] = {
    "task-sent": "Task messages published (task-sent events).",
    "task-received": "Tasks received by a worker.",
    "task-started": "Tasks a worker started executing.",
    "task-succeeded": "Tasks that succeeded.",
    "task-failed": "Tasks that failed.",
    "task-retried": "Tasks that failed and will be retried.",
    "task-revoked": "Tasks revoked.",
    "task-rejected": "Tasks rejected by a worker (requeued or dead-lettered).",
}
_EXCEPTION = re.compile(r"^(\w{1,128})\(")


def node_host(node: str) -> str:
    """The host part of a Celery node name (``name@host`` -> ``host``), as celery-exporter labels it."""
    return node.partition("@")[2] or node


def exception_class(text: Any) -> str:
    """``ValueError`` from ``"ValueError('bad')"``, as celery-exporter labels failures."""
    if isinstance(text, str):
        match = _EXCEPTION.match(text)
        if match is not None:
            return match.group(1)
    return "UnknownException"


class LabelCap:
    """At most ``limit`` distinct values of one label; later new values read ``other``.

    ``on_drop`` is called once per value folded (it counts them).
    """

    def __init__(self, limit: int, on_drop: Callable[[], None]) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._on_drop = on_drop

    def __call__(self, value: str) -> str:
        seen = self._seen
        if value in seen:
            return value
        if len(seen) < self.limit:
            seen.add(value)
            return value
        self._on_drop()
        return OTHER

    def __len__(self) -> int:
        return len(self._seen)


@dataclass(frozen=True, slots=True)
class _QueueRow:
    label: str
    waiting: int
    by_priority: dict[int, int]
    reserved: int | None
    age: float | None


@dataclass(slots=True)
class _Node:
    last_seen: float
    freq: float = 2.0
    active: int = 0
    offline: bool = False


class ClusterMetrics(Collector):
    """Every metric family of the exporter, in its own :class:`CollectorRegistry`.

    ``events_source`` (an :class:`~tui.sources.events.EventReceiverThread`, or anything with
    ``received``, ``invalid``, ``dropped`` and ``status.state``) feeds the exporter's own
    health counters.  Set :attr:`broker_up` after each poll.
    """

    def __init__(
        self,
        *,
        events_source: Any = None,
        heartbeat_timeout: float = 6.0,
        max_task_names: int = MAX_TASK_NAMES,
        max_hostnames: int = MAX_HOSTNAMES,
        max_queues: int = MAX_QUEUES,
        max_workers: int = MAX_WORKERS,
        max_series: int = MAX_SERIES,
        max_tasks_tracked: int = MAX_TASKS_TRACKED,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events_source = events_source
        self.heartbeat_timeout = heartbeat_timeout
        self.max_workers = max_workers
        self.max_series = max_series
        self.max_tasks_tracked = max_tasks_tracked
        self._clock = clock
        #: 1 when the last broker read (queue poll) answered.
        self.broker_up = False

        self.labels_dropped = Counter(
            "afirgen_metrics_labels_dropped",
            "Label values folded into 'other' (a label's cap of distinct values, or a family's "
            "cap of series, was reached) or dropped as invalid, by label.",
            ["label"],
            registry=self.registry,
        )
        self._names = LabelCap(max_task_names, self._dropper("name"))
        self._hosts = LabelCap(max_hostnames, self._dropper("hostname"))
        self._queue_cap = LabelCap(max_queues, self._dropper("queue_name"))
        self._exceptions = LabelCap(MAX_EXCEPTIONS, self._dropper("exception"))
        self._series: dict[str, set[tuple[str, ...]]] = {}

        self.task_counters: dict[str, Counter] = {}
        for etype, doc in TASK_EVENTS.items():
            labels = ["name", "hostname", "queue_name"]
            if etype == "task-failed":
                labels.insert(2, "exception")
            self.task_counters[etype] = Counter(
                "celery_" + etype.replace("-", "_"), doc, labels, registry=self.registry
            )
        self.runtime = Histogram(
            "celery_task_runtime",
            "Runtime of succeeded tasks, seconds (task-succeeded events).",
            ["name", "hostname", "queue_name"],
            registry=self.registry,
        )
        self._tasks: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._nodes: OrderedDict[str, _Node] = OrderedDict()
        self._lock = threading.Lock()
        self._queue_rows: list[_QueueRow] | None = None
        #: (queue, priority) -> (identity of the message at the tail, first time seen there)
        self._tails: dict[tuple[str, int], tuple[str, float]] = {}
        self._consumers: dict[str, tuple[int, int]] = {}
        self.registry.register(self)

    def _dropper(self, label: str) -> Callable[[], None]:
        child = self.labels_dropped.labels(label=label)
        return child.inc

    def _series_labels(self, family: str, values: tuple[str, ...]) -> tuple[str, ...]:
        seen = self._series.setdefault(family, set())
        if values in seen:
            return values
        if len(seen) >= self.max_series:
            self.labels_dropped.labels(label="series").inc()
            values = (OTHER,) * len(values)
        seen.add(values)
        return values

    # ---- events (runs in the serve loop's thread) -----------------------------------------
    def apply_events(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Apply a batch of events (validated by the sources boundary), oldest first."""
        for event in events:
            self.apply_event(event)

    def apply_event(self, event: Mapping[str, Any]) -> None:
        """Count one validated event."""
        etype = event.get("type")
        if etype in TASK_EVENTS:
            self._task_event(etype, event)
        elif etype in ("worker-online", "worker-heartbeat", "worker-offline"):
            self._worker_event(etype, event)

    def _remember(self, uuid: str, name: str | None, queue: str | None) -> tuple[str, str]:
        tasks = self._tasks
        known = tasks.get(uuid)
        if known is not None:
            tasks.move_to_end(uuid)
            old_name, old_queue = known
            name = name or old_name
            queue = queue or old_queue
        info = (name or UNKNOWN, queue or UNKNOWN)
        if info != known:
            tasks[uuid] = info
            while len(tasks) > self.max_tasks_tracked:
                tasks.popitem(last=False)
        return info

    def _task_event(self, etype: str, event: Mapping[str, Any]) -> None:
        uuid = event["uuid"]
        name, queue = self._remember(uuid, event.get("name"), event.get("queue"))
        final = etype in ("task-succeeded", "task-failed", "task-revoked", "task-rejected")
        base = (
            self._names(name),
            self._hosts(node_host(event["hostname"])),
            self._queue_label(queue),
        )
        if etype == "task-failed":
            exc = self._exceptions(exception_class(event.get("exception")))
            labels = self._series_labels(etype, (base[0], base[1], exc, base[2]))
        else:
            labels = self._series_labels(etype, base)
        self.task_counters[etype].labels(*labels).inc()
        if etype != "task-sent":
            # the first time a (name, host, queue) runs, its other counters appear at 0, so that
            # rate(failed) / rate(succeeded) has both sides (celery-exporter does the same)
            seen = self._series.setdefault("worker-side", set())
            if base not in seen and len(seen) < self.max_series:
                seen.add(base)
                for other, counter in self.task_counters.items():
                    if other not in ("task-sent", "task-failed", etype):
                        counter.labels(*self._series_labels(other, base)).inc(0)
        if etype == "task-succeeded":
            runtime = event.get("runtime")
            if runtime is not None:
                self.runtime.labels(*self._series_labels("runtime", base)).observe(runtime)
        if final:
            self._tasks.pop(uuid, None)

    def _queue_label(self, queue: str) -> str:
        return queue if queue == UNKNOWN else self._queue_cap(queue)

    def _worker_event(self, etype: str, event: Mapping[str, Any]) -> None:
        node = event["hostname"]
        now = self._clock()
        with self._lock:
            nodes = self._nodes
            state = nodes.get(node)
            if state is None:
                if etype == "worker-offline":
                    return
                if len(nodes) >= self.max_workers:
                    nodes.popitem(last=False)  # the least recently heard from
                    self.labels_dropped.labels(label="worker").inc()
                state = nodes[node] = _Node(now)
            else:
                nodes.move_to_end(node)
            state.last_seen = now
            freq = event.get("freq")
            if freq:
                state.freq = freq
            state.offline = etype == "worker-offline"
            active = event.get("active")
            if state.offline:
                state.active = 0
            elif active is not None:
                state.active = active

    # ---- polls (runs in the serve loop's thread) ------------------------------------------
    def _queue_label_of(self, name: Any) -> str | None:
        """``name`` as a queue_name label, or None (counted) when invalid or over the cap."""
        if not is_key(name):
            self.labels_dropped.labels(label="queue_name").inc()
            return None
        label = self._queue_cap(name)
        return None if label == OTHER else label

    def apply_queue_snapshot(self, snapshot: QueueSnapshot | None) -> None:
        """Take a queue poll; ``None`` (or an unavailable snapshot) hides the queue families."""
        if snapshot is None or not snapshot.available:
            self._queue_rows = None
            return
        now = self._clock()
        tails: dict[tuple[str, int], tuple[str, float]] = {}
        rows: list[_QueueRow] = []
        for name, q in snapshot.queues.items():
            label = self._queue_label_of(name)
            if label is None:
                continue
            oldest = 0.0
            for priority, ident in q.tails.items():
                if q.by_priority.get(priority, 0) <= 0:
                    continue
                before = self._tails.get((name, priority))
                first = before[1] if before is not None and before[0] == ident else now
                tails[(name, priority)] = (ident, first)
                oldest = max(oldest, now - first)
            # no tail read (a server without scripting): the age is unknown, not 0
            age = oldest if q.tails or q.waiting == 0 else None
            rows.append(_QueueRow(label, q.waiting, dict(q.by_priority), q.reserved, age))
        self._tails = tails
        self._queue_rows = rows

    def apply_inspection(self, result: InspectionResult) -> None:
        """Workers and pool processes consuming each queue, from ``inspect`` replies."""
        if result.error:
            return
        consumers: dict[str, tuple[int, int]] = {}
        for host, queues in result.active_queues.items():
            procs = len(result.stats.get(host, {}).get("pool", {}).get("processes", ()))
            for queue in set(queues):
                label = self._queue_label_of(queue)
                if label is None:
                    continue
                workers, processes = consumers.get(label, (0, 0))
                consumers[label] = (workers + 1, processes + procs)
        self._consumers = consumers

    # ---- collect (runs in an HTTP server thread) ------------------------------------------
    def describe(self) -> list[Metric]:
        """Nothing up front: the families below depend on what was seen."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The families computed at scrape time: queues, workers, the exporter's health."""
        yield from self._collect_queues()
        yield from self._collect_workers()
        yield from self._collect_health()

    def _collect_queues(self) -> Iterator[Metric]:
        rows = self._queue_rows
        consumers = self._consumers
        workers = GaugeMetricFamily(
            "celery_active_worker_count",
            "Workers consuming the queue (inspect active_queues).",
            labels=["queue_name"],
        )
        processes = GaugeMetricFamily(
            "celery_active_process_count",
            "Pool processes of the workers consuming the queue (inspect stats).",
            labels=["queue_name"],
        )
        for label in sorted(consumers):
            w, p = consumers[label]
            workers.add_metric([label], w)
            processes.add_metric([label], p)
        yield workers
        yield processes
        if rows is None:
            return
        length = GaugeMetricFamily(
            "celery_queue_length",
            "Messages waiting in the queue, every priority list counted.",
            labels=["queue_name"],
        )
        waiting = GaugeMetricFamily(
            "afirgen_queue_waiting",
            "Messages waiting in the queue at each operator priority (1-10, 10 = most urgent).",
            labels=["queue_name", "priority"],
        )
        reserved = GaugeMetricFamily(
            "afirgen_queue_reserved",
            "Messages of the queue taken by a worker and not yet acknowledged (the unacked "
            "hash; with late acks this includes running tasks).",
            labels=["queue_name"],
        )
        age = GaugeMetricFamily(
            "afirgen_queue_oldest_waiting_age_seconds",
            "Seconds the oldest waiting message of the queue has been next in line in its "
            "priority list, as seen by this exporter. Celery messages carry no sent time, so "
            "this counts from the first poll that saw that message there: a lower bound, 0 "
            "after an exporter restart, 0 for an empty queue.",
            labels=["queue_name"],
        )
        for row in rows:
            length.add_metric([row.label], row.waiting)
            if row.reserved is not None:
                reserved.add_metric([row.label], row.reserved)
            for priority in range(MIN_PRIORITY, MAX_PRIORITY + 1):
                waiting.add_metric([row.label, str(priority)], row.by_priority.get(priority, 0))
            if row.age is not None:
                age.add_metric([row.label], round(row.age, 3))
        yield length
        yield waiting
        yield reserved
        yield age

    def _collect_workers(self) -> Iterator[Metric]:
        now = self._clock()
        up = GaugeMetricFamily(
            "celery_worker_up",
            "1 if a worker on this host sent a heartbeat recently (hostname: the host part of "
            "the node name, as celery-exporter labels it).",
            labels=["hostname"],
        )
        active = GaugeMetricFamily(
            "celery_worker_tasks_active",
            "Tasks the host's workers are executing (their last heartbeats).",
            labels=["hostname"],
        )
        node_up = GaugeMetricFamily(
            "afirgen_worker_up",
            "1 if the worker node sent a heartbeat recently.",
            labels=["worker"],
        )
        hosts: dict[str, tuple[int, int]] = {}
        with self._lock:
            nodes = self._nodes
            for node in [n for n, s in nodes.items() if now - s.last_seen > FORGET_WORKER_AFTER_S]:
                del nodes[node]
            items = [(node, s.last_seen, s.freq, s.active, s.offline) for node, s in nodes.items()]
        for node, last_seen, freq, running, offline in items:
            alive = not offline and now - last_seen <= max(self.heartbeat_timeout, 2 * freq)
            node_up.add_metric([node], int(alive))
            host = node_host(node)
            was_up, was_active = hosts.get(host, (0, 0))
            hosts[host] = (max(was_up, int(alive)), was_active + (running if alive else 0))
        for host, (host_up, running) in sorted(hosts.items()):
            up.add_metric([host], host_up)
            active.add_metric([host], running)
        yield up
        yield active
        yield node_up

    def _collect_health(self) -> Iterator[Metric]:
        source = self.events_source
        up = GaugeMetricFamily(
            "afirgen_broker_up",
            "1 if the exporter's last read of the broker (queue poll) answered.",
        )
        up.add_metric([], int(self.broker_up))
        yield up
        if source is None:
            return
        connected = GaugeMetricFamily(
            "afirgen_events_connected", "1 while the exporter's event receiver is connected."
        )
        connected.add_metric([], int(source.status.state == CONNECTED))
        yield connected
        for name, value, doc in (
            (
                "afirgen_events_received",
                source.received,
                "Events received that passed the trust boundary.",
            ),
            (
                "afirgen_events_invalid",
                source.invalid,
                "Events (or messages) the trust boundary skipped as malformed.",
            ),
            (
                "afirgen_events_dropped",
                source.dropped,
                "Events dropped because the exporter fell behind (its buffer was full).",
            ),
        ):
            family = CounterMetricFamily(name, doc)
            family.add_metric([], value)
            yield family
