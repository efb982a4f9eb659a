"""Issue 11 item 7: every answer of every route carries the security headers."""

from __future__ import annotations

import re
import uuid

import pytest
from apiflask import APIFlask

UUID = str(uuid.uuid4())


def _requests(app: APIFlask) -> list[tuple[str, str]]:
    """One (method, path) per method of every rule in the URL map, its arguments filled in."""
    found = []
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: _value(m.group(1)), rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((method, path))
    return found


def _value(name: str) -> str:
    return "swagger-ui.css" if name == "filename" else UUID


def test_the_walk_covers_the_api(app: APIFlask) -> None:
    walked = _requests(app)
    assert ("POST", "/v1/uploads") in walked and ("POST", "/oauth/token") in walked
    assert ("GET", "/docs") in walked and ("GET", "/openapi.json") in walked
    assert len(walked) >= 12


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_every_route_answers_with_the_security_headers(app: APIFlask, scheme: str) -> None:
    client = app.test_client()
    for method, path in _requests(app):
        response = client.open(path, method=method, base_url=f"{scheme}://hub.example")
        where = f"{method} {path} -> {response.status_code}"
        headers = response.headers
        assert headers.get("X-Content-Type-Options") == "nosniff", where
        assert "default-src 'self'" in headers.get("Content-Security-Policy", ""), where
        assert "'unsafe-inline'" not in headers["Content-Security-Policy"].split("; ")[1], where
        assert headers.get("Referrer-Policy") == "no-referrer", where
        assert headers.get("X-Frame-Options") == "DENY", where
        if path.startswith(("/v1", "/oauth")):
            assert headers.get("Cache-Control") == "no-store", where
        if scheme == "https":
            assert headers.get("Strict-Transport-Security", "").startswith("max-age="), where
        else:
            assert "Strict-Transport-Security" not in headers, where
        response.close()


def test_the_docs_page_runs_only_the_hubs_own_scripts(app: APIFlask) -> None:
    response = app.test_client().get("/docs")
    page = response.get_data()
    policy = response.headers["Content-Security-Policy"]
    script_src = next(p for p in policy.split("; ") if p.startswith("script-src"))
    assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
    # No inline script: the policy would not run one.
    assert not re.findall(rb"<script(?![^>]*\bsrc=)[^>]*>", page)
    # Every script file comes from the hub itself, which the policy allows ('self').
    sources = re.findall(rb'<script src="([^"]+)"', page)
    assert sources and all(source.startswith(b"/") for source in sources)
    for source in sources:
        asset = app.test_client().get(source.decode())
        assert asset.status_code == 200
        assert asset.headers["X-Content-Type-Options"] == "nosniff"
        asset.close()
