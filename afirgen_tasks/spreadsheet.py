"""Text that is safe in an .xlsx cell (used by the Excel report task and the console's export)."""

from __future__ import annotations

#: Excel's limit on the characters of one cell.
XLSX_CELL_MAX = 32_767


def xlsx_text(text: str) -> str:
    """``text`` without the control characters openpyxl refuses, clipped to one cell's limit.

    Write the result with ``cell.data_type = "s"``: openpyxl otherwise stores text that
    starts with ``=`` as a formula (spreadsheet formula injection).
    """
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    text = ILLEGAL_CHARACTERS_RE.sub("", text)
    if len(text) > XLSX_CELL_MAX:
        text = text[: XLSX_CELL_MAX - 20] + " … [clipped]"
    return text
