"""The console's status line, fitted to the terminal's width: what matters least gives way.

The status line says more than 80 or even 120 columns hold: the broker, the connection, the
filter, the marks, the workers, the rates and every counter.  Cut at the right edge, it lost
what it said last, the dropped and skipped counters among them.  Here each part of the line
comes in a few forms, longest first, and every form but the last has a *give-way* rank:
while the line is too wide, the form with the highest rank gives way to its part's next form
(a shorter one, or nothing).  A part whose last form is not empty is never dropped, only
shortened, and every form is made of whole words: nothing is cut in the middle of a word.

What stays whatever the width: the cluster's name, the connection state, READ-ONLY, the
filter (whole terms, and how many were left out when it alone is too long for the line),
what the filter could not read, the marks, the dropped events and the bad ones skipped.
What gives way, and in which order, is :data:`GIVE_WAY`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.text import Text

#: between two parts of the line
BAR = " │ "
#: The steps by which the line gets shorter, the first taken first: each names one form of
#: one part giving way to the part's next form (shorter, or nothing).
GIVE_WAY = (
    "order",  # the Tasks pane's order: its title says it too
    "buffered",
    "clipped and cleaned, in full",  # "3 fields clipped" -> "3 clipped"
    "marks hint",  # "3 marked (Esc clears)" -> "3 marked"
    "new rows hint",  # "2 new ↑ (Home)" -> "2 new ↑"
    "bad events, in full",  # "2 bad/unknown events skipped" -> "2 bad events"
    "broker scheme",  # "redis://:***@host:6379/0" -> "host:6379/0"
    "clipped and cleaned",
    # after the cleaned count: during a flood received and applied are what the operator
    # watches (operator review: "ev 255,708✗ │ 99,145 cleaned" hid them)
    "received and applied",  # "ev 1,204↓ 1,204✓ 0✗" -> "ev 0✗"
    "rate",
    "reconnects",
    "history loading",  # "loading history  20%" -> "history  20%"
    "history reasons",  # "history: 3 rows not saved (why)" -> "history: 3 rows not saved"
    "connection reason",  # "✘ disconnected, retry in 3s (why)" -> "✘ disconnected, retry in 3s"
    "workers",  # all online: the Workers pane shows them
    "broker host",
    "long running",
    "new rows",
    "workers, some offline",
    "history",
    "filter errors, in full",  # "⚠ no state 'x' (states: …)" -> "⚠ no state 'x'"
    "filter errors",  # -> "⚠ 2 errors", after the filter
    "bad events",  # "2 bad events" -> "2 bad"
    "filter terms",  # whole terms, then "… +2"
)
#: how soon a step is taken: the higher, the sooner
RANK = {step: len(GIVE_WAY) - i for i, step in enumerate(GIVE_WAY)}
#: how the filter is cut when nothing else is left to give way: whole terms, then this
MORE_TERMS = " … +{n}"  # noqa: RUF001 (an ellipsis, on screen)


@dataclass(frozen=True)
class Part:
    """One part of the status line.

    ``forms``: ``(text, give_way)`` pairs, longest first; a form's ``give_way`` says how soon
    it gives way to the next form (higher: sooner).  The last form's rank is not used: it
    stays, and when it is empty the part is dropped.  ``sep`` goes before the part, in
    ``sep_style``, when a part is shown before it."""

    forms: tuple[tuple[Text, int], ...]
    sep: str = BAR
    sep_style: str = ""


@dataclass
class StatusFacts:
    """What the status line says, read from the console (all of it already literal text:
    :func:`tui.core.safe_text.visible` applied to whatever came from outside)."""

    broker: str
    #: ``● connected``, ``✘ disconnected, retry in 3s (reason)``, and its style
    connection: str
    connection_style: str = ""
    #: the cluster's name, when the settings name several
    cluster: str = ""
    read_only: bool = False
    filter_text: str = ""
    filter_errors: list[str] = field(default_factory=list)
    marked: int = 0
    #: the Tasks pane's order, when not the default
    order: str = ""
    new_above: int = 0
    long_running: int = 0
    long_running_limit: str = ""
    workers_online: int = 0
    workers: int = 0
    rate: float = 0.0
    received: int = 0
    applied: int = 0
    dropped: int = 0
    buffered: int = 0
    #: events and records skipped at the trust boundary or by the model
    bad: int = 0
    clipped: int = 0
    cleaned: int = 0
    reconnects: int = 0
    #: what the history writer could not save
    history_note: str = ""
    #: the history being loaded at start-up: ``(rows merged, rows to merge)``, the second
    #: -1 until the store has counted them (None: not loading)
    history_loading: tuple[int, int] | None = None


def status_line(facts: StatusFacts, width: int) -> Text:
    """The status line of ``facts``, no wider than ``width`` cells where it can be."""
    f = facts
    parts: list[Part] = []

    def add(*forms: tuple[str | Text, int], style: str = "", sep: str = BAR) -> None:
        parts.append(
            Part(
                tuple(
                    (t if isinstance(t, Text) else Text(t, style=style), rank) for t, rank in forms
                ),
                sep,
                style,  # " │ 3 marked" in reverse video from the bar on
            )
        )

    if f.cluster:
        add((f"{f.cluster}: ", 0), style="bold reverse")
    host = _host_part(f.broker)  # "" for "memory://"
    add(
        (f"{f.broker} ", RANK["broker scheme"]),
        (f"{host} " if host else "", RANK["broker host"]),
        ("", 0),
        style="bold",
        sep="",
    )
    # the state itself stays whole; the reason of a lost connection may go
    add(
        (f.connection, RANK["connection reason"]),
        (f.connection.split(" (", 1)[0], 0),
        style=f.connection_style,
        sep="",
    )
    if f.read_only:
        add(("READ-ONLY", 0), style="bold yellow")  # says why keys refuse
    if f.history_loading is not None:
        # the Tasks pane is empty or partial until the history is in: say why
        done, total = f.history_loading
        # a percentage of fixed width: a count growing digit by digit made the parts
        # after it (and those that give way) jump about while it ran
        pct = f"{100 * done // total:>3}%" if total > 0 else "  0%"
        add(
            (
                f"loading history {pct}" if total >= 0 else "reading history",
                RANK["history loading"],
            ),
            ("history…" if total < 0 else f"history {pct}", 0),
            style="bold cyan",
        )
    if f.filter_text:
        # without it, filtered panes read as the whole cluster
        terms = f.filter_text.split()
        parts.append(Part(tuple(_filter_forms("filter: ", terms, "bold cyan")), BAR, "bold cyan"))
        if n := len(f.filter_errors):
            add(
                (" ".join(f"⚠ {e}" for e in f.filter_errors), RANK["filter errors, in full"]),
                (
                    " ".join(f"⚠ {e.split(' (', 1)[0]}" for e in f.filter_errors),
                    RANK["filter errors"],
                ),
                (f"⚠ {n} error{'s' if n != 1 else ''}", 0),
                style="bold red",
                sep=" ",
            )
    if f.marked:
        # r t k R act on these, not on the highlighted row
        add(
            (f"{f.marked:,} marked (Esc clears)", RANK["marks hint"]),
            (f"{f.marked:,} marked", 0),
            style="bold reverse",
        )
    if f.order:
        add((f"{f.order} (s)", RANK["order"]), ("", 0), style="cyan")
    if f.new_above:
        # the cursor is pinned and these rows are above the view
        add(
            (f"{f.new_above:,} new ↑ (Home)", RANK["new rows hint"]),
            (f"{f.new_above:,} new ↑", RANK["new rows"]),
            ("", 0),
            style="bold magenta",
        )
    if f.long_running:
        add(
            (f"{f.long_running:,} running > {f.long_running_limit}", RANK["long running"]),
            ("", 0),
            style="bold yellow",
        )
    # a worker offline stays longer
    everyone = f.workers_online == f.workers
    add(
        (
            f"{f.workers_online}/{f.workers} workers",
            RANK["workers" if everyone else "workers, some offline"],
        ),
        ("", 0),
    )
    add((f"{f.rate:.1f}/s", RANK["rate"]), ("", 0))
    dropped = Text(f"{f.dropped:,}✗", style="bold red" if f.dropped else "")
    add(
        (Text(f"ev {f.received:,}↓ {f.applied:,}✓ ") + dropped, RANK["received and applied"]),
        (Text("ev ") + dropped, 0),
    )
    if f.buffered:
        add((f"{f.buffered:,} buffered", RANK["buffered"]), ("", 0), style="yellow", sep=" ")
    # each counter only when it has counted something ("0 … skipped" reads as a problem)
    if f.bad:
        add(
            (f"{f.bad:,} bad/unknown events skipped", RANK["bad events, in full"]),
            (f"{f.bad:,} bad events", RANK["bad events"]),
            (f"{f.bad:,} bad", 0),
            style="yellow",
        )
    if f.clipped or f.cleaned:
        add(
            (
                ", ".join(_counted((f.clipped, "fields clipped"), (f.cleaned, "cleaned"))),
                RANK["clipped and cleaned, in full"],
            ),
            (
                ", ".join(_counted((f.clipped, "clipped"), (f.cleaned, "cleaned"))),
                RANK["clipped and cleaned"],
            ),
            ("", 0),
            style="yellow",
        )
    if f.reconnects > 0:
        add((f"reconnected {f.reconnects}×", RANK["reconnects"]), ("", 0), style="yellow")
    if f.history_note:
        without_reasons = re.sub(r" \([^)]*\)", "", f.history_note)
        add(
            (f.history_note, RANK["history reasons"]),
            (without_reasons, RANK["history"]),
            ("", 0),
            style="bold red",
        )
    return fit(parts, width)


def fit(parts: Sequence[Part], width: int) -> Text:
    """The parts joined into one line no wider than ``width`` cells, where the parts'
    shortest forms allow (else the shortest line they make)."""
    level = [0] * len(parts)
    # each form's width, measured once (the line is fitted on every tick)
    widths = [[text.cell_len for text, _ in part.forms] for part in parts]

    def cells() -> int:
        total, first = 0, True
        for part, at, width_of in zip(parts, level, widths, strict=True):
            if cell_len := width_of[at]:
                total += cell_len + (0 if first else len(part.sep))
                first = False
        return total

    while cells() > width:
        can_give = [i for i, part in enumerate(parts) if level[i] < len(part.forms) - 1]
        if not can_give:
            break
        # the form most ready to give way; between equals, the one further right
        i = max(can_give, key=lambda i: (parts[i].forms[level[i]][1], i))
        level[i] += 1
    line = Text(no_wrap=True, overflow="ellipsis", end="")
    for part, at in zip(parts, level, strict=True):
        text = part.forms[at][0]
        if text.cell_len:
            if line.cell_len:
                line.append(part.sep, style=part.sep_style)
            line.append_text(text)
    return line


def _filter_forms(label: str, terms: Sequence[str], style: str) -> list[tuple[Text, int]]:
    """``label`` and the filter's ``terms``, then fewer and fewer whole terms with how many
    were left out; the last names no term, only how many.  They give way last of all."""
    forms = [(Text(label + " ".join(terms), style=style), RANK["filter terms"])]
    for keep in range(len(terms) - 1, -1, -1):
        more = MORE_TERMS.format(n=len(terms) - keep)
        shown = (label + " ".join(terms[:keep])).rstrip()  # "filter: … +3" keeps no term
        forms.append((Text(shown + more, style=style), RANK["filter terms"]))
    return forms


def _host_part(url: str) -> str:
    """A broker URL (credentials masked already) without its scheme and user: the host."""
    return re.sub(r"^[\w+.-]+://(?:[^@/;]*@)?", "", url)


def _counted(*counts: tuple[int, str]) -> list[str]:
    """``3 cleaned``: each count that counted something, with what it counts."""
    return [f"{n:,} {what}" for n, what in counts if n]
