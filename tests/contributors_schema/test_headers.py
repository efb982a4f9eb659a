"""Headers match the schema by its declared spellings (issue 12 item 1)."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest

from contributors.headers import match_headers, rename_columns
from contributors.schema import SCHEMA_PATH, RecordSchema, SchemaError, fold_header, parse_schema


def test_the_spellings_partners_wrote_name_their_fields(schema: RecordSchema) -> None:
    # the three headers the toolkit dropped as "not in the hub schema" (issue 12 item 1)
    mapping = match_headers(
        ["Country of Exploitation", "Gender", "year of registration", "  Age band  "], schema
    )
    assert [(m.field, m.spelling) for m in mapping.matches] == [
        ("CountryOfExploitation", "name"),
        ("gender", "name"),
        ("yearOfRegistration", "name"),
        ("ageBroad", "title"),
    ]
    assert [m.position for m in mapping.renamed] == [1, 2, 3, 4]
    assert not mapping.unmatched and not mapping.duplicates
    assert "caseNo" in mapping.missing_fields and "gender" not in mapping.missing_fields


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("case_no", "caseNo"),
        ("CASENO", "caseNo"),
        ("Case ID", "caseNo"),
        ("data-source", "Datasource"),
        ("datasource", "Datasource"),  # CTDC codebook v6
        ("CountryofExploitation", "CountryOfExploitation"),  # CTDC codebook v6
        ("CountryOfExploition", "CountryOfExploitation"),  # CTDC codebook v7's label
        ("yearRegister", "yearOfRegistration"),  # CTDC's 2022 synthetic dataset
        ("meansDrugsAlcohol", "meansOfControlPsychoactiveSubstances"),  # CTDC 2024 synthetic
        ("Means of control: debt bondage", "meansOfControlDebtBondage"),  # the schema's title
        ("recruiter_relation_intimate_partner", "recruiterRelationIntimatePartner"),
        ("Nationality", "citizenship"),
        ("Age", "ageBroad"),  # an exact age is turned into its band
        ("\uff27ender", "gender"),  # a full-width letter, NFKC-normalised
    ],
)
def test_declared_spellings(schema: RecordSchema, header: str, field: str) -> None:
    (match,) = match_headers([header], schema).matches
    assert match.field == field
    assert match.label == field
    assert match.as_dict()["header"] == header.strip()


@pytest.mark.parametrize(
    "header", ["Maria Lopez", "+44 20 7946 0000", "nom", "notes", "gender2", "", None]
)
def test_a_header_naming_no_field_is_referred_to_by_position(
    schema: RecordSchema, header: str | None
) -> None:
    mapping = match_headers(["caseNo", header], schema)
    match = mapping.matches[1]
    assert (match.field, match.label) == (None, "column 2")
    assert match.as_dict()["header"] is None
    assert mapping.unmatched == (match,)


def test_a_second_column_for_a_field_is_a_duplicate_not_a_replacement(
    schema: RecordSchema,
) -> None:
    mapping = match_headers(["Gender", "caseNo", "gender"], schema)
    assert mapping.fields["gender"] == 1
    (duplicate,) = mapping.duplicates
    assert (duplicate.position, duplicate.duplicate_of) == (3, 1)
    assert duplicate.label == "column 3 (a second gender)"


def test_rename_columns_gives_field_names_and_keeps_the_rest(schema: RecordSchema) -> None:
    frame = pd.DataFrame([["a", "b", "c", "d"]], columns=["Gender", "Notes", "gender", "Age band"])
    renamed = rename_columns(frame, match_headers(frame.columns, schema))
    assert list(renamed.columns) == ["gender", "Notes", "gender", "ageBroad"]
    assert list(frame.columns) == ["Gender", "Notes", "gender", "Age band"]  # input untouched
    with pytest.raises(ValueError, match="the mapping has 1 columns and the frame 4"):
        rename_columns(frame, match_headers(["x"], schema))


def test_every_field_is_named_by_its_name_and_title(schema: RecordSchema) -> None:
    for spec in schema.fields:
        for spelling in (spec.name, spec.title, spec.name.upper(), f" {spec.title.lower()} "):
            assert match_headers([spelling], schema).matches[0].field == spec.name


def test_two_fields_may_not_share_a_spelling() -> None:
    document = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    clash = copy.deepcopy(document)
    clash["fields"][3]["ctdhub:headerAliases"] = ["Age band"]  # gender claims ageBroad's title
    with pytest.raises(
        SchemaError, match="ageBroad: the header spelling 'Age band' also names gender"
    ):
        parse_schema(clash)


def test_fold_header_ignores_case_spaces_and_punctuation() -> None:
    assert fold_header(" Year_of-Registration ") == fold_header("yearOfRegistration")
    assert fold_header("Año") == "año"  # letters of any script are kept
