"""``ctdhub admin``: accounts at the hub's own command line (organisations, principals, clients,
the portal's people).

The operator at this command line acts as :data:`hub.actors.OPERATOR`, passed on purpose by
each command: whoever can run it can already read the hub's configuration. Every change is
audited like one made over the API. A client secret is printed once, when it is made, and
cannot be shown again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy.orm import Session

from hub.actors import OPERATOR
from hub.db import session_factory
from hub.domain_errors import HubError
from hub.models import OAuthClient, Organisation, Principal
from hub.services import people
from hub.services import principals as service
from hub.services.people import IssuedLink

C = TypeVar("C", bound=Callable[..., Any])


@click.group("admin")
def admin() -> None:
    """Manage organisations, principals and OAuth clients."""


def _json_option(command: C) -> C:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(
        command
    )


@contextmanager
def _session() -> Iterator[Session]:
    """Open a session and turn domain errors into a one-line message and exit status 1."""
    with session_factory()() as session:
        try:
            yield session
        except HubError as error:
            raise click.ClickException(error.detail) from None


def _emit(as_json: bool, document: Any, text: str) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=True) if as_json else text)


def _iso(moment: datetime | None) -> str | None:
    # SQLite returns stored UTC times naive; print every time with its offset all the same.
    if moment is None:
        return None
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).isoformat()


def _organisation_doc(organisation: Organisation) -> dict[str, Any]:
    return {
        "id": organisation.id,
        "name": organisation.name,
        "created_at": _iso(organisation.created_at),
    }


def _principal_doc(principal: Principal) -> dict[str, Any]:
    return {
        "id": principal.id,
        "organisation_id": principal.organisation_id,
        "name": principal.name,
        "roles": principal.roles.split(),
        "disabled_at": _iso(principal.disabled_at),
    }


def _client_doc(client: OAuthClient) -> dict[str, Any]:
    # Never the secret hash: it is of no use to an operator and need not travel.
    return {
        "client_id": client.client_id,
        "principal_id": client.principal_id,
        "organisation_id": client.principal.organisation_id,
        "scopes": client.scopes.split(),
        "created_at": _iso(client.created_at),
        "secret_rotated_at": _iso(client.secret_rotated_at),
        "revoked_at": _iso(client.revoked_at),
    }


_SHOWN_ONCE = "Store the secret now: the hub keeps only its hash and cannot show it again."


@admin.command("create-org")
@click.argument("name")
@_json_option
@with_appcontext
def create_org(name: str, as_json: bool) -> None:
    """Create an organisation called NAME."""
    with _session() as session:
        organisation = service.create_organisation(session, OPERATOR, name)
        _emit(
            as_json,
            _organisation_doc(organisation),
            f"created organisation {organisation.id} {organisation.name!r}",
        )


@admin.command("list-orgs")
@_json_option
@with_appcontext
def list_orgs(as_json: bool) -> None:
    """List the organisations."""
    with _session() as session:
        organisations = service.list_organisations(session, OPERATOR)
        _emit(
            as_json,
            [_organisation_doc(o) for o in organisations],
            "\n".join(f"{o.id}  {o.name}" for o in organisations) or "(no organisations)",
        )


@admin.command("create-principal")
@click.argument("organisation")
@click.argument("name")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    help="partner, researcher, board or admin; repeat for several.",
)
@_json_option
@with_appcontext
def create_principal(organisation: str, name: str, roles: tuple[str, ...], as_json: bool) -> None:
    """Create principal NAME in ORGANISATION (its id or name) with the given roles."""
    with _session() as session:
        org = service.get_organisation(session, OPERATOR, organisation)
        principal = service.create_principal(session, OPERATOR, org.id, name, roles)
        _emit(
            as_json,
            _principal_doc(principal),
            f"created principal {principal.id} {principal.name!r} in {org.name!r} "
            f"with roles {principal.roles}",
        )


@admin.command("list-principals")
@click.option("--org", "organisation", help="Only this organisation (its id or name).")
@_json_option
@with_appcontext
def list_principals(organisation: str | None, as_json: bool) -> None:
    """List the principals."""
    with _session() as session:
        org_id = (
            service.get_organisation(session, OPERATOR, organisation).id if organisation else None
        )
        found = service.list_principals(session, OPERATOR, org_id)
        _emit(
            as_json,
            [_principal_doc(p) for p in found],
            "\n".join(
                f"{p.id}  {p.organisation.name} / {p.name}  [{p.roles}]"
                + ("  DISABLED" if p.disabled_at else "")
                for p in found
            )
            or "(no principals)",
        )


@admin.command("disable-principal")
@click.argument("principal_id")
@_json_option
@with_appcontext
def disable_principal(principal_id: str, as_json: bool) -> None:
    """Disable PRINCIPAL_ID: its clients get no more tokens and its tokens stop working."""
    with _session() as session:
        principal = service.disable_principal(session, OPERATOR, principal_id)
        _emit(as_json, _principal_doc(principal), f"disabled principal {principal.id}")


@admin.command("create-client")
@click.argument("principal_id")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    help="A scope the client may ask for; repeat for several. Default: all of the principal's.",
)
@_json_option
@with_appcontext
def create_client(principal_id: str, scopes: tuple[str, ...], as_json: bool) -> None:
    """Create OAuth client credentials for PRINCIPAL_ID and print the secret, once."""
    with _session() as session:
        client, secret = service.create_client(session, OPERATOR, principal_id, scopes or None)
        _emit(
            as_json,
            {**_client_doc(client), "client_secret": secret},
            f"client_id:     {client.client_id}\nclient_secret: {secret}\n"
            f"scopes:        {client.scopes}\n{_SHOWN_ONCE}",
        )


@admin.command("rotate-secret")
@click.argument("client_id")
@_json_option
@with_appcontext
def rotate_secret(client_id: str, as_json: bool) -> None:
    """Give CLIENT_ID a new secret and print it, once; the old secret and its tokens stop."""
    with _session() as session:
        client, secret = service.rotate_secret(session, OPERATOR, client_id)
        _emit(
            as_json,
            {**_client_doc(client), "client_secret": secret},
            f"client_id:     {client.client_id}\nclient_secret: {secret}\n{_SHOWN_ONCE}",
        )


@admin.command("revoke-client")
@click.argument("client_id")
@_json_option
@with_appcontext
def revoke_client(client_id: str, as_json: bool) -> None:
    """Revoke CLIENT_ID for good; its tokens stop working."""
    with _session() as session:
        client = service.revoke_client(session, OPERATOR, client_id)
        _emit(as_json, _client_doc(client), f"revoked client {client.client_id}")


@admin.command("list-clients")
@click.option("--org", "organisation", help="Only this organisation (its id or name).")
@_json_option
@with_appcontext
def list_clients(organisation: str | None, as_json: bool) -> None:
    """List OAuth clients (never their secrets)."""
    with _session() as session:
        org_id = (
            service.get_organisation(session, OPERATOR, organisation).id if organisation else None
        )
        found = service.list_clients(session, OPERATOR, org_id)
        _emit(
            as_json,
            [_client_doc(c) for c in found],
            "\n".join(
                f"{c.client_id}  principal {c.principal_id}  [{c.scopes}]"
                + ("  REVOKED" if c.revoked_at else "")
                for c in found
            )
            or "(no clients)",
        )


# --- people (portal accounts) -----------------------------------------------------------------


def _link_doc(issued: IssuedLink, url: str) -> dict[str, Any]:
    return {
        "person_id": issued.person.id,
        "principal_id": issued.person.principal_id,
        "email": issued.person.email,
        "link": url,
        "expires_at": _iso(issued.expires_at),
    }


def _link_url(base_url: str, token: str) -> str:
    return base_url.rstrip("/") + "/welcome/" + token


_BASE_URL = click.option(
    "--base-url",
    default="http://127.0.0.1:5000",
    show_default=True,
    help="The portal's address as the person reaches it; the printed link starts with it.",
)


@admin.command("create-person")
@click.argument("organisation")
@click.argument("name")
@click.argument("email")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    help="A role (partner, researcher, board, admin); repeat for several.",
)
@_BASE_URL
@_json_option
@with_appcontext
def create_person(
    organisation: str, name: str, email: str, roles: tuple[str, ...], base_url: str, as_json: bool
) -> None:
    """Create a person who signs in to the portal, and print their one-time invitation link.

    Send the link to the person yourself: it is shown this once, and it lets whoever opens it
    choose the account's password. Board members and admins set up their second factor (TOTP)
    with the same link, and only there: a password alone never enrols an authenticator.
    """
    with _session() as session:
        org = service.get_organisation(session, OPERATOR, organisation)
        issued = people.create_person(
            session,
            OPERATOR,
            org.id,
            name,
            email,
            list(roles),
            link_lifetime=timedelta(seconds=current_app.config["PORTAL_LINK_SECONDS"]),
        )
    url = _link_url(base_url, issued.token)
    _emit(
        as_json,
        _link_doc(issued, url),
        f"created person {issued.person.id} ({issued.person.email})\n"
        f"invitation link (shown once; valid until {_iso(issued.expires_at)}):\n{url}",
    )


@admin.command("reset-person")
@click.argument("email")
@_BASE_URL
@_json_option
@with_appcontext
def reset_person(email: str, base_url: str, as_json: bool) -> None:
    """Print a one-time password-reset link for a person; their earlier links stop working."""
    with _session() as session:
        issued = people.issue_reset(
            session,
            OPERATOR,
            email,
            link_lifetime=timedelta(seconds=current_app.config["PORTAL_LINK_SECONDS"]),
        )
    url = _link_url(base_url, issued.token)
    _emit(
        as_json,
        _link_doc(issued, url),
        f"password-reset link for {issued.person.email} (shown once; valid until "
        f"{_iso(issued.expires_at)}):\n{url}",
    )
