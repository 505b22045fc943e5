"""tui.core.safe_text: data is shown literally, control characters as visible escapes."""

from __future__ import annotations

import pytest
from rich.console import Console
from rich.text import Text

from tui.core.safe_text import data_text, visible, without_controls

HOSTILE = [
    ("\x1b]52;c;SGFja2VkIQ==\x07", "␛]52;c;SGFja2VkIQ==␇"),  # OSC 52: the clipboard
    ("\x1b[2J", "␛[2J"),  # clear screen
    ("\x1b]2;pwned\x07", "␛]2;pwned␇"),  # OSC 2: the window title
    ("a\x9b2Jb", "a\\x9b2Jb"),  # C1 CSI, a one-byte ESC [
    ("a\x7fb\x00c", "a␡b␀c"),
    ("one\ntwo\tthree\r", "one␊two␉three␍"),
    ("abc\u202edef\u200f", "abc\\u202edef\\u200f"),  # right-to-left override, RLM
    ("line\u2028sep", "line\\u2028sep"),
    ("lone \udc80 surrogate", "lone \ufffd surrogate"),  # cannot be encoded for the terminal
]


@pytest.mark.parametrize(("raw", "shown"), HOSTILE)
def test_visible_shows_every_control_character(raw, shown):
    assert visible(raw) == shown


@pytest.mark.parametrize(("raw", "_"), HOSTILE)
def test_display_and_source_boundary_show_control_characters_alike(raw, _):
    # Data cleaned at the sources and data that reached a screen some other way look the
    # same to the operator: one form for "this field held an ESC".
    from tui.sources.validate import clean_text

    assert visible(raw) == clean_text(raw)
    assert visible(raw, multiline=True) == clean_text(raw, multiline=True)


def test_visible_keeps_newlines_and_tabs_only_in_multiline_text():
    assert visible("Traceback:\n\tFile\x1b[2J", multiline=True) == "Traceback:\n\tFile␛[2J"
    assert visible("a\rb", multiline=True) == "a␍b"


def test_visible_leaves_ordinary_text_alone_and_the_same_object():
    text = "afirgen_tasks.reports.generate_pdf_report [/] ✔ é 日本"
    assert visible(text) is text
    assert visible(42) == "42" and visible(None) == "None"


@pytest.mark.parametrize(
    "markup", ["[bold red]x[/]", "[@click=app.quit]q", "[/]", "[link=http://e]l[/link]"]
)
def test_data_text_is_never_parsed_as_markup(markup):
    text = data_text(markup, style="bold")
    assert isinstance(text, Text)
    assert text.plain == markup and text.spans == []
    console = Console(width=80, record=True, color_system=None)
    console.print(text)  # "[/]" parsed would raise MarkupError
    segments = list(console.render(text))
    assert not any(seg.style and (seg.style.link or seg.style.meta) for seg in segments)
    assert markup in console.export_text()


def test_data_text_has_no_control_characters_for_rich_to_pass_through():
    # Rich drops BEL and CR itself but keeps ESC: it must be spelled out before that
    assert Text("\x1b[2J").plain == "\x1b[2J"
    assert data_text("\x1b[2J\x07").plain == "␛[2J␇"


def test_without_controls_drops_them_for_editable_fields():
    assert without_controls("[b]q\x1b[2J\x07\t") == "[b]q[2J"
    plain = "state:failure queue:email"
    assert without_controls(plain) is plain


# Characters a terminal and Rich measure differently (columns shift, a row overflows its
# pane), or that make two names look alike: spelled out, never drawn (attacker review, F3).
UNPRINTABLE = [
    ("w1\u200b@host", "w1\\u200b@host"),  # zero-width space: looks like w1@host
    ("x\u00adshy", "x\\xadshy"),  # soft hyphen
    ("bom\ufeff", "bom\\ufeff"),  # zero-width no-break space
    ("pua\ue000\U000f0000", "pua\\ue000\\U000f0000"),  # private use
    ("u\u0378", "u\\u0378"),  # unassigned
    ("nb\u00a0sp\u3000", "nb\\xa0sp\\u3000"),  # spaces other than U+0020
]


@pytest.mark.parametrize(("raw", "shown"), UNPRINTABLE)
def test_visible_spells_out_what_a_terminal_may_measure_differently(raw, shown):
    assert visible(raw) == shown
    assert visible(raw, multiline=True) == shown


def test_printable_text_and_multiline_layout_stay_as_they_are():
    for text in ("send_fir_pdf", "नमस्ते", "日本語のタスク", "émoji ✔ ▶", "a b"):
        assert visible(text) == text
    assert visible("Traceback\n\tline\u200b", multiline=True) == "Traceback\n\tline\\u200b"
    assert visible("a\n\u200b") == "a␊\\u200b"
