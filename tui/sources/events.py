"""The Celery event receiver thread: broker -> bounded buffer, nothing else.

It never calls into the UI.  The UI thread drains :attr:`EventReceiverThread.buffer`
on a timer (see :meth:`EventReceiverThread.drain`).  When the buffer is full, new
events are dropped and counted (``dropped``): the screen shows the count and the
console resynchronises from ``inspect`` instead of falling behind without bound.

When the broker goes away the thread reconnects by itself with exponential backoff
and jitter; :attr:`status` tells the UI what is happening (with the time of the next
attempt, for a countdown).
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery.events.receiver import EventReceiver

from afirgen_tasks.reliability import backoff_delay

CONNECTING = "connecting"
CONNECTED = "connected"
RECONNECTING = "reconnecting"
STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class ReceiverStatus:
    """A snapshot of the receiver's connection state, safe to read from any thread."""

    state: str
    since: float
    next_attempt_at: float | None = None
    error: str = ""
    attempt: int = 0
    connects: int = 0


class _Receiver(EventReceiver):
    """Celery's receiver, telling its owner the moment the consumer is ready."""

    def __init__(self, *args: Any, on_ready: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._on_ready = on_ready

    def on_consume_ready(self, connection, channel, consumers, wakeup=True, **kwargs):  # type: ignore[override]
        super().on_consume_ready(connection, channel, consumers, wakeup=wakeup, **kwargs)
        if self._on_ready is not None:
            self._on_ready()


class EventReceiverThread(threading.Thread):
    """Captures every Celery event into a bounded deque; reconnects with backoff on its own.

    ``received`` counts events taken off the wire, ``dropped`` those discarded because the
    buffer was full.  Both only grow and are written by this thread alone.
    """

    def __init__(self, app: Celery, buffer_size: int = 200_000, scrub: Any = None):
        super().__init__(name="afirgen-events", daemon=True)
        self.app = app
        self.buffer: collections.deque[dict[str, Any]] = collections.deque()
        self.buffer_size = buffer_size
        self.received = 0
        self.dropped = 0
        self._scrub = scrub or (lambda text: text)
        self._stop_event = threading.Event()
        self._receiver: _Receiver | None = None
        self._status = ReceiverStatus(CONNECTING, time.time())

    # ---- read from the UI thread ----------------------------------------------------
    @property
    def status(self) -> ReceiverStatus:
        """The current connection state (an immutable snapshot)."""
        return self._status

    def drain(self, budget: int) -> list[dict[str, Any]]:
        """Pop up to ``budget`` buffered events, oldest first (called by the UI thread only)."""
        buf = self.buffer
        n = min(budget, len(buf))
        popleft = buf.popleft
        return [popleft() for _ in range(n)]

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the thread to stop and wait for it (the consume loop checks every second)."""
        self._stop_event.set()
        receiver = self._receiver
        if receiver is not None:
            receiver.should_stop = True
        if self.is_alive():
            self.join(timeout)

    # ---- runs in the receiver thread ---------------------------------------------------
    def _on_event(self, event: dict[str, Any]) -> None:
        self.received += 1
        # Single producer: len() can only shrink under us (the UI pops), so check-then-append is safe.
        if len(self.buffer) >= self.buffer_size:
            self.dropped += 1
            return
        self.buffer.append(event)

    def _on_ready(self) -> None:
        self._status = ReceiverStatus(CONNECTED, time.time(), connects=self._status.connects + 1)

    def run(self) -> None:
        attempt = 0
        while not self._stop_event.is_set():
            try:
                with self.app.connection_for_read(heartbeat=0) as conn:
                    conn.connect()
                    recv = _Receiver(
                        conn.channel(),
                        handlers={"*": self._on_event},
                        app=self.app,
                        on_ready=self._on_ready,
                    )
                    self._receiver = recv
                    if self._stop_event.is_set():
                        break
                    attempt = 0
                    recv.capture(limit=None, timeout=None, wakeup=True)
            except Exception as exc:  # any broker failure: report, back off, reconnect
                if self._stop_event.is_set():
                    break
                # Capped low: the console must be live again within seconds of the broker answering.
                delay = backoff_delay(attempt, base=0.5, cap=4.0)
                attempt += 1
                self._status = ReceiverStatus(
                    RECONNECTING,
                    self._status.since if self._status.state == RECONNECTING else time.time(),
                    next_attempt_at=time.time() + delay,
                    error=self._scrub(f"{type(exc).__name__}: {exc}")[:200],
                    attempt=attempt,
                    connects=self._status.connects,
                )
                self._stop_event.wait(delay)
            finally:
                self._receiver = None
        self._status = ReceiverStatus(STOPPED, time.time(), connects=self._status.connects)
