"""Consent to research use, and the lawful bases a partner may declare for an upload.

A record leaves the partner's machine for research use only under a lawful basis. By default
that basis is the person's consent, read from the HTCDS consent fields of the case export: a
record whose consent to research use is not given is held back on the partner's machine, and
only its count and a reason code (never a value) travel with the upload. A partner whose law
gives them another basis declares it for the upload, from :data:`LAWFUL_BASES`; the hub records
it on the receipt and in the audit trail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = [
    "CONSENT_FIELDS",
    "CONSENT_GIVEN",
    "CONSENT_NOT_GIVEN",
    "CONSENT_NOT_RECORDED",
    "CONSENT_REASONS",
    "DEFAULT_LAWFUL_BASIS",
    "LAWFUL_BASES",
    "LAWFUL_BASIS_HEADER",
    "checkbox",
    "research_consent",
]

#: The HTCDS v1.0 consent checkboxes that speak to research use: informed of the actual and
#: potential use of the data, and of the use of non-identifying data for research purposes.
CONSENT_FIELDS: tuple[str, ...] = ("con_DataForResearch", "con_UseOfData")

CONSENT_GIVEN = "consent_given"
#: A consent field of the export says no for the record.
CONSENT_NOT_GIVEN = "consent_not_given"
#: The export carries no consent field, or the record's consent field is empty.
CONSENT_NOT_RECORDED = "consent_not_recorded"
#: Why a record was held back: the only reasons the receipt can carry.
CONSENT_REASONS: tuple[str, ...] = (CONSENT_NOT_GIVEN, CONSENT_NOT_RECORDED)

#: The default basis: only records whose consent to research use is given leave.
DEFAULT_LAWFUL_BASIS = "consent"
#: The lawful bases of processing a partner may declare for an upload (GDPR art. 6(1) and its
#: equivalents), each with what it means for the records sent.
LAWFUL_BASES: Mapping[str, str] = {
    DEFAULT_LAWFUL_BASIS: "the person's consent: records without consent to research use are "
    "held back on the partner's machine",
    "legal_obligation": "a legal obligation of the partner to report the cases",
    "vital_interests": "the vital interests of the person or of another person",
    "public_task": "a task in the public interest or in official authority vested in the partner",
    "legitimate_interests": "the partner's legitimate interests, weighed against the person's",
}
#: The upload request header that names the declared basis (absent: the default).
LAWFUL_BASIS_HEADER = "Lawful-Basis"

_TRUE = frozenset({"true", "1", "yes", "y"})
_FALSE = frozenset({"false", "0", "no", "n"})


def checkbox(value: str) -> bool | None:
    """Read an exported checkbox: ``True``, ``False``, or ``None`` when empty.

    Salesforce writes ``true``/``false``; ``1``/``0`` and ``yes``/``no`` are read too.

    :raises ValueError: for any other value (the message does not quote it).

    >>> checkbox("TRUE"), checkbox(" 0 "), checkbox("")
    (True, False, None)
    """
    text = value.strip().lower()
    if not text:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("not a checkbox value (true or false)")


def research_consent(fields: Mapping[str, Sequence[bool | None]], rows: int) -> list[str]:
    """Say, for each record, whether its consent to research use is given, or why not.

    Consent is given when the export carries at least one of :data:`CONSENT_FIELDS` and each
    one it carries is ticked for the record; one unticked field means not given, and an empty
    one (or no such field at all) means not recorded.

    :param fields: the consent fields the export carries, each read with :func:`checkbox`.
    :param rows: the export's rows.
    :returns: one of :data:`CONSENT_GIVEN` and :data:`CONSENT_REASONS` per record.

    >>> research_consent({"con_DataForResearch": [True, False, None]}, 3)
    ['consent_given', 'consent_not_given', 'consent_not_recorded']
    >>> research_consent({}, 1)
    ['consent_not_recorded']
    """
    carried = [fields[name] for name in CONSENT_FIELDS if name in fields]
    verdicts: list[str] = []
    for row in range(rows):
        answers = [values[row] for values in carried]
        if any(answer is False for answer in answers):
            verdicts.append(CONSENT_NOT_GIVEN)
        elif not answers or any(answer is None for answer in answers):
            verdicts.append(CONSENT_NOT_RECORDED)
        else:
            verdicts.append(CONSENT_GIVEN)
    return verdicts
