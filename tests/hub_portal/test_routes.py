"""Every portal page outside a public allowlist needs a signed-in person with the right role.

Like the API's route walk, it runs over ``app.url_map`` as it is, so a page added later is
covered without touching this file: each page declares what it needs (``needs(...)`` or
``public``), a request without a session is sent to sign in, a person whose roles lack the
scope is refused (403), and every form is refused without its CSRF token.
"""

from __future__ import annotations

import re

from apiflask import APIFlask
from flask.testing import FlaskClient

from hub.actors import ROLE_SCOPES, SCOPES
from hub.portal.access import PUBLIC, SIGNED_IN
from tests.hub_portal.conftest import MakePerson, sign_in

#: The pages anyone may open: the public pages, signing in (its steps check their own stage),
#: the one-time links, and the language switch.
PUBLIC_PAGES = frozenset(
    {
        "portal.home",
        "portal.dictionary",
        "portal.privacy",
        "portal.releases",
        "portal.release",
        "portal.set_language",
        "portal.sign_in",
        "portal.sign_in_code",
        "portal.oidc_start",
        "portal.oidc_callback",
        "portal.sign_out",
        "portal.welcome",
    }
)
ANY_ID = "00000000-0000-4000-8000-000000000000"
_ARGUMENT = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?\w+>")


def _example(argument: re.Match[str]) -> str:
    # A number for a number (a policy version), an id for anything else.
    return "1" if argument.group(1) == "int" else ANY_ID


def _portal_rules(app: APIFlask) -> list[tuple[str, str, str]]:
    """Return (endpoint, example path, method) of every portal route."""
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("portal."):
            continue
        path = _ARGUMENT.sub(_example, rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((rule.endpoint, path, method))
    return found


def _needs(app: APIFlask, endpoint: str) -> str | None:
    return getattr(app.view_functions[endpoint], "_ctdhub_portal_needs", None)


def test_every_page_declares_what_it_needs(app: APIFlask) -> None:
    rules = _portal_rules(app)
    assert len(rules) >= 15
    declared = {endpoint: _needs(app, endpoint) for endpoint, _, _ in rules}
    assert all(need in SCOPES or need in {PUBLIC, SIGNED_IN} for need in declared.values()), (
        declared
    )
    assert {e for e, need in declared.items() if need == PUBLIC} == PUBLIC_PAGES


def test_without_a_session_every_other_page_sends_to_sign_in(app: APIFlask) -> None:
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    for endpoint, path, method in _portal_rules(app):
        if endpoint in PUBLIC_PAGES:
            continue
        response = client.open(path, method=method)
        assert response.status_code == 302, (endpoint, method, response.status_code)
        assert response.headers["Location"].startswith("/sign-in?next="), endpoint


def test_a_person_without_the_role_is_refused(
    app: APIFlask, https_client: FlaskClient, make_person: MakePerson
) -> None:
    """Signed in with each role in turn, every page needing a scope the role lacks is 403."""
    checked = 0
    for role in ROLE_SCOPES:
        client = app.test_client()
        client.environ_base["wsgi.url_scheme"] = "https"
        sign_in(client, make_person(f"Walk {role}", [role]))
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/account").text)
        assert token is not None
        for endpoint, path, method in _portal_rules(app):
            need = _needs(app, endpoint)
            if need in (PUBLIC, SIGNED_IN) or need in ROLE_SCOPES[role]:
                continue
            response = client.open(path, method=method, data={"csrf_token": token.group(1)})
            assert response.status_code == 403, (role, endpoint, method, response.status_code)
            checked += 1
    assert checked >= 10


def test_every_form_is_refused_without_its_csrf_token(
    app: APIFlask, make_person: MakePerson
) -> None:
    everyone = make_person("Walk all", sorted(ROLE_SCOPES))
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    sign_in(client, everyone)
    posts = [(e, p) for e, p, m in _portal_rules(app) if m == "POST"]
    assert len(posts) >= 6
    for endpoint, path in posts:
        response = client.post(path, data={})
        assert response.status_code == 400, (endpoint, response.status_code)
        assert "did not come from this hub" in response.text, endpoint
