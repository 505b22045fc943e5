"""Everything the console reads from the cluster, behind one object the app owns.

The app never touches the broker itself: it calls these methods from thread workers
(polls) and drains the receiver's buffer on its timer.  Tests of the screens substitute
:class:`StaticSources` (fed by the test) — the model, panes and app stay real.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Protocol

from celery import Celery

from afirgen_tasks.settings import Settings
from tui.core.pauses import PauseRecord
from tui.sources.control import ClusterControl
from tui.sources.events import CONNECTED, CONNECTING, ReceiverStatus
from tui.sources.inspection import (
    InspectionResult,
    WorkerDetail,
    inspect_workers,
    worker_detail,
    worker_queues,
)
from tui.sources.pause_records import PauseRecordStore
from tui.sources.queue_jobs import NOT_AVAILABLE as JOBS_NOT_AVAILABLE
from tui.sources.queue_jobs import JobsPage, QueueJobs, make_queue_jobs
from tui.sources.queue_lengths import QueueSnapshot
from tui.sources.redis_events import make_event_receiver
from tui.sources.unacked import NOT_AVAILABLE as UNACKED_NOT_AVAILABLE
from tui.sources.unacked import (
    UnackedHold,
    UnackedJobs,
    UnackedLookup,
    UnackedPage,
    make_unacked_jobs,
)
from tui.sources.validate import Boundary, StoredJob, clean_backend_meta, stored_job

#: Longest the first inspect (the console's resync) and ``enable_events`` wait for the
#: event receiver's first subscription; past it they go ahead (the status line says
#: "connecting" meanwhile).  Once the receiver has connected, or failed once, no wait.
SUBSCRIBE_WAIT_S = 10.0


class Sources(Protocol):
    """What the app needs from the cluster."""

    settings: Settings
    #: what the trust boundary skipped and cleaned, per source (events, inspect, backend, history)
    boundary: Boundary

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def drain(self, budget: int) -> list[dict[str, Any]]: ...
    @property
    def received(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def buffered(self) -> int: ...
    @property
    def status(self) -> ReceiverStatus: ...
    def poll_queues(self) -> QueueSnapshot: ...
    def enable_events(self, hosts: list[str]) -> list[dict[str, Any]]: ...
    def inspect(self, expected: int | None, tasks: bool) -> InspectionResult: ...
    def fetch_result(self, uuid: str) -> dict[str, Any]: ...
    def fetch_stored_job(self, uuid: str) -> StoredJob | str: ...
    def pause_records(self) -> dict[str, PauseRecord] | None: ...
    def read_queue_jobs(self, queue: str, offset: int, limit: int) -> JobsPage: ...
    def queue_jobs(self) -> QueueJobs: ...

    def locate_unacked(self, uuids: list[str]) -> UnackedLookup: ...
    def read_unacked(self, offset: int, limit: int) -> UnackedPage: ...
    def unacked_jobs(self) -> UnackedJobs: ...

    def worker_detail(self, host: str) -> WorkerDetail: ...
    def worker_queues(self, host: str) -> list[str] | None: ...


class BrokerSources:
    """The real sources: the event receiver (``[console] event_reader``: on Redis brokers a
    direct pub/sub reader in a process of its own by default, Celery's kombu receiver on
    others), the queue poller (Redis or AMQP), inspect, the backend."""

    def __init__(self, settings: Settings, app: Celery, scrub: Any = None):
        self.settings = settings
        self.app = app
        self.scrub = scrub or (lambda text: text)
        self.boundary = Boundary()
        self.events = make_event_receiver(
            app,
            settings,
            settings.console_event_buffer,
            scrub=self.scrub,
            tally=self.boundary.events,
        )
        self._poller: Any = None
        self._pause_store: PauseRecordStore | None = None
        self._locator: Any = None
        self._jobs: QueueJobs | None = None
        self._unacked_jobs: UnackedJobs | None = None
        #: one poll at a time: the AMQP poller holds one channel, not thread-safe, and a
        #: poll after an action or a reconnect can start while the periodic one runs
        self._poll_lock = threading.Lock()

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Start the receiver (it connects, and reconnects, by itself)."""
        self.events.start()

    def stop(self) -> None:
        """Stop the receiver (and its process, within a second) and close broker connections."""
        self.events.stop()
        for closable in (
            getattr(self._poller, "client", None),  # Redis
            getattr(self._locator, "client", None),
            getattr(self._jobs, "client", None),
            getattr(self._unacked_jobs, "client", None),
            self._poller if hasattr(self._poller, "declarer") else None,  # AMQP
            self._pause_store if hasattr(self._pause_store, "declarer") else None,
        ):
            close = getattr(closable, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # closing what a dead broker left: nothing to report
                    pass

    # ---- events ------------------------------------------------------------------------
    def drain(self, budget: int) -> list[dict[str, Any]]:
        return self.events.drain(budget)

    @property
    def received(self) -> int:
        return self.events.received

    @property
    def dropped(self) -> int:
        return self.events.dropped

    @property
    def buffered(self) -> int:
        return self.events.buffered

    @property
    def status(self) -> ReceiverStatus:
        return self.events.status

    # ---- polls (called from thread workers) ---------------------------------------------
    def poll_queues(self) -> QueueSnapshot:
        """All queue lengths in one pipelined round trip (the poller rediscovers queue names
        itself).  Polls from several threads take turns."""
        with self._poll_lock:
            return self._poll_queues()

    def _poll_queues(self) -> QueueSnapshot:
        started = time.monotonic()
        try:
            if self._poller is None:
                from tui.sources.queue_lengths import make_queue_poller

                timeout = max(1.0, self.settings.console_queue_poll_interval * 2)
                self._poller = make_queue_poller(
                    self.app,
                    settings=self.settings,
                    socket_connect_timeout=timeout,
                    socket_timeout=timeout,
                )
            snap = self._poller.poll()
            if not snap.available:
                return QueueSnapshot(
                    available=False,
                    supported=False,
                    taken_at=time.time(),
                    error=snap.error or "queue lengths need a Redis broker",
                )
            return snap
        except Exception as exc:  # broker down: say so, keep the last data on screen
            return QueueSnapshot(
                available=False,
                error=self.scrub(f"{type(exc).__name__}: {exc}")[:200],
                duration=time.monotonic() - started,
                taken_at=time.time(),
            )

    def _after_subscription(self) -> None:
        # What inspect reads and what enable_events switches on is only followed by events
        # the console sees once the receiver is subscribed: a reader process takes a few
        # hundred ms to start (more on a loaded machine), so the console's first resync
        # and enable_events wait for it (in their thread workers, never the UI thread).
        self.events.wait_connected(SUBSCRIBE_WAIT_S)

    def inspect(self, expected: int | None, tasks: bool) -> InspectionResult:
        self._after_subscription()
        return inspect_workers(
            self.app,
            self.settings.console_control_timeout,
            expected,
            tasks,
            self.scrub,
            tally=self.boundary.inspect,
        )

    def worker_detail(self, host: str) -> WorkerDetail:
        """``host`` alone, in detail (stats, tasks, registry, queues, pool-restart setting)."""
        return worker_detail(
            self.app,
            host,
            self.settings.console_control_timeout,
            self.scrub,
            tally=self.boundary.inspect,
        )

    def worker_queues(self, host: str) -> list[str] | None:
        """The queues ``host`` consumes now; None when it did not answer."""
        return worker_queues(
            self.app, host, self.settings.console_control_timeout, self.boundary.inspect
        )

    def enable_events(self, hosts: list[str]) -> list[dict[str, Any]]:
        """Ask ``hosts`` to send task events; their replies say who had them off."""
        self._after_subscription()
        return ClusterControl(self.app, self.settings.console_control_timeout).enable_events(hosts)

    def fetch_result(self, uuid: str) -> dict[str, Any]:
        """What the result backend holds for ``uuid`` (status, result, traceback, args...), cleaned."""
        meta = self.app.AsyncResult(uuid).backend.get_task_meta(uuid)
        return clean_backend_meta(meta or {}, self.boundary.backend)

    def fetch_stored_job(self, uuid: str) -> StoredJob | str:
        """The name, queue, args and kwargs ``uuid`` ran with, from the result backend, for a
        retry (uncut: see :class:`StoredJob`); or why they are not known."""
        meta = self.app.AsyncResult(uuid).backend.get_task_meta(uuid)
        return stored_job(uuid, meta)

    def pause_records(self) -> dict[str, PauseRecord] | None:
        """The pause records in the broker (cleaned; {} when it cannot keep any), or None when
        they could not be read (broker down: the caller keeps what it had)."""
        # runs in the inspect thread worker
        try:
            if self._pause_store is None:
                self._pause_store = PauseRecordStore.for_app(
                    self.app, self.settings, self.settings.console_control_timeout
                )
            if not self._pause_store.available:
                return {}
            if self._poller is not None and hasattr(self._pause_store, "note_queues"):
                # AMQP cannot list queues: look for the records of every queue polled
                self._pause_store.note_queues(self._poller.queues)
            return self._pause_store.read_all(self.boundary.inspect)
        except Exception:
            return None

    def locate_unacked(self, uuids: list[str]) -> UnackedLookup:
        """Where the broker holds lost tasks' messages and when it hands them out again
        (:mod:`tui.sources.unacked`); one thread worker at a time."""
        try:
            if self._locator is None:
                from tui.sources.redis_conn import is_redis_url, redis_client
                from tui.sources.unacked import make_unacked_locator

                url = self.settings.celery_broker_url or ""
                if not is_redis_url(url):
                    return UnackedLookup(
                        error="the broker is not Redis: its unacknowledged messages cannot be read",
                        taken_at=time.time(),
                    )
                client = redis_client(
                    url, self.settings, socket_connect_timeout=3, socket_timeout=5
                )
                self._locator = make_unacked_locator(self.app, client)
            return self._locator.locate(uuids, self.boundary.broker)
        except Exception as exc:  # broker down: say so on the task
            return UnackedLookup(
                error=self.scrub(f"{type(exc).__name__}: {exc}")[:200], taken_at=time.time()
            )

    # ---- the jobs waiting in a queue ----------------------------------------------------
    def queue_jobs(self) -> QueueJobs:
        """The reader and editor of waiting jobs; raises RuntimeError (saying why) when the
        broker is not Redis."""
        if self._jobs is None:
            timeout = max(1.0, self.settings.console_control_timeout * 2)
            self._jobs = make_queue_jobs(
                self.app, self.settings, socket_connect_timeout=timeout, socket_timeout=timeout
            )
            if self._jobs is None:
                raise RuntimeError(JOBS_NOT_AVAILABLE)
        return self._jobs

    def read_queue_jobs(self, queue: str, offset: int, limit: int) -> JobsPage:
        """A window of ``queue``'s waiting jobs in run order (never raises: errors are words)."""
        try:
            jobs = self.queue_jobs()
        except RuntimeError as exc:
            return JobsPage(queue, available=False, supported=False, error=str(exc))
        try:
            return jobs.read_page(queue, offset, limit)
        except Exception as exc:  # broker down, scripting refused: say so
            return JobsPage(
                queue,
                offset,
                limit,
                available=False,
                error=self.scrub(f"{type(exc).__name__}: {exc}")[:200],
                taken_at=time.time(),
            )

    # ---- jobs taken but not acknowledged ------------------------------------------------
    def unacked_jobs(self) -> UnackedJobs:
        """The reader and requeuer of unacknowledged jobs; raises RuntimeError (saying why)
        when the broker is not Redis."""
        if self._unacked_jobs is None:
            timeout = max(1.0, self.settings.console_control_timeout * 2)
            self._unacked_jobs = make_unacked_jobs(
                self.app, self.settings, socket_connect_timeout=timeout, socket_timeout=timeout
            )
            if self._unacked_jobs is None:
                raise RuntimeError(UNACKED_NOT_AVAILABLE)
        return self._unacked_jobs

    def read_unacked(self, offset: int, limit: int) -> UnackedPage:
        """A window of the unacknowledged jobs by delivery time (never raises: errors are words)."""
        try:
            jobs = self.unacked_jobs()
        except RuntimeError as exc:
            return UnackedPage(available=False, supported=False, error=str(exc))
        try:
            return jobs.read_page(offset, limit)
        except Exception as exc:  # broker down, scripting refused: say so
            return UnackedPage(
                offset,
                limit,
                available=False,
                error=self.scrub(f"{type(exc).__name__}: {exc}")[:200],
                taken_at=time.time(),
            )


class StaticSources:
    """Sources fed by the caller (screen tests, benchmarks): no broker, same interface."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.buffer: collections.deque[dict[str, Any]] = collections.deque()
        self.queue_poll = QueueSnapshot(taken_at=time.time())
        #: hosts ``enable_events`` was sent to, and the replies to give back
        self.events_enabled: list[str] = []
        self.enable_events_replies: list[dict[str, Any]] = []
        self.inspection = InspectionResult(taken_at=time.time())
        self.results: dict[str, dict[str, Any]] = {}
        #: the pause records to give back (None: "could not be read")
        self.pauses: dict[str, PauseRecord] | None = {}
        #: what ``locate_unacked`` answers, by task id (others: not in the broker)
        self.unacked: dict[str, UnackedHold] = {}
        self.unacked_asked: list[list[str]] = []
        #: the waiting-jobs reader (a test gives it one on a real Redis); None: not Redis
        self.jobs: QueueJobs | None = None
        #: the unacknowledged-jobs reader (a test gives it one on a real Redis); None: not Redis
        self.unacked_reader: UnackedJobs | None = None
        #: what ``worker_detail`` answers per host (absent: the worker does not reply)
        self.details: dict[str, WorkerDetail] = {}
        # Fed as-is (tests feed odd data on purpose to exercise the model's own checks);
        # the history load still counts into it.
        self.boundary = Boundary()
        self._received = 0
        self._dropped = 0
        self._status = ReceiverStatus(CONNECTING, time.time())

    def feed(self, events: list[dict[str, Any]]) -> None:
        """Queue events as if they came off the wire."""
        self.buffer.extend(events)
        self._received += len(events)

    def set_status(self, status: ReceiverStatus) -> None:
        self._status = status

    def start(self) -> None:
        self._status = ReceiverStatus(CONNECTED, time.time(), connects=1)

    def stop(self) -> None:
        pass

    def drain(self, budget: int) -> list[dict[str, Any]]:
        n = min(budget, len(self.buffer))
        return [self.buffer.popleft() for _ in range(n)]

    @property
    def received(self) -> int:
        return self._received

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def buffered(self) -> int:
        return len(self.buffer)

    @property
    def status(self) -> ReceiverStatus:
        return self._status

    def poll_queues(self) -> QueueSnapshot:
        return self.queue_poll

    def enable_events(self, hosts: list[str]) -> list[dict[str, Any]]:
        self.events_enabled.extend(hosts)
        return self.enable_events_replies

    def inspect(self, expected: int | None, tasks: bool) -> InspectionResult:
        return self.inspection

    def fetch_result(self, uuid: str) -> dict[str, Any]:
        return self.results.get(uuid, {})

    def fetch_stored_job(self, uuid: str) -> StoredJob | str:
        return stored_job(uuid, self.results.get(uuid, {}))

    def pause_records(self) -> dict[str, PauseRecord] | None:
        return None if self.pauses is None else dict(self.pauses)

    def locate_unacked(self, uuids: list[str]) -> UnackedLookup:
        self.unacked_asked.append(list(uuids))
        return UnackedLookup(
            {u: self.unacked.get(u) or UnackedHold(u, False) for u in uuids},
            taken_at=time.time(),
        )

    def queue_jobs(self) -> QueueJobs:
        if self.jobs is None:
            raise RuntimeError(JOBS_NOT_AVAILABLE)
        return self.jobs

    def read_queue_jobs(self, queue: str, offset: int, limit: int) -> JobsPage:
        if self.jobs is None:
            return JobsPage(queue, available=False, supported=False, error=JOBS_NOT_AVAILABLE)
        return self.jobs.read_page(queue, offset, limit)

    def unacked_jobs(self) -> UnackedJobs:
        if self.unacked_reader is None:
            raise RuntimeError(UNACKED_NOT_AVAILABLE)
        return self.unacked_reader

    def read_unacked(self, offset: int, limit: int) -> UnackedPage:
        if self.unacked_reader is None:
            return UnackedPage(available=False, supported=False, error=UNACKED_NOT_AVAILABLE)
        return self.unacked_reader.read_page(offset, limit)

    def worker_detail(self, host: str) -> WorkerDetail:
        return self.details.get(host) or WorkerDetail(host, taken_at=time.time())

    def worker_queues(self, host: str) -> list[str] | None:
        detail = self.details.get(host)
        return list(detail.queues) if detail is not None and detail.answered else None
