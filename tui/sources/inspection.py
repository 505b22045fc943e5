"""Periodic ``inspect`` of the workers: pool sizes, queues consumed, active and reserved tasks.

Runs in a thread worker of the UI (it blocks on the broker for up to ``timeout``); the
result is a plain :class:`InspectionResult` posted back to the UI thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from tui.sources.validate import (
    TASK_INFO_ITEMS,
    Tally,
    clean_conf_flags,
    clean_detail_stats,
    clean_inspect_tasks,
    clean_queue_replies,
    clean_registered_replies,
    clean_scheduled_tasks,
    clean_stats_replies,
)


@dataclass(slots=True)
class InspectionResult:
    """What the workers answered; ``error`` is set (scrubbed) when the broker could not be asked."""

    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    active_queues: dict[str, list[str]] = field(default_factory=dict)
    active: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    reserved: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    error: str = ""
    duration: float = 0.0
    taken_at: float = 0.0


def inspect_workers(
    app: Celery,
    timeout: float,
    expected: int | None = None,
    tasks: bool = False,
    scrub: Any = None,
    tally: Tally | None = None,
) -> InspectionResult:
    """Ask every worker for ``stats`` and ``active_queues`` (and ``active``/``reserved`` if ``tasks``).

    ``expected`` (the number of workers known to be online) lets the call return as soon as
    all of them replied instead of always waiting the full ``timeout``.  Every reply passes
    the trust boundary (:mod:`tui.sources.validate`): bad hostnames, queue names and numbers
    are skipped or dropped and counted in ``tally``.
    """
    tally = tally if tally is not None else Tally()
    started = time.monotonic()
    out = InspectionResult(taken_at=time.time())
    try:
        insp = app.control.inspect(timeout=timeout, limit=expected or None)
        raw_stats = insp.stats() or {}
        out.stats = clean_stats_replies(raw_stats, tally)
        # Nodes that answered stats are the ones to wait for in the next calls: all of them,
        # the ones the gate rejected too.  Counting only the accepted ones let a node with
        # a forged name answer first and fill the limit, so a real worker's queues, active
        # and reserved tasks went unread.
        answered = len(raw_stats) if isinstance(raw_stats, dict) else 0
        insp = app.control.inspect(timeout=timeout, limit=answered or expected or None)
        out.active_queues = clean_queue_replies(insp.active_queues() or {}, tally)
        if tasks:
            out.active = clean_inspect_tasks(insp.active() or {}, tally)
            out.reserved = clean_inspect_tasks(insp.reserved() or {}, tally)
    except Exception as exc:  # the broker is down or answered garbage: report, never raise
        text = f"{type(exc).__name__}: {exc}"
        out.error = (scrub(text) if scrub else text)[:200]
    out.duration = time.monotonic() - started
    return out


@dataclass(slots=True)
class WorkerDetail:
    """One worker in detail (Enter on the Workers pane), every field cleaned at the boundary.

    ``answered`` is False when the worker did not reply to ``stats`` within the timeout (down
    or busy): the other fields are then empty.  ``pool_restarts`` is the worker's
    ``worker_pool_restarts`` setting (None: it did not say).
    """

    host: str
    answered: bool = False
    stats: dict[str, Any] = field(default_factory=dict)
    active: list[dict[str, Any]] = field(default_factory=list)
    reserved: list[dict[str, Any]] = field(default_factory=list)
    scheduled: list[dict[str, Any]] = field(default_factory=list)
    registered: list[dict[str, str]] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)
    pool_restarts: bool | None = None
    error: str = ""
    duration: float = 0.0
    taken_at: float = 0.0


def worker_detail(
    app: Celery, host: str, timeout: float, scrub: Any = None, tally: Tally | None = None
) -> WorkerDetail:
    """Ask ``host`` alone (``destination=[host]``) for its stats, tasks, registry, queues and conf.

    Each call returns as soon as that one worker replied (``limit=1``); when it does not
    answer ``stats`` the rest is not asked (each would wait the full ``timeout`` again).
    """
    tally = tally if tally is not None else Tally()
    started = time.monotonic()
    out = WorkerDetail(host, taken_at=time.time())
    try:
        insp = app.control.inspect(destination=[host], timeout=timeout, limit=1)
        stats = clean_detail_stats(insp.stats() or {}, tally).get(host)
        if stats is not None:
            out.answered = True
            out.stats = stats
            out.queues = clean_queue_replies(insp.active_queues() or {}, tally).get(host, [])
            out.active = clean_inspect_tasks(insp.active() or {}, tally).get(host, [])
            out.reserved = clean_inspect_tasks(insp.reserved() or {}, tally).get(host, [])
            out.scheduled = clean_scheduled_tasks(insp.scheduled() or {}, tally).get(host, [])
            out.registered = clean_registered_replies(
                insp.registered(*TASK_INFO_ITEMS) or {}, tally
            ).get(host, [])
            flags = clean_conf_flags(insp.conf() or {}, tally, ("worker_pool_restarts",))
            out.pool_restarts = flags.get(host, {}).get("worker_pool_restarts")
    except Exception as exc:  # the broker is down or answered garbage: report, never raise
        text = f"{type(exc).__name__}: {exc}"
        out.error = (scrub(text) if scrub else text)[:200]
    out.duration = time.monotonic() - started
    return out


def worker_queues(
    app: Celery, host: str, timeout: float, tally: Tally | None = None
) -> list[str] | None:
    """The queues ``host`` consumes now (``active_queues``), or None when it did not answer."""
    insp = app.control.inspect(destination=[host], timeout=timeout, limit=1)
    return clean_queue_replies(insp.active_queues() or {}, tally or Tally()).get(host)
