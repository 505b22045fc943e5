"""Pause records in the broker: who consumed a queue when a console paused it.

One Redis hash, ``afirgen:paused`` (after the transport's ``global_keyprefix``): field = queue,
value = JSON ``{"workers": [...], "paused_at": epoch, "by": "user"}``.  Written by the action
that pauses, deleted by the one that resumes, read by every console on its ``inspect`` round,
so a pause survives a console restart and a second console sees it.

On RabbitMQ (:class:`AmqpPauseRecordStore`) each record is the one message of a durable queue
of its own in the broker's vhost, ``afirgen.paused.<queue>``, declared with ``x-max-length 1``:
publishing a new record replaces the old one in one broker operation (drop-head), resuming
deletes the queue (one operation), the message is persistent (it survives a broker restart),
and a second console reads it as the first does (a ``basic_get`` that rejects the message back
at once).  On other brokers there is nowhere to keep it: :attr:`PauseRecordStore.available` is
False and :attr:`PauseRecordStore.why_not` says so.  Blocking network I/O: call from a thread
worker.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable
from typing import Any

from celery import Celery

from tui.core.pauses import PauseRecord
from tui.sources.validate import Tally, clean_pause_record

#: the hash's name, after the transport's global_keyprefix
PAUSED_KEY = "afirgen:paused"
#: Most records returned by one read (anyone with the broker URL can write the hash).
MAX_RECORDS = 1000
#: Most hash entries looked at by one read.
MAX_SCAN = 10_000
#: A record longer than this is not sent back (a real one is well under 1 KiB).
MAX_RECORD_BYTES = 64 * 1024

#: KEYS: the hash.  ARGV: most records returned, largest value returned, most entries looked
#: at.  Returns ``{HLEN, entries not returned, {field, value, ...}}``: the hash is walked by
#: HSCAN inside Redis, so a flood of fields or a huge value never crosses the wire.
READ_SCRIPT = """
local maxn = tonumber(ARGV[1])
local maxb = tonumber(ARGV[2])
local maxscan = tonumber(ARGV[3])
local out = {}
local left = 0
local seen = 0
local cursor = '0'
repeat
  local r = redis.call('HSCAN', KEYS[1], cursor, 'COUNT', 256)
  cursor = r[1]
  local kv = r[2]
  for i = 1, #kv, 2 do
    seen = seen + 1
    if #kv[i + 1] <= maxb and #kv[i] <= 255 and #out < 2 * maxn then
      out[#out + 1] = kv[i]
      out[#out + 1] = kv[i + 1]
    else
      left = left + 1
    end
  end
until cursor == '0' or seen >= maxscan
return {redis.call('HLEN', KEYS[1]), left, out}
"""


class PauseRecordsUnavailable(Exception):
    """The broker cannot keep pause records (not Redis); the message says why."""


class PauseRecordStore:
    """Read, write and delete pause records in the broker's Redis."""

    def __init__(self, client: Any, keyprefix: str = "", why_not: str = "") -> None:
        #: a ``redis.Redis`` (None: not available, see ``why_not``)
        self.client = client
        self.key = keyprefix + PAUSED_KEY
        self.why_not = why_not

    @classmethod
    def for_app(cls, app: Celery, settings: Any = None, timeout: float = 2.0) -> PauseRecordStore:
        """The store on ``app``'s broker (``settings`` gives TLS and Sentinel options)."""
        from tui.sources.queue_lengths import transport_layout
        from tui.sources.redis_conn import NotRedisError, is_redis_url, redis_client

        url = (settings.celery_broker_url if settings is not None else None) or (
            app.conf.broker_write_url or ""
        )
        from tui.sources.amqp_queues import is_amqp_url

        if is_amqp_url(url):
            return AmqpPauseRecordStore.for_amqp(app, settings, timeout)
        if not is_redis_url(url):
            scheme = url.split("://", 1)[0] or "unknown"
            return cls(None, why_not=f"pause records need a Redis broker (this one is {scheme})")
        try:
            client = redis_client(
                url, settings, socket_connect_timeout=timeout, socket_timeout=timeout
            )
        except NotRedisError as exc:  # a sentinel:// URL without a master name
            return cls(None, why_not=f"pause records cannot be kept: {exc}")
        return cls(client, transport_layout(app)["keyprefix"])

    @property
    def available(self) -> bool:
        """True when the broker can keep records."""
        return self.client is not None

    def _client(self) -> Any:
        if self.client is None:
            raise PauseRecordsUnavailable(self.why_not)
        return self.client

    def read_all(self, tally: Tally | None = None) -> dict[str, PauseRecord]:
        """Every record, cleaned at the trust boundary (a bad one is counted and skipped).

        Bounded (read on every ``inspect`` round, from a hash anyone with the broker URL can
        write): at most :data:`MAX_RECORDS` records of at most :data:`MAX_RECORD_BYTES`,
        :data:`MAX_SCAN` entries looked at; what is left unread is counted in ``tally``.
        """
        tally = tally if tally is not None else Tally()
        client = self._client()
        total, _left, flat = client.eval(
            READ_SCRIPT, 1, self.key, MAX_RECORDS, MAX_RECORD_BYTES, MAX_SCAN
        )
        unread = int(total) - len(flat) // 2
        if unread > 0:
            tally.skip(
                f"pause records: {unread:,} of {int(total):,} not read (too many or too large)"
            )
        out: dict[str, PauseRecord] = {}
        for queue, raw in zip(flat[::2], flat[1::2], strict=True):
            record = clean_pause_record(queue, raw, tally)
            if record is not None:
                out[record.queue] = record
        return out

    def read(self, queue: str, tally: Tally | None = None) -> PauseRecord | None:
        """The record of ``queue``, or None."""
        tally = tally if tally is not None else Tally()
        client = self._client()
        if client.hstrlen(self.key, queue) > MAX_RECORD_BYTES:
            tally.skip("pause record: too large to read")
            return None
        raw = client.hget(self.key, queue)
        if raw is None:
            return None
        return clean_pause_record(queue, raw, tally)

    def put(self, record: PauseRecord) -> None:
        """Keep ``record`` (replacing the queue's previous one)."""
        value = {"workers": list(record.workers), "paused_at": record.paused_at, "by": record.by}
        self._client().hset(self.key, record.queue, json.dumps(value))

    def delete(self, queue: str) -> None:
        """Forget the pause of ``queue``."""
        self._client().hdel(self.key, queue)


#: Arguments of every record queue: one message at most, a new one pushes the old one out.
RECORD_QUEUE_ARGUMENTS: dict[str, Any] = {"x-max-length": 1, "x-overflow": "drop-head"}
#: A record read finds its queue non-empty yet gets nothing (another console holds the
#: message for the instant of its own read): tries before the read is given up.
BUSY_TRIES = 5


def record_queue_name(queue: str) -> str:
    """The RabbitMQ queue holding ``queue``'s pause record (AMQP names are at most 255 bytes:
    a longer one is named by its digest; the record itself carries the queue's name)."""
    from tui.sources.amqp_queues import PAUSE_RECORD_PREFIX

    name = PAUSE_RECORD_PREFIX + queue
    if len(name.encode()) <= 255:
        return name
    return (
        PAUSE_RECORD_PREFIX
        + "sha1."
        + hashlib.sha1(queue.encode(), usedforsecurity=False).hexdigest()
    )


class RecordBusy(Exception):
    """A record queue held a message that could not be read now (being read elsewhere)."""


class AmqpPauseRecordStore(PauseRecordStore):
    """Pause records on RabbitMQ: one durable ``x-max-length 1`` queue per paused queue.

    ``queues`` names the queues whose records :meth:`read_all` looks for (AMQP cannot list
    queues): the configured ones, plus those :meth:`note_queues` adds (the management API's
    listing, when it answers, names the record queues directly).  Thread-safe (one lock
    around the channel: the console's action workers may share a store).
    """

    def __init__(
        self,
        connect: Any,
        queues: Iterable[str] = (),
        management: Any = None,
    ) -> None:
        super().__init__(client=None)
        from tui.sources.amqp_queues import PassiveDeclarer

        self.declarer = PassiveDeclarer(connect)
        self.management = management
        self._known: set[str] = set(queues)
        self._lock = threading.Lock()

    @classmethod
    def for_amqp(cls, app: Celery, settings: Any, timeout: float) -> AmqpPauseRecordStore:
        """The store on ``app``'s RabbitMQ vhost."""
        from tui.sources.amqp_queues import amqp_connection, management_client

        queues = [q.name for q in (app.conf.task_queues or ())]
        management = management_client(settings, timeout) if settings is not None else None
        return cls(lambda: amqp_connection(app, timeout), queues, management)

    @property
    def available(self) -> bool:
        """Always: RabbitMQ keeps the records in queues of their own."""
        return True

    def note_queues(self, queues: Iterable[str]) -> None:
        """More queues whose records :meth:`read_all` looks for."""
        self._known.update(queues)

    def _candidates(self) -> list[str]:
        from tui.sources.amqp_queues import PAUSE_RECORD_PREFIX, ManagementUnreachable

        names = set(self._known)
        if self.management is not None:
            try:
                listed = self.management.queues()
            except ManagementUnreachable:
                listed = {}
            strip = len(PAUSE_RECORD_PREFIX)
            names.update(n[strip:] for n in listed if n.startswith(PAUSE_RECORD_PREFIX))
        return sorted(names)

    def _read_locked(self, queue: str, tally: Tally) -> PauseRecord | None:
        answer = self.declarer.declare(record_queue_name(queue))
        if answer is None or answer[0] == 0:
            return None
        channel = self.declarer.channel()
        newest: PauseRecord | None = None
        for _attempt in range(BUSY_TRIES):
            held = []
            try:
                while (
                    message := channel.basic_get(record_queue_name(queue), no_ack=False)
                ) is not None:
                    held.append(message)
                    if len(held) >= 8:  # more than one only while a replacement settles
                        break
            finally:
                for message in held:
                    channel.basic_reject(message.delivery_tag, requeue=True)
            for message in held:
                record = self._record_of(queue, message.body, tally)
                if record is not None and (newest is None or record.paused_at >= newest.paused_at):
                    newest = record
            if held:
                return newest
            time.sleep(0.02 * (_attempt + 1))
        raise RecordBusy(f"the pause record of {queue} is being read elsewhere")

    @staticmethod
    def _record_of(queue: str, body: Any, tally: Tally) -> PauseRecord | None:
        try:
            data = json.loads(body)
        except (TypeError, ValueError, RecursionError):
            tally.skip("pause record: not JSON")
            return None
        if not isinstance(data, dict) or data.get("queue", queue) != queue:
            tally.skip("pause record: for another queue")
            return None
        return clean_pause_record(queue, body, tally)

    def read_all(self, tally: Tally | None = None) -> dict[str, PauseRecord]:
        """Every record of the known queues (cleaned; a bad one is counted and skipped).

        Raises :class:`RecordBusy` (or a connection error) when one could not be read: the
        caller keeps what it had rather than show a pause gone.
        """
        tally = tally if tally is not None else Tally()
        out: dict[str, PauseRecord] = {}
        candidates = self._candidates()
        with self._lock:
            for queue in candidates:
                record = self._read_locked(queue, tally)
                if record is not None:
                    out[queue] = record
        return out

    def read(self, queue: str, tally: Tally | None = None) -> PauseRecord | None:
        """The record of ``queue``, or None."""
        with self._lock:
            return self._read_locked(queue, tally if tally is not None else Tally())

    def put(self, record: PauseRecord) -> None:
        """Keep ``record``: declare its queue (durable) and publish it, confirmed, persistent."""
        import amqp

        value = {
            "queue": record.queue,
            "workers": list(record.workers),
            "paused_at": record.paused_at,
            "by": record.by,
        }
        name = record_queue_name(record.queue)
        self.note_queues([record.queue])

        def publish(channel: Any) -> None:
            channel.queue_declare(
                queue=name, durable=True, auto_delete=False, arguments=RECORD_QUEUE_ARGUMENTS
            )
            message = amqp.Message(
                json.dumps(value), content_type="application/json", delivery_mode=2
            )
            # waits for the broker's ack: the record is on disk before the pause is sent
            channel.basic_publish_confirm(message, exchange="", routing_key=name)

        with self._lock:
            self.declarer.run(publish)

    def delete(self, queue: str) -> None:
        """Forget the pause of ``queue`` (delete its record queue)."""
        with self._lock:
            self.declarer.run(lambda channel: channel.queue_delete(queue=record_queue_name(queue)))

    def close(self) -> None:
        """Close the AMQP connection."""
        self.declarer.close()
