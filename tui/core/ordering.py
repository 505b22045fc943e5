"""The orders the Tasks pane can show its rows in: one sort-key function each.

A key maps a task (``tui.core.model.TaskRecord``-like) to a number; the pane shows the
largest first.  Rows whose keys tie keep their order, newest arrival on top.  Another
order (runtime, state...) is one more :class:`TaskOrder` in :data:`TASK_ORDERS`; the pane
re-keys only the rows that changed, so a key must depend on the task's record alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def last_activity(task: object) -> float | None:
    """The task's latest event time (its last change), None when unknown."""
    return getattr(task, "last_event", None)


def first_seen(task: object) -> float | None:
    """When the task was sent (else first received or started), None when unknown."""
    return (
        getattr(task, "sent", None)
        or getattr(task, "received", None)
        or getattr(task, "started", None)
    )


def by_activity(task: object) -> float:
    """Sort key: the latest event time, unknown ones last."""
    return last_activity(task) or 0.0


def by_sent(task: object) -> float:
    """Sort key: the sent time, unknown ones last."""
    return first_seen(task) or 0.0


@dataclass(frozen=True, slots=True)
class TaskOrder:
    """One order of the Tasks pane: its name, how the screen says it, its key, and the time
    the Time column shows (the one the rows are sorted by, so the column reads in order)."""

    name: str
    label: str
    key: Callable[[object], float]
    time: Callable[[object], float | None]


TASK_ORDERS: dict[str, TaskOrder] = {
    order.name: order
    for order in (
        TaskOrder("activity", "latest activity first", by_activity, last_activity),
        TaskOrder("sent", "newest sent first", by_sent, first_seen),
    )
}
DEFAULT_ORDER = TASK_ORDERS["activity"]
