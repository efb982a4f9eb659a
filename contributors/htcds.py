"""Map an HTCDS case export to the hub's case-record schema, dropping every direct identifier.

A partner's case-management system records cases in the Human Trafficking Case Data Standard
(HTCDS, IOM): names, birth dates, phones, addresses, free-text notes, and coded facts about the
trafficking experience. The hub takes only the coded facts, in CTDC's variables. This module
holds the whole translation as data:

* :data:`FIELD_RULES` says, for every HTCDS field (v1.0 and v2.0), whether it is *mapped* to hub
  fields, *dropped as a direct identifier*, or *dropped as not in the hub schema*;
* the code tables (:data:`GENDER_CODES`, :data:`MEANS_OF_CONTROL_CODES`, ...) say how each
  HTCDS picklist value becomes a hub code or a set of hub indicator fields.

HTCDS does not standardise two things the hub needs, which every case system has: the case's
own number and the date it was registered. An export names them :data:`CASE_ID_FIELD`
(Salesforce's standard ``CaseNumber``) and :data:`REGISTRATION_DATE_FIELD` (``CreatedDate``).
The case number leaves as a keyed pseudonym only; the dates leave as a year and an age band.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pandas as pd

from contributors.consent import CONSENT_FIELDS, checkbox, research_consent
from contributors.linkage import Person
from contributors.pseudonym import pseudonymise_column
from contributors.schema import RecordSchema, load_schema

__all__ = [
    "CASE_ID_FIELD",
    "DATASOURCE",
    "EXPLOITATION_CODES",
    "FIELD_RULES",
    "GENDER_CODES",
    "LABOUR_INDUSTRY_CODES",
    "MEANS_OF_CONTROL_CODES",
    "RECRUITER_RELATION_CODES",
    "REGISTRATION_DATE_FIELD",
    "SEX_EXPLOITATION_CODES",
    "Disposition",
    "FieldOutcome",
    "FieldRule",
    "HtcdsMapping",
    "HtcdsMappingError",
    "MappingProblem",
    "age_in_years",
    "linkage_people",
    "map_htcds",
    "parse_date",
    "split_multiselect",
]

CASE_ID_FIELD = "cas_CaseNumber"
REGISTRATION_DATE_FIELD = "cas_CreatedDate"
#: HTCDS is a case-management standard: its exports are case-management records, not hotline
#: reports (CTDC's other data source).
DATASOURCE = "Case Management"


class Disposition(StrEnum):
    """What happens to one HTCDS field on its way to the hub."""

    MAPPED = "mapped"
    IDENTIFIER = "identifier"
    NOT_IN_SCHEMA = "not_in_schema"


@dataclass(frozen=True)
class FieldRule:
    """The fate of one HTCDS field.

    :param disposition: mapped, dropped as a direct identifier, or dropped as not in the schema.
    :param targets: the hub fields it feeds (also for an identifier that is generalised first,
        like the birth date, which feeds the age band and then is dropped).
    :param reason: why, in a sentence a partner can read.
    """

    disposition: Disposition
    reason: str
    targets: tuple[str, ...] = ()


def _id(reason: str, *targets: str) -> FieldRule:
    return FieldRule(Disposition.IDENTIFIER, reason, targets)


def _out(reason: str) -> FieldRule:
    return FieldRule(Disposition.NOT_IN_SCHEMA, reason)


def _map(reason: str, *targets: str) -> FieldRule:
    return FieldRule(Disposition.MAPPED, reason, targets)


_NAME = "part of a person's name"
_ADDRESS = "part of an address or a precise location"
_CONTACT = "a contact detail that reaches a person"
_FREE_TEXT = "free text, which can name people, places and events"
_EXACT_DATE = "an exact date of an event in the person's case"
_LOOKUP_PLACE = "a reference to a specific place or organisation record"
_LOOKUP_PERSON = "a reference to a specific person (a caseworker or user)"
_NO_HUB_FIELD = "the hub's case record (CTDC's variables) has no field for it"
_CONSENT = (
    "consent to research use: read on this machine to decide whether the record may leave "
    "(contributors.consent); never sent"
)

_MEANS_OF_CONTROL = (
    "meansOfControlDebtBondage",
    "meansOfControlTakesEarnings",
    "meansOfControlRestrictsFinancialAccess",
    "meansOfControlThreats",
    "meansOfControlPsychologicalAbuse",
    "meansOfControlPhysicalAbuse",
    "meansOfControlSexualAbuse",
    "meansOfControlFalsePromises",
    "meansOfControlPsychoactiveSubstances",
    "meansOfControlRestrictsMedicalCare",
    "meansOfControlExcessiveWorkingHours",
    "meansOfControlThreatOfLawEnforcement",
    "meansOfControlWithholdsNecessities",
    "meansOfControlWithholdsDocuments",
    "meansOfControlOther",
    "meansOfControlNotSpecified",
)

#: Every HTCDS field of v1.0 and v2.0, plus the two case-system fields, and what becomes of it.
FIELD_RULES: Mapping[str, FieldRule] = {
    # -- case-system fields HTCDS leaves to the case system ---------------------------------
    CASE_ID_FIELD: _map("the partner's case number; it leaves only as a keyed pseudonym", "caseNo"),
    REGISTRATION_DATE_FIELD: _map(
        "the date the case was registered; it leaves as its year, and fixes the age band",
        "yearOfRegistration",
        "ageBroad",
        "majorityStatus",
    ),
    # -- Organisation: places and organisations a case refers to ----------------------------
    "org_Name": _id("the name of an organisation or place linked to the case"),
    "org_ShippingCity": _id(_ADDRESS),
    "org_ShippingCountry": _out(_NO_HUB_FIELD),
    "org_ShippingState": _id(_ADDRESS),
    "org_ShippingStreet": _id(_ADDRESS),
    "org_ShippingPostalCode": _id(_ADDRESS),
    "org_ShippingLongitude": _id(_ADDRESS),
    "org_ShippingLatitude": _id(_ADDRESS),
    "org_Phone": _id(_CONTACT),
    "org_Type": _out(_NO_HUB_FIELD),
    # -- Person -------------------------------------------------------------------------------
    "prs_Salutation": _id(_NAME),
    "prs_FirstName": _id(_NAME),
    "prs_MiddleName": _id(_NAME),
    "prs_SecondName": _id(_NAME),
    "prs_Birthdate": _id(
        "a birth date; only the age band at registration is derived from it",
        "ageBroad",
        "majorityStatus",
    ),
    "prs_Gender": _map("gender codes translate one to one or into CTDC's wider code", "gender"),
    "prs_Deceased": _out(_NO_HUB_FIELD),
    "prs_MaritalStatus": _out(_NO_HUB_FIELD),
    "prs_NumberOfChildren": _out(_NO_HUB_FIELD),
    "prs_PrimaryLanguage": _out(_NO_HUB_FIELD),
    "prs_SecondaryLanguage": _out(_NO_HUB_FIELD),
    "prs_HighestLevelOfEducation": _out(_NO_HUB_FIELD),
    "prs_Citizenship": _map("ISO 3166 code; of several, the first is kept", "citizenship"),
    "prs_IdentityNumber": _id("an identity document number"),
    "prs_Title": _id("a personal title or job title, which can single a person out"),
    "prs_Email": _id(_CONTACT),
    "prs_HomePhone": _id(_CONTACT),
    "prs_MobilePhone": _id(_CONTACT),
    "prs_MailingCity": _id(_ADDRESS),
    "prs_MailingCountry": _out(_NO_HUB_FIELD),
    "prs_MailingState": _id(_ADDRESS),
    "prs_MailingStreet": _id(_ADDRESS),
    "prs_MailingPostalCode": _id(_ADDRESS),
    "prs_MailingLongitude": _id(_ADDRESS),
    "prs_MailingLatitude": _id(_ADDRESS),
    # -- Person, victim context ----------------------------------------------------------------
    "vic_AgreementToManagePersonalData": _out(_NO_HUB_FIELD),
    "vic_TraffickingStatus": _out(_NO_HUB_FIELD),
    "vic_TraffickingStatusDecisionMakingOrg": _out(_NO_HUB_FIELD),
    "vic_RelationshipToTrafficker": _map(
        "relationship codes translate to CTDC's recruiter relation indicators",
        "recruiterRelationFriend",
        "recruiterRelationFamily",
        "recruiterRelationOther",
        "recruiterRelationUnknown",
    ),
    "vic_AgeWhenTrafficked": _out(
        "age when exploitation began; the hub's age band is the age at registration"
    ),
    "vic_RecruitmentWebsitesAndApps": _out(_NO_HUB_FIELD),
    "vic_MethodOfRecruitment": _out(_NO_HUB_FIELD),
    "vic_LocationOfRecruitment": _id(_LOOKUP_PLACE),
    "vic_MethodsOfControl": _map(
        "control codes translate to CTDC's means-of-control indicators", *_MEANS_OF_CONTROL
    ),
    "vic_TypeOfExploitation": _map(
        "exploitation codes translate to CTDC's exploitation-type indicators",
        "isForcedLabour",
        "isSexualExploit",
        "isOtherExploit",
        "isSexAndLabour",
        "isForcedMarriage",
        "isSlaveryAndPractices",
        "typeOfLabourBegging",
    ),
    "vic_ForcedLabourIndustry": _map(
        "ISIC sections translate to CTDC's type-of-labour indicators",
        "typeOfLabourAgriculture",
        "typeOfLabourConstruction",
        "typeOfLabourDomesticWork",
        "typeOfLabourHospitality",
        "typeOfLabourManufacturing",
        "typeOfLabourTransportation",
        "typeOfLabourOther",
        "typeOfLabourNotSpecified",
    ),
    "vic_TypeOfSexExploitation": _map(
        "codes translate one to one to CTDC's type-of-sexual-exploitation indicators",
        "typeOfSexProstitution",
        "typeOfSexPornography",
        "typeOfSexRemoteInteractiveServices",
        "typeOfSexPrivateSexualServices",
    ),
    "vic_LocationOfExploitation": _id(_LOOKUP_PLACE),
    "vic_ExploitationWebsitesAndApps": _out(_NO_HUB_FIELD),
    "vic_Vulnerabilities": _out(_NO_HUB_FIELD),
    "vic_DetailsOfVulnerabilities": _id(_FREE_TEXT),
    # -- Person, perpetrator context ----------------------------------------------------------
    "per_RoleInProcess": _out(_NO_HUB_FIELD),
    "per_RoleDetails": _id(_FREE_TEXT),
    # -- Case, referrals, comments -------------------------------------------------------------
    "cas_Status": _out(_NO_HUB_FIELD),
    "cas_ReasonForCaseClosure": _id(_FREE_TEXT),
    "cas_CaseOwner": _id(_LOOKUP_PERSON),
    "cas_ReferringOrganisation": _id(_LOOKUP_PLACE),
    "cas_IncomingReferralDate": _id(_EXACT_DATE),
    "cas_ReferringPrimaryCaseWorker": _id(_LOOKUP_PERSON),
    "cas_ReasonForIncomingReferral": _out(_NO_HUB_FIELD),
    "cas_IncomingReferralDetails": _id(_FREE_TEXT),
    "cas_ReferredOrganisation": _id(_LOOKUP_PLACE),
    "cas_ReferredPrimaryCaseWorker": _id(_LOOKUP_PERSON),
    "cas_ReasonForOutgoingReferral": _out(_NO_HUB_FIELD),
    "cas_OutgoingReferralDate": _id(_EXACT_DATE),
    "cas_OutgoingReferralDetails": _id(_FREE_TEXT),
    "cco_CaseComment": _id(_FREE_TEXT),
    # -- Historic trafficking events -----------------------------------------------------------
    "hte_Longitude": _id(_ADDRESS),
    "hte_Latitude": _id(_ADDRESS),
    "hte_City": _id(_ADDRESS),
    "hte_Country": _map(
        "the event's country is the country of exploitation when the event is an exploitation",
        "CountryOfExploitation",
    ),
    "hte_State": _id(_ADDRESS),
    "hte_Street": _id(_ADDRESS),
    "hte_PostalCode": _id(_ADDRESS),
    "hte_Date": _id(_EXACT_DATE),
    "hte_Type": _map(
        "says whether hte_Country is a country of exploitation", "CountryOfExploitation"
    ),
    "hte_Description": _id(_FREE_TEXT),
    # -- Support plan --------------------------------------------------------------------------
    "spl_Objectives": _id(_FREE_TEXT),
    "spl_ActionPlan": _id(_FREE_TEXT),
    "spl_PlannedEndDate": _id(_EXACT_DATE),
    "spl_ActualEndDate": _id(_EXACT_DATE),
    "spl_Type": _out(_NO_HUB_FIELD),
    # -- Consent (v2.0 keeps one checkbox; v1.0 had four more) ---------------------------------
    "con_Consent": _out(_NO_HUB_FIELD),
    "con_PurposeOfInterview": _out(_NO_HUB_FIELD),
    "con_UseOfData": _out(_CONSENT),
    "con_DataForResearch": _out(_CONSENT),
    "con_RightToBeForgotten": _out(_NO_HUB_FIELD),
}

#: prs_Gender -> gender. CTDC keeps transgender and non-conforming people in one code for
#: privacy; "not specified" is a missing value, not a code.
GENDER_CODES: Mapping[str, str] = {
    "Feminine": "Female",
    "Masculine": "Male",
    "TransgenderFeminine": "Transgender/NonConforming",
    "TransgenderMasculine": "Transgender/NonConforming",
    "NonConforming": "Transgender/NonConforming",
    "NonSpecifiedUnknown": "",
}

#: vic_MethodsOfControl -> means-of-control indicators. Threats against the person's children
#: or family are threats (CTDC's "uses children" is restricting access to children, which
#: HTCDS does not code).
MEANS_OF_CONTROL_CODES: Mapping[str, tuple[str, ...]] = {
    "PhysicalThreats": ("meansOfControlThreats",),
    "ThreatensChildrenFamily": ("meansOfControlThreats",),
    "ThreatsLawEnforcement": ("meansOfControlThreatOfLawEnforcement",),
    "DebtBondage": ("meansOfControlDebtBondage",),
    "FalsePromises": ("meansOfControlFalsePromises",),
    "PhysicalAbuse": ("meansOfControlPhysicalAbuse",),
    "SexualAbuse": ("meansOfControlSexualAbuse",),
    "TakesEarnings": ("meansOfControlTakesEarnings",),
    "RestrictsFinancialAccess": ("meansOfControlRestrictsFinancialAccess",),
    "RestrictsMedicalCare": ("meansOfControlRestrictsMedicalCare",),
    "WithholdsNecessities": ("meansOfControlWithholdsNecessities",),
    "PsychologicalAbuse": ("meansOfControlPsychologicalAbuse",),
    "PsychoactiveSubstance": ("meansOfControlPsychoactiveSubstances",),
    "ExcessiveWorkingHours": ("meansOfControlExcessiveWorkingHours",),
    "WithholdsDocuments": ("meansOfControlWithholdsDocuments",),
    "Other": ("meansOfControlOther",),
}

#: vic_TypeOfExploitation -> exploitation indicators. Child labour and forced begging are forced
#: labour (CTDC counts begging as a type of labour); servitude is a practice similar to slavery;
#: forms CTDC's 2021 variables do not name are "other".
EXPLOITATION_CODES: Mapping[str, tuple[str, ...]] = {
    "ForcedLabour": ("isForcedLabour",),
    "SexualExploitation": ("isSexualExploit",),
    "ChildLabour": ("isForcedLabour",),
    "ForcedMarriage": ("isForcedMarriage",),
    "Servitude": ("isSlaveryAndPractices",),
    "ForcedMilitaryByNonStateActors": ("isOtherExploit",),
    "OrganRemoval": ("isOtherExploit",),
    "ForcedBegging": ("isForcedLabour", "typeOfLabourBegging"),
    "ForcedAdoption": ("isOtherExploit",),
    "Surrogacy": ("isOtherExploit",),
    "Other": ("isOtherExploit",),
}

#: vic_ForcedLabourIndustry (ISIC Rev. 4 sections) -> type-of-labour indicators, following the
#: ISIC sections CTDC's codebook names for each. Section A also holds fishing and aquaculture,
#: which HTCDS's section-level code cannot separate from agriculture.
LABOUR_INDUSTRY_CODES: Mapping[str, tuple[str, ...]] = {
    "A_AgricultureForestryAndFishing": ("typeOfLabourAgriculture",),
    "B_MiningAndQuarrying": ("typeOfLabourOther",),
    "C_Manufacturing": ("typeOfLabourManufacturing",),
    "D_ElectricityGasSteamAndAirConditioningSupply": ("typeOfLabourOther",),
    "E_WaterSupplySewerageWasteManagement": ("typeOfLabourOther",),
    "F_Construction": ("typeOfLabourConstruction",),
    "G_WholesaleAndRetailTradeRepairOfMotorVehicles": ("typeOfLabourOther",),
    "H_TransportationAndStorage": ("typeOfLabourTransportation",),
    "I_AccommodationAndFoodServiceActivities": ("typeOfLabourHospitality",),
    "J_InformationAndCommunication": ("typeOfLabourOther",),
    "K_FinancialAndInsuranceActivities": ("typeOfLabourOther",),
    "L_RealEstateActivities": ("typeOfLabourOther",),
    "M_ProfessionalScientificAndTechnicalActivities": ("typeOfLabourOther",),
    "N_AdministrativeAndSupportServiceActivities": ("typeOfLabourOther",),
    "O_PublicAdministrationAndDefence": ("typeOfLabourOther",),
    "P_Education": ("typeOfLabourOther",),
    "Q_HumanHealthAndSocialWorkActivities": ("typeOfLabourOther",),
    "R_ArtsEntertainmentAndRecreation": ("typeOfLabourOther",),
    "S_OtherServiceActivities": ("typeOfLabourOther",),
    "T_ActivitiesOfHouseholdsAsEmployers": ("typeOfLabourDomesticWork",),
    "U_ActivitiesOfExtraterritorialOrganizations": ("typeOfLabourOther",),
}

#: vic_TypeOfSexExploitation -> type-of-sexual-exploitation indicators (same four categories).
SEX_EXPLOITATION_CODES: Mapping[str, tuple[str, ...]] = {
    "Prostitution": ("typeOfSexProstitution",),
    "Pornography": ("typeOfSexPornography",),
    "RemoteInteractiveServices": ("typeOfSexRemoteInteractiveServices",),
    "PrivateSexualServices": ("typeOfSexPrivateSexualServices",),
}

#: vic_RelationshipToTrafficker -> recruiter relation indicators. CTDC's "friend" is a
#: friend or acquaintance; a stranger falls under "other" (brokers, employers, smugglers).
#: ("Unaquainted" is HTCDS's own spelling.)
RECRUITER_RELATION_CODES: Mapping[str, tuple[str, ...]] = {
    "Familial": ("recruiterRelationFamily",),
    "Acquainted": ("recruiterRelationFriend",),
    "Unaquainted": ("recruiterRelationOther",),
}


@dataclass(frozen=True)
class _IndicatorField:
    """An HTCDS multiselect (or picklist) that becomes a group of 1/0 indicator fields."""

    codes: Mapping[str, tuple[str, ...]]
    # Set to 1 when the HTCDS field is empty: CTDC's "not specified" indicator.
    not_specified: str | None
    # Multiselect picklists hold several codes joined by ";" (Salesforce's export format).
    multiple: bool


_INDICATOR_FIELDS: Mapping[str, _IndicatorField] = {
    "vic_MethodsOfControl": _IndicatorField(
        MEANS_OF_CONTROL_CODES, "meansOfControlNotSpecified", multiple=True
    ),
    "vic_TypeOfExploitation": _IndicatorField(EXPLOITATION_CODES, None, multiple=True),
    "vic_TypeOfSexExploitation": _IndicatorField(SEX_EXPLOITATION_CODES, None, multiple=True),
    "vic_RelationshipToTrafficker": _IndicatorField(
        RECRUITER_RELATION_CODES, "recruiterRelationUnknown", multiple=False
    ),
}

#: hte_Type value that makes hte_Country a country of exploitation.
_EXPLOITATION_EVENT = "Exploitation"
_HTE_TYPES = frozenset({"Recruitment", "Transit", "Exploitation"})
_NOT_A_COUNTRY = "not an ISO 3166 country code the hub knows (alpha-2 or alpha-3)"
_OLDEST_AGE = 120


@dataclass(frozen=True)
class MappingProblem:
    """One value the mapper cannot translate.

    :param row: the export's data row, counted from 1 (the header is not a row).
    :param field: the HTCDS field.
    :param reason: why, without quoting the value (it may be personal data).
    """

    row: int
    field: str
    reason: str

    def __str__(self) -> str:
        """Return the problem as one line."""
        return f"row {self.row}, field {self.field}: {self.reason}"


class HtcdsMappingError(ValueError):
    """The export holds values the mapper cannot translate; every one is listed.

    :param problems: all problems found (never only the first).
    """

    def __init__(self, problems: Sequence[MappingProblem], message: str | None = None) -> None:
        self.problems = list(problems)
        if message is None:
            shown = "; ".join(str(problem) for problem in self.problems[:5])
            more = len(self.problems) - 5
            message = f"{len(self.problems)} value(s) cannot be mapped: {shown}" + (
                f"; and {more} more" if more > 0 else ""
            )
        super().__init__(message)


@dataclass(frozen=True)
class FieldOutcome:
    """What the mapper did with one column of the export.

    :param field: the export's column.
    :param disposition: mapped, identifier, not_in_schema, or ``None`` for a column that is
        not an HTCDS field at all (it is dropped too).
    :param targets: the hub fields it fed.
    :param reason: why.
    """

    field: str
    disposition: Disposition | None
    targets: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class HtcdsMapping:
    """The hub-ready case records and the account of every column of the export.

    :param records: one row per case record, the hub schema's columns in order, as strings.
    :param outcomes: one per column of the export, in the export's order.
    :param notes: counts of translations a partner should know about (for example rows whose
        age band could not be derived).
    :param consent: per record, whether its consent to research use is given
        (:data:`contributors.consent.CONSENT_GIVEN`) or why not (a reason code of
        :data:`contributors.consent.CONSENT_REASONS`); read from the export's consent fields.
    """

    records: pd.DataFrame
    outcomes: tuple[FieldOutcome, ...]
    notes: dict[str, int] = field(default_factory=dict)
    consent: tuple[str, ...] = ()

    def _named(self, disposition: Disposition | None) -> list[str]:
        return [o.field for o in self.outcomes if o.disposition is disposition]

    @property
    def mapped(self) -> list[str]:
        """Return the export's columns that were mapped."""
        return self._named(Disposition.MAPPED)

    @property
    def identifiers_dropped(self) -> list[str]:
        """Return the export's columns dropped as direct identifiers."""
        return self._named(Disposition.IDENTIFIER)

    @property
    def not_in_schema_dropped(self) -> list[str]:
        """Return the export's HTCDS columns dropped because the hub has no field for them."""
        return self._named(Disposition.NOT_IN_SCHEMA)

    @property
    def unknown_dropped(self) -> list[str]:
        """Return the export's columns that are not HTCDS fields (dropped)."""
        return self._named(None)

    def as_dict(self) -> dict[str, Any]:
        """Return the account as plain JSON-ready data."""
        return {
            "rows": len(self.records),
            "mapped": self.mapped,
            "identifiers_dropped": self.identifiers_dropped,
            "not_in_schema_dropped": self.not_in_schema_dropped,
            "unknown_dropped": self.unknown_dropped,
            "notes": dict(self.notes),
        }


#: The HTCDS person fields a linkage encoding is made of (names and birth date), beside the
#: mapped record's gender and citizenship (the hub's codes, so that partners agree on them).
LINKAGE_FIELDS = ("prs_FirstName", "prs_MiddleName", "prs_SecondName", "prs_Birthdate")


def linkage_people(frame: pd.DataFrame, records: pd.DataFrame) -> list[Person]:
    """Return the person of each row, for the toolkit's linkage encoding (on the partner's side).

    :param frame: the rows' HTCDS person fields as strings (any of :data:`LINKAGE_FIELDS`;
        an absent column is an empty field).
    :param records: the same rows as hub records (``gender``, ``citizenship``), same order.

    >>> export = pd.DataFrame({"prs_FirstName": ["Ana"], "prs_SecondName": ["Lima"],
    ...                        "prs_Birthdate": ["1990-05-17T00:00:00.000+0000"]})
    >>> linkage_people(export, pd.DataFrame({"gender": ["Female"], "citizenship": ["BR"]}))
    [Person(given_name='Ana', family_name='Lima', birth_date='1990-05-17', sex='Female', \
nationality='BR')]
    """
    rows = len(frame)

    def column(source: pd.DataFrame, name: str) -> list[str]:
        if name not in source.columns:
            return [""] * rows
        return source[name].astype("string").fillna("").str.strip().tolist()

    first, middle, second, born = (column(frame, name) for name in LINKAGE_FIELDS)
    out = []
    for given, extra, family, birth, sex, nationality in zip(
        first,
        middle,
        second,
        born,
        column(records, "gender"),
        column(records, "citizenship"),
        strict=True,
    ):
        try:
            birth = parse_date(birth).isoformat() if birth else ""
        except ValueError:
            pass  # left as written: the encoder names the row and field
        out.append(
            Person(
                given_name=" ".join(part for part in (given, extra) if part) or None,
                family_name=family or None,
                birth_date=birth or None,
                sex=sex or None,
                nationality=nationality or None,
            )
        )
    return out


def split_multiselect(value: str) -> list[str]:
    """Split a Salesforce multiselect value (codes joined by ``;``) into its codes.

    :param value: the cell.

    >>> split_multiselect(" DebtBondage; FalsePromises ;")
    ['DebtBondage', 'FalsePromises']
    >>> split_multiselect("")
    []
    """
    return [code.strip() for code in value.split(";") if code.strip()]


def parse_date(value: str) -> dt.date:
    """Parse an export's date or date-time (ISO 8601, as Salesforce writes them) to a date.

    :param value: e.g. ``2019-03-04`` or ``2019-03-04T10:22:01.000+0000``.
    :raises ValueError: if it is not an ISO 8601 date.

    >>> parse_date("2019-03-04T10:22:01.000+0000")
    datetime.date(2019, 3, 4)
    >>> parse_date("04/03/2019")
    Traceback (most recent call last):
    ...
    ValueError: not an ISO 8601 date (YYYY-MM-DD)
    """
    text = value.strip()
    if len(text) < 10 or (len(text) > 10 and text[10] not in "T "):
        raise ValueError("not an ISO 8601 date (YYYY-MM-DD)")
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError("not an ISO 8601 date (YYYY-MM-DD)") from None


def age_in_years(birth: dt.date, on: dt.date) -> int:
    """Return a person's age in whole years on a given day.

    :param birth: the birth date.
    :param on: the day.

    >>> age_in_years(dt.date(2000, 6, 15), dt.date(2018, 6, 14)), age_in_years(
    ...     dt.date(2000, 6, 15), dt.date(2018, 6, 15))
    (17, 18)
    """
    before_birthday = (on.month, on.day) < (birth.month, birth.day)
    return on.year - birth.year - int(before_birthday)


def _age_bands(schema: RecordSchema) -> tuple[tuple[str, int, int | None], ...]:
    """Return the schema's age bands as (code, lowest age, highest age or None)."""
    bands = schema.field("ageBroad").band_bounds
    if not bands:
        raise ValueError("the record schema gives no age band bounds for ageBroad")
    return bands


def _country_codes(schema: RecordSchema, name: str) -> dict[str, str]:
    """Return every accepted spelling of a country field's codes (upper case) -> its code."""
    spec = schema.field(name)
    codes = {code.upper(): code for code in spec.codes or ()}
    codes.update({alias.upper(): code for alias, code in spec.aliases})
    return codes


def _band_of(age: int, bands: Iterable[tuple[str, int, int | None]]) -> str:
    for code, low, high in bands:
        if age >= low and (high is None or age <= high):
            return code
    raise ValueError(f"no age band holds age {age}")


def map_htcds(
    frame: pd.DataFrame,
    *,
    pseudonym_key: str | bytes,
    schema: RecordSchema | None = None,
    datasource: str = DATASOURCE,
) -> HtcdsMapping:
    """Translate an HTCDS case export into the hub's case records.

    Only mapped fields reach the records; every identifier and every field the hub has no
    place for is dropped and named in the result. The case number is pseudonymised with the
    partner's key here, so the records never hold it.

    :param frame: the export, one row per case, all cells as strings.
    :param pseudonym_key: the partner's secret pseudonym key.
    :param schema: the hub's record schema (loaded if not given).
    :param datasource: the records' Datasource code.
    :raises HtcdsMappingError: listing every value that cannot be translated, or if the
        export lacks the case number column.
    """
    schema = schema if schema is not None else load_schema()
    columns = [str(c) for c in frame.columns]
    if CASE_ID_FIELD not in columns:
        raise HtcdsMappingError(
            [],
            f"the export has no {CASE_ID_FIELD} column: every case record needs the case "
            "system's own case number (it leaves only as a pseudonym)",
        )
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise HtcdsMappingError([], f"the export repeats the column(s) {', '.join(duplicated)}")

    rows = len(frame)
    cells = {c: frame[c].fillna("").astype(str).str.strip().tolist() for c in columns}
    empty = [""] * rows
    out: dict[str, list[str]] = {name: list(empty) for name in schema.names}
    problems: list[MappingProblem] = []
    notes: dict[str, int] = {}

    def column(name: str) -> list[str]:
        return cells.get(name, empty)

    out["caseNo"] = pseudonymise_column(column(CASE_ID_FIELD), pseudonym_key)
    out["Datasource"] = [datasource] * rows

    # Registration date -> year; birth date + registration date -> age band and majority.
    bands = _age_bands(schema)
    for index, (registered, born) in enumerate(
        zip(column(REGISTRATION_DATE_FIELD), column("prs_Birthdate"), strict=True)
    ):
        row = index + 1
        registration: dt.date | None = None
        birth: dt.date | None = None
        if registered:
            try:
                registration = parse_date(registered)
                out["yearOfRegistration"][index] = str(registration.year)
            except ValueError as error:
                problems.append(MappingProblem(row, REGISTRATION_DATE_FIELD, str(error)))
        if born:
            try:
                birth = parse_date(born)
            except ValueError as error:
                problems.append(MappingProblem(row, "prs_Birthdate", str(error)))
        if birth is not None and registration is None and not registered:
            notes["age band not derived: no registration date"] = (
                notes.get("age band not derived: no registration date", 0) + 1
            )
        if birth is None or registration is None:
            continue
        age = age_in_years(birth, registration)
        if not 0 <= age <= _OLDEST_AGE:
            problems.append(
                MappingProblem(
                    row,
                    "prs_Birthdate",
                    f"gives an age of {age} at registration, outside 0 to {_OLDEST_AGE}",
                )
            )
            continue
        out["ageBroad"][index] = _band_of(age, bands)
        out["majorityStatus"][index] = "Minor" if age < 18 else "Adult"

    for index, value in enumerate(column("prs_Gender")):
        if not value:
            continue
        if value not in GENDER_CODES:
            problems.append(
                MappingProblem(
                    index + 1, "prs_Gender", f"not an HTCDS gender code ({', '.join(GENDER_CODES)})"
                )
            )
            continue
        out["gender"][index] = GENDER_CODES[value]

    citizenships = _country_codes(schema, "citizenship")
    several = 0
    for index, value in enumerate(column("prs_Citizenship")):
        codes = split_multiselect(value)
        if not codes:
            continue
        several += len(codes) > 1
        if codes[0].upper() not in citizenships:
            problems.append(MappingProblem(index + 1, "prs_Citizenship", _NOT_A_COUNTRY))
            continue
        # The schema keeps the first citizenship reported when there are several.
        out["citizenship"][index] = citizenships[codes[0].upper()]
    if several:
        notes["citizenship: several given, first kept"] = several

    countries = _country_codes(schema, "CountryOfExploitation")
    for index, (country, event) in enumerate(
        zip(column("hte_Country"), column("hte_Type"), strict=True)
    ):
        if event and event not in _HTE_TYPES:
            problems.append(
                MappingProblem(
                    index + 1, "hte_Type", f"not an HTCDS event type ({', '.join(_HTE_TYPES)})"
                )
            )
            continue
        if not country or event != _EXPLOITATION_EVENT:
            continue
        if country.upper() not in countries:
            problems.append(MappingProblem(index + 1, "hte_Country", _NOT_A_COUNTRY))
            continue
        out["CountryOfExploitation"][index] = countries[country.upper()]

    for source, rule in _INDICATOR_FIELDS.items():
        _indicators(source, rule, column(source), out, problems)

    # CTDC's combined indicator: known exactly when the exploitation types were recorded.
    for index, (labour, sexual) in enumerate(
        zip(out["isForcedLabour"], out["isSexualExploit"], strict=True)
    ):
        if labour and sexual:
            out["isSexAndLabour"][index] = "1" if labour == sexual == "1" else "0"
    _forced_labour(column("vic_ForcedLabourIndustry"), out, problems)

    consent = _consent(cells, rows, problems)

    if problems:
        raise HtcdsMappingError(problems)

    outcomes = tuple(
        FieldOutcome(c, FIELD_RULES[c].disposition, FIELD_RULES[c].targets, FIELD_RULES[c].reason)
        if c in FIELD_RULES
        else FieldOutcome(c, None, (), "not an HTCDS field; dropped")
        for c in columns
    )
    records = pd.DataFrame(out, columns=list(schema.names), dtype="string")
    return HtcdsMapping(records=records, outcomes=outcomes, notes=notes, consent=tuple(consent))


def _consent(
    cells: Mapping[str, list[str]], rows: int, problems: list[MappingProblem]
) -> list[str]:
    """Read the export's consent checkboxes; an unreadable one is a problem naming its row."""
    fields: dict[str, list[bool | None]] = {}
    for name in CONSENT_FIELDS:
        if name not in cells:
            continue
        answers: list[bool | None] = []
        for index, value in enumerate(cells[name]):
            try:
                answers.append(checkbox(value))
            except ValueError as error:
                problems.append(MappingProblem(index + 1, name, str(error)))
                answers.append(None)
        fields[name] = answers
    return research_consent(fields, rows)


def _indicators(
    source: str,
    rule: _IndicatorField,
    values: list[str],
    out: dict[str, list[str]],
    problems: list[MappingProblem],
) -> None:
    """Fill one group of indicator fields from one HTCDS (multi)select column, in place."""
    group = sorted({target for targets in rule.codes.values() for target in targets})
    for index, value in enumerate(values):
        codes = split_multiselect(value) if rule.multiple else ([value] if value else [])
        if not codes:
            if rule.not_specified is not None:
                out[rule.not_specified][index] = "1"
            continue
        unknown = [code for code in codes if code not in rule.codes]
        if unknown:
            problems.append(
                MappingProblem(
                    index + 1, source, f"{len(unknown)} code(s) that are not HTCDS codes for it"
                )
            )
            continue
        chosen = {target for code in codes for target in rule.codes[code]}
        # A recorded picklist answers every option: what was not chosen is a known "no".
        for target in group:
            out[target][index] = "1" if target in chosen else "0"
        if rule.not_specified is not None:
            out[rule.not_specified][index] = "0"


def _forced_labour(
    values: list[str], out: dict[str, list[str]], problems: list[MappingProblem]
) -> None:
    """Fill the type-of-labour indicators from vic_ForcedLabourIndustry, in place."""
    group = sorted({target for targets in LABOUR_INDUSTRY_CODES.values() for target in targets})
    for index, value in enumerate(values):
        codes = split_multiselect(value)
        if not codes:
            # Forced labour with no industry recorded is CTDC's "type not specified".
            if out["isForcedLabour"][index] == "1" and out["typeOfLabourBegging"][index] != "1":
                out["typeOfLabourNotSpecified"][index] = "1"
            continue
        unknown = [code for code in codes if code not in LABOUR_INDUSTRY_CODES]
        if unknown:
            problems.append(
                MappingProblem(
                    index + 1,
                    "vic_ForcedLabourIndustry",
                    f"{len(unknown)} code(s) that are not ISIC section codes of HTCDS",
                )
            )
            continue
        chosen = {target for code in codes for target in LABOUR_INDUSTRY_CODES[code]}
        for target in group:
            out[target][index] = "1" if target in chosen else "0"
        out["typeOfLabourNotSpecified"][index] = "0"
