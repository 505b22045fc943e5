"""What every events receiver shows the UI: its connection status, counters and buffer.

Shared by kombu's receiver (:class:`tui.sources.events.EventReceiverThread`), the direct
Redis reader thread (:class:`tui.sources.redis_events.RedisEventReceiverThread`) and the
reader process (:class:`tui.sources.event_process.ProcessEventReceiver`), so that the
console treats them alike: CONNECTING until the first subscription is live, CONNECTED
(``connects`` counts every connection, so a reconnect triggers the console's resync),
RECONNECTING with the next attempt's time while the broker is away, STOPPED.

Stdlib only: the reader process imports it, and it must start fast.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Any

from afirgen_tasks.backoff import backoff_delay
from tui.sources.validate import Tally

CONNECTING = "connecting"
CONNECTED = "connected"
RECONNECTING = "reconnecting"
STOPPED = "stopped"

#: Reconnect backoff of every receiver: capped low, the console must be live again
#: within seconds of the broker answering.
RECONNECT_BASE_S = 0.5
RECONNECT_CAP_S = 4.0


@dataclass(frozen=True, slots=True)
class ReceiverStatus:
    """A snapshot of the receiver's connection state, safe to read from any thread."""

    state: str
    since: float
    next_attempt_at: float | None = None
    error: str = ""
    attempt: int = 0
    connects: int = 0


class ReceiverReadout:
    """What the UI thread reads from an events receiver thread: its status, counters and buffer.

    The receiver thread alone writes ``buffer``, ``tally`` and the status (through the
    ``_set_status`` family below); the UI thread reads them and pops the buffer.
    """

    buffer: collections.deque[dict[str, Any]]
    tally: Tally

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._status = ReceiverStatus(CONNECTING, time.time())
        # set once the first connection attempt is over (subscribed, or failed)
        self._settled = threading.Event()

    @property
    def status(self) -> ReceiverStatus:
        """The current connection state (an immutable snapshot)."""
        return self._status

    @property
    def invalid(self) -> int:
        """Events or messages skipped by the trust boundary."""
        return self.tally.invalid

    @property
    def cleaned(self) -> int:
        """Event fields the trust boundary cleaned or dropped."""
        return self.tally.cleaned

    @property
    def buffered(self) -> int:
        """Events waiting to be drained."""
        return len(self.buffer)

    def drain(self, budget: int) -> list[dict[str, Any]]:
        """Pop up to ``budget`` buffered events, oldest first (called by the UI thread only)."""
        buf = self.buffer
        n = min(budget, len(buf))
        popleft = buf.popleft
        return [popleft() for _ in range(n)]

    def wait_connected(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until the first connection attempt is over; True
        when the receiver is connected, so events published from now on reach it.

        For callers that must not act before the subscription is live (the console's
        first inspect, ``enable_events``).  Returns at once once settled, and at once for
        a receiver never started (nothing would settle it).
        """
        if not self._settled.is_set() and getattr(self, "ident", 0) is not None:
            self._settled.wait(timeout)
        return self._status.state == CONNECTED

    # ---- runs in the receiver thread ---------------------------------------------------
    def _set_status(self, status: ReceiverStatus) -> None:
        self._status = status
        if status.state != CONNECTING:
            self._settled.set()

    def _set_connected(self) -> None:
        self._set_status(ReceiverStatus(CONNECTED, time.time(), connects=self._status.connects + 1))

    def _set_reconnecting(self, error: str, attempt: int) -> float:
        """Report RECONNECTING (``error`` already scrubbed) after failed ``attempt`` (from
        0) and return how long to wait before the next one."""
        delay = backoff_delay(attempt, base=RECONNECT_BASE_S, cap=RECONNECT_CAP_S)
        now = time.time()
        previous = self._status
        self._set_status(
            ReceiverStatus(
                RECONNECTING,
                previous.since if previous.state == RECONNECTING else now,
                next_attempt_at=now + delay,
                error=error[:200],
                attempt=attempt + 1,
                connects=previous.connects,
            )
        )
        return delay

    def _set_stopped(self) -> None:
        self._set_status(ReceiverStatus(STOPPED, time.time(), connects=self._status.connects))
