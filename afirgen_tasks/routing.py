"""Queues and task-name routing: which queue and default priority each task gets."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from .priority import DEFAULT_PRIORITY
from .settings import QUEUE_NAMES


@dataclass(frozen=True)
class Route:
    """A task-name pattern and where its tasks go."""

    pattern: str
    queue: str
    priority: int


#: Checked in order; the first pattern that matches a task name wins.
ROUTES: tuple[Route, ...] = (
    Route("afirgen_tasks.email.*", "email", 3),
    Route("afirgen_tasks.reports.*", "reports", 5),
    Route("afirgen_tasks.analytics.*", "analytics", 2),
    Route("afirgen_tasks.cleanup.*", "cleanup", 1),
    Route("*", "default", DEFAULT_PRIORITY),
)

QUEUES: tuple[str, ...] = QUEUE_NAMES


def route_for(task_name: str) -> Route:
    """The route for ``task_name`` (the catch-all sends everything else to ``default``)."""
    for route in ROUTES:
        if fnmatch.fnmatchcase(task_name, route.pattern):
            return route
    return ROUTES[-1]


def celery_task_routes() -> list[dict[str, dict[str, object]]]:
    """``task_routes`` for Celery: glob patterns in order, each with queue and priority."""
    return [{r.pattern: {"queue": r.queue, "priority": r.priority}} for r in ROUTES]
