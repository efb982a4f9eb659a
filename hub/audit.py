"""Typed audit events, written in the same transaction as the change they describe."""

from __future__ import annotations

import re
from typing import Any

from flask import g, has_request_context
from sqlalchemy.orm import Session

from hub.models import AuditEvent, Principal

_TAG = re.compile(r"^[a-z_]+:[a-z_]+:[a-z_]+$")


def record(
    session: Session,
    tag: str,
    *,
    actor: Principal | None = None,
    organisation_id: str | None = None,
    subject_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit event to ``session`` (the caller's transaction commits it).

    :param tag: ``source:subject:action``, e.g. ``ingest:upload:accept``.
    :param details: counts, ids and codes only; never a record value.
    """
    if not _TAG.match(tag):
        raise ValueError(f"audit tag {tag!r} is not of the form source:subject:action")
    event = AuditEvent(
        tag=tag,
        actor_id=actor.id if actor is not None else None,
        organisation_id=organisation_id
        if organisation_id is not None
        else (actor.organisation_id if actor is not None else None),
        subject_id=subject_id,
        request_id=g.get("request_id") if has_request_context() else None,
        details=details or {},
    )
    session.add(event)
    return event
