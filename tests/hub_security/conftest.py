"""Fixtures of the security tests: one authenticated principal of each role."""

from __future__ import annotations

import pytest

from tests.conftest import Bearer, MakeClient


@pytest.fixture
def researcher_headers(make_client: MakeClient, bearer: Bearer) -> dict[str, str]:
    """The Authorization header of a researcher (scopes queries:run, releases:read)."""
    client_id, secret, _principal = make_client("University", ["researcher"])
    return bearer(client_id, secret)
