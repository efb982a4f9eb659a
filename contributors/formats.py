"""Read what partners send (CSV or TSV, the CTDC website export, XLSX, JSON, JSON Lines) into a
frame of strings.

Every cell comes back as a string exactly as the partner wrote it (no type guessing, no missing
value guessing: ``NA`` is Namibia), and no row that holds a value is ever dropped. What is read
around the data, as spreadsheets and exports write it:

- CSV separated by ``,``, ``;``, a tab or ``|`` (sniffed), or as Excel's ``sep=;`` first line
  says; text in UTF-8, or in another encoding (Windows-1252, Latin-1 ...) that
  charset-normalizer recognises, converted;
- the header row is the first row, or a later one whose cells name schema fields (a title row
  above the header); in a workbook, the sheet whose header names schema fields (or the sheet
  asked for);
- header cells are stripped; columns with no header and no value (Excel's trailing empty
  columns) and rows with no value at all are left out. The frame's index keeps each row's
  position among the data rows (from 0), so a row's number is its index + 1 even where empty
  rows were left out.

Anything that cannot be read raises :class:`FormatError` with a reason a partner can act on, and
a workbook or table over the :class:`ReadLimits` raises :class:`LimitExceeded` naming the limit,
before the bulk of it is parsed. Messages never quote a cell, and name a header cell only when
it is a schema field's spelling (a file without a header row has a data row there).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from contributors.headers import match_headers
from contributors.schema import RecordSchema, load_schema

__all__ = [
    "FormatError",
    "LimitExceeded",
    "ReadLimits",
    "TableFormat",
    "detect_format",
    "read_table",
]

TableFormat = Literal["csv", "xlsx", "json", "jsonl"]

MEDIA_TYPES: dict[str, TableFormat] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "text/tab-separated-values": "csv",
    "text/plain": "csv",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/json": "json",
    "application/jsonl": "jsonl",
    "application/x-ndjson": "jsonl",
    "application/x-jsonlines": "jsonl",
}
EXTENSIONS: dict[str, TableFormat] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".tab": "csv",
    ".txt": "csv",
    ".xlsx": "xlsx",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
# CTDC's website export puts its terms of use (a long citation text) in the first column header.
_TERMS_HEADER = re.compile(
    r"terms\s{1,8}of\s{1,8}use|ctdatacollaborative|counter[\s-]{0,8}trafficking\s{1,8}data"
    r"\s{1,8}collaborative|disclaimer|citation",
    re.IGNORECASE,
)
# Excel writes this first line when the separator is not the locale's: "sep=;".
_SEP_LINE = re.compile(r"^sep=(.)[ \t]{0,8}\r?$")
_ZIP_MAGIC = b"PK\x03\x04"
_DELIMITERS = (",", ";", "\t", "|")
#: How many rows from the top are searched for the header row.
HEADER_SEARCH_ROWS = 10
# A header found below the first row must name at least this many fields, so a stray cell that
# happens to spell a field name does not move the header.
_MIN_LOWER_HEADER_MATCHES = 2


class FormatError(ValueError):
    """A partner file cannot be read as a table; the message says why, without quoting data."""


class LimitExceeded(FormatError):
    """The file is over one of the :class:`ReadLimits`; ``limit`` names it.

    The hub answers 413 for it (the other format errors are 422).
    """

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


@dataclass(frozen=True)
class ReadLimits:
    """The most a partner file may hold, checked before and while it is parsed.

    The hub passes its settings (``READ_MAX_ROWS`` ...); the toolkit its own. A workbook's
    declared sizes are checked before any sheet is parsed, and its rows are counted as they
    stream.

    :param max_rows: data rows in the table.
    :param max_cells: data cells (rows times columns) in the table.
    :param max_uncompressed_bytes: the sum of a workbook's declared uncompressed part sizes.
    :param max_compression_ratio: the largest uncompressed / compressed ratio of any sizeable
        workbook part (a one-cell 200 MB sheet compresses about 1000 to 1).
    """

    max_rows: int = 1_000_000
    max_cells: int = 60_000_000
    max_uncompressed_bytes: int = 1 << 30
    max_compression_ratio: int = 100

    # names of the limits in messages: the hub's settings that set them
    NAMES = {
        "max_rows": "READ_MAX_ROWS",
        "max_cells": "READ_MAX_CELLS",
        "max_uncompressed_bytes": "XLSX_MAX_UNCOMPRESSED_BYTES",
        "max_compression_ratio": "XLSX_MAX_COMPRESSION_RATIO",
    }


# parts below this size are not held to the ratio: tiny XML parts compress very well
_RATIO_EXEMPT_BYTES = 1 << 20


def detect_format(
    data: bytes, *, media_type: str | None = None, filename: str | None = None
) -> TableFormat:
    """Decide how to read ``data``: from its media type, else its file name, else its content.

    :param data: the file's bytes.
    :param media_type: the declared media type (parameters such as ``charset`` are ignored).
    :param filename: the file's name.
    :raises FormatError: for a media type or file extension the hub does not read.

    >>> detect_format(b"a,b\\n1,2\\n")
    'csv'
    >>> detect_format(b"[]", filename="cases.JSON")
    'json'
    >>> detect_format(b"x", media_type="application/json; charset=utf-8")
    'json'
    >>> detect_format(b'{"a": 1}\\n{"a": 2}\\n')
    'jsonl'
    """
    if media_type:
        essence = media_type.split(";", 1)[0].strip().lower()
        if essence in MEDIA_TYPES:
            return MEDIA_TYPES[essence]
        if essence not in ("application/octet-stream", ""):
            raise FormatError(
                f"media type {essence!r} is not supported; send CSV, XLSX, JSON or JSON Lines "
                f"({', '.join(sorted(MEDIA_TYPES))})"
            )
    if filename:
        dot = filename.rfind(".")
        extension = filename[dot:].lower() if dot >= 0 else ""
        if extension in EXTENSIONS:
            return EXTENSIONS[extension]
        if extension:
            raise FormatError(
                f"file extension {extension!r} is not supported; send "
                f"{', '.join(sorted(EXTENSIONS))}"
            )
    if data.startswith(_ZIP_MAGIC):
        return "xlsx"
    start = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start == b"{" and _looks_like_json_lines(data):
        return "jsonl"
    if start in (b"[", b"{"):
        return "json"
    return "csv"


def _looks_like_json_lines(data: bytes) -> bool:
    lines = [line.strip() for line in data.split(b"\n", 3)[:3] if line.strip()]
    return len(lines) >= 2 and all(line.startswith(b"{") for line in lines)


def read_table(
    data: bytes,
    *,
    media_type: str | None = None,
    filename: str | None = None,
    schema: RecordSchema | None = None,
    sheet: str | None = None,
    limits: ReadLimits | None = None,
) -> pd.DataFrame:
    """Read a partner file into a frame whose every column has dtype ``string``.

    The CTDC website export (``;``-separated, with a terms-of-use text as its first column)
    loses that first column. JSON must be an array of objects or ``{"records": [...]}``; JSON
    Lines one object per line.

    :param data: the file's bytes.
    :param media_type: the declared media type, if any.
    :param filename: the file's name, if any.
    :param schema: the record schema the header row is recognised by; defaults to
        :func:`~contributors.schema.load_schema`.
    :param sheet: the workbook sheet to read, by name; by default the sheet whose header names
        the most schema fields (the first sheet if none does).
    :param limits: the size limits; defaults to :class:`ReadLimits`'s.
    :raises LimitExceeded: if the file is over a limit.
    :raises FormatError: if the file cannot be read as a table.

    >>> frame = read_table(b"gender;citizenship\\nFemale;NA\\n")
    >>> frame.to_dict("list")
    {'gender': ['Female'], 'citizenship': ['NA']}
    >>> str(frame["citizenship"].dtype)
    'string'
    >>> read_table(b"sep=\\t\\n Gender \\tcitizenship\\t\\nMale\\tPH\\t\\n").to_dict("list")
    {'Gender': ['Male'], 'citizenship': ['PH']}
    """
    if not data.strip():
        raise FormatError("the file is empty")
    schema = schema or load_schema()
    limits = limits or ReadLimits()
    table_format = detect_format(data, media_type=media_type, filename=filename)
    if sheet is not None and table_format != "xlsx":
        raise FormatError("a sheet can only be chosen in an XLSX workbook")
    if table_format == "xlsx":
        header, body = _read_xlsx(data, schema, sheet, limits)
        where = "XLSX"
    elif table_format in ("json", "jsonl"):
        header, body = _read_json(data, lines=table_format == "jsonl")
        where = "JSON"
    else:
        header, body = _read_csv(data, schema)
        where = "CSV"
    frame = _tidy(header, body, where, schema)
    _check_size(len(frame), frame.shape[1], limits)
    return _drop_terms_column(frame)


def _check_size(rows: int, columns: int, limits: ReadLimits) -> None:
    if rows > limits.max_rows:
        raise LimitExceeded(
            f"the table has more than {limits.max_rows:,} data rows, the most the hub reads "
            f"in one upload ({ReadLimits.NAMES['max_rows']}); split the file",
            limit=ReadLimits.NAMES["max_rows"],
        )
    if rows * columns > limits.max_cells:
        raise LimitExceeded(
            f"the table has more than {limits.max_cells:,} cells, the most the hub reads in "
            f"one upload ({ReadLimits.NAMES['max_cells']}); split the file",
            limit=ReadLimits.NAMES["max_cells"],
        )


def _label(header: Sequence[str], position: int, schema: RecordSchema) -> str:
    """Name a column in a message: by its header only if that names a schema field."""
    match = match_headers([header[position - 1]], schema).matches[0]
    return repr(match.field) if match.field is not None else f"column {position}"


def _tidy(
    header: list[str], body: dict[int, Any], where: str, schema: RecordSchema
) -> pd.DataFrame:
    """Check the header, drop unnamed empty columns and empty rows, and build the frame."""
    rows = len(next(iter(body.values()))) if body else 0
    keep: list[int] = []
    for position, name in enumerate(header, start=1):
        cells = body.get(position)
        if name:
            keep.append(position)
            continue
        holding = 0 if cells is None else int((pd.Series(cells).str.strip() != "").sum())
        if holding:
            raise FormatError(
                f"{where}: column {position} has no name in the header but holds values in "
                f"{holding} row(s); give it a header"
            )
    named = [header[position - 1] for position in keep]
    first_seen: dict[str, int] = {}
    for position, name in zip(keep, named, strict=True):
        if name in first_seen:
            label = _label(header, position, schema)
            same = f"both have the header {label}" if label[0] == "'" else "have the same header"
            raise FormatError(
                f"{where}: columns {first_seen[name]} and {position} {same}; every column "
                "needs its own"
            )
        first_seen[name] = position
    columns = {
        name: body[position] if position in body else pd.array([""] * rows, dtype=_STRING)
        for name, position in zip(named, keep, strict=True)
    }
    frame = pd.DataFrame(columns, index=pd.RangeIndex(rows))
    if rows and len(frame.columns):
        holds_value = np.zeros(rows, dtype=bool)
        for name in frame.columns:
            stripped = frame[name].str.strip() != ""
            holds_value |= stripped.to_numpy(dtype=bool, na_value=False)
            if holds_value.all():
                break  # every row holds a value: no other column can change that
        if not holds_value.all():
            frame = frame[holds_value]
    return frame


_STRING = pd.StringDtype("pyarrow")


_BOM = b"\xef\xbb\xbf"


def _decode(data: bytes) -> str:
    """Decode text as UTF-8, or in the encoding charset-normalizer recognises, or refuse."""
    return _decode_text(data)[0]


def _decode_text(data: bytes) -> tuple[str, bool]:
    """Return the text of ``data`` and whether it was UTF-8 (else converted).

    :raises FormatError: if it is not UTF-8 and its encoding cannot be recognised.
    """
    try:
        return data.decode("utf-8-sig"), True
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        import charset_normalizer  # only for files that are not UTF-8: it takes time to load

        guess = charset_normalizer.from_bytes(data).best()
        if guess is None:
            raise FormatError(
                f"the file is not UTF-8 text (line {line} has the first byte that is not) and "
                "its encoding could not be recognised; save it as CSV UTF-8"
            ) from error
        return str(guess), False


def _split_lines(text: str, count: int) -> list[str]:
    """Return the first ``count`` lines of ``text`` (``text.split("\\n", count)[:count]``,
    without copying the rest of a large file).

    >>> _split_lines("a\\nb\\nc", 2), _split_lines("a\\n", 5), _split_lines("", 1)
    (['a', 'b'], ['a', ''], [''])
    """
    lines: list[str] = []
    start = 0
    while len(lines) < count:
        end = text.find("\n", start)
        if end < 0:
            lines.append(text[start:])
            break
        lines.append(text[start:end])
        start = end + 1
    return lines


def _sniff_delimiter(header_line: str) -> str:
    """Pick the separator that splits the header line into the most columns.

    Counting only outside quotes matters because a terms-of-use header may contain commas.

    >>> _sniff_delimiter('"Terms of use, see site";caseNo;gender')
    ';'
    >>> _sniff_delimiter("caseNo,gender"), _sniff_delimiter("caseNo\\tgender")
    (',', '\\t')
    """
    counts = dict.fromkeys(_DELIMITERS, 0)
    quoted = False
    for character in header_line:
        if character == '"':
            quoted = not quoted
        elif not quoted and character in counts:
            counts[character] += 1
    best = max(_DELIMITERS, key=lambda delimiter: counts[delimiter])
    return best if counts[best] else ","


def _parse_line(line: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return []


def _header_row(rows: Sequence[Sequence[object]], schema: RecordSchema) -> tuple[int, int]:
    """Return the index of the header row among ``rows`` and how many fields it names.

    The first row is the header unless a later one names at least two fields, and every row
    above it names none and is a title or a note (fewer cells than half the header's).
    """
    named = [len(match_headers(row, schema).fields) for row in rows]
    filled = [sum(1 for cell in row if cell not in (None, "")) for row in rows]
    for index in range(1, len(rows)):
        if named[index] < max(_MIN_LOWER_HEADER_MATCHES, named[0] + 1):
            continue
        if all(named[i] == 0 and 2 * filled[i] < filled[index] for i in range(index)):
            return index, named[index]
    return 0, named[0] if rows else 0


def _read_csv(data: bytes, schema: RecordSchema) -> tuple[list[str], dict[int, Any]]:
    text, utf8 = _decode_text(data)
    # What pyarrow parses, from ``start``: for UTF-8, the file's own bytes (after the byte
    # order mark), read in place rather than as a second, re-encoded copy; for text converted
    # from another encoding, its UTF-8 encoding.
    if utf8:
        source, start = data, len(_BOM) if data.startswith(_BOM) else 0
    else:
        source, start = text.encode("utf-8"), 0
    sep_line = _SEP_LINE.match(_split_lines(text, 1)[0])
    if sep_line:
        text = text.split("\n", 1)[1] if "\n" in text else ""
        newline = source.find(b"\n", start)
        start = newline + 1 if newline >= 0 else len(source)
    head = [line.rstrip("\r") for line in _split_lines(text, HEADER_SEARCH_ROWS)]
    candidates = (sep_line.group(1),) if sep_line else _DELIMITERS
    choice: tuple[int, int, int, str] | None = None  # (fields named, -row, columns, delimiter)
    for delimiter in candidates:
        rows = [_parse_line(line, delimiter) for line in head]
        index, named = _header_row(rows, schema)
        key = (named, -index, len(rows[index]) if rows else 0, delimiter)
        if named and (choice is None or key[:3] > choice[:3]):
            choice = key
    if choice is None:
        delimiter = candidates[0] if sep_line else _sniff_delimiter(head[0] if head else "")
        skip = 0
    else:
        delimiter, skip = choice[3], -choice[1]
    header = [cell.strip() for cell in _parse_line(head[skip] if head else "", delimiter)]
    try:
        table = _arrow_csv(memoryview(source)[start:], delimiter, skip + 1, len(header))
    except pa.ArrowInvalid as error:
        # pyarrow's message quotes the offending row, which may hold personal data: find the
        # line ourselves and say only what is wrong with it
        raise FormatError(
            _describe_csv_problem(text, delimiter, len(header), skip, bool(sep_line))
        ) from error
    body = {
        position: pd.array(table.column(position - 1), dtype=_STRING)
        for position in range(1, table.num_columns + 1)
    }
    return header, body


def _arrow_csv(encoded: bytes | memoryview, delimiter: str, skip: int, width: int) -> pa.Table:
    """Parse the CSV body (every cell a string, nothing null) with pyarrow's reader.

    pyarrow's reader is several times faster than Python's on the 9 MB CTDC file. A row longer
    than one of its blocks (a megabyte cell) is read again in a single block.
    """
    names = [f"c{i}" for i in range(width)]
    options = {
        "parse_options": pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        "convert_options": pa_csv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    }
    for block_size in (1 << 20, len(encoded) + 1):
        try:
            return pa_csv.read_csv(
                pa.BufferReader(pa.py_buffer(encoded)),
                read_options=pa_csv.ReadOptions(
                    skip_rows=skip, column_names=names, block_size=block_size
                ),
                **options,
            )
        except pa.ArrowInvalid as error:
            if "straddl" not in str(error) or block_size > len(encoded):
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _describe_csv_problem(text: str, delimiter: str, width: int, skip: int, sep_line: bool) -> str:
    # csv's own limit is 128 KiB a field: raise it so a long cell is measured, not refused
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, strict=True)
    try:
        for number, row in enumerate(reader, start=1):
            if number > skip + 1 and row and len(row) != width:
                return (
                    f"CSV line {reader.line_num + int(sep_line)} has {len(row)} fields but the "
                    f"header has {width}; check the separator and quoting on that line"
                )
    except csv.Error as error:
        return (
            f"CSV line {reader.line_num + int(sep_line)} is malformed ({error}); check its quoting"
        )
    return "CSV could not be parsed; check the separator, quoting and encoding"


def _check_workbook_archive(data: bytes, limits: ReadLimits) -> None:
    """Refuse a workbook whose parts declare more than the limits, before parsing any part."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise FormatError(_NOT_A_WORKBOOK) from error
    total = sum(part.file_size for part in parts)
    if total > limits.max_uncompressed_bytes:
        raise LimitExceeded(
            f"the workbook's parts declare {total:,} bytes uncompressed, more than the "
            f"{limits.max_uncompressed_bytes:,} the hub unpacks "
            f"({ReadLimits.NAMES['max_uncompressed_bytes']})",
            limit=ReadLimits.NAMES["max_uncompressed_bytes"],
        )
    for part in parts:
        if _WORKSHEET_PART.match(part.filename):
            _check_sheet_rows(data, part.filename, limits)
        if part.file_size <= _RATIO_EXEMPT_BYTES:
            continue
        ratio = part.file_size / max(part.compress_size, 1)
        if ratio > limits.max_compression_ratio:
            raise LimitExceeded(
                f"a part of the workbook expands {ratio:,.0f} times when unpacked, more than "
                f"{limits.max_compression_ratio} ({ReadLimits.NAMES['max_compression_ratio']}): "
                "it looks like a compression bomb; save the sheet again, or send CSV",
                limit=ReadLimits.NAMES["max_compression_ratio"],
            )


_WORKSHEET_PART = re.compile(r"^xl/worksheets/[^/]{1,200}\.xml$")


def _check_sheet_rows(data: bytes, part: str, limits: ReadLimits) -> None:
    """Check a sheet's declared dimension, or count its rows if it declares none.

    openpyxl looks for the dimension by parsing the sheet up to its data, and without one it
    keeps every row of the whole sheet in memory (2 million rows: 56 s, 160 MB) before the
    first row is read; so a sheet without a dimension is counted here first, as a stream,
    stopping past the row cap.
    """
    parser: ElementTree.XMLPullParser[ElementTree.Element] = ElementTree.XMLPullParser(
        events=("start", "end")
    )
    rows = 0
    with zipfile.ZipFile(io.BytesIO(data)) as archive, archive.open(part) as source:
        sheet_data: ElementTree.Element | None = None
        while chunk := source.read(1 << 16):
            parser.feed(chunk)
            for pair in parser.read_events():
                # start and end events give (event, element) pairs
                event, element = cast(tuple[str, ElementTree.Element], pair)
                tag = str(element.tag).rsplit("}", 1)[-1]
                if event == "start" and tag == "dimension" and sheet_data is None:
                    _check_dimension(str(element.get("ref", "")), limits)
                    return
                if event == "start" and tag == "sheetData":
                    sheet_data = element
                elif event == "end" and tag == "row":
                    rows += 1
                    _check_size(rows - 1, 1, limits)
                    if sheet_data is not None:
                        sheet_data.clear()  # keep nothing of the rows counted


def _check_dimension(ref: str, limits: ReadLimits) -> None:
    """Refuse a sheet whose declared dimension is over the limits, before reading its rows."""
    # openpyxl is imported where a workbook is read: loading it is a noticeable part of the
    # toolkit's start-up, and most files are CSV
    from openpyxl.utils.cell import range_boundaries

    try:
        _, _, columns, rows = range_boundaries(ref)
    except (ValueError, TypeError):
        return  # an unreadable dimension: the rows are counted as they stream
    if rows is not None and columns is not None:
        _check_size(max(rows - 1, 0), columns, limits)


_NOT_A_WORKBOOK = (
    "the file is not a readable XLSX workbook (it may be damaged, encrypted or an old .xls "
    "file; save it as .xlsx or CSV)"
)


def _read_xlsx(
    data: bytes, schema: RecordSchema, sheet: str | None, limits: ReadLimits
) -> tuple[list[str], dict[int, Any]]:
    import openpyxl  # see _check_dimension

    _check_workbook_archive(data, limits)
    try:
        workbook = openpyxl.load_workbook(
            io.BytesIO(data), read_only=True, data_only=True, keep_links=False
        )
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError) as error:
        raise FormatError(_NOT_A_WORKBOOK) from error
    try:
        return _read_sheet(workbook, schema, sheet, limits)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError) as error:
        if isinstance(error, FormatError):
            raise
        raise FormatError(_NOT_A_WORKBOOK) from error
    finally:
        workbook.close()


def _read_sheet(
    workbook: Any, schema: RecordSchema, sheet: str | None, limits: ReadLimits
) -> tuple[list[str], dict[int, Any]]:
    if sheet is not None:
        if sheet not in workbook.sheetnames:
            raise FormatError(
                f"the workbook has no sheet of the name asked for (it has "
                f"{len(workbook.sheetnames)} sheet(s))"
            )
        worksheets = [workbook[sheet]]
    else:
        worksheets = list(workbook.worksheets)
    choice: tuple[int, int, int] | None = None  # (fields named, -sheet, -row)
    for number, worksheet in enumerate(worksheets):
        # the declared dimension was checked; a lying one must not cut rows off, so every row
        # is streamed and counted
        worksheet.reset_dimensions()
        top = [
            list(row) for row in worksheet.iter_rows(max_row=HEADER_SEARCH_ROWS, values_only=True)
        ]
        if not top:
            continue
        index, named = _header_row([[_excel_cell(v) for v in row] for row in top], schema)
        key = (named, -number, -index)
        if choice is None or key > choice:
            choice = key
    if choice is None:
        raise FormatError("XLSX: the sheet is empty" if sheet else "XLSX: every sheet is empty")
    worksheet = worksheets[-choice[1]]
    header_row = -choice[2] + 1
    rows = worksheet.iter_rows(min_row=header_row, values_only=True)
    header = [_excel_cell(value).strip() for value in next(rows)]
    return header, _stream_rows(rows, len(header), limits)


def _stream_rows(rows: Iterator[tuple[Any, ...]], width: int, limits: ReadLimits) -> dict[int, Any]:
    columns: list[list[str]] = [[] for _ in range(width)]
    count = 0
    for row in rows:
        count += 1
        _check_size(count, width, limits)
        cells = [_excel_cell(value) for value in row]
        if len(cells) > width:
            extra = next(
                (i for i, cell in enumerate(cells[width:], start=width + 1) if cell.strip()), None
            )
            if extra is not None:
                raise FormatError(
                    f"XLSX row {count} has a value in column {extra}, beyond the header's "
                    f"{width} columns; give that column a header"
                )
        for position in range(width):
            columns[position].append(cells[position] if position < len(cells) else "")
    return {
        position: pd.array(values, dtype=_STRING)
        for position, values in enumerate(columns, start=1)
    }


def _excel_cell(value: Any) -> str:
    """Write one spreadsheet cell as the text a partner sees in it.

    >>> [_excel_cell(v) for v in (None, 2019, 2019.0, 0.5, True, "NA")]
    ['', '2019', '2019', '0.5', 'true', 'NA']
    >>> _excel_cell(dt.datetime(1990, 4, 12)), _excel_cell(dt.datetime(1990, 4, 12, 8, 30))
    ('1990-04-12', '1990-04-12T08:30:00')
    """
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    # spreadsheets store every number as a float; 2019.0 is what the partner typed as 2019
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        # a date typed into a spreadsheet is stored as midnight of that day
        if value.time() == dt.time(0):
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def _read_json(data: bytes, *, lines: bool) -> tuple[list[str], dict[int, Any]]:
    text = _decode(data)
    if lines:
        records = _json_lines(text)
    else:
        records = _json_document(text)
    header: dict[str, None] = {}
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise FormatError(f"JSON record {number} is not an object")
        header.update(dict.fromkeys(record))
    names = list(header)
    columns: list[list[str]] = [[] for _ in names]
    for number, record in enumerate(records, start=1):
        for position, key in enumerate(names):
            columns[position].append(_json_cell(record.get(key), number, position + 1, key))
    return [name.strip() for name in names], {
        position: pd.array(values, dtype=_STRING)
        for position, values in enumerate(columns, start=1)
    }


def _json_document(text: str) -> list[Any]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        if error.msg == "Extra data" and text.lstrip().startswith("{"):
            return _json_lines(text)  # JSON Lines sent as JSON
        raise FormatError(
            f"the file is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from error
    except RecursionError:
        raise FormatError("the JSON is nested too deeply; send an array of flat objects") from None
    except ValueError:  # Python refuses integers of more than 4,300 digits
        raise FormatError("the JSON holds a number too long to read") from None
    if isinstance(document, dict):
        if "records" not in document:
            raise FormatError('JSON: expected an array of objects or {"records": [...]}')
        document = document["records"]
    if not isinstance(document, list):
        raise FormatError('JSON: expected an array of objects or {"records": [...]}')
    return document


def _json_lines(text: str) -> list[Any]:
    records: list[Any] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise FormatError(
                f"JSON Lines line {number} is not a JSON object ({error.msg} at column "
                f"{error.colno})"
            ) from error
        except RecursionError:
            raise FormatError(f"JSON Lines line {number} is nested too deeply") from None
        except ValueError:  # Python refuses integers of more than 4,300 digits
            raise FormatError(f"JSON Lines line {number} holds a number too long to read") from None
    return records


def _json_cell(value: Any, number: int, position: int, key: str) -> str:
    """Write one JSON value as text; ``null`` and absent keys are missing.

    >>> [_json_cell(v, 1, 1, "x") for v in (None, 3, 2.5, False, " Female ", 2019.0)]
    ['', '3', '2.5', 'false', ' Female ', '2019.0']
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    label = repr(key) if match_headers([key]).matches[0].field is not None else f"key {position}"
    raise FormatError(
        f"JSON record {number}, field {label}: nested arrays or objects are not allowed"
    )


def _drop_terms_column(frame: pd.DataFrame) -> pd.DataFrame:
    if len(frame.columns) > 1 and _TERMS_HEADER.search(str(frame.columns[0])[:10_000]):
        return frame.iloc[:, 1:]
    return frame
