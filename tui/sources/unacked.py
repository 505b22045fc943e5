"""Where a lost task's message is on the Redis broker, and when the broker hands it out again.

kombu's Redis transport records every message a consumer has taken but not acknowledged in
two keys: the ``unacked`` hash (delivery tag -> JSON ``[message, exchange, routing_key]``)
and the ``unacked_index`` sorted set (delivery tag, scored by the time it was delivered).
A sweep by any live consumer puts a message back in its queue once it has sat there longer
than the transport's ``visibility_timeout``.  So a task lost with its worker comes back at
``score + visibility_timeout`` (plus up to one sweep interval), unless it is no longer in
``unacked`` at all: acknowledged (it finished) or already restored.

The task id is in the message's ``headers`` (Celery's protocol 2), not in the hash's field
names, so the hash is walked with ``HSCAN`` pages (never ``HGETALL`` of a huge hash) up to a
bound, and stops as soon as every id asked about is found; the scores of the tags found are
read in one pipelined round trip.  What Redis returns passes the trust boundary
(:func:`tui.sources.validate.clean_unacked_hold`).

The ``u`` screen lists them all (:class:`UnackedJobs`): a page of ``unacked_index`` by
delivery time (``ZRANGE`` with scores) and those tags' hash values, with the counts of both
keys, in one read script (:data:`READ_SCRIPT`), every entry through
:func:`tui.sources.validate.clean_unacked_entry`.  It also puts one job back in its queue
now (:meth:`UnackedJobs.requeue`), as kombu's ``restore_by_tag``/``_do_restore_message``
would after the visibility timeout: out of ``unacked`` and ``unacked_index`` and ``RPUSH``ed
(the end the workers pop from) onto the list of its priority step, with a wake-up token, in
one script that does nothing unless the tag still holds the very value read.

Blocking network I/O: call it from a thread worker.  Never imports Textual.
"""

from __future__ import annotations

import json
import re
import time
from bisect import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from afirgen_tasks.redis_transport import WAKEUP_TOKEN, WAKEUP_TTL_MS, wakeup_key
from tui.sources.redis_conn import as_bytes
from tui.sources.validate import Tally, clean_unacked_entry, clean_unacked_hold, is_key

#: Entries read per HSCAN page.
PAGE = 500
#: Most ``unacked`` entries read per look-up; past it the ids not found are "unknown".
MAX_SCAN = 50_000
#: kombu's default when the app sets no ``visibility_timeout``.
DEFAULT_VISIBILITY_TIMEOUT = 3600.0
#: Header ``"id": "<task id>"`` in a message's JSON (the body is base64: no quotes in it).
_HEADER_ID = re.compile(rb'"id"\s*:\s*"([^"\\]{1,255})"')


@dataclass(frozen=True, slots=True)
class UnackedHold:
    """What the broker holds for one task id.

    ``in_broker`` is True with ``delivered_at`` (the ``unacked_index`` score) and
    ``redeliver_at`` (that + the visibility timeout); False when the message is not in
    ``unacked``; None when the look-up could not tell (``note`` says why).
    """

    uuid: str
    in_broker: bool | None
    delivered_at: float | None = None
    redeliver_at: float | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class UnackedLookup:
    """The answer to one look-up: a hold per id asked about, or an ``error`` for all."""

    holds: dict[str, UnackedHold] = field(default_factory=dict)
    error: str = ""
    taken_at: float = 0.0
    #: ``unacked`` entries read
    scanned: int = 0
    round_trips: int = 0


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class UnackedLocator:
    """Finds task ids in kombu's ``unacked`` hash and reads their delivery time.

    ``client`` is a redis-py client on the broker's database; ``keyprefix`` the transport's
    ``global_keyprefix``.  Not thread-safe: one locator per thread worker at a time.
    """

    def __init__(
        self,
        client: Any,
        visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
        *,
        keyprefix: str = "",
        unacked_key: str = "unacked",
        index_key: str = "unacked_index",
        page: int = PAGE,
        max_scan: int = MAX_SCAN,
    ) -> None:
        self.client = client
        self.visibility_timeout = float(visibility_timeout)
        self.unacked_key = keyprefix + unacked_key
        self.index_key = keyprefix + index_key
        self.page = max(1, page)
        self.max_scan = max(1, max_scan)

    def locate(self, uuids: Iterable[str], tally: Tally | None = None) -> UnackedLookup:
        """Where each of ``uuids`` is; raises redis errors (the caller says what failed)."""
        tally = tally if tally is not None else Tally()
        wanted = {u for u in uuids if is_key(u)}
        found: dict[str, bytes | str] = {}  # uuid -> delivery tag
        scanned = trips = 0
        cursor: int | str = 0
        complete = False
        while wanted.difference(found):
            cursor, entries = self.client.hscan(self.unacked_key, cursor, count=self.page)
            trips += 1
            for tag, value in (entries or {}).items():
                scanned += 1
                raw = value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")
                for match in _HEADER_ID.finditer(raw):
                    uuid = match.group(1).decode("utf-8", "replace")
                    if uuid in wanted and uuid not in found:
                        found[uuid] = tag
            if int(cursor) == 0:
                complete = True
                break
            if scanned >= self.max_scan:
                break
        tags = list(found.items())
        scores: list[Any] = []
        if tags:
            pipe = self.client.pipeline(transaction=False)
            for _uuid, tag in tags:
                pipe.zscore(self.index_key, tag)
            scores = pipe.execute(raise_on_error=False)
            trips += 1
        now = time.time()
        holds: dict[str, UnackedHold] = {}
        for (uuid, tag), score in zip(tags, scores, strict=True):
            clean = clean_unacked_hold(_text(tag), score, tally, now)
            if clean is None:
                holds[uuid] = UnackedHold(uuid, True, note="its delivery time is unreadable")
            else:
                delivered = clean[1]
                holds[uuid] = UnackedHold(
                    uuid, True, delivered, delivered + self.visibility_timeout
                )
        for uuid in wanted.difference(found):
            if complete:
                holds[uuid] = UnackedHold(uuid, False)
            else:
                holds[uuid] = UnackedHold(
                    uuid,
                    None,
                    note=f"unacked holds more than {scanned:,} messages: not all were read",
                )
        return UnackedLookup(holds, taken_at=now, scanned=scanned, round_trips=trips)


def make_unacked_locator(app: Any, client: Any) -> UnackedLocator:
    """A locator for ``app``'s Redis transport (key names, prefix, visibility timeout)."""
    from kombu.transport.redis import Channel

    opts = dict(app.conf.broker_transport_options or {})
    timeout = opts.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        timeout = DEFAULT_VISIBILITY_TIMEOUT
    return UnackedLocator(
        client,
        timeout,
        keyprefix=opts.get("global_keyprefix", Channel.global_keyprefix) or "",
        unacked_key=opts.get("unacked_key", Channel.unacked_key),
        index_key=opts.get("unacked_index_key", Channel.unacked_index_key),
    )


# ---- the whole list (the ``u`` screen) and requeueing one job ----------------------------
#: Jobs read per page.
UNACKED_PAGE_SIZE = 50
#: A hash value larger than this is not returned by the read script (counted as unreadable).
MAX_VALUE_BYTES = 1 << 20
#: What the screen says on a broker without kombu's ``unacked`` keys.
NOT_AVAILABLE = "unacknowledged jobs can be listed on Redis brokers only"
#: kombu's binding sets: ``<prefix>_kombu.binding.<exchange>`` (members
#: ``routing_key<sep>pattern<sep>queue``).
BINDING_PREFIX = "_kombu.binding."

#: KEYS: the unacked hash, the unacked index.  ARGV: offset, limit, the largest value to
#: return.  Returns ``{HLEN, ZCARD, items}``; each item is ``{tag, score, value or '' when
#: absent or too large, value size}``, oldest delivery first.  One script: the counts and
#: the page are of the same instant.
READ_SCRIPT = """
local offset = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local maxb = tonumber(ARGV[3])
local hlen = redis.call('HLEN', KEYS[1])
local zcard = redis.call('ZCARD', KEYS[2])
local page = redis.call('ZRANGE', KEYS[2], offset, offset + limit - 1, 'WITHSCORES')
local items = {}
for i = 1, #page, 2 do
  local tag = page[i]
  local v = redis.call('HGET', KEYS[1], tag)
  if not v then
    items[#items + 1] = {tag, page[i + 1], '', -1}
  elseif #v > maxb then
    items[#items + 1] = {tag, page[i + 1], '', #v}
  else
    items[#items + 1] = {tag, page[i + 1], v, #v}
  end
end
return {hlen, zcard, items}
"""

#: KEYS: the unacked hash, the unacked index, then ``n`` destination lists, then their
#: ``n`` queues' wake-up lists.  ARGV: the tag, the exact hash value read, the payload to
#: push, the wake-up token, its time to live in ms.  Returns 1 when requeued; 0 when the
#: tag is no longer in ``unacked`` (acknowledged or restored meanwhile) and -1 when it holds
#: another value: in both cases nothing at all is written.  As kombu's restore: removed
#: from both keys, ``RPUSH``ed (the next popped) onto each destination.
REQUEUE_SCRIPT = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
if v ~= ARGV[2] then return -1 end
local n = (#KEYS - 2) / 2
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
for i = 3, 2 + n do
  redis.call('RPUSH', KEYS[i], ARGV[3])
end
for i = 3 + n, #KEYS do
  redis.call('LPUSH', KEYS[i], ARGV[4])
  redis.call('PEXPIRE', KEYS[i], ARGV[5])
end
return 1
"""

#: What :meth:`UnackedJobs.requeue` answers.
REQUEUED, GONE, CHANGED = "requeued", "gone", "changed"


@dataclass(frozen=True, slots=True)
class UnackedJob:
    """One job a worker took and has not acknowledged, as read from Redis (cleaned).

    ``tag`` is its delivery tag (the hash field); ``value`` the hash value exactly as Redis
    holds it (what a requeue checks is still there); ``queue`` the queue its route names
    (the routing key on kombu's default exchange; None when it cannot be told here);
    ``delivered_at`` the ``unacked_index`` score and ``redeliver_at`` that plus the
    visibility timeout.  ``wire_priority`` is the message's ``priority`` property.
    """

    tag: str
    value: bytes
    id: str
    task: str
    exchange: str
    routing_key: str
    delivered_at: float
    redeliver_at: float
    args: str = ""
    kwargs: str = ""
    priority: int | None = None
    wire_priority: int | None = None
    queue: str | None = None

    @property
    def short_name(self) -> str:
        """The task name's last part (``send_notification_email``)."""
        return self.task.rsplit(".", 1)[-1]


@dataclass(frozen=True, slots=True)
class UnackedPage:
    """A window of ``unacked_index`` (oldest delivery first) with both keys' counts.

    ``total`` is ``HLEN unacked``; ``indexed`` ``ZCARD unacked_index`` (a hash entry with no
    delivery time is never swept back: the difference is shown).  ``jobs`` the usable entries
    of the window, ``tally`` what was skipped or cleaned.  ``available`` False: ``error``
    says why nothing was read; ``supported`` False: it never can be on this broker.
    """

    offset: int = 0
    limit: int = UNACKED_PAGE_SIZE
    total: int = 0
    indexed: int = 0
    jobs: list[UnackedJob] = field(default_factory=list)
    #: entries the window held (usable or not)
    read: int = 0
    tally: Tally = field(default_factory=Tally)
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT
    taken_at: float = 0.0
    available: bool = True
    error: str = ""
    supported: bool = True

    @property
    def skipped(self) -> int:
        """Entries of the window that could not be shown."""
        return self.tally.invalid


class UnackedJobs:
    """Lists kombu's unacknowledged jobs a page at a time and requeues one atomically.

    ``client`` is a redis-py client on the broker's database; the layout (``priority_steps``,
    ``sep``, ``keyprefix``, key names) and the visibility timeout are the app's
    ``broker_transport_options`` (:func:`make_unacked_jobs`).  ``scripts_run`` counts the
    scripts sent.
    """

    def __init__(
        self,
        client: Any,
        visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
        *,
        priority_steps: Sequence[int] = (0, 3, 6, 9),
        sep: str = "\x06\x16",
        keyprefix: str = "",
        unacked_key: str = "unacked",
        index_key: str = "unacked_index",
        page_size: int = UNACKED_PAGE_SIZE,
        max_value_bytes: int = MAX_VALUE_BYTES,
        min_priority: int = 0,
        max_priority: int = 9,
        default_priority: int = 0,
    ) -> None:
        self.client = client
        self.visibility_timeout = float(visibility_timeout)
        self.priority_steps: list[int] = sorted(set(priority_steps)) or [0]
        self.sep = sep
        self.keyprefix = keyprefix
        self.unacked_key = keyprefix + unacked_key
        self.index_key = keyprefix + index_key
        self.page_size = max(1, page_size)
        self.max_value_bytes = max_value_bytes
        self.min_priority = min_priority
        self.max_priority = max_priority
        self.default_priority = default_priority
        self._read = client.register_script(READ_SCRIPT)
        self._requeue = client.register_script(REQUEUE_SCRIPT)
        self.scripts_run = 0

    # ---- reading -------------------------------------------------------------------------
    def read_page(self, offset: int = 0, limit: int | None = None) -> UnackedPage:
        """The window ``[offset, offset + limit)`` of the jobs by delivery time (oldest first).

        An offset past the end gives the last page.  Raises redis errors to the caller.
        """
        limit = max(1, min(limit or self.page_size, self.page_size))
        offset = max(0, offset)
        total, indexed, items = self._window(offset, limit)
        if offset and offset >= indexed:
            offset = max(0, (indexed - 1) // limit * limit)
            total, indexed, items = self._window(offset, limit)
        tally = Tally()
        now = time.time()
        routes = self._routes({(e, rk) for e, rk in self._peek_routes(items)})
        jobs: list[UnackedJob] = []
        for tag, score, value, size in items:
            if size < 0:
                tally.skip("unacked_index names a tag that is not in unacked (acked meanwhile)")
                continue
            if not value:
                tally.skip(f"unacked message of {size:,} bytes: too large to show")
                continue
            fields = clean_unacked_entry(tag, score, value, tally, now)
            if fields is None:
                continue
            queues = routes.get((fields["exchange"], fields["routing_key"]), [])
            jobs.append(
                UnackedJob(
                    value=value,
                    redeliver_at=fields["delivered_at"] + self.visibility_timeout,
                    queue=queues[0] if len(queues) == 1 else None,
                    **fields,
                )
            )
        return UnackedPage(
            offset,
            limit,
            total,
            indexed,
            jobs,
            len(items),
            tally,
            self.visibility_timeout,
            taken_at=time.time(),
        )

    def _window(
        self, offset: int, limit: int
    ) -> tuple[int, int, list[tuple[Any, Any, bytes, int]]]:
        reply = self._read(
            keys=[self.unacked_key, self.index_key], args=[offset, limit, self.max_value_bytes]
        )
        self.scripts_run += 1
        items = [(_text(t), _score(s), as_bytes(v), int(n)) for t, s, v, n in reply[2]]
        return int(reply[0]), int(reply[1]), items

    @staticmethod
    def _peek_routes(items: list[tuple[Any, Any, bytes, int]]) -> set[tuple[str, str]]:
        from tui.sources.queue_lengths import parse_unacked_route

        out: set[tuple[str, str]] = set()
        for _tag, _when, value, _size in items:
            if value and (route := parse_unacked_route(value)) is not None:
                out.add(route)
        return out

    # ---- routing (kombu's ``_lookup`` for a direct exchange) ----------------------------
    def _routes(self, routes: set[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
        """The queues each ``(exchange, routing_key)`` delivers to, as kombu would restore it:
        the routing key on the default exchange (``""``), else the queues bound to the
        exchange with that routing key (one ``SMEMBERS`` per exchange, pipelined)."""
        from tui.sources.queue_lengths import parse_binding_member

        out: dict[tuple[str, str], list[str]] = {}
        exchanges = sorted({e for e, _rk in routes if e})
        members: list[Any] = []
        if exchanges:
            pipe = self.client.pipeline(transaction=False)
            for exchange in exchanges:
                pipe.smembers(self.keyprefix + BINDING_PREFIX + exchange)
            members = pipe.execute(raise_on_error=False)
        bound: dict[str, list[tuple[str, str]]] = {}
        for exchange, found in zip(exchanges, members, strict=True):
            if isinstance(found, Exception):
                continue
            bound[exchange] = [parse_binding_member(m, self.sep)[::2] for m in found]
        for exchange, routing_key in routes:
            if not exchange:
                queues = [routing_key] if routing_key else []
            else:
                queues = sorted({q for rk, q in bound.get(exchange, []) if rk == routing_key and q})
            out[(exchange, routing_key)] = [q for q in queues if is_key(q)]
        return out

    def queues_for(self, job: UnackedJob) -> list[str]:
        """The queues ``job`` goes back to (empty: no binding routes it)."""
        return self._routes({(job.exchange, job.routing_key)}).get(
            (job.exchange, job.routing_key), []
        )

    def list_key(self, queue: str, wire_priority: int | None) -> str:
        """kombu's ``_q_for_pri``: the list of ``queue`` for a message of ``wire_priority``
        (clamped to the transport's range; its default when absent), by priority step."""
        if wire_priority is None:
            pri = self.default_priority
        else:
            pri = max(min(int(wire_priority), self.max_priority), self.min_priority)
        steps = self.priority_steps
        step = steps[max(0, bisect(steps, pri) - 1)]
        return self.keyprefix + (f"{queue}{self.sep}{step}" if step else queue)

    # ---- requeueing -------------------------------------------------------------------
    def requeue(self, job: UnackedJob) -> tuple[str, list[str]]:
        """Put ``job`` back in its queue now: ``(REQUEUED | GONE | CHANGED, queues)``.

        GONE: the tag is no longer in ``unacked`` (acknowledged, or restored by a sweep);
        CHANGED: it holds another value than the one read.  In both cases nothing was
        written.  Raises ``LookupError`` when no queue is bound to its route (nothing
        written either) and redis errors to the caller.
        """
        queues = self.queues_for(job)
        if not queues:
            raise LookupError(
                f"no queue is bound to exchange {job.exchange!r} with routing key "
                f"{job.routing_key!r}: left in unacked"
            )
        payload = restored_payload(job.value)
        keys = [self.unacked_key, self.index_key]
        keys += [self.list_key(q, job.wire_priority) for q in queues]
        keys += [self.keyprefix + wakeup_key(q) for q in queues]
        done = int(
            self._requeue(
                keys=keys, args=[job.tag, job.value, payload, WAKEUP_TOKEN, WAKEUP_TTL_MS]
            )
        )
        self.scripts_run += 1
        return (REQUEUED if done == 1 else GONE if done == 0 else CHANGED), queues


def restored_payload(value: bytes) -> bytes:
    """The message of an ``unacked`` value as kombu's ``_do_restore_message`` pushes it back:
    ``headers.redelivered`` and ``properties.delivery_info.redelivered`` set (where present),
    everything else as is."""
    from kombu.utils.json import dumps

    message = json.loads(value)[0]
    try:
        message["headers"]["redelivered"] = True
        message["properties"]["delivery_info"]["redelivered"] = True
    except (KeyError, TypeError):
        pass
    text = dumps(message)
    return text.encode("utf-8") if isinstance(text, str) else bytes(text)


def _score(value: Any) -> float | None:
    try:
        return float(_text(value))
    except (TypeError, ValueError):
        return None


def make_unacked_jobs(
    app: Any,
    settings: Any = None,
    *,
    broker_url: str | None = None,
    socket_connect_timeout: float = 5.0,
    socket_timeout: float = 5.0,
) -> UnackedJobs | None:
    """The :class:`UnackedJobs` of ``app``'s broker, or None when it is not Redis."""
    from kombu.transport.redis import Channel

    from .queue_lengths import transport_layout
    from .redis_conn import broker_redis_client

    client = broker_redis_client(
        app,
        settings,
        broker_url=broker_url,
        socket_connect_timeout=socket_connect_timeout,
        socket_timeout=socket_timeout,
    )
    if client is None:
        return None
    layout = transport_layout(app)
    opts = dict(app.conf.broker_transport_options or {})
    locator = make_unacked_locator(app, client)  # the same key names and timeout
    return UnackedJobs(
        client,
        locator.visibility_timeout,
        priority_steps=layout["priority_steps"],
        sep=layout["sep"],
        keyprefix=layout["keyprefix"],
        unacked_key=opts.get("unacked_key", Channel.unacked_key),
        index_key=opts.get("unacked_index_key", Channel.unacked_index_key),
        min_priority=Channel.min_priority,
        max_priority=Channel.max_priority,
        default_priority=Channel.default_priority,
    )
