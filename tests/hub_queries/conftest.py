"""Fixtures of the query tests: accepted records, researchers, and hubs with chosen caps."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient

from hub import create_app
from hub.crypto import Keyring
from tests.conftest import Bearer, MakeClient
from tests.hub_uploads.test_uploads_api import post, sample_csv


@dataclass(frozen=True)
class Researcher:
    """A researcher principal with a bearer token carrying ``queries:run``."""

    principal_id: str
    headers: dict[str, str]


MakeResearcher = Callable[[str], Researcher]
MakeHub = Callable[..., FlaskClient]


@pytest.fixture
def make_researcher(make_client: MakeClient, bearer: Bearer) -> MakeResearcher:
    """Create a researcher of the given organisation, authenticated."""

    def _make(organisation: str = "University") -> Researcher:
        client_id, secret, principal = make_client(organisation, ["researcher"])
        return Researcher(principal.id, bearer(client_id, secret))

    return _make


@pytest.fixture
def researcher(make_researcher: MakeResearcher) -> Researcher:
    """One researcher."""
    return make_researcher("University")


@pytest.fixture
def accepted_records(client: FlaskClient, partner_a: Any, ctdc_file: Path) -> int:
    """Upload a deterministic sample of CTDC records through the API; return how many."""
    response = post(client, partner_a.headers, sample_csv(ctdc_file, step=250))
    assert response.status_code == 201, response.get_json()
    return int(response.get_json()["rows_accepted"])


def hub_settings(database_url: str, keyring: Keyring, **caps: str) -> dict[str, Any]:
    """Return create_app overrides for a hub on ``database_url`` with the given DP caps."""
    return {"TESTING": True, "DATABASE_URL": database_url, "KEYRING": keyring.to_json(), **caps}


@pytest.fixture
def make_hub(app: APIFlask, database_url: str, test_keyring: Keyring) -> Iterator[MakeHub]:
    """Build another hub on the same database with other budget caps (``app`` empties it)."""
    made: list[APIFlask] = []

    def _make(**caps: str) -> FlaskClient:
        other = create_app(hub_settings(database_url, test_keyring, **caps))
        made.append(other)
        return other.test_client()

    yield _make
    for other in made:
        other.extensions["ctdhub.engine"].dispose()
