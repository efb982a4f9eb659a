"""Validation and normalisation of partner case records against the record schema."""

from __future__ import annotations

import datetime as dt
import io
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contributors.normalise import (
    ERROR_LIMIT,
    ErrorTally,
    RowError,
    ValidationReport,
    format_records,
    validate_records,
)
from contributors.schema import RecordSchema, load_schema

CURRENT_YEAR = dt.datetime.now(dt.UTC).year


def _case(number: int) -> str:
    """Return a case pseudonym in the toolkit's format (64 lowercase hex digits)."""
    return f"{number:064x}"


def _frame(**columns: list[str]) -> pd.DataFrame:
    size = len(next(iter(columns.values())))
    columns.setdefault("caseNo", [_case(number) for number in range(size)])
    return pd.DataFrame(columns, dtype="string")


def _one(column: str, values: list[str], **others: list[str]) -> pd.DataFrame:
    """Validate one column (plus a fresh case pseudonym per row) and return the records."""
    return validate_records(_frame(**{column: values}, **others)).records


def _errors(frame: pd.DataFrame) -> list[tuple[int, str, str, str]]:
    report = validate_records(frame).report
    return [(e.row, e.field, e.value_class, e.reason) for e in report.errors]


@pytest.mark.parametrize(
    ("age", "band"),
    [
        ("0", "0--8"),
        ("8", "0--8"),
        ("9", "9--17"),
        ("17", "9--17"),
        ("18", "18--20"),
        ("20", "18--20"),
        ("29", "27--29"),
        ("38", "30--38"),
        ("47", "39--47"),
        ("48", "48+"),
        (" 120 ", "48+"),
        ("+30", "30--38"),
    ],
)
def test_exact_age_becomes_its_band(age: str, band: str) -> None:
    records = _one("ageBroad", [age])
    assert records["ageBroad"].tolist() == [band]


def test_exact_age_is_never_stored() -> None:
    result = validate_records(_frame(ageBroad=["37", "16"]))
    assert result.records["ageBroad"].tolist() == ["30--38", "9--17"]
    stored = json.dumps(result.records.astype("string").fillna("").to_dict("list"))
    assert '"37"' not in stored and '"16"' not in stored


@pytest.mark.parametrize("age", ["121", "-1", "17.5", "seventeen"])
def test_implausible_or_malformed_ages_are_rejected(age: str) -> None:
    [(row, field, _, reason)] = _errors(_frame(ageBroad=[age]))
    assert (row, field) == (1, "ageBroad")
    assert reason in {
        "an exact age must be between 0 and 120 years",
        "not one of the 9 CTDC age bands, nor an exact age in whole years",
    }


@pytest.mark.parametrize("spelling", ["18--20", "18-20", "18 – 20", "18—20", " 18 -- 20 "])
def test_age_band_dash_spellings(spelling: str) -> None:
    assert _one("ageBroad", [spelling])["ageBroad"].tolist() == ["18--20"]


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("NA", "NA"),
        ("na", "NA"),
        ("NAM", "NA"),
        ("nam", "NA"),
        ("gbr", "GB"),
        (" Co ", "CO"),
        ("XKX", "XK"),
        ("xk", "XK"),
    ],
)
def test_country_codes_normalise_to_alpha2(value: str, code: str) -> None:
    records = _one("citizenship", [value], CountryOfExploitation=[value])
    assert records.loc[0, ["citizenship", "CountryOfExploitation"]].tolist() == [code, code]


def test_na_is_namibia_not_missing() -> None:
    records = _one("citizenship", ["NA", "", "NULL", "-99"])
    assert records["citizenship"].tolist() == ["NA", pd.NA, pd.NA, pd.NA]


@pytest.mark.parametrize("value", ["ZZ", "Namibia", "UK", "NAMI"])
def test_unknown_country_is_rejected(value: str) -> None:
    [(_, field, _, reason)] = _errors(_frame(CountryOfExploitation=[value]))
    assert field == "CountryOfExploitation"
    assert reason == "not an ISO 3166-1 alpha-2 or alpha-3 country code listed in countries.csv"


@pytest.mark.parametrize("value", ["", "   ", "NULL", "null", "-99", " -99 "])
def test_missing_spellings(value: str) -> None:
    records = _one("gender", [value], yearOfRegistration=[value], isAbduction=[value])
    assert records.loc[0, ["gender", "yearOfRegistration", "isAbduction"]].isna().all()


@pytest.mark.parametrize(
    ("value", "flag"),
    [("1", True), ("0", False), ("TRUE", True), ("false", False), ("Yes", True), (" no ", False)],
)
def test_boolean_spellings(value: str, flag: bool) -> None:
    assert _one("isForcedLabour", [value])["isForcedLabour"].tolist() == [flag]


@pytest.mark.parametrize(
    ("value", "flag"), [("1.0", True), ("0.0", False), (" 1.0 ", True), ("1", True)]
)
def test_flags_written_as_numbers_are_read(value: str, flag: bool) -> None:
    # a spreadsheet or JSON writer turns the flag 1 into 1.0 (issue 12 item 5)
    assert _one("isForcedLabour", [value])["isForcedLabour"].tolist() == [flag]


@pytest.mark.parametrize("value", ["2", "y", "1.5", "0.01", "oui"])
def test_bad_boolean_is_rejected(value: str) -> None:
    [(_, field, _, reason)] = _errors(_frame(isSexualExploit=[value]))
    assert (field, reason) == ("isSexualExploit", "not a yes/no value (1/0, true/false or yes/no)")


@pytest.mark.parametrize(
    ("column", "value", "code"),
    [
        ("gender", "female", "Female"),
        ("gender", " MALE", "Male"),
        ("gender", "transgender/nonconforming", "Transgender/NonConforming"),
        ("Datasource", "case management", "Case Management"),
        ("Datasource", "HOTLINE", "Hotline"),
        ("majorityStatus", "minor", "Minor"),
    ],
)
def test_codes_match_case_insensitively(column: str, value: str, code: str) -> None:
    assert _one(column, [value])[column].tolist() == [code]


def test_code_outside_the_domain_names_the_codes() -> None:
    [(_, field, value_class, reason)] = _errors(_frame(gender=["Femme"]))
    assert (field, value_class) == ("gender", "code-not-in-domain")
    assert reason == "not one of the 3 codes of gender: Female, Male, Transgender/NonConforming"


@pytest.mark.parametrize(
    ("value", "value_class", "reason"),
    [
        ("1890", "integer", "below the minimum of 2000"),
        (str(CURRENT_YEAR + 1), "integer", f"above the maximum of {CURRENT_YEAR}"),
        ("2019.5", "decimal", "not a whole number"),
        ("twenty", "alphabetic", "not a whole number"),
        ("12/03/2019", "date", "not a whole number"),
    ],
)
def test_bad_years(value: str, value_class: str, reason: str) -> None:
    assert _errors(_frame(yearOfRegistration=[value])) == [
        (1, "yearOfRegistration", value_class, reason)
    ]


def test_year_bounds_are_inclusive() -> None:
    records = _one("yearOfRegistration", ["2000", str(CURRENT_YEAR)])
    assert records["yearOfRegistration"].tolist() == [2000, CURRENT_YEAR]


def test_majority_status_is_filled_from_the_age() -> None:
    records = _one("ageBroad", ["17", "48+", "", "9--17"], majorityStatus=["", "", "", ""])
    assert records["majorityStatus"].tolist() == ["Minor", "Adult", pd.NA, "Minor"]


def test_majority_status_is_filled_even_without_its_column() -> None:
    result = validate_records(_frame(ageBroad=["30"]))
    assert result.report.missing_columns.count("majorityStatus") == 1
    assert result.records["majorityStatus"].tolist() == ["Adult"]


@pytest.mark.parametrize(
    ("age", "status", "reason"),
    [
        ("17", "Adult", "an exact age under 18 contradicts majorityStatus Adult"),
        ("18", "minor", "an exact age of 18 or over contradicts majorityStatus Minor"),
        ("9--17", "Adult", "a minor age band contradicts majorityStatus Adult"),
        ("48+", "Minor", "an adult age band contradicts majorityStatus Minor"),
    ],
)
def test_age_and_majority_status_must_agree(age: str, status: str, reason: str) -> None:
    assert _errors(_frame(ageBroad=[age], majorityStatus=[status])) == [
        (1, "majorityStatus", "contradiction", reason)
    ]


def test_case_pseudonym_is_required_and_unique() -> None:
    frame = _frame(gender=["Female"] * 4, caseNo=[_case(10), "", _case(10), _case(11)])
    assert _errors(frame) == [
        (1, "caseNo", "duplicate", "occurs in more than one row of this upload"),
        (2, "caseNo", "missing", "a value is required"),
        (3, "caseNo", "duplicate", "occurs in more than one row of this upload"),
    ]


def test_case_pseudonym_compares_after_stripping() -> None:
    frame = _frame(gender=["Female"] * 2, caseNo=[_case(10), f" {_case(10)} "])
    assert [error[3] for error in _errors(frame)] == [
        "occurs in more than one row of this upload"
    ] * 2


@pytest.mark.parametrize(
    ("case", "value_class", "what"),
    [
        ("maria@example.org", "email-like", "an e-mail address"),
        ("+254 712 345 678", "phone-like", "a phone"),
        ("1990-04-12", "date", "a date"),
    ],
)
def test_identifier_in_case_pseudonym_is_rejected(case: str, value_class: str, what: str) -> None:
    result = validate_records(_frame(gender=["Female"], caseNo=[case]))
    [error] = result.report.errors
    assert (error.field, error.value_class) == ("caseNo", value_class)
    assert error.reason.startswith(f"looks like {what}, not a case pseudonym")
    assert [finding.column for finding in result.report.identifier_findings] == ["caseNo"]
    assert not result.report.ok


def test_long_case_pseudonym_is_rejected() -> None:
    [(_, field, _, reason)] = _errors(_frame(gender=["Male"], caseNo=["x" * 129]))
    assert (field, reason) == ("caseNo", "longer than 128 characters")


def test_errors_never_echo_a_value() -> None:
    secrets = ["Maria Lopez", "maria.lopez@example.org", "+63 917 555 0199", "1990-04-12", "P77"]
    frame = _frame(
        gender=secrets,
        citizenship=secrets,
        yearOfRegistration=secrets,
        isAbduction=secrets,
        ageBroad=secrets,
        caseNo=secrets,
    )
    report = validate_records(frame).report
    assert report.rows_rejected == 5
    text = json.dumps(report.as_dict())
    for secret in [*secrets, "Maria", "Lopez", "0199", "1990"]:
        assert secret not in text


def test_error_classes(schema: RecordSchema) -> None:
    values = ["a@b.org", "2020-01-02", "+44 20 7946 0000", "7", "7.5", "Femal", "two words"]
    result = validate_records(_frame(isAbduction=values))
    classes = [error.value_class for error in result.report.errors]
    assert classes == [
        "email-like",
        "date",
        "phone-like",
        "integer",
        "decimal",
        "alphabetic",
        "text",
    ]


def test_errors_are_capped_and_counted() -> None:
    rows = ERROR_LIMIT + 500
    frame = _frame(gender=["bad"] * rows, isAbduction=["bad"] * rows)
    report = validate_records(frame).report
    assert report.rows_rejected == rows
    assert len(report.errors) == ERROR_LIMIT
    assert report.errors_not_listed == 2 * rows - ERROR_LIMIT
    assert report.error_count == 2 * rows
    # by row, then schema order: gender comes before isAbduction
    assert [(e.row, e.field) for e in report.errors[:3]] == [
        (1, "gender"),
        (1, "isAbduction"),
        (2, "gender"),
    ]
    assert report.as_dict()["errors_not_listed"] == 2 * rows - ERROR_LIMIT


def test_every_bad_cell_is_tallied_by_field_and_reason() -> None:
    # Far more bad cells than the report lists, of several reasons, one field with a distinct
    # bad value per row: the tally counts every one, and agrees with a count made here.
    rows = 3 * ERROR_LIMIT
    number = pd.Series(range(rows))
    gender = np.where(number % 2 == 0, "Femme", "Female")
    age = np.where(number % 3 == 0, "old", np.where(number % 7 == 0, "200", "30"))
    flag = np.where(number % 4 == 0, "maybe", "yes")
    cases = [f"case {n}" if n % 5 == 0 else _case(n) for n in range(rows)]
    frame = _frame(
        caseNo=cases, gender=gender.tolist(), ageBroad=age.tolist(), isAbduction=flag.tolist()
    )
    report = validate_records(frame).report
    expected = {
        "gender": int((gender == "Femme").sum()),
        "ageBroad/band": int((age == "old").sum()),
        "ageBroad/exact": int((age == "200").sum()),
        "isAbduction": int((flag == "maybe").sum()),
        "caseNo": sum(1 for case in cases if case.startswith("case ")),
    }
    found: dict[str, int] = {}
    for tally in report.error_tally:
        key = tally.field
        if tally.field == "ageBroad":
            key += "/exact" if "exact age must be" in tally.reason else "/band"
        assert key not in found, tally
        found[key] = tally.cells
    assert found == expected
    assert report.error_count == sum(expected.values()) > 2 * ERROR_LIMIT
    assert len(report.errors) == ERROR_LIMIT
    assert [t.cells for t in report.error_tally] == sorted(found.values(), reverse=True)
    document = json.loads(json.dumps(report.as_dict()))
    assert sum(item["cells"] for item in document["error_tally"]) == report.error_count
    assert "Femme" not in json.dumps(document) and "maybe" not in json.dumps(document)


def test_a_tally_that_misses_cells_is_refused() -> None:
    error = RowError(row=1, field="gender", value_class="alphabetic", reason="not a code")
    with pytest.raises(ValueError, match="the tally counts 0 bad cells, not 1"):
        ValidationReport(1, 0, 1, [error], [], [])
    tally = [ErrorTally(field="gender", reason="not a code", cells=3)]
    report = ValidationReport(1, 0, 1, [error], [], [], errors_not_listed=2, error_tally=tally)
    assert report.error_count == 3


def test_unknown_and_missing_columns(schema: RecordSchema) -> None:
    frame = _frame(gender=["Female"], favouriteColour=["blue"])
    report = validate_records(frame).report
    assert report.unknown_columns == ["column 2"]  # a header that names no field may be a value
    assert set(report.missing_columns) == set(schema.names) - {"gender", "caseNo"}
    assert report.rows_accepted == 1 and not report.ok


def test_identifier_columns_are_named_before_anything_else() -> None:
    frame = _frame(gender=["Female"], prs_FirstName=["Ana"], prs_Email=["ana@example.org"])
    report = validate_records(frame).report
    assert report.unknown_columns == ["column 2", "column 3"]
    assert [(f.column, f.label, f.kind) for f in report.identifier_findings] == [
        ("prs_FirstName", "column 2", "name"),
        ("prs_Email", "column 3", "email"),
    ]
    assert [f["column"] for f in report.as_dict()["identifier_findings"]] == [
        "column 2",
        "column 3",
    ]
    assert not report.ok


def test_column_names_are_stripped() -> None:
    frame = _frame(**{" gender ": ["female"]})
    result = validate_records(frame)
    assert result.report.unknown_columns == []
    assert result.records["gender"].tolist() == ["Female"]


def test_records_are_typed_in_schema_order(schema: RecordSchema) -> None:
    result = validate_records(_frame(gender=["Female", "bad", "Male"]))
    records = result.records
    assert list(records.columns) == list(schema.names)
    expected = {"string": "string", "integer": "Int64", "boolean": "boolean"}
    for spec in schema.fields:
        assert str(records[spec.name].dtype) == expected[spec.type], spec.name
    assert isinstance(result.accepted_mask, np.ndarray)
    assert result.accepted_mask.dtype == np.bool_
    assert result.accepted_mask.tolist() == [True, False, True]
    assert records["gender"].tolist() == ["Female", "Male"]
    assert list(records.index) == [0, 1]


def test_report_invariant_is_enforced() -> None:
    with pytest.raises(ValueError, match="inconsistent report"):
        ValidationReport(
            rows_total=3,
            rows_accepted=1,
            rows_rejected=1,
            errors=[],
            unknown_columns=[],
            missing_columns=[],
        )


def test_report_as_dict_is_json_ready() -> None:
    result = validate_records(_frame(gender=["x"]))
    document = json.loads(json.dumps(result.report.as_dict()))
    assert document["rows_total"] == 1 and document["rows_rejected"] == 1
    assert document["errors"] == [
        RowError(1, "gender", "code-not-in-domain", document["errors"][0]["reason"]).as_dict()
    ]
    assert document["schema_version"] == load_schema().version


def test_empty_upload() -> None:
    result = validate_records(pd.DataFrame({"caseNo": pd.Series([], dtype="string")}))
    assert (result.report.rows_total, result.report.rows_accepted) == (0, 0)
    assert len(result.records) == 0 and result.report.ok


def test_parquet_round_trip_keeps_types_and_missing_values() -> None:
    frame = _frame(
        gender=["Female", "", "Male"],
        yearOfRegistration=["2019", "", "2002"],
        isAbduction=["1", "0", ""],
        citizenship=["NA", "nam", ""],
    )
    records = validate_records(frame).records
    buffer = io.BytesIO()
    records.to_parquet(buffer)
    back = pd.read_parquet(io.BytesIO(buffer.getvalue()))
    pd.testing.assert_frame_equal(back, records, check_exact=True)


def test_sample_of_ctdc_validates_and_formats_back(ctdc_sample: pd.DataFrame) -> None:
    result = validate_records(ctdc_sample)
    assert result.report.ok, result.report.as_dict()
    pd.testing.assert_frame_equal(format_records(result.records), ctdc_sample, check_dtype=False)


def test_raw_case_ids_are_refused_with_the_rule_named(ctdc_sample_raw: pd.DataFrame) -> None:
    # CTDC's own case numbers, a name and a passport-shaped number: none is a pseudonym (issue 10
    # item 5), and each row is refused naming the column and the rule, never the value
    frame = ctdc_sample_raw.head(3).copy()
    frame["caseNo"] = pd.array(["17", "Maria Lopez", "P1234567A"], dtype="string")
    report = validate_records(frame).report
    assert report.rows_rejected == 3
    assert {(e.field, e.reason.split(":")[0]) for e in report.errors} == {
        ("caseNo", "not a case pseudonym")
    }
    assert "64 lowercase hexadecimal digits" in report.errors[0].reason
    assert [(f.label, f.kind) for f in report.identifier_findings] == [
        ("caseNo", "identity-document")
    ]
    text = json.dumps(report.as_dict())
    assert "Maria" not in text and "P1234567A" not in text


@pytest.mark.slow
def test_whole_ctdc_file_validates_round_trips_and_is_idempotent(
    ctdc_whole_pseudonymised: pd.DataFrame,
) -> None:
    ctdc_whole = ctdc_whole_pseudonymised
    result = validate_records(ctdc_whole)
    report = result.report
    assert (report.rows_total, report.rows_accepted, report.rows_rejected) == (97_750, 97_750, 0)
    assert report.errors == [] and report.unknown_columns == [] and report.missing_columns == []
    assert report.identifier_findings == [] and report.ok
    buffer = io.BytesIO()
    result.records.to_parquet(buffer)
    back = pd.read_parquet(io.BytesIO(buffer.getvalue()))
    pd.testing.assert_frame_equal(back, result.records, check_exact=True)
    written = format_records(result.records)
    pd.testing.assert_frame_equal(written, ctdc_whole, check_dtype=False)
    pd.testing.assert_frame_equal(validate_records(written).records, result.records)


# ---- properties -------------------------------------------------------------------------

SCHEMA = load_schema()
CODED = [spec for spec in SCHEMA.fields if spec.codes is not None]
MISSING = st.sampled_from(["", "NULL", "null", "-99", " "])
JUNK = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


def _respell(text: str, draw: st.DrawFn) -> str:
    casing = draw(st.sampled_from([str.lower, str.upper, str.title, lambda s: s]))
    pad = draw(st.sampled_from(["", " ", "  ", "\t"]))
    return f"{pad}{casing(text)}{pad}"


@st.composite
def cells(draw: st.DrawFn, name: str) -> str:
    """A cell for field ``name``: good (respelled), missing, or junk."""
    spec = SCHEMA.field(name)
    kind = draw(st.sampled_from(["good", "missing", "junk"]))
    if kind == "missing":
        return draw(MISSING)
    if kind == "junk":
        return draw(JUNK)
    if spec.codes is not None:
        options = list(spec.codes) + [alias for alias, _ in spec.aliases]
        if spec.band_bounds is not None:
            options += [str(age) for age in range(0, 121)]
        return _respell(draw(st.sampled_from(options)), draw)
    if spec.type == "boolean":
        return _respell(draw(st.sampled_from(["1", "0", "true", "false", "yes", "no"])), draw)
    if spec.type == "integer":
        return str(draw(st.integers(1990, CURRENT_YEAR + 2)))
    return draw(st.from_regex(r"[0-9a-f]{8,64}", fullmatch=True))


FIELDS = [
    "ageBroad",
    "majorityStatus",
    "citizenship",
    "gender",
    "yearOfRegistration",
    "isAbduction",
    "Datasource",
    "caseNo",
]


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    rows = draw(st.integers(0, 12))
    chosen = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=5, unique=True))
    columns = {name: [draw(cells(name)) for _ in range(rows)] for name in chosen}
    return pd.DataFrame(columns, dtype="string", index=pd.RangeIndex(rows))


@settings(max_examples=60, deadline=None)
@given(frames())
def test_property_report_adds_up(frame: pd.DataFrame) -> None:
    result = validate_records(frame, SCHEMA)
    report = result.report
    assert report.rows_total == len(frame) == report.rows_accepted + report.rows_rejected
    assert int(result.accepted_mask.sum()) == report.rows_accepted == len(result.records)
    assert report.error_count >= report.rows_rejected
    assert {error.row for error in report.errors} <= set(np.flatnonzero(~result.accepted_mask) + 1)


@settings(max_examples=60, deadline=None)
@given(frames())
def test_property_accepted_values_lie_in_their_domain(frame: pd.DataFrame) -> None:
    records = validate_records(frame, SCHEMA).records
    for spec in SCHEMA.fields:
        present = records[spec.name].dropna()
        if spec.codes is not None:
            assert set(present) <= set(spec.codes), spec.name
        elif spec.type == "integer":
            assert present.between(spec.minimum, spec.maximum).all()
        elif spec.type == "boolean":
            assert set(present) <= {True, False}
        else:
            assert (present == present.str.strip()).all() and (present != "").all()


@settings(max_examples=60, deadline=None)
@given(frames())
def test_property_normalisation_is_idempotent(frame: pd.DataFrame) -> None:
    records = validate_records(frame, SCHEMA).records
    written = format_records(records, SCHEMA)
    # an absent column means all missing, so dropping the empty ones changes nothing but time
    written = written[[name for name in written.columns if (written[name] != "").any()]]
    again = validate_records(written, SCHEMA)
    assert again.report.rows_rejected == 0
    pd.testing.assert_frame_equal(again.records, records)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([spec.name for spec in CODED]), st.data())
def test_property_any_spelling_of_a_code_normalises_to_that_code(
    name: str, data: st.DataObject
) -> None:
    spec = SCHEMA.field(name)
    assert spec.codes is not None
    code = data.draw(st.sampled_from(spec.codes))
    spelled = _respell(code, data.draw)
    assert _one(name, [spelled])[name].tolist() == [code]
