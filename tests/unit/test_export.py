"""Exports read back: CSV (csv module), .xlsx (openpyxl) and the incident PDF (pypdf text)."""

from __future__ import annotations

import csv
import json
import os
import re
from datetime import datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook
from pypdf import PdfReader

from tui.actions import AuditLog
from tui.core.model import TaskRecord
from tui.core.redaction import Redactor
from tui.history import HistoryStore
from tui.history.export import (
    CELL_MAX,
    COLUMNS,
    XLSX_TIME_FORMAT,
    clip,
    export_csv,
    export_incident_pdf,
    export_path,
    export_xlsx,
)

T0 = 1_714_557_600.0  # 2024-05-01 10:00:00 UTC
REDACT = Redactor(arg_names=["recipient_email", "phone"])


def _rows() -> list[dict]:
    rows = []
    for i in range(12):
        state = ("SUCCESS", "FAILURE", "RETRY")[i % 3]
        row = {
            "uuid": f"00000000-0000-4000-8000-{i:012d}",
            "state": state,
            "name": "afirgen_tasks.email.send_notification_email",
            "queue": "email",
            "priority": 3,
            "hostname": "celery@w1",
            "retries": i % 2,
            "source": "events",
            "sent": T0 + i * 60,
            "started": T0 + i * 60 + 1,
            "first_seen": T0 + i * 60,
            "args": "()",
            "kwargs": f"{{'recipient_email': 'officer{i}@police.example.in', 'subject': 'FIR {i}'}}",
        }
        if state == "SUCCESS":
            row.update(finished=T0 + i * 60 + 2, runtime=1.25, result="{'status': 'ok'}")
        elif state == "FAILURE":
            row.update(
                finished=T0 + i * 60 + 2,
                exception=f"SMTPRecipientsRefused('officer{i}@police.example.in')",
                traceback=(
                    "Traceback (most recent call last):\n"
                    f'  File "email.py", line 88, in send\n'
                    f"SMTPRecipientsRefused: officer{i}@police.example.in refused; "
                    "call +91 98765 43210\n"
                ),
            )
        rows.append(row)
    rows.append(
        {
            "uuid": "backend-1",
            "state": "SUCCESS",
            "name": '=HYPERLINK("http://x")',
            "source": "backend",
            "finished": T0 + 30,
            "first_seen": T0 + 30,
            "kwargs": "{'note': 'contact desk@example.org'}",
            "result": "@SUM(A1)",
        }
    )
    return rows


# a list of case numbers in one argument: 191,897 characters, as seen in the field
HUGE_ARGS = ("([" + ", ".join(f"'FIR/2024/{i:06d}'" for i in range(12_000)))[:191_895] + "])"
assert len(HUGE_ARGS) == 191_897


def _incident_rows() -> list[dict]:
    """_rows() plus what the night shift exported: a failure with a huge args value and no
    runtime, a task revoked while running, one revoked before it started."""
    return [
        *_rows(),
        {
            "uuid": "huge-1",
            "state": "FAILURE",
            "name": "afirgen_tasks.reports.build_report",
            "queue": "reports",
            "hostname": "celery@w2",
            "sent": T0 + 600.0,
            "started": T0 + 600.25,
            "finished": T0 + 603.75,
            "first_seen": T0 + 600.0,
            "args": HUGE_ARGS,
            "kwargs": "{}",
            "exception": "MemoryError()",
            "traceback": "Traceback (most recent call last):\nMemoryError\n",
        },
        {
            "uuid": "revoked-running",
            "state": "REVOKED",
            "name": "afirgen_tasks.cleanup.pause_queue_now",
            "queue": "cleanup",
            "hostname": "celery@w2",
            "sent": T0 + 700,
            "started": T0 + 701,
            "finished": T0 + 705.5,
            "first_seen": T0 + 700,
            "revoke_reason": "terminated",
        },
        {
            "uuid": "revoked-waiting",
            "state": "REVOKED",
            "name": "afirgen_tasks.cleanup.pause_queue_now",
            "queue": "cleanup",
            "sent": T0 + 710,
            "finished": T0 + 720,
            "first_seen": T0 + 710,
            "revoke_reason": "revoked",
        },
    ]


_MORE = re.compile(r" \(… ([\d,]+) more characters\)$")


def _assert_clipped(cell: str, original: str) -> None:
    """``cell`` is ``original`` cut below every limit, and says how much was cut."""
    assert len(cell) <= CELL_MAX < 32_767
    m = _MORE.search(cell)
    assert m, cell[-80:]
    kept = cell[: m.start()]
    assert original.startswith(kept)
    assert len(kept) + int(m.group(1).replace(",", "")) == len(original)


def test_clip_keeps_short_text_and_cuts_long_text_to_the_limit():
    assert clip("short") == "short" and clip("x" * CELL_MAX) == "x" * CELL_MAX
    for n in (CELL_MAX + 1, 99_999, 100_000, HUGE_ARGS.__len__()):
        text = "y" * n
        out = clip(text)
        assert CELL_MAX - 10 <= len(out) <= CELL_MAX
        _assert_clipped(out, text)
    assert clip("abcdefghijklmnopqrstuvwxyz" * 4, 40) == "abcdefghijklmnop (… 88 more characters)"


def _all_text(values) -> str:
    return "\n".join("" if v is None else str(v) for v in values)


def test_csv_holds_every_row_redacted(tmp_path: Path):
    path = tmp_path / "out" / "tasks.csv"
    assert export_csv(_rows(), path, REDACT) == 13
    with open(path, newline="", encoding="utf-8-sig") as fh:
        table = list(csv.reader(fh))
    assert table[0] == [h for _, h in COLUMNS]
    assert len(table) == 14
    body = _all_text(v for r in table for v in r)
    assert "@police.example.in" not in body and "desk@example.org" not in body
    assert "98765" not in body and "***" in body
    by_id = {r[0]: dict(zip(table[0], r, strict=True)) for r in table[1:]}
    assert by_id["00000000-0000-4000-8000-000000000001"]["State"] == "FAILURE"
    assert (
        by_id["00000000-0000-4000-8000-000000000001"]["Finished (UTC)"] == "2024-05-01 10:01:02.000"
    )
    assert by_id["backend-1"]["Source"] == "backend"
    assert by_id["backend-1"]["Task"].startswith("'=")  # no formula injection
    assert by_id["backend-1"]["Result"] == "'@SUM(A1)"
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_xlsx_has_styled_frozen_header_a_state_column_and_a_sheet_per_state(tmp_path: Path):
    path = tmp_path / "tasks.xlsx"
    assert export_xlsx(_rows(), path, REDACT) == 13
    wb = load_workbook(path)
    assert wb.sheetnames == ["Tasks", "RETRY", "FAILURE", "SUCCESS"]
    ws = wb["Tasks"]
    header = [c.value for c in ws[1]]
    assert header == [h for _, h in COLUMNS] and "State" in header
    assert ws.freeze_panes == "A2"
    assert all(c.font.bold for c in ws[1]) and ws["A1"].fill.fgColor.rgb.endswith("1F4E78")
    assert ws.column_dimensions["A"].width >= 36  # uuids fit
    assert ws.column_dimensions["B"].width > ws.column_dimensions["F"].width
    assert ws.max_row == 14
    state_col = header.index("State")
    counts = {name: wb[name].max_row - 1 for name in wb.sheetnames[1:]}
    assert counts == {"RETRY": 4, "FAILURE": 4, "SUCCESS": 5}
    assert all(r[state_col].value == "FAILURE" for r in wb["FAILURE"].iter_rows(min_row=2))
    assert wb["FAILURE"].freeze_panes == "A2"
    text = _all_text(c.value for sheet in wb for row in sheet.iter_rows() for c in row)
    assert "@police.example.in" not in text and "desk@example.org" not in text and "***" in text
    name_cell = ws.cell(row=14, column=2)
    # stored as a string cell (Excel shows it, never evaluates it), not as a formula
    assert name_cell.data_type == "s" and name_cell.value == '=HYPERLINK("http://x")'
    assert list(tmp_path.iterdir()) == [path]


def test_csv_reads_back_with_the_default_field_size_limit_clipped_and_with_runtimes(tmp_path: Path):
    path = tmp_path / "tasks.csv"
    assert export_csv(_incident_rows(), path, REDACT) == 16
    assert csv.field_size_limit() == 131_072  # nobody raised it for us
    with open(path, newline="", encoding="utf-8-sig") as fh:
        table = list(csv.reader(fh))  # raised "field larger than field limit" before clipping
    assert all(len(v) <= CELL_MAX for r in table for v in r)
    by_id = {r[0]: dict(zip(table[0], r, strict=True)) for r in table[1:]}
    huge = by_id["huge-1"]
    _assert_clipped(huge["Args"], HUGE_ARGS)
    assert huge["Started (UTC)"] == "2024-05-01 10:10:00.250"  # ISO text in CSV
    # FAILURE and REVOKED events carry no runtime: finished - started
    assert huge["Runtime (s)"] == "3.5"
    assert all(
        r["Runtime (s)"] == "1.0"
        for r in by_id.values()
        if r["State"] == "FAILURE" and r["Task id"] != "huge-1"
    )
    assert by_id["revoked-running"]["Runtime (s)"] == "4.5"
    assert by_id["revoked-waiting"]["Runtime (s)"] == ""  # never started: no runtime to show
    assert by_id["00000000-0000-4000-8000-000000000000"]["Runtime (s)"] == "1.25"  # reported wins


def test_xlsx_times_are_utc_date_cells_and_no_cell_passes_excels_limit(tmp_path: Path):
    path = tmp_path / "tasks.xlsx"
    assert export_xlsx(_incident_rows(), path, REDACT) == 16
    wb = load_workbook(path)
    ws = wb["Tasks"]
    header = [c.value for c in ws[1]]
    assert "Sent (UTC)" in header and "Finished (UTC)" in header
    rows = {r[0].value: dict(zip(header, r, strict=True)) for r in ws.iter_rows(min_row=2)}
    first = rows["00000000-0000-4000-8000-000000000001"]
    assert first["Sent (UTC)"].value == datetime(2024, 5, 1, 10, 1, 0)  # naive, in UTC
    assert first["Finished (UTC)"].value == datetime(2024, 5, 1, 10, 1, 2)
    assert first["Sent (UTC)"].is_date and first["Sent (UTC)"].number_format == XLSX_TIME_FORMAT
    assert rows["huge-1"]["Started (UTC)"].value == datetime(2024, 5, 1, 10, 10, 0, 250_000)
    for sheet in wb:
        for row in sheet.iter_rows(min_row=2):
            for c in row:
                assert not isinstance(c.value, str) or len(c.value) <= CELL_MAX
            times = [row[i].value for i, h in enumerate(header) if h.endswith("(UTC)")]
            assert all(v is None or isinstance(v, datetime) for v in times)
    _assert_clipped(rows["huge-1"]["Args"].value, HUGE_ARGS)
    assert rows["huge-1"]["Runtime (s)"].value == 3.5
    assert rows["revoked-running"]["Runtime (s)"].value == 4.5
    assert rows["revoked-waiting"]["Runtime (s)"].value is None
    assert rows["00000000-0000-4000-8000-000000000001"]["Runtime (s)"].value == 1.0
    assert wb["REVOKED"].max_row == 3 and wb["FAILURE"].max_row == 6


def test_exports_take_task_records_and_store_rows(tmp_path: Path):
    rec = TaskRecord("abc")
    rec.name, rec.state, rec.kwargs = "t", "SUCCESS", "{'email': 'x@example.org'}"
    store = HistoryStore(tmp_path / "h.sqlite3")
    store.upsert([{"uuid": "def", "state": "FAILURE", "kwargs": "{'email': 'y@example.org'}"}])
    failed = TaskRecord("ghi")  # a task-failed event: no runtime, started and finished known
    failed.name, failed.state, failed.started, failed.finished = "t", "FAILURE", T0, T0 + 2.5
    rows = [rec, *store.search(""), failed]
    store.close()
    assert export_csv(rows, tmp_path / "a.csv", REDACT) == 3
    text = (tmp_path / "a.csv").read_text(encoding="utf-8-sig")
    assert "example.org" not in text and "abc" in text and "def" in text
    with open(tmp_path / "a.csv", newline="", encoding="utf-8-sig") as fh:
        table = list(csv.DictReader(fh))
    assert table[2]["Task id"] == "ghi" and table[2]["Runtime (s)"] == "2.5"
    assert table[2]["Source"] == "events"


def test_a_failed_export_leaves_the_old_file_and_no_debris(tmp_path: Path):
    path = tmp_path / "tasks.csv"
    path.write_text("old")

    def boom(text: str) -> str:
        raise RuntimeError("redactor broke")

    with pytest.raises(RuntimeError):
        export_csv(_rows(), path, boom)
    assert path.read_text() == "old" and list(tmp_path.iterdir()) == [path]


def _audit(tmp_path: Path) -> list[dict]:
    log = AuditLog(tmp_path / "audit.log")
    log.write(
        "revoke",
        "00000000-0000-4000-8000-000000000004",
        {"terminate": True},
        "revoked on 1 worker",
        ok=True,
    )
    log.write(
        "purge",
        "email",
        {"confirm": "email", "requested_by": "sp@police.example.in"},
        "purged 42 messages",
        ok=True,
    )
    log.write("pool_grow", "celery@w1", {"n": 2}, "refused: solo pool", ok=False)
    records = log.read()
    # the log stamps now; put them inside the report window
    for i, rec in enumerate(records):
        rec["ts"] = f"2024-05-01T10:{10 + i:02d}:00.000+00:00"
    records.append(
        {
            "ts": "2024-04-30T09:00:00.000+00:00",
            "user": "old",
            "action": "enqueue",
            "target": "x",
            "params": {},
            "ok": True,
            "outcome": "outside the window",
        }
    )
    return records


def test_incident_pdf_has_window_plots_failures_tracebacks_and_actions(tmp_path: Path):
    path = tmp_path / "incident.pdf"
    queue_samples = [
        (T0 + i * 30, {"email": max(0, 40 - abs(i - 20) * 2), "reports": i % 5})
        for i in range(0, 121)
    ]
    workers = [
        (T0 + i * 60, {"celery@w1": True, "celery@w2": i < 20 or i > 40}) for i in range(0, 61)
    ]
    counts = export_incident_pdf(
        path,
        _rows(),
        window=(T0, T0 + 3600),
        queue_samples=queue_samples,
        worker_timeline=workers,
        audit_records=_audit(tmp_path),
        redact=REDACT,
        author="duty@police.example.in",
    )
    assert counts == {"tasks": 13, "failures": 4, "actions": 3}
    reader = PdfReader(path)
    text = "\n".join(page.extract_text() for page in reader.pages)
    flat = " ".join(text.split())
    assert "Incident report" in flat
    assert "2024-05-01 10:00:00 to 2024-05-01 11:00:00 UTC" in flat
    assert "Queue backlog" in flat and "Worker timeline" in flat
    assert "Failures (4)" in flat and "SMTPRecipientsRefused" in flat
    # four failures of one task with one exception type: one group, one sample traceback
    assert flat.count("Traceback (most recent call last)") == 1
    assert "SMTPRecipientsRefused 4 2024-05-01 10:01:02 2024-05-01 10:10:02 celery@w1" in flat
    assert 'File "email.py", line 88' in flat
    assert "Actions taken (3)" in flat
    assert "revoke" in flat and "purged 42 messages" in flat and "refused: solo pool" in flat
    assert "FAILED" in flat and "outside the window" not in flat
    assert "@police.example.in" not in flat and "98765" not in flat and "***" in flat
    # the plots are vector drawings: the legend and axis labels are text too
    assert "email" in flat and "reports" in flat and "celery@w2" in flat
    assert "messages waiting" in flat and "minutes since the window start" in flat
    assert reader.metadata.title == "Incident report"


def test_incident_pdf_with_active_counts_and_nothing_else(tmp_path: Path):
    path = tmp_path / "quiet.pdf"
    counts = export_incident_pdf(
        path,
        [],
        window=(T0, T0 + 600),
        worker_timeline=[(T0, {"celery@w1": 2}), (T0 + 300, {"celery@w1": 4})],
    )
    assert counts == {"tasks": 0, "failures": 0, "actions": 0}
    flat = " ".join("\n".join(p.extract_text() for p in PdfReader(path).pages).split())
    assert "No failed tasks in this window." in flat and "No console actions" in flat
    assert "No queue samples" in flat and "active tasks" in flat


LONG_NAME = "afirgen_tasks.cleanup.pause_queue_now"
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/afirgen/venv/lib/python3.12/site-packages/celery/app/trace.py", line 453, in trace_task\n'
    "    R = retval = fun(*args, **kwargs)\n"
    '  File "/srv/afirgen/afirgen_tasks/cleanup.py", line 41, in pause_queue_now\n'
    "    time.sleep(600)\n"
    "billiard.exceptions.TimeLimitExceeded: TimeLimitExceeded(30,) <b>not bold</b> & <br/>\n"
)


def _night_shift_rows() -> list[dict]:
    """_incident_rows() plus 60 time-limit failures of one task on two workers."""
    rows = _incident_rows()
    for i in range(60):
        rows.append(
            {
                "uuid": f"pause-{i:04d}",
                "state": "FAILURE",
                "name": LONG_NAME,
                "queue": "cleanup",
                "hostname": f"celery@w{1 + i % 2}",
                "sent": T0 + 900 + i * 30,
                "started": T0 + 901 + i * 30,
                "finished": T0 + 931 + i * 30,
                "first_seen": T0 + 900 + i * 30,
                "args": "('cleanup',)",
                "kwargs": "{}",
                "exception": "TimeLimitExceeded(30,)",
                "traceback": TRACEBACK,
            }
        )
    return rows


def _assert_not_cut_mid_word(text: str, word: str) -> None:
    """``word`` appears in ``text``, at least once wrapped, and only ever after ``_ . -``."""
    spans = list(re.finditer(r"\s*".join(re.escape(c) for c in word), text))
    assert spans, f"{word} not in the text"
    wrapped = 0
    for m in spans:
        for gap in re.finditer(r"\s+", m.group(0)):
            wrapped += 1
            assert m.group(0)[gap.start() - 1] in "_.-", repr(m.group(0))
    assert wrapped, "the test meant to wrap the name in a narrow column, it did not"


def test_incident_pdf_groups_failures_with_one_sample_traceback_each(tmp_path: Path):
    path = tmp_path / "incident.pdf"
    audit = [
        {
            "ts": "2024-05-01T10:20:00.000+00:00",
            "user": "oncall",
            "action": "pause_queue",
            "target": LONG_NAME,
            "params": {"queue": "cleanup"},
            "ok": True,
            "outcome": "paused on 2 workers",
        }
    ]
    counts = export_incident_pdf(
        path, _night_shift_rows(), window=(T0, T0 + 3600), audit_records=audit, redact=REDACT
    )
    assert counts == {"tasks": 76, "failures": 65, "actions": 1}
    reader = PdfReader(path)
    # 65 tracebacks printed in full took a page or more each
    assert len(reader.pages) <= 4
    text = "\n".join(page.extract_text() for page in reader.pages)
    flat = " ".join(text.split())
    assert "Failures (65)" in flat and "65 failed task(s) in 3 group(s)" in flat
    # three groups (pause_queue_now/TimeLimitExceeded, send_notification_email/
    # SMTPRecipientsRefused, build_report/MemoryError), one sample traceback each
    assert flat.count("Traceback (most recent call last)") == 3
    assert flat.count("in trace_task") == 1 and flat.count("MemoryError") >= 2
    # the group's count, first and last seen, and workers
    assert (
        "TimeLimitExceeded 60 2024-05-01 10:15:31 2024-05-01 10:45:01 celery@w1, celery@w2" in flat
    )
    assert "MemoryError 1 2024-05-01 10:10:03 2024-05-01 10:10:03 celery@w2" in flat
    assert "1. afirgen_tasks.cleanup.pause_queue_now · TimeLimitExceeded · 60 failure(s)" in flat
    # the sample is the latest of its group; the per-task table still lists every failure
    assert "sample: task pause-0059 on celery@w2 at 2024-05-01 10:45:01.000 UTC" in flat
    assert "Failed tasks (65), newest first" in flat
    assert all(f"pause-{i:04d}" in flat for i in range(60))
    assert flat.count("30.000 s") == 60  # failures have a runtime (finished - started)
    # the 191,897-character argument is cut in the report too, and says by how much
    assert "(… 191," in flat and "more characters)" in flat and "FIR/2024/011000" not in flat
    # names wrap at _ . - in narrow columns (task column, audit target), never mid-word
    _assert_not_cut_mid_word(text, LONG_NAME)
    _assert_not_cut_mid_word(text, "afirgen_tasks.email.send_notification_email")
    assert re.search(r"pause_\s*queue", text) and "pause_queu " not in flat
    # data is text, never markup
    assert "<b>not bold</b> & <br/>" in flat


def test_wrapping_breaks_at_spaces_then_at_identifier_boundaries():
    from tui.history.export import _wrap

    def width_of(n: int) -> float:
        from reportlab.pdfbase.pdfmetrics import stringWidth

        return stringWidth("x" * n, "Courier", 10)

    assert _wrap("alpha beta gamma", "Courier", 10, width_of(11)) == ["alpha beta", "gamma"]
    assert _wrap(LONG_NAME, "Courier", 10, width_of(24)) == [
        "afirgen_tasks.cleanup.",
        "pause_queue_now",
    ]
    assert _wrap(f"task {LONG_NAME}", "Courier", 10, width_of(16)) == [
        "task",
        "afirgen_tasks.",
        "cleanup.pause_",
        "queue_now",
    ]
    # only a run with no boundary that is wider than the line is cut
    assert _wrap("x" * 25, "Courier", 10, width_of(10)) == ["x" * 10, "x" * 10, "x" * 5]
    # a traceback line keeps its indentation; continuation lines take the given indent
    assert _wrap("    R = fun(args) + more", "Courier", 10, width_of(12), indent="  ") == [
        "    R =",
        "  fun(args)",
        "  + more",
    ]


def test_export_path_names_files_by_time(tmp_path: Path):
    assert export_path(tmp_path, "xlsx", now=T0).name == "tasks-20240501-100000.xlsx"
    assert export_path(tmp_path, "pdf", now=T0).name == "incident-20240501-100000.pdf"


def test_audit_lines_are_json(tmp_path: Path):
    # guards the assumption the report relies on: AuditLog.read gives dicts with these keys
    rec = _audit(tmp_path)[0]
    assert {"ts", "user", "action", "target", "params", "ok", "outcome"} <= set(rec)
    json.dumps(rec)
    assert os.path.exists(tmp_path / "audit.log")


def test_a_stored_nan_or_huge_negative_time_never_sets_the_incident_time_axis():
    """Rows from before the trust boundary may hold NaN or -1e18 (the split console lost this once)."""
    from tui.ui.history_service import _first_time

    assert _first_time({"sent": float("nan")}) is None
    assert _first_time({"sent": -1e18}) is None
    assert _first_time({"sent": None, "received": 1_700_000_000.0}) == 1_700_000_000.0
