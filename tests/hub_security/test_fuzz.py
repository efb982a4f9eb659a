"""Issue 11: a bounded schemathesis run over every operation, with a token of each role.

Every answer must be documented (status, media type, schema) and none may be a server error.
``make test`` runs a few examples per operation; ``make fuzz`` runs many more (setting
``CTDHUB_TEST_FUZZ_EXAMPLES``). Generation is derandomised, so a failure reproduces.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from apiflask import APIFlask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import Bearer, MakeClient
from tests.hub_uploads.test_uploads_api import post, sample_csv

EXAMPLES = int(os.environ.get("CTDHUB_TEST_FUZZ_EXAMPLES", "8"))
ROLES = ("partner", "researcher", "board", "admin")
#: No server error, no undocumented status or media type, no answer that breaks its schema.
#: (Not "valid data accepted": a spec that fits the JSON schema can still name a field the
#: record schema lacks, which the hub rightly refuses.)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture
def role_headers(
    app: APIFlask, make_client: MakeClient, bearer: Bearer, ctdc_file: Path
) -> dict[str, dict[str, str]]:
    """A bearer header per role, and none at all; some CTDC records are already uploaded,
    so queries reach OpenDP and uploads meet duplicates."""
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    for role in ROLES:
        client_id, secret, _ = make_client(f"{role} org", [role])
        headers[role] = bearer(client_id, secret)
    stored = post(app.test_client(), headers["partner"], sample_csv(ctdc_file, step=500))
    assert stored.status_code == 201
    return headers


def test_every_operation_answers_as_documented(
    app: APIFlask, role_headers: dict[str, dict[str, str]]
) -> None:
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 11

    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(), role=st.sampled_from(sorted(role_headers)))
        def call(case: schemathesis.Case, role: str) -> None:
            case.call_and_validate(headers=role_headers[role], checks=CHECKS)

        call()
