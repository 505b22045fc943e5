"""Exports of the task history: CSV, Excel (.xlsx) and an incident report PDF.

No Textual here: the app calls these from a thread worker (they write files).  Every
text field of every export goes through the redactor (``tui.core.redaction.Redactor`` or any
``str -> str`` callable), and every file is written to a temporary file in the target
directory and renamed over the target (``os.replace``), so a reader never sees half a
file and a failed export leaves no debris.

Rows are the dicts :class:`tui.history.HistoryStore` returns (``load_recent``,
``search``) or :class:`tui.core.model.TaskRecord` objects (the pane's in-memory view).

What a reader of the files can rely on:

* **Runtime** is the runtime the worker reported, else finished - started
  (:func:`tui.core.formatting.task_runtime`): Celery's ``task-failed`` and ``task-revoked``
  carry none, so FAILURE rows and REVOKED rows that had started get one too.  It stays
  empty when a task never started.
* **No cell holds more than** :data:`CELL_MAX` **(32,000) characters**, in CSV and in
  XLSX alike.  Longer text (in practice args, kwargs, result, exception, traceback) is
  cut and ends with a visible ``(… N more characters)``.  32,000 is under Excel's cell
  limit (32,767) and under the default ``csv.field_size_limit()`` (131,072), so both
  Excel and Python's csv module read every file back.
* **Timestamps are UTC**, as every header says.  In CSV they are ISO text
  (``2024-05-01 10:01:02.000``); in XLSX they are date cells (naive ``datetime`` in
  UTC, shown as ``yyyy-mm-dd hh:mm:ss.000``) that sort, filter and subtract.
* **The incident PDF groups failures** by task and exception type: a table of the
  groups (count, first and last seen, workers), then ONE sample traceback per group,
  then a table of the failed tasks without tracebacks.  Text wraps at spaces, and a word
  too long for its column only after ``_``, ``.``, ``-``, ``/`` or ``,`` (an identifier
  is never cut mid-word; a run with none of those that is wider than the column is the
  one exception), and all text from data is escaped before reportlab's Paragraph markup
  sees it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from afirgen_tasks.spreadsheet import xlsx_text
from tui.core.failures import exception_type
from tui.core.formatting import task_runtime
from tui.core.model import ALL_STATES
from tui.history import parse_utc_iso

__all__ = [
    "CELL_MAX",
    "COLUMNS",
    "clip",
    "export_csv",
    "export_incident_pdf",
    "export_path",
    "export_xlsx",
]

Redact = Callable[[str], str]

#: (key, header) of every exported column, in order.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("uuid", "Task id"),
    ("name", "Task"),
    ("state", "State"),
    ("source", "Source"),
    ("cluster", "Cluster"),
    ("queue", "Queue"),
    ("priority", "Priority"),
    ("hostname", "Worker"),
    ("retries", "Retries"),
    ("sent", "Sent (UTC)"),
    ("received", "Received (UTC)"),
    ("started", "Started (UTC)"),
    ("finished", "Finished (UTC)"),
    ("runtime", "Runtime (s)"),
    ("args", "Args"),
    ("kwargs", "Kwargs"),
    ("result", "Result"),
    ("exception", "Exception"),
    ("traceback", "Traceback"),
    ("revoke_reason", "Revoke reason"),
)
_TIME_KEYS = frozenset({"sent", "received", "started", "finished", "retried", "first_seen"})
_NUMBER_KEYS = frozenset({"priority", "retries", "runtime"})
# Spreadsheet formula injection (CSV/DDE): a text cell starting with one of these is
# run as a formula by Excel/LibreOffice; exported text is prefixed with ' instead.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

#: The most characters one CSV or XLSX cell holds, the clipping suffix included: under
#: Excel's 32,767 and Python's default ``csv.field_size_limit()`` of 131,072.
CELL_MAX = 32_000
#: Excel's number format of the timestamp cells (their values are UTC).
XLSX_TIME_FORMAT = "yyyy-mm-dd hh:mm:ss.000"


def _identity(text: str) -> str:
    return text


def _get(row: Any, key: str) -> Any:
    if isinstance(row, Mapping):
        return row.get(key)
    return getattr(row, key, None)


def _utc(value: Any) -> datetime | None:
    """An aware UTC datetime of a POSIX timestamp; None when absent or not a sane time."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _fmt_time(value: Any) -> str:
    when = value if isinstance(value, datetime) else _utc(value)
    return "" if when is None else when.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _text(value: Any, redact: Redact) -> str:
    """Redacted text of any value ('' for None)."""
    if value is None:
        return ""
    return redact(value if isinstance(value, str) else str(value)) or ""


def _safe_formula(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


def clip(text: str, limit: int = CELL_MAX) -> str:
    """``text`` cut to at most ``limit`` characters, ending ``(… N more characters)`` when cut."""
    if len(text) <= limit:
        return text
    # the suffix for all of text's length is at least as long as the one finally used
    keep = max(limit - len(_more(len(text))) - 1, 0)
    return f"{text[:keep]} {_more(len(text) - keep)}"


def _more(n: int) -> str:
    return f"(… {n:,} more characters)"


def _runtime(row: Any) -> float | None:
    """The reported runtime, else finished - started (FAILURE and REVOKED events carry none)."""
    if isinstance(row, Mapping):
        row = SimpleNamespace(
            runtime=row.get("runtime"), started=row.get("started"), finished=row.get("finished")
        )
    value = task_runtime(row)
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return None
    return round(value, 6)  # a difference of two float stamps: no 1.0000000000000002


def _cell(row: Any, key: str, redact: Redact, cluster: str = "") -> Any:
    """One exported cell: numbers stay numbers, times are aware UTC datetimes (or None),
    everything else is redacted text (not yet clipped).  ``cluster`` is the Cluster of a row
    that does not carry one (an in-memory task is of the console's cluster)."""
    if key in _TIME_KEYS:
        return _utc(_get(row, key))
    if key == "runtime":
        return _runtime(row)
    value = _get(row, key)
    if key in _NUMBER_KEYS and isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if key == "source" and value is None:
        value = "events" if not isinstance(row, Mapping) else ""
    if key == "cluster" and not value:
        value = cluster
    return _text(value, redact)


@contextmanager
def _atomic(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o600)  # exports hold task arguments: owner only, like the audit log
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def export_path(directory: str | os.PathLike[str], kind: str, now: float | None = None) -> Path:
    """``<directory>/tasks-20240501-100000.<kind>`` (``incident-...pdf`` for the report)."""
    stamp = datetime.fromtimestamp(
        now if now is not None else datetime.now(UTC).timestamp(), UTC
    ).strftime("%Y%m%d-%H%M%S")
    stem = "incident" if kind == "pdf" else "tasks"
    return Path(directory) / f"{stem}-{stamp}.{kind}"


# ---- CSV -------------------------------------------------------------------------------
def export_csv(
    rows: Iterable[Any],
    path: str | os.PathLike[str],
    redact: Redact | None = None,
    cluster: str = "",
) -> int:
    """Write ``rows`` as CSV (UTF-8 with BOM, so Excel reads the accents); returns the count.

    Timestamps are UTC text, runtimes and counts numbers, every cell at most
    :data:`CELL_MAX` characters.  The Cluster column is each row's own, else ``cluster``.
    """
    redact = redact or _identity
    n = 0
    with _atomic(path) as tmp, open(tmp, "w", newline="", encoding="utf-8-sig") as fh:
        writer = csv.writer(fh)
        writer.writerow([h for _, h in COLUMNS])
        for row in rows:
            out = []
            for key, _ in COLUMNS:
                v = _cell(row, key, redact, cluster)
                if isinstance(v, datetime):
                    v = _fmt_time(v)
                elif isinstance(v, str):
                    v = clip(_safe_formula(v))
                elif v is None:
                    v = ""
                out.append(v)
            writer.writerow(out)
            n += 1
    return n


# ---- Excel -----------------------------------------------------------------------------
def export_xlsx(
    rows: Iterable[Any],
    path: str | os.PathLike[str],
    redact: Redact | None = None,
    cluster: str = "",
) -> int:
    """Write ``rows`` to an .xlsx: a "Tasks" sheet with a State column, then one sheet per state.

    Each sheet has a bold, filled header row that stays frozen, sized column widths and
    an autofilter.  Timestamps are date cells in UTC, text cells at most :data:`CELL_MAX`
    characters.  The Cluster column is each row's own, else ``cluster``.  Returns the
    number of task rows.
    """
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    redact = redact or _identity
    table: list[list[Any]] = []
    for row in rows:
        values = []
        for key, _ in COLUMNS:
            v = _cell(row, key, redact, cluster)
            if isinstance(v, str):
                v = xlsx_text(clip(v))  # clipped first: xlsx_text's own cut would hide N
            elif isinstance(v, datetime):
                v = v.replace(tzinfo=None)  # Excel has no time zones; the header says UTC
            values.append(v)
        table.append(values)
    state_col = [k for k, _ in COLUMNS].index("state")
    widths = [max(len(h) + 2, 8) for _, h in COLUMNS]
    for values in table:
        for i, v in enumerate(values):
            # the first line decides: tracebacks are long but read in the cell editor
            if isinstance(v, datetime):
                length = len(XLSX_TIME_FORMAT)
            else:
                length = len(v.partition("\n")[0]) if isinstance(v, str) else len(str(v))
            if length + 2 > widths[i]:
                widths[i] = min(length + 2, 60)

    wb = Workbook(write_only=True)
    header_font = Font(bold=True, color="FFFFFF")
    header_fill = PatternFill("solid", fgColor="1F4E78")
    top = Alignment(vertical="top")
    by_state: dict[str, list[list[Any]]] = {}
    for values in table:
        by_state.setdefault(str(values[state_col]) or "UNKNOWN", []).append(values)
    order = [s for s in ALL_STATES if s in by_state] + sorted(
        s for s in by_state if s not in ALL_STATES
    )
    sheets = [("Tasks", table)] + [(s[:31], by_state[s]) for s in order]
    for title, body in sheets:
        ws = wb.create_sheet(title)
        for i, w in enumerate(widths, start=1):
            ws.column_dimensions[get_column_letter(i)].width = w
        ws.freeze_panes = "A2"
        last = get_column_letter(len(COLUMNS))
        ws.auto_filter.ref = f"A1:{last}{len(body) + 1}"
        header = []
        for _, h in COLUMNS:
            c = WriteOnlyCell(ws, value=h)
            c.font = header_font
            c.fill = header_fill
            header.append(c)
        ws.append(header)
        for values in body:
            cells = []
            for v in values:
                if isinstance(v, str):
                    c = WriteOnlyCell(ws, value=v)
                    c.data_type = "s"  # text, never a formula (openpyxl reads '=...' as one)
                    c.alignment = top
                    cells.append(c)
                elif isinstance(v, datetime):
                    c = WriteOnlyCell(ws, value=v)
                    c.number_format = XLSX_TIME_FORMAT
                    c.alignment = top
                    cells.append(c)
                else:
                    cells.append(v)
            ws.append(cells)
    with _atomic(path) as tmp:
        wb.save(tmp)
    return len(table)


# ---- the incident report PDF -----------------------------------------------------------------
_QUEUE_COLORS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
_MAX_SERIES = 10
_MAX_FAILURES = 200
_MAX_TRACEBACK_LINES = 60


_MAX_GROUPS = 60
_PDF_TEXT_MAX = 600  # args, kwargs, exception text in the report: the CSV/XLSX hold more
# Where a line may end: at a space; inside a word too long for a line of its own, after
# one of these.  A run between them is never cut unless it alone is wider than the line.
_BREAK_AFTER = "_.-/,"
_PIECE = re.compile(
    rf"[^{re.escape(_BREAK_AFTER)}]*[{re.escape(_BREAK_AFTER)}]+|[^{re.escape(_BREAK_AFTER)}]+"
)


def _wrap(text: str, font: str, size: float, width: float, indent: str = "") -> list[str]:
    """``text`` as lines no wider than ``width`` points.

    Lines break at spaces; a word longer than a whole line (``afirgen_tasks.cleanup.
    pause_queue_now`` in a narrow column) breaks after ``_ . - / ,``; only a run with none
    of those that is still too long is cut where it must be.  reportlab itself breaks only
    at spaces and cuts a long word anywhere ("pause_queu e"); lines that already fit are
    left alone.  Each line of ``text`` keeps its indentation; continuation lines start
    with ``indent``.
    """
    from reportlab.pdfbase.pdfmetrics import stringWidth

    def sw(t: str) -> float:
        return stringWidth(t, font, size)

    space = sw(" ")
    out: list[str] = []
    for source in text.split("\n"):
        line = start = source[: len(source) - len(source.lstrip())]
        used = sw(line)

        def new_line() -> None:
            nonlocal line, start, used
            out.append(line)
            line = start = indent
            used = sw(indent)

        for word in source.split():
            w = sw(word)
            gap = space if line != start else 0.0
            if used + gap + w <= width:
                line += " " * bool(gap) + word
                used += gap + w
                continue
            if line != start:
                new_line()
                if used + w <= width:
                    line += word
                    used += w
                    continue
            for piece in _PIECE.findall(word):
                pw = sw(piece)
                if line != start and used + pw > width:
                    new_line()
                while used + pw > width and len(piece) > 1:  # no boundary in a line's width
                    cut, acc = 0, used
                    for ch in piece:
                        acc += sw(ch)
                        if acc > width:
                            break
                        cut += 1
                    line += piece[: max(cut, 1)]
                    piece = piece[max(cut, 1) :]
                    new_line()
                    pw = sw(piece)
                line += piece
                used += pw
        out.append(line)
    return out


def _markup(text: str) -> str:
    """Text from data as Paragraph markup: ``<``, ``>``, ``&`` and quotes escaped."""
    return escape(text, quote=False)


def _para(text: str, style: Any, width: float | None = None) -> Any:
    """A Paragraph of plain ``text`` (escaped); wrapped at identifier boundaries in ``width``."""
    from reportlab.platypus import Paragraph

    lines = _wrap(text, style.fontName, style.fontSize, width) if width else text.split("\n")
    return Paragraph("<br/>".join(_markup(x) for x in lines), style)


def _table(
    header: Sequence[str],
    body: Sequence[Sequence[str]],
    fractions: Sequence[float],
    width: float,
    style: Any,
) -> Any:
    """A grid of wrapped plain-text cells with a repeated dark header row."""
    from reportlab.lib import colors
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import Table, TableStyle

    widths = [f * width for f in fractions]
    pad = 2
    inner = [w - 2 * pad - 0.5 for w in widths]
    head = ParagraphStyle(f"{style.name}-head", parent=style, textColor=colors.white)
    data = [[_para(h, head, inner[i]) for i, h in enumerate(header)]]
    data += [[_para(v, style, inner[i]) for i, v in enumerate(row)] for row in body]
    table = Table(data, colWidths=widths, repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#1F4E78")),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), pad),
                ("RIGHTPADDING", (0, 0), (-1, -1), pad),
            ]
        )
    )
    return table


def _when(row: Any) -> float | None:
    for key in ("finished", "started", "first_seen", "sent"):
        v = _get(row, key)
        if _utc(v) is not None:
            return float(v)
    return None


def _failure_groups(failures: Sequence[Any], redact: Redact) -> list[dict[str, Any]]:
    """Failures grouped by (task, exception type), most frequent first.

    Each group: ``name``, ``exc_type``, ``count``, ``first`` and ``last`` seen, ``workers``
    and ``sample`` (the latest failure of the group that has a traceback, else the latest).
    """
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for r in failures:
        name = _text(_get(r, "name"), redact) or "?"
        exc_type = exception_type(
            _text(_get(r, "exception"), redact), _text(_get(r, "traceback"), redact)
        )
        g = groups.setdefault(
            (name, exc_type),
            {
                "name": name,
                "exc_type": exc_type,
                "count": 0,
                "first": None,
                "last": None,
                "workers": set(),
                "sample": r,
            },
        )
        g["count"] += 1
        ts = _when(r)
        if ts is not None:
            g["first"] = ts if g["first"] is None else min(g["first"], ts)
            g["last"] = ts if g["last"] is None else max(g["last"], ts)
        worker = _text(_get(r, "hostname"), redact)
        if worker:
            g["workers"].add(worker)
        # failures come oldest first: the latest with a traceback is the sample
        if _get(r, "traceback") or not _get(g["sample"], "traceback"):
            g["sample"] = r
    return sorted(groups.values(), key=lambda g: (-g["count"], -(g["last"] or 0), g["name"]))


def _line_chart(
    series: dict[str, list[tuple[float, float]]],
    since: float,
    until: float,
    y_label: str,
    width: float,
    height: float = 170,
) -> Any:
    """A LinePlot of ``{label: [(ts, value)]}`` over the window, x in minutes, with a legend."""
    from reportlab.graphics.charts.legends import Legend
    from reportlab.graphics.charts.lineplots import LinePlot
    from reportlab.graphics.shapes import Drawing, String
    from reportlab.lib import colors

    labels = list(series)[:_MAX_SERIES]
    legend_rows = max(1, -(-len(labels) // 3))  # three legend columns
    plot = LinePlot()
    # from the bottom: legend, axis title, tick labels, the plot, the y-axis title
    plot.x, plot.y = 45, 12 * legend_rows + 34
    plot.width, plot.height = width - 60, height - 30
    drawing = Drawing(width, plot.y + plot.height + 16)
    span_min = max((until - since) / 60, 1e-6)
    data = []
    ymax = 1.0
    for label in labels:
        pts = [((ts - since) / 60, float(v)) for ts, v in series[label] if since <= ts <= until]
        if not pts:
            pts = [(0.0, 0.0)]
        ymax = max(ymax, max(v for _, v in pts))
        data.append(pts)
    plot.data = data
    plot.xValueAxis.valueMin, plot.xValueAxis.valueMax = 0, span_min
    plot.yValueAxis.valueMin, plot.yValueAxis.valueMax = 0, ymax * 1.1
    # whole-message ticks (no "2, 2, 1, 1" from rounding half steps); decimals on short windows
    plot.yValueAxis.valueStep = max(1, math.ceil(ymax * 1.1 / 5))
    plot.yValueAxis.labelTextFormat = "%.0f"
    plot.xValueAxis.labelTextFormat = "%.1f" if span_min < 10 else "%.0f"
    for i in range(len(labels)):
        plot.lines[i].strokeColor = colors.HexColor(_QUEUE_COLORS[i % len(_QUEUE_COLORS)])
        plot.lines[i].strokeWidth = 1.5
    drawing.add(plot)
    drawing.add(
        String(
            plot.x + plot.width / 2,
            plot.y - 24,
            "minutes since the window start",
            fontSize=7,
            textAnchor="middle",
        )
    )
    drawing.add(String(8, plot.y + plot.height + 6, y_label, fontSize=7))
    legend = Legend()
    legend.x, legend.y = plot.x, plot.y - 30  # y is the legend's top
    legend.dx = legend.dy = 6
    legend.fontSize = 7
    legend.columnMaximum = legend_rows
    legend.alignment = "right"
    legend.deltax = (width - 60) / 3
    legend.colorNamePairs = [
        (colors.HexColor(_QUEUE_COLORS[i % len(_QUEUE_COLORS)]), lab)
        for i, lab in enumerate(labels)
    ]
    drawing.add(legend)
    return drawing


def _online_timeline(
    series: dict[str, list[tuple[float, bool]]], since: float, until: float, width: float
) -> Any:
    """One bar per worker: green while online, red while offline, grey before it was seen."""
    from reportlab.graphics.shapes import Drawing, Line, Rect, String
    from reportlab.lib import colors

    hosts = list(series)[:30]
    row_h, left, top_pad = 14, 130, 8
    drawing = Drawing(width, top_pad + row_h * len(hosts) + 24)
    span = max(until - since, 1e-6)
    plot_w = width - left - 10

    def x_of(ts: float) -> float:
        return left + plot_w * min(max((ts - since) / span, 0.0), 1.0)

    for i, host in enumerate(hosts):
        y = drawing.height - top_pad - row_h * (i + 1)
        drawing.add(String(left - 4, y + 3, host[:28], fontSize=7, textAnchor="end"))
        drawing.add(
            Rect(left, y, plot_w, row_h - 3, fillColor=colors.HexColor("#eeeeee"), strokeColor=None)
        )
        points = sorted(series[host])
        for j, (ts, online) in enumerate(points):
            end = points[j + 1][0] if j + 1 < len(points) else until
            if end < since or ts > until:
                continue
            x0, x1 = x_of(ts), x_of(end)
            color = colors.HexColor("#2ca02c" if online else "#d62728")
            drawing.add(
                Rect(x0, y, max(x1 - x0, 0.5), row_h - 3, fillColor=color, strokeColor=None)
            )
    base = 14
    drawing.add(Line(left, base + 4, left + plot_w, base + 4, strokeWidth=0.5))
    for k in range(5):
        ts = since + span * k / 4
        x = x_of(ts)
        drawing.add(
            String(
                x,
                base - 6,
                datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S"),
                fontSize=6,
                textAnchor="middle",
            )
        )
    drawing.add(String(left, 0, "green: online, red: offline (UTC)", fontSize=6))
    return drawing


def _series(
    samples: Sequence[tuple[float, Mapping[str, Any]]],
) -> dict[str, list[tuple[float, Any]]]:
    out: dict[str, list[tuple[float, Any]]] = {}
    for ts, values in samples:
        for key, v in values.items():
            out.setdefault(str(key), []).append((float(ts), v))
    return out


def export_incident_pdf(
    path: str | os.PathLike[str],
    rows: Iterable[Any],
    window: tuple[float, float],
    queue_samples: Sequence[tuple[float, Mapping[str, int]]] = (),
    worker_timeline: Sequence[tuple[float, Mapping[str, bool | int]]] = (),
    audit_records: Sequence[Mapping[str, Any]] = (),
    redact: Redact | None = None,
    title: str = "Incident report",
    author: str | None = None,
) -> dict[str, int]:
    """Write the incident report: window, queue backlog and worker timeline plots, failures
    grouped by task and exception type (count, first and last seen, workers, one sample
    traceback per group, then a table of the failed tasks), and the operators' actions
    (audit log) in the window.

    ``rows`` are the window's tasks; ``queue_samples`` are ``(ts, {queue: waiting})``;
    ``worker_timeline`` is ``(ts, {hostname: online})`` (a bar per worker) or
    ``(ts, {hostname: active_count})`` (a line per worker); ``audit_records`` are
    :meth:`tui.actions.AuditLog.read` dicts (those outside the window are left out).
    Returns counts: ``tasks``, ``failures``, ``actions``.
    """
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import (
        KeepTogether,
        Preformatted,
        SimpleDocTemplate,
        Spacer,
    )

    redact = redact or _identity
    since, until = float(window[0]), float(window[1])
    rows = list(rows)
    styles = getSampleStyleSheet()
    body = styles["BodyText"]
    small = ParagraphStyle("small", parent=body, fontSize=7.5, leading=9)
    code = ParagraphStyle("code", parent=styles["Code"], fontSize=6.5, leading=7.8)
    h2 = styles["Heading2"]
    h3 = ParagraphStyle("h3", parent=styles["Heading4"], spaceBefore=6, spaceAfter=2)
    width = A4[0] - 36 * mm
    text_width = width - 12  # a Frame pads 6 points on each side

    story: list[Any] = [_para(redact(title), styles["Title"])]
    minutes = (until - since) / 60
    story.append(
        _para(
            f"Window: {_fmt_time(since)[:19]} to {_fmt_time(until)[:19]} UTC ({minutes:,.0f} min)",
            styles["Heading3"],
        )
    )
    generated = f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
    if author:
        generated += f" by {redact(author)}"
    story.append(_para(generated, small))
    states = Counter(str(_get(r, "state") or "?") for r in rows)
    summary = ", ".join(f"{s}: {states[s]}" for s in (*ALL_STATES, "?") if states.get(s))
    story.append(
        _para(f"{len(rows):,} tasks in the window" + (f" ({summary})" if summary else ""), body)
    )
    story.append(Spacer(1, 4 * mm))

    # -- plots
    story.append(_para("Queue backlog", h2))
    queues = _series(queue_samples)
    if queues:
        ranked = sorted(queues, key=lambda q: -max(v for _, v in queues[q]))
        story.append(
            _line_chart(
                {redact(q): queues[q] for q in ranked}, since, until, "messages waiting", width
            )
        )
    else:
        story.append(_para("No queue samples in this window.", body))
    story.append(_para("Worker timeline", h2))
    workers = _series(worker_timeline)
    if workers and all(isinstance(v, bool) for pts in workers.values() for _, v in pts):
        story.append(
            _online_timeline({redact(h): workers[h] for h in sorted(workers)}, since, until, width)
        )
    elif workers:
        story.append(
            _line_chart(
                {redact(h): [(t, int(v)) for t, v in workers[h]] for h in sorted(workers)},
                since,
                until,
                "active tasks",
                width,
            )
        )
    else:
        story.append(_para("No worker samples in this window.", body))

    # -- failures: one group per task and exception type, one sample traceback each
    failures = [r for r in rows if _get(r, "state") == "FAILURE"]
    failures.sort(key=lambda r: _when(r) or 0)
    groups = _failure_groups(failures, redact)
    story.append(_para(f"Failures ({len(failures)})", h2))
    if not failures:
        story.append(_para("No failed tasks in this window.", body))
    else:
        story.append(
            _para(
                f"{len(failures):,} failed task(s) in {len(groups):,} group(s) of task and exception"
                " type, most frequent first. Times are UTC.",
                body,
            )
        )
        story.append(
            _table(
                ("#", "Task", "Exception", "Count", "First seen", "Last seen", "Workers"),
                [
                    (
                        str(i),
                        g["name"],
                        g["exc_type"],
                        f"{g['count']:,}",
                        _fmt_time(g["first"])[:19],
                        _fmt_time(g["last"])[:19],
                        ", ".join(sorted(g["workers"])) or "?",
                    )
                    for i, g in enumerate(groups[:_MAX_GROUPS], start=1)
                ],
                (0.04, 0.24, 0.19, 0.06, 0.155, 0.155, 0.16),
                text_width,
                small,
            )
        )
        if len(groups) > _MAX_GROUPS:
            story.append(
                _para(
                    f"... and {len(groups) - _MAX_GROUPS} more groups "
                    "(the CSV/Excel export lists every failure).",
                    body,
                )
            )
        story.append(_para("One sample traceback per group", h2))
    for i, g in enumerate(groups[:_MAX_GROUPS], start=1):
        r = g["sample"]
        block = [
            _para(f"{i}. {g['name']} · {g['exc_type']} · {g['count']:,} failure(s)", h3, text_width)
        ]
        block.append(
            _para(
                f"sample: task {_text(_get(r, 'uuid'), redact)} on "
                f"{_text(_get(r, 'hostname'), redact) or 'worker ?'} at {_fmt_time(_when(r))} UTC",
                small,
                text_width,
            )
        )
        args = clip(_text(_get(r, "args"), redact), _PDF_TEXT_MAX)
        kwargs = clip(_text(_get(r, "kwargs"), redact), _PDF_TEXT_MAX)
        if args or kwargs:
            block.append(_para(f"args {args or '()'} kwargs {kwargs or '{}'}", small, text_width))
        exc = clip(_text(_get(r, "exception"), redact), _PDF_TEXT_MAX)
        if exc:
            block.append(_para(exc, small, text_width))
        tb = clip(_text(_get(r, "traceback"), redact), 20_000)
        lines: list[str] = []
        if tb:
            lines = tb.rstrip("\n").splitlines()
            if len(lines) > _MAX_TRACEBACK_LINES:
                cut = len(lines) - _MAX_TRACEBACK_LINES
                lines = (
                    lines[:10] + [f"... {cut} lines ..."] + lines[-(_MAX_TRACEBACK_LINES - 10) :]
                )
            lines = _wrap(
                "\n".join(lines),
                code.fontName,
                code.fontSize,
                text_width - code.leftIndent - code.rightIndent,
                indent="      ",
            )
            block.append(Preformatted("\n".join(lines), code))
        # a short block stays on one page; a long traceback may start under its heading
        story.append(KeepTogether(block) if len(lines) < 45 else block[0])
        if len(lines) >= 45:
            story.extend(block[1:])
    if failures:
        shown = failures[-_MAX_FAILURES:][::-1]
        story.append(_para(f"Failed tasks ({len(failures)}), newest first", h2))
        story.append(
            _table(
                ("Finished (UTC)", "Task", "Task id", "Worker", "Runtime", "Exception"),
                [
                    (
                        _fmt_time(_when(r))[:19],
                        _text(_get(r, "name"), redact) or "?",
                        _text(_get(r, "uuid"), redact),
                        _text(_get(r, "hostname"), redact) or "?",
                        "" if _runtime(r) is None else f"{_runtime(r):.3f} s",
                        clip(_text(_get(r, "exception"), redact).partition("\n")[0], 200),
                    )
                    for r in shown
                ],
                (0.155, 0.25, 0.2, 0.12, 0.08, 0.195),
                text_width,
                small,
            )
        )
        if len(failures) > _MAX_FAILURES:
            story.append(
                _para(
                    f"... and {len(failures) - _MAX_FAILURES} older failures "
                    "(the CSV/Excel export lists them all).",
                    body,
                )
            )

    # -- actions
    actions = []
    for rec in audit_records:
        ts = parse_utc_iso(rec.get("ts"))
        if ts is None or since <= ts <= until:
            actions.append((ts, rec))
    actions.sort(key=lambda a: a[0] or 0)
    story.append(_para(f"Actions taken ({len(actions)})", h2))
    if not actions:
        story.append(_para("No console actions in this window.", body))
    else:
        data = []
        for ts, rec in actions:
            who = str(rec.get("user") or "?")
            if rec.get("ssh_client"):
                who += f" (ssh {rec['ssh_client']})"
            params = rec.get("params")
            params_text = json.dumps(params, default=str, ensure_ascii=False) if params else ""
            detail = "\n".join(x for x in (params_text, str(rec.get("outcome") or "")) if x)
            data.append(
                (
                    _fmt_time(ts)[:19] if ts else _text(rec.get("ts"), redact),
                    redact(who),
                    _text(rec.get("action"), redact),
                    _text(rec.get("target"), redact),
                    "ok" if rec.get("ok") else "FAILED",
                    clip(redact(detail), 2000),
                )
            )
        story.append(
            _table(
                ("Time (UTC)", "Operator", "Action", "Target", "Result", "Parameters / outcome"),
                data,
                (0.155, 0.14, 0.11, 0.17, 0.07, 0.355),
                text_width,
                small,
            )
        )

    with _atomic(path) as tmp:
        doc = SimpleDocTemplate(
            str(tmp),
            pagesize=A4,
            title=redact(title),
            leftMargin=18 * mm,
            rightMargin=18 * mm,
            topMargin=15 * mm,
            bottomMargin=15 * mm,
        )
        doc.build(story)
    return {"tasks": len(rows), "failures": len(failures), "actions": len(actions)}
