"""People sign in: password, a second factor for the board and admins, one-time links, limits."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pyotp
import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.actors import OPERATOR
from hub.cli_admin import admin
from hub.credentials import hash_secret
from hub.domain_errors import InvalidInput
from hub.models import AuditEvent, Person, PersonLink
from hub.services import people, principals
from tests.hub_portal.conftest import PASSWORD, MakePerson, csrf_token, sign_in


def _post_sign_in(client: FlaskClient, email: str, password: str) -> int:
    response = client.post(
        "/sign-in", data={"email": email, "password": password, "csrf_token": csrf_token(client)}
    )
    return response.status_code


def test_a_partner_signs_in_and_out(https_client: FlaskClient, make_person: MakePerson) -> None:
    partner = make_person("Sign In NGO", ["partner"])
    assert https_client.get("/account").status_code == 302
    assert sign_in(https_client, partner) is None, "a partner needs no second factor"
    account = https_client.get("/account")
    assert account.status_code == 200 and partner.email in account.get_data(as_text=True)
    cookie = https_client.get_cookie("ctdhub_session")
    assert cookie is not None and cookie.secure and cookie.http_only
    assert cookie.same_site == "Lax"
    out = https_client.post("/sign-out", data={"csrf_token": csrf_token(https_client, "/account")})
    assert out.status_code == 303
    assert https_client.get("/account").status_code == 302


def test_a_wrong_password_and_an_unknown_address_get_the_same_answer(
    https_client: FlaskClient, make_person: MakePerson, db_session: Session
) -> None:
    partner = make_person("Sign In NGO", ["partner"])
    wrong = https_client.post(
        "/sign-in",
        data={
            "email": partner.email,
            "password": "not it at all!",
            "csrf_token": csrf_token(https_client),
        },
    )
    unknown = https_client.post(
        "/sign-in",
        data={
            "email": "nobody@example.org",
            "password": PASSWORD,
            "csrf_token": csrf_token(https_client),
        },
    )
    assert wrong.status_code == unknown.status_code == 401
    assert "not right" in wrong.get_data(as_text=True)
    assert wrong.get_data(as_text=True).count("not right") == unknown.get_data(as_text=True).count(
        "not right"
    )
    refusals = db_session.scalars(
        select(AuditEvent).where(AuditEvent.tag == "portal:person:refuse")
    ).all()
    assert len(refusals) == 2
    assert https_client.get("/account").status_code == 302


def _invite(db_session: Session, org: str, roles: list[str]) -> people.IssuedLink:
    organisation = principals.create_organisation(db_session, OPERATOR, org)
    return people.create_person(
        db_session,
        OPERATOR,
        organisation.id,
        f"Invited to {org}",
        f"invited@{org.lower().replace(' ', '-')}.example.org",
        roles,
        link_lifetime=timedelta(hours=1),
    )


def _enrolment_secret(page: str) -> str:
    found = re.search(r'id="totp-secret" dir="ltr">([A-Z2-7 ]+)<', page)
    assert found is not None, "the link's page shows the key to add to the app"
    return found.group(1).replace(" ", "")


def test_a_board_member_sets_up_the_second_factor_through_the_invitation_only(
    https_client: FlaskClient, db_session: Session
) -> None:
    issued = _invite(db_session, "Enrol Board", ["board"])
    path = f"/welcome/{issued.token}"
    secret = _enrolment_secret(https_client.get(path).text)
    assert _enrolment_secret(https_client.get(path).text) == secret, "one key per link's visit"
    token = csrf_token(https_client, path)
    chosen = "a long enough passphrase"
    # Without the code made from the key, nothing is kept: neither password nor second factor.
    wrong = https_client.post(
        path, data={"password": chosen, "confirm": chosen, "code": "", "csrf_token": token}
    )
    assert wrong.status_code == 400 and "The code is not right" in wrong.text
    db_session.expire_all()
    person = db_session.get_one(Person, issued.person.id)
    assert person.password_hash is None and person.totp_secret is None
    done = https_client.post(
        path,
        data={
            "password": chosen,
            "confirm": chosen,
            "code": pyotp.TOTP(secret).now(),
            "csrf_token": token,
        },
    )
    assert done.status_code == 303
    db_session.expire_all()
    assert db_session.get_one(Person, issued.person.id).totp_secret == secret
    # Signing in now asks for a code from that key; the password alone opens nothing.
    assert _post_sign_in(https_client, issued.person.email, chosen) == 303
    assert https_client.get("/account").status_code == 302
    code = pyotp.TOTP(secret).at(time.time() + 30)  # the enrolment used this step's code
    passed = https_client.post(
        "/sign-in/code",
        data={"code": code, "csrf_token": csrf_token(https_client, "/sign-in/code")},
    )
    assert passed.status_code == 303
    assert https_client.get("/account").status_code == 200


def test_a_stolen_password_cannot_enrol_an_authenticator(
    https_client: FlaskClient, db_session: Session
) -> None:
    """A board member whose password was set without a second factor (before enrolment moved
    to the invitation, or by a thief who read it) is refused at sign-in: no page offers to set
    up a second factor after a password."""
    issued = _invite(db_session, "Stolen Board", ["board"])
    link = db_session.scalar(select(PersonLink).where(PersonLink.person_id == issued.person.id))
    assert link is not None
    with pytest.raises(InvalidInput, match="second factor"):
        people.redeem_link(db_session, issued.token, PASSWORD)
    db_session.rollback()
    # As a hub that let the password be chosen alone would have left it:
    person = db_session.get_one(Person, issued.person.id)
    person.password_hash = hash_secret(PASSWORD)
    db_session.commit()
    refused = https_client.post(
        "/sign-in",
        data={
            "email": person.email,
            "password": PASSWORD,
            "csrf_token": csrf_token(https_client),
        },
    )
    assert refused.status_code == 403
    assert "set up only through a one-time link" in refused.text
    assert "totp-secret" not in refused.text
    assert https_client.get("/account").status_code == 302
    assert https_client.get("/sign-in/code").status_code == 303, "no code stage was opened"
    db_session.expire_all()
    assert db_session.get_one(Person, issued.person.id).totp_secret is None
    event = db_session.scalars(
        select(AuditEvent).where(AuditEvent.tag == "portal:person:refuse")
    ).one()
    assert event.subject_id == person.id and event.details == {"reason": "no second factor"}
    # The admin's reset link is how they set it up.
    reset = people.issue_reset(db_session, OPERATOR, person.email, link_lifetime=timedelta(hours=1))
    page = https_client.get(f"/welcome/{reset.token}").text
    assert "totp-secret" in page


def test_board_members_must_use_their_second_factor(
    https_client: FlaskClient, make_person: MakePerson
) -> None:
    board = make_person("Board", ["board"])
    assert board.totp_secret is not None
    first = https_client.post(
        "/sign-in",
        data={"email": board.email, "password": PASSWORD, "csrf_token": csrf_token(https_client)},
    )
    assert first.status_code == 303 and first.headers["Location"].endswith("/sign-in/code")
    assert https_client.get("/account").status_code == 302
    token = csrf_token(https_client, "/sign-in/code")
    totp = pyotp.TOTP(board.totp_secret)
    wrong = https_client.post("/sign-in/code", data={"code": "000000", "csrf_token": token})
    if totp.verify("000000", valid_window=1):  # pragma: no cover - 1 in 330,000
        return
    assert wrong.status_code == 401
    code = totp.now()
    good = https_client.post("/sign-in/code", data={"code": code, "csrf_token": token})
    assert good.status_code == 303
    assert https_client.get("/account").status_code == 200
    # A code is accepted once only.
    https_client.post("/sign-out", data={"csrf_token": csrf_token(https_client, "/account")})
    _post_sign_in(https_client, board.email, PASSWORD)
    replay = https_client.post(
        "/sign-in/code",
        data={"code": code, "csrf_token": csrf_token(https_client, "/sign-in/code")},
    )
    assert replay.status_code == 401


def test_an_invitation_link_works_once(
    https_client: FlaskClient, db_session: Session, make_person: MakePerson
) -> None:
    make_person("Links NGO", ["researcher"])
    organisation_id = db_session.scalar(select(Person)).principal.organisation_id  # type: ignore[union-attr]
    issued = people.create_person(
        db_session,
        OPERATOR,
        organisation_id,
        "Invited",
        "Invited@Links.example.org",
        ["researcher"],
        link_lifetime=timedelta(hours=1),
    )
    path = f"/welcome/{issued.token}"
    assert https_client.get(path).status_code == 200
    token = csrf_token(https_client, path)
    short = https_client.post(
        path, data={"password": "short", "confirm": "short", "csrf_token": token}
    )
    assert short.status_code == 400
    chosen = "a long enough passphrase"
    done = https_client.post(
        path, data={"password": chosen, "confirm": chosen, "csrf_token": token}
    )
    assert done.status_code == 303
    assert https_client.get(path).status_code == 404, "a link works once"
    assert _post_sign_in(https_client, "invited@links.example.org", chosen) == 303
    stored = db_session.scalars(select(PersonLink.token_hash)).all()
    assert issued.token not in stored and all(len(h) == 64 for h in stored)


def test_a_reset_ends_earlier_sessions(
    https_client: FlaskClient, app: APIFlask, make_person: MakePerson, db_session: Session
) -> None:
    partner = make_person("Reset NGO", ["partner"])
    sign_in(https_client, partner)
    assert https_client.get("/account").status_code == 200
    issued = people.issue_reset(
        db_session, OPERATOR, partner.email, link_lifetime=timedelta(hours=1)
    )
    people.redeem_link(db_session, issued.token, "another long passphrase")
    assert https_client.get("/account").status_code == 302, "the old session stopped"


def test_sign_in_attempts_are_rate_limited(app: APIFlask, make_person: MakePerson) -> None:
    app.config["PORTAL_SIGN_IN_RATE_LIMIT"] = "3 per minute"
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    partner = make_person("Limit NGO", ["partner"])
    token = csrf_token(client)

    def attempt(password: str) -> int:
        form = {"email": partner.email, "password": password, "csrf_token": token}
        return client.post("/sign-in", data=form).status_code

    assert [attempt("wrong password!!") for _ in range(4)] == [401, 401, 401, 429]
    # Even the right password now waits: the address is over its limit.
    assert attempt(PASSWORD) == 429


def test_cli_creates_a_person_and_prints_a_one_time_link(
    app: APIFlask, https_client: FlaskClient, db_session: Session
) -> None:
    runner = app.test_cli_runner()
    assert runner.invoke(admin, ["create-org", "CLI NGO"]).exit_code == 0
    result = runner.invoke(
        admin,
        ["create-person", "CLI NGO", "Ana", "ana@cli.example.org", "--role", "admin",
         "--base-url", "https://hub.example.org"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    link = re.search(r"https://hub\.example\.org(/welcome/\S+)", result.output)
    assert link is not None
    assert https_client.get(link.group(1)).status_code == 200
    reset = runner.invoke(admin, ["reset-person", "ana@cli.example.org"])
    assert reset.exit_code == 0 and "/welcome/" in reset.output
    assert https_client.get(link.group(1)).status_code == 404, "a reset stops earlier links"
    again = runner.invoke(
        admin, ["create-person", "CLI NGO", "Other", "ANA@cli.example.org", "--role", "partner"]
    )
    assert again.exit_code == 1 and "already signs in" in again.output
    tags = set(db_session.scalars(select(AuditEvent.tag)))
    assert {"admin:person:create", "admin:person:reset", "admin:principal:create"} <= tags


def test_without_a_provider_there_is_no_external_sign_in(https_client: FlaskClient) -> None:
    page = https_client.get("/sign-in").text
    assert "/sign-in/oidc" not in page
    started = https_client.post("/sign-in/oidc", data={"csrf_token": csrf_token(https_client)})
    assert started.status_code == 404
    assert https_client.get("/sign-in/oidc/callback?code=x&state=y").status_code == 404
