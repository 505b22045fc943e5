"""Reading Celery's Redis result backend: the task-meta keys, in SCAN windows and MGET batches.

Broker and backend I/O lives in ``tui.sources``; :mod:`tui.history.backfill` decides what
to do with each record once it has passed the trust boundary.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

#: The key prefix of Celery's Redis result backend records.
TASK_META_PREFIX = "celery-task-meta-"


class ResultBackendReader:
    """Task-meta records of a Redis result backend, read without blocking Redis.

    ``client`` is a redis-py client on the result backend's database (the caller opens and
    closes it).  Blocking network I/O: call from a thread worker.
    """

    def __init__(self, client: Any, prefix: str = TASK_META_PREFIX, scan_count: int = 1000) -> None:
        self.client = client
        self.prefix = prefix
        self.scan_count = scan_count

    def task_keys(self) -> Iterator[tuple[str, bytes | str]]:
        """``(uuid text, raw key)`` of every record, by SCAN (never KEYS: Redis stays responsive)."""
        plen = len(self.prefix)
        cursor: int | str = 0
        while True:
            cursor, keys = self.client.scan(
                cursor=cursor, match=self.prefix + "*", count=self.scan_count
            )
            for key in keys:
                text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
                yield text[plen:], key
            if int(cursor) == 0:
                break

    def read(self, keys: list[bytes | str]) -> list[bytes | str | None]:
        """The raw values of ``keys`` in one round trip (None where a record expired)."""
        return list(self.client.mget(keys)) if keys else []
