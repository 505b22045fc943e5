"""Backfill: tasks the console never saw, from Celery's Redis result backend, into the history.

The reading of the backend is :mod:`tui.sources.backend` (broker I/O lives in sources);
this module turns each ``celery-task-meta-<uuid>`` record, once it has passed the trust
boundary, into a history row and stores it marked ``source='backend'``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tui.core.states import R_FINAL, is_final
from tui.history.backend import HistoryBackend
from tui.history.store import SOURCE_BACKEND
from tui.sources.backend import ResultBackendReader
from tui.sources.validate import Tally, clean_backend_meta, is_key


@dataclass(slots=True)
class BackfillResult:
    """What :func:`backfill_from_backend` did."""

    scanned: int = 0
    inserted: int = 0
    updated: int = 0
    skipped: int = 0
    unreadable: int = 0
    uuids: list[str] = field(default_factory=list)
    #: ``stop()`` said so before the scan was done
    stopped: bool = False


def parse_utc_iso(value: Any) -> float | None:
    """Epoch seconds of an ISO time (no zone = UTC, as Celery's ``date_done``), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)  # Celery's date_done is UTC (enable_utc)
    return dt.timestamp()


def _exception_text(result: Any) -> str | None:
    if isinstance(result, dict) and "exc_type" in result:
        msg = result.get("exc_message")
        if isinstance(msg, list | tuple):
            inner = ", ".join(repr(m) for m in msg)
        elif msg is None:
            inner = ""
        else:
            inner = repr(msg)
        return f"{result['exc_type']}({inner})"
    return None if result is None else repr(result)


def meta_to_row(uuid: str, meta: dict[str, Any]) -> dict[str, Any]:
    """A history row from one ``celery-task-meta-<uuid>`` value (decoded JSON)."""
    state = str(meta.get("status") or "PENDING").upper()
    result = meta.get("result")
    done = parse_utc_iso(meta.get("date_done"))
    row: dict[str, Any] = {
        "uuid": uuid,
        "state": state,
        "name": meta.get("name"),
        "hostname": meta.get("worker"),
        "queue": meta.get("queue"),
        "retries": meta.get("retries") if meta.get("retries").__class__ is int else None,
        "parent_id": meta.get("parent_id"),
        "traceback": meta.get("traceback"),
        "finished": done if is_final(state) else None,
    }
    for key in ("args", "kwargs"):
        v = meta.get(key)
        if isinstance(v, bytes | str) and v:
            try:  # encoded by the backend (result_extended with encode=True)
                v = json.loads(v)
            except ValueError:
                pass
        row[key] = (
            None if v is None else repr(tuple(v) if key == "args" and isinstance(v, list) else v)
        )
    if state == "SUCCESS":
        row["result"] = None if result is None else repr(result)
    elif state in ("FAILURE", "RETRY"):
        row["exception"] = _exception_text(result)
    elif state == "REVOKED":
        row["revoke_reason"] = "revoked"
        row["exception"] = _exception_text(result)
    if row["finished"] is None and done is not None:
        row["retried"] = done
    return row


def backfill_from_backend(
    backend: Any,
    store: HistoryBackend,
    known_uuids: Collection[str] = (),
    limit: int = 50_000,
    prefix: str = "celery-task-meta-",
    batch: int = 500,
    scan_count: int = 1000,
    tally: Tally | None = None,
    stop: Callable[[], bool] | None = None,
) -> BackfillResult:
    """Fill the history with tasks the console did not see, from Celery's Redis result backend.

    SCANs (never KEYS) ``<prefix>*``, skips ``known_uuids`` (the live model's tasks) and
    tasks the store already holds in a finished state, and upserts the rest with
    ``source='backend'`` (a task the store knew from events keeps ``source='events'`` and
    only gains the outcome).  At most ``limit`` keys are read.  ``backend`` is a
    :class:`tui.sources.backend.ResultBackendReader` (or a redis-py client on the result
    backend's database, wrapped in one).  Blocking network I/O: call it from a thread worker.  Each
    record passes the trust boundary (:func:`tui.sources.validate.clean_backend_meta`,
    counted in ``tally``) before it becomes a row.  ``stop()``, asked before every batch
    is written, ends it early (the console closing, or turning the store to another
    cluster: the rows would be filed under that one).
    """
    tally = tally if tally is not None else Tally()
    reader = (
        backend
        if isinstance(backend, ResultBackendReader)
        else ResultBackendReader(backend, prefix, scan_count)
    )
    res = BackfillResult()
    known = known_uuids if isinstance(known_uuids, set | frozenset | dict) else set(known_uuids)
    pending: list[tuple[str, bytes | str]] = []

    def flush() -> None:
        if not pending:
            return
        if stop is not None and stop():
            res.stopped = True
            pending.clear()
            return
        uuids = [u for u, _ in pending]
        values = reader.read([k for _, k in pending])
        have = store.existing(uuids)
        new_rows: list[dict[str, Any]] = []
        upd_rows: list[dict[str, Any]] = []
        for uuid, raw in zip(uuids, values, strict=True):
            if raw is None:
                continue  # expired between SCAN and MGET
            try:
                meta = json.loads(raw)
            except ValueError:
                res.unreadable += 1
                continue
            if not isinstance(meta, dict):
                res.unreadable += 1
                continue
            rank = have.get(uuid)
            if rank is not None and rank >= R_FINAL:
                res.skipped += 1
                continue
            row = meta_to_row(uuid, clean_backend_meta(meta, tally))
            (new_rows if rank is None else upd_rows).append(row)
        if new_rows:
            store.upsert(new_rows, source=SOURCE_BACKEND)
            res.inserted += len(new_rows)
            res.uuids.extend(r["uuid"] for r in new_rows)
        if upd_rows:
            store.upsert(upd_rows, source=SOURCE_BACKEND)  # stays 'events' on conflict
            res.updated += len(upd_rows)
        pending.clear()

    for uuid, key in reader.task_keys():
        res.scanned += 1
        if uuid in known or not uuid:
            res.skipped += 1
        elif not is_key(uuid):  # a key name with escapes or of any length: not a task id
            res.skipped += 1
            tally.skip("backend key is not a valid task id")
        else:
            pending.append((uuid, key))
            if len(pending) >= batch:
                flush()
        if res.scanned >= limit or res.stopped:
            break
    flush()
    return res
