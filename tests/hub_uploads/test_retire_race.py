"""Retiring a key while an upload is in flight never leaves an accepted, undecryptable upload.

An upload sealed under a key by a hub that has not yet read the rotated keyring either commits
before the retirement (which then re-wraps its data key) or is refused with a retryable 503 and
nothing stored (issue 10, 6). Each interleaving is forced by pausing the upload's own database
session (a SQLAlchemy session event) between sealing and commit, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from hub import create_app
from hub.actors import OPERATOR
from hub.cli import main
from hub.crypto import Keyring, keyring, open_batch
from hub.domain_errors import Conflict
from hub.models import RecordBatch, RetiredKey, Upload
from hub.services.keys import retire_keys
from tests.hub_uploads.test_uploads_api import post, sample_csv
from tests.hub_uploads.test_withdrawal_shred import dump_batches, file_keyed_app

#: How long a paused thread may wait for the other side before the test fails (not a measure).
PATIENCE_SECONDS = 60


class Pause:
    """Stops the upload's session at one point until the test lets it go."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.go = threading.Event()

    def __call__(self, session: Session, *_args: Any) -> None:
        holds_batch = any(isinstance(obj, RecordBatch) for obj in session.new) or any(
            isinstance(obj, RecordBatch) for obj in session.identity_map.values()
        )
        if holds_batch and not self.reached.is_set():
            self.reached.set()
            assert self.go.wait(PATIENCE_SECONDS), "the test never let the upload go on"


def upload_in_thread(client: FlaskClient, headers: dict[str, str], body: bytes) -> Any:
    """Post ``body`` from another thread; the returned thread's ``result`` is the response."""
    result: dict[str, Any] = {}

    def run() -> None:
        result["response"] = post(client, headers, body)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def retire(file_app: APIFlask, key_id: str) -> Any:
    return file_app.test_cli_runner().invoke(
        main, ["keys", "rotate", "--key-id", key_id, "--retire"]
    )


def assert_every_live_batch_opens(database_url: str, remaining: Keyring) -> int:
    batches = dump_batches(database_url)
    for dumped in batches.values():
        assert open_batch(remaining, dumped.sealed, dumped.aad)
    return len(batches)


@pytest.fixture
def file_app(database_url: str, app: APIFlask, tmp_path: Path) -> Iterator[APIFlask]:
    """The operator's app: the same keyring as ``app``, kept in a file that rotation rewrites.

    ``app`` keeps its keyring in a setting, so it goes on sealing under the old key: it stands
    for a hub that has not yet read the rotated keyring when its upload is sealed.
    """
    ring: Keyring = app.extensions["ctdhub.keyring"]
    operator = file_keyed_app(database_url, ring, tmp_path / "instance")
    yield operator
    operator.extensions["ctdhub.engine"].dispose()


def test_a_retirement_between_sealing_and_commit_refuses_the_upload_cleanly(
    database_url: str,
    app: APIFlask,
    client: FlaskClient,
    file_app: APIFlask,
    partner_a: Any,
    ctdc_file: Path,
) -> None:
    old: Keyring = app.extensions["ctdhub.keyring"]
    kept = post(client, partner_a.headers, sample_csv(ctdc_file, start=1)).get_json()
    body = sample_csv(ctdc_file)
    pause = Pause()
    event.listen(app.extensions["ctdhub.sessionmaker"], "before_flush", pause)

    thread, result = upload_in_thread(client, partner_a.headers, body)
    assert pause.reached.wait(PATIENCE_SECONDS)  # sealed under the old key, not yet stored
    retired = retire(file_app, "k-retire-race")
    pause.go.set()
    thread.join(PATIENCE_SECONDS)
    assert not thread.is_alive()

    assert retired.exit_code == 0, retired.output
    response = result["response"]
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.headers["Retry-After"] == "1"
    assert "retired while it was being stored" in response.get_json()["detail"]
    remaining = keyring(file_app)
    assert sorted(remaining.keys) == ["k-retire-race"]
    with file_app.extensions["ctdhub.sessionmaker"]() as session:
        # Nothing of the refused upload was stored; the one accepted before moved to the new key.
        assert session.scalars(select(Upload.id)).all() == [kept["id"]]
        assert session.scalars(select(RecordBatch.key_id)).all() == ["k-retire-race"]
        assert session.scalars(select(RetiredKey.key_id)).all() == [old.active]
    assert assert_every_live_batch_opens(database_url, remaining) == 1

    # The retry, by a hub that reads the rotated keyring, is sealed under the new key.
    serving = create_app({"DATABASE_URL": database_url})
    serving.instance_path = file_app.instance_path
    retry = post(serving.test_client(), partner_a.headers, body)
    assert retry.status_code == 201, retry.get_data(as_text=True)
    assert assert_every_live_batch_opens(database_url, keyring(serving)) == 2
    serving.extensions["ctdhub.engine"].dispose()


def _wait_for_lock_wait(database_url: str, engine: Any) -> None:
    """On PostgreSQL, wait until the retirement waits for the upload's lock on keyring_state."""
    if database_url.startswith("sqlite"):
        return
    with engine.connect() as connection:
        for _ in range(PATIENCE_SECONDS * 100):
            waiting = connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query ILIKE '%keyring_state%'"
                )
            ).scalar()
            connection.rollback()
            if waiting:
                return
            time.sleep(0.01)
    raise AssertionError("the retirement never waited for the upload's lock")


def test_an_upload_holding_its_seal_lock_commits_first_and_is_rewrapped(
    database_url: str,
    app: APIFlask,
    client: FlaskClient,
    file_app: APIFlask,
    partner_a: Any,
    ctdc_file: Path,
) -> None:
    pause = Pause()
    # Paused at commit: the upload has checked its key and holds the keyring-state lock.
    event.listen(app.extensions["ctdhub.sessionmaker"], "before_commit", pause)
    writing = threading.Event()

    @event.listens_for(file_app.extensions["ctdhub.engine"], "before_cursor_execute")
    def _retirement_writes(*args: Any) -> None:
        if args[2].lstrip().upper().startswith(("INSERT", "UPDATE")):
            writing.set()

    thread, result = upload_in_thread(client, partner_a.headers, sample_csv(ctdc_file))
    assert pause.reached.wait(PATIENCE_SECONDS)
    outcome: dict[str, Any] = {}
    retiring = threading.Thread(
        target=lambda: outcome.setdefault("result", retire(file_app, "k-after")), daemon=True
    )
    retiring.start()
    assert writing.wait(PATIENCE_SECONDS)  # the retirement has begun writing
    _wait_for_lock_wait(database_url, file_app.extensions["ctdhub.engine"])
    pause.go.set()
    thread.join(PATIENCE_SECONDS)
    retiring.join(PATIENCE_SECONDS)
    assert not thread.is_alive() and not retiring.is_alive()

    assert outcome["result"].exit_code == 0, outcome["result"].output
    response = result["response"]
    assert response.status_code == 201, response.get_data(as_text=True)
    remaining = keyring(file_app)
    assert sorted(remaining.keys) == ["k-after"]
    with file_app.extensions["ctdhub.sessionmaker"]() as session:
        batch = session.scalars(select(RecordBatch)).one()
        assert (batch.upload_id, batch.key_id) == (response.get_json()["id"], "k-after")
    assert assert_every_live_batch_opens(database_url, remaining) == 1


def test_a_retired_key_id_is_not_used_again(
    app: APIFlask, file_app: APIFlask, client: FlaskClient, partner_a: Any, ctdc_file: Path
) -> None:
    old: Keyring = app.extensions["ctdhub.keyring"]
    assert retire(file_app, "k2").exit_code == 0
    again = file_app.test_cli_runner().invoke(
        main, ["keys", "rotate", "--key-id", old.active, "--retire"]
    )
    assert again.exit_code != 0
    assert (
        f"key id {old.active!r} names a retired key: nothing is wrapped under it again"
        in again.output
    )
    assert sorted(keyring(file_app).keys) == ["k2"]
    # A hub still sealing under the retired key stores nothing and says to retry.
    response = post(client, partner_a.headers, sample_csv(ctdc_file))
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"


def test_a_keyring_in_a_secret_store_is_retired_by_rewrap_and_a_stale_hub_stores_nothing(
    database_url: str, app: APIFlask, client: FlaskClient, partner_a: Any, ctdc_file: Path
) -> None:
    old: Keyring = app.extensions["ctdhub.keyring"]
    kept = post(client, partner_a.headers, sample_csv(ctdc_file, start=1)).get_json()
    rotated = old.with_new_active_key("k-store-2")  # the operator's edit of the secret store
    operator = create_app({"DATABASE_URL": database_url, "KEYRING": rotated.to_json()})
    result = operator.test_cli_runner().invoke(main, ["keys", "rewrap", "--retire"])
    assert result.exit_code == 0, result.output
    assert f"retired key(s) {old.active}: now delete them from your secret store" in result.output

    # ``app`` still holds the old keyring: it neither stores an upload nor re-wraps under it.
    refused = post(client, partner_a.headers, sample_csv(ctdc_file))
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    stale = app.test_cli_runner().invoke(main, ["keys", "rewrap"])
    assert stale.exit_code != 0 and "names a retired key" in stale.output
    with operator.extensions["ctdhub.sessionmaker"]() as session:
        assert session.scalars(select(Upload.id)).all() == [kept["id"]]
    assert assert_every_live_batch_opens(database_url, rotated.only_active()) == 1
    operator.extensions["ctdhub.engine"].dispose()


def test_a_refused_or_interrupted_retirement_leaves_a_state_that_a_rerun_completes(
    database_url: str,
    app: APIFlask,
    client: FlaskClient,
    partner_a: Any,
    ctdc_file: Path,
    db_session: Session,
) -> None:
    post(client, partner_a.headers, sample_csv(ctdc_file))
    old: Keyring = app.extensions["ctdhub.keyring"]
    rotated = old.with_new_active_key("k-next")
    destroyed: list[Keyring] = []
    with pytest.raises(Conflict, match="nothing was retired"):
        retire_keys(db_session, OPERATOR, rotated, destroyed.append)
    assert destroyed == [] and db_session.scalars(select(RetiredKey.key_id)).all() == []

    def fails(_kept: Keyring) -> None:
        raise OSError("the keyring file could not be written")

    with pytest.raises(OSError, match="could not be written"):
        retire_keys(db_session, OPERATOR, rotated, fails, rewrap_stragglers=True)
    # Recorded as retired (nothing more is sealed under it) and every data key re-wrapped:
    # no data key depends on the key the keyring file still holds.
    assert db_session.scalars(select(RetiredKey.key_id)).all() == [old.active]
    assert db_session.scalars(select(RecordBatch.key_id)).all() == ["k-next"]
    assert retire_keys(db_session, OPERATOR, rotated, destroyed.append) == [old.active]
    assert [sorted(ring.keys) for ring in destroyed] == [["k-next"]]
    assert assert_every_live_batch_opens(database_url, destroyed[0]) == 1
