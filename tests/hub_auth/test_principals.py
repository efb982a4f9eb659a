"""The account services: validation, authorisation, audit, and what revocation stops."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.actors import OPERATOR, Actor, PrincipalActor
from hub.api import current_actor
from hub.auth import require_scope
from hub.db import get_session
from hub.domain_errors import Conflict, InvalidInput, NotAuthorized, NotFound
from hub.models import AuditEvent, OAuthToken, Principal
from hub.services import principals as service
from tests.conftest import Bearer, MakeClient


def _tags(db_session: Session) -> list[str]:
    return list(db_session.scalars(select(AuditEvent.tag).order_by(AuditEvent.id)))


def _principal(db_session: Session, roles: list[str], org: str = "Org A") -> Principal:
    existing = [o for o in service.list_organisations(db_session, OPERATOR) if o.name == org]
    organisation = (
        existing[0] if existing else service.create_organisation(db_session, OPERATOR, org)
    )
    count = len(service.list_principals(db_session, OPERATOR, organisation.id))
    return service.create_principal(
        db_session, OPERATOR, organisation.id, f"person {count + 1}", roles
    )


def test_organisation_names_are_cleaned_and_unique(db_session: Session) -> None:
    organisation = service.create_organisation(db_session, OPERATOR, "  La  Strada ")
    assert organisation.name == "La Strada"
    with pytest.raises(Conflict, match="already exists"):
        service.create_organisation(db_session, OPERATOR, "la strada")
    with pytest.raises(InvalidInput, match="control characters"):
        service.create_organisation(db_session, OPERATOR, "Org\nB")
    with pytest.raises(InvalidInput, match="at most 200"):
        service.create_organisation(db_session, OPERATOR, "x" * 201)
    assert _tags(db_session) == ["admin:organisation:create"]
    event = db_session.scalars(select(AuditEvent)).one()
    assert event.actor_id is None and event.subject_id == organisation.id


def test_principal_roles_are_validated(db_session: Session) -> None:
    organisation = service.create_organisation(db_session, OPERATOR, "Org A")
    with pytest.raises(InvalidInput, match="unknown role 'curator'"):
        service.create_principal(db_session, OPERATOR, organisation.id, "p", ["partner", "curator"])
    with pytest.raises(InvalidInput, match="at least one role"):
        service.create_principal(db_session, OPERATOR, organisation.id, "p", [])
    with pytest.raises(NotFound, match="organisation nope does not exist"):
        service.create_principal(db_session, OPERATOR, "nope", "p", ["partner"])
    principal = service.create_principal(
        db_session, OPERATOR, organisation.id, "intake system", ["partner", "researcher", "partner"]
    )
    assert principal.roles == "partner researcher"
    with pytest.raises(Conflict, match="already has a principal named"):
        service.create_principal(
            db_session, OPERATOR, organisation.id, "Intake System", ["partner"]
        )
    event = db_session.scalars(
        select(AuditEvent).where(AuditEvent.tag == "admin:principal:create")
    ).one()
    assert event.details == {"roles": ["partner", "researcher"]}
    assert event.organisation_id == organisation.id


def test_client_scopes_default_to_roles_and_must_be_a_subset(db_session: Session) -> None:
    partner = _principal(db_session, ["partner"])
    client, secret = service.create_client(db_session, OPERATOR, partner.id)
    assert client.scopes == "records:read records:write"
    assert len(secret) >= 43 and secret not in client.secret_hash
    narrow, _ = service.create_client(db_session, OPERATOR, partner.id, ["records:read"])
    assert narrow.scopes == "records:read"
    with pytest.raises(InvalidInput, match="not granted scope") as refused:
        service.create_client(db_session, OPERATOR, partner.id, ["records:read", "queries:run"])
    assert refused.value.extensions == {"scopes_not_granted": ["queries:run"]}
    with pytest.raises(InvalidInput, match="unknown scope 'records:delete'"):
        service.create_client(db_session, OPERATOR, partner.id, ["records:delete"])
    with pytest.raises(NotFound):
        service.create_client(db_session, OPERATOR, "no-such-principal")
    assert _tags(db_session).count("admin:client:create") == 2


def test_non_admins_are_refused_and_admins_are_audited(db_session: Session) -> None:
    partner = _principal(db_session, ["partner"])
    admin = _principal(db_session, ["admin"], org="Operator")
    client, _ = service.create_client(db_session, OPERATOR, partner.id)
    calls: list[Callable[[Actor], Any]] = [
        lambda who: service.create_organisation(db_session, who, "Org Z"),
        lambda who: service.create_principal(
            db_session, who, partner.organisation_id, "z", ["board"]
        ),
        lambda who: service.create_client(db_session, who, partner.id),
        lambda who: service.rotate_secret(db_session, who, client.client_id),
        lambda who: service.list_clients(db_session, who),
        lambda who: service.list_organisations(db_session, who),
        lambda who: service.revoke_client(db_session, who, client.client_id),
    ]
    for call in calls:
        with pytest.raises(NotAuthorized, match="no role granting scope 'admin:"):
            call(PrincipalActor.with_roles(partner))
    for call in calls:
        call(PrincipalActor.with_roles(admin))
    acted = db_session.scalars(
        select(AuditEvent).where(AuditEvent.actor_id == admin.id).order_by(AuditEvent.id)
    ).all()
    assert [e.tag for e in acted] == [
        "admin:organisation:create",
        "admin:principal:create",
        "admin:client:create",
        "admin:client:rotate_secret",
        "admin:client:revoke",
    ]
    service.disable_principal(db_session, OPERATOR, admin.id)
    with pytest.raises(NotAuthorized, match="is disabled"):
        service.list_clients(db_session, PrincipalActor.with_roles(admin))


def test_state_conflicts(db_session: Session) -> None:
    partner = _principal(db_session, ["partner"])
    admin = _principal(db_session, ["admin"])
    client, _ = service.create_client(db_session, OPERATOR, partner.id)
    service.revoke_client(db_session, OPERATOR, client.client_id)
    with pytest.raises(Conflict, match="already revoked"):
        service.revoke_client(db_session, OPERATOR, client.client_id)
    with pytest.raises(Conflict, match="is revoked"):
        service.rotate_secret(db_session, OPERATOR, client.client_id)
    with pytest.raises(NotFound):
        service.revoke_client(db_session, OPERATOR, "ctdhub-nobody")
    with pytest.raises(Conflict, match="cannot disable itself"):
        service.disable_principal(db_session, PrincipalActor.with_roles(admin), admin.id)
    service.disable_principal(db_session, PrincipalActor.with_roles(admin), partner.id)
    with pytest.raises(Conflict, match="already disabled"):
        service.disable_principal(db_session, OPERATOR, partner.id)
    with pytest.raises(Conflict, match="is disabled"):
        service.create_client(db_session, OPERATOR, partner.id)


def test_revoking_and_disabling_revoke_live_tokens(
    db_session: Session, make_client: MakeClient, bearer: Bearer
) -> None:
    client_id, secret, principal = make_client("Org A", ["partner"])
    bearer(client_id, secret)
    bearer(client_id, secret, "records:read")
    other_id, other_secret, _ = make_client("Org A", ["partner"])
    bearer(other_id, other_secret)
    service.revoke_client(db_session, OPERATOR, client_id)
    db_session.expire_all()
    live = db_session.scalars(select(OAuthToken).where(OAuthToken.revoked_at.is_(None))).all()
    assert [t.client_id for t in live] == [other_id]
    event = db_session.scalars(
        select(AuditEvent).where(AuditEvent.tag == "admin:client:revoke")
    ).one()
    assert event.details == {"tokens_revoked": 2}


def test_service_checks_the_token_scope_not_only_the_roles(
    app: APIFlask, client: FlaskClient, make_client: MakeClient, bearer: Bearer
) -> None:
    """An admin whose token carries only admin:keys cannot create an organisation with it."""

    @app.post("/v1/test-only/organisations")
    @require_scope("admin:keys")
    def create_org() -> dict[str, str]:
        organisation = service.create_organisation(get_session(), current_actor(), "Org Q")
        return {"id": organisation.id}

    client_id, secret, _ = make_client("Operator", ["admin"])
    narrow = client.post(
        "/v1/test-only/organisations", headers=bearer(client_id, secret, "admin:keys")
    )
    assert narrow.status_code == 403
    assert "does not carry scope 'admin:organisations'" in narrow.get_json()["detail"]
    full = client.post("/v1/test-only/organisations", headers=bearer(client_id, secret))
    assert full.status_code == 200, full.get_json()


def test_no_actor_is_refused_everywhere(app: APIFlask, db_session: Session) -> None:
    """``None`` never means the operator: not in a request, and not outside one either."""
    with app.test_request_context("/v1/anything"), pytest.raises(NotAuthorized, match="no actor"):
        service.create_organisation(db_session, None, "Org R")
    with pytest.raises(NotAuthorized, match="no actor"):
        service.create_organisation(db_session, None, "Org R")
    admin = _principal(db_session, ["admin"])
    with pytest.raises(NotAuthorized, match="not an actor"):
        # A bare principal carries no scopes of its own: wrap it in PrincipalActor on purpose.
        service.create_organisation(db_session, admin, "Org R")
    assert [o.name for o in service.list_organisations(db_session, OPERATOR)] == ["Org A"]
