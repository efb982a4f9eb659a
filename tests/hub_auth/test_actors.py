"""Services take an explicit actor, check it with one ``authorize``, and import no Flask."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

import hub.services
from hub.actors import (
    OPERATOR,
    SCOPES,
    PrincipalActor,
    SystemActor,
    acting_principal,
    authorize,
    scopes_for_roles,
)
from hub.crypto import keyring
from hub.domain_errors import NotAuthorized
from hub.models import AuditEvent, Principal
from hub.services import uploads
from tests.conftest import Bearer, MakeClient, Partner
from tests.hub_uploads.test_uploads_api import post, sample_csv

ROOT = Path(__file__).resolve().parents[2]
SERVICE_MODULES = sorted(
    f"hub.services.{info.name}" for info in pkgutil.iter_modules(hub.services.__path__)
)
#: Everything services stand on: it must not bring the web framework in either.
FLASK_FREE = [
    "hub.actors",
    "hub.audit",
    "hub.crypto",
    "hub.domain_errors",
    "hub.models",
    "hub.storage",
    "hub.credentials",
    *SERVICE_MODULES,
]
WEB_FRAMEWORK = ("flask", "apiflask", "werkzeug", "authlib.integrations.flask_oauth2")


def _loaded_in_fresh_interpreter(module: str) -> list[str]:
    """Import ``module`` alone in a new interpreter; return the web modules it loaded."""
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        f"web = {WEB_FRAMEWORK!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in web"
        " or m in web)))\n"
    )
    result = subprocess.run(  # noqa: S603  (our own interpreter, a fixed program)
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded: list[str] = json.loads(result.stdout)
    return loaded


@pytest.mark.parametrize("module", FLASK_FREE)
def test_services_and_domain_errors_import_no_flask(module: str) -> None:
    assert _loaded_in_fresh_interpreter(module) == []


@pytest.mark.parametrize("module", FLASK_FREE)
def test_no_service_reads_a_request_context(module: str) -> None:
    """No ``flask`` import, not even one hidden inside a function (type hints aside)."""
    path = ROOT / (module.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        # ``if TYPE_CHECKING:`` blocks are read by the type checker only, never run.
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            node.body = []
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module)
    assert not {name for name in imported if name.split(".")[0] in WEB_FRAMEWORK}
    assert "hub.errors" not in imported, "domain errors come from hub.domain_errors"


def _principal(roles: str, disabled: bool = False) -> Principal:
    # Not added to any session: authorize reads only its roles and state.
    from hub.models import utcnow

    return Principal(
        id="p-1", organisation_id="o-1", name="x", roles=roles,
        disabled_at=utcnow() if disabled else None,
    )  # fmt: skip


def test_a_missing_or_bare_actor_is_never_allowed() -> None:
    for scope in SCOPES:
        with pytest.raises(NotAuthorized, match="no actor was given"):
            authorize(None, scope)
        with pytest.raises(NotAuthorized, match="is not an actor"):
            authorize(_principal("admin partner researcher board"), scope)  # type: ignore[arg-type]
        authorize(OPERATOR, scope)
    with pytest.raises(ValueError, match="unknown scope"):
        authorize(OPERATOR, "records:delete")


def test_principals_need_the_role_the_token_and_an_enabled_account() -> None:
    partner = _principal("partner")
    authorize(PrincipalActor.with_roles(partner), "records:write")
    with pytest.raises(NotAuthorized, match="no role granting scope 'queries:run'"):
        # Scopes the roles do not grant are worth nothing, whatever the actor claims.
        authorize(PrincipalActor(partner, frozenset(SCOPES)), "queries:run")
    with pytest.raises(NotAuthorized, match="does not carry scope 'records:write'"):
        authorize(PrincipalActor(partner, frozenset({"records:read"})), "records:write")
    with pytest.raises(NotAuthorized, match="is disabled"):
        authorize(PrincipalActor.with_roles(_principal("partner", disabled=True)), "records:read")


def test_system_actors_hold_only_what_they_are_given() -> None:
    job = SystemActor("job:rewrap", frozenset({"admin:keys"}))
    authorize(job, "admin:keys")
    with pytest.raises(NotAuthorized, match="system actor 'job:rewrap' does not hold"):
        authorize(job, "records:write")
    with pytest.raises(ValueError, match="known scopes"):
        SystemActor("job:x", frozenset({"everything"}))
    with pytest.raises(NotAuthorized, match="needs a principal's own name"):
        # Uploads belong to a partner organisation: the operator cannot upload in its place.
        acting_principal(OPERATOR, "records:write")


def _service_functions() -> list[tuple[str, Any]]:
    found = []
    for name in SERVICE_MODULES:
        module = importlib.import_module(name)
        for attribute, function in vars(module).items():
            if (
                inspect.isfunction(function)
                and function.__module__ == name
                and not attribute.startswith("_")
                and "actor" in inspect.signature(function).parameters
            ):
                found.append((f"{name}.{attribute}", function))
    return found


SERVICE_FUNCTIONS = _service_functions()


def test_every_service_with_side_effects_takes_an_actor() -> None:
    names = {name.rsplit(".", 1)[1] for name, _ in SERVICE_FUNCTIONS}
    assert {
        "ingest", "list_uploads", "get_upload", "withdraw", "preview", "budget", "run",
        "build_synthetic", "list_candidates", "get_candidate", "redraw", "rewrap_all",
        "create_organisation", "create_principal", "disable_principal", "create_client",
        "rotate_secret", "revoke_client", "list_clients", "list_principals",
    } <= names  # fmt: skip


@pytest.mark.parametrize(
    "function", [f for _, f in SERVICE_FUNCTIONS], ids=[n for n, _ in SERVICE_FUNCTIONS]
)
def test_every_service_refuses_no_actor_before_touching_anything(function: Any) -> None:
    """Called with no actor (and nothing else usable: no session), it refuses at once."""
    parameters = inspect.signature(function).parameters
    arguments = {
        name: None
        for name, parameter in parameters.items()
        if parameter.default is inspect.Parameter.empty
    }
    with pytest.raises(NotAuthorized, match="no actor was given"):
        function(**arguments)


def test_uploads_check_the_token_scope_not_a_role_name(
    app: APIFlask, db_session: Session, make_client: MakeClient, ctdc_file: Path
) -> None:
    """A partner acting with a read-only token cannot upload or withdraw (it once could)."""
    _, _, partner = make_client("Partner R", ["partner"])
    reader = PrincipalActor(partner, frozenset({"records:read"}))
    body = sample_csv(ctdc_file, step=500)
    with pytest.raises(NotAuthorized, match="does not carry scope 'records:write'"):
        uploads.ingest(
            db_session, reader, body, "0" * 64, media_type="text/csv", idempotency_key=None,
            accept_valid=False, keyring=keyring(app), request_id=None,
        )  # fmt: skip
    assert uploads.list_uploads(db_session, reader) == []
    researcher = make_client("University", ["researcher"])[2]
    with pytest.raises(NotAuthorized, match="no role granting scope 'records:read'"):
        uploads.list_uploads(db_session, PrincipalActor.with_roles(researcher))
    assert scopes_for_roles(["partner"]) == {"records:read", "records:write"}


def _request_ids(session: Session, tag: str) -> list[str | None]:
    session.expire_all()
    return list(
        session.scalars(
            select(AuditEvent.request_id).where(AuditEvent.tag == tag).order_by(AuditEvent.id)
        )
    )


def test_an_answer_and_its_audit_event_share_the_request_id(
    client: FlaskClient,
    db_session: Session,
    partner_a: Partner,
    make_client: MakeClient,
    bearer: Bearer,
    ctdc_file: Path,
) -> None:
    token = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(partner_a.client_id, partner_a.client_secret),
    )
    assert _request_ids(db_session, "auth:token:issue")[-1] == token.headers["X-Request-ID"]
    uploaded = post(client, partner_a.headers, sample_csv(ctdc_file, step=500))
    assert uploaded.status_code == 201
    assert _request_ids(db_session, "ingest:upload:accept") == [uploaded.headers["X-Request-ID"]]
    upload_id = uploaded.get_json()["id"]
    withdrawn = client.delete(f"/v1/uploads/{upload_id}", headers=partner_a.headers)
    assert withdrawn.status_code == 200
    assert _request_ids(db_session, "ingest:upload:withdraw") == [withdrawn.headers["X-Request-ID"]]
    client_id, secret, _ = make_client("University", ["researcher"])
    spec = {"measure": {"kind": "count"}, "spend": {"rho": 0.01}}
    answered = client.post("/v1/queries", json=spec, headers=bearer(client_id, secret))
    assert answered.status_code == 201, answered.get_json()
    assert _request_ids(db_session, "queries:query:run") == [answered.headers["X-Request-ID"]]
    # Every audit row written in a request carries its id; none is left without one.
    db_session.expire_all()
    events = db_session.scalars(select(AuditEvent)).all()
    in_requests = [e for e in events if not e.tag.startswith("admin:")]
    assert in_requests and all(e.request_id for e in in_requests)
    assert all(e.actor_name == "operator" for e in events if e.tag.startswith("admin:"))
