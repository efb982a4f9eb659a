"""People who sign in to the portal: accounts, one-time links, passwords and second factors.

A person is a principal (an organisation and roles, exactly as the API's) who signs in by hand,
so every portal page is authorised by the same service functions and scopes as the API: the
person acts as :meth:`hub.actors.PrincipalActor.with_roles` of their principal. Passwords are
kept only as Argon2id hashes (:mod:`hub.credentials`), one-time links (invitations, password
resets) only as SHA-256 digests, and board members and admins must confirm a TOTP second factor.
Every change writes its audit event in its own transaction; nothing here knows HTTP.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import pyotp
from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from hub import audit
from hub.actors import Actor, PrincipalActor, authorize, parse_roles
from hub.credentials import dummy_hash, hash_secret, needs_rehash, token_digest, verify_secret
from hub.domain_errors import Conflict, InvalidInput, NotFound, Unauthenticated
from hub.models import Person, PersonLink, Principal, utcnow
from hub.services.principals import add_principal

#: Roles whose people must sign in with a second factor (TOTP).
SECOND_FACTOR_ROLES = frozenset({"board", "admin"})
PASSWORD_MIN = 12
PASSWORD_MAX = 1024
LinkPurpose = Literal["invitation", "reset"]
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]{1,63}$")
# A TOTP code is accepted one step (30 s) either side of now, for clocks that drift.
_TOTP_WINDOW = 1


def clean_email(email: str) -> str:
    """Return an e-mail address trimmed and lower-cased, the form a person signs in with.

    :raises hub.domain_errors.InvalidInput: if it is not shaped like an address.

    >>> clean_email("  Ada@Example.ORG ")
    'ada@example.org'
    >>> clean_email("ada")
    Traceback (most recent call last):
    ...
    hub.domain_errors.InvalidInput: 'ada' is not an e-mail address (name@domain.tld)
    """
    cleaned = email.strip().lower()
    if not _EMAIL.match(cleaned):
        raise InvalidInput(f"{email.strip()[:80]!r} is not an e-mail address (name@domain.tld)")
    return cleaned


def needs_second_factor(person: Person) -> bool:
    """Tell whether the person's roles require a TOTP second factor at sign-in."""
    return bool(SECOND_FACTOR_ROLES & set(person.principal.roles.split()))


def person_actor(person: Person) -> PrincipalActor:
    """Return the actor a signed-in person acts as: their principal with its roles' scopes."""
    return PrincipalActor.with_roles(person.principal)


def check_password(password: str) -> None:
    """Refuse a password too short or too long to choose.

    >>> check_password("correct horse battery staple")
    >>> check_password("short")
    Traceback (most recent call last):
    ...
    hub.domain_errors.InvalidInput: a password needs at least 12 characters
    """
    if len(password) < PASSWORD_MIN:
        raise InvalidInput(f"a password needs at least {PASSWORD_MIN} characters", field="password")
    if len(password) > PASSWORD_MAX:
        raise InvalidInput(f"a password has at most {PASSWORD_MAX} characters", field="password")


@dataclass(frozen=True)
class IssuedLink:
    """A one-time link's token, shown once to the admin who sends it, and when it expires."""

    person: Person
    token: str
    expires_at: datetime


def _add_link(
    session: Session, person: Person, purpose: LinkPurpose, lifetime: timedelta
) -> IssuedLink:
    token = secrets.token_urlsafe(32)
    expires_at = utcnow() + lifetime
    session.add(
        PersonLink(
            person_id=person.id,
            purpose=purpose,
            token_hash=token_digest(token),
            expires_at=expires_at,
        )
    )
    return IssuedLink(person, token, expires_at)


def create_person(
    session: Session,
    actor: Actor,
    organisation_id: str,
    name: str,
    email: str,
    roles: list[str],
    *,
    link_lifetime: timedelta,
    request_id: str | None = None,
) -> IssuedLink:
    """Create a person (a principal of the organisation) and their invitation link.

    The principal, the person, the invitation and both audit events are one transaction.

    :param name: their display name, unique within the organisation.
    :param email: what they sign in with, unique in the hub.
    :param roles: role names, as for API principals.
    :param link_lifetime: how long the invitation stays usable.
    :raises hub.domain_errors.Conflict: if the e-mail address or the name is taken.
    """
    authorize(actor, "admin:principals")
    address = clean_email(email)
    parse_roles(roles)
    if session.scalar(select(Person.id).where(Person.email == address)) is not None:
        raise Conflict(f"a person already signs in as {address}")
    principal = add_principal(session, actor, organisation_id, name, roles, request_id=request_id)
    person = Person(principal_id=principal.id, email=address, principal=principal)
    session.add(person)
    session.flush()
    issued = _add_link(session, person, "invitation", link_lifetime)
    audit.record(
        session,
        "admin:person:create",
        actor=actor,
        request_id=request_id,
        organisation_id=principal.organisation_id,
        subject_id=person.id,
        details={"principal_id": principal.id, "roles": principal.roles.split()},
    )
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"a person already signs in as {address}, or the name is taken") from None
    return issued


def issue_reset(
    session: Session,
    actor: Actor,
    email: str,
    *,
    link_lifetime: timedelta,
    request_id: str | None = None,
) -> IssuedLink:
    """Issue a password-reset link for a person (an admin sends it); earlier links stop.

    :raises hub.domain_errors.NotFound: if nobody signs in with that address.
    """
    authorize(actor, "admin:principals")
    person = _by_email(session, clean_email(email))
    if person is None:
        raise NotFound(f"nobody signs in as {clean_email(email)}")
    _expire_links(session, person)
    issued = _add_link(session, person, "reset", link_lifetime)
    audit.record(
        session,
        "admin:person:reset",
        actor=actor,
        request_id=request_id,
        organisation_id=person.principal.organisation_id,
        subject_id=person.id,
    )
    session.commit()
    return issued


def _expire_links(session: Session, person: Person) -> None:
    now = utcnow()
    for link in session.scalars(
        select(PersonLink).where(PersonLink.person_id == person.id, PersonLink.used_at.is_(None))
    ):
        link.used_at = now


def _with_principal() -> Select[Person]:
    # A person is always used with their principal (roles) and its organisation.
    return select(Person).options(joinedload(Person.principal).joinedload(Principal.organisation))


def _by_email(session: Session, address: str) -> Person | None:
    return session.scalar(_with_principal().where(func.lower(Person.email) == address))


def open_link(session: Session, token: str) -> PersonLink:
    """Return the unused, unexpired link a token names.

    :raises hub.domain_errors.NotFound: the same answer whether it never existed, was used or
        has expired, so a guessed token learns nothing.
    """
    link = session.scalar(select(PersonLink).where(PersonLink.token_hash == token_digest(token)))
    if link is None or link.used_at is not None or _as_utc(link.expires_at) <= utcnow():
        raise NotFound("this link is not valid: it was used, has expired or never existed")
    return link


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def enrols_second_factor(person: Person) -> bool:
    """Tell whether the person's one-time link must also set up their second factor.

    A board member or admin without a second factor sets it up only through the link an admin
    sent them, never at a sign-in: a password stolen before their first sign-in then cannot
    enrol the thief's authenticator.
    """
    return needs_second_factor(person) and person.totp_secret is None


def redeem_link(
    session: Session,
    token: str,
    password: str,
    *,
    totp_secret: str | None = None,
    totp_code: str = "",
    request_id: str | None = None,
    at: datetime | None = None,
) -> Person:
    """Set a person's password through their one-time link; the link is used up.

    For a person who :func:`enrols_second_factor`, the link also keeps ``totp_secret`` as their
    second factor once ``totp_code`` shows it was added to their app: the password, the second
    factor and the used link are one transaction, so neither is set without the other.
    Sessions signed in before it stop working.

    :param totp_secret: the secret shown on the link's page (ignored for anyone else).
    :param totp_code: a code made from it now.
    :raises hub.domain_errors.NotFound: if the link is not valid.
    :raises hub.domain_errors.InvalidInput: if the password is refused, or the second factor's
        secret is missing or its code does not match (``field`` names which); nothing is kept.
    """
    link = open_link(session, token)
    check_password(password)
    person = session.get(Person, link.person_id)
    if person is None:  # the foreign key makes this impossible; say so plainly if it happens
        raise NotFound("this link's person no longer exists")
    if enrols_second_factor(person):
        if not totp_secret:
            raise InvalidInput("set up the second factor with this link", field="totp_secret")
        step = _accepted_step(totp_secret, totp_code, None, at or utcnow())
        if step is None:
            raise InvalidInput(
                "the code does not match: type the 6 digits your app shows now", field="code"
            )
        person.totp_secret, person.totp_last_step = totp_secret, step
        audit.record(
            session,
            "portal:person:second_factor",
            actor=person_actor(person),
            request_id=request_id,
            subject_id=person.id,
        )
    person.password_hash = hash_secret(password)
    person.session_epoch += 1
    link.used_at = utcnow()
    audit.record(
        session,
        f"portal:person:{'accept' if link.purpose == 'invitation' else 'reset'}",
        actor=person_actor(person),
        request_id=request_id,
        subject_id=person.id,
    )
    session.commit()
    return person


def authenticate(
    session: Session, email: str, password: str, *, request_id: str | None = None
) -> Person:
    """Check a person's address and password (the first factor); audit a refusal.

    An unknown address costs the same work and gets the same answer as a wrong password.

    :raises hub.domain_errors.Unauthenticated: naming neither which part was wrong.
    """
    address = email.strip().lower()[:254]
    person = _by_email(session, address)
    stored = person.password_hash if person is not None else None
    good = verify_secret(password[:PASSWORD_MAX], stored or dummy_hash())
    if person is None or stored is None or not good or person.principal.disabled_at is not None:
        audit.record(
            session,
            "portal:person:refuse",
            actor=None,
            request_id=request_id,
            subject_id=person.id if person is not None else None,
        )
        session.commit()
        raise Unauthenticated("the e-mail address or the password is not right")
    if needs_rehash(stored):
        person.password_hash = hash_secret(password)
    session.commit()
    return person


def authenticate_external(
    session: Session, email: str | None, *, provider: str, request_id: str | None = None
) -> Person:
    """Return the person an external provider vouched for (the first factor); audit a refusal.

    The provider's id_token has been verified by the caller; its claim names an e-mail address.
    Only a person the hub already has (created or invited by an admin) signs in this way: an
    external sign-in never creates anyone, least of all a board member.

    :param email: the address the provider's claim holds, or None if the claim was missing.
    :param provider: which provider vouched (its metadata URL), kept in the audit event.
    :raises hub.domain_errors.Unauthenticated: if nobody here has that address, or their
        principal is disabled.
    """
    person = _by_email(session, email.strip().lower()[:254]) if email else None
    if person is None or person.principal.disabled_at is not None:
        refuse_external(
            session,
            provider=provider,
            reason="no person",
            person=person,
            request_id=request_id,
        )
        raise Unauthenticated("the provider's account belongs to nobody who may sign in here")
    return person


def refuse_external(
    session: Session,
    *,
    provider: str,
    reason: str,
    person: Person | None = None,
    request_id: str | None = None,
) -> None:
    """Audit an external sign-in refused: its id_token failed a check, or it named nobody.

    :param reason: what failed, as a class of error (``ExpiredTokenError``), never the token.
    """
    audit.record(
        session,
        "portal:person:refuse",
        actor=None,
        request_id=request_id,
        subject_id=person.id if person is not None else None,
        details={"method": "oidc", "provider": provider, "reason": reason[:80]},
    )
    session.commit()


def refuse_without_second_factor(
    session: Session, person: Person, *, request_id: str | None = None
) -> None:
    """Audit a sign-in refused because the person's roles need a second factor they lack.

    Their password (or provider) passed, but a second factor is set up only through a one-time
    link (:func:`redeem_link`): an admin sends them a new one (``ctdhub admin reset-person``).
    """
    audit.record(
        session,
        "portal:person:refuse",
        actor=None,
        request_id=request_id,
        organisation_id=person.principal.organisation_id,
        subject_id=person.id,
        details={"reason": "no second factor"},
    )
    session.commit()


def record_sign_in(session: Session, person: Person, *, request_id: str | None = None) -> None:
    """Record that a person signed in, with every factor their roles require."""
    person.last_sign_in_at = utcnow()
    audit.record(
        session,
        "portal:person:sign_in",
        actor=person_actor(person),
        request_id=request_id,
        subject_id=person.id,
    )
    session.commit()


def new_totp_secret() -> str:
    """Return a fresh TOTP secret (base32) for a person to add to their authenticator."""
    return pyotp.random_base32()


def totp_uri(person: Person, secret: str, issuer: str = "ctdhub") -> str:
    """Return the ``otpauth://`` URI an authenticator app reads."""
    return pyotp.TOTP(secret).provisioning_uri(name=person.email, issuer_name=issuer)


def _accepted_step(secret: str, code: str, last_step: int | None, at: datetime) -> int | None:
    code = code.strip().replace(" ", "")
    if not re.fullmatch(r"\d{6}", code):
        return None
    totp = pyotp.TOTP(secret)
    now_step = totp.timecode(at)
    for step in range(now_step - _TOTP_WINDOW, now_step + _TOTP_WINDOW + 1):
        if last_step is not None and step <= last_step:
            continue  # a code already used (or an older one) is never accepted again
        if secrets.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def verify_totp(
    session: Session,
    person: Person,
    code: str,
    *,
    request_id: str | None = None,
    at: datetime | None = None,
) -> None:
    """Check a sign-in's second factor; a code is accepted once only.

    :raises hub.domain_errors.Unauthenticated: if it does not match (audited).
    """
    step = (
        _accepted_step(person.totp_secret, code, person.totp_last_step, at or utcnow())
        if person.totp_secret is not None
        else None
    )
    if step is None:
        audit.record(
            session,
            "portal:person:refuse_code",
            actor=None,
            request_id=request_id,
            organisation_id=person.principal.organisation_id,
            subject_id=person.id,
        )
        session.commit()
        raise Unauthenticated("the code is not right, or was already used")
    person.totp_last_step = step
    session.commit()


def get_person(session: Session, person_id: str) -> Person | None:
    """Return a person with their principal and organisation loaded (for a portal session)."""
    return session.scalar(_with_principal().where(Person.id == person_id))
