"""A Celery event receiver for Redis brokers that reads the event channel itself (issue 17).

kombu's Redis transport publishes every event message with ``PUBLISH
/{db}.celeryev/<routing key> <json envelope>`` (``Channel._put_fanout``; the prefix is
``fanout_prefix``, the routing key part ``fanout_patterns``).  kombu's consumer path for
one message (``parse_response`` -> ``loads`` -> ``Message`` -> ``decode`` -> Celery's
``_receive``) costs ~100 µs here and tops out near 8k events/s; this receiver holds one
``PSUBSCRIBE`` on the same channels through redis-py (hiredis parser) and does, per
message, two ``json.loads`` and a base64 decode, then the SAME trust boundary as
:class:`tui.sources.events.EventReceiverThread`: every event through
:class:`tui.sources.validate.EventValidator`, a bad one counted and skipped, nothing
raised out of the loop.  Measured in ``bench/bench_receiver.py`` (docs/performance.md,
"20k events/s").

What a message must be (else it is counted in ``invalid`` as kombu's receiver would
count it in ``on_decode_error``): a JSON object envelope with ``content-type``
``application/json`` (the only serializer Celery's event receiver accepts here),
``content-encoding`` utf-8, and a ``body`` that is base64 of JSON
(``properties.body_encoding == "base64"``, kombu's default) or the JSON text itself.

The interface is :class:`~tui.sources.events.EventReceiverThread`'s (``buffer``,
``drain``, ``received``, ``dropped``, ``invalid``, ``cleaned``, ``tally``, ``status``
with ``connects``, ``stop``), and so is the outage behaviour: RECONNECTING with the next
attempt's time, exponential backoff with jitter capped at 4 s.  Pub/sub has no backlog:
what is published while the console is disconnected is lost, as with kombu's fanout;
the console resyncs through ``inspect`` when ``connects`` grows.
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import re
import threading
import time
from typing import Any

from celery import Celery

from afirgen_tasks.reliability import backoff_delay
from tui.sources.events import CONNECTED, CONNECTING, RECONNECTING, STOPPED, ReceiverStatus
from tui.sources.validate import EventValidator, Tally

#: Characters Redis' glob patterns give a meaning to.
_GLOB = re.compile(r"([*?\[\]\\])")
#: Longest message read (a buffered group of 24 events with tracebacks is ~20 KB; Celery's
#: own buffer_limit is 24 events).  Larger ones are counted and skipped without decoding.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


def event_channel_pattern(app: Celery, db: int) -> str:
    """The PSUBSCRIBE pattern of the event exchange's fanout channels, as kombu builds them."""
    options = app.conf.broker_transport_options or {}
    prefix = options.get("fanout_prefix", True)
    if isinstance(prefix, str):
        keyprefix = prefix
    elif prefix:
        keyprefix = f"/{db}."
    else:
        keyprefix = ""
    base = _GLOB.sub(r"\\\1", keyprefix + app.conf.event_exchange)
    if options.get("fanout_patterns", True):
        return base + "/*"
    return base


class MessageDecoder:
    """kombu's envelope and body decoding for event messages, in two ``json.loads``.

    ``decode(data)`` returns the body (a dict or a list of dicts, unchecked: the validator
    checks it) or ``None``, counted in the tally.  Never raises.
    """

    def __init__(self, tally: Tally):
        self.tally = tally

    def decode(self, data: Any) -> Any:
        tally = self.tally
        try:
            if len(data) > MAX_MESSAGE_BYTES:
                tally.skip("undecodable message: too large")
                return None
            envelope = json.loads(data)
            if envelope.__class__ is not dict:
                tally.skip("malformed message envelope: not a JSON object")
                return None
            if envelope.get("content-type") != "application/json":
                tally.skip("undecodable message: ContentDisallowed")
                return None
            if envelope.get("content-encoding", "utf-8") not in ("utf-8", "utf8"):
                tally.skip("undecodable message: content encoding")
                return None
            props = envelope.get("properties")
            if props.__class__ is not dict:
                tally.skip("malformed message envelope: properties")
                return None
            body = envelope.get("body")
            if body.__class__ is not str:
                tally.skip("malformed message envelope: body")
                return None
            encoding = props.get("body_encoding")
            if encoding == "base64":
                return json.loads(base64.b64decode(body, validate=True))
            if encoding is None:
                return json.loads(body)
            tally.skip("undecodable message: body encoding")
            return None
        except (ValueError, TypeError, binascii.Error, RecursionError) as exc:
            tally.skip(f"undecodable message: {type(exc).__name__}")
            return None


class RedisEventReceiverThread(threading.Thread):
    """Captures every Celery event from a Redis broker into a bounded deque.

    Same interface and counters as :class:`tui.sources.events.EventReceiverThread`.
    """

    def __init__(
        self,
        app: Celery,
        buffer_size: int = 200_000,
        scrub: Any = None,
        tally: Tally | None = None,
        url: str | None = None,
        settings: Any = None,
        pattern: str | None = None,
    ):
        super().__init__(name="afirgen-events-redis", daemon=True)
        self.app = app
        self.url = url or app.conf.broker_read_url or app.conf.broker_url
        self.pattern = pattern
        self.settings = settings
        self.buffer: collections.deque[dict[str, Any]] = collections.deque()
        self.buffer_size = buffer_size
        self.received = 0
        self.dropped = 0
        self._scrub = scrub or (lambda text: text)
        self.validator = EventValidator(tally)
        self.tally = self.validator.tally
        self.decoder = MessageDecoder(self.tally)
        self._stop_event = threading.Event()
        self._status = ReceiverStatus(CONNECTING, time.time())
        self._clock = 0
        self._pubsub: Any = None

    # ---- read from the UI thread ----------------------------------------------------
    @property
    def status(self) -> ReceiverStatus:
        return self._status

    @property
    def invalid(self) -> int:
        return self.tally.invalid

    @property
    def cleaned(self) -> int:
        return self.tally.cleaned

    def drain(self, budget: int) -> list[dict[str, Any]]:
        """Pop up to ``budget`` buffered events, oldest first (called by the UI thread only)."""
        buf = self.buffer
        n = min(budget, len(buf))
        popleft = buf.popleft
        return [popleft() for _ in range(n)]

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the thread to stop and wait for it (the read loop wakes every 0.5 s)."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)

    # ---- runs in the receiver thread ---------------------------------------------------
    def _connect(self) -> Any:
        from tui.sources.redis_conn import redis_client, redis_db

        client = redis_client(
            self.url, self.settings, socket_connect_timeout=5.0, socket_timeout=10.0
        )
        pubsub = client.pubsub()
        pubsub.psubscribe(self.pattern or event_channel_pattern(self.app, redis_db(self.url)))
        # the psubscribe confirmation: the subscription is live once it is read
        deadline = time.monotonic() + 10.0
        while True:
            reply = pubsub.parse_response(block=False, timeout=0.5)
            if reply is not None and reply[0] == b"psubscribe":
                return pubsub
            if time.monotonic() > deadline:
                raise TimeoutError("no PSUBSCRIBE confirmation from the broker")

    def _process(self, data: Any) -> None:
        body = self.decoder.decode(data)
        if body is None:
            return
        for event in self.validator.validate_message(body):
            # what Celery's event_from_message does with the Lamport clock
            if event["type"] == "task-sent":
                # clients never sync, so their clock value cannot be used
                clock = event["clock"] = (self._clock or 1) - 1
                self._clock = max(self._clock, clock) + 1
            elif "clock" in event:
                self._clock = max(self._clock, event["clock"]) + 1
            else:
                self._clock += 1
                event["clock"] = self._clock
            self.received += 1
            if len(self.buffer) >= self.buffer_size:
                self.dropped += 1
                continue
            self.buffer.append(event)

    def _consume(self, pubsub: Any) -> None:
        parse = pubsub.parse_response
        process = self._process
        stop = self._stop_event
        timeout = 0.5
        while not stop.is_set():
            # blocks up to 0.5 s when idle (to see stop()), never when messages are waiting
            reply = parse(block=False, timeout=timeout)
            if reply is None:
                timeout = 0.5
                continue
            timeout = 0
            # a list, or hiredis' PushNotification (a list subclass)
            if isinstance(reply, list) and len(reply) == 4 and reply[0] == b"pmessage":
                try:
                    process(reply[3])
                except Exception as exc:  # noqa: BLE001 - one message, not the loop
                    self.tally.skip(f"event handler error: {type(exc).__name__}")

    def run(self) -> None:
        attempt = 0
        while not self._stop_event.is_set():
            pubsub = None
            try:
                pubsub = self._connect()
                self._pubsub = pubsub
                attempt = 0
                self._status = ReceiverStatus(
                    CONNECTED, time.time(), connects=self._status.connects + 1
                )
                self._consume(pubsub)
            except Exception as exc:  # any broker failure: report, back off, reconnect
                if self._stop_event.is_set():
                    break
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
                self._pubsub = None
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001 - closing a dead connection
                        pass
        self._status = ReceiverStatus(STOPPED, time.time(), connects=self._status.connects)


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


class SubprocessEventReceiver(threading.Thread):
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

    @property
    def status(self) -> ReceiverStatus:
        return self._status

    @property
    def invalid(self) -> int:
        return self.tally.invalid

    @property
    def cleaned(self) -> int:
        return self.tally.cleaned

    def drain(self, budget: int) -> list[dict[str, Any]]:
        """Pop up to ``budget`` buffered events, oldest first (called by the UI thread only)."""
        buf = self.buffer
        n = min(budget, len(buf))
        popleft = buf.popleft
        return [popleft() for _ in range(n)]

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


def make_event_receiver(
    app: Celery,
    settings: Any,
    buffer_size: int,
    scrub: Any = None,
    tally: Tally | None = None,
) -> Any:
    """The receiver ``[console] event_reader`` names for ``settings.celery_broker_url``.

    ``kombu`` (the default) or any non-Redis broker: kombu's
    (:class:`~tui.sources.events.EventReceiverThread`).  ``redis``: this module's reader
    thread.  ``redis-process``: that reader in a forked process of its own.  The process is
    not the default: forking a console that already runs threads hung one reader at start
    in the test suite (a lock held by another thread at the fork), and it needs more proof.

    Why a process: at 20k events/s the reader needs ~0.5 of a core, and as a thread it
    shares the GIL with a busy UI thread.  In ``bench/bench_e2e.py --flood 1 --rates
    20000`` the thread fell behind, Redis closed the subscription (its pub/sub output
    buffer limit) twice and 116k of 400k events were lost; the process lost none.
    """
    from tui.sources.redis_conn import is_redis_url

    url = settings.celery_broker_url
    reader = getattr(settings, "console_event_reader", "kombu")
    if is_redis_url(url) and reader == "redis-process":
        return SubprocessEventReceiver(
            app, buffer_size, scrub=scrub, tally=tally, url=url, settings=settings
        )
    if is_redis_url(url) and reader == "redis":
        return RedisEventReceiverThread(
            app, buffer_size, scrub=scrub, tally=tally, url=url, settings=settings
        )
    from tui.sources.events import EventReceiverThread

    return EventReceiverThread(app, buffer_size, scrub=scrub, tally=tally)
