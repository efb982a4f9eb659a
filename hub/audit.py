"""Typed audit events, written in the same transaction as the change they describe.

The actor and the request id are arguments, never read from a request context, so a job or
the command line records events exactly as a view does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.actors import Actor, PrincipalActor, SystemActor
from hub.models import AuditEvent, Principal

_TAG = re.compile(r"^[a-z_]+:[a-z_]+:[a-z_]+$")


def record(
    session: Session,
    tag: str,
    *,
    actor: Actor | None,
    request_id: str | None,
    organisation_id: str | None = None,
    subject_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit event to ``session`` (the caller's transaction commits it).

    :param tag: ``source:subject:action``, e.g. ``ingest:upload:accept``.
    :param actor: who acted; ``None`` only where nobody was authenticated (a failed sign-in).
    :param request_id: the HTTP request's id (its ``X-Request-ID``), ``None`` outside a request.
    :param organisation_id: the organisation concerned; the acting principal's by default.
    :param details: counts, ids and codes only; never a record value.
    """
    if not _TAG.match(tag):
        raise ValueError(f"audit tag {tag!r} is not of the form source:subject:action")
    if actor is not None and not isinstance(actor, PrincipalActor | SystemActor):
        raise TypeError(f"an audit event's actor must be an Actor, not {type(actor).__name__}")
    principal = actor.principal if isinstance(actor, PrincipalActor) else None
    event = AuditEvent(
        tag=tag,
        actor_id=principal.id if principal is not None else None,
        actor_name=actor.name if isinstance(actor, SystemActor) else None,
        organisation_id=organisation_id
        if organisation_id is not None
        else (principal.organisation_id if principal is not None else None),
        subject_id=subject_id,
        request_id=request_id,
        details=details or {},
    )
    session.add(event)
    return event


def trail(session: Session, subject_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Return the audit events about ``subject_ids``, in the order they were written.

    Each event names its tag, time, actor (the principal's name, or the system actor's) and its
    details (codes and ids only, as :func:`record` keeps them). Callers authorise the reader.
    """
    if not subject_ids:
        return []
    rows = session.execute(
        select(AuditEvent, Principal.name)
        .outerjoin(Principal, Principal.id == AuditEvent.actor_id)
        .where(AuditEvent.subject_id.in_(list(subject_ids)))
        .order_by(AuditEvent.id)
    ).all()
    return [
        {
            "tag": event.tag,
            "at": event.at,
            "actor": name or event.actor_name or "",
            "actor_id": event.actor_id,
            "details": dict(event.details or {}),
        }
        for event, name in rows
    ]
