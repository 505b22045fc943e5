"""The jobs waiting in one queue on the Redis broker: a page of them in run order, and the
two changes an operator may make to one of them (delete it, move it to the front).

kombu's Redis transport keeps one list per queue and priority step (``q`` for step 0,
``q<sep><step>`` for the others, :func:`afirgen_tasks.priority.redis_step_key`); it LPUSHes
new messages and the workers pop from the RIGHT end of the most urgent non-empty list
(step 0 first: operator priority 10).  So the job that runs next is the rightmost one of the
most urgent non-empty list, and "run order" walks the lists most urgent first, each from its
right end to its left.

* **Reading** is one Lua script (:data:`READ_SCRIPT`): the length of every list and the
  window ``[offset, offset + limit)`` of the run order, as ``LRANGE`` slices of the lists it
  overlaps, in one atomic step (the counts and the jobs are of the same instant).  Never the
  whole list: a page is at most :data:`PAGE_SIZE` messages, and a message larger than
  :data:`MAX_PAYLOAD_BYTES` is not sent back at all (it is counted as unreadable).
* **Every message is untrusted**: :func:`tui.sources.validate.clean_queued_message` decodes
  it defensively; what it cannot use is skipped and counted in the page's tally.
* **Changes are atomic**: a script removes the EXACT payload read (``LREM``) and, for a
  move, pushes the job to the right end of the most urgent list, with a wake-up token (as
  :meth:`afirgen_tasks.redis_transport.Channel._put` does) so an idle worker notices.  If
  a worker took the job meanwhile, ``LREM`` removes nothing and nothing else is done: the
  job is never lost or doubled.

No Textual here; blocking network I/O: call from a thread worker.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from afirgen_tasks.priority import (
    MAX_PRIORITY,
    MIN_PRIORITY,
    PRIORITY_HEADER,
    from_wire,
    redis_step_key,
    to_wire,
)
from afirgen_tasks.redis_transport import WAKEUP_TOKEN, WAKEUP_TTL_MS, wakeup_key
from tui.sources.redis_conn import as_bytes
from tui.sources.validate import Tally, clean_queued_message

#: Jobs read per page (one ``LRANGE`` window).
PAGE_SIZE = 50
#: A message larger than this is not returned by the read script (counted as unreadable).
MAX_PAYLOAD_BYTES = 1 << 20
#: What the screen says on a broker whose queues cannot be read message by message.
NOT_AVAILABLE = "waiting jobs can be listed on Redis brokers only"
_REDIS = "redis://"

#: KEYS: the queue's lists in run order (most urgent first).  ARGV: offset, limit, the
#: largest payload to return.  Returns ``{lengths, items}``; each item is
#: ``{index of its list, payload or '' when too large, payload size}``, in run order.
READ_SCRIPT = """
local offset = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local maxb = tonumber(ARGV[3])
local lens = {}
for i = 1, #KEYS do lens[i] = redis.call('LLEN', KEYS[i]) end
local items = {}
local first = 0
for i = 1, #KEYS do
  local n = lens[i]
  local lo = math.max(offset, first)
  local hi = math.min(offset + limit, first + n)
  if lo < hi then
    local j0 = lo - first
    local j1 = hi - first - 1
    -- run position j of a list is its index -(j + 1): the right end runs first
    local vals = redis.call('LRANGE', KEYS[i], -(j1 + 1), -(j0 + 1))
    for k = #vals, 1, -1 do
      local v = vals[k]
      if #v > maxb then
        items[#items + 1] = {i - 1, '', #v}
      else
        items[#items + 1] = {i - 1, v, #v}
      end
    end
  end
  first = first + n
end
return {lens, items}
"""

#: KEYS: the job's list.  ARGV: its exact payload.  Returns how many were removed (0 or 1).
#: ``LREM`` with a negative count searches from the right end, where jobs about to run are.
DELETE_SCRIPT = """
return redis.call('LREM', KEYS[1], -1, ARGV[1])
"""

#: KEYS: the job's list, the most urgent list, the queue's wake-up list.  ARGV: the exact
#: payload, the payload to push (the same job at priority 10), the wake-up token and its
#: time to live in ms.  Returns 1 when moved, 0 when the job was no longer in its list (then
#: nothing at all is written).
MOVE_SCRIPT = """
if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('LPUSH', KEYS[3], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return 1
"""


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """One waiting job as read from Redis: what it is (cleaned) and where it sits.

    ``payload`` is the message exactly as Redis holds it (what a change removes); ``key``
    its list; ``band`` the operator priority of that list; ``position`` its place in the
    run order (0 runs next).  ``priority`` is the operator priority header (None when
    absent or bad).  ``eta``/``expires`` are epoch seconds or None.
    """

    queue: str
    key: str
    band: int
    position: int
    payload: bytes
    id: str
    task: str
    args: str
    kwargs: str
    priority: int | None = None
    wire_priority: int | None = None
    eta: float | None = None
    expires: float | None = None
    retries: int | None = None
    delivery_tag: str | None = None

    @property
    def identity(self) -> str:
        """Stable while the job waits: its delivery tag, else a digest of its payload."""
        if self.delivery_tag:
            return "tag:" + self.delivery_tag
        return "sha1:" + hashlib.sha1(self.payload, usedforsecurity=False).hexdigest()

    @property
    def short_name(self) -> str:
        """The task name's last part (``send_notification_email``)."""
        return self.task.rsplit(".", 1)[-1]


@dataclass(frozen=True, slots=True)
class JobsPage:
    """A window of a queue's waiting jobs, in run order, with every band's count.

    ``bands`` maps each operator priority (1-10) to the jobs waiting at it; ``offset`` is
    the run position of the window's first message; ``jobs`` the usable ones in it and
    ``tally`` what was skipped (``invalid``) or cleaned.  ``available`` False: ``error``
    says why nothing was read; ``supported`` False: it never can be on this broker.
    """

    queue: str
    offset: int = 0
    limit: int = PAGE_SIZE
    bands: dict[int, int] = field(default_factory=dict)
    jobs: list[QueuedJob] = field(default_factory=list)
    #: messages the window held (usable or not)
    read: int = 0
    tally: Tally = field(default_factory=Tally)
    taken_at: float = 0.0
    available: bool = True
    error: str = ""
    supported: bool = True

    @property
    def total(self) -> int:
        """Jobs waiting in the queue, every band."""
        return sum(self.bands.values())

    @property
    def skipped(self) -> int:
        """Messages of the window that could not be shown."""
        return self.tally.invalid


class QueueJobs:
    """Reads and changes the waiting jobs of the queues on one Redis broker.

    ``scripts_run`` counts the scripts sent (each is one Redis command); ``last_read`` is
    the number of messages the last read brought back.  Thread-safe as redis-py's client is
    (the counters are informative).
    """

    def __init__(
        self,
        client: redis.Redis,
        priority_steps: Sequence[int],
        sep: str,
        keyprefix: str = "",
        *,
        page_size: int = PAGE_SIZE,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
    ) -> None:
        self.client = client
        self.priority_steps: tuple[int, ...] = tuple(sorted(set(priority_steps))) or (0,)
        self.sep = sep
        self.keyprefix = keyprefix
        self.page_size = max(1, page_size)
        self.max_payload_bytes = max_payload_bytes
        self._read = client.register_script(READ_SCRIPT)
        self._delete = client.register_script(DELETE_SCRIPT)
        self._move = client.register_script(MOVE_SCRIPT)
        self.scripts_run = 0
        self.last_read = 0

    # ---- keys ----------------------------------------------------------------------------
    def lists(self, queue: str) -> list[tuple[str, int]]:
        """``(Redis key, operator priority)`` of each of ``queue``'s lists, in run order."""
        return [
            (self.keyprefix + redis_step_key(queue, step, self.sep), from_wire(step, _REDIS))
            for step in self.priority_steps
        ]

    def front_key(self, queue: str) -> str:
        """The list of ``queue`` the workers empty first (its most urgent step)."""
        return self.keyprefix + redis_step_key(queue, self.priority_steps[0], self.sep)

    # ---- reading -------------------------------------------------------------------------
    def read_page(self, queue: str, offset: int = 0, limit: int | None = None) -> JobsPage:
        """The window ``[offset, offset + limit)`` of ``queue``'s run order (next first).

        An offset past the end gives the last page.  Raises redis errors to the caller.
        """
        limit = max(1, min(limit or self.page_size, self.page_size))
        offset = max(0, offset)
        lists = self.lists(queue)
        lengths, items = self._window(lists, offset, limit)
        total = sum(lengths)
        if offset and offset >= total:
            offset = max(0, (total - 1) // limit * limit)
            lengths, items = self._window(lists, offset, limit)
        bands = dict.fromkeys(range(MIN_PRIORITY, MAX_PRIORITY + 1), 0)
        for (_key, band), n in zip(lists, lengths, strict=True):
            bands[band] += n
        tally = Tally()
        now = time.time()
        jobs: list[QueuedJob] = []
        for position, (index, payload, size) in enumerate(items, start=offset):
            key, band = lists[index]
            if not payload:
                tally.skip(f"queued message of {size:,} bytes: too large to show")
                continue
            fields = clean_queued_message(payload, tally, now)
            if fields is None:
                continue
            jobs.append(QueuedJob(queue, key, band, position, payload, **fields))
        return JobsPage(queue, offset, limit, bands, jobs, len(items), tally, taken_at=time.time())

    def _window(
        self, lists: list[tuple[str, int]], offset: int, limit: int
    ) -> tuple[list[int], list[tuple[int, bytes, int]]]:
        keys = [key for key, _band in lists]
        reply = self._read(keys=keys, args=[offset, limit, self.max_payload_bytes])
        self.scripts_run += 1
        lengths = [int(n) for n in reply[0]]
        items = [(int(i), as_bytes(v), int(n)) for i, v, n in reply[1]]
        self.last_read = len(items)
        return lengths, items

    # ---- changing ------------------------------------------------------------------------
    def delete(self, job: QueuedJob) -> bool:
        """Remove ``job`` from its list; False when it was no longer there (nothing changed)."""
        removed = self._delete(keys=[job.key], args=[job.payload])
        self.scripts_run += 1
        return int(removed) > 0

    def move_to_front(self, job: QueuedJob) -> bool:
        """Make ``job`` the next to run in its queue, at operator priority 10.

        The job's message is rewritten with priority 10 (its wire priority and the operator
        header, so a redelivery or a retry keeps it); False when it was no longer in its
        list (nothing changed).
        """
        moved = self._move(
            keys=[
                job.key,
                self.front_key(job.queue),
                self.keyprefix + wakeup_key(job.queue),
            ],
            args=[job.payload, front_payload(job.payload), WAKEUP_TOKEN, WAKEUP_TTL_MS],
        )
        self.scripts_run += 1
        return int(moved) > 0


def front_payload(payload: bytes) -> bytes:
    """``payload`` (a message the screen decoded) at operator priority 10: the most urgent
    wire priority in its properties and 10 in its priority header; everything else as is."""
    message: dict[str, Any] = json.loads(payload)
    for part in ("properties", "headers"):
        if not isinstance(message.get(part), dict):  # the screen shows such a job all the same
            message[part] = {}
    message["properties"]["priority"] = to_wire(MAX_PRIORITY, _REDIS)
    message["headers"][PRIORITY_HEADER] = MAX_PRIORITY
    return json.dumps(message).encode("utf-8")


def make_queue_jobs(
    app: Any,
    settings: Any = None,
    *,
    broker_url: str | None = None,
    socket_connect_timeout: float = 5.0,
    socket_timeout: float = 5.0,
) -> QueueJobs | None:
    """The :class:`QueueJobs` of ``app``'s broker, or None when it is not Redis."""
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
    return QueueJobs(client, layout["priority_steps"], layout["sep"], layout["keyprefix"])
