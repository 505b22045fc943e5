"""Pause records in the broker: who consumed a queue when a console paused it.

One Redis hash, ``afirgen:paused`` (after the transport's ``global_keyprefix``): field = queue,
value = JSON ``{"workers": [...], "paused_at": epoch, "by": "user"}``.  Written by the action
that pauses, deleted by the one that resumes, read by every console on its ``inspect`` round,
so a pause survives a console restart and a second console sees it.

On a broker that is not Redis there is nowhere to keep it: :attr:`PauseRecordStore.available`
is False and :attr:`PauseRecordStore.why_not` says so.  Blocking network I/O: call from a
thread worker.
"""

from __future__ import annotations

import json
from typing import Any

from celery import Celery

from tui.core.pauses import PauseRecord
from tui.sources.validate import Tally, clean_pause_record

#: the hash's name, after the transport's global_keyprefix
PAUSED_KEY = "afirgen:paused"


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
        """Every record, cleaned at the trust boundary (a bad one is counted and skipped)."""
        tally = tally if tally is not None else Tally()
        out: dict[str, PauseRecord] = {}
        for queue, raw in (self._client().hgetall(self.key) or {}).items():
            record = clean_pause_record(queue, raw, tally)
            if record is not None:
                out[record.queue] = record
        return out

    def read(self, queue: str, tally: Tally | None = None) -> PauseRecord | None:
        """The record of ``queue``, or None."""
        raw = self._client().hget(self.key, queue)
        if raw is None:
            return None
        return clean_pause_record(queue, raw, tally if tally is not None else Tally())

    def put(self, record: PauseRecord) -> None:
        """Keep ``record`` (replacing the queue's previous one)."""
        value = {"workers": list(record.workers), "paused_at": record.paused_at, "by": record.by}
        self._client().hset(self.key, record.queue, json.dumps(value))

    def delete(self, queue: str) -> None:
        """Forget the pause of ``queue``."""
        self._client().hdel(self.key, queue)
