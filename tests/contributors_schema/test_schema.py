"""The record schema document, its loader, and the country list it references."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest

from contributors.schema import (
    COUNTRIES_PATH,
    SCHEMA_PATH,
    RecordSchema,
    SchemaError,
    load_countries,
    load_schema,
    parse_schema,
)

from .conftest import CTDC_PATH

CTDC_QUASI_IDENTIFIERS = {
    "gender",
    "ageBroad",
    "citizenship",
    "CountryOfExploitation",
    "yearOfRegistration",
}
AGE_BANDS = ("0--8", "9--17", "18--20", "21--23", "24--26", "27--29", "30--38", "39--47", "48+")
M49_REGIONS = {
    "Africa": {"Northern Africa", "Sub-Saharan Africa"},
    "Americas": {"Latin America and the Caribbean", "Northern America"},
    "Asia": {"Central Asia", "Eastern Asia", "South-eastern Asia", "Southern Asia", "Western Asia"},
    "Europe": {"Eastern Europe", "Northern Europe", "Southern Europe", "Western Europe"},
    "Oceania": {"Australia and New Zealand", "Melanesia", "Micronesia", "Polynesia"},
    "Antarctica": {"Antarctica"},
}
# Keys a Frictionless Table Schema field may carry here; ctdhub's own keys are prefixed.
TABLE_SCHEMA_FIELD_KEYS = {
    "name",
    "type",
    "title",
    "description",
    "constraints",
    "trueValues",
    "falseValues",
    "bareNumber",
}


def test_countries_file_has_every_iso_country_with_its_m49_region() -> None:
    countries = load_countries()
    assert list(countries.columns) == ["alpha2", "alpha3", "numeric", "name", "subregion", "region"]
    assert all(str(dtype) == "string" for dtype in countries.dtypes)
    # 249 ISO 3166-1 entries plus Kosovo's user-assigned XK
    assert len(countries) == 250
    assert countries["alpha2"].is_unique and countries["alpha3"].is_unique
    assert countries["alpha2"].str.fullmatch(r"[A-Z]{2}").all()
    assert countries["alpha3"].str.fullmatch(r"[A-Z]{3}").all()
    for region, subregion in zip(countries["region"], countries["subregion"], strict=True):
        assert subregion in M49_REGIONS[region], (region, subregion)


@pytest.mark.parametrize(
    ("alpha2", "alpha3", "subregion", "region"),
    [
        ("NA", "NAM", "Sub-Saharan Africa", "Africa"),
        ("XK", "XKX", "Southern Europe", "Europe"),
        ("SD", "SDN", "Northern Africa", "Africa"),
        ("MX", "MEX", "Latin America and the Caribbean", "Americas"),
        ("US", "USA", "Northern America", "Americas"),
        ("CY", "CYP", "Western Asia", "Asia"),
        ("TW", "TWN", "Eastern Asia", "Asia"),
    ],
)
def test_countries_file_rows(alpha2: str, alpha3: str, subregion: str, region: str) -> None:
    countries = load_countries().set_index("alpha2")
    assert countries.loc[alpha2, ["alpha3", "subregion", "region"]].tolist() == [
        alpha3,
        subregion,
        region,
    ]


def test_namibia_is_not_read_as_missing_from_the_raw_file() -> None:
    text = COUNTRIES_PATH.read_text(encoding="utf-8")
    assert "\nNA,NAM,516,Namibia,Sub-Saharan Africa,Africa\n" in text


def test_load_countries_returns_an_independent_copy() -> None:
    first = load_countries()
    first.loc[0, "name"] = "changed"
    assert load_countries().loc[0, "name"] != "changed"


@pytest.mark.slow
def test_every_ctdc_country_code_is_in_the_country_list() -> None:
    used = pd.read_csv(
        CTDC_PATH,
        dtype="string",
        keep_default_na=False,
        usecols=["citizenship", "CountryOfExploitation"],
    )
    codes = set(used["citizenship"]) | set(used["CountryOfExploitation"])
    codes.discard("")
    assert len(codes) > 50
    assert codes <= set(load_countries()["alpha2"])


def test_schema_covers_every_ctdc_column_in_order(
    schema: RecordSchema, ctdc_header: list[str]
) -> None:
    assert len(ctdc_header) == 54
    assert list(schema.names) == ctdc_header


def test_roles(schema: RecordSchema) -> None:
    # majorityStatus is a quasi-identifier too: it carries age where ageBroad is missing
    assert set(schema.quasi_identifiers) == CTDC_QUASI_IDENTIFIERS | {"majorityStatus"}
    assert schema.by_role("pseudonym") == ("caseNo",)
    assert schema.by_role("attribute") == ("Datasource",)
    assert len(schema.sensitive) == 46
    for name in schema.sensitive:
        spec = schema.field(name)
        assert spec.type == "boolean"
        assert name.startswith(
            ("meansOfControl", "is", "typeOfLabour", "typeOfSex", "recruiterRelation")
        )
    roles = [spec.role for spec in schema.fields]
    assert len(roles) == 54 == sum(roles.count(role) for role in set(roles))


def test_coded_domains(schema: RecordSchema) -> None:
    assert schema.domain("ageBroad") == AGE_BANDS
    assert schema.domain("gender") == ("Female", "Male", "Transgender/NonConforming")
    assert schema.domain("majorityStatus") == ("Adult", "Minor")
    assert schema.domain("Datasource") == ("Case Management", "Hotline")
    countries = tuple(load_countries()["alpha2"])
    assert schema.domain("citizenship") == countries
    assert schema.domain("CountryOfExploitation") == countries
    assert schema.domain("caseNo") is None
    assert schema.domain("isForcedLabour") is None


def test_year_of_registration_runs_from_2000_to_the_current_year(schema: RecordSchema) -> None:
    year = schema.field("yearOfRegistration")
    current = dt.datetime.now(dt.UTC).year
    assert (year.type, year.minimum, year.maximum) == ("integer", 2000, current)
    assert schema.domain("yearOfRegistration") == tuple(str(y) for y in range(2000, current + 1))


def test_age_bands_tile_the_ages(schema: RecordSchema) -> None:
    bands = schema.field("ageBroad").band_bounds
    assert bands is not None
    assert [band[0] for band in bands] == list(AGE_BANDS)
    assert bands[0][1] == 0 and bands[-1][2] is None
    for (_, _, high), (_, low, _) in zip(bands, bands[1:], strict=False):
        assert high is not None and high + 1 == low
    assert schema.field("majorityStatus").derived_from == ("ageBroad", 18, "Minor", "Adult")


def test_case_pseudonym_is_a_required_unique_string(schema: RecordSchema) -> None:
    case = schema.field("caseNo")
    assert (case.type, case.required, case.unique, case.max_length) == ("string", True, True, 128)


def test_document_reads_as_a_table_schema_and_data_dictionary(schema: RecordSchema) -> None:
    document = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert document == schema.as_dict()
    assert document["missingValues"] == ["", "NULL", "-99", "N/A", "NaN", "None", "."]
    assert "NA" not in document["missingValues"]  # Namibia
    assert document["primaryKey"] == ["caseNo"]
    for field in document["fields"]:
        plain = {key for key in field if not key.startswith("ctdhub:")}
        assert plain <= TABLE_SCHEMA_FIELD_KEYS, field["name"]
        assert field["type"] in {"string", "integer", "boolean"}
        assert len(field["title"]) >= 5 and len(field["description"]) >= 40, field["name"]
        assert field["ctdhub:role"] in {"quasi_identifier", "sensitive", "attribute", "pseudonym"}
        if field["type"] == "boolean":
            assert (field["trueValues"], field["falseValues"]) == (["1"], ["0"])
    titles = [field["title"] for field in document["fields"]]
    assert len(set(titles)) == len(titles)


def test_as_dict_is_a_fresh_copy(schema: RecordSchema) -> None:
    document = schema.as_dict()
    document["fields"].clear()
    assert len(schema.as_dict()["fields"]) == 54


def test_load_schema_is_cached() -> None:
    assert load_schema() is load_schema(SCHEMA_PATH)


def test_unknown_field_gives_a_clear_key_error(schema: RecordSchema) -> None:
    with pytest.raises(KeyError, match="no field named 'firstName'"):
        schema.field("firstName")
    with pytest.raises(ValueError, match="unknown field role 'secret'"):
        schema.by_role("secret")
    assert "gender" in schema and "firstName" not in schema


def _minimal_document() -> dict[str, object]:
    return {
        "ctdhub:version": "0.0.1",
        "missingValues": [""],
        "fields": [
            {
                "name": "caseNo",
                "type": "string",
                "title": "Case",
                "description": "A case.",
                "ctdhub:role": "pseudonym",
                "ctdhub:group": "case",
            },
            {
                "name": "age",
                "type": "string",
                "title": "Age",
                "description": "An age band.",
                "ctdhub:role": "quasi_identifier",
                "ctdhub:group": "person",
                "constraints": {"enum": ["0--17", "18+"]},
                "ctdhub:bandBounds": {"0--17": [0, 17], "18+": [18, None]},
            },
        ],
    }


def test_parse_schema_accepts_a_minimal_document() -> None:
    parsed = parse_schema(_minimal_document())
    assert parsed.names == ("caseNo", "age")
    assert parsed.field("age").band_bounds == (("0--17", 0, 17), ("18+", 18, None))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("fields", 0, "ctdhub:role"), "secret", "ctdhub:role must be one of"),
        (("fields", 0, "type"), "date", "type must be one of"),
        (("fields", 1, "name"), "caseNo", "duplicate field names: caseNo"),
        (("fields", 1, "ctdhub:bandBounds", "18+"), [19, None], "leave a gap or overlap"),
        (("fields", 1, "constraints", "enum"), [], "non-empty list of strings"),
        (("fields", 0, "title"), "", "needs a title"),
        (("fields", 1, "constraints", "minimum"), True, "minimum must be an integer"),
        (("ctdhub:version",), "", "needs a ctdhub:version"),
    ],
)
def test_parse_schema_names_the_problem(
    path: tuple[object, ...], value: object, message: str
) -> None:
    document = _minimal_document()
    target: object = document
    for key in path[:-1]:
        target = target[key]  # type: ignore[index]
    target[path[-1]] = value  # type: ignore[index]
    with pytest.raises(SchemaError, match=message):
        parse_schema(document)


def test_derived_field_must_not_straddle_the_threshold() -> None:
    document = _minimal_document()
    fields = document["fields"]
    assert isinstance(fields, list)
    fields.append(
        {
            "name": "majority",
            "type": "string",
            "title": "Majority",
            "description": "Minor or adult.",
            "ctdhub:role": "quasi_identifier",
            "ctdhub:group": "person",
            "constraints": {"enum": ["Minor", "Adult"]},
            "ctdhub:derivedFrom": {
                "field": "age",
                "thresholdAge": 16,
                "below": "Minor",
                "atOrAbove": "Adult",
            },
        }
    )
    with pytest.raises(SchemaError, match="straddles the threshold age 16"):
        parse_schema(document)


def test_load_schema_reports_a_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="cannot read the record schema"):
        load_schema(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(SchemaError, match="is not valid JSON"):
        load_schema(broken)


def test_country_field_needs_its_country_list(tmp_path: Path) -> None:
    # a schema copied without countries.csv must fail loudly, not lose the country domain
    copy = tmp_path / "record_schema.json"
    copy.write_text(SCHEMA_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(SchemaError, match="cannot read the country list"):
        load_schema(copy)
