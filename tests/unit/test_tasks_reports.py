"""Report tasks: a real PDF (read back with pypdf) and a real .xlsx (read back with openpyxl)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import openpyxl
import pypdf
import pytest
from celery import Celery

from afirgen_tasks import records
from afirgen_tasks.base import PermanentTaskError
from afirgen_tasks.factory import create_app
from afirgen_tasks.reports import EXCEL_COLUMNS, MAX_COLUMN_WIDTH
from afirgen_tasks.settings import load_settings

PDF = "afirgen_tasks.reports.generate_pdf_report"
XLSX = "afirgen_tasks.reports.generate_excel_report"


def make_app(tmp_path: Path, count: int = 30) -> Celery:
    settings = load_settings(
        None,
        paths_data_dir=tmp_path / "data",
        paths_report_dir=tmp_path / "reports",
        paths_outbox_dir=tmp_path / "outbox",
        paths_temp_dir=tmp_path / "tmp",
        celery_task_max_retries=2,
    )
    app = create_app(settings)
    records.create_sample_db(settings.fir_db_path, count=count, seed=4)
    return app


def get(app: Celery, fir_id: int) -> records.FIR:
    with records.open_db(app.afirgen_settings.fir_db_path) as conn:
        return records.require_fir(conn, fir_id)


def pdf_text(path: Path) -> str:
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(path).pages)
    return re.sub(r"\s+", " ", text)


def report_files(app: Celery) -> list[str]:
    directory = app.afirgen_settings.paths_report_dir
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# ---- PDF --------------------------------------------------------------------------------


def test_pdf_holds_every_field_and_the_description(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    res = app.tasks[PDF].apply(args=(7,))
    assert res.state == "SUCCESS", res.traceback
    out = res.result
    path = Path(out["path"])
    assert path == tmp_path / "reports" / "fir-000007.pdf"
    assert out["status"] == "ok" and out["fir_id"] == 7 and out["bytes"] == path.stat().st_size
    record = get(app, 7)
    reader = pypdf.PdfReader(path)
    assert reader.metadata.title == f"FIR {record.fir_number}"
    text = pdf_text(path)
    assert "First Information Report" in text
    for value in (
        record.fir_number,
        record.complainant,
        record.contact_email,
        record.contact_phone,
        record.state,
        record.district,
        record.police_station,
        record.offence,
        record.act_section,
        record.status,
        record.filed_at,
    ):
        assert value in text, value
    for paragraph in record.description.split("\n\n"):
        assert re.sub(r"\s+", " ", paragraph) in text


def test_pdf_rerun_writes_the_same_file_once(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    first = app.tasks[PDF].apply(args=(3,)).result
    data = Path(first["path"]).read_bytes()
    second = app.tasks[PDF].apply(args=("3",)).result
    assert second["path"] == first["path"]
    assert Path(second["path"]).read_bytes() == data  # invariant rendering
    assert report_files(app) == ["fir-000003.pdf"]


def test_pdf_escapes_markup_in_fields(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    odd = records.FIR(
        **{
            **get(app, 1).as_dict(),
            "id": 500,
            "fir_number": "X/1/2025/0001",
            "complainant": "Ravi <b>& Sons</b>",
            "description": "Line <one> & more.\n\nSecond para.",
        }
    )
    with records.open_db(app.afirgen_settings.fir_db_path) as conn, records.transaction(conn):
        records.insert_firs(conn, [odd])
    res = app.tasks[PDF].apply(args=(500,))
    assert res.state == "SUCCESS", res.traceback
    text = pdf_text(Path(res.result["path"]))
    assert "Ravi <b>& Sons</b>" in text
    assert "Line <one> & more." in text and "Second para." in text


def test_pdf_unknown_fir_is_permanent_and_writes_nothing(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    res = app.tasks[PDF].apply(args=(424242,))
    assert res.state == "FAILURE"
    assert isinstance(res.result, PermanentTaskError)
    assert "FIR 424242 does not exist" in str(res.result)
    assert report_files(app) == []


# ---- Excel ------------------------------------------------------------------------------


def test_excel_rows_header_freeze_and_widths(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    res = app.tasks[XLSX].apply(args=([9, 2, 5],))
    assert res.state == "SUCCESS", res.traceback
    out = res.result
    assert out["rows"] == 3 and out["fir_ids"] == [2, 5, 9]
    path = Path(out["path"])
    assert path.parent == tmp_path / "reports" and re.fullmatch(
        r"firs-[0-9a-f]{16}\.xlsx", path.name
    )
    ws = openpyxl.load_workbook(path).active
    headers = [c.value for c in ws[1]]
    assert headers == [h for h, _ in EXCEL_COLUMNS]
    for c in ws[1]:
        assert c.font.bold
        assert c.fill.fill_type == "solid" and c.fill.start_color.rgb.endswith("1F4E79")
    assert ws.freeze_panes == "A2"
    assert ws.max_row == 4
    attrs = [a for _, a in EXCEL_COLUMNS]
    for row, fir_id in zip(ws.iter_rows(min_row=2, values_only=True), (2, 5, 9), strict=True):
        record = get(app, fir_id)
        expected = [getattr(record, a) for a in attrs]
        assert list(row) == expected
    firs = [get(app, i) for i in (2, 5, 9)]
    col = {a: openpyxl.utils.get_column_letter(i) for i, a in enumerate(attrs, start=1)}
    longest_number = max(len("FIR number"), *(len(f.fir_number) for f in firs))
    assert ws.column_dimensions[col["fir_number"]].width == longest_number + 2
    assert (
        ws.column_dimensions[col["contact_email"]].width
        == max(len(f.contact_email) for f in firs) + 2
    )
    assert ws.column_dimensions[col["description"]].width == MAX_COLUMN_WIDTH
    assert ws[f"{col['description']}2"].alignment.wrap_text


def test_excel_path_depends_on_the_set_of_ids_only(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    a = app.tasks[XLSX].apply(args=([3, 1, 2],)).result
    b = app.tasks[XLSX].apply(args=([1, 2, 3, 3],)).result
    c = app.tasks[XLSX].apply(args=([1, 2],)).result
    assert a["path"] == b["path"] != c["path"]
    assert len(report_files(app)) == 2
    assert not any(name.startswith(".") for name in report_files(app))


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ([1, 998, 999], "unknown FIR ids: 998, 999"),
        ([], "fir_ids is empty"),
        (["x"], "not a positive whole number"),
        ([0], "not a positive whole number"),
        ({"a": 1}, "must be a list"),
    ],
)
def test_excel_bad_ids_are_permanent(tmp_path: Path, ids: Any, message: str) -> None:
    app = make_app(tmp_path)
    res = app.tasks[XLSX].apply(args=(ids,))
    assert res.state == "FAILURE"
    assert isinstance(res.result, PermanentTaskError)
    assert message in str(res.result)
    assert report_files(app) == []


def test_excel_handles_many_ids(tmp_path: Path) -> None:
    app = make_app(tmp_path, count=1200)
    res = app.tasks[XLSX].apply(args=(list(range(1, 1201)),))
    assert res.state == "SUCCESS", res.traceback
    assert res.result["rows"] == 1200 and res.result["fir_ids_truncated"] is True
    ws = openpyxl.load_workbook(res.result["path"], read_only=True).active
    assert ws.max_row == 1201


def test_excel_text_is_never_a_formula_and_control_characters_do_not_fail_it(
    tmp_path: Path,
) -> None:
    app = make_app(tmp_path)
    settings = app.afirgen_settings
    with records.open_db(settings.fir_db_path) as conn, records.transaction(conn):
        conn.execute(
            "UPDATE firs SET complainant = ?, description = ? WHERE id = 4",
            ('=HYPERLINK("http://evil.example","click")', "line one\x0bvertical tab\x07bell"),
        )
    res = app.tasks[XLSX].apply(args=([4],))
    assert res.state == "SUCCESS", res.traceback
    ws = openpyxl.load_workbook(res.result["path"]).active
    cells = {h: c for (h, _), c in zip(EXCEL_COLUMNS, ws[2], strict=True)}
    assert cells["Complainant"].data_type == "s"
    assert cells["Complainant"].value.startswith("=HYPERLINK")  # kept as text, not run
    assert cells["Description"].value == "line onevertical tabbell"
