"""Shared fixtures: a hub on a migrated database, run on SQLite and on PostgreSQL.

PostgreSQL runs when ``CTDHUB_TEST_POSTGRES_URL`` is set (``.ci/run`` sets it, making it
required); each test session migrates its own schema there and drops it at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from hub import create_app, migrate
from hub.crypto import Keyring
from hub.db import Base, make_engine

POSTGRES_URL = os.environ.get("CTDHUB_TEST_POSTGRES_URL", "")
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CTDC_FILE = SHARED_DATA / "ctdc" / "ctdc_global_kanon_2021.csv"

BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(
            not POSTGRES_URL, reason="CTDHUB_TEST_POSTGRES_URL is not set (CI sets it)"
        ),
    ),
]


@pytest.fixture(scope="session")
def test_keyring() -> Keyring:
    """One fresh keyring for the whole test session."""
    return Keyring.generate("test-k1")


def _postgres_schema_url(schema: str) -> str:
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database migrated to head by Alembic, once per backend per session."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'hub.sqlite3'}"
        migrate.upgrade(url)
        yield url
        return
    schema = f"ctdhub_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = _postgres_schema_url(schema)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _empty_tables(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    engine.dispose()


@pytest.fixture
def app(database_url: str, test_keyring: Keyring, tmp_path: Path) -> Iterator[APIFlask]:
    """A hub on the migrated database; every table is emptied after the test."""
    application = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": database_url,
            "KEYRING": test_keyring.to_json(),
        }
    )
    try:
        yield application
    finally:
        application.extensions["ctdhub.engine"].dispose()
        _empty_tables(database_url)


@pytest.fixture
def client(app: APIFlask) -> FlaskClient:
    """The Flask test client of ``app``."""
    return app.test_client()


@pytest.fixture
def db_session(app: APIFlask) -> Iterator[Session]:
    """A session on the app's database, outside any request."""
    with app.extensions["ctdhub.sessionmaker"]() as session:
        yield session


@pytest.fixture(scope="session")
def ctdc_file() -> Path:
    """The real CTDC 2021 k-anonymised file, read in place."""
    if not CTDC_FILE.exists():
        pytest.fail(f"the shared CTDC data is missing at {CTDC_FILE}")
    return CTDC_FILE
