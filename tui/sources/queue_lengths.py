"""Queue lengths on the Redis broker, read in one pipelined round trip per poll.

kombu's Redis transport keeps one list per queue and priority step: the list for queue
``q`` at wire step ``w`` is ``q`` when ``w == 0``, else ``q<sep>w``
(:func:`afirgen_tasks.priority.redis_step_key`).  Messages a worker has reserved but not
acknowledged sit in the ``unacked`` hash (values are JSON ``[message, exchange,
routing_key]``).  Queues are named by the ``_kombu.binding.<exchange>`` sets, whose members
are ``routing_key<sep>pattern<sep>queue`` joined with the transport's ``sep`` (``:`` for
AFIRGen; a direct binding reads ``email::email``).  Every key carries the transport's
``global_keyprefix``.

:class:`QueueLengthPoller` is used by the console's Queues pane (from a thread worker) and
by ``afirgen-tui --check``.  It never imports Textual.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis

from afirgen_tasks.priority import MAX_PRIORITY, MIN_PRIORITY, from_wire, redis_step_key

if TYPE_CHECKING:
    from tui.sources.amqp_queues import AmqpQueuePoller

#: kombu's binding-table key prefix (``Channel.keyprefix_queue``).
BINDING_PREFIX = "_kombu.binding."
#: Exchanges whose bindings are Celery plumbing, not work queues.
INTERNAL_EXCHANGES: tuple[str, ...] = ("celeryev",)
#: Reserved messages read per poll at most; above it the hash is sampled and scaled.
DEFAULT_RESERVED_CAP = 10_000
#: Seconds between binding scans (queues appear and disappear rarely).
DEFAULT_DISCOVER_INTERVAL = 10.0
#: A scan walks the whole keyspace (MATCH filters after the walk), so on a db with millions
#: of keys it takes seconds; the next one waits at least this many times as long, which
#: keeps discovery under 2 % of the server's time whatever the keyspace size.
DISCOVER_COST_FACTOR = 50.0
#: Queues taken from kombu's binding sets beyond the configured ones, at most.  Anyone who
#: can write to the broker can add binding members: 30,000 forged ones made 30,000 rows,
#: each polled with ten LLENs.  The rest are counted and said, never polled.
MAX_DISCOVERED_QUEUES = 200

NOT_AVAILABLE = "queue lengths are not available on this transport"

# The tail of an unacked value: ``, "exchange", "routing_key"]``.  Reading only the tail
# avoids decoding the message body of every reserved task.
_TAIL = re.compile(rb',\s*("(?:[^"\\]|\\.)*"|null)\s*,\s*("(?:[^"\\]|\\.)*"|null)\s*\]\s*$')
_TAIL_BYTES = 512
_REDIS = "redis://"
#: Bytes of each list's last element returned by :data:`TAIL_SCRIPT`: enough for the
#: message's ``properties`` (kombu writes them last), which hold its delivery tag.
TAIL_READ_BYTES = 512
#: The end of the oldest message of each list (KEYS), ``''`` for an empty list.  A script
#: so that a hostile 100 MB message costs the server a copy, not the network.
TAIL_SCRIPT = """
local out = {}
local n = tonumber(ARGV[1])
for i = 1, #KEYS do
  local v = redis.call('LINDEX', KEYS[i], -1)
  if v then out[i] = string.sub(v, -n) else out[i] = '' end
end
return out
"""
_DELIVERY_TAG = re.compile(rb'"delivery_tag"\s*:\s*"([^"\\]{1,255})"')


@dataclass(frozen=True, slots=True)
class QueueLength:
    """One queue's numbers in a snapshot.

    ``by_priority`` maps the operator priority (1-10, 10 = most urgent) to the messages
    waiting at it; every priority is present.  ``reserved`` counts messages workers have
    taken but not yet acknowledged (with ``task_acks_late`` that includes running tasks).
    """

    name: str
    waiting: int
    by_priority: dict[int, int]
    #: None when the broker cannot tell (AMQP without the management API)
    reserved: int | None = 0
    #: With ``poll(tails=True)``: operator priority -> identity of the message at the tail
    #: of that priority's list (the oldest there: kombu LPUSHes and pops from the right).
    #: The identity is the message's delivery tag, else a digest of the tail bytes read.
    tails: dict[int, str] = field(default_factory=dict)
    #: False when the broker keeps no count per priority (RabbitMQ): ``by_priority`` is then
    #: empty and every band is unknown, never 0
    bands_known: bool = True
    #: consumers the broker counts on the queue (AMQP passive declare); None: not read here
    consumers: int | None = None
    #: False when the broker has no such queue (AMQP: nobody declared it yet)
    declared: bool = True


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """Queue lengths at one moment.

    ``available`` is False (and ``error`` says why) when the lengths could not be read:
    ``supported`` False means they never can be on this broker (stop polling), True a
    passing failure (the broker is down: keep the last data on screen, poll again).
    ``reserved_exact`` is False when the ``unacked`` hash was larger than the poller's cap
    and per-queue ``reserved`` numbers were scaled from a sample.
    """

    queues: dict[str, QueueLength] = field(default_factory=dict)
    unacked: int = 0
    reserved_exact: bool = True
    taken_at: float = 0.0
    duration: float = 0.0
    available: bool = True
    error: str = ""
    supported: bool = True
    #: a standing remark about the numbers, said once by the console (e.g. reserved counts
    #: need the RabbitMQ management API, not reachable at ...)
    notice: str = ""

    @classmethod
    def of(cls, queues: Iterable[QueueLength], **fields: Any) -> QueueSnapshot:
        """A snapshot of ``queues`` (a list, in the order given)."""
        return cls({q.name: q for q in queues}, **fields)

    @property
    def total_waiting(self) -> int:
        """Messages waiting in every queue."""
        return sum(q.waiting for q in self.queues.values())


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def parse_binding_member(member: bytes | str, sep: str) -> tuple[str, str, str]:
    """``(routing_key, pattern, queue)`` from a ``_kombu.binding.*`` member.

    With ``sep=':'`` a name may itself contain ``:``; a direct binding's routing key equals
    its queue and its pattern is empty, which resolves the ambiguity; otherwise the last
    field is taken as the queue.
    """
    text = _text(member)
    parts = text.split(sep)
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    for i, part in enumerate(parts):
        if part == "" and sep.join(parts[:i]) == sep.join(parts[i + 1 :]):
            name = sep.join(parts[:i])
            return name, "", name
    if len(parts) < 3:
        return "", "", parts[-1]
    return parts[0], parts[1], sep.join(parts[2:])


def parse_unacked_route(value: bytes | str) -> tuple[str, str] | None:
    """``(exchange, routing_key)`` of an ``unacked`` hash value, reading only its tail."""
    raw = value.encode() if isinstance(value, str) else value
    match = _TAIL.search(raw, max(0, len(raw) - _TAIL_BYTES))
    try:
        if match is not None:
            exchange, routing_key = json.loads(match.group(1)), json.loads(match.group(2))
        else:
            _message, exchange, routing_key = json.loads(raw)
    except (ValueError, TypeError):
        return None
    return exchange or "", routing_key or ""


def tail_identity(raw: Any) -> str:
    """Who the message ending in ``raw`` is: ``tag:<delivery tag>``, else ``sha1:<digest>``
    of the bytes (stable while the same message stays at the tail); ``''`` for nothing."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    if not isinstance(raw, bytes) or not raw:
        return ""
    match = _DELIVERY_TAG.search(raw)
    if match is not None:
        tag = match.group(1).decode("utf-8", "replace")
        if tag.isprintable():
            return "tag:" + tag
    return "sha1:" + hashlib.sha1(raw, usedforsecurity=False).hexdigest()


def _is_internal(exchange: str, queue: str, internal_exchanges: Iterable[str]) -> bool:
    return (
        exchange in internal_exchanges
        or exchange.endswith(".pidbox")
        or queue.endswith(".pidbox")
        or queue.startswith("celeryev.")
    )


class QueueLengthPoller:
    """Reads every queue's waiting messages by priority, and reserved messages, from Redis.

    ``poll()`` sends LLEN for every queue x priority step, HLEN of the ``unacked`` hash and
    HVALS (or a capped HSCAN) of it in ONE pipelined round trip.  Queues are the configured
    ones plus those named by kombu's binding sets, re-scanned (SCAN, never KEYS) at most every
    ``discover_interval`` seconds, or less often when a scan is slow (:meth:`next_discovery_in`).  ``round_trips`` and ``commands`` count what was sent.

    Not thread-safe: one poller per thread (the console polls from one thread worker).
    """

    def __init__(
        self,
        client: redis.Redis,
        configured_queues: Sequence[str],
        priority_steps: Sequence[int],
        sep: str,
        keyprefix: str = "",
        *,
        unacked_key: str = "unacked",
        internal_exchanges: Iterable[str] = INTERNAL_EXCHANGES,
        discover_interval: float = DEFAULT_DISCOVER_INTERVAL,
        reserved_cap: int = DEFAULT_RESERVED_CAP,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.configured_queues: tuple[str, ...] = tuple(configured_queues)
        self.priority_steps: tuple[int, ...] = tuple(sorted(set(priority_steps))) or (0,)
        self.sep = sep
        self.keyprefix = keyprefix
        self.unacked_key = unacked_key
        self.internal_exchanges = frozenset(internal_exchanges)
        self.discover_interval = discover_interval
        self.reserved_cap = max(1, reserved_cap)
        self._clock = clock
        #: Pipelines executed and single commands sent (discovery included).
        self.round_trips = 0
        #: Redis commands sent (each pipelined command counts once).
        self.commands = 0
        self._queues: list[str] = list(self.configured_queues)
        self._routes: dict[tuple[str, str], str] = {(q, q): q for q in self.configured_queues}
        self._discovered_at: float | None = None
        #: queues found in the binding sets past :data:`MAX_DISCOVERED_QUEUES` (not polled)
        self.discovered_over_cap = 0
        #: Seconds the last discovery took.
        self._discover_cost = 0.0
        self._last_unacked: int | None = None
        # (key, operator priority) for each step, per queue; rebuilt on discovery.
        self._plan: list[tuple[str, list[tuple[str, int]]]] = []
        self._build_plan()

    # ---- discovery ------------------------------------------------------------------
    @property
    def queues(self) -> list[str]:
        """The queues the next poll reads (configured first, then discovered, sorted)."""
        return list(self._queues)

    def discover(self) -> list[str]:
        """Re-read kombu's binding sets; return configured + discovered queues.

        SCAN (a few round trips) plus one pipelined SMEMBERS; internal pidbox and event
        bindings are left out.
        """
        started = self._clock()
        pattern = _glob_escape(self.keyprefix + BINDING_PREFIX) + "*"
        keys: list[bytes | str] = []
        cursor: int | bytes = 0
        while True:
            cursor, batch = self.client.scan(cursor=int(cursor), match=pattern, count=1000)
            self.round_trips += 1
            self.commands += 1
            keys.extend(batch)
            if not int(cursor):
                break
        found: dict[tuple[str, str], str] = {}
        if keys:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.smembers(key)
            members = pipe.execute(raise_on_error=False)
            self.round_trips += 1
            self.commands += len(keys)
            strip = len(self.keyprefix + BINDING_PREFIX)
            for key, values in zip(keys, members, strict=True):
                if isinstance(values, Exception):
                    continue
                exchange = _text(key)[strip:]
                for member in values:
                    routing_key, _pattern, queue = parse_binding_member(member, self.sep)
                    if queue and not _is_internal(exchange, queue, self.internal_exchanges):
                        found[(exchange, routing_key)] = queue
        routes = {(q, q): q for q in self.configured_queues}
        routes.update(found)
        extra = sorted(set(found.values()) - set(self.configured_queues))
        self.discovered_over_cap = max(0, len(extra) - MAX_DISCOVERED_QUEUES)
        extra = extra[:MAX_DISCOVERED_QUEUES]
        kept = set(self.configured_queues) | set(extra)
        routes = {route: q for route, q in routes.items() if q in kept}
        self._routes = routes
        self._queues = [*self.configured_queues, *extra]
        self._discovered_at = self._clock()
        self._discover_cost = self._discovered_at - started
        self._build_plan()
        return list(self._queues)

    def next_discovery_in(self) -> float:
        """Seconds between discoveries: ``discover_interval``, longer when a scan is slow."""
        return max(self.discover_interval, DISCOVER_COST_FACTOR * self._discover_cost)

    def _build_plan(self) -> None:
        plan = []
        for queue in self._queues:
            keys = [
                (self.keyprefix + redis_step_key(queue, step, self.sep), from_wire(step, _REDIS))
                for step in self.priority_steps
            ]
            plan.append((queue, keys))
        self._plan = plan

    # ---- polling --------------------------------------------------------------------
    def poll(self, tails: bool = False) -> QueueSnapshot:
        """Read every length in one round trip (plus a binding scan when one is due).

        With ``tails`` the same round trip also reads the end of the oldest message of every
        list (:data:`TAIL_SCRIPT`, one EVAL) into :attr:`QueueLength.tails`; a server that
        cannot run scripts leaves ``tails`` empty.

        Raises redis errors (ConnectionError, TimeoutError) to the caller, which decides how
        to show them; the console keeps its last snapshot.
        """
        now = self._clock()
        if self._discovered_at is None or now - self._discovered_at >= self.next_discovery_in():
            self.discover()
        started = time.perf_counter()
        unacked = self.keyprefix + self.unacked_key
        exact_read = self._last_unacked is not None and self._last_unacked <= self.reserved_cap
        pipe = self.client.pipeline(transaction=False)
        n = 0
        for _queue, keys in self._plan:
            for key, _priority in keys:
                pipe.llen(key)
                n += 1
        pipe.hlen(unacked)
        if exact_read:
            pipe.hvals(unacked)
        else:
            pipe.hscan(unacked, 0, count=self.reserved_cap)
        if tails:
            keys_all = [key for _queue, keys in self._plan for key, _priority in keys]
            pipe.eval(TAIL_SCRIPT, len(keys_all), *keys_all, TAIL_READ_BYTES)
        results = pipe.execute(raise_on_error=False)
        self.round_trips += 1
        self.commands += n + 2 + int(tails)
        tail_raw = results[n + 2] if tails else None
        if not isinstance(tail_raw, list) or len(tail_raw) != n:
            tail_raw = None
        lengths, hlen, reserved_raw = results[:n], results[n], results[n + 1]
        hlen = hlen if isinstance(hlen, int) else 0
        self._last_unacked = hlen

        if isinstance(reserved_raw, Exception):
            values: list[Any] = []
        elif exact_read:
            values = reserved_raw
        else:
            values = list(reserved_raw[1].values())
        reserved, exact = self._count_reserved(values, hlen)

        queues: dict[str, QueueLength] = {}
        i = 0
        for queue, keys in self._plan:
            bands = dict.fromkeys(range(MIN_PRIORITY, MAX_PRIORITY + 1), 0)
            ends: dict[int, str] = {}
            for _key, priority in keys:
                value = lengths[i]
                if tail_raw is not None and (ident := tail_identity(tail_raw[i])):
                    ends.setdefault(priority, ident)
                i += 1
                if isinstance(value, int):
                    bands[priority] += value
            queues[queue] = QueueLength(
                queue, sum(bands.values()), bands, reserved.get(queue, 0), ends
            )
        over = self.discovered_over_cap
        return QueueSnapshot(
            queues=queues,
            unacked=hlen,
            reserved_exact=exact,
            taken_at=time.time(),
            duration=time.perf_counter() - started,
            notice=(
                f"{over:,} more queue(s) in kombu's bindings not shown (at most "
                f"{MAX_DISCOVERED_QUEUES} beyond the configured ones)"
                if over
                else ""
            ),
        )

    def _count_reserved(self, values: list[Any], hlen: int) -> tuple[dict[str, int], bool]:
        counts: dict[str, int] = {}
        routes = self._routes
        for value in values[: self.reserved_cap]:
            route = parse_unacked_route(value)
            if route is None:
                continue
            queue = routes.get(route)
            if queue is None:
                # A queue on an exchange we have not seen bound yet: kombu's default
                # exchange routes by queue name.
                queue = route[1]
            counts[queue] = counts.get(queue, 0) + 1
        read = min(len(values), self.reserved_cap)
        if read >= hlen or read == 0:
            return counts, read >= hlen
        scale = hlen / read
        return {q: round(c * scale) for q, c in counts.items()}, False


class UnavailableQueuePoller:
    """Stands in for :class:`QueueLengthPoller` on brokers without readable lengths (AMQP)."""

    def __init__(self, configured_queues: Sequence[str], reason: str = NOT_AVAILABLE) -> None:
        self.configured_queues = tuple(configured_queues)
        self.reason = reason
        self.round_trips = 0
        self.commands = 0

    @property
    def queues(self) -> list[str]:
        """The configured queues (nothing can be discovered)."""
        return list(self.configured_queues)

    def discover(self) -> list[str]:
        """The configured queues."""
        return self.queues

    def poll(self) -> QueueSnapshot:
        """An unavailable snapshot saying why."""
        return QueueSnapshot(available=False, error=self.reason, taken_at=time.time())


def transport_layout(app: Any) -> dict[str, Any]:
    """``priority_steps``, ``sep``, ``keyprefix`` and ``unacked_key`` from the app's
    ``broker_transport_options`` (kombu's defaults where unset)."""
    from kombu.transport.redis import Channel

    opts = dict(app.conf.broker_transport_options or {})
    return {
        "priority_steps": list(opts.get("priority_steps", Channel.priority_steps)),
        "sep": opts.get("sep", Channel.sep),
        "keyprefix": opts.get("global_keyprefix", Channel.global_keyprefix) or "",
        "unacked_key": opts.get("unacked_key", Channel.unacked_key),
    }


def make_queue_poller(
    app: Any,
    client: redis.Redis | None = None,
    *,
    settings: Any = None,
    configured_queues: Sequence[str] | None = None,
    broker_url: str | None = None,
    socket_connect_timeout: float = 5.0,
    socket_timeout: float = 5.0,
    **kwargs: Any,
) -> QueueLengthPoller | UnavailableQueuePoller | AmqpQueuePoller:
    """The poller for ``app``'s broker: a :class:`QueueLengthPoller` on Redis, an
    :class:`~tui.sources.amqp_queues.AmqpQueuePoller` on RabbitMQ (with ``settings``), else an
    :class:`UnavailableQueuePoller`.  Queues default to the app's ``task_queues``; the URL to
    ``settings.celery_broker_url`` (Celery's own conf would prefer ``$CELERY_BROKER_URL``)."""
    from .redis_conn import broker_url_of, is_redis_url, redis_client

    if configured_queues is None:
        configured_queues = [q.name for q in (app.conf.task_queues or ())]
    url = broker_url_of(app, settings, broker_url)
    if client is None:
        from .amqp_queues import is_amqp_url, make_amqp_poller

        if is_amqp_url(url) and app is not None and settings is not None:
            return make_amqp_poller(app, settings, configured_queues, socket_timeout)
        if not is_redis_url(url):
            scheme = url.split("://", 1)[0] or "unknown"
            return UnavailableQueuePoller(configured_queues, f"{NOT_AVAILABLE} ({scheme})")
        client = redis_client(
            url,
            settings,
            socket_connect_timeout=socket_connect_timeout,
            socket_timeout=socket_timeout,
        )
    layout = transport_layout(app)
    return QueueLengthPoller(
        client,
        configured_queues,
        layout["priority_steps"],
        layout["sep"],
        layout["keyprefix"],
        unacked_key=layout["unacked_key"],
        internal_exchanges=(app.conf.event_exchange or "celeryev",),
        **kwargs,
    )


def pidbox_hostnames(
    client: redis.Redis, sep: str, keyprefix: str = "", exchange: str = "celery.pidbox"
) -> list[str]:
    """Hostnames of the workers bound to the broadcast mailbox (one SMEMBERS).

    Each live worker binds its ``<hostname>.celery.pidbox`` queue to the ``celery.pidbox``
    fanout exchange; kombu expires the binding of a worker that stopped refreshing it.
    """
    suffix = "." + exchange
    names = []
    for member in client.smembers(keyprefix + BINDING_PREFIX + exchange):
        _rk, _pattern, queue = parse_binding_member(member, sep)
        if queue.endswith(suffix):
            names.append(queue[: -len(suffix)])
    return sorted(set(names))


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
