"""A full release build on a real queue: a worker killed mid-build charges the ledger once."""

from __future__ import annotations

import signal
from fractions import Fraction
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from hub.models import PrivacyLedger, ReleaseCandidate
from hub.services import ledger
from hub.services.policies import active_policy
from tests.conftest import Bearer, MakeClient
from tests.hub_jobs.conftest import (  # noqa: F401 - fixtures of a hub on a real queue
    accepted,
    app,
    hub_overrides,
    queue_url,
    wait_for,
)
from tests.hub_jobs.test_jobs import _worker, job_row, spent, tags_of


@pytest.mark.slow
@pytest.mark.parametrize("queue_url", ["sqlite", "redis"], indirect=True)
def test_a_worker_killed_mid_release_build_leaves_it_failed_and_the_ledger_charged_once(
    app: APIFlask,  # noqa: F811 - the fixture imported above
    client: FlaskClient,
    db_session: Session,
    make_client: MakeClient,
    bearer: Bearer,
    accepted: int,  # noqa: F811
    hub_overrides: dict[str, Any],  # noqa: F811
) -> None:
    cid, secret, _ = make_client("Board", ["board"])
    headers = bearer(cid, secret)
    response = client.post("/v1/releases", json={"seed": 1}, headers=headers)
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["id"]
    total = Fraction(active_policy(db_session, app.config).policy.release.total().rho)

    worker = _worker(hub_overrides)
    try:
        wait_for(lambda: job_row(db_session, job_id).charged_at is not None, "the charge")
        worker.send_signal(signal.SIGSTOP)
        caught = job_row(db_session, job_id)
        assert caught.state == "running", "the build ended before the worker could be stopped"
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.kill()
        worker.wait()
    assert spent(db_session) == total

    # Another worker reaps the job once its lease has run out, and never builds it again.
    second = _worker(hub_overrides)
    try:
        wait_for(lambda: job_row(db_session, job_id).state != "running", "the reaper")
    finally:
        second.terminate()
        second.wait()
    row = job_row(db_session, job_id)
    assert row.state == "failed" and row.attempts == 1
    assert row.error is not None and row.error.startswith("worker-lost")
    assert spent(db_session) == total
    assert db_session.get_one(PrivacyLedger, ledger.DATASET).charges == 1
    candidate = db_session.get_one(ReleaseCandidate, row.result["release_candidate"])  # type: ignore[index]
    assert candidate.status == "failed" and candidate.error == "WorkerLost"
    assert candidate.kind == "release" and candidate.policy_version == 1
    assert tags_of(db_session, job_id)[-1] == "jobs:job:expire"
    # A failed candidate is never put to the board.
    (cid2, secret2, _) = make_client("Board", ["board"])
    refused = client.post(
        f"/v1/releases/candidates/{candidate.id}/votes",
        json={"decision": "approve", "reason_code": "meets_policy"},
        headers=bearer(cid2, secret2),
    )
    assert refused.status_code == 409 and refused.get_json()["code"] == "failed"
