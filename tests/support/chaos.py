"""Helpers for the fault tests: a task-event recorder, a slow SMTP sink, result-backend reads.

:class:`TaskEventRecorder` counts, per task id, how often a worker *received* it and how
often a pool process *started* it.  A message redelivered by the broker (a requeue after
a pool process died, or a restore from the ``unacked`` hash after a whole worker died)
is received again, so ``received - 1`` is the number of redeliveries and ``started - 1``
the number of repeated runs.  The counts come from Celery's own event stream (on by
default in AFIRGen), i.e. from the workers, not from the test's guesses.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from celery import Celery

from tests.support.waiting import wait_until

#: The event type the recorder sends itself to know its subscription is live.
PROBE_EVENT = "afirgen-test-probe"


class TaskEventRecorder:
    """Records task and worker events from a Celery app's event stream, in a thread.

    Use as a context manager: ``__enter__`` returns once the subscription is live (a probe
    event it sent came back), so no event published afterwards is missed.
    """

    def __init__(self, app: Celery):
        self.app = app
        self.received: Counter[str] = Counter()
        self.started: Counter[str] = Counter()
        self.succeeded: set[str] = set()
        self.failed: dict[str, str] = {}
        #: task id -> (hostname, pid) of the run in progress (the last ``task-started``).
        self.running: dict[str, tuple[str, int]] = {}
        #: hostname -> time.monotonic() of its last ``worker-online`` event.
        self.online: dict[str, float] = {}
        self.received_at: dict[str, list[tuple[float, str]]] = {}
        self._lock = threading.Lock()
        self._probed = threading.Event()
        self._receiver: Any = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # runs in the recorder thread
    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type", "")
        uuid = event.get("uuid", "")
        now = time.monotonic()
        with self._lock:
            if kind == "task-received":
                self.received[uuid] += 1
                self.received_at.setdefault(uuid, []).append((now, event.get("hostname", "")))
            elif kind == "task-started":
                self.started[uuid] += 1
                self.running[uuid] = (event.get("hostname", ""), int(event.get("pid") or 0))
            elif kind == "task-succeeded":
                self.succeeded.add(uuid)
                self.running.pop(uuid, None)
            elif kind in ("task-failed", "task-revoked", "task-rejected"):
                self.failed[uuid] = kind
                self.running.pop(uuid, None)
            elif kind == "worker-online":
                self.online[event.get("hostname", "")] = now
            elif kind == PROBE_EVENT:
                self._probed.set()

    # runs in the recorder thread
    def _run(self) -> None:
        try:
            with self.app.connection_for_read() as conn:
                self._receiver = self.app.events.Receiver(conn, handlers={"*": self._on_event})
                self._receiver.capture(limit=None, timeout=None, wakeup=False)
        except BaseException as exc:  # shown by the test through check()
            self._error = exc

    def __enter__(self) -> TaskEventRecorder:
        self._thread = threading.Thread(target=self._run, name="afirgen-test-events", daemon=True)
        self._thread.start()

        def probe() -> bool:
            if self._error is not None:
                raise AssertionError(f"event recorder failed: {self._error!r}")
            with self.app.events.default_dispatcher() as dispatcher:
                dispatcher.send(PROBE_EVENT)
            return self._probed.wait(0.2)

        wait_until(
            probe, timeout=15, interval=0.05, message="the event recorder never saw its own probe"
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        if self._thread is not None:
            self._thread.join(5)

    # ---- reading (any thread) ---------------------------------------------------------
    def running_on(self, hostname: str) -> dict[str, int]:
        """Task id -> pool pid of the runs in progress on ``hostname`` (as far as events tell)."""
        with self._lock:
            return {uuid: pid for uuid, (host, pid) in self.running.items() if host == hostname}

    def redeliveries(self, ids: Iterable[str] | None = None) -> int:
        """Deliveries beyond the first, summed over ``ids`` (default: every task seen)."""
        with self._lock:
            keys = list(self.received) if ids is None else list(ids)
            return sum(max(0, self.received[k] - 1) for k in keys)

    def repeated_runs(self, ids: Iterable[str] | None = None) -> int:
        """Runs beyond the first (a run was started, then its process died), summed over ``ids``."""
        with self._lock:
            keys = list(self.started) if ids is None else list(ids)
            return sum(max(0, self.started[k] - 1) for k in keys)


def backend_states(client: Any, ids: list[str], chunk: int = 500) -> dict[str, str]:
    """Task id -> state in the Redis result backend (``PENDING`` when there is no record).

    One MGET per ``chunk`` ids: reading 500 results through AsyncResult one by one would
    take 500 round trips per poll.
    """
    states: dict[str, str] = {}
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        for task_id, raw in zip(
            part, client.mget([f"celery-task-meta-{i}" for i in part]), strict=True
        ):
            states[task_id] = json.loads(raw)["status"] if raw else "PENDING"
    return states


def broker_locations(client: Any, ids: Iterable[str]) -> dict[str, list[str]]:
    """Task id -> the Redis keys holding a message for it (queue lists, the ``unacked`` hash).

    An empty list means the broker has no message for that task: it was consumed (run,
    or popped by a worker that died before it could record it) or never published.
    """
    wanted = {i.encode(): i for i in ids}
    found: dict[str, list[str]] = {i: [] for i in wanted.values()}
    if not wanted:
        return found

    def scan(blob: bytes, where: str) -> None:
        for raw, task_id in wanted.items():
            if raw in blob:
                found[task_id].append(where)

    for key in client.scan_iter(count=1000):
        if client.type(key) == b"list":
            for item in client.lrange(key, 0, -1):
                scan(item, key.decode())
    for item in client.hvals("unacked"):
        scan(item, "unacked")
    return found
