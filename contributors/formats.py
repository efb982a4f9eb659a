"""Read what partners send (CSV, the CTDC website export, XLSX, JSON) into a frame of strings.

Every cell comes back as a string exactly as the partner wrote it (no type guessing, no missing
value guessing: ``NA`` is Namibia), and no row is ever dropped. Anything that cannot be read
raises :class:`FormatError` with a reason a partner can act on; messages never quote a cell, since
a cell may hold personal data.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import zipfile
from collections.abc import Iterable
from typing import Any, Literal

import pandas as pd

__all__ = ["FormatError", "TableFormat", "detect_format", "read_table"]

TableFormat = Literal["csv", "xlsx", "json"]

MEDIA_TYPES: dict[str, TableFormat] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "text/plain": "csv",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/json": "json",
}
EXTENSIONS: dict[str, TableFormat] = {
    ".csv": "csv",
    ".txt": "csv",
    ".xlsx": "xlsx",
    ".json": "json",
}
# CTDC's website export puts its terms of use (a long citation text) in the first column header.
_TERMS_HEADER = re.compile(
    r"terms\s+of\s+use|ctdatacollaborative|counter[\s-]*trafficking\s+data\s+collaborative"
    r"|disclaimer|citation",
    re.IGNORECASE,
)
_ZIP_MAGIC = b"PK\x03\x04"


class FormatError(ValueError):
    """A partner file cannot be read as a table; the message says why, without quoting data."""


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
    """
    if media_type:
        essence = media_type.split(";", 1)[0].strip().lower()
        if essence in MEDIA_TYPES:
            return MEDIA_TYPES[essence]
        if essence not in ("application/octet-stream", ""):
            raise FormatError(
                f"media type {essence!r} is not supported; send CSV, XLSX or JSON "
                f"({', '.join(sorted(MEDIA_TYPES))})"
            )
    if filename:
        dot = filename.rfind(".")
        extension = filename[dot:].lower() if dot >= 0 else ""
        if extension in EXTENSIONS:
            return EXTENSIONS[extension]
        if extension:
            raise FormatError(
                f"file extension {extension!r} is not supported; send .csv, .xlsx or .json"
            )
    if data.startswith(_ZIP_MAGIC):
        return "xlsx"
    if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"[", b"{"):
        return "json"
    return "csv"


def read_table(
    data: bytes, *, media_type: str | None = None, filename: str | None = None
) -> pd.DataFrame:
    """Read a partner file into a frame whose every column has dtype ``string``.

    CSV may be separated by ``,`` or ``;`` (sniffed from the header line); the CTDC website export
    (``;``-separated, with a terms-of-use text as its first column) loses that first column. XLSX
    is read from its first sheet; JSON must be an array of objects or ``{"records": [...]}``.

    :param data: the file's bytes.
    :param media_type: the declared media type, if any.
    :param filename: the file's name, if any.
    :raises FormatError: if the file cannot be read as a table.

    >>> frame = read_table(b"gender;citizenship\\nFemale;NA\\n")
    >>> frame.to_dict("list")
    {'gender': ['Female'], 'citizenship': ['NA']}
    >>> str(frame["citizenship"].dtype)
    'string'
    """
    if not data.strip():
        raise FormatError("the file is empty")
    table_format = detect_format(data, media_type=media_type, filename=filename)
    if table_format == "xlsx":
        frame = _read_xlsx(data)
    elif table_format == "json":
        frame = _read_json(data)
    else:
        frame = _read_csv(data)
    return _drop_terms_column(frame)


def _check_header(names: Iterable[object], where: str) -> list[str]:
    header: list[str] = []
    for position, name in enumerate(names, start=1):
        text = "" if name is None else str(name).strip()
        if not text:
            raise FormatError(f"{where}: column {position} has no name in the header")
        header.append(text)
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise FormatError(f"{where}: column {name!r} appears more than once in the header")
        seen.add(name)
    return header


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise FormatError(
            f"the file is not UTF-8 text (first undecodable byte at offset {error.start}); "
            "save it as CSV UTF-8"
        ) from error


def _sniff_delimiter(header_line: str) -> str:
    """Pick ``;`` or ``,`` by which one splits the header line into more columns.

    Counting only outside quotes matters because a terms-of-use header may contain commas.

    >>> _sniff_delimiter('"Terms of use, see site";caseNo;gender')
    ';'
    >>> _sniff_delimiter("caseNo,gender")
    ','
    """
    counts = {",": 0, ";": 0}
    quoted = False
    for character in header_line:
        if character == '"':
            quoted = not quoted
        elif not quoted and character in counts:
            counts[character] += 1
    return ";" if counts[";"] > counts[","] else ","


def _read_csv(data: bytes) -> pd.DataFrame:
    text = _decode(data)
    first_line = text.split("\n", 1)[0]
    delimiter = _sniff_delimiter(first_line)
    header = _check_header(next(csv.reader([first_line], delimiter=delimiter)), "CSV")
    buffer = io.BytesIO(text.encode("utf-8"))
    try:
        # pyarrow's reader is several times faster than the C parser on the 9 MB CTDC file
        frame = pd.read_csv(
            buffer,
            sep=delimiter,
            dtype="string",
            keep_default_na=False,
            engine="pyarrow",
        )
    except (pd.errors.ParserError, ValueError) as error:
        # pyarrow's message quotes the offending row, which may hold personal data: find the
        # line ourselves and say only what is wrong with it
        raise FormatError(_describe_csv_problem(text, delimiter, len(header))) from error
    if list(frame.columns) != header:
        raise FormatError("CSV: the header could not be read consistently; check its quoting")
    return frame


def _describe_csv_problem(text: str, delimiter: str, width: int) -> str:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, strict=True)
    try:
        for row in reader:
            if row and len(row) != width:
                return (
                    f"CSV line {reader.line_num} has {len(row)} fields but the header has "
                    f"{width}; check the separator and quoting on that line"
                )
    except csv.Error as error:
        return f"CSV line {reader.line_num} is malformed ({error}); check its quoting"
    return "CSV could not be parsed; check the separator, quoting and encoding"


def _read_xlsx(data: bytes) -> pd.DataFrame:
    try:
        raw = pd.read_excel(
            io.BytesIO(data),
            sheet_name=0,
            header=None,
            dtype=object,
            keep_default_na=False,
            na_filter=False,
            engine="openpyxl",
        )
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as error:
        raise FormatError(
            "the file is not a readable XLSX workbook (it may be damaged, encrypted or an old "
            ".xls file; save it as .xlsx or CSV)"
        ) from error
    if raw.empty:
        raise FormatError("XLSX: the first sheet is empty")
    header = _check_header(raw.iloc[0].tolist(), "XLSX")
    body = raw.iloc[1:]
    columns = {
        name: pd.array([_excel_cell(value) for value in body[position]], dtype="string")
        for position, name in zip(body.columns, header, strict=True)
    }
    return pd.DataFrame(columns, index=pd.RangeIndex(len(body)))


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


def _read_json(data: bytes) -> pd.DataFrame:
    try:
        document = json.loads(_decode(data))
    except json.JSONDecodeError as error:
        raise FormatError(
            f"the file is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from error
    if isinstance(document, dict):
        if "records" not in document:
            raise FormatError('JSON: expected an array of objects or {"records": [...]}')
        document = document["records"]
    if not isinstance(document, list):
        raise FormatError('JSON: expected an array of objects or {"records": [...]}')
    header: dict[str, None] = {}
    for number, record in enumerate(document, start=1):
        if not isinstance(record, dict):
            raise FormatError(f"JSON record {number} is not an object")
        header.update(dict.fromkeys(record))
    names = _check_header(header, "JSON")
    columns: dict[str, list[str]] = {name: [] for name in names}
    for number, record in enumerate(document, start=1):
        for key, name in zip(header, names, strict=True):
            columns[name].append(_json_cell(record.get(key), number, name))
    return pd.DataFrame(
        {name: pd.array(values, dtype="string") for name, values in columns.items()},
        index=pd.RangeIndex(len(document)),
    )


def _json_cell(value: Any, number: int, name: str) -> str:
    """Write one JSON value as text; ``null`` and absent keys are missing.

    >>> [_json_cell(v, 1, "x") for v in (None, 3, 2.5, False, " Female ")]
    ['', '3', '2.5', 'false', ' Female ']
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise FormatError(
        f"JSON record {number}, field {name!r}: nested arrays or objects are not allowed"
    )


def _drop_terms_column(frame: pd.DataFrame) -> pd.DataFrame:
    if len(frame.columns) > 1 and _TERMS_HEADER.search(str(frame.columns[0])):
        return frame.iloc[:, 1:]
    return frame
