"""Organisations, principals and their OAuth clients: create, rotate, revoke, disable, list.

Each function takes the session and an explicit actor (an admin principal, or
:data:`hub.actors.OPERATOR` passed on purpose by the local admin command line), checks
authorisation itself, writes its audit event (with the request id, in a request) in the same
transaction and commits. A client secret is returned once, at creation or rotation, and only
its hash is stored.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from hub import audit
from hub.actors import (
    Actor,
    PrincipalActor,
    authorize,
    parse_roles,
    parse_scopes,
    principal_scopes,
)
from hub.credentials import hash_secret, new_client_id, new_secret
from hub.domain_errors import Conflict, InvalidInput, NotFound
from hub.models import OAuthClient, OAuthToken, Organisation, Principal, utcnow

if TYPE_CHECKING:
    from sqlalchemy import CursorResult

NAME_MAX = 200


def clean_name(name: str, what: str) -> str:
    """Return a display name trimmed and with inner runs of spaces collapsed.

    :param name: the name as typed.
    :param what: what is being named, for the error message.
    :raises hub.domain_errors.InvalidInput: if it is empty, too long or holds control characters.

    >>> clean_name("  La  Strada   International ", "organisation")
    'La Strada International'
    >>> clean_name("  ", "organisation")
    Traceback (most recent call last):
    ...
    hub.domain_errors.InvalidInput: the organisation name is empty
    """
    if any(unicodedata.category(ch) == "Cc" and ch != " " for ch in name):
        raise InvalidInput(f"the {what} name holds control characters (tabs, newlines ...)")
    cleaned = " ".join(name.split())
    if not cleaned:
        raise InvalidInput(f"the {what} name is empty")
    if len(cleaned) > NAME_MAX:
        raise InvalidInput(f"the {what} name is {len(cleaned)} characters long; at most {NAME_MAX}")
    return cleaned


def create_organisation(
    session: Session, actor: Actor, name: str, *, request_id: str | None = None
) -> Organisation:
    """Create an organisation (a partner, a research institute, the hub's operator).

    :param name: its display name, unique regardless of case.
    :raises hub.domain_errors.Conflict: if an organisation already has that name.
    """
    authorize(actor, "admin:organisations")
    cleaned = clean_name(name, "organisation")
    taken = session.scalar(
        select(Organisation.id).where(func.lower(Organisation.name) == cleaned.lower())
    )
    if taken is not None:
        raise Conflict(f"an organisation named {cleaned!r} already exists ({taken})")
    organisation = Organisation(name=cleaned)
    session.add(organisation)
    session.flush()
    audit.record(
        session,
        "admin:organisation:create",
        actor=actor,
        request_id=request_id,
        organisation_id=organisation.id,
        subject_id=organisation.id,
    )
    _commit(session, f"an organisation named {cleaned!r} already exists")
    return organisation


def get_organisation(session: Session, actor: Actor, ref: str) -> Organisation:
    """Return an organisation by id or by exact name.

    :param ref: the organisation's id, or its name.
    :raises hub.domain_errors.NotFound: if neither matches.
    """
    authorize(actor, "admin:organisations")
    organisation = session.get(Organisation, ref) or session.scalar(
        select(Organisation).where(Organisation.name == ref)
    )
    if organisation is None:
        raise NotFound(f"no organisation has the id or name {ref!r}")
    return organisation


def list_organisations(session: Session, actor: Actor) -> list[Organisation]:
    """Return every organisation, by name."""
    authorize(actor, "admin:organisations")
    return list(session.scalars(select(Organisation).order_by(Organisation.name)))


def create_principal(
    session: Session,
    actor: Actor,
    organisation_id: str,
    name: str,
    roles: Iterable[str],
    *,
    request_id: str | None = None,
) -> Principal:
    """Create a principal of an organisation with the given roles.

    :param organisation_id: the organisation it acts for.
    :param name: its display name, unique within the organisation.
    :param roles: role names from :data:`hub.auth.ROLE_SCOPES`.
    :raises hub.domain_errors.InvalidInput: for an unknown role or a bad name.
    :raises hub.domain_errors.NotFound: if the organisation does not exist.
    :raises hub.domain_errors.Conflict: if the organisation already has a principal of that name.
    """
    principal = add_principal(session, actor, organisation_id, name, roles, request_id=request_id)
    _commit(
        session,
        f"organisation {organisation_id} already has a principal named {principal.name!r}",
    )
    return principal


def add_principal(
    session: Session,
    actor: Actor,
    organisation_id: str,
    name: str,
    roles: Iterable[str],
    *,
    request_id: str | None = None,
) -> Principal:
    """Add a principal and its audit event to the session's transaction; commit nothing.

    For callers that create the principal together with something else in one transaction (a
    portal person); :func:`create_principal` takes the same arguments and raises the same
    errors, and commits.
    """
    authorize(actor, "admin:principals")
    role_names = parse_roles(roles)
    cleaned = clean_name(name, "principal")
    organisation = session.get(Organisation, organisation_id)
    if organisation is None:
        raise NotFound(f"organisation {organisation_id} does not exist")
    taken = session.scalar(
        select(Principal.id).where(
            Principal.organisation_id == organisation.id,
            func.lower(Principal.name) == cleaned.lower(),
        )
    )
    if taken is not None:
        raise Conflict(
            f"organisation {organisation.id} already has a principal named {cleaned!r} ({taken})"
        )
    principal = Principal(organisation_id=organisation.id, name=cleaned, roles=" ".join(role_names))
    session.add(principal)
    session.flush()
    audit.record(
        session,
        "admin:principal:create",
        actor=actor,
        request_id=request_id,
        organisation_id=organisation.id,
        subject_id=principal.id,
        details={"roles": role_names},
    )
    return principal


def list_principals(
    session: Session, actor: Actor, organisation_id: str | None = None
) -> list[Principal]:
    """Return principals (of one organisation if given), with their organisations loaded."""
    authorize(actor, "admin:principals")
    query = select(Principal).options(joinedload(Principal.organisation))
    if organisation_id is not None:
        query = query.where(Principal.organisation_id == organisation_id)
    return list(session.scalars(query.order_by(Principal.organisation_id, Principal.name)))


def disable_principal(
    session: Session, actor: Actor, principal_id: str, *, request_id: str | None = None
) -> Principal:
    """Disable a principal: its clients can no longer get tokens and its live tokens stop.

    :raises hub.domain_errors.NotFound: if there is no such principal.
    :raises hub.domain_errors.Conflict: if it is already disabled, or is the actor itself.
    """
    authorize(actor, "admin:principals")
    principal = session.get(Principal, principal_id)
    if principal is None:
        raise NotFound(f"principal {principal_id} does not exist")
    if principal.disabled_at is not None:
        raise Conflict(f"principal {principal_id} is already disabled")
    if isinstance(actor, PrincipalActor) and actor.id == principal.id:
        # An admin locking itself out over the API would leave no one to undo it.
        raise Conflict("a principal cannot disable itself; ask another admin or the operator")
    now = utcnow()
    principal.disabled_at = now
    revoked = _revoke_tokens(session, OAuthToken.principal_id == principal.id)
    audit.record(
        session,
        "admin:principal:disable",
        actor=actor,
        request_id=request_id,
        organisation_id=principal.organisation_id,
        subject_id=principal.id,
        details={"tokens_revoked": revoked},
    )
    session.commit()
    return principal


def create_client(
    session: Session,
    actor: Actor,
    principal_id: str,
    scopes: Iterable[str] | None = None,
    *,
    request_id: str | None = None,
) -> tuple[OAuthClient, str]:
    """Create OAuth client credentials for a principal; return the client and its secret.

    The secret is shown this once: only its hash is stored.

    :param principal_id: the principal the client acts for.
    :param scopes: what the client may ask for; by default everything the principal's roles
        grant. It must be a subset of that.
    :raises hub.domain_errors.InvalidInput: for an unknown scope or one the roles do not grant.
    :raises hub.domain_errors.NotFound: if there is no such principal.
    :raises hub.domain_errors.Conflict: if the principal is disabled.
    """
    authorize(actor, "admin:clients")
    principal = session.get(Principal, principal_id)
    if principal is None:
        raise NotFound(f"principal {principal_id} does not exist")
    if principal.disabled_at is not None:
        raise Conflict(f"principal {principal_id} is disabled; it cannot get a client")
    granted = principal_scopes(principal)
    requested = parse_scopes(scopes) if scopes is not None else sorted(granted)
    if not requested:
        raise InvalidInput("a client needs at least one scope")
    beyond = sorted(set(requested) - granted)
    if beyond:
        raise InvalidInput(
            f"principal {principal_id} (roles: {principal.roles}) is not granted scope(s) "
            + ", ".join(beyond),
            scopes_not_granted=beyond,
        )
    secret = new_secret()
    client = OAuthClient(
        client_id=new_client_id(),
        secret_hash=hash_secret(secret),
        principal_id=principal.id,
        scopes=" ".join(requested),
    )
    session.add(client)
    audit.record(
        session,
        "admin:client:create",
        actor=actor,
        request_id=request_id,
        organisation_id=principal.organisation_id,
        subject_id=client.client_id,
        details={"principal_id": principal.id, "scopes": requested},
    )
    session.commit()
    return client, secret


def _get_client(session: Session, client_id: str) -> OAuthClient:
    client = session.scalar(
        select(OAuthClient)
        .where(OAuthClient.client_id == client_id)
        .options(joinedload(OAuthClient.principal))
    )
    if client is None:
        raise NotFound(f"client {client_id} does not exist")
    return client


def rotate_secret(
    session: Session,
    actor: Actor,
    client_id: str,
    *,
    request_id: str | None = None,
) -> tuple[OAuthClient, str]:
    """Give a client a new secret; the old one stops working and so do its live tokens.

    Rotation usually follows a suspected leak, so tokens got with the old secret go too.

    :raises hub.domain_errors.NotFound: if there is no such client.
    :raises hub.domain_errors.Conflict: if the client is revoked.
    """
    authorize(actor, "admin:clients")
    client = _get_client(session, client_id)
    if client.revoked_at is not None:
        raise Conflict(f"client {client_id} is revoked; create a new client instead")
    secret = new_secret()
    client.secret_hash = hash_secret(secret)
    client.secret_rotated_at = utcnow()
    revoked = _revoke_tokens(session, OAuthToken.client_id == client.client_id)
    audit.record(
        session,
        "admin:client:rotate_secret",
        actor=actor,
        request_id=request_id,
        organisation_id=client.principal.organisation_id,
        subject_id=client.client_id,
        details={"tokens_revoked": revoked},
    )
    session.commit()
    return client, secret


def revoke_client(
    session: Session, actor: Actor, client_id: str, *, request_id: str | None = None
) -> OAuthClient:
    """Revoke a client for good: no more tokens, and its live tokens stop.

    :raises hub.domain_errors.NotFound: if there is no such client.
    :raises hub.domain_errors.Conflict: if it is already revoked.
    """
    authorize(actor, "admin:clients")
    client = _get_client(session, client_id)
    if client.revoked_at is not None:
        raise Conflict(f"client {client_id} is already revoked")
    client.revoked_at = utcnow()
    revoked = _revoke_tokens(session, OAuthToken.client_id == client.client_id)
    audit.record(
        session,
        "admin:client:revoke",
        actor=actor,
        request_id=request_id,
        organisation_id=client.principal.organisation_id,
        subject_id=client.client_id,
        details={"tokens_revoked": revoked},
    )
    session.commit()
    return client


def list_clients(
    session: Session, actor: Actor, organisation_id: str | None = None
) -> list[OAuthClient]:
    """Return clients (of one organisation's principals if given), principals loaded."""
    authorize(actor, "admin:clients")
    query = (
        select(OAuthClient)
        .join(Principal, Principal.id == OAuthClient.principal_id)
        .options(joinedload(OAuthClient.principal).joinedload(Principal.organisation))
    )
    if organisation_id is not None:
        query = query.where(Principal.organisation_id == organisation_id)
    return list(session.scalars(query.order_by(OAuthClient.created_at, OAuthClient.client_id)))


def _revoke_tokens(session: Session, which: ColumnElement[bool]) -> int:
    """Mark the not yet revoked tokens matching ``which`` revoked; return how many."""
    # An UPDATE always yields a cursor result, which knows how many rows it touched.
    result = cast(
        "CursorResult[Any]",
        session.execute(
            update(OAuthToken)
            .where(which, OAuthToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .execution_options(synchronize_session=False)
        ),
    )
    return int(result.rowcount)


def _commit(session: Session, conflict: str) -> None:
    """Commit; a unique constraint lost to a concurrent request becomes a Conflict."""
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(conflict) from None
