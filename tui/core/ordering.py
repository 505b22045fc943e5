"""The orders the Tasks pane can show its rows in: one sort-key function each.

A key maps a task (``tui.core.model.TaskRecord``-like) to a number; the pane shows the
largest first.  Rows whose keys tie keep their order, newest arrival on top.  Another
order (runtime, state...) is one more :class:`TaskOrder` in :data:`TASK_ORDERS`; the pane
re-keys only the rows that changed, so a key must depend on the task's record alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def by_activity(task: object) -> float:
    """The task's latest event time (its last change), unknown ones last."""
    return getattr(task, "last_event", None) or 0.0


def by_sent(task: object) -> float:
    """When the task was sent (else first received or started), unknown ones last."""
    return (
        getattr(task, "sent", None)
        or getattr(task, "received", None)
        or getattr(task, "started", None)
        or 0.0
    )


@dataclass(frozen=True, slots=True)
class TaskOrder:
    """One order of the Tasks pane: its name, how the screen says it, and its key."""

    name: str
    label: str
    key: Callable[[object], float]


TASK_ORDERS: dict[str, TaskOrder] = {
    order.name: order
    for order in (
        TaskOrder("activity", "latest activity first", by_activity),
        TaskOrder("sent", "newest sent first", by_sent),
    )
}
DEFAULT_ORDER = TASK_ORDERS["activity"]
