"""Failures grouped by task and exception type, and the one parser of an exception's type.

:func:`exception_type` reads the type out of what Celery reports for a failure: the
exception's repr (``PermanentTaskError('FIR 99999 does not exist')``,
``SMTPConnectError(421, b'...')``) or, when that is a bare message, the last exception line
of the traceback (``smtplib.SMTPConnectError: (421, ...)``).  It is the one definition used
by the failures screen (``f``), the ``exc:`` filter term (the Tasks pane and the history
search's SQL) and the incident report.  :func:`group_failures` groups the failed tasks of
the in-memory model.  Pure Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from tui.core.model import TaskRecord
from tui.core.states import FAILURE

__all__ = [
    "UNKNOWN",
    "FailureGroup",
    "exception_type",
    "failure_type",
    "group_failures",
]

#: The type of a failure whose exception text and traceback name none.
UNKNOWN = "unknown"
#: Hostnames a group lists before "+N".
MAX_WORKERS = 3

# ``Name(`` or ``Name:`` (a repr, or a traceback's ``module.Name: message``), or ``Name``
# alone when it looks like a class (a capital letter, or a dotted path): "boom" is a message.
_QUALIFIED = r"[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*"
_TYPE_THEN = re.compile(rf"\s*({_QUALIFIED})(\(|:(?:\s|$)|\s*$)")


def _type_in(line: str) -> str | None:
    m = _TYPE_THEN.match(line)
    if m is None:
        return None
    name = m.group(1)
    last = name.rpartition(".")[2]
    if m.group(2).strip() == "" and not (last[:1].isupper() or "." in name):
        return None  # a bare lowercase word: a message, not a type
    if name == "Traceback":
        return None
    # the traceback says smtplib.SMTPConnectError where the repr says SMTPConnectError:
    # one group for both
    return last


@lru_cache(maxsize=4096)
def exception_type(exception: str | None, traceback: str | None = None) -> str:
    """The exception's class name: ``PermanentTaskError`` of ``PermanentTaskError('...')``,
    else of the traceback's last exception line (``module.Name: message``, module dropped);
    :data:`UNKNOWN` when neither names one (a bare message and no traceback)."""
    found = _type_in(exception.lstrip().partition("\n")[0]) if exception else None
    if found is None and traceback:
        # the last unindented line naming a type: chained exceptions put the raised one
        # last; indented lines are source and frames, "  | " lines an exception group's
        for line in reversed(traceback.rstrip().splitlines()):
            if not line or line[0].isspace():
                continue
            found = _type_in(line)
            if found is not None:
                break
    return found or UNKNOWN


def failure_type(exception: str | None, traceback: str | None, state: str | None) -> str | None:
    """What ``exc:`` matches on: the exception's type; :data:`UNKNOWN` for a failure that
    names none; None for a task with no exception at all that has not failed."""
    if not exception and not traceback:
        return UNKNOWN if state == FAILURE else None
    return exception_type(exception, traceback)


@dataclass(slots=True)
class FailureGroup:
    """The failed tasks of one task name and exception type."""

    name: str
    exc_type: str
    count: int = 0
    #: finished time of the group's first and latest failure (None: no time known)
    first: float | None = None
    last: float | None = None
    #: distinct hostnames, in the order first seen
    workers: dict[str, None] = field(default_factory=dict)
    #: the latest failure's exception text (raw: shown redacted, as literal text)
    sample: str = ""
    #: the ids of the group's tasks, latest failure last
    uuids: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """A stable key for the group's row."""
        return f"{self.name}\x00{self.exc_type}"

    def workers_text(self, limit: int = MAX_WORKERS) -> str:
        """The hostnames, ``+N`` past ``limit``."""
        hosts = list(self.workers)
        text = ", ".join(hosts[:limit]) or "?"
        return f"{text}, +{len(hosts) - limit}" if len(hosts) > limit else text

    def filter_text(self) -> str:
        """The Tasks pane filter that shows this group: ``state:failure name:… exc:…``."""
        # a filter term ends at a space: a name holding one is matched by its first word
        name = self.name.split()[0] if self.name.split() else ""
        parts = ["state:failure"]
        if name and name != "?":
            parts.append(f"name:{name}")
        parts.append(f"exc:{self.exc_type}")
        return " ".join(parts)


def _when(task: TaskRecord) -> float | None:
    for ts in (task.finished, task.started, task.received, task.sent):
        if ts is not None:
            return ts
    return None


def group_failures(tasks: Iterable[TaskRecord]) -> list[FailureGroup]:
    """The FAILURE tasks of ``tasks`` grouped by (name, exception type): most failures first,
    then the latest failure first.

    REJECTED tasks are not failures here: a rejection carries no exception to group by.
    """
    groups: dict[tuple[str, str], FailureGroup] = {}
    for task in tasks:
        if task.state != FAILURE:
            continue
        name = task.name or "?"
        exc = exception_type(task.exception, task.traceback)
        group = groups.get((name, exc))
        if group is None:
            group = groups[(name, exc)] = FailureGroup(name, exc)
        group.count += 1
        group.uuids.append(task.uuid)
        ts = _when(task)
        if ts is not None:
            if group.first is None or ts < group.first:
                group.first = ts
            if group.last is None or ts >= group.last:
                group.last = ts
                group.sample = task.exception or ""
        elif not group.sample:
            group.sample = task.exception or ""
        if task.hostname:
            group.workers[task.hostname] = None
    return sorted(groups.values(), key=lambda g: (-g.count, -(g.last or 0.0), g.name, g.exc_type))
