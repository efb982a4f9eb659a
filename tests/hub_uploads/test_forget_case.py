"""Forgetting one case (issue 16): a survivor's records leave every upload of their partner.

The hub re-seals each batch that held the case without it, under a new data key, deleting the
old row with its wrapped key in the same transaction; receipts count what left, the audit trail
names the case by its pseudonym's digest only, and no later snapshot sees it. A copy of the
database made before still holds the old batch: retiring the key-encryption key shreds it, as
for a withdrawn upload.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from contributors.pseudonym import pseudonymise
from hub.crypto import Keyring, KeyringError, keyring, open_batch
from hub.models import AuditEvent, ForgottenCase, RecordBatch, Upload
from hub.services.snapshot import SnapshotCache, analysis_snapshot, live_snapshot_id
from hub.services.uploads import pseudonym_digest
from tests.hub_queries.conftest import (  # noqa: F401  (fixtures used by name)
    Researcher,
    make_researcher,
    researcher,
)
from tests.hub_uploads.test_uploads_api import PSEUDONYM_KEY, count, post, sample_csv
from tests.hub_uploads.test_withdrawal_shred import (
    copy_database,
    dump_batches,
    file_keyed_app,
    sqlite_file,
)

FORGET = "/v1/uploads/forget"


def _first_case(body: bytes) -> tuple[str, bytes]:
    """Return the first record's pseudonym and its line."""
    line = body.splitlines(keepends=True)[1]
    return line.split(b",", 1)[0].decode(), line


def _forget(client: FlaskClient, headers: dict[str, str], case: str) -> Any:
    return client.post(FORGET, json={"case": case}, headers=headers)


def _uploads_with_a_shared_case(
    client: FlaskClient, partner_a: Any, partner_b: Any, ctdc_file: Path
) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """Partner A holds the case in two uploads, partner B in one (the same pseudonym)."""
    first = sample_csv(ctdc_file)
    case, line = _first_case(first)
    second = sample_csv(ctdc_file, start=1) + line
    ours = [post(client, partner_a.headers, body).get_json() for body in (first, second)]
    theirs = post(client, partner_b.headers, first).get_json()
    assert all("id" in receipt for receipt in [*ours, theirs])
    return case, ours, theirs


def _held(app: APIFlask, session: Session, cache: SnapshotCache, case: str) -> int:
    session.expire_all()
    records = analysis_snapshot(session, keyring(app), cache).records
    return int((records["caseNo"] == case).sum())


def test_a_forgotten_case_leaves_every_upload_and_every_later_snapshot(
    app: APIFlask,
    client: FlaskClient,
    partner_a: Any,
    partner_b: Any,
    ctdc_file: Path,
    db_session: Session,
) -> None:
    case, ours, theirs = _uploads_with_a_shared_case(client, partner_a, partner_b, ctdc_file)
    # The hub's own cache: a snapshot built before must not be served after.
    cache: SnapshotCache = app.extensions["ctdhub.snapshots"]
    before = analysis_snapshot(db_session, keyring(app), cache)
    assert _held(app, db_session, cache, case) == 3

    response = _forget(client, partner_a.headers, case)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer == {
        "records_removed": 2,
        "uploads": [receipt["id"] for receipt in ours],
        "repeated": False,
    }

    db_session.expire_all()
    after = analysis_snapshot(db_session, keyring(app), cache)
    assert after.snapshot_id == live_snapshot_id(db_session) != before.snapshot_id
    assert len(after.records) == len(before.records) - 2
    assert _held(app, db_session, cache, case) == 1  # partner B's record is B's to withdraw

    # The receipts stay true: what was accepted, and what has left since.
    for receipt in ours:
        shown = client.get(f"/v1/uploads/{receipt['id']}", headers=partner_a.headers).get_json()
        assert shown["rows_accepted"] == receipt["rows_accepted"]
        assert shown["rows_forgotten"] == 1 and shown["status"] == "accepted"
        batch = db_session.scalars(
            select(RecordBatch).where(RecordBatch.upload_id == receipt["id"])
        ).one()
        assert batch.row_count == receipt["rows_accepted"] - 1
    shown = client.get(f"/v1/uploads/{theirs['id']}", headers=partner_b.headers).get_json()
    assert shown["rows_forgotten"] == 0

    # Audited once, in the same transaction, by the pseudonym's digest alone.
    events = db_session.scalars(
        select(AuditEvent).where(AuditEvent.tag == "ingest:case:forget")
    ).all()
    assert len(events) == 1
    assert events[0].details == {
        "pseudonym_sha256": pseudonym_digest(case),
        "records_removed": 2,
        "uploads": [receipt["id"] for receipt in ours],
    }
    everything = json.dumps(
        [[e.tag, e.details] for e in db_session.scalars(select(AuditEvent))], default=str
    )
    assert case not in everything
    remembered = db_session.scalars(select(ForgottenCase)).one()
    assert remembered.pseudonym_sha256 == pseudonym_digest(case) != case

    # A repeated request changes nothing and says so.
    again = _forget(client, partner_a.headers, case)
    assert again.status_code == 200
    assert again.get_json() == {"records_removed": 2, "uploads": [], "repeated": True}
    assert count(db_session, ForgottenCase) == 1
    assert _held(app, db_session, cache, case) == 1


def test_queries_after_a_forget_measure_a_snapshot_without_the_case(
    app: APIFlask,
    client: FlaskClient,
    partner_a: Any,
    researcher: Researcher,  # noqa: F811  (the fixture imported above)
    ctdc_file: Path,
    db_session: Session,
) -> None:
    body = sample_csv(ctdc_file)
    case, _ = _first_case(body)
    rows = post(client, partner_a.headers, body).get_json()["rows_accepted"]
    count_all = {"measure": {"kind": "count"}, "spend": {"rho": 0.05}}
    first = client.post("/v1/queries", json=count_all, headers=researcher.headers).get_json()
    # The DP snapshot of the first answer is cached by its analysis snapshot's id.
    assert first["snapshot_id"] in app.extensions["ctdhub.dp_snapshots"]._items

    assert _forget(client, partner_a.headers, case).status_code == 200
    second = client.post("/v1/queries", json=count_all, headers=researcher.headers)
    assert second.status_code == 201, second.get_json()
    answer = second.get_json()
    db_session.expire_all()
    live = live_snapshot_id(db_session)
    assert answer["snapshot_id"] == live != first["snapshot_id"]
    measured = analysis_snapshot(db_session, keyring(app), app.extensions["ctdhub.snapshots"])
    assert measured.snapshot_id == live and len(measured.records) == rows - 1
    assert not (measured.records["caseNo"] == case).any()


def test_an_unknown_case_and_another_partners_case_answer_alike(
    client: FlaskClient, partner_a: Any, partner_b: Any, ctdc_file: Path, db_session: Session
) -> None:
    body = sample_csv(ctdc_file)
    case, _ = _first_case(body)
    receipt = post(client, partner_a.headers, body).get_json()
    unknown = _forget(client, partner_b.headers, pseudonymise("NO-SUCH-CASE", PSEUDONYM_KEY))
    elsewhere = _forget(client, partner_b.headers, case)
    assert unknown.status_code == elsewhere.status_code == 404
    assert unknown.get_json()["detail"] == elsewhere.get_json()["detail"]
    assert case not in elsewhere.get_data(as_text=True)
    # Nothing changed: partner A's upload holds the case still; nothing was recorded.
    db_session.expire_all()
    assert db_session.get_one(Upload, receipt["id"]).rows_forgotten == 0
    assert count(db_session, ForgottenCase) == 0
    tags = db_session.scalars(select(AuditEvent.tag)).all()
    assert "ingest:case:forget" not in tags


def test_a_value_that_is_no_pseudonym_is_refused_without_echo(
    client: FlaskClient, partner_a: Any
) -> None:
    response = _forget(client, partner_a.headers, "Maria Lopez 1990")
    assert response.status_code == 400
    problem = response.get_json()
    assert problem["field"] == "case" and "Maria" not in json.dumps(problem)
    assert client.post(FORGET, json={}, headers=partner_a.headers).status_code == 422


def test_forgetting_needs_the_write_scope(
    client: FlaskClient, partner_a: Any, ctdc_file: Path
) -> None:
    case, _ = _first_case(sample_csv(ctdc_file))
    assert client.post(FORGET, json={"case": case}).status_code == 401


def test_the_old_batch_of_a_forgotten_case_is_shredded(
    database_url: str,
    app: APIFlask,
    client: FlaskClient,
    partner_a: Any,
    ctdc_file: Path,
    tmp_path: Path,
) -> None:
    body = sample_csv(ctdc_file)
    case, _ = _first_case(body)
    receipt = post(client, partner_a.headers, body).get_json()
    ring: Keyring = app.extensions["ctdhub.keyring"]
    file_app = file_keyed_app(database_url, ring, tmp_path / "instance")
    copy = dump_batches(copy_database(database_url, tmp_path / "before.sqlite3"))
    old = copy[receipt["id"]]
    assert open_batch(ring, old.sealed, old.aad)

    assert _forget(client, partner_a.headers, case).status_code == 200
    now = dump_batches(database_url)[receipt["id"]]
    # A new data key and new ciphertext; the old wrapped key is in no row of the database.
    assert now.sealed.wrapped_key != old.sealed.wrapped_key
    assert now.sealed.ciphertext != old.sealed.ciphertext
    if database_url.startswith("sqlite"):
        path = sqlite_file(database_url)
        wal = Path(f"{path}-wal")
        on_disk = path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
        middle = len(old.sealed.ciphertext) // 2
        assert old.sealed.wrapped_key not in on_disk
        assert old.sealed.ciphertext[middle : middle + 48] not in on_disk

    # The copy made before still opens with today's keyring; after retirement it cannot.
    assert open_batch(keyring(file_app), old.sealed, old.aad)
    from hub.cli import main

    result = file_app.test_cli_runner().invoke(
        main, ["keys", "rotate", "--key-id", "k-after-forget", "--retire"]
    )
    assert result.exit_code == 0, result.output
    remaining = keyring(file_app)
    with pytest.raises(KeyringError, match="no key"):
        open_batch(remaining, old.sealed, old.aad)
    with file_app.extensions["ctdhub.sessionmaker"]() as session:
        records = analysis_snapshot(session, remaining, SnapshotCache(0)).records
        assert len(records) == receipt["rows_accepted"] - 1
        assert not (records["caseNo"] == case).any()
    file_app.extensions["ctdhub.engine"].dispose()


def test_a_forgotten_case_is_not_taken_again(
    client: FlaskClient, partner_a: Any, partner_b: Any, ctdc_file: Path, db_session: Session
) -> None:
    body = sample_csv(ctdc_file)
    case, line = _first_case(body)
    assert post(client, partner_a.headers, body).status_code == 201
    assert _forget(client, partner_a.headers, case).status_code == 200
    later = sample_csv(ctdc_file, start=2)
    rows = later.count(b"\n") - 1
    refused = post(client, partner_a.headers, later + line)
    assert refused.status_code == 422
    problem = refused.get_json()
    assert (
        f"1 row(s) hold a case your organisation asked the hub to forget (row(s) {rows + 1})"
        in (problem["detail"])
    )
    assert case not in refused.get_data(as_text=True)
    assert count(db_session, Upload) == 1
    # Another partner's own record of the same person is theirs to keep or forget.
    assert post(client, partner_b.headers, later + line).status_code == 201


def test_concurrent_forgets_of_one_upload_all_take_effect(
    app: APIFlask, client: FlaskClient, partner_a: Any, ctdc_file: Path, db_session: Session
) -> None:
    body = sample_csv(ctdc_file)
    lines = body.splitlines(keepends=True)[1:4]
    cases = [line.split(b",", 1)[0].decode() for line in lines]
    receipt = post(client, partner_a.headers, body).get_json()
    # Two requests for each of three cases of one upload, all started together.
    wanted = [case for case in cases for _ in range(2)]
    barrier = threading.Barrier(len(wanted))
    answers: list[tuple[str, int, dict[str, Any]]] = []

    def run(case: str) -> None:
        own = app.test_client()
        barrier.wait()
        response = _forget(own, partner_a.headers, case)
        answers.append((case, response.status_code, response.get_json()))

    threads = [threading.Thread(target=run, args=(case,)) for case in wanted]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(status for _, status, _ in answers) == [200] * len(wanted)
    for case in cases:
        outcomes = [answer for each, _, answer in answers if each == case]
        assert sorted(answer["repeated"] for answer in outcomes) == [False, True]
        assert {answer["records_removed"] for answer in outcomes} == {1}
    db_session.expire_all()
    assert db_session.get_one(Upload, receipt["id"]).rows_forgotten == 3
    records = analysis_snapshot(db_session, keyring(app), SnapshotCache(0)).records
    assert len(records) == receipt["rows_accepted"] - 3
    assert not records["caseNo"].isin(cases).any()
