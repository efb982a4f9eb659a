"""Build XLSX compression bombs cheaply, streaming their one huge part into the archive."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

import openpyxl

_SHEET = "xl/worksheets/sheet1.xml"
_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def _base() -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["caseNo", "Notes"])
    sheet.append(["x", "y"])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _replace_sheet(chunks: Iterator[bytes]) -> bytes:
    """Return the base workbook with its first sheet's XML streamed from ``chunks``."""
    source = zipfile.ZipFile(io.BytesIO(_base()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename != _SHEET:
                target.writestr(info, source.read(info.filename))
        with target.open(_SHEET, "w", force_zip64=True) as sheet:
            for chunk in chunks:
                sheet.write(chunk)
    return out.getvalue()


def one_huge_cell(size: int) -> bytes:
    """A workbook whose second row holds one inline-string cell of ``size`` characters."""

    def chunks() -> Iterator[bytes]:
        yield (
            f'<worksheet xmlns="{_MAIN}"><dimension ref="A1:B2"/><sheetData>'
            '<row r="1"><c r="A1" t="inlineStr"><is><t>caseNo</t></is></c>'
            '<c r="B1" t="inlineStr"><is><t>Notes</t></is></c></row>'
            '<row r="2"><c r="A2" t="inlineStr"><is><t>x</t></is></c>'
            '<c r="B2" t="inlineStr"><is><t>'
        ).encode()
        block = b"A" * (1 << 20)
        for _ in range(size // len(block)):
            yield block
        yield b"A" * (size % len(block))
        yield b"</t></is></c></row></sheetData></worksheet>"

    return _replace_sheet(chunks())


def many_rows(rows: int, *, declare: bool = True) -> bytes:
    """A workbook of a header and ``rows`` one-cell rows, declaring its dimension or not."""

    def chunks() -> Iterator[bytes]:
        dimension = f'<dimension ref="A1:A{rows + 1}"/>' if declare else ""
        yield (
            f'<worksheet xmlns="{_MAIN}">{dimension}<sheetData>'
            '<row r="1"><c r="A1" t="inlineStr"><is><t>caseNo</t></is></c></row>'
        ).encode()
        # rows without their optional r attribute are all alike, so they compress very well
        row = b"<row><c><v>1</v></c></row>"
        step = 100_000
        for start in range(0, rows, step):
            yield row * min(step, rows - start)
        yield b"</sheetData></worksheet>"

    return _replace_sheet(chunks())
