"""Who is signed in to the portal, and what each page needs.

A page declares what it needs with :func:`needs`: a scope, checked by :func:`hub.actors.authorize`
on the signed-in person's actor, exactly as a service checks an API principal; or
:data:`SIGNED_IN` for a person's own pages. The declaration is kept on the view
(``_ctdhub_portal_needs``), so a test walks every portal route and proves each is protected.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import g, session
from flask.typing import ResponseReturnValue

from hub.actors import SCOPES, PrincipalActor, authorize
from hub.db import get_session
from hub.domain_errors import Unauthenticated
from hub.models import Person
from hub.services import people

F = TypeVar("F", bound=Callable[..., ResponseReturnValue])

#: What a page that any signed-in person may see declares instead of a scope.
SIGNED_IN = "signed-in"
#: What a public page declares.
PUBLIC = "public"

PERSON_KEY, EPOCH_KEY, STAGE_KEY = "person", "epoch", "stage"
#: Stages of a sign-in: the password passed and a code is due, or every factor the person's
#: roles require passed.
CODE_DUE, SIGNED = "code", "signed"


def local_path(target: str | None) -> str | None:
    r"""Return ``target`` if it is a path on this hub, else None (never redirect off the hub).

    Browsers read a backslash as a slash, so ``/\evil.example`` leaves the hub as surely as
    ``//evil.example`` does.

    >>> local_path("/partner/uploads?x=1"), local_path("//evil.example"), local_path("/\\evil")
    ('/partner/uploads?x=1', None, None)
    >>> local_path("https://evil.example/"), local_path("/ok\x00"), local_path(None)
    (None, None, None)
    """
    if not target or not target.startswith("/") or len(target) > 2000:
        return None
    if target.startswith("//") or any(ch == "\\" or ord(ch) < 0x20 for ch in target):
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else None


def session_person(stage: str = SIGNED) -> Person | None:
    """Return the person of this session at ``stage`` (their sign-in still valid), or None.

    A session stops when the person's password was reset since (their epoch moved) or their
    principal was disabled.
    """
    if session.get(STAGE_KEY) != stage or not isinstance(session.get(PERSON_KEY), str):
        return None
    person = people.get_person(get_session(), session[PERSON_KEY])
    if (
        person is None
        or person.session_epoch != session.get(EPOCH_KEY)
        or person.principal.disabled_at is not None
    ):
        session.clear()
        return None
    return person


def current_person() -> Person | None:
    """Return the signed-in person (every factor passed), cached for the request."""
    if "ctdhub_person" not in g:
        g.ctdhub_person = session_person()
    person: Person | None = g.ctdhub_person
    return person


def current_actor() -> PrincipalActor:
    """Return the signed-in person's actor.

    :raises hub.domain_errors.Unauthenticated: if nobody is signed in (the portal redirects
        to the sign-in page).
    """
    person = current_person()
    if person is None:
        raise Unauthenticated("sign in to see this page")
    return people.person_actor(person)


def needs(requirement: str) -> Callable[[F], F]:
    """Protect a page: a signed-in person, holding ``requirement`` if it is a scope.

    :param requirement: a scope of :data:`hub.actors.SCOPES`, or :data:`SIGNED_IN`.
    :raises ValueError: at import time, for anything else.
    """
    if requirement != SIGNED_IN and requirement not in SCOPES:
        raise ValueError(f"needs() takes a scope or SIGNED_IN, not {requirement!r}")

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            actor = current_actor()
            if requirement != SIGNED_IN:
                authorize(actor, requirement)
            return view(*args, **kwargs)

        guarded._ctdhub_portal_needs = requirement  # type: ignore[attr-defined]  # route walk
        return cast(F, guarded)

    return decorator


def public(view: F) -> F:
    """Mark a page anyone may see (the route walk checks the allowlist against these)."""
    view._ctdhub_portal_needs = PUBLIC  # type: ignore[attr-defined]  # read by the route walk
    return view
