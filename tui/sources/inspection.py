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
    Tally,
    clean_inspect_tasks,
    clean_queue_replies,
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
