"""Data on screen: always literal text, never markup, never a terminal escape.

The last line of defence behind the sources' validation: whatever a broker message, an
inspect reply, a result-backend record or a history row carries, what reaches a widget is
a :class:`rich.text.Text` built here (or a plain string from :func:`visible` handed to an
API that takes it literally, such as ``notify(markup=False)``).

* Never markup: a ``Text`` is not parsed, so ``[@click=app.quit]`` or ``[/]`` is shown as
  typed. Strings given to Textual as ``str`` (``Static("…")``, ``border_title = "…"``,
  DataTable ``str`` cells, Checkbox labels) *are* parsed as markup: pass a ``Text`` instead.
* Never an escape: Rich and Textual strip only some control codes (BEL, CR, …) and let
  ESC through, so ``\\x1b]52;…`` in a queue name would reach the terminal. Every C0/C1
  control character, DEL, the bidi overrides, the Unicode line separators and lone
  surrogates (which cannot be encoded to the terminal at all) are shown as a visible
  backslash escape instead (``\\x1b``, ``\\u202e``), so the operator sees that the data
  held one.

Pure: no Textual import, cheap when there is nothing to replace (the Tasks pane builds
rows with it under an event flood).
"""

from __future__ import annotations

import re

from rich.text import Text

# C0 controls (tab and newline are allowed only in multi-line text), DEL and C1 controls,
# the line/paragraph separators (they break a one-line cell), the bidi embeddings,
# overrides and isolates (they reorder what the operator reads), and lone surrogates.
_UNSAFE_CLASS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE_ONE_LINE = re.compile(f"[\t\n{_UNSAFE_CLASS}]")
_UNSAFE_MULTILINE = re.compile(f"[{_UNSAFE_CLASS}]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(value: object, *, multiline: bool = False) -> str:
    """``value`` as a string whose control characters are shown as backslash escapes.

    With ``multiline``, newlines and tabs stay (a traceback keeps its lines); otherwise they
    are escaped too, so a one-line cell or title stays one line.
    """
    text = value if isinstance(value, str) else str(value)
    pattern = _UNSAFE_MULTILINE if multiline else _UNSAFE_ONE_LINE
    if pattern.search(text) is None:
        return text
    return pattern.sub(_escape_char, text)


def data_text(value: object, style: str = "", *, multiline: bool = False, justify: str | None = None) -> Text:
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
    if _UNSAFE_ONE_LINE.search(text) is None:
        return text
    return _UNSAFE_ONE_LINE.sub("", text)
