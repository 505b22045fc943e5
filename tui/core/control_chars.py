"""What a terminal may act on, and how such a character is shown instead: one definition.

Used by the sources' trust boundary (:mod:`tui.sources.validate`, which cleans data as it
comes in) and by the display's last line of defence (:mod:`tui.core.safe_text`).  C0 and
DEL become Unicode control pictures (ESC is ``␛``: one cell, columns stay aligned); C1,
bidi overrides and line/paragraph separators become ``\\x9b``/``\\u202e`` text; a lone
surrogate becomes ``�``.
"""

from __future__ import annotations

import re

# Characters a terminal may act on, or that change how a line reads.
DANGER = "\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff"
#: Everything unsafe on one line (newline and tab included).
UNSAFE_ONE_LINE = re.compile(f"[\x00-\x1f{DANGER}]")
#: Everything unsafe in multi-line text: \t (09) and \n (0a) may stay.
UNSAFE_MULTILINE = re.compile(f"[\x00-\x08\x0b-\x1f{DANGER}]")

_PICTURES: dict[str, str] = {chr(c): chr(0x2400 + c) for c in range(0x20)}
_PICTURES["\x7f"] = "\u2421"  # ␡


def show(match: re.Match[str]) -> str:
    """The visible form of one unsafe character (a ``re.sub`` replacement)."""
    ch = match.group()
    picture = _PICTURES.get(ch)
    if picture is not None:
        return picture
    if 0xD800 <= ord(ch) <= 0xDFFF:
        return "\ufffd"
    return escape(ch)


def escape(ch: str) -> str:
    """The ``\\xNN`` / ``\\uNNNN`` / ``\\UNNNNNNNN`` spelling of one character."""
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def spell_unprintable(text: str, *, multiline: bool = False) -> str:
    """``text`` with every character Python does not call printable spelled out: zero-width
    and other format characters (U+200B, U+00AD, U+FEFF), unassigned and private-use code
    points, spaces other than U+0020.  A terminal and Rich disagree on how wide such a
    character is (columns shift, a row overflows its pane), and a zero-width space makes
    ``w1\u200b@host`` look like ``w1@host``.  With ``multiline``, newlines and tabs stay."""
    if text.isprintable():
        return text
    keep = "\n\t" if multiline else ""
    return "".join(ch if ch.isprintable() or ch in keep else escape(ch) for ch in text)
