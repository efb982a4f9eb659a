"""Withdrawal keeps its promise: nothing left to decrypt, not even in older copies (issue 10, 6).

SQLite overwrites the withdrawn bytes and its write-ahead log is checkpointed, so the live
files no longer hold them. A copy made before the withdrawal (a file copy with its WAL on
SQLite, the rows as a dump would hold them on PostgreSQL) still holds the sealed batch; after
``ctdhub keys rotate --retire`` the keyring that remains cannot open it.
"""

from __future__ import annotations

import base64
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub import create_app
from hub.actors import OPERATOR
from hub.cli import main
from hub.crypto import (
    Keyring,
    KeyringError,
    SealedBatch,
    associated_data,
    keyring,
    open_batch,
    write_keyring,
)
from hub.domain_errors import Conflict
from hub.models import AuditEvent, RecordBatch, Upload
from hub.services.keys import retire_keys
from hub.services.snapshot import SnapshotCache, analysis_snapshot
from hub.storage import checkpoint, make_engine
from tests.hub_uploads.test_uploads_api import post, sample_csv


@dataclass(frozen=True)
class DumpedBatch:
    """A record batch as a backup holds it: the sealed bytes and what binds them."""

    upload_id: str
    aad: bytes
    sealed: SealedBatch


def dump_batches(url: str) -> dict[str, DumpedBatch]:
    """Read every live sealed batch at ``url``, as ``pg_dump`` or a file copy would keep it."""
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            rows = session.execute(
                select(RecordBatch, Upload.organisation_id).join(
                    Upload, Upload.id == RecordBatch.upload_id
                )
            ).all()
            dumped = {}
            for batch, organisation_id in rows:
                if batch.wrapped_key is None or batch.ciphertext is None:
                    continue
                dumped[batch.upload_id] = DumpedBatch(
                    batch.upload_id,
                    associated_data(batch.upload_id, organisation_id),
                    SealedBatch(batch.ciphertext, batch.nonce, batch.wrapped_key, batch.key_id),
                )
            return dumped
    finally:
        engine.dispose()


def sqlite_file(database_url: str) -> Path:
    return Path(database_url.removeprefix("sqlite:///"))


def copy_database(database_url: str, target: Path) -> str:
    """Copy the database as it is now: SQLite's file and its WAL, or a dump of the rows."""
    if database_url.startswith("sqlite"):
        source = sqlite_file(database_url)
        for suffix in ("", "-wal"):
            if Path(f"{source}{suffix}").exists():
                shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")
        return f"sqlite:///{target}"
    return database_url  # read at once below, before the withdrawal: the rows are the dump


def file_keyed_app(database_url: str, ring: Keyring, instance: Path) -> APIFlask:
    """A second app on the same database whose keyring is a file (rotation rewrites it)."""
    file_app = create_app({"DATABASE_URL": database_url})
    file_app.instance_path = str(instance)
    write_keyring(file_app, ring)
    return file_app


def test_a_copy_made_before_withdrawal_does_not_decrypt_after_retirement(
    database_url: str,
    app: APIFlask,
    client: FlaskClient,
    partner_a: Any,
    ctdc_file: Path,
    tmp_path: Path,
) -> None:
    withdrawn = post(client, partner_a.headers, sample_csv(ctdc_file)).get_json()
    kept = post(client, partner_a.headers, sample_csv(ctdc_file, start=1)).get_json()
    ring: Keyring = app.extensions["ctdhub.keyring"]
    file_app = file_keyed_app(database_url, ring, tmp_path / "instance")
    serving = create_app({"DATABASE_URL": database_url})  # a hub already running
    serving.instance_path = file_app.instance_path
    assert keyring(serving).active == ring.active

    copy = dump_batches(copy_database(database_url, tmp_path / "before.sqlite3"))
    old = copy[withdrawn["id"]]
    assert open_batch(ring, old.sealed, old.aad)  # the copy decrypts today

    response = client.delete(f"/v1/uploads/{withdrawn['id']}", headers=partner_a.headers)
    assert response.status_code == 200
    # Withdrawal alone leaves the copy readable with the keyring: the leak this closes.
    assert open_batch(keyring(file_app), old.sealed, old.aad)

    result = file_app.test_cli_runner().invoke(
        main, ["keys", "rotate", "--key-id", "k-after-withdrawal", "--retire"]
    )
    assert result.exit_code == 0, result.output
    assert f"retired and destroyed key(s) {ring.active}" in result.output

    remaining = keyring(file_app)
    assert sorted(remaining.keys) == ["k-after-withdrawal"]
    keyring_text = (tmp_path / "instance" / file_app.config["KEYRING_FILE"]).read_text()
    assert base64.b64encode(ring.keys[ring.active]).decode() not in keyring_text
    with pytest.raises(KeyringError, match="no key"):
        open_batch(remaining, old.sealed, old.aad)
    # The hub itself lost nothing: the kept upload opens under the new key, and a hub that
    # was running reads the new keyring on its next request.
    assert keyring(serving).active == "k-after-withdrawal"
    with file_app.extensions["ctdhub.sessionmaker"]() as session:
        records = analysis_snapshot(session, remaining, SnapshotCache(0)).records
        assert len(records) == kept["rows_accepted"]
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.tag == "admin:keys:retire")
        ).one()
        assert event.details["retired"] == [ring.active] and event.actor_name == "operator"
    for each in (file_app, serving):
        each.extensions["ctdhub.engine"].dispose()


def test_sqlite_files_hold_no_withdrawn_bytes(
    database_url: str, app: APIFlask, client: FlaskClient, partner_a: Any, ctdc_file: Path
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's files are its own; the crypto-shred covers them")
    upload = post(client, partner_a.headers, sample_csv(ctdc_file)).get_json()
    sealed = dump_batches(database_url)[upload["id"]].sealed
    middle = len(sealed.ciphertext) // 2
    marks = [sealed.ciphertext[middle : middle + 48], sealed.wrapped_key]
    path = sqlite_file(database_url)

    def on_disk() -> bytes:
        wal = Path(f"{path}-wal")
        return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")

    assert all(mark in on_disk() for mark in marks)
    engine = app.extensions["ctdhub.engine"]
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    assert (
        client.delete(f"/v1/uploads/{upload['id']}", headers=partner_a.headers).status_code == 200
    )
    leftover = on_disk()
    assert sum(mark in leftover for mark in marks) == 0  # neither the ciphertext nor the key


def test_retiring_is_refused_while_a_data_key_needs_an_old_key(
    app: APIFlask, client: FlaskClient, partner_a: Any, ctdc_file: Path, db_session: Session
) -> None:
    post(client, partner_a.headers, sample_csv(ctdc_file))
    ring: Keyring = app.extensions["ctdhub.keyring"]
    rotated = ring.with_new_active_key("k-not-yet-rewrapped")
    destroyed: list[Keyring] = []
    with pytest.raises(Conflict, match="run `ctdhub keys rewrap` first, nothing was retired"):
        retire_keys(db_session, OPERATOR, rotated, destroyed.append)
    assert destroyed == []


def test_a_checkpoint_behind_a_reader_says_so_and_the_next_one_completes(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.sqlite3'}")
    wal = tmp_path / "wal.sqlite3-wal"
    with engine.connect() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x BLOB)")
        connection.exec_driver_sql("INSERT INTO t VALUES (randomblob(50000))")
        connection.commit()
    reader = engine.connect()
    reader.exec_driver_sql("BEGIN")
    reader.exec_driver_sql("SELECT count(*) FROM t").all()  # holds the older snapshot
    with engine.connect() as connection:
        connection.exec_driver_sql("DELETE FROM t")
        connection.commit()
    assert checkpoint(engine) is False and wal.stat().st_size > 0
    reader.rollback()
    reader.close()
    assert checkpoint(engine) is True and wal.stat().st_size == 0
    with engine.connect() as connection:  # the pool's connections keep their usual patience
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    engine.dispose()
