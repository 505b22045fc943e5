"""A Celery event receiver for Redis brokers that reads the event channel itself (issue 17).

kombu's Redis transport publishes every event message with ``PUBLISH
/{db}.celeryev/<routing key> <json envelope>`` (``Channel._put_fanout``; the prefix is
``fanout_prefix``, the routing key part ``fanout_patterns``).  kombu's consumer path for
one message (``parse_response`` -> ``loads`` -> ``Message`` -> ``decode`` -> Celery's
``_receive``) costs ~100 µs here and tops out near 8k events/s; this receiver holds one
``PSUBSCRIBE`` on the same channels through redis-py (hiredis parser) and does, per
message, two JSON decodes (:func:`json_loads`) and a base64 decode, then the SAME trust boundary as
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

import binascii
import collections
import json
import os
import re
import threading
import time
from typing import TYPE_CHECKING, Any

import msgspec

from tui.sources.readout import ReceiverReadout
from tui.sources.validate import EventValidator, Tally

if TYPE_CHECKING:
    from celery import Celery

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


def event_source(app: Celery | None, url: str | None, pattern: str | None) -> tuple[str, str]:
    """``(broker URL, PSUBSCRIBE pattern)`` of a direct reader: those given, else ``app``'s."""
    from tui.sources.redis_conn import redis_db

    if url is None:
        assert app is not None, "a URL or an app"
        url = str(app.conf.broker_read_url or app.conf.broker_url)
    if pattern is None:
        assert app is not None, "a pattern or an app"
        pattern = event_channel_pattern(app, redis_db(url))
    return url, pattern


_fast_json = msgspec.json.Decoder()


def json_loads(data: bytes | str) -> Any:
    """``json.loads``, read by msgspec's decoder where it can (~4x faster: the reader
    process spent 42 % of its time in the stdlib's at 20k events/s, issue 17).

    What msgspec refuses (``NaN``, ``Infinity``, a number past a double, a lone surrogate
    escape, bad UTF-8) is read again by the stdlib, so every message reads as
    ``json.loads`` reads it and fails where it fails.
    """
    try:
        return _fast_json.decode(data)
    except (msgspec.MsgspecError, UnicodeEncodeError):  # the latter: a str with a lone surrogate
        return json.loads(data)


class MessageDecoder:
    """kombu's envelope and body decoding for event messages, in two JSON decodes.

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
            envelope = json_loads(data)
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
                # strict: only the base64 alphabet, padding only at the end (what
                # b64decode(validate=True) checks, in C without its regex)
                return json_loads(binascii.a2b_base64(body, strict_mode=True))
            if encoding is None:
                return json_loads(body)
            tally.skip("undecodable message: body encoding")
            return None
        except (ValueError, TypeError, binascii.Error, RecursionError) as exc:
            tally.skip(f"undecodable message: {type(exc).__name__}")
            return None


class EventDecoder:
    """One message off the wire -> the events it carries, validated, with Celery's clock.

    kombu's decoding (:class:`MessageDecoder`), then every event through the trust
    boundary (:class:`~tui.sources.validate.EventValidator`), then what Celery's
    ``event_from_message`` does with the Lamport clock.  Counts in ``tally`` what it skips
    and cleans; never raises on bad data.
    """

    def __init__(self, tally: Tally | None = None):
        self.validator = EventValidator(tally)
        self.tally = self.validator.tally
        self.decoder = MessageDecoder(self.tally)
        self._clock = 0

    def events(self, data: Any) -> list[dict[str, Any]]:
        body = self.decoder.decode(data)
        if body is None:
            return []
        events = self.validator.validate_message(body)
        for event in events:
            if event["type"] == "task-sent":
                # clients never sync, so their clock value cannot be used
                clock = event["clock"] = (self._clock or 1) - 1
                self._clock = max(self._clock, clock) + 1
            elif "clock" in event:
                self._clock = max(self._clock, event["clock"]) + 1
            else:
                self._clock += 1
                event["clock"] = self._clock
        return events


class Subscription:
    """A ``PSUBSCRIBE`` read straight off its socket.

    redis-py opens the connection (TLS, AUTH, the master a sentinel names) and sends
    ``PSUBSCRIBE``; from then on the socket is read here in 256 KB chunks and parsed by a
    ``hiredis.Reader`` directly: ~1.3 µs a message where redis-py's ``parse_response``
    costs ~6 µs (its layers around the same parser), which is what lets a reader drain
    the socket faster than Redis fills it.  Leans on redis-py's private ``Connection._sock``
    (asserted by tests/unit/test_redis_events.py; redis is pinned to the minor version).

    Built once Redis confirmed the subscription: events published from then on reach it.
    Raises on any failure (the receiver reconnects).
    """

    READ_BYTES = 256 * 1024
    _sock: Any  # a socket.socket, or an ssl.SSLSocket
    _reader: Any  # hiredis.Reader
    _buf: bytearray
    #: How long :meth:`read` waits when nothing arrives (receivers check their stop flag).
    IDLE_S = 0.5

    def __init__(self, url: str, settings: Any, pattern: str):
        import hiredis

        from tui.sources.redis_conn import redis_client

        self.client = redis_client(url, settings, socket_connect_timeout=5.0, socket_timeout=10.0)
        try:
            connection = self.client.connection_pool.get_connection()
            connection.send_command("PSUBSCRIBE", pattern)
            sock = connection._sock  # private redis-py name (contract test)
            if sock is None:
                raise ConnectionError("no socket after connecting")
            sock.settimeout(self.IDLE_S)
            self._sock = sock
            self._reader = hiredis.Reader()
            self._buf = bytearray(self.READ_BYTES)
            self._confirm(pattern)
        except BaseException:
            self.close()
            raise

    def _confirm(self, pattern: str) -> None:
        # the first reply is the confirmation; nothing can be published to us before it
        deadline = time.monotonic() + 10.0
        while True:
            reply = self._reader.gets()
            if reply is False:
                if time.monotonic() > deadline:
                    raise TimeoutError("no PSUBSCRIBE confirmation from the broker")
                self._fill()
                continue
            if isinstance(reply, Exception):
                raise ConnectionError(f"PSUBSCRIBE refused: {reply}")
            if isinstance(reply, list) and reply[:1] == [b"psubscribe"]:
                return
            raise ConnectionError("unexpected reply to PSUBSCRIBE")

    def _fill(self) -> bool:
        """Read what the socket holds (waiting up to IDLE_S); False when nothing came."""
        try:
            n = self._sock.recv_into(self._buf)
        except TimeoutError:  # socket.timeout
            return False
        if not n:
            raise ConnectionError("the broker closed the connection")
        self._reader.feed(self._buf, 0, n)
        return True

    def read(self) -> list[bytes]:
        """The payloads of the messages that arrived (waits up to :data:`IDLE_S` for the
        first, never when some are already waiting).  Raises when the connection is gone."""
        reader = self._reader
        reply = reader.gets()
        if reply is False:
            if not self._fill():
                return []
            reply = reader.gets()
        out: list[bytes] = []
        append = out.append
        while reply is not False:
            # [b"pmessage", pattern, channel, payload]: a list, or hiredis' PushNotification
            # (a list subclass)
            if isinstance(reply, list) and len(reply) == 4 and reply[0] == b"pmessage":
                append(reply[3])
            elif isinstance(reply, Exception):
                raise ConnectionError(f"the broker replied with an error: {reply}")
            reply = reader.gets()
        return out

    def close(self) -> None:
        try:
            self.client.close()  # disconnects the connection taken from its pool
        except Exception:  # noqa: BLE001 - closing a dead connection
            pass


def subscribe(url: str, settings: Any, pattern: str) -> Subscription:
    """A :class:`Subscription` on ``url`` to ``pattern``, once Redis confirmed it."""
    return Subscription(url, settings, pattern)


class RedisEventReceiverThread(ReceiverReadout, threading.Thread):
    """Captures every Celery event from a Redis broker into a bounded deque.

    Same interface and counters as :class:`tui.sources.events.EventReceiverThread`.
    :meth:`_process` is what is done with each message read off the socket (here: decode,
    validate, buffer); the reader process's socket thread overrides it.
    """

    def __init__(
        self,
        app: Celery | None,
        buffer_size: int = 200_000,
        scrub: Any = None,
        tally: Tally | None = None,
        url: str | None = None,
        settings: Any = None,
        pattern: str | None = None,
    ):
        super().__init__(name="afirgen-events-redis", daemon=True)
        self.url, self.pattern = event_source(app, url, pattern)
        self.settings = settings
        self.buffer: collections.deque[dict[str, Any]] = collections.deque()
        self.buffer_size = buffer_size
        self.received = 0
        self.dropped = 0
        self._scrub = scrub or (lambda text: text)
        self.decoder = EventDecoder(tally)
        self.tally = self.decoder.tally
        self._stop_event = threading.Event()

    # ---- called from the UI thread ----------------------------------------------------
    def stop(self, timeout: float = 2.0) -> None:
        """Ask the thread to stop and wait for it (the read loop wakes every 0.5 s)."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)

    # ---- runs in the receiver thread ---------------------------------------------------
    def _process(self, data: Any) -> None:
        buffer, limit = self.buffer, self.buffer_size
        for event in self.decoder.events(data):
            self.received += 1
            # Single producer: len() can only shrink under us (the UI pops).
            if len(buffer) >= limit:
                self.dropped += 1
                continue
            buffer.append(event)

    def _consume(self, subscription: Subscription) -> None:
        read = subscription.read
        process = self._process
        stop = self._stop_event
        while not stop.is_set():
            # blocks up to 0.5 s when idle (to see stop()), never when messages are waiting
            for data in read():
                try:
                    process(data)
                except Exception as exc:  # noqa: BLE001 - one message, not the loop
                    self.tally.skip(f"event handler error: {type(exc).__name__}")

    def run(self) -> None:
        attempt = 0
        while not self._stop_event.is_set():
            subscription = None
            try:
                subscription = subscribe(self.url, self.settings, self.pattern)
                attempt = 0
                self._set_connected()
                self._consume(subscription)
            except Exception as exc:  # any broker failure: report, back off, reconnect
                if self._stop_event.is_set():
                    break
                delay = self._set_reconnecting(self._scrub(f"{type(exc).__name__}: {exc}"), attempt)
                attempt += 1
                self._stop_event.wait(delay)
            finally:
                if subscription is not None:
                    subscription.close()
        self._set_stopped()


#: ``[console] event_reader`` values (afirgen_tasks/settings.py: ``console_event_reader``).
EVENT_READERS = ("auto", "process", "redis", "kombu")


def make_event_receiver(
    app: Celery,
    settings: Any,
    buffer_size: int,
    scrub: Any = None,
    tally: Tally | None = None,
) -> Any:
    """The receiver ``[console] event_reader`` names for ``settings.celery_broker_url``.

    On a Redis broker (``redis://``, ``rediss://``, ``unix://``, ``sentinel://``):
    ``auto`` (the default) and ``process`` give this reader in a process of its own
    (:class:`tui.sources.event_process.ProcessEventReceiver`), ``redis`` the same reader
    as a thread of the console (:class:`RedisEventReceiverThread`, also what ``auto`` and
    ``process`` give where the OS is not POSIX), ``kombu`` Celery's receiver
    (:class:`~tui.sources.events.EventReceiverThread`).  On any other broker (AMQP) every
    value gives kombu's.

    Why a process: at 20k events/s the reader needs ~0.5 of a core, and as a thread it
    shares the GIL with a busy UI thread.  In ``bench/bench_e2e.py --flood 1 --rates
    20000`` the thread fell behind, Redis closed the subscription (its pub/sub output
    buffer limit) twice and 116k of 400k events were lost; the process lost none
    (docs/performance.md, "20k events/s").
    """
    from tui.sources.redis_conn import is_redis_url

    url = settings.celery_broker_url
    reader = getattr(settings, "console_event_reader", "auto")
    # the process is started with POSIX means (pass_fds, a socketpair); elsewhere: a thread
    if is_redis_url(url) and reader in ("auto", "process") and os.name == "posix":
        from tui.sources.event_process import ProcessEventReceiver

        return ProcessEventReceiver(
            app, buffer_size, scrub=scrub, tally=tally, url=url, settings=settings
        )
    if is_redis_url(url) and reader in ("auto", "process", "redis"):
        return RedisEventReceiverThread(
            app, buffer_size, scrub=scrub, tally=tally, url=url, settings=settings
        )
    from tui.sources.events import EventReceiverThread

    return EventReceiverThread(app, buffer_size, scrub=scrub, tally=tally)
