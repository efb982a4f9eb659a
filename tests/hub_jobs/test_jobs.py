"""Release builds as jobs: queued over the API, run by a real Huey consumer, reaped if lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub import jobs
from hub.actors import OPERATOR
from hub.models import AuditEvent, Job, PrivacyLedger, ReleaseCandidate
from hub.services import jobs as service
from hub.services import ledger, releases
from tests.conftest import Bearer, MakeClient
from tests.hub_jobs.conftest import wait_for

COLUMNS = ["gender", "ageBroad", "majorityStatus", "isForcedLabour", "isSexualExploit"]
PROBLEM_JSON = "application/problem+json"


def spent(session: Session) -> Fraction:
    session.expire_all()
    row = session.get(PrivacyLedger, ledger.DATASET)
    return Fraction(0) if row is None else ledger.exact(row.spent_rho)


def job_row(session: Session, job_id: str) -> Job:
    session.expire_all()
    return session.get_one(Job, job_id)


def tags_of(session: Session, subject_id: str) -> list[str]:
    return list(
        session.execute(
            select(AuditEvent.tag)
            .where(AuditEvent.subject_id == subject_id)
            .order_by(AuditEvent.id)
        ).scalars()
    )


def finished(client: FlaskClient, location: str, headers: dict[str, str]) -> dict[str, Any] | None:
    body: dict[str, Any] = client.get(location, headers=headers).get_json()
    return body if body["state"] in {"succeeded", "failed"} else None


@pytest.mark.parametrize("queue_url", ["sqlite", "redis"], indirect=True)
def test_a_build_requested_over_the_api_is_run_by_a_consumer(
    app: APIFlask,
    client: FlaskClient,
    db_session: Session,
    make_client: MakeClient,
    bearer: Bearer,
    accepted: int,
    queue_url: str,
) -> None:
    assert app.config["QUEUE_URL"] == queue_url
    cid, secret, board = make_client("Board", ["board"])
    headers = bearer(cid, secret)
    body = {"records": 300, "rho": 0.05, "columns": COLUMNS, "seed": 3}
    response = client.post("/v1/releases/synthetic", json=body, headers=headers)
    assert response.status_code == 202, response.get_json()
    location = response.headers["Location"]
    job_id = response.get_json()["id"]
    assert location == f"/v1/jobs/{job_id}"
    # Nothing runs it yet: queued, and nothing charged.
    assert client.get(location, headers=headers).get_json()["state"] == "queued"
    assert spent(db_session) == 0

    assert jobs.start_in_process(app) is None  # the default: separate `ctdhub worker`s
    app.config["QUEUE_CONSUMER"] = "in-process"  # what `ctdhub serve` starts on a single machine
    consumer = jobs.start_in_process(app)
    assert consumer is not None
    try:
        shown = wait_for(lambda: finished(client, location, headers), "the job to finish")
    finally:
        consumer.stop()

    assert shown["state"] == "succeeded", shown
    assert shown["charged"] is True and shown["attempts"] == 1 and shown["error"] is None
    assert shown["stage"] and shown["progress"]["done"] == shown["progress"]["total"] > 0
    candidate = db_session.get_one(ReleaseCandidate, shown["result"]["release_candidate"])
    assert candidate.status == "candidate" and candidate.created_by == board.id
    assert spent(db_session) == Fraction(0.05)
    assert tags_of(db_session, job_id) == ["jobs:job:enqueue", "jobs:job:start", "jobs:job:succeed"]
    assert (Path(app.config["RELEASE_DIRECTORY"]) / candidate.id / "synthetic.csv").exists()


def test_jobs_are_scoped_to_their_starter_and_the_board(
    client: FlaskClient, make_client: MakeClient, bearer: Bearer, db_session: Session
) -> None:
    cid, secret, _ = make_client("Board", ["board"])
    starter = bearer(cid, secret)
    body = {"records": 10, "rho": 0.01, "columns": COLUMNS}
    # Nobody consumes this queue: the job stays queued, which is all these reads need.
    response = client.post("/v1/releases/synthetic", json=body, headers=starter)
    assert response.status_code == 202
    location = response.headers["Location"]

    assert client.get(location, headers=starter).status_code == 200
    # Another board member whose token reads candidates (the board's scope) sees it too.
    other_cid, other_secret, _ = make_client("Board", ["board"])
    assert client.get(location, headers=bearer(other_cid, other_secret)).status_code == 200
    # One whose token may start builds but not read others' candidates: as if it did not exist.
    narrow = bearer(other_cid, other_secret, scope="releases:create")
    hidden = client.get(location, headers=narrow)
    assert hidden.status_code == 404 and hidden.mimetype == PROBLEM_JSON
    missing = client.get("/v1/jobs/00000000-0000-4000-8000-000000000000", headers=starter)
    assert missing.status_code == 404 and missing.mimetype == PROBLEM_JSON
    # A researcher may neither start a build nor read a job; nobody without a token may.
    rcid, rsecret, _ = make_client("Institute", ["researcher"])
    researcher = bearer(rcid, rsecret)
    for answer in (
        client.post("/v1/releases/synthetic", json=body, headers=researcher),
        client.get(location, headers=researcher),
    ):
        assert answer.status_code == 403 and answer.mimetype == PROBLEM_JSON
    assert client.get(location).status_code == 401
    assert db_session.execute(select(func.count()).select_from(Job)).scalar() == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"records": 10}, "exactly one of epsilon or rho"),
        ({"records": 10, "rho": 0.1, "columns": ["nope"]}, "not in the record schema"),
        ({"records": 0, "rho": 0.1}, "records must be between"),
        ({"records": 10, "rho": 0.1, "seed": -1}, "seed must be between"),
        ({"records": 10, "rho": 0.1, "seed": 2**32}, "seed must be between"),
    ],
)
def test_a_bad_request_is_refused_before_any_job_is_recorded(
    client: FlaskClient,
    make_client: MakeClient,
    bearer: Bearer,
    db_session: Session,
    body: dict[str, Any],
    message: str,
) -> None:
    cid, secret, _ = make_client("Board", ["board"])
    response = client.post("/v1/releases/synthetic", json=body, headers=bearer(cid, secret))
    assert response.status_code == 400 and response.mimetype == PROBLEM_JSON
    assert message in response.get_json()["detail"]
    assert db_session.execute(select(func.count()).select_from(Job)).scalar() == 0


def test_two_workers_handed_one_job_run_it_once(app: APIFlask, db_session: Session) -> None:
    request = releases.SyntheticRequest(records=10, rho=0.01, columns=tuple(COLUMNS))
    job = releases.submit_synthetic(db_session, OPERATOR, request, queue=None)
    lease = timedelta(seconds=60)
    assert service.claim(db_session, job.id, "worker-a", lease) is not None
    assert service.claim(db_session, job.id, "worker-b", lease) is None
    assert job_row(db_session, job.id).worker == "worker-a"


def test_a_lost_job_that_charged_nothing_is_queued_again_and_charged_once(
    app: APIFlask, db_session: Session, accepted: int
) -> None:
    request = releases.SyntheticRequest(records=50, rho=0.02, columns=tuple(COLUMNS))
    job = releases.submit_synthetic(db_session, OPERATOR, request, queue=None)
    # A worker took it and died before charging: its lease runs out with nothing charged.
    claimed = service.claim(db_session, job.id, "lost-worker", timedelta(seconds=5))
    assert claimed is not None and claimed.lease_expires_at is not None
    before = service.reap(
        db_session, service.JOB_REAPER, jobs.KINDS, max_attempts=3, now=claimed.started_at
    )
    assert before == ([], [])  # a live lease is left alone
    after = service.reap(
        db_session,
        service.JOB_REAPER,
        jobs.KINDS,
        max_attempts=3,
        now=claimed.lease_expires_at + timedelta(seconds=1),
    )
    assert after == ([], [job.id])
    assert job_row(db_session, job.id).state == "queued"
    assert spent(db_session) == 0

    assert jobs.run_job(app, job.id) == "succeeded"
    row = job_row(db_session, job.id)
    assert row.attempts == 2 and row.result is not None
    assert spent(db_session) == Fraction(0.02)
    assert tags_of(db_session, job.id) == [
        "jobs:job:enqueue",
        "jobs:job:start",
        "jobs:job:retry",
        "jobs:job:start",
        "jobs:job:succeed",
    ]


def _worker(overrides: dict[str, Any]) -> subprocess.Popen[bytes]:
    environment = {**os.environ, **{f"CTDHUB_{k}": str(v) for k, v in overrides.items()}}
    return subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "worker"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("queue_url", ["sqlite", "redis"], indirect=True)
def test_a_worker_killed_mid_build_leaves_the_job_failed_and_the_ledger_charged_once(
    app: APIFlask,
    client: FlaskClient,
    db_session: Session,
    make_client: MakeClient,
    bearer: Bearer,
    accepted: int,
    hub_overrides: dict[str, Any],
) -> None:
    cid, secret, _ = make_client("Board", ["board"])
    headers = bearer(cid, secret)
    # Every column and many records: a build long enough to be caught between charge and end.
    body = {"records": 50_000, "rho": 0.1, "seed": 1}
    response = client.post("/v1/releases/synthetic", json=body, headers=headers)
    assert response.status_code == 202
    job_id = response.get_json()["id"]

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
    assert spent(db_session) == Fraction(0.1)

    # A second worker reaps the job once its lease has run out; it never runs it again.
    second = _worker(hub_overrides)
    try:
        wait_for(lambda: job_row(db_session, job_id).state != "running", "the reaper")
    finally:
        second.terminate()
        second.wait()
    row = job_row(db_session, job_id)
    assert row.state == "failed" and row.attempts == 1
    assert row.error is not None and row.error.startswith("worker-lost")
    shown = client.get(f"/v1/jobs/{job_id}", headers=headers).get_json()
    assert shown["state"] == "failed" and shown["charged"] is True
    assert spent(db_session) == Fraction(0.1)
    candidate = db_session.get_one(ReleaseCandidate, row.result["release_candidate"])  # type: ignore[index]
    assert candidate.status == "failed" and candidate.error == "WorkerLost"
    assert tags_of(db_session, job_id)[-1] == "jobs:job:expire"
    ledger_row = db_session.get_one(PrivacyLedger, ledger.DATASET)
    assert ledger_row.charges == 1


def test_a_job_the_queue_refuses_is_recorded_failed_and_answered_503(
    app: APIFlask,
    client: FlaskClient,
    make_client: MakeClient,
    bearer: Bearer,
    db_session: Session,
) -> None:
    app.config["QUEUE_URL"] = "redis://127.0.0.1:1/0"  # nothing listens there
    cid, secret, _ = make_client("Board", ["board"])
    body = {"records": 10, "rho": 0.01, "columns": COLUMNS}
    response = client.post("/v1/releases/synthetic", json=body, headers=bearer(cid, secret))
    assert response.status_code == 503 and response.mimetype == PROBLEM_JSON
    job = db_session.execute(select(Job)).scalar_one()
    assert job.state == "failed" and job.error is not None
    assert job.error.startswith("queue-unavailable")
    assert spent(db_session) == 0
    assert tags_of(db_session, job.id) == ["jobs:job:enqueue", "jobs:job:fail"]


def test_a_lost_job_out_of_attempts_is_failed_not_retried(
    app: APIFlask, db_session: Session
) -> None:
    request = releases.SyntheticRequest(records=10, rho=0.01, columns=tuple(COLUMNS))
    job = releases.submit_synthetic(db_session, OPERATOR, request, queue=None)
    claimed = service.claim(db_session, job.id, "lost-worker", timedelta(seconds=5))
    assert claimed is not None and claimed.lease_expires_at is not None
    later = claimed.lease_expires_at + timedelta(seconds=1)
    reaped = service.reap(db_session, service.JOB_REAPER, jobs.KINDS, max_attempts=1, now=later)
    assert reaped == ([job.id], [])
    row = job_row(db_session, job.id)
    assert row.state == "failed" and row.error is not None and "out of attempts" in row.error
    # A second reaper finds nothing left to do.
    assert service.reap(db_session, service.JOB_REAPER, jobs.KINDS, max_attempts=1, now=later) == (
        [],
        [],
    )


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("QUEUE_URL", "amqp://host/", "QUEUE_URL must be"),
        ("QUEUE_CONSUMER", "thread", "QUEUE_CONSUMER must be"),
        ("JOB_LEASE_SECONDS", "0", "JOB_LEASE_SECONDS"),
        ("QUEUE_URL", "redis://127.0.0.1:6379/0", "QUEUE_SECRET .* is required"),
    ],
)
def test_job_settings_are_checked_at_start(setting: str, value: str, message: str) -> None:
    from hub.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match=message):
        load_settings(environ={f"CTDHUB_{setting}": value})


@pytest.mark.parametrize("queue_url", ["sqlite", "redis"], indirect=True)
def test_a_queue_message_not_signed_with_the_hub_secret_is_refused(
    app: APIFlask, queue_url: str
) -> None:
    from huey.serializer import SignedSerializer

    huey = jobs.queue(app).huey
    assert isinstance(huey.serializer, SignedSerializer)
    signed = huey.serializer.serialize({"job": "id"})
    assert huey.serializer.deserialize(signed) == {"job": "id"}
    forged = SignedSerializer(secret="someone else's secret", salt="ctdhub-queue")
    with pytest.raises(ValueError, match="mismatch"):
        huey.serializer.deserialize(forged.serialize({"job": "id"}))
