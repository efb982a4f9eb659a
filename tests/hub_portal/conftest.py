"""Portal fixtures: people made through the real services, signed in through the real pages."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.actors import OPERATOR, PrincipalActor
from hub.models import Organisation, Person, utcnow
from hub.services import people, policies, principals, publication
from tests.conftest import Partner
from tests.hub_releases.test_release import build, small_policy
from tests.hub_uploads.test_uploads_api import post, sample_csv

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass(frozen=True)
class Someone:
    """A person who can sign in: their e-mail address, password and TOTP secret if set up."""

    person_id: str
    organisation_id: str
    email: str
    password: str
    totp_secret: str | None = None


MakePerson = Callable[..., Someone]


@pytest.fixture
def https_client(app: APIFlask) -> FlaskClient:
    """A test client speaking HTTPS, so the Secure session cookie is sent back."""
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    return client


@pytest.fixture
def make_person(db_session: Session) -> MakePerson:
    """Create a person with the given roles and set their password through their invitation."""
    serial = itertools.count(1)

    def _make(org_name: str, roles: list[str]) -> Someone:
        organisation = db_session.scalar(select(Organisation).where(Organisation.name == org_name))
        if organisation is None:
            organisation = principals.create_organisation(db_session, OPERATOR, org_name)
        number = next(serial)
        issued = people.create_person(
            db_session,
            OPERATOR,
            organisation.id,
            f"{'-'.join(roles)} person {number}",
            f"{'-'.join(roles)}.{number}@{org_name.lower().replace(' ', '-')}.example.org",
            roles,
            link_lifetime=timedelta(hours=1),
        )
        secret = None
        if people.needs_second_factor(issued.person):
            # Set up through the invitation as the welcome page does, with the code of two
            # steps ago (accepted `at` then): every code from now on is still unused.
            secret = people.new_totp_secret()
            before = utcnow() - timedelta(seconds=60)
            people.redeem_link(
                db_session,
                issued.token,
                PASSWORD,
                totp_secret=secret,
                totp_code=pyotp.TOTP(secret).at(before),
                at=before,
            )
        else:
            people.redeem_link(db_session, issued.token, PASSWORD)
        return Someone(issued.person.id, organisation.id, issued.person.email, PASSWORD, secret)

    return _make


def csrf_token(client: FlaskClient, path: str = "/sign-in") -> str:
    """Return the CSRF token of a form on ``path`` (the session's token)."""
    page = client.get(path).get_data(as_text=True)
    found = _CSRF.search(page)
    assert found is not None, f"no CSRF token on {path}"
    return found.group(1)


def sign_in(client: FlaskClient, someone: Someone) -> None:
    """Sign in through the pages, passing the TOTP code when the roles need it."""
    response = client.post(
        "/sign-in",
        data={
            "email": someone.email,
            "password": someone.password,
            "csrf_token": csrf_token(client),
        },
    )
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    if response.headers["Location"].endswith("/sign-in/code"):
        assert someone.totp_secret is not None
        totp = pyotp.TOTP(someone.totp_secret)
        token = csrf_token(client, "/sign-in/code")
        done = client.post("/sign-in/code", data={"code": totp.now(), "csrf_token": token})
        if done.status_code == 401:
            # This step's code was used by an earlier sign-in of the same test: the next step's
            # is accepted too (the window of one step either side, for drifting clocks).
            code = totp.at(time.time() + 30)
            done = client.post("/sign-in/code", data={"code": code, "csrf_token": token})
        assert done.status_code == 303, done.get_data(as_text=True)[:500]


@pytest.fixture
def places(app: APIFlask, tmp_path: Path) -> publication.Places:
    app.config["RELEASE_DIRECTORY"] = str(tmp_path / "releases")
    return publication.Places.under(tmp_path / "releases")


@pytest.fixture
def board_people(make_person: MakePerson) -> list[Someone]:
    """Three board members (people who sign in with their second factor)."""
    return [make_person("Board", ["board"]) for _ in range(3)]


@pytest.fixture
def candidate_id(
    app: APIFlask,
    client: FlaskClient,
    db_session: Session,
    partner_a: Partner,
    ctdc_file: Path,
    places: publication.Places,
    board_people: list[Someone],
) -> str:
    """A release candidate built by the first board member from every 50th CTDC record."""
    response = post(client, partner_a.headers, sample_csv(ctdc_file, step=50))
    assert response.status_code == 201, response.get_json()
    builder = db_session.get_one(Person, board_people[0].person_id).principal
    built = build(app, db_session, small_policy(), places, PrincipalActor.with_roles(builder))
    assert built.status == "candidate"
    return built.id


#: The shipped policy's privacy unit (a person, c = 3), as its YAML text writes it.
PERSON_UNIT_TEXT = "  unit: person\n  records_per_person: 3\n"


@pytest.fixture
def case_record_policy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Make the hub's first release policy the shipped one with the case record as its unit."""
    text = policies.DEFAULT_POLICY.read_text("utf-8")
    assert text.count(PERSON_UNIT_TEXT) == 1, "the shipped policy's unit changed"
    path = tmp_path / "case_record.yaml"
    path.write_text(text.replace(PERSON_UNIT_TEXT, "  unit: case record\n"), "utf-8")
    monkeypatch.setattr(policies, "DEFAULT_POLICY", path)
