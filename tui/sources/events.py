"""The Celery event receiver thread: broker -> bounded buffer, nothing else.

It never calls into the UI.  The UI thread drains :attr:`EventReceiverThread.buffer`
on a timer (see :meth:`EventReceiverThread.drain`).  When the buffer is full, new
events are dropped and counted (``dropped``): the screen shows the count and the
console resynchronises from ``inspect`` instead of falling behind without bound.

When the broker goes away the thread reconnects by itself with exponential backoff
and jitter; :attr:`status` tells the UI what is happening (with the time of the next
attempt, for a countdown).

Every event passes :class:`tui.sources.validate.EventValidator` here, in the receiver
thread, before it is buffered: a bad message is counted and skipped and never leaves
the capture loop (which would cost a reconnect and whatever arrived meanwhile).
"""

from __future__ import annotations

import collections
import threading
from typing import Any

from celery import Celery
from celery.events.receiver import EventReceiver

from tui.sources.readout import (  # re-exported: the console and tests import them from here
    CONNECTED,
    CONNECTING,
    RECONNECTING,
    STOPPED,
    ReceiverReadout,
    ReceiverStatus,
)
from tui.sources.validate import EventValidator, Tally

__all__ = [
    "CONNECTED",
    "CONNECTING",
    "RECONNECTING",
    "STOPPED",
    "EventReceiverThread",
    "ReceiverReadout",
    "ReceiverStatus",
]


class _Receiver(EventReceiver):
    """Celery's receiver with the trust boundary in front of it.

    Celery's own path (``_receive`` -> ``event_from_message`` -> ``process``) trusts the
    message: a body that is not a dict, a dict without ``type``, a ``clock`` or
    ``timestamp`` that is not a number all raise inside ``event_from_message`` (the clock
    adjustment and ``adjust_timestamp``), and the exception leaves ``capture()``.  Here
    :meth:`_receive` validates first and then does what ``event_from_message`` does with
    checked values, one event at a time, so one bad event costs only itself.  A body
    kombu cannot decode (bad JSON, a content type not accepted) goes to
    ``on_decode_error`` instead of raising, and on virtual transports (Redis) a
    malformed envelope is caught around the channel's delivery callback.
    """

    def __init__(
        self,
        *args: Any,
        on_ready: Any = None,
        validator: EventValidator | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self._on_ready = on_ready
        self._validator = validator or EventValidator()

    def get_consumers(self, Consumer, channel):  # noqa: N803 - kombu's name
        return [
            Consumer(
                queues=[self.queue],
                callbacks=[self._receive],
                no_ack=True,
                accept=self.accept,
                on_decode_error=self._on_decode_error,
            )
        ]

    def on_consume_ready(self, connection, channel, consumers, wakeup=True, **kwargs):
        self._guard_delivery(channel)
        super().on_consume_ready(connection, channel, consumers, wakeup=wakeup, **kwargs)
        if self._on_ready is not None:
            self._on_ready()

    # ---- runs in the receiver thread ---------------------------------------------------
    def _on_decode_error(self, message: Any, exc: Exception) -> None:
        self._validator.tally.skip(f"undecodable message: {type(exc).__name__}")

    def _guard_delivery(self, channel: Any) -> None:
        # kombu's virtual transports build the Message (envelope: properties, body
        # encoding) in the callback they register per queue, before any hook of ours: a
        # published envelope without 'properties' raises out of drain_events.  Private
        # kombu name (Transport._callbacks), asserted by tests/unit/test_validate.py.
        callbacks = getattr(getattr(channel, "connection", None), "_callbacks", None)
        if not isinstance(callbacks, dict):
            return  # py-amqp and others parse the envelope themselves
        callback = callbacks.get(self.queue.name)
        if callback is None or getattr(callback, "_afirgen_guarded", False):
            return
        tally = self._validator.tally

        def guarded(raw: Any) -> Any:
            try:
                return callback(raw)
            except Exception as exc:  # noqa: BLE001 - one malformed envelope, not the loop
                tally.skip(f"malformed message envelope: {type(exc).__name__}")
                return None

        guarded._afirgen_guarded = True  # type: ignore[attr-defined]
        callbacks[self.queue.name] = guarded

    def _receive(self, body: Any, message: Any) -> None:
        for event in self._validator.validate_message(body):
            try:
                # what event_from_message does, on checked values
                if event["type"] == "task-sent":
                    # clients never sync, so their clock value cannot be used
                    clock = event["clock"] = (self.clock.value or 1) - 1
                    self.adjust_clock(clock)
                elif "clock" in event:
                    self.adjust_clock(event["clock"])
                else:
                    event["clock"] = self.forward_clock()
                self.process(event["type"], event)
            except Exception as exc:  # noqa: BLE001 - a handler bug must not cost the connection
                self._validator.tally.skip(f"event handler error: {type(exc).__name__}")


class EventReceiverThread(ReceiverReadout, threading.Thread):
    """Captures every Celery event into a bounded deque; reconnects with backoff on its own.

    ``received`` counts events that passed validation, ``dropped`` those discarded because
    the buffer was full; ``invalid`` counts events (or messages) skipped by the trust
    boundary and ``cleaned`` the fields it cleaned or dropped (details in :attr:`tally`).
    All only grow and are written by this thread alone.
    """

    def __init__(
        self, app: Celery, buffer_size: int = 200_000, scrub: Any = None, tally: Tally | None = None
    ):
        super().__init__(name="afirgen-events", daemon=True)
        self.app = app
        self.buffer: collections.deque[dict[str, Any]] = collections.deque()
        self.buffer_size = buffer_size
        self.received = 0
        self.dropped = 0
        self._scrub = scrub or (lambda text: text)
        self.validator = EventValidator(tally)
        #: what the trust boundary skipped and cleaned (written by this thread only)
        self.tally = self.validator.tally
        self._stop_event = threading.Event()
        self._receiver: _Receiver | None = None

    # ---- called from the UI thread ----------------------------------------------------
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
        self._set_connected()

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
                        validator=self.validator,
                    )
                    self._receiver = recv
                    if self._stop_event.is_set():
                        break
                    attempt = 0
                    recv.capture(limit=None, timeout=None, wakeup=True)
            except Exception as exc:  # any broker failure: report, back off, reconnect
                if self._stop_event.is_set():
                    break
                delay = self._set_reconnecting(self._scrub(f"{type(exc).__name__}: {exc}"), attempt)
                attempt += 1
                self._stop_event.wait(delay)
            finally:
                self._receiver = None
        self._set_stopped()
