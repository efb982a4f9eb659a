"""Linkage encodings travel with an upload, are sealed with its records, and give person keys.

The partners' toolkits add one keyed encoding per case (``contributors.linkage``); the hub
takes the column off before validation, seals the encodings in the record batch under its data
key, and links them, within and across partners, into the snapshot's hub-internal person key.
A withdrawal or a forgotten case takes the encodings along. No API answer carries an encoding
or a person key.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from bench.linkage_people import people
from contributors.linkage import ENCODING_COLUMN, Person, encode_all, encoding_text
from disclosure_control.person import PERSON_COLUMN
from hub.crypto import keyring
from hub.models import AuditEvent, RecordBatch, Upload
from tests.hub_uploads.test_uploads_api import count, post, sample_csv, snapshot

SECRET = "linkage-secret-shared-by-partners-0001"


def with_encodings(body: bytes, encodings: list[bytes | None]) -> bytes:
    """Add the toolkit's encodings column to a hub-ready CSV, one cell per record."""
    header, *rows = body.splitlines()
    assert len(rows) == len(encodings)
    lines = [header + b"," + ENCODING_COLUMN.encode()]
    lines += [
        row + b"," + encoding_text(e).encode() for row, e in zip(rows, encodings, strict=True)
    ]
    return b"\n".join(lines) + b"\n"


def typo(person: Person) -> Person:
    """The same person as another partner wrote them: two letters of the given name swapped."""
    name = person.given_name or ""
    return replace(person, given_name=name[:1] + name[2:3] + name[1:2] + name[3:])


def distinct_people(count: int, seed: int) -> list[Person]:
    """Generated people no two of whom share a given or a family name.

    The generator draws names Zipf-like from small pools, so strangers born in one year often
    share a name; the links here must be the duplicates made on purpose and no others.
    """
    given: set[str | None] = set()
    family: set[str | None] = set()
    out = []
    for person in people(count * 40, seed=seed):
        if person.given_name in given or person.family_name in family:
            continue
        given.add(person.given_name)
        family.add(person.family_name)
        out.append(person)
    assert len(out) >= count
    return out[:count]


def _rows(body: bytes) -> int:
    return body.count(b"\n") - 1


def _two_partners(
    client: FlaskClient, partner_a: Any, partner_b: Any, ctdc_file: Path
) -> tuple[dict[str, Any], dict[str, Any], list[bytes], list[bytes]]:
    """Partner A's cases are people 0..n-1; partner B's first three are A's first three again."""
    body_a, body_b = sample_csv(ctdc_file, step=1000), sample_csv(ctdc_file, step=1000, start=1)
    crowd = distinct_people(_rows(body_a) + _rows(body_b), seed=21)
    ours = crowd[: _rows(body_a)]
    theirs = [typo(p) for p in ours[:3]] + crowd[_rows(body_a) + 3 :]
    enc_a, enc_b = encode_all(ours, SECRET), encode_all(theirs, SECRET)
    a = post(client, partner_a.headers, with_encodings(body_a, list(enc_a)))
    b = post(client, partner_b.headers, with_encodings(body_b, list(enc_b)))
    assert a.status_code == 201, a.get_json()
    assert b.status_code == 201, b.get_json()
    return a.get_json(), b.get_json(), enc_a, enc_b


def _batch_frame(app: APIFlask, session: Session, upload_id: str) -> pd.DataFrame:
    from hub.services.uploads import open_record_batch

    session.expire_all()
    upload = session.get_one(Upload, upload_id)
    batch = session.scalars(select(RecordBatch).where(RecordBatch.upload_id == upload_id)).one()
    return open_record_batch(keyring(app), batch, upload.organisation_id)


def test_encodings_are_sealed_with_the_records_and_link_people_across_partners(
    app: APIFlask,
    client: FlaskClient,
    partner_a: Any,
    partner_b: Any,
    ctdc_file: Path,
    db_session: Session,
) -> None:
    a, b, enc_a, enc_b = _two_partners(client, partner_a, partner_b, ctdc_file)
    # Sealed in the batch, under its data key, one per record.
    sealed = _batch_frame(app, db_session, a["id"])
    assert sealed[ENCODING_COLUMN].tolist() == enc_a
    audit = db_session.scalars(select(AuditEvent).where(AuditEvent.subject_id == a["id"])).one()
    assert audit.details["linkage_encodings"] == len(enc_a)

    records = snapshot(app, db_session)
    assert ENCODING_COLUMN not in records.columns
    keys = records[PERSON_COLUMN]
    assert str(keys.dtype) == "int64"
    n_a = len(enc_a)
    # B's first three cases are A's first three people; everyone else is a person of their own.
    assert keys.iloc[n_a : n_a + 3].tolist() == keys.iloc[:3].tolist()
    assert keys.nunique() == len(records) - 3


def test_no_encoding_each_record_its_own_person_unless_one_case(
    app: APIFlask, client: FlaskClient, partner_a: Any, ctdc_file: Path, db_session: Session
) -> None:
    body = sample_csv(ctdc_file)
    assert post(client, partner_a.headers, body).status_code == 201
    # The same case sent again in a second upload is the same person.
    second = sample_csv(ctdc_file, start=1) + body.splitlines(keepends=True)[1]
    assert post(client, partner_a.headers, second).status_code == 201
    records = snapshot(app, db_session)
    assert records[PERSON_COLUMN].nunique() == len(records) - 1
    case = records["caseNo"].iloc[0]
    assert records.loc[records["caseNo"] == case, PERSON_COLUMN].nunique() == 1


def test_bad_encodings_name_row_field_and_why_and_store_nothing(
    client: FlaskClient, partner_a: Any, ctdc_file: Path, db_session: Session
) -> None:
    body = sample_csv(ctdc_file)
    encodings: list[bytes | None] = list(encode_all(people(_rows(body), seed=5), SECRET))
    cells = [encoding_text(e) for e in encodings]
    cells[1] = "not base64!"
    cells[2] = base64.b64encode(b"\x01" * 64).decode()
    cells[3] = ""  # a case without an encoding is fine
    header, *rows = body.splitlines()
    bad = b"\n".join(
        [header + b"," + ENCODING_COLUMN.encode()]
        + [row + b"," + cell.encode() for row, cell in zip(rows, cells, strict=True)]
    )
    response = post(client, partner_a.headers, bad + b"\n")
    assert response.status_code == 422
    problem = response.get_json()
    assert problem["linkage_errors"] == [
        {
            "row": 2,
            "field": ENCODING_COLUMN,
            "reason": "not base64 (the toolkit writes standard base64)",
        },
        {"row": 3, "field": ENCODING_COLUMN, "reason": "64 bytes, where an encoding is 128 bytes"},
    ]
    assert "row 2, field linkageEncoding" in problem["detail"]
    assert cells[2] not in json.dumps(problem)
    assert count(db_session, Upload) == 0
    assert count(db_session, RecordBatch) == 0


def test_forget_and_withdraw_take_the_encodings_along(
    app: APIFlask,
    client: FlaskClient,
    partner_a: Any,
    partner_b: Any,
    ctdc_file: Path,
    db_session: Session,
) -> None:
    a, b, enc_a, _ = _two_partners(client, partner_a, partner_b, ctdc_file)
    before = snapshot(app, db_session)
    case = before["caseNo"].iloc[0]
    n_a = len(enc_a)
    assert before[PERSON_COLUMN].iloc[0] == before[PERSON_COLUMN].iloc[n_a]

    response = client.post("/v1/uploads/forget", json={"case": case}, headers=partner_a.headers)
    assert response.status_code == 200, response.get_json()
    sealed = _batch_frame(app, db_session, a["id"])
    assert sealed[ENCODING_COLUMN].tolist() == enc_a[1:]  # the forgotten case's encoding left
    after = snapshot(app, db_session)
    # B's record of that person is now a person of its own; the other two links stand.
    assert after[PERSON_COLUMN].nunique() == len(after) - 2

    assert client.delete(f"/v1/uploads/{b['id']}", headers=partner_b.headers).status_code in (
        200,
        204,
    )
    db_session.expire_all()
    batch = db_session.scalars(select(RecordBatch).where(RecordBatch.upload_id == b["id"])).one()
    assert batch.ciphertext is None and batch.wrapped_key is None
    alone = snapshot(app, db_session)
    assert alone[PERSON_COLUMN].nunique() == len(alone) == n_a - 1


def test_no_api_answer_or_log_line_carries_an_encoding_or_a_person_key(
    app: APIFlask,
    client: FlaskClient,
    partner_a: Any,
    partner_b: Any,
    ctdc_file: Path,
    db_session: Session,
    capsys: pytest.CaptureFixture[str],
) -> None:
    capsys.readouterr()
    a, b, enc_a, enc_b = _two_partners(client, partner_a, partner_b, ctdc_file)
    keys = snapshot(app, db_session)[PERSON_COLUMN]
    assert keys.nunique() < len(keys)  # people were linked while the logs were captured
    # A refused upload is logged; its good cells are A's encodings again.
    body = sample_csv(ctdc_file, step=1000, start=2)
    cells = [encoding_text(enc_a[i % len(enc_a)]) for i in range(_rows(body))]
    cells[0] = "not base64!"
    header, *rows = body.splitlines()
    bad = b"\n".join(
        [header + b"," + ENCODING_COLUMN.encode()]
        + [row + b"," + cell.encode() for row, cell in zip(rows, cells, strict=True)]
    )
    assert post(client, partner_a.headers, bad + b"\n").status_code == 422
    # A refused sign-in always leaves a log line: proof the capture below sees the hub's log.
    client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(partner_a.client_id, "a-wrong-secret"),
    )
    answers = [json.dumps(a), json.dumps(b)]
    for partner in (partner_a, partner_b):
        listing = client.get("/v1/uploads", headers=partner.headers)
        answers.append(listing.get_data(as_text=True))
        for receipt in listing.get_json()["uploads"]:
            shown = client.get(f"/v1/uploads/{receipt['id']}", headers=partner.headers)
            answers.append(shown.get_data(as_text=True))
    logged = capsys.readouterr().err
    assert logged.strip()  # the hub did log: the check below means something
    assert PERSON_COLUMN not in logged
    text = "\n".join([*answers, logged])
    assert PERSON_COLUMN not in text and ENCODING_COLUMN not in text
    for encoding in [*enc_a, *enc_b]:
        assert encoding_text(encoding)[:24] not in text
