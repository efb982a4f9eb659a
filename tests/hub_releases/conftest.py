"""Fixtures of the release tests: a sample of CTDC records accepted through the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.hub_uploads.test_uploads_api import post, sample_csv


@pytest.fixture
def accepted(client: FlaskClient, partner_a: Any, ctdc_file: Path) -> int:
    """Upload every 50th CTDC record through the API; return how many were accepted."""
    response = post(client, partner_a.headers, sample_csv(ctdc_file, step=50))
    assert response.status_code == 201, response.get_json()
    return int(response.get_json()["rows_accepted"])
