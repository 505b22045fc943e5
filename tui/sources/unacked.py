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
(:func:`tui.sources.validate.clean_unacked_hold`).  Blocking network I/O: call it from a
thread worker.  Never imports Textual.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tui.sources.validate import Tally, clean_unacked_hold, is_key

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
