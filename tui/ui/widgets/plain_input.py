"""A one-line Input that never holds a control character."""

from __future__ import annotations

from textual import events
from textual.widgets import Input

from tui.core.safe_text import without_controls


class PlainInput(Input):
    """An :class:`~textual.widgets.Input` whose value holds no control characters.

    Input echoes its value as a Rich ``Text``, which lets ESC through to the terminal. A
    pasted task name or queue (copied from a log, an export, another console) may carry
    ``\\x1b]52;…``; this field drops such characters as they are typed, pasted or set.

    Its own editing keys (Ctrl+U, Backspace, Enter…) act in the order they were typed.
    """

    async def _on_key(self, event: events.Key) -> None:
        # Textual inserts a printable key as it arrives but runs a focused widget's binding
        # only after the key's trip up the DOM and back through the App: typed in one burst,
        # "Ctrl+U 1 1 Enter" inserted "11", then cleared it, then submitted the empty field.
        # Run this field's own binding for the key now, so the keys keep their order.
        if not event.is_printable:
            active = self.screen.active_bindings.get(event.key)
            if (
                active is not None
                and active.node is self
                and active.enabled
                and await self.app.run_action(active.binding.action, self)
            ):
                event.stop()
                event.prevent_default()
                return
        await super()._on_key(event)

    def replace(self, text: str, start: int, end: int) -> None:
        """Insert ``text`` without control characters (typing and pasting end here)."""
        super().replace(without_controls(text), start, end)

    def validate_value(self, value: str) -> str:
        """Values set from code (an initial query, a previous job) are cleaned too."""
        return without_controls(value)
