"""The HTCDS mapping: every field accounted for, no identifier through, valid hub codes out."""

from __future__ import annotations

import pandas as pd
import pytest

from contributors.htcds import (
    CASE_ID_FIELD,
    EXPLOITATION_CODES,
    FIELD_RULES,
    GENDER_CODES,
    LABOUR_INDUSTRY_CODES,
    MEANS_OF_CONTROL_CODES,
    RECRUITER_RELATION_CODES,
    REGISTRATION_DATE_FIELD,
    SEX_EXPLOITATION_CODES,
    Disposition,
    HtcdsMappingError,
    map_htcds,
)
from contributors.identifiers import screen_identifiers
from contributors.normalise import validate_records
from contributors.pseudonym import is_pseudonym, pseudonymise
from contributors.schema import load_schema

from .htcds_export import CANARY, fake_export, field_standard, picklist_codes

KEY = b"partner-secret-key-of-32-bytes!!"
CODE_TABLES = {
    "prs_Gender": GENDER_CODES,
    "vic_MethodsOfControl": MEANS_OF_CONTROL_CODES,
    "vic_TypeOfExploitation": EXPLOITATION_CODES,
    "vic_ForcedLabourIndustry": LABOUR_INDUSTRY_CODES,
    "vic_TypeOfSexExploitation": SEX_EXPLOITATION_CODES,
    "vic_RelationshipToTrafficker": RECRUITER_RELATION_CODES,
}


def _one_case(**cells: str) -> pd.DataFrame:
    base = {CASE_ID_FIELD: "C-1", REGISTRATION_DATE_FIELD: "2019-06-15"}
    base.update(cells)
    return pd.DataFrame({k: [v] for k, v in base.items()}, dtype="string")


def test_every_htcds_field_has_a_rule() -> None:
    standard = set(field_standard()["Field Name including Prefix"])
    assert len(standard) == 87  # 83 fields of v2.0 plus the 4 consent fields v1.0 alone has
    assert set(FIELD_RULES) == standard | {CASE_ID_FIELD, REGISTRATION_DATE_FIELD}


def test_every_target_is_a_hub_field_and_every_mapped_field_has_one() -> None:
    schema = load_schema()
    for name, rule in FIELD_RULES.items():
        assert set(rule.targets) <= set(schema.names), name
        if rule.disposition is Disposition.MAPPED:
            assert rule.targets, name
    for table in (MEANS_OF_CONTROL_CODES, EXPLOITATION_CODES, LABOUR_INDUSTRY_CODES):
        assert {t for targets in table.values() for t in targets} <= set(schema.names)
    assert set(GENDER_CODES.values()) - {""} <= set(schema.domain("gender") or ())


@pytest.mark.parametrize("field", sorted(CODE_TABLES))
def test_every_code_of_the_standard_is_translated(field: str) -> None:
    standard = field_standard().set_index("Field Name including Prefix")
    codes = picklist_codes(str(standard.loc[field, "Value Names (if picklist)"]))
    assert codes
    assert set(codes) == set(CODE_TABLES[field])


def test_fake_export_maps_drops_and_validates() -> None:
    export = fake_export(rows=400, seed=11)
    mapping = map_htcds(export, pseudonym_key=KEY)
    for name in export.columns:
        rule = FIELD_RULES[name]
        named = {
            Disposition.MAPPED: mapping.mapped,
            Disposition.IDENTIFIER: mapping.identifiers_dropped,
            Disposition.NOT_IN_SCHEMA: mapping.not_in_schema_dropped,
        }[rule.disposition]
        assert name in named
    assert mapping.unknown_dropped == []
    # The names, phones, addresses and notes of the standard are all dropped as identifiers.
    for name in (
        "prs_FirstName",
        "prs_Birthdate",
        "prs_MobilePhone",
        "prs_IdentityNumber",
        "prs_MailingStreet",
        "hte_Street",
        "cco_CaseComment",
        "cas_CaseOwner",
    ):
        assert name in mapping.identifiers_dropped

    records = mapping.records
    assert list(records.columns) == list(load_schema().names)
    cells = records.to_numpy(dtype=str).ravel().tolist()
    assert not any(CANARY in cell for cell in cells)
    dates = (
        set(export["prs_Birthdate"]) | set(export["hte_Date"]) | set(export["spl_ActualEndDate"])
    )
    assert not dates & set(cells)
    assert all(is_pseudonym(p) for p in records["caseNo"])
    assert screen_identifiers(records) == []

    result = validate_records(records)
    assert result.report.rows_rejected == 0, result.report.as_dict()["errors"][:3]
    assert result.report.ok
    # Bands derived from real birth dates cover the age range the export drew from.
    assert set(records["ageBroad"]) == set(load_schema().domain("ageBroad") or ())


def test_translations_of_one_case() -> None:
    export = _one_case(
        prs_Birthdate="2001-06-16",  # 17 on the day before the 18th birthday
        prs_Gender="TransgenderFeminine",
        prs_Citizenship="ven;COL",
        hte_Country="usa",
        hte_Type="Exploitation",
        vic_MethodsOfControl="ThreatensChildrenFamily;DebtBondage ",
        vic_TypeOfExploitation="ForcedBegging;SexualExploitation",
        vic_ForcedLabourIndustry="",
        vic_TypeOfSexExploitation="RemoteInteractiveServices",
        vic_RelationshipToTrafficker="Acquainted",
    )
    mapping = map_htcds(export, pseudonym_key=KEY)
    record = mapping.records.iloc[0]
    assert record["caseNo"] == pseudonymise("C-1", KEY)
    assert (record["yearOfRegistration"], record["ageBroad"], record["majorityStatus"]) == (
        "2019",
        "9--17",
        "Minor",
    )
    assert (record["gender"], record["citizenship"], record["CountryOfExploitation"]) == (
        "Transgender/NonConforming",
        "VE",
        "US",
    )
    assert record["Datasource"] == "Case Management"
    assert record["meansOfControlThreats"] == record["meansOfControlDebtBondage"] == "1"
    assert record["meansOfControlSexualAbuse"] == record["meansOfControlNotSpecified"] == "0"
    # HTCDS cannot express these, so they stay "not recorded", not "no".
    assert record["meansOfControlRestrictsMovement"] == record["meansOfControlUsesChildren"] == ""
    assert record["isForcedLabour"] == record["typeOfLabourBegging"] == "1"
    assert record["isSexualExploit"] == record["isSexAndLabour"] == "1"
    assert record["isForcedMarriage"] == "0"
    assert record["typeOfSexRemoteInteractiveServices"] == "1"
    assert record["typeOfSexProstitution"] == "0"
    assert record["recruiterRelationFriend"] == "1" and record["recruiterRelationUnknown"] == "0"
    assert mapping.notes == {"citizenship: several given, first kept": 1}
    assert validate_records(mapping.records).report.rows_accepted == 1


def test_age_band_turns_on_the_birthday() -> None:
    export = pd.concat(
        [_one_case(prs_Birthdate="2001-06-15"), _one_case(prs_Birthdate="2001-06-16")],
        ignore_index=True,
    )
    export[CASE_ID_FIELD] = pd.array(["a", "b"], dtype="string")
    records = map_htcds(export, pseudonym_key=KEY).records
    assert records["ageBroad"].tolist() == ["18--20", "9--17"]
    assert records["majorityStatus"].tolist() == ["Adult", "Minor"]


def test_empty_picklists_are_not_specified_and_country_needs_an_exploitation_event() -> None:
    mapping = map_htcds(_one_case(hte_Country="TH", hte_Type="Transit"), pseudonym_key=KEY)
    record = mapping.records.iloc[0]
    assert record["CountryOfExploitation"] == ""
    assert record["meansOfControlNotSpecified"] == record["recruiterRelationUnknown"] == "1"
    assert record["isForcedLabour"] == "" and record["typeOfLabourNotSpecified"] == ""


def test_forced_labour_without_industry_is_type_not_specified() -> None:
    record = map_htcds(
        _one_case(vic_TypeOfExploitation="ForcedLabour", vic_ForcedLabourIndustry=""),
        pseudonym_key=KEY,
    ).records.iloc[0]
    assert record["typeOfLabourNotSpecified"] == "1"
    record = map_htcds(
        _one_case(vic_TypeOfExploitation="ForcedLabour", vic_ForcedLabourIndustry="F_Construction"),
        pseudonym_key=KEY,
    ).records.iloc[0]
    assert (record["typeOfLabourConstruction"], record["typeOfLabourNotSpecified"]) == ("1", "0")


def test_untranslatable_values_are_all_listed_by_row_and_field() -> None:
    export = pd.concat(
        [
            _one_case(prs_Gender="Feminine"),
            _one_case(prs_Gender="F", vic_MethodsOfControl="DebtBondage;Blackmail"),
            _one_case(prs_Birthdate="12/03/1999", prs_Citizenship="Colombia"),
        ],
        ignore_index=True,
    )
    export[CASE_ID_FIELD] = pd.array(["a", "b", "c"], dtype="string")
    with pytest.raises(HtcdsMappingError) as caught:
        map_htcds(export, pseudonym_key=KEY)
    found = {(p.row, p.field) for p in caught.value.problems}
    assert found == {
        (2, "prs_Gender"),
        (2, "vic_MethodsOfControl"),
        (3, "prs_Birthdate"),
        (3, "prs_Citizenship"),
    }
    message = str(caught.value)
    assert "row 2, field prs_Gender" in message
    # The message names rows and fields, never the offending values.
    assert "Blackmail" not in message and "Colombia" not in message


def test_impossible_age_is_refused() -> None:
    with pytest.raises(HtcdsMappingError, match="row 1, field prs_Birthdate: gives an age of -1"):
        map_htcds(_one_case(prs_Birthdate="2020-01-01"), pseudonym_key=KEY)


def test_export_without_case_numbers_is_refused() -> None:
    export = _one_case().drop(columns=[CASE_ID_FIELD])
    with pytest.raises(HtcdsMappingError, match="no cas_CaseNumber column"):
        map_htcds(export, pseudonym_key=KEY)


def test_columns_outside_htcds_are_dropped_and_reported() -> None:
    export = _one_case(Passport_No="P1234567", prs_FirstName="Ana")
    mapping = map_htcds(export, pseudonym_key=KEY)
    assert mapping.unknown_dropped == ["Passport_No"]
    assert mapping.identifiers_dropped == ["prs_FirstName"]
    assert mapping.as_dict()["unknown_dropped"] == ["Passport_No"]
    assert "P1234567" not in mapping.records.to_numpy(dtype=str).ravel().tolist()
