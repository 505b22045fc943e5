"""Data on screen: always literal text, never markup, never a terminal escape.

The last line of defence behind the sources' validation: whatever a broker message, an
inspect reply, a result-backend record or a history row carries, what reaches a widget is
a :class:`rich.text.Text` built here (or a plain string from :func:`visible` handed to an
API that takes it literally, such as ``notify(markup=False)``).

* Never markup: a ``Text`` is not parsed, so ``[@click=app.quit]`` or ``[/]`` is shown as
  typed. Strings given to Textual as ``str`` (``Static("…")``, ``border_title = "…"``,
  DataTable ``str`` cells, Checkbox labels) *are* parsed as markup: pass a ``Text`` instead.
* Never an escape: Rich and Textual strip only some control codes (BEL, CR, …) and let
  ESC through, so ``\\x1b]52;…`` in a queue name would reach the terminal. Control
  characters are *shown*, so the operator sees that the data held one, in the same form
  the sources' boundary (``tui.sources.validate``) gives them: C0 and DEL as their Unicode
  Control Pictures (ESC -> ``␛``, one cell wide, so columns stay aligned); C1 controls,
  the line/paragraph separators and the bidi controls as escape text (``\\x9b``,
  ``\\u202e``); lone surrogates, which cannot be encoded for the terminal, as U+FFFD.

Pure: no Textual import, cheap when there is nothing to replace (the Tasks pane builds
rows with it under an event flood).
"""

from __future__ import annotations

from rich.text import Text

from tui.core.control_chars import UNSAFE_MULTILINE, UNSAFE_ONE_LINE, show, spell_unprintable


def visible(value: object, *, multiline: bool = False) -> str:
    """``value`` as a string whose control characters are shown (``␛``, ``\\x9b``).

    With ``multiline``, newlines and tabs stay (a traceback keeps its lines); otherwise they
    are escaped too, so a one-line cell or title stays one line.
    """
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():  # the common case, one C-level scan
        return text
    pattern = UNSAFE_MULTILINE if multiline else UNSAFE_ONE_LINE
    return spell_unprintable(pattern.sub(show, text), multiline=multiline)


def data_text(
    value: object, style: str = "", *, multiline: bool = False, justify: str | None = None
) -> Text:
    """A ``Text`` showing ``value`` literally (see :func:`visible`), in ``style``.

    Use it for every cell, title or line built from data; a ``Text`` is never parsed as
    markup, whatever brackets the data holds.
    """
    return Text(visible(value, multiline=multiline), style=style, justify=justify)  # type: ignore[arg-type]


def without_controls(text: str) -> str:
    """``text`` with every character :func:`visible` would escape (one-line rules) removed.

    For what the operator types or pastes into a one-line field: there the characters are
    dropped rather than spelled out, since the text is edited, not only read.
    """
    if text.isprintable():
        return text
    return UNSAFE_ONE_LINE.sub("", text)
