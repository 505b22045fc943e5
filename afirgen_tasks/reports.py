"""Report tasks: one FIR as a PDF, a set of FIRs as an Excel workbook.

Both write to ``[paths] report_dir`` at a path derived from the input (``fir-000042.pdf``,
``firs-<hash of the sorted ids>.xlsx``), through a temp file and ``os.replace``: a re-run
overwrites the same file and a crash never leaves half a report behind.
"""

from __future__ import annotations

import hashlib
import io
import time
from typing import Any
from xml.sax.saxutils import escape

from celery import Task

from . import records
from .base import PermanentTaskError, afirgen_task, result, task_settings
from .spreadsheet import xlsx_text

#: Most FIRs one Excel report may hold.
MAX_EXCEL_FIRS = 50_000
#: Widest Excel column, in characters (long descriptions wrap instead).
MAX_COLUMN_WIDTH = 60

#: (header, FIR attribute) of the Excel columns, in order.
EXCEL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("FIR ID", "id"),
    ("FIR number", "fir_number"),
    ("Filed at (UTC)", "filed_at"),
    ("Status", "status"),
    ("State", "state"),
    ("District", "district"),
    ("Police station", "police_station"),
    ("Offence", "offence"),
    ("Section", "act_section"),
    ("Complainant", "complainant"),
    ("Contact email", "contact_email"),
    ("Contact phone", "contact_phone"),
    ("Archived at (UTC)", "archived_at"),
    ("Description", "description"),
)

#: (label, FIR attribute) of the PDF's field table.
PDF_FIELDS: tuple[tuple[str, str], ...] = (
    ("FIR number", "fir_number"),
    ("FIR id", "id"),
    ("Status", "status"),
    ("Filed at (UTC)", "filed_at"),
    ("State", "state"),
    ("District", "district"),
    ("Police station", "police_station"),
    ("Offence", "offence"),
    ("Section", "act_section"),
    ("Complainant", "complainant"),
    ("Contact email", "contact_email"),
    ("Contact phone", "contact_phone"),
    ("Archived at (UTC)", "archived_at"),
)


def render_pdf(fir: records.FIR) -> bytes:
    """The PDF of ``fir``: a title, a table of its fields and the description as paragraphs.

    ``invariant`` rendering: the same FIR gives the same bytes.
    """
    # reportlab is imported here, not at module level: everything that imports the Celery
    # app (the console, --check) would otherwise pay ~0.1 s for it.
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    cell = styles["BodyText"]
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
        title=f"FIR {fir.fir_number}",
        author="AFIRGen",
        subject="First Information Report",
        invariant=True,
    )
    rows = [
        [
            Paragraph(f"<b>{escape(label)}</b>", cell),
            Paragraph(escape(str(getattr(fir, attr) or "-")), cell),
        ]
        for label, attr in PDF_FIELDS
    ]
    table = Table(rows, colWidths=[45 * mm, doc.width - 45 * mm])
    table.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#E8EEF7")),
                ("GRID", (0, 0), (-1, -1), 0.5, colors.HexColor("#9AA7B8")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    story: list[Any] = [
        Paragraph("First Information Report", styles["Title"]),
        Paragraph(
            escape(f"FIR {fir.fir_number} - {fir.police_station} police station, {fir.district}"),
            styles["Heading3"],
        ),
        Spacer(1, 4 * mm),
        table,
        Spacer(1, 6 * mm),
        Paragraph("Description", styles["Heading2"]),
    ]
    for para in (p.strip() for p in fir.description.split("\n\n")):
        if para:
            story.append(Paragraph(escape(para).replace("\n", "<br/>"), styles["BodyText"]))
    doc.build(story)
    return buffer.getvalue()


@afirgen_task("afirgen_tasks.reports.generate_pdf_report")
def generate_pdf_report(self: Task, fir_id: int) -> dict[str, Any]:
    """Render FIR ``fir_id`` as ``<report_dir>/fir-<id>.pdf``."""
    started = time.monotonic()
    settings = task_settings(self)
    with records.open_db(settings.fir_db_path) as conn:
        fir = records.require_fir(conn, fir_id)
    data = render_pdf(fir)
    path = settings.paths_report_dir / f"fir-{fir.id:06d}.pdf"
    records.atomic_write_bytes(path, data)
    return result(
        "ok", started, fir_id=fir.id, fir_number=fir.fir_number, path=str(path), bytes=len(data)
    )


def _parse_ids(fir_ids: object) -> list[int]:
    if isinstance(fir_ids, int | str) and not isinstance(fir_ids, bool):
        fir_ids = [fir_ids]
    if not isinstance(fir_ids, list | tuple | set | frozenset):
        raise PermanentTaskError(f"fir_ids must be a list of FIR ids, not {type(fir_ids).__name__}")
    ids = sorted({records.parse_fir_id(v) for v in fir_ids})
    if not ids:
        raise PermanentTaskError("fir_ids is empty: name at least one FIR")
    if len(ids) > MAX_EXCEL_FIRS:
        raise PermanentTaskError(
            f"{len(ids)} FIRs requested; one report holds at most {MAX_EXCEL_FIRS}"
        )
    return ids


def render_xlsx(firs: list[records.FIR]) -> bytes:
    """A workbook with one row per FIR: bold filled header, frozen, columns sized to content."""
    from openpyxl import Workbook  # imported on use, like reportlab above
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    ws = wb.active
    ws.title = "FIRs"
    ws.append([header for header, _attr in EXCEL_COLUMNS])
    for fir in firs:
        # control characters would make openpyxl refuse the whole report
        values = [getattr(fir, attr) for _header, attr in EXCEL_COLUMNS]
        ws.append([xlsx_text(v) if isinstance(v, str) else v for v in values])
        for cell in ws[ws.max_row]:
            if isinstance(cell.value, str):
                cell.data_type = "s"  # record text (a complainant's words) is never a formula
    bold = Font(bold=True, color="FFFFFF")
    fill = PatternFill(fill_type="solid", start_color="1F4E79", end_color="1F4E79")
    for c in ws[1]:
        c.font = bold
        c.fill = fill
        c.alignment = Alignment(vertical="center")
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = ws.dimensions
    for idx, (header, attr) in enumerate(EXCEL_COLUMNS, start=1):
        longest = max([len(header), *(len(str(getattr(f, attr) or "")) for f in firs)])
        ws.column_dimensions[get_column_letter(idx)].width = min(MAX_COLUMN_WIDTH, longest + 2)
        if longest > MAX_COLUMN_WIDTH:
            for (c,) in ws.iter_rows(min_row=2, min_col=idx, max_col=idx):
                c.alignment = Alignment(wrap_text=True, vertical="top")
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


@afirgen_task("afirgen_tasks.reports.generate_excel_report")
def generate_excel_report(self: Task, fir_ids: list[int]) -> dict[str, Any]:
    """Write FIRs ``fir_ids`` (one row each, by id) to ``<report_dir>/firs-<hash>.xlsx``."""
    started = time.monotonic()
    settings = task_settings(self)
    ids = _parse_ids(fir_ids)
    with records.open_db(settings.fir_db_path) as conn:
        found = records.get_firs(conn, ids)
    missing = [i for i in ids if i not in found]
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (
            f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        )
        raise PermanentTaskError(f"unknown FIR ids: {shown}")
    data = render_xlsx([found[i] for i in ids])
    digest = hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:16]
    path = settings.paths_report_dir / f"firs-{digest}.xlsx"
    records.atomic_write_bytes(path, data)
    return result(
        "ok",
        started,
        fir_ids=ids[:100],
        fir_ids_truncated=len(ids) > 100,
        rows=len(ids),
        path=str(path),
        bytes=len(data),
    )
