"""Issue 11 item 5: the token endpoint resists guessing.

Rate limits per client id and per address (only refused attempts count), a logged and audited
event for each refusal, the same answer after the same work for an unknown client id as for a
wrong secret, and Argon2id hashes that replace the old scrypt ones at the next good login.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from pathlib import Path
from typing import Any

import argon2
import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub import create_app
from hub.credentials import verify_secret
from hub.crypto import Keyring
from hub.models import AuditEvent, OAuthClient
from tests.conftest import MakeClient


def _token(client: FlaskClient, client_id: str, secret: str) -> Any:
    return client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )


def _old_scrypt_hash(secret: str) -> str:
    """The hub's hash format before Argon2id (scrypt, n=2**14, r=8, p=1), as rows still hold."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    b64 = base64.b64encode
    return f"scrypt$16384$8$1${b64(salt).decode()}${b64(digest).decode()}"


def test_unknown_client_id_gets_the_answer_and_work_of_a_wrong_secret(
    client: FlaskClient, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client_id, _secret, _ = make_client("Org A", ["partner"])
    verified: list[str] = []
    real_verify = argon2.PasswordHasher.verify

    def counting(self: argon2.PasswordHasher, stored: str, secret: str) -> bool:
        verified.append(stored)
        return real_verify(self, stored, secret)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", counting)

    wrong = _token(client, client_id, "not-the-secret")
    wrong_hashes = len(verified)
    unknown = _token(client, "ctdhub-" + "0" * 32, "not-the-secret")
    assert (wrong.status_code, wrong.get_json()) == (unknown.status_code, unknown.get_json())
    assert wrong.headers.get("WWW-Authenticate") == unknown.headers.get("WWW-Authenticate")
    # The same work: one Argon2id verification each, with the same parameters.
    assert wrong_hashes == 1 and len(verified) == 2
    assert verified[0].rsplit("$", 2)[0] == verified[1].rsplit("$", 2)[0]


def test_refusals_are_logged_and_audited_without_the_secret(
    client: FlaskClient,
    make_client: MakeClient,
    db_session: Session,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client_id, secret, principal = make_client("Org A", ["partner"])
    guess = "guess-" + secrets.token_hex(8)
    assert _token(client, client_id, guess).status_code == 401
    assert _token(client, "ctdhub-nobody", guess).status_code == 401
    events = db_session.scalars(
        select(AuditEvent).where(AuditEvent.tag == "auth:client:refuse").order_by(AuditEvent.id)
    ).all()
    assert [e.details["reason"] for e in events] == ["wrong_secret", "unknown_client"]
    assert events[0].subject_id == client_id
    assert events[0].organisation_id == principal.organisation_id
    assert events[1].subject_id is None and events[1].details["remote_address"] == "127.0.0.1"
    refusals = [r for r in caplog.records if "authentication refused" in r.getMessage()]
    assert len(refusals) == 2 and all(r.levelname == "WARNING" for r in refusals)
    assert guess not in caplog.text and secret not in caplog.text


def test_guesses_per_client_id_are_limited_and_answered_429(
    app: APIFlask, client: FlaskClient, make_client: MakeClient
) -> None:
    app.config["TOKEN_RATE_LIMIT_PER_CLIENT"] = "3 per minute"
    client_id, secret, _ = make_client("Org A", ["partner"])
    # Good logins never count: a client holding its secret is not slowed.
    for _ in range(5):
        assert _token(client, client_id, secret).status_code == 200
    for _ in range(3):
        assert _token(client, client_id, "wrong").status_code == 401
    refused = _token(client, client_id, "wrong")
    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    assert int(refused.headers["Retry-After"]) > 0
    # Once over the limit, even the right secret waits: the guesser cannot tell.
    assert _token(client, client_id, secret).status_code == 429
    # Another client id is not held up by this one's guesses.
    other_id, other_secret, _ = make_client("Org A", ["partner"])
    assert _token(client, other_id, other_secret).status_code == 200


def test_guesses_per_address_are_limited_across_client_ids(
    app: APIFlask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    app.config["TOKEN_RATE_LIMIT_PER_ADDRESS"] = "4 per minute"
    statuses = [_token(client, f"ctdhub-guess-{n}", "x").status_code for n in range(6)]
    assert statuses == [401, 401, 401, 401, 429, 429]
    assert "rate limit" in caplog.text


def test_limits_are_shared_through_redis(
    database_url: str, test_keyring: Keyring, make_client: MakeClient, tmp_path: Path
) -> None:
    """Two hub processes (here two apps) on one Redis share one count per client id."""
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/0").ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    settings = {
        "TESTING": True,
        "DATABASE_URL": database_url,
        "KEYRING": test_keyring.to_json(),
        "RATELIMIT_STORAGE_URL": "redis://127.0.0.1:6379/0",
        "TOKEN_RATE_LIMIT_PER_CLIENT": "2 per minute",
        "TOKEN_RATE_LIMIT_PER_ADDRESS": "1000 per minute",
    }
    first, second = create_app(settings), create_app(settings)
    try:
        client_id = f"ctdhub-{uuid.uuid4().hex}"  # fresh: no count left from another run
        assert _token(first.test_client(), client_id, "x").status_code == 401
        assert _token(second.test_client(), client_id, "x").status_code == 401
        assert _token(first.test_client(), client_id, "x").status_code == 429
        assert _token(second.test_client(), client_id, "x").status_code == 429
    finally:
        for hub in (first, second):
            hub.extensions["ctdhub.engine"].dispose()


def test_an_old_scrypt_hash_still_verifies_and_is_rehashed_with_argon2id(
    client: FlaskClient, make_client: MakeClient, db_session: Session
) -> None:
    client_id, secret, _ = make_client("Org A", ["partner"])
    row = db_session.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
    assert row is not None
    row.secret_hash = _old_scrypt_hash(secret)
    db_session.commit()

    assert _token(client, client_id, "wrong").status_code == 401
    db_session.expire_all()
    assert row.secret_hash.startswith("scrypt$")  # a wrong secret changes nothing

    assert _token(client, client_id, secret).status_code == 200
    db_session.expire_all()
    assert row.secret_hash.startswith("$argon2id$")
    assert verify_secret(secret, row.secret_hash)
    assert _token(client, client_id, secret).status_code == 200
