"""Release candidates and their reports are the governance board's alone (issue 10, item 8).

A candidate's report is computed from the real records, so reading one needs the board-only
scope ``releases:candidates:read``; the researcher's ``releases:read`` (published releases) no
longer reaches it. Every service function that returns candidate or report data is walked with
every role.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from hub import migrate
from hub.actors import ROLE_SCOPES, PrincipalActor
from hub.crypto import Keyring
from hub.domain_errors import NotAuthorized
from hub.models import Job, Principal, ReleaseCandidate
from hub.services import releases
from hub.services.releases import SyntheticRequest
from hub.storage import make_engine
from tests.conftest import MakeClient
from tests.hub_releases.test_release import small_policy
from tests.hub_releases.test_synthetic import COLUMNS, build

ROLES = sorted(ROLE_SCOPES)
CANDIDATES = releases.CANDIDATES_READ_SCOPE

#: Each service function returning a candidate, its report or its data, called as ``actor``.
Call = Callable[[Session, PrincipalActor, APIFlask, Path, str], Any]
CANDIDATE_READERS: dict[str, Call] = {
    "build_synthetic": lambda session, actor, app, directory, _id: build(
        app, session, SyntheticRequest(records=20, rho=0.01, columns=COLUMNS), directory, actor
    ),
    "list_candidates": lambda session, actor, app, directory, _id: releases.list_candidates(
        session, actor
    ),
    "get_candidate": lambda session, actor, app, directory, candidate_id: releases.get_candidate(
        session, actor, candidate_id
    ),
    "redraw": lambda session, actor, app, directory, candidate_id: releases.redraw(
        session, actor, candidate_id
    ),
    # A full release candidate (issue 13): its build, and queueing it.
    "build_release": lambda session, actor, app, directory, _id: releases.build_release(
        session,
        actor,
        small_policy(),
        keyring=Keyring.from_json(app.config["KEYRING"]),
        snapshots=app.extensions["ctdhub.snapshots"],
        directory=directory,
    ),
    "submit_release": lambda session, actor, app, directory, _id: releases.submit_release(
        session, actor, app.config, queue=None
    ),
    # Queues a build (a job row, no candidate data); refused like the build itself.
    "submit_synthetic": lambda session, actor, app, directory, _id: releases.submit_synthetic(
        session, actor, SyntheticRequest(records=20, rho=0.01, columns=COLUMNS), queue=None
    ),
}


def test_every_candidate_returning_service_is_walked() -> None:
    """A new function returning candidates must be added to the walk below."""
    returning = {
        name
        for name, function in vars(releases).items()
        if inspect.isfunction(function)
        and function.__module__ == releases.__name__
        and "actor" in inspect.signature(function).parameters
    }
    assert returning == set(CANDIDATE_READERS)


def test_only_the_board_holds_the_candidate_scope() -> None:
    holders = {
        role for role, scopes in ROLE_SCOPES.items() if releases.CANDIDATES_READ_SCOPE in scopes
    }
    assert holders == {"board"}
    assert "releases:read" in ROLE_SCOPES["researcher"]


def board_candidate(
    app: APIFlask, session: Session, make_client: MakeClient, directory: Path
) -> tuple[Principal, ReleaseCandidate]:
    """Build a small candidate as a board member; return the member and the candidate."""
    _, _, board = make_client("Board", ["board"])
    request = SyntheticRequest(records=20, rho=0.01, columns=COLUMNS)
    return board, build(app, session, request, directory, PrincipalActor.with_roles(board))


@pytest.mark.parametrize("function", sorted(CANDIDATE_READERS))
@pytest.mark.parametrize("role", ROLES)
def test_candidates_and_reports_reach_the_board_only(
    app: APIFlask,
    db_session: Session,
    make_client: MakeClient,
    accepted: int,
    tmp_path: Path,
    role: str,
    function: str,
) -> None:
    board, candidate = board_candidate(app, db_session, make_client, tmp_path)
    _, _, principal = make_client(f"Org {role}", [role])
    actor = PrincipalActor.with_roles(principal)
    call = CANDIDATE_READERS[function]
    if role != "board":
        with pytest.raises(NotAuthorized, match="no role granting scope 'releases:"):
            call(db_session, actor, app, tmp_path, candidate.id)
        return
    result = call(db_session, actor, app, tmp_path, candidate.id)
    if isinstance(result, list):
        assert candidate.id in {row.id for row in result}
    elif isinstance(result, ReleaseCandidate):
        assert result.report is not None
    elif isinstance(result, Job):
        assert result.state == "queued" and result.principal_id == principal.id
    else:
        assert isinstance(result, pd.DataFrame) and len(result) == 20


def test_a_board_token_without_the_scope_reads_no_candidate(
    app: APIFlask, db_session: Session, make_client: MakeClient, accepted: int, tmp_path: Path
) -> None:
    board, candidate = board_candidate(app, db_session, make_client, tmp_path)
    narrow = PrincipalActor(board, frozenset({"releases:read"}))
    with pytest.raises(NotAuthorized, match="does not carry scope 'releases:candidates:read'"):
        releases.get_candidate(db_session, narrow, candidate.id)


def test_a_researcher_cannot_even_ask_for_the_scope(
    client: FlaskClient, make_client: MakeClient
) -> None:
    client_id, secret, _ = make_client("University", ["researcher"])
    asked = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "releases:candidates:read"},
        auth=(client_id, secret),
    )
    assert asked.status_code == 400 and asked.get_json()["error"] == "invalid_scope"
    client_id, secret, _ = make_client("Board", ["board"])
    granted = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "releases:candidates:read"},
        auth=(client_id, secret),
    )
    assert granted.status_code == 200


def test_migration_0004_keeps_board_clients_reading_candidates(tmp_path: Path) -> None:
    """Board clients made before the scope existed get it; researchers' clients do not."""
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    migrate.upgrade(url, "0003")
    engine = make_engine(url)
    now = "2026-01-01 00:00:00"
    with engine.begin() as connection:
        connection.execute(
            sa.text("INSERT INTO organisation (id, name, created_at) VALUES ('o', 'O', :t)"),
            {"t": now},
        )
        for role in ("board", "researcher"):
            connection.execute(
                sa.text(
                    "INSERT INTO principal (id, organisation_id, name, roles, created_at) "
                    "VALUES (:id, 'o', :id, :role, :t)"
                ),
                {"id": role, "role": role, "t": now},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO oauth_client (id, client_id, secret_hash, principal_id, scopes,"
                    " created_at) VALUES (:id, :id, 'x', :id, :scopes, :t)"
                ),
                {
                    "id": role,
                    "scopes": " ".join(sorted(ROLE_SCOPES[role] - {CANDIDATES})),
                    "t": now,
                },
            )
    migrate.upgrade(url)
    with engine.connect() as connection:
        scopes = dict(connection.execute(sa.text("SELECT id, scopes FROM oauth_client")).all())
    assert scopes["board"].split() == sorted(ROLE_SCOPES["board"])
    assert CANDIDATES not in scopes["researcher"].split()
    migrate.downgrade(url, "0003")
    with engine.connect() as connection:
        scopes = dict(connection.execute(sa.text("SELECT id, scopes FROM oauth_client")).all())
    assert CANDIDATES not in scopes["board"].split()
    engine.dispose()
