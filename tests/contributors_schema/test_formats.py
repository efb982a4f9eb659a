"""Reading partner files: CSV (both separators), the CTDC export, XLSX and JSON."""

from __future__ import annotations

import datetime as dt
import io
import json

import openpyxl
import pandas as pd
import pytest

from contributors.formats import FormatError, detect_format, read_table

from .conftest import CTDC_PATH

TERMS = (
    "Terms of use: data from the Counter Trafficking Data Collaborative (CTDC), "
    "www.ctdatacollaborative.org; do not attempt to re-identify anyone"
)


def _all_strings(frame: pd.DataFrame) -> bool:
    return all(str(dtype) == "string" for dtype in frame.dtypes)


def test_comma_csv_keeps_every_cell_as_written() -> None:
    data = b"caseNo,citizenship,gender,isAbduction\n1,NA,Female,\n2, NAM ,NULL,-99\n"
    frame = read_table(data)
    assert _all_strings(frame)
    assert frame.to_dict("list") == {
        "caseNo": ["1", "2"],
        "citizenship": ["NA", " NAM "],
        "gender": ["Female", "NULL"],
        "isAbduction": ["", "-99"],
    }


def test_semicolon_csv_with_quotes_and_bom() -> None:
    data = '\ufeffcaseNo;Datasource\n"7";"Case Management"\n"8";"a;b, c"\n'.encode()
    frame = read_table(data, filename="upload.csv")
    assert list(frame.columns) == ["caseNo", "Datasource"]
    assert frame["Datasource"].tolist() == ["Case Management", "a;b, c"]


def test_ctdc_export_loses_its_terms_of_use_column(ctdc_sample: pd.DataFrame) -> None:
    # the CTDC website export: ';'-separated, terms of use as the first column's header
    export = ctdc_sample.copy()
    export.insert(0, TERMS, "")
    buffer = io.StringIO()
    export.to_csv(buffer, sep=";", index=False)
    frame = read_table(buffer.getvalue().encode(), media_type="text/csv; charset=utf-8")
    pd.testing.assert_frame_equal(frame.reset_index(drop=True), ctdc_sample, check_dtype=False)
    assert _all_strings(frame)


def test_sample_reads_like_pandas_reads_it(
    ctdc_sample_bytes: bytes, ctdc_sample: pd.DataFrame
) -> None:
    frame = read_table(ctdc_sample_bytes)
    pd.testing.assert_frame_equal(frame, ctdc_sample, check_dtype=False)
    assert len(frame) == ctdc_sample_bytes.count(b"\n") - 1


@pytest.mark.slow
def test_whole_ctdc_file_reads_without_losing_a_row() -> None:
    frame = read_table(CTDC_PATH.read_bytes(), filename=CTDC_PATH.name)
    assert frame.shape == (97_750, 54)
    assert _all_strings(frame)
    assert not frame.isna().any().any()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"  \n", "the file is empty"),
        (b"a,b\n1,2\n3,4,secret-value\n", "CSV line 3 has 3 fields but the header has 2"),
        (b"a,b\n1\n", "CSV line 2 has 1 fields but the header has 2"),
        (b"secret-value,secret-value\n1,2\n", "columns 1 and 2 have the same header;"),
        (b"a,,c\n1,2,3\n", "column 2 has no name in the header but holds values in 1 row"),
    ],
)
def test_unreadable_csv_says_why_without_quoting_data(data: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message) as caught:
        read_table(data)
    assert "secret-value" not in str(caught.value)


def _xlsx(rows: list[list[object]]) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def test_xlsx_cells_come_back_as_the_partner_typed_them() -> None:
    data = _xlsx(
        [
            ["caseNo", "yearOfRegistration", "citizenship", "isAbduction", "note"],
            ["a1", 2019, "NA", 1, 0.5],
            # spreadsheet cells have no time zone, so the date is naive as a partner would send it
            ["a2", 2020.0, None, True, dt.datetime(1990, 4, 12)],  # noqa: DTZ001
        ]
    )
    frame = read_table(data, filename="cases.xlsx")
    assert _all_strings(frame)
    assert frame.to_dict("list") == {
        "caseNo": ["a1", "a2"],
        "yearOfRegistration": ["2019", "2020"],
        "citizenship": ["NA", ""],
        "isAbduction": ["1", "true"],
        "note": ["0.5", "1990-04-12"],
    }


def test_damaged_xlsx_is_a_format_error() -> None:
    data = _xlsx([["caseNo"], ["1"]])
    with pytest.raises(FormatError, match="not a readable XLSX workbook"):
        read_table(data[: len(data) // 2])


def test_xlsx_with_duplicate_header_is_refused() -> None:
    with pytest.raises(FormatError, match="XLSX: columns 1 and 2 both have the header 'gender'"):
        read_table(_xlsx([["gender", "gender"], ["Female", "Male"]]))


@pytest.mark.parametrize("wrapped", [False, True])
def test_json_records(wrapped: bool) -> None:
    records = [
        {"caseNo": "1", "yearOfRegistration": 2019, "isAbduction": True, "gender": None},
        {"caseNo": "2", "citizenship": "NA", "ageBroad": 17.5},
    ]
    document = {"records": records} if wrapped else records
    frame = read_table(json.dumps(document).encode(), media_type="application/json")
    assert _all_strings(frame)
    assert frame.to_dict("list") == {
        "caseNo": ["1", "2"],
        "yearOfRegistration": ["2019", ""],
        "isAbduction": ["true", ""],
        "gender": ["", ""],
        "citizenship": ["", "NA"],
        "ageBroad": ["", "17.5"],
    }


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"[{]", "not valid JSON"),
        (b'{"rows": []}', "expected an array of objects"),
        (b'"text"', "expected an array of objects"),
        (b'[{"a": 1}, 2]', "JSON record 2 is not an object"),
        (b'[{"a": {"b": "secret-value"}}]', "JSON record 1, field key 1: nested"),
        (b'[{"gender": ["secret-value"]}]', "JSON record 1, field 'gender': nested"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b'{"a": 1}\n{"a": secret-value}\n', "JSON Lines line 2 is not a JSON object"),
        (b'[{"a": ' + b"9" * 5000 + b"}]", "number too long"),
        (b'{"a": 1}\n{"a": ' + b"9" * 5000 + b"}\n", "JSON Lines line 2 holds a number too long"),
    ],
)
def test_bad_json_says_why(document: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message) as caught:
        read_table(document, filename="x.json")
    assert "secret-value" not in str(caught.value)


def test_empty_json_array_is_an_empty_table() -> None:
    assert read_table(b"[]").shape == (0, 0)


@pytest.mark.parametrize(
    ("data", "media_type", "filename", "expected"),
    [
        (b"a,b\n", None, None, "csv"),
        (b"  [ ]", None, None, "json"),
        (b'{"records": []}', None, None, "json"),
        (b"PK\x03\x04rest", None, None, "xlsx"),
        (b"a,b\n", "text/csv", "x.json", "csv"),
        (b"[]", "application/octet-stream", "x.JSON", "json"),
        (b"a", None, "cases.xlsx", "xlsx"),
    ],
)
def test_format_detection(
    data: bytes, media_type: str | None, filename: str | None, expected: str
) -> None:
    assert detect_format(data, media_type=media_type, filename=filename) == expected


def test_unsupported_media_type_and_extension() -> None:
    with pytest.raises(FormatError, match="media type 'application/pdf' is not supported"):
        read_table(b"%PDF", media_type="application/pdf")
    with pytest.raises(FormatError, match="file extension '.xls' is not supported"):
        read_table(b"x", filename="old.xls")
