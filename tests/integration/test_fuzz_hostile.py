"""Hostile input, end to end (issue 12): what anyone with the broker URL can publish, and
what a history file can hold, must not crash the console, reach the terminal, become
markup or an action, reconnect the receiver, or cost a valid task its history row.

Three ways in, each through the real thing:

* **Events on the wire.**  Raw kombu messages in Celery's own event format are published
  on the test's Redis to the ``celeryev`` exchange, so a malformed body is malformed on the
  wire (a JSON list, a string, a number, NaN, a lone surrogate as a ``\\ud800`` escape,
  ``2**70``), and a running console (Pilot, real :class:`~tui.sources.cluster.BrokerSources`,
  real history store and writer) receives them.  Valid task lifecycles for known ids are
  interleaved; every one of them must reach the history file.  Hypothesis generates the
  hostile batches (:func:`test_fuzzed_events_on_a_real_broker`); the exploits of the issue
  are replayed as fixed cases (:func:`test_known_exploits_on_a_real_broker`); messages kombu
  cannot even decode have their own test (:func:`test_undecodable_messages_do_not_reconnect_the_receiver`).
* **Rows in the history database** written before the fix (or by anything else that can
  write the file): planted with SQLite before start, then loaded, searched (``H``) and
  opened (:func:`test_hostile_history_rows_planted_before_start`).
* **Result-backend records** (``celery-task-meta-*``), planted in the same Redis and read
  by the backfill at start (same test).
* **Inspect replies** from forged workers: kombu pidbox nodes on the real broker that
  answer like workers (:func:`test_hostile_inspect_replies_from_forged_workers`).

What "no data-born escape or style" means here: the rendered screen (every screen the test
opens, through the screen's compositor, as the driver would write it) holds no C0/C1
control character and no lone surrogate in any text segment (the driver writes segment
text verbatim; a control segment of Textual's own is not text), no style whose ``@click``
names an action from our payloads and no ``link`` style; and every cell of every
DataTable, including rows scrolled out of view, formats without a markup error into such
text.  The app must still be running (``app._exception`` is None, no return code) and the
receiver must have connected exactly once.

Private Textual names used (pinned ``textual>=8.2,<9``): ``Screen._compositor.render_strips``
and ``textual.widgets._data_table.default_cell_formatter``; :func:`test_private_textual_names_exist`
asserts they exist.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import traceback
import uuid as uuidlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kombu import Producer
from rich.style import Style
from rich.text import Text

from tui.history import HistoryStore
from tui.history.store import DEFAULT_CLUSTER
from tui.sources.cluster import BrokerSources
from tui.ui.app import AfirgenApp

pytestmark = pytest.mark.integration

# ---- the payloads -----------------------------------------------------------------------

#: Escape sequences that did something to a real terminal (issue 12, item 1) and relatives.
ESCAPES: tuple[str, ...] = (
    "\x1b]52;c;SGFja2VkIQ==\x07",  # OSC 52: write the clipboard
    "\x1b[2J",  # CSI: clear the screen
    "\x1b]2;title\x07",  # OSC 2: window title
    "\x1b[31mred\x1b[0m",
    "\x1b]8;;https://evil.example/\x1b\\link\x1b]8;;\x1b\\",  # OSC 8 hyperlink
    "\x9b2J",  # C1 CSI
    "\x9d2;c1-title\x9c",  # C1 OSC ... ST
    "\x1bP+q544e\x1b\\",  # DCS (XTGETTCAP)
    "\x1b[6n",  # device status report: makes the terminal answer on stdin
    "\x07\x08\x0d\x7f",
)
#: Strings that are Rich/Textual markup.  Every action named here is listed in ACTIONS.
MARKUP: tuple[str, ...] = (
    "[@click=app.resize_all(5)]GROW",
    "[@click=app.resize_all(5)]GROW[/]",
    "[@click=app.quit]QUIT[/]",
    "[/]",
    "[/bold]",
    "[bold]",
    "[bold]unclosed",
    "[link=x]",
    "[link=x]L[/link]",
    "[link='https://evil.example']here[/link]",
    "[on red][blink]x",
    "[$accent]v",
    "\\[not]",
    "[",
    "]",
)
#: the actions a data-born ``@click`` could carry: any of them in a rendered style is a failure
ACTIONS: tuple[str, ...] = ("resize_all", "quit")
SURROGATES: tuple[str, ...] = ("\ud800", "a\udfffb", "\udc80\udcff", "\ud83d")  # lone halves
CONTROLS: tuple[str, ...] = tuple(chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)))
LONG: tuple[str, ...] = ("A" * 100_000, "é" * 20_000, "[" * 5_000, "\x1b[2J" * 2_000)
NAN, INF = float("nan"), float("inf")
#: Values of the wrong type or range for any field.
WRONG_TYPES: tuple[Any, ...] = (
    [],
    [1, "2"],
    {},
    {"a": [1]},
    None,
    True,
    False,
    2**70,
    -(2**70),
    -1,
    0,
    NAN,
    INF,
    -INF,
    -1e18,
    1e308,
    1.5,
    "now",
    "",
    "x",
    "1e999",
)

#: Every event type Celery sends.
TASK_TYPES: tuple[str, ...] = (
    "task-sent",
    "task-received",
    "task-started",
    "task-succeeded",
    "task-failed",
    "task-retried",
    "task-revoked",
    "task-rejected",
)
WORKER_TYPES: tuple[str, ...] = ("worker-online", "worker-heartbeat", "worker-offline")
EVENT_TYPES = TASK_TYPES + WORKER_TYPES

COMMON_FIELDS = ("type", "hostname", "timestamp", "utcoffset", "pid", "clock")
TASK_FIELDS: dict[str, tuple[str, ...]] = {
    "task-sent": (
        "uuid",
        "name",
        "args",
        "kwargs",
        "queue",
        "exchange",
        "routing_key",
        "priority",
        "retries",
        "eta",
        "expires",
        "root_id",
        "parent_id",
    ),
    "task-received": (
        "uuid",
        "name",
        "args",
        "kwargs",
        "retries",
        "eta",
        "expires",
        "root_id",
        "parent_id",
    ),
    "task-started": ("uuid",),
    "task-succeeded": ("uuid", "result", "runtime"),
    "task-failed": ("uuid", "exception", "traceback"),
    "task-retried": ("uuid", "exception", "traceback"),
    "task-revoked": ("uuid", "terminated", "signum", "expired"),
    "task-rejected": ("uuid", "requeue"),
}
WORKER_FIELDS = ("freq", "active", "processed", "loadavg", "sw_ident", "sw_ver", "sw_sys")

#: The valid tasks' shape (what the history must hold for each of them).
VALID_NAME = "afirgen_tasks.reports.generate_pdf_report"
VALID_QUEUE = "reports"
VALID_HOST = "fuzz-worker@valid"


def fields_of(etype: str) -> tuple[str, ...]:
    """Every field an event of ``etype`` carries (the common ones first)."""
    return COMMON_FIELDS + (TASK_FIELDS[etype] if etype in TASK_FIELDS else WORKER_FIELDS)


def template(etype: str, uuid: str, host: str, ts: float | None = None) -> dict[str, Any]:
    """A well-formed event of ``etype`` as Celery 5 publishes it (before the receiver stamps it)."""
    ts = time.time() if ts is None else ts
    body: dict[str, Any] = {
        "type": etype,
        "hostname": host,
        "timestamp": ts,
        "utcoffset": 0,
        "pid": 4242,
        "clock": 1,
    }
    if etype in WORKER_TYPES:
        body.update(
            freq=2.0,
            active=0,
            processed=0,
            loadavg=[0.1, 0.2, 0.3],
            sw_ident="py-celery",
            sw_ver="5.7.0",
            sw_sys="Linux",
        )
        return body
    body["uuid"] = uuid
    if etype in ("task-sent", "task-received"):
        body.update(
            name=VALID_NAME,
            args="(7,)",
            kwargs="{}",
            retries=0,
            eta=None,
            expires=None,
            root_id=uuid,
            parent_id=None,
        )
    if etype == "task-sent":
        body.update(queue=VALID_QUEUE, exchange="", routing_key=VALID_QUEUE, priority=5)
    elif etype == "task-succeeded":
        body.update(result="{'status': 'ok'}", runtime=0.25)
    elif etype in ("task-failed", "task-retried"):
        body.update(exception="ValueError('x')", traceback="Traceback (most recent call last):\n")
    elif etype == "task-revoked":
        body.update(terminated=False, signum=None, expired=False)
    elif etype == "task-rejected":
        body.update(requeue=False)
    return body


def lifecycle(uuid: str) -> list[dict[str, Any]]:
    """A valid task's events: sent, received, started, succeeded."""
    t = time.time()
    return [
        template(
            kind, uuid, "publisher@client" if kind == "task-sent" else VALID_HOST, t + i * 0.001
        )
        for i, kind in enumerate(("task-sent", "task-received", "task-started", "task-succeeded"))
    ]


# ---- the wire ----------------------------------------------------------------------------


class Wire:
    """One message as it goes on the wire: raw body bytes, content type, routing key.

    A plain class, not a dataclass: hypothesis prints dataclasses field by field, and a
    failing batch of 100 kB bodies made a report of megabytes."""

    __slots__ = ("body", "content_type", "routing_key", "note")

    def __init__(
        self,
        body: bytes,
        content_type: str = "application/json",
        routing_key: str = "task.sent",
        note: str = "",
    ) -> None:
        self.body = body
        self.content_type = content_type
        self.routing_key = routing_key
        self.note = note

    def __repr__(self) -> str:
        # hypothesis prints the failing batch: keep a 100 kB body from flooding the report
        body = (
            self.body
            if len(self.body) <= 300
            else self.body[:300] + b"...(%d bytes)" % len(self.body)
        )
        return f"Wire({body!r}, {self.content_type!r}{', ' + repr(self.note) if self.note else ''})"

    @classmethod
    def json(cls, payload: Any, note: str = "") -> Wire:
        """``payload`` as JSON text.  ``ensure_ascii`` keeps lone surrogates as ``\\udXXX``
        escapes (valid JSON that decodes back to them) and NaN/Infinity stay as Python's
        json module writes and reads them."""
        kind = payload.get("type") if isinstance(payload, dict) else None
        key = kind.replace("-", ".") if isinstance(kind, str) and kind.isascii() else "task.sent"
        return cls(
            json.dumps(payload, ensure_ascii=True).encode(), routing_key=key[:200], note=note
        )


def publish(celery_app: Any, messages: Iterable[Wire]) -> int:
    """Publish raw messages on the event exchange, exactly as given; returns how many."""
    from celery.events.event import get_exchange

    n = 0
    with celery_app.connection_for_write() as conn:
        exchange = get_exchange(conn, name=celery_app.conf.event_exchange)
        producer = Producer(conn.default_channel, exchange=exchange, auto_declare=True)
        for msg in messages:
            # with a content type given and a bytes body, kombu sends the bytes as they are
            producer.publish(
                msg.body,
                routing_key=msg.routing_key,
                content_type=msg.content_type,
                content_encoding="utf-8",
                headers={"hostname": "fuzz@publisher"},
            )
            n += 1
    return n


def interleave(hostile: Sequence[Wire], valid_uuids: Sequence[str]) -> list[Wire]:
    """Hostile messages with the valid lifecycles spread evenly among them; the last valid
    event goes last (the sentinel: once it is in the model, everything before it arrived)."""
    valid = [Wire.json(ev, note="valid") for u in valid_uuids for ev in lifecycle(u)]
    sentinel = valid.pop()
    out: list[Wire] = []
    done = 0
    for i, v in enumerate(valid):
        upto = round((i + 1) * len(hostile) / (len(valid) + 1))
        out.extend(hostile[done:upto])
        done = upto
        out.append(v)
    out.extend(hostile[done:])
    out.append(sentinel)
    return out


# ---- hypothesis strategies ---------------------------------------------------------------

_atoms = st.sampled_from(ESCAPES + MARKUP + SURROGATES + CONTROLS + ("ok", "w1@box", " ", "."))
hostile_text = st.one_of(
    st.sampled_from(ESCAPES + MARKUP + SURROGATES),
    st.lists(_atoms, min_size=1, max_size=5).map("".join),
    st.text(alphabet=st.sampled_from(CONTROLS + tuple("ab[]/@=.;\\")), min_size=1, max_size=24),
    st.text(max_size=16),  # anything Unicode, surrogates included
    st.sampled_from(LONG),
)
hostile_value = st.one_of(
    hostile_text,
    st.sampled_from(WRONG_TYPES),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.one_of(st.none(), st.integers(), hostile_text), max_size=3),
    st.dictionaries(
        st.sampled_from(("type", "uuid", "x")), st.one_of(st.integers(), hostile_text), max_size=2
    ),
)


#: The fields the console shows somewhere (cells, titles, detail, toasts), per event type.
SHOWN: dict[str, tuple[str, ...]] = {
    "task-sent": (
        "uuid",
        "name",
        "queue",
        "args",
        "kwargs",
        "eta",
        "expires",
        "root_id",
        "parent_id",
    ),
    "task-received": ("uuid", "name", "args", "kwargs", "hostname"),
    "task-started": ("uuid", "hostname"),
    "task-succeeded": ("uuid", "result"),
    "task-failed": ("uuid", "exception", "traceback"),
    "task-retried": ("uuid", "exception", "traceback"),
    "task-revoked": ("uuid", "hostname"),
    "task-rejected": ("uuid",),
    "worker-online": ("hostname", "sw_ident", "sw_ver", "sw_sys"),
    "worker-heartbeat": ("hostname",),
    "worker-offline": ("hostname",),
}


@st.composite
def hostile_event(draw: st.DrawFn) -> dict[str, Any]:
    """A Celery event of any type: some of the fields it shows carry hostile text, and one
    to four fields (any of them, ``type`` included) are replaced by anything, or removed."""
    etype = draw(st.sampled_from(EVENT_TYPES))
    uuid = f"fz-{draw(st.uuids()).hex[:12]}"
    body = template(etype, uuid, "fuzz@evil")
    for name in SHOWN[etype]:
        if draw(st.integers(0, 2)) == 0:
            body[name] = draw(hostile_text)
    for name in draw(
        st.lists(
            st.sampled_from(fields_of(etype) + ("extra",)), min_size=1, max_size=4, unique=True
        )
    ):
        if draw(st.integers(0, 9)) == 0:
            body.pop(name, None)
        else:
            body[name] = draw(hostile_value)
    return body


#: Bodies that are not an event at all.
NOT_A_DICT: tuple[Any, ...] = (
    "task-sent",
    42,
    3.5,
    None,
    True,
    [],
    [1, "x", None],
    [[]],
    ["task-sent"],
    [{"no": "type"}],
    {"no": "type"},
    {"type": None},
    {"type": 7},
    {"type": "task-sent"},
    {"type": "worker-heartbeat"},
    {"type": "nonsense-event", "hostname": "h"},
    {"type": "task-sent", "hostname": "h"},
    {"type": "worker-heartbeat", "hostname": "h", "timestamp": "x"},
)

hostile_message = st.one_of(
    hostile_event().map(Wire.json),
    hostile_event().map(Wire.json),
    hostile_event().map(Wire.json),
    st.lists(hostile_event(), min_size=1, max_size=3).map(Wire.json),  # Celery 4+ list body
    st.lists(st.one_of(hostile_event(), st.sampled_from(NOT_A_DICT)), min_size=1, max_size=3).map(
        Wire.json
    ),
    st.sampled_from(NOT_A_DICT).map(Wire.json),
)


# ---- the deterministic exploits of issue 12 -----------------------------------------------------


def known_exploits() -> dict[str, list[Wire]]:
    """Issue 12's exploits by item of the issue, one message each (task ids start ``ex-``)."""
    groups: dict[str, list[Wire]] = {}

    def task(group: str, kind: str, suffix: str, **fields: Any) -> None:
        body = template(kind, f"ex-{suffix}", fields.pop("hostname", "evil@host"))
        body.update(fields)
        groups.setdefault(group, []).append(Wire.json(body, note=suffix))

    def raw(group: str, payload: Any, note: str) -> None:
        groups.setdefault(group, []).append(Wire.json(payload, note=note))

    # 1. terminal escapes in queue, hostname, name
    task("escapes", "task-sent", "osc52-queue", queue="\x1b]52;c;SGFja2VkIQ==\x07")
    task("escapes", "task-received", "osc2-host", hostname="\x1b]2;title\x07w@h")
    task("escapes", "task-sent", "clear-name", name="\x1b[2Jafirgen_tasks.x", args="(\x9b2J,)")
    raw("escapes", template("worker-online", "", "\x1b]2;pwned\x07@host"), "osc2-worker")
    # 2. markup: a clickable uuid, a queue and a name that close a tag never opened
    task("markup", "task-sent", "click", uuid="[@click=app.resize_all(5)]GROW")
    task("markup", "task-sent", "close-queue", queue="[/]")
    task("markup", "task-sent", "close-name", name="[/]")
    task("markup", "task-sent", "bold-queue", queue="[bold]", name="[link=x]n")
    task(
        "markup",
        "task-failed",
        "markup-exc",
        exception="[@click=app.resize_all(5)]E[/]",
        traceback="[/]",
    )
    raw("markup", template("worker-online", "", "[@click=app.quit]w[/]@h"), "markup-worker")
    # 3. timestamps
    task("timestamps", "task-sent", "ts-nan", timestamp=NAN)
    task("timestamps", "task-sent", "ts-neg", timestamp=-1e18)
    task("timestamps", "task-sent", "ts-inf", timestamp=INF)
    task("timestamps", "task-succeeded", "rt-nan", runtime=NAN)
    raw("timestamps", {**template("worker-heartbeat", "", "nan@h"), "timestamp": NAN}, "hb-nan")
    # 4. wrong types on the receive path (Celery's own event_from_message)
    task("types", "task-sent", "ts-now", timestamp="now")
    task("types", "task-started", "utcoffset", utcoffset="x")
    task("types", "task-started", "clock-str", clock="now")
    raw("types", [1, 2, 3], "json-list")
    raw("types", "task-sent", "json-string")
    raw("types", 12345, "json-number")
    raw("types", {"uuid": "ex-no-type", "hostname": "h"}, "no-type")
    raw("types", {"type": "worker-heartbeat", "hostname": "forged@h", "timestamp": "x"}, "hb-x")
    # 5. poison rows for the history writer
    task("poison", "task-sent", "prio-huge", priority=2**70)
    task("poison", "task-sent", "surrogate", name="a\ud800b", args="(\udfff,)")
    task("poison", "task-sent", "retries-huge", retries=2**70)
    # and the long ones (they cost the writer and the renderer most)
    task("poison", "task-sent", "long", args="A" * 100_000, name="n" * 10_000, queue="[" * 5_000)
    return groups


#: group -> {uuid: text its detail screen must show as typed}
SHOWN_LITERALLY: dict[str, dict[str, str]] = {
    "markup": {
        "[@click=app.resize_all(5)]GROW": "Task [@click=app.resize_all(5)]GROW",
        "ex-close-queue": "[/]",
        "ex-close-name": "[/]",
        "ex-bold-queue": "[link=x]n",
        "ex-markup-exc": "[@click=app.resize_all(5)]E[/]",
    },
}


# ---- running the console --------------------------------------------------------------------


@dataclass
class Findings:
    """What went wrong in one run; empty means the run passed."""

    problems: list[str] = field(default_factory=list)
    crash: BaseException | None = None

    def add(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)

    def check(self, published: Sequence[Wire] = ()) -> None:
        """Fail with every problem found (and the crash's traceback, if any)."""
        if not self.problems and self.crash is None:
            return
        lines = list(self.problems)
        if self.crash is not None:
            lines.append(
                "the console crashed:\n"
                + "".join(
                    traceback.format_exception(
                        type(self.crash), self.crash, self.crash.__traceback__
                    )
                )[-4000:]
            )
        if published:
            lines.append(
                f"{len(published)} messages published; notes: "
                + ", ".join(sorted({m.note for m in published if m.note and m.note != "valid"}))
            )
        raise AssertionError("\n".join(lines)) from self.crash


def console_settings(base: Any, tmp: Path) -> Any:
    """Fast timers (the test drives real ticks) and a history file of this run's own."""
    return base.model_copy(
        update={
            "console_refresh_interval": 0.1,
            "console_queue_poll_interval": 0.5,
            "console_inspect_interval": 2.0,
            "console_control_timeout": 0.3,
            "history_db": tmp / "history.sqlite3",
            "console_audit_log": tmp / "audit.log",
        }
    )


def crashed(app: AfirgenApp) -> bool:
    """True when the app died (an exception reached Textual, or it set a return code)."""
    return app._exception is not None or app.return_code is not None or not app.is_running


async def settle(pilot: Any, app: AfirgenApp, predicate: Callable[[], Any], timeout: float) -> bool:
    """Run the app until ``predicate()`` holds (True), it crashes or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if crashed(app):
            return False
        if predicate():
            return True
        await pilot.pause(0.05)
    return bool(predicate())


def _meta_click(style: Style | None) -> str:
    if style is None:
        return ""
    try:
        meta = style.meta
    except Exception:  # noqa: BLE001 - unreadable meta is itself data-born
        return "<unreadable meta>"
    click = meta.get("@click") if meta else None
    return "" if click is None else str(click)


def bad_chars(text: str) -> list[str]:
    """The C0/C1 controls and lone surrogates in ``text`` (what must never reach a terminal)."""
    return sorted(
        {
            repr(c)
            for c in text
            if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or 0xD800 <= ord(c) < 0xE000
        }
    )


def style_problem(style: Style | str | None) -> str:
    """Why ``style`` must come from data (a payload's action or a link), or ''."""
    if isinstance(style, str):
        try:
            style = Style.parse(style)
        except Exception:  # noqa: BLE001
            return f"unparsable style {style[:60]!r}"
    if style is None:
        return ""
    click = _meta_click(style)
    if click and any(a in click for a in ACTIONS):
        return f"@click {click[:80]!r}"
    if style.link:
        return f"link {style.link[:80]!r}"
    return ""


def scan_screen(app: AfirgenApp, where: str, findings: Findings) -> str:
    """Check what the current screen renders; returns its plain text (for assertions)."""
    from rich.style import Style
    from textual.widgets import DataTable
    from textual.widgets._data_table import default_cell_formatter

    from tui.ui.widgets.keyed_table import KeyedTable

    screen = app.screen
    lines: list[str] = []
    try:
        strips = screen._compositor.render_strips()
    except Exception as exc:  # noqa: BLE001 - a render failure is a finding, not a test error
        findings.add(f"{where}: rendering raised {type(exc).__name__}: {exc}"[:300])
        return ""
    for y, strip in enumerate(strips):
        row = []
        for seg in strip:
            if seg.control:
                continue
            row.append(seg.text)
            if chars := bad_chars(seg.text):
                findings.add(
                    f"{where}: line {y} renders control/surrogate chars {chars[:6]} in {seg.text[:60]!r}"
                )
            if why := style_problem(seg.style):
                findings.add(
                    f"{where}: line {y} renders a data-born style: {why} on {seg.text[:40]!r}"
                )
        lines.append("".join(row))
    # rows out of view: what the table would render for each cell (a KeyedTable draws its
    # Text cells as they are; a DataTable through its cell formatter)
    tables: list[tuple[Any, Iterable[Any], Any]] = [
        (table, list(table.row_keys), lambda cell: cell) for table in screen.query(KeyedTable)
    ]
    tables += [
        (table, list(table.rows), default_cell_formatter) for table in screen.query(DataTable)
    ]
    for table, row_keys, formatter in tables:
        for row_key in row_keys:
            try:
                cells = table.get_row(row_key)
            except Exception:  # noqa: BLE001 - removed meanwhile
                continue
            if isinstance(table, KeyedTable):
                for seg in table._strip(cells, Style()):
                    if chars := bad_chars(seg.text):
                        findings.add(
                            f"{where}: #{table.id} row {str(row_key)[:40]!r} draws "
                            f"control/surrogate chars {chars[:6]}"
                        )
            for cell in cells:
                try:
                    rendered = formatter(cell)
                except Exception as exc:  # noqa: BLE001
                    findings.add(
                        f"{where}: #{table.id} cell {str(cell)[:40]!r} does not render: "
                        f"{type(exc).__name__}: {exc}"[:300]
                    )
                    continue
                if isinstance(rendered, Text):
                    if chars := bad_chars(rendered.plain):
                        findings.add(
                            f"{where}: #{table.id} cell holds control/surrogate chars {chars[:6]}: "
                            f"{rendered.plain[:60]!r}"
                        )
                    for span in [Text("", style=rendered.style), *rendered.spans]:
                        if why := style_problem(span.style):
                            findings.add(
                                f"{where}: #{table.id} cell {rendered.plain[:40]!r} has a data-born "
                                f"style: {why}"
                            )
    return "\n".join(lines)


def history_rows(path: Path, uuids: Iterable[str]) -> dict[str, tuple[Any, ...]]:
    """``{uuid: (state, name, queue, priority, hostname)}`` read from the history file itself."""
    conn = sqlite3.connect(path)
    try:
        conn.text_factory = lambda b: b.decode("utf-8", "replace")
        wanted = list(uuids)
        cur = conn.execute(
            "SELECT uuid, state, name, queue, priority, hostname FROM tasks"
            " WHERE uuid IN (SELECT value FROM json_each(?))",
            (json.dumps(wanted),),
        )
        return {r[0]: tuple(r[1:]) for r in cur.fetchall()}
    finally:
        conn.close()


async def open_details(
    pilot: Any,
    app: AfirgenApp,
    uuids: Iterable[str],
    where: str,
    findings: Findings,
    limit: int = 12,
    literal: dict[str, str] | None = None,
) -> int:
    """Open the detail screen of up to ``limit`` of ``uuids`` (as Enter does), scan, close.

    ``literal`` maps a uuid to text its detail screen must show as typed (markup shown,
    not applied nor swallowed)."""
    from tui.ui.screens.task_detail import TaskDetailScreen

    opened = 0
    for uuid in list(uuids)[:limit]:
        if crashed(app):
            return opened
        if app.model.get_task(uuid) is None:
            continue
        app.console_screen.action_open_detail(uuid)
        ok = await settle(pilot, app, lambda: isinstance(app.screen, TaskDetailScreen), 5.0)
        if not ok:
            findings.add(f"{where}: the detail screen of {uuid[:40]!r} did not open")
            continue
        await pilot.pause()
        text = scan_screen(app, f"{where} detail {uuid[:30]!r}", findings)
        if literal and uuid in literal and literal[uuid] not in text:
            findings.add(f"{where} detail {uuid[:30]!r} does not show {literal[uuid]!r} literally")
        opened += 1
        app.screen.dismiss(None)
        await settle(pilot, app, lambda: not isinstance(app.screen, TaskDetailScreen), 5.0)
    return opened


async def search_history(
    pilot: Any, app: AfirgenApp, where: str, findings: Findings, open_rows: int = 8
) -> list[str]:
    """Open the history search (H), wait for the results, scan; open the detail of the first
    ``open_rows`` rows.  Returns the uuids of the rows it showed."""
    from textual.css.query import NoMatches
    from textual.widgets import DataTable, Static

    from tui.ui.screens.history_search import HistorySearchScreen
    from tui.ui.screens.task_detail import TaskDetailScreen

    if crashed(app):
        return []
    app.query_one("#tasks").focus()
    app.console_screen.action_search_history()  # what H does (pilot.press waits for idle, slow with many runs)
    if not await settle(pilot, app, lambda: isinstance(app.screen, HistorySearchScreen), 5.0):
        findings.add(f"{where}: H did not open the history search")
        return []
    screen = app.screen

    def answered() -> bool:
        try:
            status = str(screen.query_one("#history-status", Static).render())
        except NoMatches:  # not composed yet
            return False
        return "task(s) in" in status or "✘" in status

    if not await settle(pilot, app, answered, 10.0):
        findings.add(f"{where}: the history search never answered")
    if crashed(app):
        return []
    status = str(screen.query_one("#history-status", Static).render())
    if "✘" in status:
        findings.add(f"{where}: the history search failed: {status[:200]!r}")
    scan_screen(app, f"{where} history search", findings)
    table = screen.query_one("#history-results", DataTable)
    shown = [str(r.get("uuid")) for r in screen.rows]
    table.focus()
    for i in range(min(open_rows, len(shown))):
        if crashed(app):
            break
        table.move_cursor(row=i)
        table.action_select_cursor()  # what Enter does (pilot.press waits for idle: 0.5 s a row)
        if not await settle(pilot, app, lambda: isinstance(app.screen, TaskDetailScreen), 5.0):
            findings.add(f"{where}: Enter on history row {i} opened no detail")
            continue
        await pilot.pause()
        scan_screen(app, f"{where} history detail row {i}", findings)
        app.screen.dismiss(None)
        await settle(pilot, app, lambda: app.screen is screen, 5.0)
    if not crashed(app) and app.screen is screen:
        screen.action_close()
        await pilot.pause()
    return shown


async def run_console_with(
    base_settings: Any,
    celery_app: Any,
    tmp: Path,
    messages: Sequence[Wire],
    valid_uuids: Sequence[str],
    literal: dict[str, str] | None = None,
    timeout: float = 10.0,
    open_limit: int = 12,
) -> Findings:
    """Start the console on the real broker, publish ``messages`` into it and check everything:
    the main screen, the detail screens of up to ``open_limit`` hostile tasks, the history
    search and half as many of its rows' details, the receiver's connection, the writer, and
    the valid tasks' rows in the history file."""
    tmp.mkdir(parents=True, exist_ok=True)
    s = console_settings(base_settings, tmp)
    findings = Findings()
    store = HistoryStore(s.history_db)
    sources = BrokerSources(s, celery_app)
    app = AfirgenApp(s, sources, celery_app=celery_app, history=store)
    sentinel = valid_uuids[-1]
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            if not await settle(pilot, app, lambda: sources.status.state == "connected", 15.0):
                findings.add(f"the receiver never connected ({sources.status})")
                return findings
            await asyncio.to_thread(publish, celery_app, messages)
            arrived = await settle(
                pilot,
                app,
                lambda: getattr(app.model.get_task(sentinel), "state", None) == "SUCCESS",
                timeout,
            )
            if not arrived:
                findings.add(
                    f"the last valid event never reached the model within {timeout:g} s "
                    f"(received {sources.received}, status {sources.status.state}, "
                    f"connects {sources.status.connects}, error {sources.status.error!r})"
                )
            # one more tick after everything arrived, so the panes show it
            ticks = app.console_screen.tick_count
            await settle(
                pilot,
                app,
                lambda: app.console_screen.tick_count > ticks + 1 and not sources.buffered,
                5.0,
            )
            if crashed(app):
                findings.add(
                    f"the app is not running (exception {app._exception!r}, "
                    f"return code {app.return_code})"
                )
            else:
                scan_screen(app, "main screen", findings)
                hostile = [
                    u
                    for u in (*(literal or {}), *(t.uuid for t in app.model.iter_tasks()))
                    if not u.startswith("valid-")
                ]
                await open_details(
                    pilot,
                    app,
                    dict.fromkeys(hostile),
                    "main",
                    findings,
                    limit=open_limit,
                    literal=literal,
                )
                await search_history(pilot, app, "main", findings, open_rows=open_limit // 2)
            if sources.status.connects != 1:
                findings.add(
                    f"the receiver reconnected: {sources.status.connects} connects, "
                    f"last error {sources.status.error!r}"
                )
            if sources.status.state != "connected":
                findings.add(f"the receiver is {sources.status.state} ({sources.status.error!r})")
            writer = app.console_screen.history.writer
            if writer is not None:
                await asyncio.to_thread(writer.flush)
                if writer.last_error:
                    findings.add(
                        f"the history writer reported: {writer.last_error[:200]} "
                        f"(dropped {writer.dropped}, errors {writer.errors})"
                    )
            if crashed(app):
                findings.add(
                    f"the app is not running (exception {app._exception!r}, "
                    f"return code {app.return_code})"
                )
    except Exception as exc:  # noqa: BLE001 - run_test re-raises the app's exception: report it
        findings.crash = exc
    finally:
        sources.stop()
        store.close()
    rows = history_rows(s.history_db, valid_uuids)
    lost = [u for u in valid_uuids if u not in rows]
    wrong = {
        u: r
        for u, r in rows.items()
        if (r[0], r[1], r[2], r[3], r[4]) != ("SUCCESS", VALID_NAME, VALID_QUEUE, 5, VALID_HOST)
    }
    if lost:
        findings.add(
            f"{len(lost)} of {len(valid_uuids)} valid tasks are not in the history file: {lost[:5]}"
        )
    if wrong:
        findings.add(f"valid tasks persisted wrong: {dict(list(wrong.items())[:3])}")
    return findings


# ---- the tests --------------------------------------------------------------------------------


def test_private_textual_names_exist() -> None:
    """The private Textual names the scans lean on still exist (textual is pinned to 8.x)."""
    from textual._compositor import Compositor
    from textual.widgets._data_table import default_cell_formatter

    assert callable(getattr(Compositor, "render_strips", None))
    assert isinstance(default_cell_formatter("[b]x[/b]"), Text)


def test_scan_finds_what_it_looks_for() -> None:
    """The checks themselves can fail: an escape, a surrogate, a payload's @click, a link."""
    assert bad_chars("a\x1b[2Jb") == ["'\\x1b'"]
    assert bad_chars("\x9b") and bad_chars("\ud800") and not bad_chars("✔ SUCCESS é")
    clicked = Text.from_markup("[@click=app.resize_all(5)]GROW[/]")
    assert any(style_problem(s.style) for s in clicked.spans)
    assert style_problem(Style(link="x"))
    assert not style_problem(Style(bold=True)) and not style_problem("bold red")


@pytest.mark.parametrize("group", sorted(known_exploits()))
async def test_known_exploits_on_a_real_broker(
    group: str, afirgen_settings, afirgen_app, tmp_path
) -> None:
    """Issue 12's exploits, one group per item of the issue (escapes, markup, NaN/-1e18
    timestamps, "now" and non-dict bodies, ``2**70`` and lone surrogates, long strings),
    published raw into a running console: nothing crashes, reaches the screen as an escape
    or an action, reconnects the receiver or costs a valid task its history row."""
    run = uuidlib.uuid4().hex[:6]
    valid = [f"valid-{run}-{i}" for i in range(3)]
    hostile = known_exploits()[group]
    messages = interleave(hostile, valid)
    findings = await run_console_with(
        afirgen_settings,
        afirgen_app,
        tmp_path / group,
        messages,
        valid,
        literal=SHOWN_LITERALLY.get(group),
    )
    findings.check(messages)


async def test_undecodable_messages_do_not_reconnect_the_receiver(
    afirgen_settings, afirgen_app, tmp_path
) -> None:
    """Messages kombu cannot decode (invalid JSON, bytes that are not UTF-8, a content type
    the receiver does not accept, e.g. pickle) are skipped and counted; the receiver keeps
    its one connection and the valid events around them all arrive."""
    run = uuidlib.uuid4().hex[:6]
    valid = [f"valid-{run}-{i}" for i in range(3)]
    garbage = [
        Wire(b"{not json", note="invalid-json"),
        Wire(b'{"type": "task-sent", "uuid": "\xff\xfe"}', note="not-utf8"),
        Wire(
            b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00}\x94.",
            "application/x-python-serialize",
            note="pickle-content-type",
        ),
        Wire(b"type: task-sent\n", "application/x-yaml", note="yaml-content-type"),
        Wire(b"", note="empty-body"),
    ]
    messages = interleave(garbage, valid)
    findings = await run_console_with(
        afirgen_settings, afirgen_app, tmp_path / "wire", messages, valid
    )
    findings.check(messages)


_RUN = iter(range(10**6))


@settings(
    max_examples=4,
    deadline=None,
    phases=(Phase.explicit, Phase.generate),
    print_blob=True,
    suppress_health_check=(
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ),
)
@given(batch=st.lists(hostile_message, min_size=30, max_size=80))
def test_fuzzed_events_on_a_real_broker(
    afirgen_settings, afirgen_app, tmp_path, batch: list[Wire]
) -> None:
    """Hypothesis batches of hostile events (every type, every field replaced by a wrong
    type, an escape, markup, a surrogate, a long string, or not a dict at all), interleaved
    with valid lifecycles, into a running console on the real broker.

    Each example is a fresh console and history file; shrinking is off to keep CI bounded
    (the failing batch is printed, and ``print_blob`` gives the line that replays it).
    """
    n = next(_RUN)
    run = uuidlib.uuid4().hex[:6]
    valid = [f"valid-{run}-{i}" for i in range(4)]
    messages = interleave(batch, valid)
    findings = asyncio.run(
        run_console_with(
            afirgen_settings,
            afirgen_app,
            tmp_path / f"ex{n}",
            messages,
            valid,
            timeout=8.0,
            open_limit=6,
        )
    )
    findings.check(messages)


# ---- hostile rows planted in the history database ---------------------------------------


def _blob_text(raw: bytes) -> Any:
    """A parameter SQLite stores as TEXT holding ``raw`` verbatim (e.g. a lone surrogate's
    CESU bytes, which no UTF-8 encoder writes); see the CAST in :func:`plant_rows`."""
    return sqlite3.Binary(raw)


PLANTED: list[dict[str, Any]] = [
    {
        "uuid": "pl-osc52",
        "name": "afirgen_tasks.x\x1b]52;c;SGFja2VkIQ==\x07",
        "queue": "\x1b]52;c;SGFja2VkIQ==\x07",
        "hostname": "\x1b]2;title\x07w@h",
        "state": "SUCCESS",
        "sent": -1e18,
    },
    # older than any retention: the writer's prune may delete it before the search runs
    {"uuid": "pl-ancient", "name": "n", "state": "SUCCESS", "sent": -1e18, "first_seen": -1e18},
    {
        "uuid": "[@click=app.resize_all(5)]GROW",
        "name": "[@click=app.resize_all(5)]GROW",
        "queue": "[/]",
        "hostname": "[bold]w@h",
        "state": "FAILURE",
        "exception": "[/]",
        "traceback": "[@click=app.quit]Q[/]",
    },
    {"uuid": "pl-close", "name": "[/]", "queue": "[link=x]", "hostname": "[/bold]", "state": "[/]"},
    {
        "uuid": "pl-nan-text",
        "name": "n",
        "state": "STARTED",
        "sent": "NaN",
        "started": "now",
        "runtime": "x",
        "priority": "1180591620717411303424",
    },
    {
        "uuid": "pl-inf",
        "name": "n",
        "state": "SUCCESS",
        "sent": INF,
        "started": -INF,
        "finished": 1e308,
        "runtime": -1e18,
        "priority": 9223372036854775807,
        "first_seen": 1e300,
    },
    {
        "uuid": "pl-prio-text",
        "name": "n",
        "state": "SENT",
        "priority": "high",
        "retries": "many",
        "sent": -1.0,
    },
    {"uuid": "pl-prio-neg", "name": "n", "state": "SENT", "priority": -(2**63), "retries": -5},
    {
        "uuid": "pl-clear\x1b[2J",
        "name": "\x1b[2J",
        "queue": "q\x9b2J",
        "state": "RETRY",
        "args": "\x1b[2J" * 100,
        "kwargs": "{'k': '\x07'}",
    },
    {
        "uuid": "pl-surrogate-text",
        "name": b"a\xed\xa0\x80b",
        "queue": b"\xed\xb2\x80",
        "state": "SUCCESS",
        "hostname": b"w\xed\xa0\xbd@h",
        "args": b"(\xed\xbf\xbf,)",
    },
    {
        "uuid": "pl-blob",
        "name": ("blob", b"\x00\xff\x1b[2J"),
        "queue": ("blob", b"q"),
        "state": "SUCCESS",
        "args": ("blob", b"\x80\x81"),
    },
    {
        "uuid": "pl-long",
        "name": "n" * 100_000,
        "queue": "[" * 10_000,
        "state": "SUCCESS",
        "traceback": "\x1b]52;c;SGFja2VkIQ==\x07" * 1_000,
    },
    {
        "uuid": "pl-state-weird",
        "name": "n",
        "state": "\x1b[2JSUCCESS",
        "eta": "\x1b]2;t\x07",
        "expires": -1,
    },
]


def plant_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` straight into the history file's ``tasks`` table (and ``vocab``),
    bypassing the store.  ``bytes`` values are stored as TEXT holding those exact bytes
    (invalid UTF-8 included); ``("blob", bytes)`` as a BLOB; other values as given."""
    HistoryStore(path).close()  # the real schema
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        now = time.time()
        for row in rows:
            # the cluster of a store opened without one (the console's own in these tests)
            row = {
                "cluster": DEFAULT_CLUSTER,
                "first_seen": now,
                "updated": now,
                "rank": 0,
                "source": "events",
                **row,
            }
            cols, exprs, params = [], [], []
            for col, value in row.items():
                cols.append(col)
                if isinstance(value, tuple) and value[0] == "blob":
                    exprs.append("?")
                    params.append(sqlite3.Binary(value[1]))
                elif isinstance(value, bytes):
                    exprs.append("CAST(? AS TEXT)")
                    params.append(_blob_text(value))
                elif isinstance(value, int) and not -(2**63) <= value < 2**63:
                    exprs.append("?")
                    params.append(str(value))
                else:
                    exprs.append("?")
                    params.append(value)
            conn.execute(
                f"INSERT INTO tasks ({', '.join(cols)}) VALUES ({', '.join(exprs)})", params
            )
            for fld in ("name", "queue", "hostname", "state"):
                value = row.get(fld)
                if isinstance(value, str):
                    conn.execute(
                        "INSERT OR IGNORE INTO vocab(field, value) VALUES (?, ?)", (fld, value)
                    )
    finally:
        conn.close()


#: celery-task-meta records the backfill reads at start (uuid -> raw JSON value).
PLANTED_BACKEND: dict[str, bytes] = {
    "bk-osc52": json.dumps(
        {
            "status": "SUCCESS",
            "result": "\x1b]52;c;SGFja2VkIQ==\x07",
            "name": "[/]",
            "queue": "\x1b[2J",
            "worker": "[@click=app.resize_all(5)]W",
            "date_done": "2026-01-01T00:00:00",
        }
    ).encode(),
    "bk-types": json.dumps(
        {
            "status": ["SUCCESS"],
            "result": {"a": NAN},
            "name": 7,
            "retries": 2**70,
            "date_done": "now",
            "args": '["\\ud800"]',
            "kwargs": 5,
        }
    ).encode(),
    "bk-list": b"[1, 2, 3]",
    "bk-garbage": b"\xff\xfe not json",
    "[@click=app.resize_all(5)]bk": json.dumps(
        {
            "status": "FAILURE",
            "result": {"exc_type": "[/]", "exc_message": ["\x1b[2J", "[@click=app.quit]q"]},
            "traceback": "\x1b]2;t\x07",
            "date_done": "9999-12-31T23:59:59",
        }
    ).encode(),
}


async def test_hostile_history_rows_planted_before_start(
    afirgen_settings, afirgen_app, redis_client, tmp_path
) -> None:
    """Rows no current writer would produce (escapes and markup in names, queues and uuids;
    NaN/-1e18/inf/"now" timestamps; priorities 2**70, text and -2**63; invalid UTF-8 and
    BLOBs where text belongs), and hostile result-backend records, are planted before the
    console starts.  It must load them, search them (``H``) and open their detail screens
    without a crash, an escape or an action in the render; and still record a valid task."""
    s = console_settings(afirgen_settings, tmp_path)
    plant_rows(s.history_db, PLANTED)
    for uuid, raw in PLANTED_BACKEND.items():
        redis_client.set(f"celery-task-meta-{uuid}", raw)
    findings = Findings()
    store = HistoryStore(s.history_db)
    sources = BrokerSources(s, afirgen_app)
    app = AfirgenApp(s, sources, celery_app=afirgen_app, history=store)
    valid = f"valid-{uuidlib.uuid4().hex[:6]}"
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            loaded = await settle(
                pilot, app, lambda: app.console_screen.history.loaded_count > 0, 10.0
            )
            if not loaded:
                findings.add(
                    f"the planted history was not loaded (history_loaded={app.console_screen.history.loaded_count}; "
                    f"notifications: {[n.message[:120] for n in app._notifications]})"
                )
            await settle(pilot, app, lambda: sources.status.state == "connected", 15.0)

            def backfilled() -> bool:
                # the backfill stores what it read, then hands those rows to the model
                have = store.existing(list(PLANTED_BACKEND))
                return bool(have) and all(app.model.get_task(u) is not None for u in have)

            if not await settle(pilot, app, backfilled, 8.0):
                stored = store.existing(list(PLANTED_BACKEND))
                findings.add(
                    f"the planted backend records were not backfilled (stored: {sorted(stored)}; "
                    f"not in the model: {[u for u in stored if app.model.get_task(u) is None]})"
                )
            if crashed(app):
                findings.add(f"the app died at start (exception {app._exception!r})")
            else:
                scan_screen(app, "main screen (planted)", findings)
                uuids = [r["uuid"] for r in PLANTED] + list(PLANTED_BACKEND)
                opened = await open_details(
                    pilot, app, uuids, "planted", findings, limit=len(uuids)
                )
                if loaded and opened < 5:
                    findings.add(f"only {opened} planted rows could be opened from the Tasks pane")
                shown = await search_history(pilot, app, "planted", findings, open_rows=6)
                # rows whose uuid is a plain key must be found (the others may be left out)
                plain = {
                    r["uuid"]
                    for r in PLANTED
                    if r["uuid"].startswith("pl-")
                    and r["uuid"].isprintable()
                    and "[" not in r["uuid"]
                    and r.get("first_seen", 0) >= 0
                }
                if not crashed(app) and not plain <= set(shown):
                    findings.add(
                        f"the history search does not show planted rows {sorted(plain - set(shown))}"
                    )
                # the console still records new work after loading the poison
                await asyncio.to_thread(
                    publish, afirgen_app, [Wire.json(e, "valid") for e in lifecycle(valid)]
                )
                if not await settle(
                    pilot,
                    app,
                    lambda: getattr(app.model.get_task(valid), "state", None) == "SUCCESS",
                    8.0,
                ):
                    findings.add("a valid task published after start never reached the model")
                # events are applied between ticks (ConsoleScreen.absorb); the tick hands the
                # changed tasks to the history writer: wait for the next one
                ticks = app.console_screen.tick_count
                await settle(pilot, app, lambda: app.console_screen.tick_count > ticks, 5.0)
                if app.console_screen.history.writer is not None:
                    await asyncio.to_thread(app.console_screen.history.writer.flush)
            if crashed(app):
                findings.add(f"the app is not running (exception {app._exception!r})")
    except Exception as exc:  # noqa: BLE001 - run_test re-raises the app's exception
        findings.crash = exc
    finally:
        sources.stop()
        store.close()
    if valid not in history_rows(s.history_db, [valid]):
        findings.add("the valid task published after start is not in the history file")
    findings.check()


def test_planted_rows_are_really_hostile(tmp_path) -> None:
    """The planting itself works: SQLite holds what the console will have to read."""
    path = tmp_path / "h.sqlite3"
    plant_rows(path, PLANTED)
    conn = sqlite3.connect(path)
    try:
        conn.text_factory = bytes
        got = dict(conn.execute("SELECT uuid, name FROM tasks").fetchall())
        types = dict(conn.execute("SELECT uuid, typeof(priority) FROM tasks").fetchall())
        sent = dict(conn.execute("SELECT uuid, typeof(sent) FROM tasks").fetchall())
    finally:
        conn.close()
    assert got[b"pl-surrogate-text"] == b"a\xed\xa0\x80b"  # not valid UTF-8, stored as TEXT
    assert got[b"pl-osc52"].startswith(b"afirgen_tasks.x\x1b]52")
    assert types[b"pl-nan-text"] == b"real"  # 2**70 as text: SQLite made it a REAL
    assert types[b"pl-prio-text"] == b"text"
    assert sent[b"pl-nan-text"] == b"text" and sent[b"pl-osc52"] == b"real"


# ---- hostile inspect replies from forged workers ------------------------------------------


class ForgedWorker(threading.Thread):
    """A kombu pidbox node on the real broker that answers ``inspect`` and control
    broadcasts as worker ``hostname`` would, with whatever ``replies`` says: what anyone
    with the broker URL can do.  ``replies`` maps a method name to its answer."""

    def __init__(self, celery_app: Any, hostname: str, replies: dict[str, Any]) -> None:
        super().__init__(name=f"forged-{hostname[:20]!r}", daemon=True)
        self.celery_app = celery_app
        self.hostname = hostname
        self.replies = replies
        self.answered: list[str] = []
        self.ready = threading.Event()
        self._halt = threading.Event()

    def _handler(self, method: str) -> Callable[..., Any]:
        def handle(state: Any, **arguments: Any) -> Any:
            self.answered.append(method)
            return self.replies[method]

        return handle

    def run(self) -> None:
        with self.celery_app.connection_for_read() as conn:
            handlers = {m: self._handler(m) for m in self.replies}
            handlers.setdefault("heartbeat", lambda state, **kw: None)  # the receiver's wakeup
            node = self.celery_app.control.mailbox(conn).Node(
                self.hostname, handlers=handlers, channel=conn.default_channel
            )
            node.listen()
            self.ready.set()
            while not self._halt.is_set():
                try:
                    conn.drain_events(timeout=0.3)
                except TimeoutError:
                    pass

    def stop(self) -> None:
        """Stop answering and wait for the thread."""
        self._halt.set()
        self.join(5)


#: forged hostname -> what it answers.  "forged@ok" has a plain name, so its (cleaned)
#: replies must reach the console.
FORGED: dict[str, dict[str, Any]] = {
    "forged@ok": {
        "ping": {"ok": "pong"},
        "stats": {
            "pool": {
                "implementation": "\x1b]2;pool\x07[/]",
                "max-concurrency": 2**70,
                "processes": "[@click=app.resize_all(5)]",
            },
            "autoscaler": {"max": NAN, "min": "x"},
            "pid": -1,
            "total": {"[/]": "many"},
        },
        "active_queues": [
            {"name": "\x1b]52;c;SGFja2VkIQ==\x07"},
            {"name": "[/]"},
            {"name": "reports"},
            "not-a-dict",
            {"name": 7},
            {"name": "[@click=app.quit]q"},
        ],
        "active": [
            {
                "id": "forged-active-1",
                "name": "[/]\x1b[2J",
                "args": "[@click=app.resize_all(5)]",
                "kwargs": {"k": "\x1b]52;c;SGFja2VkIQ==\x07"},
                "hostname": "[/]",
            },
            {"id": "[@click=app.resize_all(5)]ACT", "name": "n"},
            {"id": 5},
            "x",
            None,
        ],
        "reserved": [
            {"id": "forged-reserved-1", "name": "\ud800", "args": ["\x1b[2J"], "kwargs": 2**70}
        ],
        "enable_events": {"ok": "[@click=app.quit]task events enabled"},
    },
    "\x1b]2;forged\x07@host": {
        "ping": {"ok": "pong"},
        "stats": {"pool": "x"},
        "active_queues": "x",
        "active": {"not": "a list"},
        "reserved": [1, 2],
    },
    "[@click=app.resize_all(5)]@host": {
        "ping": {"ok": "pong"},
        "stats": [],
        "active_queues": [{"name": "[/]"}],
        "active": [],
        "reserved": [],
    },
    "list@host": {
        "ping": {"ok": "pong"},
        "stats": "a string",
        "active_queues": None,
        "active": 12,
        "reserved": NAN,
    },
}


async def test_hostile_inspect_replies_from_forged_workers(
    afirgen_settings, afirgen_app, tmp_path
) -> None:
    """Forged workers (pidbox nodes on the real broker) answer the console's inspect with
    escapes, markup, ``2**70``, NaN and replies of the wrong shape; another claims a
    hostile hostname.  The console keeps running and connected, renders nothing from them
    as an escape or an action, shows the plain-named one's cleaned replies, opens the
    tasks its ``active``/``reserved`` put in the model, and still records a valid task."""
    forged = [ForgedWorker(afirgen_app, host, replies) for host, replies in FORGED.items()]
    for worker in forged:
        worker.start()
    findings = Findings()
    # four nodes answering from threads of this process on a loaded machine: give the
    # replies time (the limit still ends each call once all of them answered)
    s = console_settings(afirgen_settings, tmp_path).model_copy(
        update={"console_control_timeout": 2.0}
    )
    store = HistoryStore(s.history_db)
    sources = BrokerSources(s, afirgen_app)
    app = AfirgenApp(s, sources, celery_app=afirgen_app, history=store)
    valid = f"valid-{uuidlib.uuid4().hex[:6]}"
    try:
        for worker in forged:
            if not worker.ready.wait(10):
                findings.add(f"forged worker {worker.hostname!r} never listened")
        async with app.run_test(size=(160, 50)) as pilot:
            inspected = await settle(
                pilot,
                app,
                lambda: (
                    app.console_screen.last_inspection is not None
                    and "forged@ok" in app.console_screen.last_inspection.stats
                    and app.model.get_task("forged-active-1") is not None
                ),
                15.0,
            )
            if not inspected:
                findings.add(
                    f"the console never took forged@ok's cleaned replies "
                    f"(answered: {forged[0].answered[:8]}, last inspection: {app.console_screen.last_inspection}, "
                    f"tasks: {[t.uuid for t in app.model.iter_tasks()][:8]})"
                )
            await asyncio.to_thread(
                publish, afirgen_app, [Wire.json(e, "valid") for e in lifecycle(valid)]
            )
            if not await settle(
                pilot,
                app,
                lambda: getattr(app.model.get_task(valid), "state", None) == "SUCCESS",
                8.0,
            ):
                findings.add(
                    "a valid task published after the forged replies never reached the model"
                )
            ticks = app.console_screen.tick_count
            await settle(pilot, app, lambda: app.console_screen.tick_count > ticks + 1, 5.0)
            if not crashed(app):
                scan_screen(app, "main screen (forged workers)", findings)
                uuids = [t.uuid for t in app.model.iter_tasks() if t.uuid != valid]
                await open_details(pilot, app, uuids, "forged", findings, limit=6)
            if sources.status.connects != 1 or sources.status.state != "connected":
                findings.add(
                    f"the receiver is {sources.status.state} after {sources.status.connects} connects"
                )
            if app.console_screen.history.writer is not None:
                await asyncio.to_thread(app.console_screen.history.writer.flush)
            if crashed(app):
                findings.add(f"the app is not running (exception {app._exception!r})")
    except Exception as exc:  # noqa: BLE001 - run_test re-raises the app's exception
        findings.crash = exc
    finally:
        sources.stop()
        store.close()
        for worker in forged:
            worker.stop()
    if valid not in history_rows(s.history_db, [valid]):
        findings.add("the valid task is not in the history file")
    findings.check()
