"""Signing in and out: password, the second factor (TOTP), one-time links, the account page.

Sign-in attempts are rate-limited per address and per e-mail address; only refused attempts
count (a refused one re-renders its form, a good one redirects), so a person who knows their
password is never slowed by their own success.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import cast

from flask import (
    Blueprint,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter

from hub.db import get_session
from hub.domain_errors import InvalidInput, NotFound, Unauthenticated
from hub.errors import request_id
from hub.models import Person
from hub.portal import oidc
from hub.portal.access import (
    CODE_DUE,
    EPOCH_KEY,
    PERSON_KEY,
    SIGNED,
    SIGNED_IN,
    STAGE_KEY,
    current_person,
    local_path,
    needs,
    public,
    session_person,
)
from hub.portal.i18n import SESSION_KEY as LANGUAGE_KEY
from hub.services import people

_TOTP_ENROLMENT = "pending_totp"
_NEXT = "next"


def register(bp: Blueprint, rate_limiter: Limiter) -> None:
    """Attach the sign-in pages to the portal's blueprint, rate-limited."""

    def limited(view: Callable[[], ResponseReturnValue]) -> Callable[[], ResponseReturnValue]:
        limit = lambda: str(current_app.config["PORTAL_SIGN_IN_RATE_LIMIT"])  # noqa: E731
        per_address = rate_limiter.limit(limit, deduct_when=_refused)
        per_email = rate_limiter.limit(limit, key_func=_presented_email, deduct_when=_refused)
        return cast(Callable[[], ResponseReturnValue], per_email(per_address(view)))

    both = ["GET", "POST"]
    oidc.register(bp, limited)
    bp.add_url_rule("/sign-in", "sign_in", limited(sign_in), methods=both)
    bp.add_url_rule("/sign-in/code", "sign_in_code", limited(sign_in_code), methods=both)
    bp.add_url_rule("/sign-out", "sign_out", sign_out, methods=["POST"])
    bp.add_url_rule("/welcome/<token>", "welcome", welcome, methods=both)
    bp.add_url_rule("/account", "account", account)


def _refused(response: Response) -> bool:
    return request.method == "POST" and response.status_code not in (302, 303)


def _presented_email() -> str:
    # The e-mail address on the password form; on the code forms, the person half signed in.
    email = request.form.get("email", "").strip().lower()[:254]
    return "portal-person:" + (email or str(session.get(PERSON_KEY, "-")))


def _safe_next(target: str | None) -> str:
    return local_path(target) or url_for("portal.account")


def _start(person: Person, stage: str) -> None:
    # A new session for every sign-in (no fixation); only the language choice carries over.
    language = session.get(LANGUAGE_KEY)
    target = session.get(_NEXT)
    session.clear()
    session.permanent = True
    if language is not None:
        session[LANGUAGE_KEY] = language
    if target is not None:
        session[_NEXT] = target
    session[PERSON_KEY] = person.id
    session[EPOCH_KEY] = person.session_epoch
    session[STAGE_KEY] = stage


def _finish(person: Person) -> ResponseReturnValue:
    people.record_sign_in(get_session(), person, request_id=request_id())
    target = session.pop(_NEXT, None)
    _start(person, SIGNED)
    return redirect(_safe_next(target), 303)


@public
def sign_in() -> ResponseReturnValue:
    """Ask for the e-mail address and password; then the second factor if the roles need it."""
    if request.method == "GET":
        session[_NEXT] = _safe_next(request.args.get("next"))
        return render_template("portal/sign_in.html")
    try:
        person = people.authenticate(
            get_session(),
            request.form.get("email", ""),
            request.form.get("password", ""),
            request_id=request_id(),
        )
    except Unauthenticated:
        return render_template("portal/sign_in.html", refused=True), 401
    return after_first_factor(person)


def after_first_factor(person: Person) -> ResponseReturnValue:
    """Finish a sign-in whose first factor passed, or ask for the second factor if it is due.

    Whatever the first factor (the hub's password or an external provider), board members and
    admins pass their TOTP code before any page opens. One who has no second factor yet is
    refused: it is set up only through the one-time link an admin sends (:func:`welcome`), so a
    stolen password never enrols a thief's authenticator.
    """
    if not people.needs_second_factor(person):
        return _finish(person)
    if person.totp_secret is None:
        people.refuse_without_second_factor(get_session(), person, request_id=request_id())
        session.pop(_NEXT, None)
        return render_template("portal/sign_in.html", no_second_factor=True), 403
    _start(person, CODE_DUE)
    return redirect(url_for("portal.sign_in_code"), 303)


@public
def sign_in_code() -> ResponseReturnValue:
    """Ask a board member or admin for the code their authenticator app shows."""
    person = session_person(CODE_DUE)
    if person is None:
        return redirect(url_for("portal.sign_in"), 303)
    if request.method == "GET":
        return render_template("portal/sign_in_code.html")
    try:
        people.verify_totp(
            get_session(), person, request.form.get("code", ""), request_id=request_id()
        )
    except Unauthenticated:
        return render_template("portal/sign_in_code.html", refused=True), 401
    return _finish(person)


@public
def sign_out() -> ResponseReturnValue:
    """End the session (the language choice stays)."""
    language = session.get(LANGUAGE_KEY)
    session.clear()
    if language is not None:
        session[LANGUAGE_KEY] = language
    return redirect(url_for("portal.home"), 303)


@public
def welcome(token: str) -> ResponseReturnValue:
    """Choose a password through an invitation or password-reset link (used once).

    A board member or admin without a second factor also sets it up here: the page shows a
    new TOTP key (kept in this browser's session until the form is sent) and the form takes a
    code made from it with the password. Only whoever holds the admin's link can enrol.
    """
    db = get_session()
    try:
        link = people.open_link(db, token)
    except NotFound:
        return render_template("portal/error.html", status=404, reason="link"), 404
    person = db.get(Person, link.person_id)
    secret: str | None = None
    if person is not None and people.enrols_second_factor(person):
        pending = session.get(_TOTP_ENROLMENT)
        if not (isinstance(pending, dict) and pending.get("link") == link.id):
            pending = session[_TOTP_ENROLMENT] = {
                "link": link.id,
                "secret": people.new_totp_secret(),
            }
        secret = str(pending["secret"])
    if request.method == "GET":
        return _welcome_page(link.purpose, person, secret)
    password = request.form.get("password", "")
    if password != request.form.get("confirm", ""):
        return _welcome_page(link.purpose, person, secret, mismatch=True), 400
    try:
        people.redeem_link(
            db,
            token,
            password,
            totp_secret=secret,
            totp_code=request.form.get("code", ""),
            request_id=request_id(),
        )
    except InvalidInput as error:
        refused = "password" if error.extensions.get("field") == "password" else "code"
        return _welcome_page(link.purpose, person, secret, refused=refused), 400
    session.clear()
    return redirect(url_for("portal.sign_in", done=link.purpose), 303)


def _welcome_page(purpose: str, person: Person | None, secret: str | None, **shown: object) -> str:
    enrolment = None
    if person is not None and secret is not None:
        enrolment = {
            "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
            "uri": people.totp_uri(person, secret),
        }
    return render_template("portal/welcome.html", purpose=purpose, enrolment=enrolment, **shown)


@needs(SIGNED_IN)
def account() -> ResponseReturnValue:
    """The signed-in person's own page: organisation, roles and the pages they may use."""
    person = current_person()
    if person is None:  # needs(SIGNED_IN) has checked; say so plainly if that ever changes
        raise Unauthenticated("sign in to see your account")
    return render_template(
        "portal/account.html",
        person=person,
        roles=person.principal.roles.split(),
        second_factor=person.totp_secret is not None,
    )


def link_lifetime() -> timedelta:
    """Return how long a printed invitation or reset link stays usable."""
    return timedelta(seconds=current_app.config["PORTAL_LINK_SECONDS"])
