"""The ``c`` screen: every configured cluster with its live state; Enter switches to one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable

from afirgen_tasks.settings import Settings
from tui.core.safe_text import data_text
from tui.ui.messages import ClusterProbed

#: ``probe(settings)`` -> a :class:`tui.check.ClusterProbe` (runs in a thread worker).
Probe = Callable[[Settings], Any]


class ClusterSwitchScreen(ModalScreen[str | None]):
    """The clusters of config.toml (the top-level one and each ``[clusters.NAME]``), each
    looked at in its own thread worker: broker reachable, workers answering a ping.  Enter
    dismisses with the highlighted cluster's name; Esc with None."""

    BINDINGS = [
        Binding("escape,q", "close", "Close"),
        Binding("g,f5", "refresh", "Look again"),
    ]
    DEFAULT_CSS = """
    ClusterSwitchScreen { align: center middle; }
    ClusterSwitchScreen > Vertical { width: 96%; height: auto; max-height: 80%; border: round $accent; background: $surface; }
    ClusterSwitchScreen DataTable { height: auto; max-height: 20; }
    """

    def __init__(self, clusters: list[tuple[str, Settings]], current: str, probe: Probe) -> None:
        """``clusters``: ``(name, settings)`` in config order; ``current``: the one watched."""
        super().__init__()
        self.clusters = clusters
        self.current = current
        self.probe = probe
        #: name -> the last probe's result (None while it runs)
        self.states: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Clusters"
            box.border_subtitle = "Enter switch · g look again · Esc close"
            yield DataTable(id="clusters", cursor_type="row")

    def on_mount(self) -> None:
        table: DataTable[Any] = self.query_one("#clusters", DataTable)
        table.add_column("", key="mark", width=1)
        # the state before the broker: on 80 columns the broker is what scrolls off
        table.add_column("Cluster", key="name", width=12)
        table.add_column("State", key="state", width=34)
        table.add_column("Broker", key="broker")
        for row, (name, settings) in enumerate(self.clusters):
            # names and URLs come from config.toml: shown as data, never markup
            table.add_row(
                "●" if name == self.current else "",
                data_text(name),
                Text("checking…", style="dim"),
                data_text(settings.broker_display),
                key=name,
            )
            if name == self.current:
                table.move_cursor(row=row, animate=False)
        table.focus()
        self.action_refresh()

    def action_refresh(self) -> None:
        """Look at every cluster again (each in its own thread worker)."""
        table: DataTable[Any] = self.query_one("#clusters", DataTable)
        for name, settings in self.clusters:
            self.states[name] = None
            table.update_cell(name, "state", Text("checking…", style="dim"))
            self.run_worker(
                lambda n=name, s=settings: self._look(n, s),
                thread=True,
                exclusive=True,
                group=f"probe-{name}",
            )

    def _look(self, name: str, settings: Settings) -> None:
        # runs in a worker thread: a broker and a ping, bounded by the probe's own timeout
        self.post_message(ClusterProbed(name, self.probe(settings)))

    def on_cluster_probed(self, message: ClusterProbed) -> None:
        self.states[message.name] = probe = message.probe
        if not probe.reachable:
            style = "bold red"
        elif not probe.workers:
            style = "yellow"
        else:
            style = "green"
        self.query_one("#clusters", DataTable).update_cell(
            message.name, "state", data_text(probe.detail, style)
        )

    @on(DataTable.RowSelected, "#clusters")
    def _chosen(self, event: DataTable.RowSelected) -> None:
        self.dismiss(str(event.row_key.value))

    def action_close(self) -> None:
        self.dismiss(None)
