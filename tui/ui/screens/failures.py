"""Failures grouped (``f`` on the console): the failed tasks in memory by task and exception
type, with their count, first and last failure, workers and one sample message.

The groups come from :func:`tui.core.failures.group_failures` over the console's model (the
tasks in memory, not the persisted history: ``H`` searches that).  ``Enter`` closes the
screen and filters the Tasks pane to the highlighted group (``state:failure name:… exc:…``);
``R`` retries every task of the group through the console's action runner.  Names,
exception texts and hostnames are data: shown redacted, as literal text, never markup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Footer, Static

from tui.core.failures import FailureGroup, group_failures
from tui.core.formatting import clip, clock, count
from tui.core.safe_text import data_text
from tui.ui.commands import COMMANDS, bindings
from tui.ui.widgets.keyed_table import KeyedTable

if TYPE_CHECKING:
    from tui.ui.console import ConsoleScreen

#: Seconds between re-groupings while the screen is open (live consoles only).
REFRESH_S = 2.0
#: Characters of the sample message shown (its first line, redacted).
SAMPLE_CLIP = 44
#: Characters of the highlighted group's sample shown under the table.
DETAIL_CLIP = 300
#: What the console says when ``R`` finds no retry in this build.
NO_RETRY = "retry is not available in this build"

_MUTATING_KEYS: dict[str, str] = {
    key: c.name
    for c in COMMANDS
    if c.scope == "failures" and c.mutating
    for key in c.key.split(",")
}
_MUTATING = frozenset(_MUTATING_KEYS.values())


class FailuresScreen(ModalScreen[None]):
    """The in-memory failures by task and exception type, most frequent first."""

    SCOPE = "failures"
    BINDINGS = [*bindings("failures"), Binding("escape,q", "close", "Close")]

    DEFAULT_CSS = """
    FailuresScreen { align: center middle; }
    FailuresScreen > Vertical {
        width: 98%; height: 94%; border: round $accent; background: $surface; padding: 0 1;
    }
    FailuresScreen #failures-header { height: auto; }
    FailuresScreen #failure-groups { height: 1fr; }
    FailuresScreen #failure-detail { height: auto; max-height: 5; }
    """

    def __init__(self, console: ConsoleScreen) -> None:
        super().__init__()
        self.console = console
        #: row key -> group, as last shown
        self.groups: dict[str, FailureGroup] = {}
        self._timer: Timer | None = None

    # ---- layout ----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Failures by task and exception type"
            box.border_subtitle = "Enter filter Tasks · R retry group · H history · Esc close"
            yield Static(id="failures-header")
            yield KeyedTable(id="failure-groups")
            yield Static(id="failure-detail")
        yield Footer()

    def on_mount(self) -> None:
        table = self.table
        table.add_column("Count", width=6, key="count")
        table.add_column("Task", width=24, key="task")
        table.add_column("Exception", width=20, key="exc")
        table.add_column("First", width=8, key="first")
        table.add_column("Last", width=8, key="last")
        table.add_column("Workers", width=22, key="workers")
        table.add_column("Sample", width=SAMPLE_CLIP, key="sample")
        table.focus()
        self.regroup()
        if self.console.afirgen.autostart:
            self._timer = self.set_interval(REFRESH_S, self.regroup)

    @property
    def table(self) -> KeyedTable:
        """The groups table."""
        return self.query_one("#failure-groups", KeyedTable)

    # ---- drawing ---------------------------------------------------------------------------
    def regroup(self) -> None:
        """Group the model's failed tasks again and update the rows by key (the cursor stays
        on its group)."""
        model = self.console.model
        groups = group_failures(model.iter_tasks(newest_first=False))
        table = self.table
        shown: dict[str, FailureGroup] = {}
        for group in groups:
            shown[group.key] = group
            table.upsert(group.key, self._cells(group))
        table.drop_many([k for k in table.row_keys if k not in shown])
        table.set_order([g.key for g in groups])
        self.groups = shown
        self._show_header(groups, model.task_count)
        self._show_detail()

    def on_keyed_table_row_highlighted(self, event: KeyedTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        """The highlighted group in full: task, type, tasks and workers, the sample message
        (a narrow terminal cuts the table's Sample column)."""
        group = self.highlighted()
        out = Text()
        if group is not None:
            redact = self.console.redact
            out.append_text(data_text(redact(group.name), style="bold"))
            out.append(" · ")
            out.append_text(data_text(group.exc_type, style="bold red"))
            out.append(f" · {count(group.count)} task(s) on {count(len(group.workers))} worker(s)")
            out.append_text(data_text(f": {redact(group.workers_text(10))}"))
            sample = clip(redact(group.sample).strip(), DETAIL_CLIP) or "-"
            out.append("\nlatest: ", style="dim")
            out.append_text(data_text(sample))
        self.query_one("#failure-detail", Static).update(out)

    def _show_header(self, groups: list[FailureGroup], in_memory: int) -> None:
        failed = sum(g.count for g in groups)
        out = Text()
        if not groups:
            out.append("no failures in memory", style="bold")
            out.append(f" (of the {count(in_memory)} tasks in memory)")
        else:
            out.append(f"{count(failed)} failed task(s)", style="bold red")
            out.append(
                f" in {count(len(groups))} group(s), of the {count(in_memory)} tasks in memory;"
                " most failures first"
            )
        if self.console.history.loading() is not None:
            # "no failures" while the history is still coming in is easy to believe at 3 a.m.
            out.append(
                "\nthe history is still loading: its failures are not all in memory yet",
                style="bold yellow",
            )
        out.append(
            "\nolder failures: H searches the persisted history (state:failure)", style="dim"
        )
        self.query_one("#failures-header", Static).update(out)

    def _cells(self, group: FailureGroup) -> list[Text]:
        redact = self.console.redact
        sample = redact(group.sample).strip().partition("\n")[0]
        workers = redact(group.workers_text())
        return [
            Text(count(group.count), justify="right", style="bold"),
            data_text(clip(redact(group.name).rpartition(".")[2] or "?", 24)),
            data_text(clip(group.exc_type, 20), style="red"),
            Text(clock(group.first)),
            Text(clock(group.last)),
            data_text(clip(workers, 22)),
            data_text(clip(sample, SAMPLE_CLIP) or "-", style="dim"),
        ]

    # ---- keys ------------------------------------------------------------------------------
    def highlighted(self) -> FailureGroup | None:
        """The group under the cursor, or None."""
        key = self.table.cursor_key()
        return self.groups.get(key) if key is not None else None

    def _group(self) -> FailureGroup | None:
        group = self.highlighted()
        if group is None:
            self.notify("no failure group highlighted", severity="warning")
        return group

    def on_keyed_table_row_selected(self, event: KeyedTable.RowSelected) -> None:
        event.stop()
        self.action_filter_group()

    def action_filter_group(self) -> None:
        """Close, and show only the highlighted group's tasks in the Tasks pane."""
        if (group := self._group()) is None:
            return
        self.dismiss(None)
        self.console.filter_to(group.filter_text())

    def action_retry_group(self) -> None:
        """Retry every task of the highlighted group (the runner confirms with the count)."""
        if (group := self._group()) is None:
            return
        runner = self.console.runner
        retry = getattr(runner, "retry_tasks", None)
        if retry is None:
            self.notify(NO_RETRY, severity="warning")
            return
        retry(list(group.uuids))

    def action_history(self) -> None:
        """Close, and search the persisted history for this group's older failures."""
        group = self.highlighted()
        self.dismiss(None)
        self.console.history.search(group.filter_text() if group else "state:failure")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (self.console.afirgen.read_only and action in _MUTATING)

    def on_key(self, event: events.Key) -> None:
        action = _MUTATING_KEYS.get(event.key)
        if action is not None and self.console.afirgen.read_only:
            # hidden from the footer; refused here, at once, with the reason (and audited)
            event.stop()
            command = next(c for c in COMMANDS if c.scope == "failures" and c.name == action)
            group = self.highlighted()
            target = f"{group.name} {group.exc_type} ({group.count})" if group else None
            self.console.runner.refuse_read_only(command, target)

    def action_close(self) -> None:
        self.dismiss(None)
