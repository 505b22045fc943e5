"""Task states: their names, ranks, which are final, and the symbol each is shown with.

The one definition used by the model, the history's SQL, the actions, the formatting and
the exports.  Pure Python.

A task only moves to a higher rank, except out of the retry cycle (rank 4: RETRY, or a
REJECTED with requeue) into the next attempt.  The final states (rank >= 5) follow
``celery.states.precedence``: SUCCESS > FAILURE > REVOKED > REJECTED.
"""

from __future__ import annotations

PENDING = "PENDING"  # known only from the backend or inspect, no event yet
SENT = "SENT"
RECEIVED = "RECEIVED"
STARTED = "STARTED"
RETRY = "RETRY"
REJECTED = "REJECTED"
REVOKED = "REVOKED"
FAILURE = "FAILURE"
SUCCESS = "SUCCESS"
#: Console-only: the console purged the task's queue while the task was waiting in it, or
#: deleted that one job from its queue (the queue's jobs screen).
#: Celery has no such state (the message is deleted and the backend says PENDING); it
#: keeps SENT's rank, so any later event about the task (a worker had it after all)
#: replaces it.
PURGED = "PURGED"
#: Console-only: the task was RECEIVED or STARTED on a worker that went away (missed its
#: heartbeats, said worker-offline, or came back as a new process).  The broker still holds
#: the message unacknowledged and hands it out again once the visibility timeout has passed
#: since it was delivered.  Celery has no such state.  It ranks with SENT (the job waits for
#: the broker again), below RECEIVED: any later event about the task (the redelivery's
#: task-received, or a late event from the worker after all) replaces it; a result-backend
#: PENDING (rank 0, "unknown") never does.
LOST = "LOST"

#: Every Celery state the console knows, in rank order (PURGED is not a Celery state).
ALL_STATES: tuple[str, ...] = (
    PENDING,
    SENT,
    RECEIVED,
    STARTED,
    RETRY,
    REJECTED,
    REVOKED,
    FAILURE,
    SUCCESS,
)

R_PENDING, R_SENT, R_RECEIVED, R_STARTED, R_CYCLE = 0, 1, 2, 3, 4
R_REJECTED, R_REVOKED, R_FAILURE, R_SUCCESS = 5, 6, 7, 8
#: The lowest final rank: a task at or above it has finished.
R_FINAL = R_REJECTED

#: state -> rank (the console-only PURGED and LOST rank with SENT).
RANK: dict[str, int] = {s: i for i, s in enumerate(ALL_STATES)} | {PURGED: R_SENT, LOST: R_SENT}
#: The states only this console gives a task (not Celery's).
CONSOLE_STATES: tuple[str, ...] = (PURGED, LOST)
#: rank -> state (the state a task event of that kind reports).
STATE_OF_RANK: tuple[str, ...] = ALL_STATES

#: The states a task ends in: nothing runs it any more.
FINAL_STATES: frozenset[str] = frozenset({REJECTED, REVOKED, FAILURE, SUCCESS})
#: Final, or known to be gone from the broker (PURGED): a revoke can change nothing.
SETTLED_STATES: frozenset[str] = FINAL_STATES | {PURGED}

#: The event that finished a task in each final state.
FINISH_EVENT: dict[str, str] = {
    REJECTED: "task-rejected",
    REVOKED: "task-revoked",
    FAILURE: "task-failed",
    SUCCESS: "task-succeeded",
}

#: state -> (symbol, style).  Symbols keep states readable without colour (NO_COLOR).
STYLE: dict[str, tuple[str, str]] = {
    PENDING: ("?", "dim"),
    SENT: ("○", "dim"),
    RECEIVED: ("◔", "cyan"),
    STARTED: ("▶", "bold yellow"),
    SUCCESS: ("✔", "green"),
    FAILURE: ("✘", "bold red"),
    RETRY: ("↻", "magenta"),
    REVOKED: ("⊘", "red"),
    REJECTED: ("⊗", "red"),
    PURGED: ("⌫", "red"),
    LOST: ("✝", "bold red"),
}


def is_final(state: str | None) -> bool:
    """True for a state a task ends in (SUCCESS, FAILURE, REVOKED, REJECTED)."""
    return state in FINAL_STATES


def rank(state: str | None) -> int:
    """The rank of ``state`` (0 for an unknown one)."""
    return RANK.get(state or "", R_PENDING)
