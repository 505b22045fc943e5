"""The direct Redis event reader in a forked process of its own: a benchmark variant.

``bench/bench_receiver.py`` and ``bench/bench_e2e.py --receiver process`` measure it (at
20k events/s the reader thread shares the GIL with a busy UI thread; in a process it kept
up).  It is not in the product: forking a console that already runs threads hung the
reader at start in a full test run (a lock another thread held at the fork).  Making it
safe (fork before any thread starts, or a clean spawn that survives Textual's file
descriptors) is the next step; see docs/performance.md.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

from celery import Celery

from afirgen_tasks.reliability import backoff_delay
from tui.sources.events import (
    CONNECTED,
    CONNECTING,
    RECONNECTING,
    STOPPED,
    ReceiverReadout,
    ReceiverStatus,
)
from tui.sources.redis_events import RedisEventReceiverThread, event_channel_pattern
from tui.sources.validate import Tally


def _child_main(
    inbox: Any, conn: Any, url: str, settings: Any, pattern: str, buffer_size: int, batch_s: float
) -> None:
    """The receiver process: a :class:`RedisEventReceiverThread`, its buffer sent to the
    console in pickled batches with its counters and status, every ``batch_s``."""
    import os

    parent = os.getppid()
    receiver = RedisEventReceiverThread(
        None,
        buffer_size,
        url=url,
        settings=settings,
        pattern=pattern,
    )
    receiver.start()
    tally = receiver.tally
    sent_tally = (-1, -1)
    try:
        while True:
            if inbox.poll(batch_s):
                break  # the console asked us to stop (or closed its end)
            if os.getppid() != parent:
                break  # the console is gone
            batch = receiver.drain(buffer_size)
            counts = (tally.invalid, tally.cleaned)
            reasons = None
            if counts != sent_tally:
                reasons, sent_tally = (dict(tally.reasons), tally.last), counts
            conn.send(
                (batch, receiver.received, receiver.dropped, counts, reasons, receiver.status)
            )
    except (OSError, EOFError):
        pass
    finally:
        receiver.stop(1.0)


class SubprocessEventReceiver(ReceiverReadout, threading.Thread):
    """:class:`RedisEventReceiverThread` in a process of its own (its own core and GIL).

    The process reads, decodes and validates; this thread (in the console) only unpickles
    the batches it sends, about every 20 ms, into :attr:`buffer`.  Same interface as the
    in-process receivers.  If the process dies it is started again, with the same
    backoff; ``status.connects`` keeps counting across processes, so the console resyncs.
    """

    def __init__(
        self,
        app: Celery,
        buffer_size: int = 200_000,
        scrub: Any = None,
        tally: Tally | None = None,
        url: str | None = None,
        settings: Any = None,
        batch_s: float = 0.02,
    ):
        super().__init__(name="afirgen-events-pipe", daemon=True)
        from tui.sources.redis_conn import redis_db

        self.url = url or app.conf.broker_read_url or app.conf.broker_url
        self.settings = settings
        self.pattern = event_channel_pattern(app, redis_db(self.url))
        self.buffer: collections.deque[dict[str, Any]] = collections.deque()
        self.buffer_size = buffer_size
        self.batch_s = batch_s
        self.received = 0
        self.dropped = 0
        self._scrub = scrub or (lambda text: text)
        self.tally = tally if tally is not None else Tally()
        self._stop_event = threading.Event()
        self._status = ReceiverStatus(CONNECTING, time.time())
        self._process: Any = None
        self._conn: Any = None

    def child_cpu(self) -> float:
        """CPU seconds used by the receiver process so far (for benchmarks)."""
        try:
            import psutil

            t = psutil.Process(self._process.pid).cpu_times()
            return t.user + t.system
        except Exception:  # noqa: BLE001 - no process, no psutil
            return 0.0

    def stop(self, timeout: float = 2.0) -> None:
        self._stop_event.set()
        conn = self._conn
        if conn is not None:
            try:
                conn.send(None)
            except Exception:  # noqa: BLE001 - already gone
                pass
        if self.is_alive():
            self.join(timeout)
        else:
            self._close_process()

    def _close_process(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass
        process, self._process = self._process, None
        if process is not None:
            process.join(1.0)
            if process.is_alive():
                process.kill()
                process.join(1.0)

    def _start_process(self) -> Any:
        # Forked, so the process starts at once with what the console already imported
        # (a fresh interpreter took 1.3 s to import celery, pydantic and redis on a loaded
        # machine, and events sent meanwhile were missed); it only reads Redis, builds its
        # own connection and never touches the console's threads or terminal.  Not
        # multiprocessing's spawn either: it passes sys.stderr's fd, which Textual replaces.
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        ours, theirs = ctx.Pipe()
        process = ctx.Process(
            target=_child_main,
            args=(theirs, theirs, self.url, self.settings, self.pattern)
            + (self.buffer_size, self.batch_s),
            name="afirgen-events",
            daemon=True,
        )
        process.start()
        theirs.close()
        self._process, self._conn = process, ours
        return ours

    def run(self) -> None:
        attempt = 0
        base_received = base_dropped = base_invalid = base_cleaned = base_connects = 0
        dropped_here = child_dropped = 0  # overflow of this buffer; of the process's
        tally = self.tally
        while not self._stop_event.is_set():
            conn = None
            try:
                conn = self._start_process()
                child_connects = 0
                while not self._stop_event.is_set():
                    batch, received, dropped, counts, reasons, status = conn.recv()
                    buf = self.buffer
                    room = max(self.buffer_size - len(buf), 0)
                    if len(batch) > room:
                        dropped_here += len(batch) - room
                        batch = batch[:room]
                    buf.extend(batch)
                    self.received = base_received + received
                    child_dropped = base_dropped + dropped
                    self.dropped = child_dropped + dropped_here
                    if reasons is not None:
                        tally.invalid = base_invalid + counts[0]
                        tally.cleaned = base_cleaned + counts[1]
                        tally.reasons.update(reasons[0])
                        tally.last = reasons[1]
                    if status.connects != child_connects or status.state != self._status.state:
                        child_connects = status.connects
                        if status.state == CONNECTED:
                            attempt = 0
                        self._status = ReceiverStatus(
                            status.state,
                            status.since,
                            status.next_attempt_at,
                            self._scrub(status.error)[:200],
                            status.attempt,
                            base_connects + status.connects,
                        )
            except (EOFError, OSError) as exc:  # the process died
                if self._stop_event.is_set():
                    break
                delay = backoff_delay(attempt, base=0.5, cap=4.0)
                attempt += 1
                self._status = ReceiverStatus(
                    RECONNECTING,
                    time.time(),
                    next_attempt_at=time.time() + delay,
                    error=f"event receiver process ended: {type(exc).__name__}",
                    attempt=attempt,
                    connects=self._status.connects,
                )
                self._stop_event.wait(delay)
            finally:
                base_received, base_dropped = self.received, child_dropped
                base_invalid, base_cleaned = tally.invalid, tally.cleaned
                base_connects = self._status.connects
                self._close_process()
        self._status = ReceiverStatus(STOPPED, time.time(), connects=self._status.connects)
