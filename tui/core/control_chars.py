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
    code = ord(ch)
    if 0xD800 <= code <= 0xDFFF:
        return "\ufffd"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
