"""Signing in through an external OpenID Connect provider (a real one, served on a free port).

The hub's side is Authlib's Flask client, unmocked; the provider is built on Authlib's server
components (tests/hub_portal/oidc_provider.py). An id_token for another audience, under a
forged signature or expired is refused; only people the hub already has sign in; board members
still pass their second factor.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pyotp
import pytest
import requests
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.test import EnvironBuilder, TestResponse

from hub import create_app
from hub.crypto import Keyring
from hub.models import AuditEvent, Person
from hub.settings import SettingsError, load_settings
from tests.conftest import _empty_tables
from tests.hub_portal.conftest import MakePerson, csrf_token
from tests.hub_portal.oidc_provider import CLIENT_ID, CLIENT_SECRET, Account, TestProvider

# The hub names its callback from the URL it is reached at (the test client's host).
CALLBACK = "http://localhost/sign-in/oidc/callback"


@pytest.fixture
def provider() -> Iterator[TestProvider]:
    """The identity provider, serving on 127.0.0.1 for this test."""
    served = TestProvider()
    served.client.redirect_uris.append(CALLBACK)
    served.start()
    try:
        yield served
    finally:
        served.stop()


def _hub(
    database_url: str, test_keyring: Keyring, provider: TestProvider, **settings: object
) -> APIFlask:
    """Return a hub letting people sign in through the test provider, with other settings."""
    return create_app(
        {
            "TESTING": True,
            "DATABASE_URL": database_url,
            "KEYRING": test_keyring.to_json(),
            "PORTAL_OIDC_METADATA_URL": provider.metadata_url,
            "PORTAL_OIDC_CLIENT_ID": CLIENT_ID,
            "PORTAL_OIDC_CLIENT_SECRET": CLIENT_SECRET,
            **settings,
        }
    )


@pytest.fixture
def app(
    database_url: str, test_keyring: Keyring, tmp_path: Path, provider: TestProvider
) -> Iterator[APIFlask]:
    """A hub configured to let people sign in through the test provider."""
    application = _hub(database_url, test_keyring, provider, PORTAL_OIDC_LABEL="Test Provider")
    try:
        yield application
    finally:
        application.extensions["ctdhub.engine"].dispose()
        _empty_tables(database_url)


def _external_sign_in(client: FlaskClient, provider: TestProvider) -> TestResponse:
    """Press the provider's button, follow it to the provider and back; return the hub's answer."""
    start = client.post("/sign-in/oidc", data={"csrf_token": csrf_token(client)})
    assert start.status_code == 302, start.text[:300]
    assert start.headers["Location"].startswith(f"{provider.issuer}/authorize?")
    at_provider = requests.get(start.headers["Location"], allow_redirects=False, timeout=30)
    assert at_provider.status_code == 302, at_provider.text[:300]
    back = urlsplit(at_provider.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == CALLBACK
    return client.get(f"{back.path}?{back.query}")


def test_the_sign_in_page_offers_the_provider(https_client: FlaskClient) -> None:
    page = https_client.get("/sign-in").text
    assert "Sign in with Test Provider" in page and 'action="/sign-in/oidc"' in page


def test_a_partner_signs_in_through_the_provider(
    https_client: FlaskClient, provider: TestProvider, make_person: MakePerson, db_session: Session
) -> None:
    partner = make_person("External NGO", ["partner"])
    provider.account = Account("sub-partner", partner.email.upper())
    done = _external_sign_in(https_client, provider)
    assert done.status_code == 303 and done.headers["Location"].endswith("/account")
    account = https_client.get("/account")
    assert account.status_code == 200 and partner.email in account.text
    tags = list(db_session.scalars(select(AuditEvent.tag)))
    assert "portal:person:sign_in" in tags


def test_a_provider_answer_is_used_once(
    https_client: FlaskClient, provider: TestProvider, make_person: MakePerson
) -> None:
    partner = make_person("External NGO", ["partner"])
    provider.account = Account("sub-partner", partner.email)
    start = https_client.post("/sign-in/oidc", data={"csrf_token": csrf_token(https_client)})
    answer = requests.get(start.headers["Location"], allow_redirects=False, timeout=30)
    back = urlsplit(answer.headers["Location"])
    assert https_client.get(f"{back.path}?{back.query}").status_code == 303
    https_client.post("/sign-out", data={"csrf_token": csrf_token(https_client, "/account")})
    # Replayed (its state and its code are gone), the answer signs nobody in.
    assert https_client.get(f"{back.path}?{back.query}").status_code == 401
    assert https_client.get("/account").status_code == 302


def test_nobody_is_created_by_an_external_sign_in(
    https_client: FlaskClient, provider: TestProvider, make_person: MakePerson, db_session: Session
) -> None:
    make_person("External NGO", ["board"])
    before = db_session.scalar(select(func.count()).select_from(Person))
    provider.account = Account("sub-stranger", "stranger@elsewhere.example.org")
    refused = _external_sign_in(https_client, provider)
    assert refused.status_code == 401
    assert "belongs to nobody who may sign in here" in refused.text
    assert db_session.scalar(select(func.count()).select_from(Person)) == before
    assert https_client.get("/account").status_code == 302
    refusal = db_session.scalars(
        select(AuditEvent).where(AuditEvent.tag == "portal:person:refuse")
    ).one()
    assert refusal.details == {
        "method": "oidc",
        "provider": provider.metadata_url,
        "reason": "no person",
    }


def test_an_address_the_provider_did_not_verify_is_refused(
    https_client: FlaskClient, provider: TestProvider, make_person: MakePerson
) -> None:
    partner = make_person("External NGO", ["partner"])
    provider.account = Account("sub-partner", partner.email, email_verified=False)
    assert _external_sign_in(https_client, provider).status_code == 401
    assert https_client.get("/account").status_code == 302


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("wrong-audience", "InvalidClaimError"),
        ("foreign-audience-naming-us", "InvalidClaimError"),
        ("bad-signature", "BadSignatureError"),
        ("expired", "ExpiredTokenError"),
    ],
)
def test_a_bad_id_token_is_refused(
    https_client: FlaskClient,
    provider: TestProvider,
    make_person: MakePerson,
    caplog: pytest.LogCaptureFixture,
    db_session: Session,
    fault: str,
    reason: str,
) -> None:
    partner = make_person("External NGO", ["partner"])
    provider.account = Account("sub-partner", partner.email)
    provider.fault = fault  # type: ignore[assignment]
    refused = _external_sign_in(https_client, provider)
    assert refused.status_code == 401, fault
    assert f"an external sign-in was refused: {reason}" in caplog.messages
    refusal = db_session.scalars(
        select(AuditEvent).where(AuditEvent.tag == "portal:person:refuse")
    ).one()
    assert refusal.details == {
        "method": "oidc",
        "provider": provider.metadata_url,
        "reason": reason,
    }
    assert refusal.actor_id is None and refusal.subject_id is None
    assert "was refused" in refused.text
    assert https_client.get("/account").status_code == 302
    # The same person, the provider behaving: signed in (the refusal was the token's fault).
    provider.fault = None
    assert _external_sign_in(https_client, provider).status_code == 303
    assert https_client.get("/account").status_code == 200


def test_a_board_member_still_needs_the_second_factor(
    https_client: FlaskClient, provider: TestProvider, make_person: MakePerson
) -> None:
    board = make_person("Board", ["board"])
    provider.account = Account("sub-board", board.email)
    first = _external_sign_in(https_client, provider)
    assert first.status_code == 303 and first.headers["Location"].endswith("/sign-in/code")
    assert https_client.get("/account").status_code == 302, "the provider alone opens nothing"
    assert board.totp_secret is not None
    done = https_client.post(
        "/sign-in/code",
        data={
            "code": pyotp.TOTP(board.totp_secret).now(),
            "csrf_token": csrf_token(https_client, "/sign-in/code"),
        },
    )
    assert done.status_code == 303
    assert https_client.get("/account").status_code == 200
    https_client.post("/sign-out", data={"csrf_token": csrf_token(https_client, "/account")})
    again = _external_sign_in(https_client, provider)
    assert again.status_code == 303 and again.headers["Location"].endswith("/sign-in/code")
    assert https_client.get("/account").status_code == 302


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"PORTAL_OIDC_METADATA_URL": "http://idp.example.org/.well-known/x"}, "https://"),
        ({"PORTAL_OIDC_METADATA_URL": "https://idp.example.org/.well-known/x"}, "CLIENT_ID"),
        (
            {
                "PORTAL_OIDC_METADATA_URL": "https://idp.example.org/.well-known/x",
                "PORTAL_OIDC_CLIENT_ID": "hub",
                "PORTAL_OIDC_CLIENT_SECRET": "s",
                "PORTAL_OIDC_CLAIM": " ",
            },
            "PORTAL_OIDC_CLAIM",
        ),
    ],
)
def test_a_half_configured_provider_stops_the_hub(settings: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(settings, environ={})


def test_an_unreachable_provider_gets_a_clear_page(
    https_client: FlaskClient, provider: TestProvider
) -> None:
    provider.stop()
    started = https_client.post("/sign-in/oidc", data={"csrf_token": csrf_token(https_client)})
    assert started.status_code == 502
    assert "could not be reached" in started.text


PROXIED = {
    "X-Forwarded-For": "203.0.113.7",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "hub.example.org",
    "X-Forwarded-Port": "443",
}


def _callback_of(client: FlaskClient) -> str:
    """Return the redirect_uri the hub sends the browser to the provider with."""
    start = client.post("/sign-in/oidc", data={"csrf_token": csrf_token(client)}, headers=PROXIED)
    assert start.status_code == 302, start.text[:300]
    query = dict(parse_qsl(urlsplit(start.headers["Location"]).query))
    return query["redirect_uri"]


def test_behind_a_tls_proxy_the_callback_and_the_cookie_are_https(
    app: APIFlask, database_url: str, test_keyring: Keyring, provider: TestProvider
) -> None:
    provider.client.redirect_uris.append("https://hub.example.org/sign-in/oidc/callback")
    # Off by default: a client's own X-Forwarded-* headers are ignored.
    assert _callback_of(app.test_client()) == CALLBACK
    proxied = _hub(database_url, test_keyring, provider, TRUSTED_PROXY_HOPS=1)
    try:
        client = proxied.test_client()
        assert _callback_of(client) == "https://hub.example.org/sign-in/oidc/callback"
        page = client.get("/sign-in", headers=PROXIED)
        cookie = page.headers["Set-Cookie"]
        assert "ctdhub_session=" in cookie and "Secure" in cookie and "HttpOnly" in cookie
        # The client's address (what rate limits count by) is the one the proxy saw.
        environ = EnvironBuilder("/health", headers=PROXIED).get_environ()
        body = proxied.wsgi_app(environ, lambda status, headers, info=None: lambda data: None)
        getattr(body, "close", lambda: None)()
        assert environ["REMOTE_ADDR"] == "203.0.113.7"
        assert environ["wsgi.url_scheme"] == "https"
        assert environ["HTTP_HOST"] in ("hub.example.org", "hub.example.org:443")
    finally:
        proxied.extensions["ctdhub.engine"].dispose()
