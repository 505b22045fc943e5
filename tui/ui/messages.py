"""Messages the app's thread workers post back to the UI thread (past-tense facts)."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from tui.core.pauses import PauseRecord
from tui.sources.inspection import InspectionResult
from tui.sources.queue_lengths import QueueSnapshot
from tui.sources.unacked import UnackedLookup


class QueueLengthsPolled(Message):
    """A queue-length poll finished (successfully or not)."""

    def __init__(self, poll: QueueSnapshot):
        super().__init__()
        self.poll = poll


class WorkersInspected(Message):
    """An ``inspect`` round finished; ``pauses``: the pause records read with it (None: unread)."""

    def __init__(
        self,
        result: InspectionResult,
        resync: bool,
        pauses: dict[str, PauseRecord] | None = None,
    ):
        super().__init__()
        self.result = result
        self.resync = resync
        self.pauses = pauses


class LostTasksLocated(Message):
    """The broker was asked where the messages of tasks lost with their worker are."""

    def __init__(self, uuids: list[str], lookup: UnackedLookup):
        super().__init__()
        self.uuids = uuids
        self.lookup = lookup


class HistoryLoaded(Message):
    """Persisted tasks were read (or could not be)."""

    def __init__(self, rows: list[dict[str, Any]], error: str):
        super().__init__()
        self.rows = rows
        self.error = error


class HistoryBackfilled(HistoryLoaded):
    """Tasks the console never saw were read from the result backend into the history."""


class ExportDone(Message):
    """An export finished: ``path`` written with ``count`` tasks, or ``error``."""

    def __init__(self, path: str, count: int, error: str):
        super().__init__()
        self.path = path
        self.count = count
        self.error = error


class EventsEnabled(Message):
    """``enable_events`` was sent to new workers; ``hosts`` had task events off and now have them on."""

    def __init__(self, hosts: list[str], error: str):
        super().__init__()
        self.hosts = hosts
        self.error = error


class ActionCompleted(Message):
    """A mutating action finished; ``outcome`` says what happened, in words."""

    def __init__(
        self, action: str, target: str, outcome: Any, reinspect: bool, quiet: bool = False
    ):
        super().__init__()
        self.action = action
        self.target = target
        self.outcome = outcome
        self.reinspect = reinspect
        #: the operator was already told (a read-only refusal): log it, do not notify again
        self.quiet = quiet


class CommandRequested(Message):
    """The operator asked a pane for ``action`` (a registry command) on its highlighted row.

    ``target`` is the row's key (a queue name, a hostname or a task id), or None when no
    row is highlighted; ``args`` are the action's arguments (``("kill",)`` for revoke).
    """

    def __init__(self, action: str, args: tuple[Any, ...], target: str | None, scope: str):
        super().__init__()
        self.action = action
        self.args = args
        self.target = target
        self.scope = scope


class ClusterProbed(Message):
    """A quick look at a configured cluster finished (the ``c`` switcher's State column)."""

    def __init__(self, name: str, probe: Any):
        super().__init__()
        self.name = name
        #: a :class:`tui.check.ClusterProbe`
        self.probe = probe
