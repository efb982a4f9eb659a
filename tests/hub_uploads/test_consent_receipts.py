"""The receipt says how many records the toolkit held back for want of consent, and under
which lawful basis the rest were sent (issue 16); both reach the audit trail."""

from __future__ import annotations

import json
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from contributors.cli import prepare_upload
from hub.models import AuditEvent, Upload
from tests.contributors_toolkit.test_consent import ANSWERS, GIVEN, KEY, _csv, _export
from tests.hub_uploads.test_uploads_api import count, post


def _prepared_body(**options: Any) -> tuple[bytes, dict[str, Any] | None]:
    prepared = prepare_upload(
        _csv(_export()), filename="export.csv", htcds=True, pseudonym_key=KEY, **options
    )
    return prepared.to_csv(), prepared.local_rejections()


def _accept_event(session: Session, upload_id: str) -> AuditEvent:
    return session.scalars(
        select(AuditEvent).where(
            AuditEvent.tag == "ingest:upload:accept", AuditEvent.subject_id == upload_id
        )
    ).one()


def test_records_held_back_for_want_of_consent_are_on_the_receipt(
    client: FlaskClient, partner_a: Any, db_session: Session
) -> None:
    body, account = _prepared_body()
    assert account is not None
    response = post(
        client, partner_a.headers, body, extra={"Local-Rejections": json.dumps(account)}
    )
    assert response.status_code == 201, response.get_json()
    receipt = response.get_json()
    held = len(ANSWERS) - len(GIVEN)
    assert receipt["rows_accepted"] == len(GIVEN)
    assert receipt["file_rows_total"] == len(ANSWERS)
    assert receipt["rows_rejected_locally"] == receipt["rows_held_back"] == held
    assert receipt["local_rejections"]["held_back"] == [
        {"reason": "consent_not_given", "rows": 3},
        {"reason": "consent_not_recorded", "rows": 3},
    ]
    assert receipt["lawful_basis"] == "consent" and receipt["rows_forgotten"] == 0
    event = _accept_event(db_session, receipt["id"])
    assert event.details["rows_held_back"] == held
    assert event.details["lawful_basis"] == "consent"


def test_a_declared_lawful_basis_is_on_the_receipt_and_in_the_audit_trail(
    client: FlaskClient, partner_a: Any, db_session: Session
) -> None:
    body, account = _prepared_body(lawful_basis="legal_obligation")
    assert account is None
    response = post(client, partner_a.headers, body, extra={"Lawful-Basis": "legal_obligation"})
    assert response.status_code == 201, response.get_json()
    receipt = response.get_json()
    assert receipt["rows_accepted"] == len(ANSWERS)
    assert receipt["lawful_basis"] == "legal_obligation"
    assert receipt["rows_held_back"] is None  # the file was sent whole
    assert _accept_event(db_session, receipt["id"]).details["lawful_basis"] == "legal_obligation"


def test_a_basis_or_a_held_back_account_out_of_the_fixed_lists_is_refused(
    client: FlaskClient, partner_a: Any, db_session: Session
) -> None:
    body, account = _prepared_body()
    assert account is not None
    refused = post(client, partner_a.headers, body, extra={"Lawful-Basis": "because"})
    assert refused.status_code == 400
    assert refused.get_json()["field"] == "Lawful-Basis"
    assert "public_task" in refused.get_json()["detail"]

    unknown_reason = {**account, "held_back": [{"reason": "the survivor said so", "rows": 6}]}
    too_many = {**account, "held_back": [{"reason": "consent_not_given", "rows": 7}]}
    twice = {
        **account,
        "held_back": [
            {"reason": "consent_not_given", "rows": 3},
            {"reason": "consent_not_given", "rows": 3},
        ],
    }
    for bad, says in (
        (unknown_reason, "consent_not_given, consent_not_recorded"),
        (too_many, "more than rows_rejected"),
        (twice, "twice"),
    ):
        response = post(
            client, partner_a.headers, body, extra={"Local-Rejections": json.dumps(bad)}
        )
        assert response.status_code == 400, bad
        assert says in response.get_json()["detail"]
        assert "survivor" not in response.get_json()["detail"]
    assert count(db_session, Upload) == 0
