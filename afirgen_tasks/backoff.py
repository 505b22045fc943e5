"""Exponential backoff with jitter: stdlib only, so lean processes (the console's event
reader process) can use it without importing Celery (:mod:`afirgen_tasks.reliability`
re-exports it)."""

from __future__ import annotations

import random

#: Seconds before the first reconnect attempt and the cap between attempts.
BACKOFF_BASE = 1.0
BACKOFF_CAP = 30.0


def backoff_delay(
    attempt: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP, jitter: bool = True
) -> float:
    """Exponential backoff: ``base * 2**attempt`` capped at ``cap``, with "full jitter" in [50%, 100%].

    ``attempt`` counts from 0.  Jitter keeps a fleet of workers (or consoles) that lost
    the broker together from reconnecting in lockstep.
    """
    delay = min(cap, base * (2 ** max(0, attempt)))
    if jitter:
        delay *= random.uniform(0.5, 1.0)
    return delay
