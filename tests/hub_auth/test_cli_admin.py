"""``ctdhub admin``: the commands work end to end, print a secret once and never a hash."""

from __future__ import annotations

import json
from typing import Any

from apiflask import APIFlask
from click.testing import Result
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.cli_admin import admin
from hub.models import AuditEvent, OAuthClient


def _run(app: APIFlask, *args: str) -> Result:
    return app.test_cli_runner().invoke(admin, list(args))


def _json(app: APIFlask, *args: str) -> Any:
    result = _run(app, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_admin_cli_end_to_end(app: APIFlask, client: FlaskClient, db_session: Session) -> None:
    org = _json(app, "create-org", "Freedom Fund Partner")
    assert org["name"] == "Freedom Fund Partner"
    # A principal's organisation can be named by its name or by its id.
    principal = _json(
        app, "create-principal", "Freedom Fund Partner", "case system", "--role", "partner"
    )
    assert principal["organisation_id"] == org["id"]
    assert principal["roles"] == ["partner"]
    by_id = _json(app, "create-principal", org["id"], "analyst", "--role", "researcher")
    assert by_id["organisation_id"] == org["id"]

    created = _json(app, "create-client", principal["id"], "--scope", "records:read")
    assert created["scopes"] == ["records:read"]
    secret = created["client_secret"]
    token = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(created["client_id"], secret),
    )
    assert token.status_code == 200 and token.get_json()["scope"] == "records:read"

    listed = _json(app, "list-clients")
    assert [c["client_id"] for c in listed] == [created["client_id"]]
    assert "client_secret" not in listed[0] and "secret_hash" not in json.dumps(listed)
    stored = db_session.scalar(select(OAuthClient.secret_hash))
    assert stored is not None
    for command in (["list-clients"], ["list-orgs"], ["list-principals"]):
        output = _run(app, *command).output + _run(app, *command, "--json").output
        assert secret not in output and stored not in output

    rotated = _json(app, "rotate-secret", created["client_id"])
    assert rotated["client_secret"] != secret and rotated["secret_rotated_at"] is not None
    refused = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(created["client_id"], secret),
    )
    assert refused.status_code == 401

    revoked = _json(app, "revoke-client", created["client_id"])
    assert revoked["revoked_at"] is not None
    refused = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(created["client_id"], rotated["client_secret"]),
    )
    assert refused.get_json()["error"] == "invalid_client"

    assert [o["name"] for o in _json(app, "list-orgs")] == ["Freedom Fund Partner"]
    tags = list(db_session.scalars(select(AuditEvent.tag).order_by(AuditEvent.id)))
    assert tags == [
        "admin:organisation:create",
        "admin:principal:create",
        "admin:principal:create",
        "admin:client:create",
        "auth:token:issue",
        "admin:client:rotate_secret",
        "auth:client:refuse",
        "admin:client:revoke",
        "auth:client:refuse",
    ]


def test_admin_cli_text_output_shows_the_secret_once(app: APIFlask) -> None:
    _run(app, "create-org", "Org A")
    principal = _json(app, "create-principal", "Org A", "intake", "--role", "partner")
    result = _run(app, "create-client", principal["id"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(":", 1) for line in result.output.splitlines()[:3])
    assert lines["client_id"].strip().startswith("ctdhub-")
    assert len(lines["client_secret"].strip()) >= 43
    assert "cannot show it again" in result.output
    assert "REVOKED" not in _run(app, "list-clients").output


def test_admin_cli_errors_are_one_clear_line(app: APIFlask) -> None:
    _run(app, "create-org", "Org A")
    duplicate = _run(app, "create-org", "org a")
    assert duplicate.exit_code == 1
    assert "an organisation named 'org a' already exists" in duplicate.output
    bad_role = _run(app, "create-principal", "Org A", "p", "--role", "curator")
    assert bad_role.exit_code == 1 and "unknown role 'curator'" in bad_role.output
    no_org = _run(app, "create-principal", "Org B", "p", "--role", "partner")
    assert no_org.exit_code == 1 and "no organisation has the id or name 'Org B'" in no_org.output
    principal = _json(app, "create-principal", "Org A", "p", "--role", "partner")
    beyond = _run(app, "create-client", principal["id"], "--scope", "admin:keys")
    assert beyond.exit_code == 1 and "is not granted scope(s) admin:keys" in beyond.output
    missing = _run(app, "revoke-client", "ctdhub-nobody")
    assert missing.exit_code == 1 and "client ctdhub-nobody does not exist" in missing.output
    no_role = _run(app, "create-principal", "Org A", "q")
    assert no_role.exit_code == 2  # click: --role is required


def test_disable_principal_command(app: APIFlask, client: FlaskClient) -> None:
    _run(app, "create-org", "Org A")
    principal = _json(app, "create-principal", "Org A", "p", "--role", "partner")
    created = _json(app, "create-client", principal["id"])
    disabled = _json(app, "disable-principal", principal["id"])
    assert disabled["disabled_at"] is not None
    assert "DISABLED" in _run(app, "list-principals", "--org", "Org A").output
    refused = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(created["client_id"], created["client_secret"]),
    )
    assert refused.status_code == 401
