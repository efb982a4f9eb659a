"""Fixtures of the query tests: accepted records, researchers, and hubs with chosen caps."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient

from hub import create_app
from hub.crypto import Keyring
from hub.services import policies
from tests.conftest import Bearer, MakeClient
from tests.hub_uploads.test_uploads_api import post, sample_csv


@dataclass(frozen=True)
class Researcher:
    """A researcher principal with a bearer token carrying ``queries:run``."""

    principal_id: str
    headers: dict[str, str]


MakeResearcher = Callable[[str], Researcher]
MakeHub = Callable[..., FlaskClient]
#: set_caps(edit=None, DP_DATASET_RHO_CAP="0.3", ...): the board adopts a policy with these caps
#: (and the text ``edit`` makes of it).
SetCaps = Callable[..., int]


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


@pytest.fixture
def set_caps(
    app: APIFlask, client: FlaskClient, make_client: MakeClient, bearer: Bearer
) -> SetCaps:
    """Have the board adopt, through the API, the next policy version with the given caps.

    The caps are named as the settings that made the first version (``DP_DATASET_RHO_CAP``,
    ...), written into the default policy exactly as given; ``edit`` may change the document's
    text further. Returns the new version.
    """
    members = []
    for _ in range(3):
        client_id, secret, _principal = make_client("Board", ["board"])
        members.append(bearer(client_id, secret))

    def _set(edit: Callable[[str], str] | None = None, **caps: str) -> int:
        active = client.get("/v1/policies/active", headers=members[0]).get_json()["version"]
        text, found = re.subn(
            r"(?m)^version: 1$",
            f"version: {active + 1}",
            policies.default_document({**app.config, **caps}),
        )
        assert found == 1
        if edit is not None:
            text = edit(text)
        proposed = client.post(
            "/v1/policies?rationale=test%20caps",
            data=text,
            headers={**members[0], "Content-Type": "application/yaml"},
        )
        assert proposed.status_code == 201, proposed.get_json()
        etag = proposed.headers["ETag"]
        for member in members[1:]:
            voted = client.post(
                f"/v1/policies/{active + 1}/reviews",
                json={"decision": "approve", "reason_code": "meets_policy"},
                headers={**member, "If-Match": etag},
            )
            assert voted.status_code == 200, voted.get_json()
            etag = voted.headers["ETag"]
        assert voted.get_json()["state"] == "active"
        return active + 1

    return _set
