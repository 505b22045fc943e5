"""Housekeeping tasks: archive old closed FIRs, drop expired cache entries, delete old temp files.

Each one is idempotent (a second run finds nothing left to do) and every parameter has a
default; a negative or non-numeric parameter fails at once (no retry).
"""

from __future__ import annotations

import math
import os
import stat
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery import Task

from . import records
from .base import PermanentTaskError, afirgen_task, result, task_settings

#: Rows deleted per transaction, so a big purge never holds the write lock for long.
CACHE_DELETE_BATCH = 1000
#: FIR ids listed in a result (the count is always complete).
MAX_LISTED_IDS = 100


def _number(value: object, name: str, *, integer: bool, maximum: float) -> Any:
    """``value`` as a non-negative number no larger than ``maximum``, or :class:`PermanentTaskError`."""
    if isinstance(value, str):
        try:
            value = float(value) if not integer else int(value)
        except ValueError:
            raise PermanentTaskError(f"{name}={value!r} is not a number") from None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise PermanentTaskError(f"{name}={value!r} is not a number")
    if integer and isinstance(value, float):
        if not value.is_integer():
            raise PermanentTaskError(f"{name}={value!r} is not a whole number")
        value = int(value)
    if value < 0:
        raise PermanentTaskError(f"{name}={value!r} must not be negative")
    if value > maximum:
        raise PermanentTaskError(f"{name}={value!r} must be at most {maximum:g}")
    return value


@afirgen_task("afirgen_tasks.cleanup.archive_old_records")
def archive_old_records(self: Task, days: int = 365) -> dict[str, Any]:
    """Mark closed FIRs filed more than ``days`` days ago as ``archived`` (with ``archived_at``)."""
    started = time.monotonic()
    days = _number(days, "days", integer=True, maximum=36500)
    settings = task_settings(self)
    now = records.utc_now()
    cutoff = records.utc_iso(now - timedelta(days=days))
    with records.open_db(settings.fir_db_path) as conn, records.transaction(conn):
        ids = [
            row[0]
            for row in conn.execute(
                "UPDATE firs SET status = 'archived', archived_at = ? WHERE status = 'closed' AND filed_at < ? RETURNING id",
                (records.utc_iso(now), cutoff),
            )
        ]
    ids.sort()
    return result(
        "ok", started, archived=len(ids), fir_ids=ids[:MAX_LISTED_IDS], cutoff=cutoff, days=days
    )


@afirgen_task("afirgen_tasks.cleanup.clear_expired_cache")
def clear_expired_cache(self: Task, max_entries: int | None = None) -> dict[str, Any]:
    """Delete expired cache entries; with ``max_entries``, also evict the entries closest to
    expiry until at most that many remain."""
    started = time.monotonic()
    if max_entries is not None:
        max_entries = _number(max_entries, "max_entries", integer=True, maximum=10**12)
    settings = task_settings(self)
    now = records.utc_iso(records.utc_now())
    evicted = 0
    with records.open_db(settings.fir_db_path) as conn:
        expired = _delete_in_batches(
            conn,
            "DELETE FROM cache WHERE rowid IN (SELECT rowid FROM cache WHERE expires_at <= ? LIMIT ?)",
            lambda: (now, CACHE_DELETE_BATCH),
        )
        if max_entries is not None:
            evicted = _delete_in_batches(
                conn,
                "DELETE FROM cache WHERE rowid IN (SELECT rowid FROM cache ORDER BY expires_at DESC, key "
                "LIMIT ? OFFSET ?)",
                lambda: (CACHE_DELETE_BATCH, max_entries),
            )
        remaining = conn.execute("SELECT count(*) FROM cache").fetchone()[0]
    return result("ok", started, expired=expired, evicted=evicted, remaining=remaining)


def _delete_in_batches(conn: Any, sql: str, params: Callable[[], tuple[Any, ...]]) -> int:
    """Run a ``... LIMIT <CACHE_DELETE_BATCH>`` DELETE until it deletes less than a batch.

    One short transaction per batch: a single huge DELETE would hold the write lock.
    ``params`` is called per batch so tests can shrink the batch size.
    """
    total = 0
    while True:
        with records.transaction(conn):
            n = conn.execute(sql, params()).rowcount
        total += n
        if n < CACHE_DELETE_BATCH:
            return total


@afirgen_task("afirgen_tasks.cleanup.cleanup_temp_files")
def cleanup_temp_files(self: Task, max_age_hours: float = 24) -> dict[str, Any]:
    """Delete regular files under ``[paths] temp_dir`` last modified more than ``max_age_hours`` ago.

    Symbolic links are neither followed nor deleted, so nothing outside the temp directory
    is ever touched; directories are kept.  Files that vanish meanwhile are skipped.
    """
    started = time.monotonic()
    max_age_hours = _number(max_age_hours, "max_age_hours", integer=False, maximum=24 * 36500)
    settings = task_settings(self)
    top = settings.paths_temp_dir
    cutoff = time.time() - max_age_hours * 3600
    deleted = freed = kept = skipped = 0
    if not top.is_dir():
        return result("ok", started, deleted=0, bytes_freed=0, kept=0, skipped=0, temp_dir=str(top))
    # fwalk with dir fds: a directory swapped for a symlink mid-walk cannot redirect us
    for _dirpath, _dirnames, filenames, dir_fd in os.fwalk(top, follow_symlinks=False):
        for name in filenames:
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                skipped += 1  # symlinks, sockets, fifos
                continue
            if st.st_mtime >= cutoff:
                kept += 1
                continue
            try:
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                continue
            deleted += 1
            freed += st.st_size
    return result(
        "ok",
        started,
        deleted=deleted,
        bytes_freed=freed,
        kept=kept,
        skipped=skipped,
        temp_dir=str(top),
    )
