"""The identifier screen: direct identifiers by column name and by value, never echoing data."""

from __future__ import annotations

import json
import random
import re

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contributors.identifiers import (
    PREFILTER,
    PSEUDONYM_PREFILTER,
    classify_value,
    identifier_kinds,
    missing_mask,
    name_kind,
    screen_identifiers,
)
from contributors.schema import RecordSchema

from .conftest import HTCDS_PATH

# HTCDS fields that hold a direct identifier of a person (or pin one down precisely), with the
# kind of identifier the screen must report for them.
HTCDS_DIRECT_IDENTIFIERS = {
    "prs_FirstName": "name",
    "prs_MiddleName": "name",
    "prs_SecondName": "name",
    "prs_Birthdate": "birth-date",
    "prs_IdentityNumber": "identity-document",
    "prs_Email": "email",
    "prs_HomePhone": "phone",
    "prs_MobilePhone": "phone",
    "prs_MailingStreet": "address",
    "prs_MailingPostalCode": "address",
    "prs_MailingCity": "address",
    "prs_MailingState": "address",
    "prs_MailingLongitude": "location",
    "prs_MailingLatitude": "location",
    "hte_Street": "address",
    "hte_PostalCode": "address",
    "hte_Longitude": "location",
    "hte_Latitude": "location",
    "hte_Description": "free-text",
    "cco_CaseComment": "free-text",
    "vic_DetailsOfVulnerabilities": "free-text",
    "per_RoleDetails": "free-text",
    "cas_IncomingReferralDetails": "free-text",
    "cas_OutgoingReferralDetails": "free-text",
}
# Value kinds the screen must find even when the column has a bland name.
DETECTABLE_BY_VALUE = {
    "prs_Birthdate": "date",
    "prs_IdentityNumber": "identity-document",
    "prs_Email": "email",
    "prs_HomePhone": "phone",
    "prs_MobilePhone": "phone",
    "prs_MailingStreet": "address",
    "hte_Street": "address",
    "hte_Description": "free-text",
    "cco_CaseComment": "free-text",
    "vic_DetailsOfVulnerabilities": "free-text",
}
FIRST_NAMES = ["Amina", "Jose", "Thi Lan", "Oksana", "Kwame", "Maria", "Rahim", "Grace"]
LAST_NAMES = ["Okafor", "Nguyen", "Petrenko", "Garcia", "Mensah", "Rahman", "Santos"]
STREETS = ["Rizal Street", "Main Road", "Rue de la Paix", "Jalan Merdeka", "Calle Mayor"]
SENTENCES = [
    "She was approached at the bus station by a man who promised restaurant work abroad",
    "Client reports that her passport was kept by the employer and wages were never paid",
    "Referred by the labour inspectorate after a raid on the farm where he had worked",
]


def _htcds_fields() -> pd.DataFrame:
    """The HTCDS v2.0 field list, each field with its section."""
    table = pd.read_csv(HTCDS_PATH, dtype="string", keep_default_na=False)
    section = table["Section"].str.replace(r"\s+", " ", regex=True).str.strip()
    table = table.assign(section=section.where(section != "").ffill())
    return table[table["Field Name including Prefix"] != ""].reset_index(drop=True)


def _fake_value(field: str, field_type: str, values: str, rng: random.Random) -> str:
    """A plausible fake value for an HTCDS field, made up here (no real person)."""
    if field in ("prs_FirstName", "prs_MiddleName"):
        return rng.choice(FIRST_NAMES)
    if field == "prs_SecondName":
        return rng.choice(LAST_NAMES)
    if field_type == "Date":
        return f"{rng.randint(1970, 2010)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if field == "prs_IdentityNumber":
        return f"{rng.choice('ABCPX')}{rng.randint(1_000_000, 9_999_999)}"
    if field == "prs_Email":
        return f"{rng.choice(FIRST_NAMES).split()[0].lower()}{rng.randint(1, 99)}@example.org"
    if field.endswith("Phone"):
        return f"+{rng.randint(20, 99)} {rng.randint(100, 999)} {rng.randint(100_000, 999_999)}"
    if field.endswith("Street"):
        return f"{rng.randint(1, 250)} {rng.choice(STREETS)}"
    if field.endswith("PostalCode"):
        return f"{rng.randint(10_000, 99_999)}"
    if field.endswith(("Longitude", "Latitude")):
        return f"{rng.uniform(-80, 80):.5f}"
    if field_type == "Long Text":
        return rng.choice(SENTENCES)
    if field_type == "Checkbox":
        return rng.choice(["true", "false"])
    if field_type == "Number":
        return str(rng.randint(0, 6))
    if "ISO 639" in values:
        return rng.choice(["eng", "fra", "tha", "swa"])
    if "ISO 3166" in values:
        return rng.choice(["KE", "UG;KE", "PH", "NA"])
    if "Picklist" in field_type and values:
        names = [value.strip() for value in re.split(r"[\n|]", values) if value.strip()]
        return rng.choice(names) if names else "x"
    return rng.choice(["Kampala", "Cebu", "Odesa", "Lagos", "NGO"])


@pytest.fixture(scope="module")
def htcds_frame() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A fake partner table with one column per HTCDS field, 40 rows, fixed seed."""
    fields = _htcds_fields()
    rng = random.Random(20_211_115)
    columns = {
        row["Field Name including Prefix"]: [
            _fake_value(
                row["Field Name including Prefix"],
                row["Field Type"],
                row["Value Names (if picklist)"],
                rng,
            )
            for _ in range(40)
        ]
        for _, row in fields.iterrows()
    }
    return pd.DataFrame(columns, dtype="string"), fields


def test_every_htcds_direct_identifier_is_flagged(
    htcds_frame: tuple[pd.DataFrame, pd.DataFrame], schema: RecordSchema
) -> None:
    frame, fields = htcds_frame
    assert set(HTCDS_DIRECT_IDENTIFIERS) <= set(frame.columns)
    findings = screen_identifiers(frame, schema)
    kinds: dict[str, set[str]] = {}
    for finding in findings:
        kinds.setdefault(finding.column, set()).add(finding.kind)
    for column, kind in HTCDS_DIRECT_IDENTIFIERS.items():
        assert kind in kinds.get(column, set()), (column, kinds.get(column))
    # every long free-text field is caught, by its name or by its values
    long_text = fields.loc[fields["Field Type"] == "Long Text", "Field Name including Prefix"]
    assert len(long_text) >= 8
    for column in long_text:
        assert column in kinds, column


def test_htcds_coded_fields_are_not_flagged(
    htcds_frame: tuple[pd.DataFrame, pd.DataFrame], schema: RecordSchema
) -> None:
    frame, fields = htcds_frame
    coded = fields[
        fields["Field Type"].isin(["Picklist", "Multiselect Picklist", "Checkbox", "Number"])
        & ~fields["Field Name including Prefix"].isin(list(HTCDS_DIRECT_IDENTIFIERS))
    ]["Field Name including Prefix"]
    assert len(coded) >= 25
    flagged = {finding.column for finding in screen_identifiers(frame[list(coded)], schema)}
    assert flagged == set()


def test_identifier_values_are_found_under_bland_column_names(
    htcds_frame: tuple[pd.DataFrame, pd.DataFrame], schema: RecordSchema
) -> None:
    frame, _ = htcds_frame
    bland = frame[list(DETECTABLE_BY_VALUE)]
    bland.columns = [f"column{number}" for number in range(len(bland.columns))]
    findings = screen_identifiers(bland, schema)
    found = {(finding.column, finding.kind) for finding in findings}
    for number, kind in enumerate(DETECTABLE_BY_VALUE.values()):
        assert (f"column{number}", kind) in found
    for finding in findings:
        assert finding.rows_flagged == 40


def test_findings_never_carry_a_value(
    htcds_frame: tuple[pd.DataFrame, pd.DataFrame], schema: RecordSchema
) -> None:
    frame, _ = htcds_frame
    text = json.dumps([finding.as_dict() for finding in screen_identifiers(frame, schema)])
    for column in ("prs_FirstName", "prs_Email", "prs_MobilePhone", "prs_Birthdate"):
        for value in frame[column]:
            assert value not in text


def test_schema_columns_are_not_flagged_by_name_but_are_by_value(schema: RecordSchema) -> None:
    frame = pd.DataFrame(
        {
            "caseNo": ["a" * 64, "ana@example.org", "b" * 64],
            "gender": ["Female", "+1 202 555 0143", "Male"],
            "Datasource": ["Hotline"] * 3,
        },
        dtype="string",
    )
    findings = [(f.column, f.kind, f.rows_flagged) for f in screen_identifiers(frame, schema)]
    assert findings == [("caseNo", "email", 1), ("gender", "phone", 1)]


def test_pseudonyms_and_ctdc_style_case_numbers_pass(schema: RecordSchema) -> None:
    rng = random.Random(7)
    pseudonyms = [f"{rng.getrandbits(256):064x}" for _ in range(500)]
    frame = pd.DataFrame(
        {"caseNo": pseudonyms + [str(number) for number in range(1, 98_000, 200)]},
        dtype="string",
    )
    assert screen_identifiers(frame, schema) == []


def test_empty_column_named_like_an_identifier_is_still_flagged(schema: RecordSchema) -> None:
    frame = pd.DataFrame({"passport_no": ["", "", ""]}, dtype="string")
    [finding] = screen_identifiers(frame, schema)
    assert (finding.kind, finding.rows_flagged) == ("identity-document", 0)


@pytest.mark.parametrize(
    ("column", "kind"),
    [
        ("first_name", "name"),
        ("FamilyName", "name"),
        ("alias", "name"),
        ("E-mail", "email"),
        ("mobile_no", "phone"),
        ("passportNumber", "identity-document"),
        ("national_id", "identity-document"),
        ("DOB", "birth-date"),
        ("date_of_birth", "birth-date"),
        ("home address", "address"),
        ("postcode", "address"),
        ("case_notes", "free-text"),
        ("Narrative", "free-text"),
        ("comments", "free-text"),
        ("gps_coordinates", "location"),
        ("genderIdentity", None),
        ("hotel", None),
        ("typeOfLabourOther", None),
        ("countryOfBirthRegion", None),
    ],
)
def test_name_kinds(column: str, kind: str | None) -> None:
    assert name_kind(column) == kind


@pytest.mark.parametrize(
    ("column", "kind"),
    [
        # French
        ("nom", "name"),
        ("Prénom", "name"),
        ("nom_de_famille", "name"),
        ("Numéro de téléphone", "phone"),
        ("Date de naissance", "birth-date"),
        ("Adresse", "address"),
        ("Courriel", "email"),
        ("Passeport", "identity-document"),
        ("Observations", "free-text"),
        # Spanish
        ("Nombre completo", "name"),
        ("apellidos", "name"),
        ("Teléfono", "phone"),
        ("fecha_de_nacimiento", "birth-date"),
        ("Dirección", "address"),
        ("Cédula", "identity-document"),
        ("Correo electrónico", "email"),
        # Portuguese
        ("nome completo", "name"),
        ("Sobrenome", "name"),
        ("Telemóvel", "phone"),
        ("Data de nascimento", "birth-date"),
        ("Endereço", "address"),
        ("Observações", "free-text"),
        # Arabic, transliterated and in Arabic script
        ("ism", "name"),
        ("al_ism_al_kamil", "name"),
        ("laqab", "name"),
        ("raqm_al_hatif", "phone"),
        ("jawaz_safar", "identity-document"),
        ("tarikh_al_milad", "birth-date"),
        ("unwan", "address"),
        ("\u0627\u0644\u0627\u0633\u0645", "name"),
        ("\u0647\u0627\u062a\u0641", "phone"),
        # schema fields and harmless words in those languages stay unflagged
        ("Nacionalidad", None),
        ("Année", None),
        ("Género", None),
        ("nominal", None),
        ("prism", None),
    ],
)
def test_person_field_names_in_partners_languages(column: str, kind: str | None) -> None:
    # issue 12 item 6: these were dropped only as unknown columns, never flagged as identifiers
    assert name_kind(column) == kind


def test_a_name_column_in_spanish_is_flagged_by_position(schema: RecordSchema) -> None:
    frame = pd.DataFrame(
        {"caseNo": [f"{1:064x}"], "Nombre completo": ["Ana Cruz"], "nom": ["Cruz"]},
        dtype="string",
    )
    findings = screen_identifiers(frame, schema)
    assert [(f.column, f.label, f.kind) for f in findings] == [
        ("Nombre completo", "column 2", "name"),
        ("nom", "column 3", "name"),
    ]


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("someone@mail.example.com", "email"),
        ("(555) 123-4567", "phone"),
        ("0712345678", "phone"),
        ("+44 20 7946 0958", "phone"),
        ("1990-04-12", "date"),
        ("12/04/1990", "date"),
        ("12 April 1990", "date"),
        ("April 12, 1990", "date"),
        ("2020-01-05T10:00:00Z", "date"),
        ("A1234567", "identity-document"),
        ("123456789", "identity-document"),
        ("221B Baker Street", "address"),
        ("PO Box 123", "address"),
        ("He said the agent took everything", "free-text"),
        ("Case Management", None),
        ("Transgender/NonConforming", None),
        ("48+", None),
        ("30--38", None),
        ("2019", None),
        ("97750", None),
        ("NA", None),
    ],
)
def test_value_kinds(value: str, kind: str | None) -> None:
    assert classify_value(value) == kind


def _prefilter_hits(value: str, pattern: str) -> bool:
    result = pc.match_substring_regex(pa.array([value], pa.string()), pattern)
    return bool(result[0].as_py())


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=40),
        st.from_regex(r"[0-9 ()+./-]{1,20}", fullmatch=True),
        st.from_regex(r"[A-Za-z0-9 ,.@-]{1,40}", fullmatch=True),
    ),
    st.booleans(),
)
def test_property_prefilter_never_hides_an_identifier(value: str, pseudonym: bool) -> None:
    # the fast pre-filter may let harmless values through, but never drop an identifier
    if classify_value(value, pseudonym=pseudonym) is not None:
        assert _prefilter_hits(value, PSEUDONYM_PREFILTER if pseudonym else PREFILTER)
    texts = pd.Series([value], dtype="string")
    assert identifier_kinds(texts, pseudonym=pseudonym) == [
        classify_value(value, pseudonym=pseudonym)
    ]


# Characters whose case folding grows (ß -> ss, ﬃ -> ffi, İ -> i̇) or that fold onto a missing
# spelling's letters, so a value may fold onto a spelling of another length.
_FOLDING = st.text(alphabet=st.sampled_from("nNuUlLaA/.-9ßẞﬃİıſ \u212a"), max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(_FOLDING | st.text(max_size=12), max_size=20), st.sets(_FOLDING, max_size=4))
def test_missing_mask_is_casefold_membership(values: list[str], spellings: set[str]) -> None:
    missing = {spelling.casefold() for spelling in spellings} | {"null", "n/a", "-99"}
    column = pd.Series(values, dtype="string")
    expected = [value.casefold() in missing for value in values]
    assert missing_mask(column, missing).tolist() == expected
