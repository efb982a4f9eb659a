"""Every endpoint outside an explicit public allowlist is protected by a scope.

The walk runs over ``app.url_map`` as it is when the test runs, so a route added later is
covered without touching this file. For each protected endpoint and method it proves: the view
declares its scopes (known ones), the OpenAPI document shows them, a request without a token is
answered 401 and one whose token holds every scope but the required ones is answered 403, both
as problem+json.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient

from hub.actors import ROLE_SCOPES, SCOPES
from hub.auth import require_scope
from hub.domain_errors import InvalidInput
from tests.conftest import Bearer, MakeClient

#: Endpoints anyone may call: documentation, the OAuth endpoints themselves (they authenticate
#: the client in their own way), and the content-free health check.
PUBLIC_ENDPOINTS = frozenset(
    {
        "static",
        "openapi.spec",
        "docs",
        "docs_assets",
        "oauth.issue_token",
        "oauth.revoke_token",
        "oauth.introspect_token",
        "meta.health",
        # Published releases are public (issue 13): only what the board approved is there.
        "releases.list_releases",
        "releases.show_release",
        "releases.release_file",
        "releases.release_datapackage",
        "releases.transparency_log",
    }
)
#: The portal's pages (``portal.*``) are signed in with a session cookie, not a bearer token;
#: tests/hub_portal/test_routes.py walks them.
PORTAL = "portal."
PROBLEM_JSON = "application/problem+json"
ANY_ID = "00000000-0000-4000-8000-000000000000"
_ARGUMENT = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")

TokenFor = Callable[[frozenset[str]], dict[str, str]]


def _example_path(rule: str) -> str:
    """Fill a rule's variables with values its converters accept."""
    return _ARGUMENT.sub(lambda m: "1" if m.group(1) in {"int", "float"} else ANY_ID, rule)


def _openapi_path(rule: str) -> str:
    return _ARGUMENT.sub(lambda m: "{" + m.group(2) + "}", rule)


def route_problems(app: APIFlask, client: FlaskClient, token_without: TokenFor) -> list[str]:
    """Walk every route of ``app`` and return what is wrong with its protection.

    :param token_without: returns bearer headers of a token holding every scope but those given.
    """
    problems: list[str] = []
    spec_paths = client.get("/openapi.json").get_json()["paths"]
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS or rule.endpoint.startswith(PORTAL):
            continue
        view = app.view_functions[rule.endpoint]
        where = f"{rule.endpoint} ({rule.rule})"
        declared = getattr(view, "_ctdhub_scopes", ())
        if not declared:
            problems.append(f"{where} declares no scope")
        unknown = set(declared) - set(SCOPES)
        if unknown:
            problems.append(f"{where} declares unknown scopes {sorted(unknown)}")
        path = _example_path(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation = spec_paths.get(_openapi_path(rule.rule), {}).get(method.lower(), {})
            if declared and operation.get("security") != [{"oauth2": list(declared)}]:
                problems.append(
                    f"{method} {where}: OpenAPI security is {operation.get('security')!r}"
                )
            if declared and not {"401", "403"} <= set(operation.get("responses", {})):
                problems.append(f"{method} {where}: OpenAPI does not list 401 and 403")
            anonymous = client.open(path, method=method)
            if anonymous.status_code != 401 or anonymous.mimetype != PROBLEM_JSON:
                problems.append(
                    f"{method} {where} without a token answered {anonymous.status_code} "
                    f"{anonymous.mimetype}, not 401 problem+json"
                )
            if not declared or unknown:
                continue
            lacking = client.open(path, method=method, headers=token_without(frozenset(declared)))
            if lacking.status_code != 403 or lacking.mimetype != PROBLEM_JSON:
                problems.append(
                    f"{method} {where} with a token lacking {list(declared)} answered "
                    f"{lacking.status_code} {lacking.mimetype}, not 403 problem+json"
                )
    return problems


@pytest.fixture
def token_without(make_client: MakeClient, bearer: Bearer) -> TokenFor:
    """Tokens of an all-roles principal holding every scope except the given ones."""
    cache: dict[frozenset[str], dict[str, str]] = {}

    def _token(excluded: frozenset[str]) -> dict[str, str]:
        if excluded not in cache:
            kept = sorted(set(SCOPES) - excluded)
            client_id, secret, _ = make_client("Route walk", list(ROLE_SCOPES), kept)
            cache[excluded] = bearer(client_id, secret)
        return cache[excluded]

    return _token


def test_every_route_is_protected(
    app: APIFlask, client: FlaskClient, token_without: TokenFor
) -> None:
    protected = [r for r in app.url_map.iter_rules() if r.endpoint not in PUBLIC_ENDPOINTS]
    assert protected, "no protected route to walk: the API is not registered"
    assert route_problems(app, client, token_without) == []


def test_public_allowlist_names_real_routes(app: APIFlask) -> None:
    """A stale allowlist entry could later hide a new route of the same name."""
    assert PUBLIC_ENDPOINTS <= {rule.endpoint for rule in app.url_map.iter_rules()}


def test_the_walk_catches_unprotected_and_misordered_routes(
    app: APIFlask, client: FlaskClient, token_without: TokenFor
) -> None:
    """The walk is not vacuous: it flags a view without a scope and one checked too late."""

    @app.get("/v1/leaky/<item_id>")
    def leaky(item_id: str) -> dict[str, str]:
        return {"item": item_id}

    def ledger() -> dict[str, str]:
        return {}

    protected = require_scope("admin:keys")(ledger)

    # What a body check placed above require_scope does to a request with no body.
    @functools.wraps(protected)
    def checked_too_late() -> dict[str, str]:
        raise InvalidInput("the body is empty")

    app.add_url_rule("/v1/misordered", "misordered", checked_too_late, methods=["POST"])

    problems = route_problems(app, client, token_without)
    assert any("leaky" in p and "declares no scope" in p for p in problems)
    assert any("leaky" in p and "without a token answered 200" in p for p in problems)
    assert any("misordered" in p and "without a token answered 400" in p for p in problems)
    assert not any("misordered" in p and "declares" in p for p in problems)
    assert not any("uploads." in p for p in problems)


def test_require_scope_refuses_bad_declarations() -> None:
    with pytest.raises(ValueError, match="at least one scope"):
        require_scope()
    with pytest.raises(ValueError, match="unknown scope"):
        require_scope("records:delete")
