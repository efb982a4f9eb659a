"""Key rotation through the CLI, the snapshot cache, and the receipt invariant."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd
from apiflask import APIFlask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from contributors.pseudonym import pseudonymise
from hub.crypto import Keyring
from hub.models import AuditEvent, RecordBatch
from hub.services.snapshot import SnapshotCache, analysis_snapshot
from tests.hub_uploads.test_uploads_api import PSEUDONYM_KEY, post, sample_csv


def test_keys_rotate_rewraps_every_data_key(
    database_url: str, tmp_path: Path, client: FlaskClient, partner_a: Any, ctdc_file: Path
) -> None:
    # The app fixture takes its keyring from a setting; rotation needs a keyring file, so
    # a second app on the same database reads the same key from a file.
    from hub import create_app
    from hub.crypto import write_keyring

    for start in (0, 1):
        assert (
            post(client, partner_a.headers, sample_csv(ctdc_file, start=start)).status_code == 201
        )
    ring: Keyring = client.application.extensions["ctdhub.keyring"]
    file_app = create_app({"DATABASE_URL": database_url})
    file_app.instance_path = str(tmp_path)
    write_keyring(file_app, ring)

    from hub.cli import main

    runner = file_app.test_cli_runner()
    result = runner.invoke(main, ["keys", "rotate", "--key-id", "k-2027"])
    assert result.exit_code == 0, result.output
    assert "re-wrapped 2 data key(s)" in result.output

    with file_app.extensions["ctdhub.sessionmaker"]() as session:
        batches = session.scalars(select(RecordBatch)).all()
        assert {b.key_id for b in batches} == {"k-2027"}
        from hub.crypto import keyring

        rotated = keyring(file_app)
        assert rotated.active == "k-2027" and ring.active in rotated.keys
        only_new = Keyring(active="k-2027", keys={"k-2027": rotated.keys["k-2027"]})
        records = analysis_snapshot(session, only_new, SnapshotCache(0)).records
        assert len(records) == sum(b.row_count for b in batches)
        assert "admin:keys:rotate" in session.scalars(select(AuditEvent.tag)).all()
    file_app.extensions["ctdhub.engine"].dispose()


def test_snapshot_is_cached_by_its_set_of_batches(
    app: APIFlask, client: FlaskClient, partner_a: Any, ctdc_file: Path, db_session: Session
) -> None:
    cache = SnapshotCache(2)
    ring: Keyring = app.extensions["ctdhub.keyring"]
    empty = analysis_snapshot(db_session, ring, cache)
    assert len(empty.records) == 0 and list(empty.records.columns)
    first = post(client, partner_a.headers, sample_csv(ctdc_file)).get_json()
    one = analysis_snapshot(db_session, ring, cache)
    assert analysis_snapshot(db_session, ring, cache) is one
    assert len(one.records) == first["rows_accepted"]
    assert list(one.records.columns) == list(empty.records.columns)
    client.delete(f"/v1/uploads/{first['id']}", headers=partner_a.headers)
    after = analysis_snapshot(db_session, ring, cache)
    assert after.snapshot_id == empty.snapshot_id and len(after.records) == 0


# Cells that are valid for their column, and cells that are not (never identifiers).
GOOD = {"gender": "Female", "ageBroad": "18--20", "yearOfRegistration": "2015"}
BAD = {"gender": "Fmale", "ageBroad": "elderly", "yearOfRegistration": "1850"}


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=st.lists(st.lists(st.booleans(), min_size=3, max_size=3), min_size=1, max_size=25))
def test_receipts_always_add_up(
    client: FlaskClient, partner_a: Any, rows: list[list[bool]]
) -> None:
    frame = pd.DataFrame(
        [
            {col: (GOOD if ok else BAD)[col] for col, ok in zip(GOOD, flags, strict=True)}
            for flags in rows
        ]
    )
    # A distinct body per example, so no example is a duplicate of an earlier one.
    frame["caseNo"] = [
        pseudonymise(f"case-{id(rows)}-{i}", PSEUDONYM_KEY) for i in range(len(frame))
    ]
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    response = post(
        client, partner_a.headers, buffer.getvalue().encode(), query="?accept_valid=true"
    )
    expected_good = sum(all(flags) for flags in rows)
    body = response.get_json()
    if expected_good == 0:
        assert response.status_code == 422
        report = body["report"]
    else:
        assert response.status_code in (200, 201), body
        report = body
    assert report["rows_total"] == report["rows_accepted"] + report["rows_rejected"] == len(rows)
    assert report["rows_accepted"] == expected_good
