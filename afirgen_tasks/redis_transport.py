"""kombu's Redis transport with an atomic fetch, so a killed worker cannot lose a job.

Stock kombu fetches a job with ``BRPOP`` and records it in the ``unacked`` hash (what the
visibility-timeout sweep restores from) afterwards, from Python.  A worker killed in between
loses the job: it is in neither the queue nor ``unacked``.  The window is wider than it
looks, because kombu leaves a popped reply unread in the socket while the worker's prefetch
is full (``MultiChannelPoller._pause_brpop``).  The chaos test lost 1 job in 1,500 that way.

Here one Lua script pops the job *and* records it in ``unacked`` and ``unacked_index``, so
at every instant the job is in Redis in one of the two places.  Nothing else changes: the
same keys, the same message format, kombu's own ack, reject and restore.

Lua cannot block, so an idle consumer waits with ``BRPOP`` on *wake-up lists* instead, one
per queue (``_afirgen.wakeup.<queue>``), which every publish and restore made through this
transport pushes a token onto.  The wait times out after ``brpop_timeout`` (1 s), so jobs
from producers that push no token (plain kombu) are still fetched within a second.  A fetch
that finds the queues empty deletes their tokens, which keeps the wake-up lists no longer
than the queues, and a list nobody consumes expires after a minute.

If the server cannot run the script (scripting disabled, a Redis-compatible server without
``cjson``), the channel logs one warning and goes back to kombu's ``BRPOP``; a transient
error (BUSY, READONLY during a failover) is raised, as kombu raises BRPOP's, and Celery
reconnects.

Behind Redis Sentinel (``sentinel://`` URLs) :class:`SentinelTransport` does the same: kombu's
``SentinelChannel`` finds the master through the sentinels, and :class:`Channel` fetches from
it.  The script, the keys and the wake-up lists are those of plain Redis; after a failover
the jobs recorded in ``unacked`` are on the new master as far as replication had copied
them (Redis replication is asynchronous: see docs/reliability.md).
"""

# kombu 5.7 types these channel attributes from their class defaults (``_in_poll = False``,
# ``_brpop_sent_at = None``, ``default_port = None``, a fixed-length options tuple); this
# transport sets them as kombu's own methods do at run time.
# mypy: disable-error-code="assignment,operator"
from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from queue import Empty
from time import monotonic, time
from typing import Any
from urllib.parse import urlsplit

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

log = logging.getLogger(__name__)

#: Prefix of the per-queue wake-up lists (kombu's own keys start with ``_kombu.``).
WAKEUP_PREFIX = "_afirgen.wakeup."
#: What a publish pushes onto a wake-up list; only its presence matters.
WAKEUP_TOKEN = "1"
#: Tokens are hints for consumers waiting *now*: one no consumer took within this time is
#: stale, and the TTL stops lists of queues nobody consumes any more (a finished
#: ``--check``'s reply queue) from staying in Redis for ever.
WAKEUP_TTL_MS = 60_000

#: Pop the first job found in the queue keys and record it as unacknowledged, in one step.
#:
#: KEYS: the unacked hash, the unacked index, the queue keys in the order to try, then the
#: wake-up lists of those queues.  ARGV: the time to index the job under (seconds, like
#: kombu's ``QoS.append``), the number of queue keys, and one ``1``/``0`` per queue key:
#: record (the consumer acks) or not (a ``no_ack`` consumer such as a pidbox reply queue,
#: which would otherwise be redelivered after the visibility timeout).
#:
#: Returns ``{index of the queue key, message, 1 if recorded}`` or nil when every queue is
#: empty (and then deletes their wake-up tokens: the queues were seen empty atomically, and
#: any later publish pushes a new one).  The hash value is built around the message's own
#: bytes rather than re-encoded, because cjson would turn ``[]`` into ``{}``.
#:
#: Redis does not undo a script's writes when it fails, so nothing may fail after the
#: ``RPOP``: ``cjson`` is looked up first (a server without it fails before popping), and
#: the recording is guarded; a job it could not record is returned with ``0`` and kombu's
#: QoS records it from Python, as stock kombu does.
FETCH_SCRIPT = """
local decode, encode = cjson.decode, cjson.encode
local nqueue = tonumber(ARGV[2])
for i = 3, 2 + nqueue do
  local item = redis.call('RPOP', KEYS[i])
  if item then
    local recorded = 0
    if string.sub(ARGV[3], i - 2, i - 2) == '1' then
      local ok, message = pcall(decode, item)
      if ok and type(message) == 'table' and type(message.properties) == 'table' then
        local tag = message.properties.delivery_tag
        local info = message.properties.delivery_info
        if type(tag) == 'string' and type(info) == 'table' then
          local built, value = pcall(function()
            return '[' .. item .. ',' .. encode(info.exchange or '') .. ',' .. encode(info.routing_key or '') .. ']'
          end)
          if built then
            local indexed = redis.pcall('ZADD', KEYS[2], ARGV[1], tag)
            local stored = redis.pcall('HSET', KEYS[1], tag, value)
            if type(indexed) ~= 'table' and type(stored) ~= 'table' then
              recorded = 1
            end
          end
        end
      end
    end
    return {i - 3, item, recorded}
  end
end
for i = 3 + nqueue, #KEYS do
  redis.call('DEL', KEYS[i])
end
return false
"""

# What the pending command on the channel's fetch connection is.
_FETCH = "fetch"
_WAIT = "wait"

#: A fetch reply read this many seconds after it was sent waited in the socket (kombu
#: pauses reading while the worker's prefetch is full), and the job's visibility clock
#: started when the script ran: check it is still ours before delivering it.
LATE_READ_S = 1.0

#: Words in a ResponseError that mean this server cannot run the script at all (EVAL
#: renamed away or refused by an ACL, no cjson): fall back to BRPOP.  Anything else (BUSY,
#: READONLY during a failover, LOADING, OOM) is raised, as kombu raises BRPOP's errors.
_NO_SCRIPTING = (
    "unknown command",
    "unsupported",
    "noperm",
    "no permissions",
    "scripting",
    "cjson",
    "nonexistent global",
    "a nil value",
)


def _scripting_unavailable(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(word in text for word in _NO_SCRIPTING)


def wakeup_key(queue: str) -> str:
    """The wake-up list of ``queue`` (before any global key prefix)."""
    return f"{WAKEUP_PREFIX}{queue}"


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS, minus the ``unacked`` write for a job the fetch script recorded."""

    def append(self, message: Any, delivery_tag: str) -> None:
        if delivery_tag is not None and delivery_tag == self.channel._recorded_tag:
            # Already in unacked and unacked_index (same tag, same value); only track it.
            virtual.QoS.append(self, message, delivery_tag)
        else:
            super().append(message, delivery_tag)


class Channel(kombu_redis.Channel):
    """A Redis channel whose consumer fetch is atomic; see the module docstring."""

    QoS = QoS
    #: Use the fetch script; turned off for good on this channel if the server refuses it.
    atomic_fetch = True
    from_transport_options = kombu_redis.Channel.from_transport_options + ("atomic_fetch",)

    _phase: str | None = None
    #: Delivery tag of the job being delivered right now, if the script recorded it.
    _recorded_tag: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._no_ack_queues: set[str] = set()
        #: The keys (unprefixed) of the fetch in flight, and the queue each belongs to.
        self._fetch_keys: list[str] = []
        self._fetch_dests: list[str] = []
        super().__init__(*args, **kwargs)
        if not self.ack_emulation:
            # Without ack emulation there is no unacked hash to record into.
            self.atomic_fetch = False

    # ---- keys ---------------------------------------------------------------------------
    def _raw_key(self, key: str) -> str:
        """``key`` with the global prefix, for commands sent without kombu's prefixing client."""
        return f"{self.global_keyprefix or ''}{key}"

    # ---- consumers ----------------------------------------------------------------------
    def basic_consume(self, queue: str, *args: Any, **kwargs: Any) -> Any:
        no_ack = kwargs.get("no_ack", args[0] if args else False)
        (self._no_ack_queues.add if no_ack else self._no_ack_queues.discard)(queue)
        return super().basic_consume(queue, *args, **kwargs)

    def _basic_cancel(self, consumer_tag: str) -> Any:
        queue = self._tag_to_queue.get(consumer_tag)
        ret = super()._basic_cancel(consumer_tag)
        if queue is not None and queue not in self._active_queues:
            self._no_ack_queues.discard(queue)
        return ret

    # ---- publishing: every job rings its queue's wake-up list ----------------------------
    def _put(self, queue: str, message: dict, **kwargs: Any) -> None:
        batch = kwargs.get("_publish_batch")
        if batch is not None:
            super()._put(queue, message, **kwargs)
            batch.add("lpush", wakeup_key(queue), WAKEUP_TOKEN)
            batch.add("pexpire", wakeup_key(queue), WAKEUP_TTL_MS)
            return
        # kombu's _put, with the token in the same transaction: one round trip, as before.
        key = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
        with self.conn_or_acquire() as client, client.pipeline() as pipe:
            pipe.lpush(key, dumps(message))
            if self._expires and queue in self._expires:
                for step in self.priority_steps:
                    pipe.pexpire(self._q_for_pri(queue, step), self._expires[queue])
            pipe.lpush(wakeup_key(queue), WAKEUP_TOKEN)
            pipe.pexpire(wakeup_key(queue), WAKEUP_TTL_MS)
            pipe.execute()

    def _do_restore_message(
        self, payload: dict, exchange: str, routing_key: str, pipe: Any, leftmost: bool = False
    ) -> None:
        super()._do_restore_message(payload, exchange, routing_key, pipe, leftmost)
        try:
            queues = self._lookup(exchange, routing_key)
        except self.connection_errors:
            raise
        except Exception:  # kombu has already logged why the message could not be routed
            return
        for queue in queues:
            pipe.lpush(wakeup_key(queue), WAKEUP_TOKEN)
            pipe.pexpire(wakeup_key(queue), WAKEUP_TTL_MS)

    # ---- consuming ----------------------------------------------------------------------
    def _send(self, phase: str, *args: Any) -> None:
        self._phase = phase
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()
        self.client.connection.send_command(*args)

    def _brpop_start(self, timeout: float | None = None) -> None:
        if not self.atomic_fetch:
            return super()._brpop_start(timeout)
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        # kombu's order: every queue's most urgent step first, then the next step.
        pairs = [(self._q_for_pri(q, step), q) for step in self.priority_steps for q in queues]
        self._fetch_keys = [k for k, _ in pairs]
        self._fetch_dests = [q for _, q in pairs]
        keys = [self._raw_key(self.unacked_key), self._raw_key(self.unacked_index_key)]
        keys += [self._raw_key(k) for k, _ in pairs]
        keys += [self._raw_key(wakeup_key(q)) for q in queues]
        record = "".join("0" if q in self._no_ack_queues else "1" for _, q in pairs)
        self._send(_FETCH, "EVAL", FETCH_SCRIPT, len(keys), *keys, repr(time()), len(pairs), record)

    def _start_wait(self) -> None:
        """Block (server side) until a wake-up token arrives or ``brpop_timeout`` passes."""
        keys = [self._raw_key(wakeup_key(q)) for q in self.active_queues]
        if not keys:
            self._phase = self._in_poll = None
            return
        self._send(_WAIT, "BRPOP", *keys, self.brpop_timeout or 1)

    def _idle(self) -> None:
        """The fetch connection has no command in flight: kombu may re-authenticate it now."""
        self._phase = self._in_poll = None
        self._flush_brpop_reauth()

    def _brpop_read(self, **options: Any) -> bool:
        phase = self._phase
        if phase is None:
            return super()._brpop_read(**options)
        connection = self.client.connection
        try:
            reply = self.client.parse_response(
                connection, "BRPOP" if phase == _WAIT else "EVAL", **options
            )
        except self.connection_errors:
            self._phase = self._in_poll = None
            connection.disconnect()
            raise
        except self.ResponseError as exc:
            self._idle()
            if phase == _FETCH and _scripting_unavailable(exc):
                self.atomic_fetch = False
                log.warning(
                    "Redis cannot run the atomic fetch script (%s); using BRPOP from now on, "
                    "so a worker killed while fetching can lose that job",
                    exc,
                )
                raise Empty() from None
            raise
        if phase == _WAIT:
            # A token (a job may be waiting) or the timeout.  The next poll sends the fetch:
            # _register_BRPOP reconnects and re-registers first if re-auth dropped the socket.
            self._idle()
            raise Empty()
        if not reply:
            self._start_wait()
            raise Empty()
        index, item, recorded = reply
        waited = monotonic() - self._brpop_sent_at
        self._idle()
        dest = self._fetch_dests[int(index)]
        self._queue_cycle.rotate(dest)
        message = loads(bytes_to_str(item))
        tag = message.get("properties", {}).get("delivery_tag") if int(recorded) else None
        if tag is not None and waited > LATE_READ_S and not self._still_ours(tag):
            log.warning(
                "job %s was read %.0f s after it was fetched and the visibility sweep had "
                "requeued it meanwhile; left to the consumer that gets it next",
                tag,
                waited,
            )
            raise Empty()
        self._recorded_tag = tag
        try:
            self.connection._deliver(message, dest)
        finally:
            self._recorded_tag = None
        return True

    def _still_ours(self, tag: str) -> bool:
        """Restart ``tag``'s visibility clock now, if it is still in unacked (not swept back)."""
        with self.conn_or_acquire() as client, client.pipeline() as pipe:
            pipe.zadd(self.unacked_index_key, {tag: time()}, xx=True)
            # HEXISTS is not among the commands kombu's client prefixes.
            pipe.hexists(self._raw_key(self.unacked_key), tag)
            return bool(pipe.execute()[-1])

    def _poll_error(self, type: str, **options: Any) -> None:
        if type == "BRPOP" and self._phase is not None:
            # Read the reply with the parser for what was sent (kombu's assumes BRPOP).
            self._brpop_read(**options)
            return
        super()._poll_error(type, **options)

    def close(self) -> None:
        if self._phase is not None and self._in_poll:
            self._finish_pending(self._phase)
        super().close()

    def _finish_pending(self, phase: str) -> None:
        """Read the reply in flight as the channel closes; a fetched job goes straight back."""
        try:
            reply = self.client.parse_response(
                self.client.connection, "BRPOP" if phase == _WAIT else "EVAL"
            )
            if phase == _FETCH and reply:
                index, item, recorded = reply
                if int(recorded):
                    # Otherwise it would wait in unacked for the visibility timeout.
                    self.qos.restore_by_tag(loads(bytes_to_str(item))["properties"]["delivery_tag"])
                else:
                    # Not recorded (a no_ack queue): nowhere else to find it.  The right end
                    # is where the next fetch pops from.
                    with self.conn_or_acquire() as client:
                        client.rpush(self._fetch_keys[int(index)], item)
        except Exception:  # closing: the sweep restores anything left in unacked
            log.warning("reply pending at channel close not read", exc_info=True)
        finally:
            self._phase = self._in_poll = None


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel` (atomic fetch)."""

    Channel = Channel


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel (master found through the sentinels) with the atomic fetch."""

    from_transport_options = tuple(
        dict.fromkeys(
            Channel.from_transport_options + kombu_redis.SentinelChannel.from_transport_options
        )
    )


class SentinelTransport(Transport):
    """kombu's Sentinel transport with :class:`SentinelChannel` (atomic fetch)."""

    default_port = kombu_redis.SentinelTransport.default_port
    Channel = SentinelChannel


def keep_transport_failover(alternates: list[str]) -> Iterator[str]:
    """A kombu failover strategy that never leaves this module's transport.

    On a connection error kombu's ``Connection`` switches to the next ``;``-separated URL
    and, in doing so, takes the transport from that URL's scheme: after one error a worker
    on ``sentinel://a;sentinel://b`` would run kombu's stock Sentinel transport, without the
    atomic fetch.  The Sentinel channel asks every sentinel of the list anyway, so there is
    nothing to switch to: this strategy names the first URL's host (no scheme), which keeps
    the transport and the parameters the connection was made with.
    """
    first = urlsplit(alternates[0]) if alternates else None
    host = (first.hostname if first is not None else None) or "localhost"
    return itertools.repeat(host)
