"""The files partners really send (issue 12 item 5): each one made here from the CTDC sample, read
correctly, or refused with the real reason and the row."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import openpyxl
import pandas as pd
import pytest

from contributors.formats import FormatError, read_table
from contributors.normalise import validate_records
from contributors.schema import RecordSchema


def _records(frame: pd.DataFrame, schema: RecordSchema) -> pd.DataFrame:
    result = validate_records(frame, schema)
    assert result.report.ok, result.report.as_dict()
    return result.records


@pytest.fixture(scope="module")
def expected(ctdc_sample: pd.DataFrame, schema: RecordSchema) -> pd.DataFrame:
    """What the CTDC sample normalises to, the yardstick of every partner file below."""
    return _records(ctdc_sample, schema)


def _csv(frame: pd.DataFrame, **options: object) -> str:
    return frame.to_csv(index=False, lineterminator="\n", **options)  # type: ignore[call-overload]


def test_tsv(ctdc_sample: pd.DataFrame, expected: pd.DataFrame, schema: RecordSchema) -> None:
    data = _csv(ctdc_sample, sep="\t").encode()
    for options in ({}, {"filename": "cases.tsv"}, {"media_type": "text/tab-separated-values"}):
        frame = read_table(data, **options)  # type: ignore[arg-type]
        assert frame.shape == ctdc_sample.shape
        pd.testing.assert_frame_equal(_records(frame, schema), expected)


def test_json_lines(
    ctdc_sample: pd.DataFrame, expected: pd.DataFrame, schema: RecordSchema
) -> None:
    lines = "\n".join(json.dumps(record) for record in ctdc_sample.to_dict("records")) + "\n"
    for options in ({}, {"filename": "cases.jsonl"}, {"media_type": "application/x-ndjson"}):
        frame = read_table(lines.encode(), **options)  # type: ignore[arg-type]
        pd.testing.assert_frame_equal(_records(frame, schema), expected)


def test_excel_sep_line(
    ctdc_sample: pd.DataFrame, expected: pd.DataFrame, schema: RecordSchema
) -> None:
    data = ("sep=;\r\n" + _csv(ctdc_sample, sep=";")).encode()
    frame = read_table(data)
    pd.testing.assert_frame_equal(_records(frame, schema), expected)
    # a row error still names the row of the data, and a bad line its line in the file
    broken = data + b"x;y\n"
    with pytest.raises(FormatError, match=f"CSV line {len(ctdc_sample) + 3} has 2 fields"):
        read_table(broken)


def test_title_row_above_the_header_in_csv(
    ctdc_sample: pd.DataFrame, expected: pd.DataFrame, schema: RecordSchema
) -> None:
    data = ("Cases registered in 2021\n\n" + _csv(ctdc_sample)).encode()
    pd.testing.assert_frame_equal(_records(read_table(data), schema), expected)


def _workbook(sheets: dict[str, list[list[object]]]) -> bytes:
    book = openpyxl.Workbook()
    first = book.active
    assert first is not None
    book.remove(first)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def test_title_row_and_data_on_another_sheet(
    ctdc_sample: pd.DataFrame, expected: pd.DataFrame, schema: RecordSchema
) -> None:
    rows = [list(ctdc_sample.columns), *ctdc_sample.astype(object).to_numpy().tolist()]
    data = _workbook(
        {
            "Read me": [["About this export"], ["Exported from the case system"]],
            "Cases": [["Cases registered, 2021"], [], *rows],
        }
    )
    pd.testing.assert_frame_equal(_records(read_table(data), schema), expected)
    pd.testing.assert_frame_equal(_records(read_table(data, sheet="Cases"), schema), expected)
    # the sheet asked for is read, even when another would match better
    assert read_table(data, sheet="Read me").shape == (1, 1)
    with pytest.raises(FormatError, match="no sheet of the name asked for .it has 2 sheet"):
        read_table(data, sheet="Secret name")
    with pytest.raises(FormatError, match="a sheet can only be chosen in an XLSX workbook"):
        read_table(b"a,b\n1,2\n", sheet="Cases")


def test_headers_padded_with_spaces(
    ctdc_sample: pd.DataFrame, expected: pd.DataFrame, schema: RecordSchema
) -> None:
    padded = ctdc_sample.rename(columns=lambda name: f"  {name} ")
    frame = read_table(_csv(padded).encode())
    assert list(frame.columns) == list(ctdc_sample.columns)
    pd.testing.assert_frame_equal(_records(frame, schema), expected)


def test_trailing_empty_columns_and_empty_rows(
    ctdc_sample: pd.DataFrame, expected: pd.DataFrame, schema: RecordSchema
) -> None:
    # Excel's CSV: two unnamed empty columns, and rows of nothing but separators
    lines = _csv(ctdc_sample).splitlines()
    body = [line + ",," for line in lines]
    body[5:5] = [",," + "," * (ctdc_sample.shape[1] - 1)] * 2
    body.append("," * (ctdc_sample.shape[1] + 1))
    frame = read_table(("\n".join(body) + "\n").encode())
    assert frame.shape == ctdc_sample.shape
    pd.testing.assert_frame_equal(_records(frame, schema), expected)
    # a bad cell after the empty rows is reported at its own row in the file
    bad = ctdc_sample.copy()
    bad.loc[10, "gender"] = "Femme"
    lines = _csv(bad).splitlines()
    lines[5:5] = ["," * (ctdc_sample.shape[1] - 1)] * 2
    report = validate_records(read_table(("\n".join(lines) + "\n").encode()), schema).report
    assert [(e.row, e.field) for e in report.errors] == [(13, "gender")]


def test_trailing_empty_columns_and_rows_in_a_workbook(
    ctdc_sample: pd.DataFrame, expected: pd.DataFrame, schema: RecordSchema
) -> None:
    rows = [[*ctdc_sample.columns, None, None]]
    rows += [[*row, None, ""] for row in ctdc_sample.astype(object).to_numpy().tolist()]
    rows += [[None] * (ctdc_sample.shape[1] + 2)] * 3
    frame = read_table(_workbook({"Sheet1": rows}))
    pd.testing.assert_frame_equal(_records(frame, schema), expected)


def test_windows_1252_is_detected_and_converted(
    ctdc_sample: pd.DataFrame, expected: pd.DataFrame, schema: RecordSchema
) -> None:
    text = "Cas enregistrés – année 2021, données protégées\n" + _csv(ctdc_sample)
    for encoding in ("cp1252", "latin-1"):
        data = (
            text.replace("–", "-").encode(encoding)
            if encoding == "latin-1"
            else text.encode(encoding)
        )
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")
        pd.testing.assert_frame_equal(_records(read_table(data), schema), expected)


def test_an_undecodable_file_is_refused_naming_the_line() -> None:
    data = b"caseNo,gender\n" + b"1,Female\n" * 3 + os.urandom(400)
    with pytest.raises(FormatError, match="line 5 has the first byte that is not"):
        read_table(data)


@pytest.mark.parametrize("as_json", [False, True])
def test_whole_numbers_and_flags_written_as_floats(
    ctdc_sample: pd.DataFrame, expected: pd.DataFrame, schema: RecordSchema, as_json: bool
) -> None:
    floats = ctdc_sample.copy()
    for spec in schema.fields:
        if spec.type in ("integer", "boolean"):
            column = floats[spec.name]
            floats[spec.name] = column.where(column == "", column + ".0")
    if as_json:
        # what a JSON writer makes of a float column: numbers 2019.0 and 1.0, null for missing
        records = [
            {
                name: (
                    float(value)
                    if name in schema and schema.field(name).type != "string" and value
                    else (value or None)
                )
                for name, value in record.items()
            }
            for record in ctdc_sample.to_dict("records")
        ]
        data = json.dumps(records).encode()
        assert b"2019.0" in data or b"2020.0" in data
    else:
        data = _csv(floats).encode()
        assert b",1.0," in data
    pd.testing.assert_frame_equal(_records(read_table(data), schema), expected)


def test_missing_spellings_and_namibia(
    ctdc_sample: pd.DataFrame, expected: pd.DataFrame, schema: RecordSchema
) -> None:
    rng = np.random.default_rng(12)
    spelled = ctdc_sample.copy()
    spellings = np.array(["N/A", "n/a", "NaN", "None", ".", "NULL", " -99 "], dtype=object)
    for name in spelled.columns:
        if name == "caseNo":
            continue
        empty = (spelled[name] == "").to_numpy()
        picks = spellings[rng.integers(0, len(spellings), size=len(spelled))]
        spelled[name] = pd.array(
            np.where(empty, picks, spelled[name].to_numpy(dtype=object)), dtype="string"
        )
    assert (spelled == "N/A").any().any() and (spelled == ".").any().any()
    records = _records(read_table(_csv(spelled).encode()), schema)
    pd.testing.assert_frame_equal(records, expected)
    namibia = validate_records(
        pd.DataFrame({"caseNo": [f"{1:064x}"], "citizenship": ["NA"], "gender": ["NA"]}), schema
    )
    assert namibia.records["citizenship"].tolist() == []  # gender NA is not a gender ...
    assert [(e.field, e.value_class) for e in namibia.report.errors] == [
        ("gender", "code-not-in-domain")
    ]
    namibia = validate_records(
        pd.DataFrame({"caseNo": [f"{1:064x}"], "citizenship": [" NA "]}), schema
    )
    assert namibia.records["citizenship"].tolist() == ["NA"]  # ... but NA is Namibia


def test_a_year_written_as_a_date_is_its_year(
    ctdc_sample: pd.DataFrame, expected: pd.DataFrame, schema: RecordSchema
) -> None:
    dated = ctdc_sample.copy()
    year = dated["yearOfRegistration"]
    dated["yearOfRegistration"] = year.where(year == "", year + "-03-15")
    result = validate_records(read_table(_csv(dated).encode()), schema)
    assert result.report.identifier_findings == []  # not a birth date
    pd.testing.assert_frame_equal(result.records, expected)
    bad = dated.head(1).copy()
    bad["yearOfRegistration"] = "2019-02-30"
    [error] = validate_records(bad, schema).report.errors
    assert (error.field, error.value_class, error.reason) == (
        "yearOfRegistration",
        "date",
        "not a whole number",
    )


def test_differently_spelled_headers(
    ctdc_sample: pd.DataFrame, expected: pd.DataFrame, schema: RecordSchema
) -> None:
    # the headers that were dropped as "not in the hub schema" (issue 12 item 1)
    respelled = ctdc_sample.rename(
        columns={
            "CountryOfExploitation": "Country of Exploitation",
            "gender": "Gender",
            "yearOfRegistration": "year of registration",
            "ageBroad": "Age band",
        }
    )
    result = validate_records(read_table(_csv(respelled).encode()), schema)
    assert result.report.ok, result.report.as_dict()
    pd.testing.assert_frame_equal(result.records, expected)
    named = {c.field: c.header for c in result.report.columns if c.header != c.field}
    assert named == {
        "CountryOfExploitation": "Country of Exploitation",
        "gender": "Gender",
        "yearOfRegistration": "year of registration",
        "ageBroad": "Age band",
    }
