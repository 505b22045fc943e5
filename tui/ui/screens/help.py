"""The ``?`` screen: every binding and what it does."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.core.safe_text import data_text


class HelpScreen(ModalScreen[None]):
    """Lists every key of the console (the command palette, Ctrl+P, lists the same actions)."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss_screen", "Close")]

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; height: 90%; border: round $accent; background: $surface; }
    """

    def __init__(self, rows: list[tuple[str, str]]):
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        table = Table(show_header=True, header_style="bold", expand=True, box=None)
        table.add_column("Key", no_wrap=True, style="bold cyan")
        table.add_column("Action")
        for keys, desc in self.rows:
            # Rich parses str cells as markup: "[history] db" would vanish from the help
            table.add_row(data_text(keys), data_text(desc))
        with VerticalScroll() as scroll:
            scroll.border_title = "Keys"
            scroll.border_subtitle = "Esc close"
            yield Static(table)

    def action_dismiss_screen(self) -> None:
        self.dismiss(None)
