"""A one-line Input that never holds a control character."""

from __future__ import annotations

from textual.widgets import Input

from tui.core.safe_text import without_controls


class PlainInput(Input):
    """An :class:`~textual.widgets.Input` whose value holds no control characters.

    Input echoes its value as a Rich ``Text``, which lets ESC through to the terminal. A
    pasted task name or queue (copied from a log, an export, another console) may carry
    ``\\x1b]52;…``; this field drops such characters as they are typed, pasted or set.
    """

    def replace(self, text: str, start: int, end: int) -> None:
        """Insert ``text`` without control characters (typing and pasting end here)."""
        super().replace(without_controls(text), start, end)

    def validate_value(self, value: str) -> str:
        """Values set from code (an initial query, a previous job) are cleaned too."""
        return without_controls(value)
