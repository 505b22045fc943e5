"""The orders the Tasks pane can show its rows in: one sort-key function each.

A key maps a task (``tui.core.model.TaskRecord``-like) to a number; the pane shows the
largest first.  Rows whose keys tie keep their order, newest arrival on top.  Another
order is one more :class:`TaskOrder` in :data:`TASK_ORDERS` (``s`` cycles them); the pane
re-keys only the rows that changed, so a key must depend on the task's record alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tui.core.states import (
    FAILURE,
    LOST,
    PENDING,
    PURGED,
    RECEIVED,
    REJECTED,
    RETRY,
    REVOKED,
    SENT,
    STARTED,
    SUCCESS,
)


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


#: Running tasks sort above every finished one in the runtime order (a runtime key is at
#: most ten years of seconds; a start time is a Unix time).
_RUNNING_BASE = 1e11


def by_runtime(task: object) -> float:
    """Sort key: running tasks first, the longest-running on top (earliest start), then the
    finished ones by runtime, longest first; tasks that never ran last.

    A key may depend on the task's record alone (never on the clock), so a running task is
    keyed by its start time: the earlier it started, the longer it has run.
    """
    if getattr(task, "state", None) == STARTED:
        started = getattr(task, "started", None)
        return _RUNNING_BASE * 2 - started if started is not None else _RUNNING_BASE
    runtime = getattr(task, "runtime", None)
    if runtime is None:
        started, finished = getattr(task, "started", None), getattr(task, "finished", None)
        if started is not None and finished is not None and finished >= started:
            runtime = finished - started
    return runtime if runtime is not None else -1.0


def run_time(task: object) -> float | None:
    """The time the runtime order's Time column shows: when the task started, else first seen."""
    return getattr(task, "started", None) or first_seen(task)


#: The state order's groups, first on top: what needs a look first (failed, lost, running),
#: then what waits, then what ended as asked.  Unknown states go with the last group.
STATE_GROUPS: tuple[tuple[str, ...], ...] = (
    (FAILURE, LOST),
    (STARTED, RETRY),
    (RECEIVED, SENT, PENDING),
    (REVOKED, REJECTED, PURGED),
    (SUCCESS,),
)
_STATE_GROUP: dict[str, int] = {s: i for i, group in enumerate(STATE_GROUPS) for s in group}
#: Room for one group's activity times (Unix seconds) below the next group's base.
_GROUP_SPAN = 1e11


def by_state(task: object) -> float:
    """Sort key: by :data:`STATE_GROUPS` (failures first), the latest activity first within
    a group."""
    group = _STATE_GROUP.get(getattr(task, "state", None) or "", len(STATE_GROUPS) - 1)
    return (len(STATE_GROUPS) - group) * _GROUP_SPAN + (last_activity(task) or 0.0)


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
        TaskOrder("runtime", "longest runtime first", by_runtime, run_time),
        TaskOrder("state", "by state: failures first", by_state, last_activity),
    )
}
DEFAULT_ORDER = TASK_ORDERS["activity"]


def next_order(order: TaskOrder) -> TaskOrder:
    """The order after ``order`` in :data:`TASK_ORDERS` (``s`` on the Tasks pane cycles them)."""
    names = list(TASK_ORDERS)
    return TASK_ORDERS[names[(names.index(order.name) + 1) % len(names)]]
