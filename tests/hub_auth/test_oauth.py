"""The OAuth 2 endpoints: token issue, scopes, expiry, revocation, introspection, rotation."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.actors import OPERATOR, ROLE_SCOPES, SCOPES
from hub.credentials import token_digest, verify_secret
from hub.crypto import Keyring
from hub.models import AuditEvent, OAuthClient, OAuthToken, utcnow
from hub.services import principals
from hub.storage import Base
from tests.conftest import Bearer, MakeClient

PARTNER_SCOPES = "records:read records:write"
PROTECTED = "/v1/uploads"  # a records:read endpoint of the lead's API


def _token(
    client: FlaskClient, client_id: str, secret: str, **form: str
) -> tuple[int, dict[str, Any]]:
    response = client.post(
        "/oauth/token", data={"grant_type": "client_credentials", **form}, auth=(client_id, secret)
    )
    body: dict[str, Any] = response.get_json()
    return response.status_code, body


def _row(db_session: Session, access_token: str) -> OAuthToken:
    db_session.expire_all()
    row = db_session.scalar(
        select(OAuthToken).where(OAuthToken.token_hash == token_digest(access_token))
    )
    assert row is not None
    return row


def _as_utc(moment: datetime) -> datetime:
    # SQLite hands back stored UTC times naive.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def test_issue_by_basic_gives_full_scope_and_ttl(
    app: APIFlask, client: FlaskClient, db_session: Session, make_client: MakeClient
) -> None:
    client_id, secret, principal = make_client("Org A", ["partner"])
    status, body = _token(client, client_id, secret)
    assert status == 200, body
    assert body["token_type"] == "Bearer"
    assert body["scope"] == PARTNER_SCOPES  # nothing asked: everything the client holds
    assert body["expires_in"] == app.config["ACCESS_TOKEN_TTL"] == 900
    assert "refresh_token" not in body
    row = _row(db_session, body["access_token"])
    assert row.principal_id == principal.id and row.client_id == client_id
    assert _as_utc(row.expires_at) - _as_utc(row.issued_at) == timedelta(seconds=900)
    events = db_session.scalars(select(AuditEvent).where(AuditEvent.tag == "auth:token:issue"))
    assert [(e.actor_id, e.subject_id) for e in events] == [(principal.id, str(row.id))]


def test_issue_by_form_fields(client: FlaskClient, make_client: MakeClient) -> None:
    client_id, secret, _ = make_client("Org A", ["researcher"])
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["scope"] == "queries:run releases:read"
    assert response.headers["Cache-Control"] == "no-store"


def test_ttl_setting_is_used(
    database_url: str, test_keyring: Keyring, make_client: MakeClient, db_session: Session
) -> None:
    from hub import create_app

    short = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": database_url,
            "KEYRING": test_keyring.to_json(),
            "ACCESS_TOKEN_TTL": 60,
        }
    )
    try:
        client_id, secret, _ = make_client("Org A", ["partner"])
        status, body = _token(short.test_client(), client_id, secret)
        assert status == 200 and body["expires_in"] == 60
        row = _row(db_session, body["access_token"])
        assert _as_utc(row.expires_at) - _as_utc(row.issued_at) == timedelta(seconds=60)
    finally:
        short.extensions["ctdhub.engine"].dispose()


def test_narrower_scope_is_granted_as_asked(client: FlaskClient, make_client: MakeClient) -> None:
    client_id, secret, _ = make_client("Org A", ["partner"])
    status, body = _token(client, client_id, secret, scope="records:read")
    assert status == 200 and body["scope"] == "records:read"


@pytest.mark.parametrize(
    ("asked", "named"),
    [
        ("records:read queries:run", "queries:run"),  # known, but not this client's
        ("records:read records:delete", "records:delete"),  # unknown to the hub
        ("admin:clients", "admin:clients"),
    ],
)
def test_scope_beyond_the_client_is_refused_not_narrowed(
    client: FlaskClient, db_session: Session, make_client: MakeClient, asked: str, named: str
) -> None:
    client_id, secret, _ = make_client("Org A", ["partner"])
    status, body = _token(client, client_id, secret, scope=asked)
    assert status == 400
    assert body["error"] == "invalid_scope"
    assert named in body["error_description"]
    assert db_session.scalar(select(sa.func.count()).select_from(OAuthToken)) == 0


def test_client_limited_below_its_roles(client: FlaskClient, make_client: MakeClient) -> None:
    client_id, secret, _ = make_client("Org A", ["partner"], scopes=["records:read"])
    assert _token(client, client_id, secret)[1]["scope"] == "records:read"
    status, body = _token(client, client_id, secret, scope="records:write")
    assert (status, body["error"]) == (400, "invalid_scope")


@pytest.mark.parametrize("how", ["basic", "form"])
def test_wrong_secret_is_refused(client: FlaskClient, make_client: MakeClient, how: str) -> None:
    client_id, secret, _ = make_client("Org A", ["partner"])
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    if how == "basic":
        status, body = _token(client, client_id, wrong)
    else:
        response = client.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": wrong,
            },
        )
        status, body = response.status_code, response.get_json()
    assert status == 401
    assert body["error"] == "invalid_client"


def test_unknown_client_and_missing_secret_are_refused(
    client: FlaskClient, make_client: MakeClient
) -> None:
    client_id, _, _ = make_client("Org A", ["partner"])
    assert _token(client, "ctdhub-nobody", "x")[1]["error"] == "invalid_client"
    # A confidential client may not pose as a public one by leaving its secret out.
    response = client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "client_id": client_id}
    )
    assert response.get_json()["error"] == "invalid_client"


def test_other_grant_types_are_unsupported(client: FlaskClient, make_client: MakeClient) -> None:
    client_id, secret, _ = make_client("Org A", ["partner"])
    response = client.post(
        "/oauth/token",
        data={"grant_type": "password", "username": "u", "password": "p"},
        auth=(client_id, secret),
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "unsupported_grant_type"


def test_token_opens_a_protected_endpoint(
    client: FlaskClient, make_client: MakeClient, bearer: Bearer
) -> None:
    headers = bearer(*make_client("Org A", ["partner"])[:2])
    response = client.get(PROTECTED, headers=headers)
    assert response.status_code == 200, response.get_json()


def test_expired_token_is_refused(
    client: FlaskClient, db_session: Session, make_client: MakeClient, bearer: Bearer
) -> None:
    headers = bearer(*make_client("Org A", ["partner"])[:2])
    assert client.get(PROTECTED, headers=headers).status_code == 200
    row = _row(db_session, headers["Authorization"].split()[1])
    row.expires_at = utcnow() - timedelta(seconds=1)
    db_session.commit()
    response = client.get(PROTECTED, headers=headers)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert "expired" in response.get_json()["detail"]


def test_unknown_and_malformed_tokens_are_refused(client: FlaskClient) -> None:
    for header in ("Bearer not-a-token", "Basic dXNlcjpwYXNz", "Bearer", "bearer  "):
        response = client.get(PROTECTED, headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.get_json()["type"] == "urn:ctdhub:problem:unauthenticated"


def test_revocation(
    client: FlaskClient, db_session: Session, make_client: MakeClient, bearer: Bearer
) -> None:
    client_id, secret, principal = make_client("Org A", ["partner"])
    headers = bearer(client_id, secret)
    token = headers["Authorization"].split()[1]
    response = client.post("/oauth/revoke", data={"token": token}, auth=(client_id, secret))
    assert response.status_code == 200
    response = client.get(PROTECTED, headers=headers)
    assert response.status_code == 401
    assert "revoked" in response.get_json()["detail"]
    assert _row(db_session, token).revoked_at is not None
    tags = db_session.scalars(select(AuditEvent.tag).order_by(AuditEvent.id)).all()
    assert tags[-1] == "auth:token:revoke"
    # RFC 7009: revoking again, or an unknown token, is still answered 200.
    for again in (token, "no-such-token"):
        response = client.post("/oauth/revoke", data={"token": again}, auth=(client_id, secret))
        assert response.status_code == 200


def test_a_client_cannot_revoke_another_clients_token(
    client: FlaskClient, make_client: MakeClient, bearer: Bearer
) -> None:
    victim_id, victim_secret, _ = make_client("Org A", ["partner"])
    other_id, other_secret, _ = make_client("Org B", ["partner"])
    headers = bearer(victim_id, victim_secret)
    token = headers["Authorization"].split()[1]
    response = client.post("/oauth/revoke", data={"token": token}, auth=(other_id, other_secret))
    assert response.status_code == 400
    assert client.get(PROTECTED, headers=headers).status_code == 200


def test_introspection(client: FlaskClient, make_client: MakeClient, bearer: Bearer) -> None:
    owner_id, owner_secret, principal = make_client("Org A", ["partner"])
    other_id, other_secret, _ = make_client("Org B", ["partner"])
    admin_id, admin_secret, _ = make_client("Operator", ["admin"])
    token = bearer(owner_id, owner_secret, "records:read")["Authorization"].split()[1]

    def introspect(who: tuple[str, str], value: str = token) -> dict[str, Any]:
        response = client.post("/oauth/introspect", data={"token": value}, auth=who)
        assert response.status_code == 200
        body: dict[str, Any] = response.get_json()
        return body

    own = introspect((owner_id, owner_secret))
    assert own["active"] is True
    assert own["client_id"] == owner_id and own["sub"] == principal.id
    assert own["scope"] == "records:read" and own["token_type"] == "Bearer"
    assert own["organisation_id"] == principal.organisation_id
    assert own["exp"] - own["iat"] == 900
    assert introspect((other_id, other_secret)) == {"active": False}
    assert introspect((admin_id, admin_secret))["active"] is True
    assert introspect((owner_id, owner_secret), "no-such-token") == {"active": False}
    client.post("/oauth/revoke", data={"token": token}, auth=(owner_id, owner_secret))
    assert introspect((owner_id, owner_secret)) == {"active": False}
    response = client.post("/oauth/introspect", data={"token": token})
    assert response.status_code in (400, 401)
    assert response.get_json()["error"] == "invalid_client"


def test_admin_scope_needs_the_client_to_hold_it(
    client: FlaskClient, make_client: MakeClient, bearer: Bearer
) -> None:
    owner_id, owner_secret, _ = make_client("Org A", ["partner"])
    keys_only = make_client("Operator", ["admin"], scopes=["admin:keys"])
    token = bearer(owner_id, owner_secret)["Authorization"].split()[1]
    response = client.post("/oauth/introspect", data={"token": token}, auth=keys_only[:2])
    assert response.get_json() == {"active": False}


def test_secret_rotation(
    client: FlaskClient, db_session: Session, make_client: MakeClient, bearer: Bearer
) -> None:
    client_id, old_secret, _ = make_client("Org A", ["partner"])
    old_headers = bearer(client_id, old_secret)
    _, new_secret = principals.rotate_secret(db_session, OPERATOR, client_id)
    assert new_secret != old_secret
    status, body = _token(client, client_id, old_secret)
    assert (status, body["error"]) == (401, "invalid_client")
    # Rotation follows a suspected leak: tokens got with the old secret stop too.
    assert client.get(PROTECTED, headers=old_headers).status_code == 401
    assert client.get(PROTECTED, headers=bearer(client_id, new_secret)).status_code == 200


def test_revoked_client_is_refused(
    client: FlaskClient, db_session: Session, make_client: MakeClient, bearer: Bearer
) -> None:
    client_id, secret, _ = make_client("Org A", ["partner"])
    headers = bearer(client_id, secret)
    principals.revoke_client(db_session, OPERATOR, client_id)
    status, body = _token(client, client_id, secret)
    assert (status, body["error"]) == (401, "invalid_client")
    assert "revoked" in body["error_description"]
    response = client.get(PROTECTED, headers=headers)
    assert response.status_code == 401 and "revoked" in response.get_json()["detail"]


def test_revoked_client_refused_even_if_its_token_row_was_missed(
    client: FlaskClient, db_session: Session, make_client: MakeClient, bearer: Bearer
) -> None:
    """The bearer check looks at the client itself, not only at the token's own flag."""
    client_id, secret, _ = make_client("Org A", ["partner"])
    headers = bearer(client_id, secret)
    row = db_session.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
    assert row is not None
    row.revoked_at = utcnow()
    db_session.commit()
    response = client.get(PROTECTED, headers=headers)
    assert response.status_code == 401
    assert "client of this token has been revoked" in response.get_json()["detail"]


def test_disabled_principal_is_refused(
    client: FlaskClient, db_session: Session, make_client: MakeClient, bearer: Bearer
) -> None:
    client_id, secret, principal = make_client("Org A", ["partner"])
    headers = bearer(client_id, secret)
    principals.disable_principal(db_session, OPERATOR, principal.id)
    assert client.get(PROTECTED, headers=headers).status_code == 401
    status, body = _token(client, client_id, secret)
    assert (status, body["error"]) == (401, "invalid_client")
    assert "disabled" in body["error_description"]


def test_token_lacking_the_scope_gets_403(
    client: FlaskClient, make_client: MakeClient, bearer: Bearer
) -> None:
    headers = bearer(*make_client("Org A", ["partner"])[:2], "records:write")
    response = client.get(PROTECTED, headers=headers)
    assert response.status_code == 403
    body = response.get_json()
    assert body["type"] == "urn:ctdhub:problem:not-authorized"
    assert body["required_scopes"] == ["records:read"]
    assert "records:read" in body["detail"]


def test_only_hashes_are_stored(
    app: APIFlask, client: FlaskClient, db_session: Session, make_client: MakeClient
) -> None:
    """No secret and no access token, in any encoding, anywhere in any table."""
    client_id, first_secret, _ = make_client("Org A", ["partner", "admin"])
    status, first = _token(client, client_id, first_secret)
    assert status == 200
    client.post(
        "/oauth/revoke", data={"token": first["access_token"]}, auth=(client_id, first_secret)
    )
    _, second_secret = principals.rotate_secret(db_session, OPERATOR, client_id)
    _, second = _token(client, client_id, second_secret, scope="records:read")
    client.post(
        "/oauth/introspect", data={"token": second["access_token"]}, auth=(client_id, second_secret)
    )
    plaintexts = [first_secret, second_secret, first["access_token"], second["access_token"]]
    needles = set()
    for text in plaintexts:
        needles |= {text, base64.b64encode(text.encode()).decode(), text.encode().hex()}

    dumped: list[str] = []
    with app.extensions["ctdhub.engine"].connect() as connection:
        for table in Base.metadata.sorted_tables:
            for row in connection.execute(sa.select(table)):
                dumped.extend(repr(value) for value in row)
    assert len(dumped) > 20  # the tables were really read
    leaks = [n for n in needles if any(n in value for value in dumped)]
    assert leaks == []

    stored = db_session.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
    assert stored is not None
    assert verify_secret(second_secret, stored.secret_hash)
    assert not verify_secret(first_secret, stored.secret_hash)
    assert db_session.scalar(
        select(OAuthToken.id).where(OAuthToken.token_hash == token_digest(second["access_token"]))
    )


def test_scopes_and_roles_are_consistent() -> None:
    granted = set().union(*ROLE_SCOPES.values())
    assert granted == set(SCOPES)  # every scope is reachable by some role, and no role invents one


def test_a_corrupt_stored_hash_is_an_error_not_a_mismatch() -> None:
    with pytest.raises(ValueError, match="not an Argon2id hash"):
        verify_secret("secret", "secret")
    with pytest.raises(ValueError, match="malformed"):
        verify_secret("secret", "scrypt$16384$8$1$not base64!$AAAA")
