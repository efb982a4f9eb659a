"""Shared fixtures: a hub on a migrated database, run on SQLite and on PostgreSQL.

PostgreSQL runs when ``CTDHUB_TEST_POSTGRES_URL`` is set (``.ci/run`` sets it, making it
required); each test session migrates its own schema there and drops it at the end.
"""

from __future__ import annotations

import itertools
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub import create_app, migrate
from hub.actors import OPERATOR
from hub.crypto import Keyring
from hub.models import Organisation, Principal
from hub.services import principals
from hub.serving import make_server, stop_server
from hub.storage import Base, make_engine

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
    with postgres_schema("ctdhub_test") as url:
        yield url


@contextmanager
def postgres_schema(prefix: str) -> Iterator[str]:
    """Create a PostgreSQL schema of its own (``prefix`` and a random part), migrate it to
    head and yield its URL; drop it afterwards.

    :raises sqlalchemy.exc.OperationalError: if the server at CTDHUB_TEST_POSTGRES_URL cannot
        be reached (nothing was created).
    """
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    try:
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except BaseException:
        admin.dispose()
        raise
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


#: make_client(org_name, roles, scopes=None) -> (client_id, secret, principal)
MakeClient = Callable[..., tuple[str, str, Principal]]
#: bearer(client_id, secret, scope=None) -> {"Authorization": "Bearer ..."}
Bearer = Callable[..., dict[str, str]]


@pytest.fixture
def make_client(db_session: Session) -> MakeClient:
    """Create (or reuse) an organisation, a new principal in it and OAuth client credentials.

    Goes through the real services, as the operator at the admin command line would.
    """
    serial = itertools.count(1)

    def _make(
        org_name: str, roles: Iterable[str], scopes: Iterable[str] | None = None
    ) -> tuple[str, str, Principal]:
        role_list = list(roles)
        organisation = db_session.scalar(select(Organisation).where(Organisation.name == org_name))
        if organisation is None:
            organisation = principals.create_organisation(db_session, OPERATOR, org_name)
        principal = principals.create_principal(
            db_session,
            OPERATOR,
            organisation.id,
            f"{'-'.join(role_list)} system {next(serial)}",
            role_list,
        )
        client, secret = principals.create_client(
            db_session, OPERATOR, principal.id, list(scopes) if scopes is not None else None
        )
        return client.client_id, secret, principal

    return _make


@pytest.fixture
def bearer(client: FlaskClient) -> Bearer:
    """Get an access token from the real ``POST /oauth/token`` and return its header."""

    def _bearer(client_id: str, secret: str, scope: str | None = None) -> dict[str, str]:
        form = {"grant_type": "client_credentials"}
        if scope is not None:
            form["scope"] = scope
        response = client.post("/oauth/token", data=form, auth=(client_id, secret))
        if response.status_code != 200:
            raise AssertionError(
                f"token request failed: {response.status_code} {response.get_data(as_text=True)}"
            )
        return {"Authorization": f"Bearer {response.get_json()['access_token']}"}

    return _bearer


@dataclass(frozen=True)
class Partner:
    """A partner principal with a valid bearer token."""

    organisation_id: str
    principal_id: str
    client_id: str
    client_secret: str
    headers: dict[str, str]


def _partner(make_client: MakeClient, bearer: Bearer, name: str) -> Partner:
    client_id, secret, principal = make_client(name, ["partner"])
    return Partner(
        organisation_id=principal.organisation_id,
        principal_id=principal.id,
        client_id=client_id,
        client_secret=secret,
        headers=bearer(client_id, secret),
    )


@pytest.fixture
def partner_a(make_client: MakeClient, bearer: Bearer) -> Partner:
    """A partner organisation's upload system, authenticated."""
    return _partner(make_client, bearer, "Partner A")


@pytest.fixture
def partner_b(make_client: MakeClient, bearer: Bearer) -> Partner:
    """Another partner organisation, to prove partners are kept apart."""
    return _partner(make_client, bearer, "Partner B")


@dataclass
class LiveHub:
    """A hub served by waitress on a loopback port, with one partner's credentials."""

    url: str
    client_id: str
    client_secret: str

    def token(self, url: str | None = None, scope: str | None = None) -> str:
        """Get an access token over HTTP (from this hub, or another serving the same data)."""
        form = {"grant_type": "client_credentials"}
        if scope is not None:
            form["scope"] = scope
        response = requests.post(
            f"{url or self.url}/oauth/token",
            data=form,
            auth=(self.client_id, self.client_secret),
            timeout=30,
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token


@pytest.fixture
def live_hub(app: APIFlask, make_client: MakeClient) -> Iterator[LiveHub]:
    """Serve ``app`` for real on 127.0.0.1 (a free port) for end-to-end tests."""
    client_id, secret, _principal = make_client("Live Partner", ["partner"])
    server = make_server(app, "127.0.0.1", 0, threads=8)
    port = server.effective_port  # type: ignore[union-attr]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield LiveHub(url=f"http://127.0.0.1:{port}", client_id=client_id, client_secret=secret)
    finally:
        stop_server(server)
        thread.join(timeout=10)
        assert not thread.is_alive(), "the live hub did not stop"
