"""The upload pipeline through the Flask test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contributors.formats import read_table
from contributors.normalise import validate_records
from contributors.pseudonym import pseudonymise
from disclosure_control.person import PERSON_COLUMN
from hub.crypto import DecryptionError
from hub.models import AuditEvent, RecordBatch, Upload
from hub.services.snapshot import SnapshotCache, analysis_snapshot
from tests.contributors_schema.xlsx_bombs import one_huge_cell

CSV = "text/csv"


#: The test partner's pseudonym key: the hub takes case ids only as the toolkit's pseudonyms.
PSEUDONYM_KEY = "test-partner-pseudonym-key-" + "p" * 32


def pseudonymised_csv(body: bytes) -> bytes:
    """Replace CTDC's case numbers (the first column) by case pseudonyms, as ``prepare`` does."""
    header, *rows = body.splitlines(keepends=True)
    assert header.startswith(b"caseNo,")
    out = [header]
    for row in rows:
        case, rest = row.split(b",", 1)
        out.append(pseudonymise(case.decode(), PSEUDONYM_KEY).encode() + b"," + rest)
    return b"".join(out)


def sample_csv(ctdc_file: Path, step: int = 250, start: int = 0) -> bytes:
    """Every ``step``-th CTDC record from ``start``, as CSV bytes (a deterministic sample) with
    its case numbers pseudonymised."""
    lines = ctdc_file.read_bytes().splitlines(keepends=True)
    return pseudonymised_csv(b"".join([lines[0], *lines[1 + start :: step]]))


def post(
    client: FlaskClient,
    headers: dict[str, str],
    body: bytes,
    *,
    media_type: str = CSV,
    query: str = "",
    extra: dict[str, str] | None = None,
) -> Any:
    return client.post(
        f"/v1/uploads{query}",
        data=body,
        headers={**headers, "Content-Type": media_type, **(extra or {})},
    )


def count(session: Session, model: Any) -> int:
    session.expire_all()
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def snapshot(app: APIFlask, session: Session) -> pd.DataFrame:
    from hub.crypto import keyring

    return analysis_snapshot(session, keyring(app), SnapshotCache(0)).records


def test_upload_stores_receipt_batch_and_audit(
    client: FlaskClient, partner_a: Any, ctdc_file: Path, db_session: Session
) -> None:
    body = sample_csv(ctdc_file)
    response = post(client, partner_a.headers, body)
    assert response.status_code == 201, response.get_json()
    receipt = response.get_json()
    rows = body.count(b"\n") - 1
    assert receipt["rows_total"] == receipt["rows_accepted"] == rows
    assert receipt["rows_rejected"] == 0
    assert receipt["sha256"] == hashlib.sha256(body).hexdigest()
    assert receipt["status"] == "accepted"
    assert receipt["organisation"] == partner_a.organisation_id
    assert count(db_session, Upload) == count(db_session, RecordBatch) == 1
    tags = db_session.scalars(select(AuditEvent.tag)).all()
    assert "ingest:upload:accept" in tags

    listed = client.get("/v1/uploads", headers=partner_a.headers).get_json()["uploads"]
    assert [u["id"] for u in listed] == [receipt["id"]]
    shown = client.get(f"/v1/uploads/{receipt['id']}", headers=partner_a.headers)
    assert shown.get_json()["sha256"] == receipt["sha256"]


def test_identical_body_is_a_no_op_returning_the_first_receipt(
    client: FlaskClient, partner_a: Any, ctdc_file: Path, db_session: Session
) -> None:
    body = sample_csv(ctdc_file)
    first = post(client, partner_a.headers, body)
    again = post(client, partner_a.headers, body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json()["id"] == first.get_json()["id"]
    assert count(db_session, RecordBatch) == 1


def test_idempotency_key(
    client: FlaskClient, partner_a: Any, ctdc_file: Path, db_session: Session
) -> None:
    body = sample_csv(ctdc_file)
    key = {"Idempotency-Key": "batch-2021-07-a"}
    first = post(client, partner_a.headers, body, extra=key)
    replay = post(client, partner_a.headers, body, extra=key)
    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.get_json() == first.get_json()
    other = post(client, partner_a.headers, sample_csv(ctdc_file, start=1), extra=key)
    assert other.status_code == 409
    assert other.mimetype == "application/problem+json"
    assert count(db_session, RecordBatch) == 1


def test_content_digest_is_checked(client: FlaskClient, partner_a: Any, ctdc_file: Path) -> None:
    body = sample_csv(ctdc_file)
    good = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
    bad = "sha-256=:" + base64.b64encode(hashlib.sha256(b"other").digest()).decode() + ":"
    refused = post(client, partner_a.headers, body, extra={"Content-Digest": bad})
    assert refused.status_code == 400
    assert "Content-Digest" in refused.get_json()["detail"]
    accepted = post(client, partner_a.headers, body, extra={"Content-Digest": good})
    assert accepted.status_code == 201


def test_size_cap(app: APIFlask, client: FlaskClient, partner_a: Any, ctdc_file: Path) -> None:
    app.config["MAX_UPLOAD_BYTES"] = 2048
    app.config["MAX_CONTENT_LENGTH"] = 2048
    response = post(client, partner_a.headers, sample_csv(ctdc_file))
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert "2048 bytes" in response.get_json()["detail"]


def _with_bad_rows(body: bytes) -> bytes:
    frame = pd.read_csv(io.BytesIO(body), dtype="string", keep_default_na=False)
    frame.loc[2, "ageBroad"] = "ancient"
    frame.loc[5, "yearOfRegistration"] = "1890"
    return frame.to_csv(index=False).encode()


def test_invalid_rows_reject_the_whole_upload_with_a_report(
    client: FlaskClient, partner_a: Any, ctdc_file: Path, db_session: Session
) -> None:
    body = _with_bad_rows(sample_csv(ctdc_file))
    response = post(client, partner_a.headers, body)
    assert response.status_code == 422
    problem = response.get_json()
    report = problem["report"]
    assert report["rows_rejected"] == 2
    assert report["rows_total"] == report["rows_accepted"] + report["rows_rejected"]
    by_field = {e["field"]: e for e in report["errors"]}
    assert by_field["ageBroad"]["row"] == 3
    assert by_field["yearOfRegistration"]["row"] == 6
    assert "ancient" not in response.get_data(as_text=True)
    assert count(db_session, Upload) == count(db_session, RecordBatch) == 0

    partial = post(client, partner_a.headers, body, query="?accept_valid=true")
    assert partial.status_code == 201
    assert partial.get_json()["rows_rejected"] == 2
    assert partial.get_json()["rows_accepted"] == report["rows_total"] - 2


def test_identifier_columns_are_refused_without_echoing_values(
    client: FlaskClient, partner_a: Any, ctdc_file: Path, db_session: Session
) -> None:
    frame = pd.read_csv(io.BytesIO(sample_csv(ctdc_file)), dtype="string", keep_default_na=False)
    frame["firstName"] = "Amaranta"
    frame["phoneNumber"] = "+44 20 7946 0958"
    response = post(client, partner_a.headers, frame.to_csv(index=False).encode())
    assert response.status_code == 422
    columns = {f["column"] for f in response.get_json()["identifier_findings"]}
    assert {"column 55", "column 56"} <= columns  # by position: a header may itself be a value
    text = response.get_data(as_text=True)
    assert "Amaranta" not in text and "7946" not in text
    assert count(db_session, Upload) == 0


def test_a_file_without_header_row_is_refused_without_echoing_its_first_row(
    client: FlaskClient, partner_a: Any, db_session: Session
) -> None:
    # issue 10 item 7: the first data row (a name, a phone number) stood where the header goes
    rows = [
        ["Amaranta Buendia", "+44 20 7946 0958", "Female", "P1234567A"],
        ["Remedios Moscote", "+44 20 7946 0111", "Female", "P7654321B"],
    ]
    body = "\n".join(",".join(row) for row in rows).encode() + b"\n"
    response = post(client, partner_a.headers, body)
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    for secret in ("Amaranta", "Buendia", "7946", "0958", "P1234567A", "Female"):
        assert secret not in text
    assert "column(s) column 2, column 4" in response.get_json()["detail"]
    # the same header twice: named by position, not echoed
    body = b"caseNo,Amaranta Buendia,Amaranta Buendia\n" + f"{1:064x},x,y\n".encode()
    response = post(client, partner_a.headers, body)
    assert response.status_code == 422
    assert "Amaranta" not in response.get_data(as_text=True)
    assert "columns 2 and 3" in response.get_json()["detail"]
    assert count(db_session, Upload) == 0


def test_an_xlsx_bomb_is_refused_with_413_naming_the_limit(
    client: FlaskClient, partner_a: Any, db_session: Session
) -> None:
    # issue 11 item 2: a small workbook whose one cell unpacks to 50 MB
    response = post(client, partner_a.headers, one_huge_cell(50_000_000), media_type=XLSX)
    assert response.status_code == 413
    problem = response.get_json()
    assert problem["limit"] == "XLSX_MAX_COMPRESSION_RATIO"
    assert "XLSX_MAX_COMPRESSION_RATIO" in problem["detail"]
    assert count(db_session, Upload) == 0


def test_a_table_over_the_row_setting_is_refused_with_413(
    app: APIFlask, client: FlaskClient, partner_a: Any, ctdc_file: Path
) -> None:
    app.config["READ_MAX_ROWS"] = 100
    response = post(client, partner_a.headers, sample_csv(ctdc_file))
    assert response.status_code == 413
    assert response.get_json()["limit"] == "READ_MAX_ROWS"
    assert "more than 100 data rows" in response.get_json()["detail"]


def test_tsv_and_json_lines_uploads(client: FlaskClient, partner_a: Any, ctdc_file: Path) -> None:
    frame = pd.read_csv(io.BytesIO(sample_csv(ctdc_file)), dtype="string", keep_default_na=False)
    tsv = frame.to_csv(index=False, sep="\t").encode()
    response = post(client, partner_a.headers, tsv, media_type="text/tab-separated-values")
    assert response.status_code == 201, response.get_json()
    lines = "\n".join(json.dumps(r) for r in frame.iloc[::-1].to_dict("records")).encode()
    response = post(client, partner_a.headers, lines, media_type="application/x-ndjson")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["rows_accepted"] == len(frame)


def test_unknown_media_type_and_empty_body(client: FlaskClient, partner_a: Any) -> None:
    assert post(client, partner_a.headers, b"x", media_type="text/plain").status_code == 415
    assert post(client, partner_a.headers, b"").status_code == 400


def test_json_upload(client: FlaskClient, partner_a: Any, ctdc_file: Path) -> None:
    frame = pd.read_csv(io.BytesIO(sample_csv(ctdc_file)), dtype="string", keep_default_na=False)
    body = json.dumps(frame.to_dict(orient="records")).encode()
    response = post(client, partner_a.headers, body, media_type="application/json")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["rows_accepted"] == len(frame)


def test_partners_never_see_or_touch_each_other(
    client: FlaskClient, partner_a: Any, partner_b: Any, ctdc_file: Path
) -> None:
    upload_id = post(client, partner_a.headers, sample_csv(ctdc_file)).get_json()["id"]
    assert client.get("/v1/uploads", headers=partner_b.headers).get_json()["uploads"] == []
    for method in (client.get, client.delete):
        response = method(f"/v1/uploads/{upload_id}", headers=partner_b.headers)
        assert response.status_code == 404
    # The same body from another partner is that partner's own upload.
    again = post(client, partner_b.headers, sample_csv(ctdc_file))
    assert again.status_code == 201 and again.get_json()["id"] != upload_id
    assert client.get(f"/v1/uploads/{upload_id}", headers=partner_a.headers).status_code == 200


def test_withdrawal_destroys_the_key_and_keeps_the_receipt(
    app: APIFlask, client: FlaskClient, partner_a: Any, ctdc_file: Path, db_session: Session
) -> None:
    first = post(client, partner_a.headers, sample_csv(ctdc_file)).get_json()
    second = post(client, partner_a.headers, sample_csv(ctdc_file, start=1)).get_json()
    assert len(snapshot(app, db_session)) == first["rows_accepted"] + second["rows_accepted"]

    response = client.delete(f"/v1/uploads/{first['id']}", headers=partner_a.headers)
    assert response.status_code == 200
    assert response.get_json()["status"] == "withdrawn"
    db_session.expire_all()
    batch = db_session.scalars(
        select(RecordBatch).where(RecordBatch.upload_id == first["id"])
    ).one()
    assert batch.wrapped_key is None and batch.ciphertext is None
    assert len(snapshot(app, db_session)) == second["rows_accepted"]
    shown = client.get(f"/v1/uploads/{first['id']}", headers=partner_a.headers).get_json()
    assert shown["status"] == "withdrawn" and shown["rows_accepted"] == first["rows_accepted"]
    tags = db_session.scalars(select(AuditEvent.tag)).all()
    assert "ingest:upload:withdraw" in tags
    # A withdrawn body may be uploaded again: it is a new upload.
    again = post(client, partner_a.headers, sample_csv(ctdc_file))
    assert again.status_code == 201 and again.get_json()["id"] != first["id"]


def test_tampered_ciphertext_fails_loudly(
    app: APIFlask, client: FlaskClient, partner_a: Any, ctdc_file: Path, db_session: Session
) -> None:
    post(client, partner_a.headers, sample_csv(ctdc_file))
    batch = db_session.scalars(select(RecordBatch)).one()
    assert batch.ciphertext is not None
    damaged = bytearray(batch.ciphertext)
    damaged[100] ^= 0xFF
    batch.ciphertext = bytes(damaged)
    db_session.commit()
    with pytest.raises(DecryptionError):
        snapshot(app, db_session)


def test_nothing_readable_at_rest(
    client: FlaskClient, partner_a: Any, ctdc_file: Path, db_session: Session
) -> None:
    post(client, partner_a.headers, sample_csv(ctdc_file))
    batch = db_session.scalars(select(RecordBatch)).one()
    assert batch.ciphertext is not None
    for marker in (b"Female", b"ageBroad", b"PAR1", b"Case Management"):
        assert marker not in batch.ciphertext


@pytest.mark.slow
def test_whole_ctdc_file_round_trips_exactly(
    app: APIFlask, client: FlaskClient, partner_a: Any, ctdc_file: Path, db_session: Session
) -> None:
    body = pseudonymised_csv(ctdc_file.read_bytes())
    response = post(client, partner_a.headers, body)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["rows_accepted"] == 97_750
    expected = validate_records(read_table(body, media_type="text/csv")).records
    stored = snapshot(app, db_session)
    # Besides the records, the snapshot's hub-internal person key: without linkage encodings
    # and with every case number once, each record is a person of its own.
    assert stored[PERSON_COLUMN].is_unique
    pd.testing.assert_frame_equal(
        stored.drop(columns=[PERSON_COLUMN]).reset_index(drop=True),
        expected.reset_index(drop=True),
        check_exact=True,
    )


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def test_xlsx_and_ctdc_export_uploads(client: FlaskClient, partner_a: Any, ctdc_file: Path) -> None:
    frame = pd.read_csv(
        io.BytesIO(sample_csv(ctdc_file, step=400)), dtype="string", keep_default_na=False
    )
    workbook = io.BytesIO()
    frame.to_excel(workbook, index=False)
    response = post(client, partner_a.headers, workbook.getvalue(), media_type=XLSX)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["rows_accepted"] == len(frame)

    # CTDC's website export: ';'-separated, a terms-of-use text as its first column.
    export = frame.iloc[::-1].copy()
    export.insert(0, "By using this data you agree to the CTDC terms of use", "")
    body = export.to_csv(index=False, sep=";").encode()
    response = post(client, partner_a.headers, body)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["rows_accepted"] == len(frame)


def test_a_hub_without_a_keyring_refuses_uploads_clearly(
    app: APIFlask, client: FlaskClient, partner_a: Any, ctdc_file: Path, db_session: Session
) -> None:
    app.extensions["ctdhub.keyring"] = None
    response = post(client, partner_a.headers, sample_csv(ctdc_file))
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert "ctdhub keys init" in response.get_json()["detail"]
    assert count(db_session, Upload) == 0
