"""A hub whose jobs run on a real Huey queue (a SQLite file, or Redis) with a short lease."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient

from hub import create_app
from hub.crypto import Keyring
from tests.conftest import _empty_tables
from tests.hub_uploads.test_uploads_api import post, sample_csv

#: Short enough that a lost worker's lease runs out within a test, long enough for heartbeats.
LEASE_SECONDS = 2
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The queue's storage: a SQLite file of this test, or Redis (``indirect`` "redis")."""
    if getattr(request, "param", "sqlite") == "redis":
        return REDIS_URL
    return f"sqlite:///{tmp_path / 'queue.sqlite3'}"


@pytest.fixture
def hub_overrides(
    database_url: str, test_keyring: Keyring, tmp_path: Path, queue_url: str
) -> dict[str, Any]:
    """Settings of the hub under test, also handed to worker processes as CTDHUB_* variables."""
    return {
        "DATABASE_URL": database_url,
        "KEYRING": test_keyring.to_json(),
        "QUEUE_URL": queue_url,
        "QUEUE_SECRET": "test-queue-secret-" + "s" * 32,
        # A queue of its own, so parallel test sessions sharing Redis never take each other's.
        "QUEUE_NAME": f"ctdhub-test-{uuid.uuid4().hex[:12]}",
        "JOB_LEASE_SECONDS": LEASE_SECONDS,
        "RELEASE_DIRECTORY": str(tmp_path / "releases"),
    }


@pytest.fixture
def app(database_url: str, hub_overrides: dict[str, Any]) -> Iterator[APIFlask]:
    """The hub with the job settings above; every table is emptied after the test."""
    application = create_app({"TESTING": True, **hub_overrides})
    try:
        yield application
    finally:
        application.extensions["ctdhub.engine"].dispose()
        _empty_tables(database_url)


@pytest.fixture
def accepted(client: FlaskClient, partner_a: Any, ctdc_file: Path) -> int:
    """Upload every 20th CTDC record through the API; return how many were accepted."""
    response = post(client, partner_a.headers, sample_csv(ctdc_file, step=20))
    assert response.status_code == 201, response.get_json()
    return int(response.get_json()["rows_accepted"])


def wait_for(condition: Callable[[], Any], what: str, limit: float = 300.0) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` past ``limit``.

    The limit only stops a broken run from hanging; no result depends on how long it took.
    """
    deadline = time.monotonic() + limit
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)
