"""The production shape on one machine: two app servers and two workers on PostgreSQL and Redis.

Four real processes share one PostgreSQL database (a schema of this test's own) and one Redis
queue (a queue name of this test's own): two ``ctdhub serve`` (gunicorn) and two
``ctdhub worker``. A partner uploads a CTDC sample through server A; the board adopts a policy
version fit for a sample that size through the API; a release requested through server A is
built by one of the workers; two board members approve it through server B, which publishes
it; its files are downloaded from server A and checked against the manifest; the transparency
log, read from server B, holds the release and its spend on one intact chain.

It skips, saying why, only when PostgreSQL (``CTDHUB_TEST_POSTGRES_URL``) or Redis
(``CTDHUB_TEST_REDIS_URL``, by default ``redis://127.0.0.1:6379/0``) is not configured or not
reachable. Every process is started in a session of its own and its whole process group is
ended when the test ends, passed or failed; every wait has a limit that fails naming what it
waited for, with the tail of each process's output.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import sqlalchemy as sa
import yaml

from hub import create_app
from hub.actors import OPERATOR
from hub.crypto import Keyring
from hub.models import Job, Organisation
from hub.services import principals, publication, transparency
from hub.services.policies import DEFAULT_POLICY
from hub.storage import make_engine
from tests.conftest import POSTGRES_URL, postgres_schema
from tests.hub_core.processes import BIN, Running, free_port
from tests.hub_jobs.conftest import wait_for
from tests.hub_releases.test_release import CITIZENSHIP_TABLE
from tests.hub_uploads.test_uploads_api import sample_csv

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

REDIS_URL = os.environ.get("CTDHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
#: Limits that stop a broken run from hanging; no result depends on how long anything took.
START_LIMIT_S = 180.0
BUILD_LIMIT_S = 900.0
REQUEST_TIMEOUT_S = 120.0
STOP_GRACE_S = 20.0


@pytest.fixture
def production_database() -> Iterator[str]:
    """A PostgreSQL schema of this test's own, migrated to head; dropped afterwards."""
    if not POSTGRES_URL:
        pytest.skip("CTDHUB_TEST_POSTGRES_URL is not set (CI sets it): no PostgreSQL to share")
    probe = make_engine(POSTGRES_URL)
    try:
        with probe.connect():
            pass
    except sa.exc.OperationalError as error:
        pytest.skip(f"PostgreSQL at CTDHUB_TEST_POSTGRES_URL is not reachable: {error.orig}")
    finally:
        probe.dispose()
    with postgres_schema("ctdhub_e2e") as url:
        yield url


@pytest.fixture
def queue_name() -> Iterator[str]:
    """A Redis queue name of this test's own; its keys are deleted afterwards."""
    connection = redis.Redis.from_url(REDIS_URL)
    try:
        connection.ping()
    except redis.exceptions.RedisError as error:
        pytest.skip(f"Redis at {REDIS_URL} is not reachable: {error}")
    name = f"ctdhub-e2e-{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        keys = list(connection.scan_iter(match=f"*{name}*"))
        if keys:
            connection.delete(*keys)
        connection.close()


class Processes:
    """The test's processes, each the leader of its own process group, ended together."""

    def __init__(self) -> None:
        self.running: dict[str, Running] = {}

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Running:
        process = subprocess.Popen(  # noqa: S603 - our own command, fixed arguments
            args,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            # A group of its own: gunicorn's master and its workers end with it.
            start_new_session=True,
        )
        self.running[name] = Running(process)
        return self.running[name]

    def tails(self) -> str:
        """The last lines each process wrote, for a failure's message."""
        return "\n".join(
            f"--- {name} (exit {run.process.poll()}):\n" + "\n".join(run.lines[-15:])
            for name, run in self.running.items()
        )

    def stop(self) -> None:
        """Ask every group to stop (SIGTERM), then kill what is left past the grace period."""
        for run in self.running.values():
            _signal_group(run.process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for run in self.running.values():
            try:
                run.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
            # The group's other members (gunicorn's workers) too, even if the leader ended.
            _signal_group(run.process, signal.SIGKILL)
            run.finish()  # reaps it, reads its output to the end and closes the pipe


def _signal_group(process: subprocess.Popen[str], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def _small_policy_document() -> dict[str, Any]:
    """Version 2 of the shipped policy, fit for a sample of ~2,000 records: without the
    citizenship x country table (too sparse: the checks would block it) and with a small draw."""
    document: dict[str, Any] = yaml.safe_load(DEFAULT_POLICY.read_text("utf-8"))
    document["version"] = 2
    tables = document["tables"]["frequency_tables"]
    document["tables"]["frequency_tables"] = [t for t in tables if t["name"] != CITIZENSHIP_TABLE]
    document["release"]["synthetic"]["records"] = 1000
    return document


def _account(session: Any, organisation: str, role: str) -> tuple[str, str, str]:
    """Create a principal and its client credentials as the operator does: (id, client, secret)."""
    found = session.scalar(sa.select(Organisation).where(Organisation.name == organisation))
    if found is None:
        found = principals.create_organisation(session, OPERATOR, organisation)
    principal = principals.create_principal(
        session, OPERATOR, found.id, f"{role} {uuid.uuid4().hex[:6]}", [role]
    )
    client, secret = principals.create_client(session, OPERATOR, principal.id, None)
    return principal.id, client.client_id, secret


def _token(base: str, client_id: str, secret: str) -> dict[str, str]:
    response = requests.post(
        f"{base}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
        timeout=REQUEST_TIMEOUT_S,
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_two_servers_and_two_workers_build_publish_and_serve_one_release(
    production_database: str, queue_name: str, tmp_path: Path, ctdc_file: Path
) -> None:
    keyring = Keyring.generate("e2e-k1")
    settings = {
        "DATABASE_URL": production_database,
        "KEYRING": keyring.to_json(),
        "QUEUE_URL": REDIS_URL,
        "QUEUE_SECRET": "e2e-queue-secret-" + "q" * 32,
        "QUEUE_NAME": queue_name,
        "QUEUE_CONSUMER": "worker",
        "SECRET_KEY": "e2e-secret-key-" + "k" * 32,
        # One folder for every process: on one machine, what shared storage is across several.
        "RELEASE_DIRECTORY": str(tmp_path / "releases"),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTDHUB_")}
    env.update({f"CTDHUB_{k}": v for k, v in settings.items()}, PYTHONUNBUFFERED="1")

    # The accounts, made as the operator makes them at the command line.
    operator_app = create_app(settings)
    with operator_app.extensions["ctdhub.sessionmaker"]() as session:
        _, partner_id, partner_secret = _account(session, "Partner A", "partner")
        board = [_account(session, "Board", "board") for _ in range(3)]
    operator_app.extensions["ctdhub.engine"].dispose()

    processes = Processes()
    try:
        ports = {name: free_port() for name in ("A", "B")}
        servers = {
            name: processes.start(
                f"server {name}",
                [str(BIN / "ctdhub"), "serve", "--port", str(port), "--workers", "1"],
                env,
            )
            for name, port in ports.items()
        }
        workers = [
            processes.start(f"worker {n}", [str(BIN / "ctdhub"), "worker"], env) for n in (1, 2)
        ]
        for run in servers.values():
            run.wait_for("ctdhub serving on", START_LIMIT_S)
        for run in workers:
            run.wait_for("ctdhub worker:", START_LIMIT_S)
        a, b = (f"http://127.0.0.1:{ports[name]}" for name in ("A", "B"))

        # A partner uploads every 50th CTDC record through server A.
        uploaded = requests.post(
            f"{a}/v1/uploads",
            data=sample_csv(ctdc_file, step=50),
            headers={**_token(a, partner_id, partner_secret), "Content-Type": "text/csv"},
            timeout=REQUEST_TIMEOUT_S,
        )
        assert uploaded.status_code == 201, uploaded.text
        assert uploaded.json()["rows_accepted"] > 1000

        # The board adopts version 2 through the API: proposed on A, approved on B.
        (builder_id, *builder), (_, *first), (_, *second) = board
        on_a = {"builder": _token(a, *builder)}
        on_b = {"first": _token(b, *first), "second": _token(b, *second)}
        proposed = requests.post(
            f"{a}/v1/policies",
            json={"document": _small_policy_document(), "rationale": "a sample's release"},
            headers=on_a["builder"],
            timeout=REQUEST_TIMEOUT_S,
        )
        assert proposed.status_code == 201, proposed.text
        for member in ("first", "second"):
            shown = requests.get(f"{b}/v1/policies/2", headers=on_b[member], timeout=60)
            voted = requests.post(
                f"{b}/v1/policies/2/reviews",
                json={"decision": "approve", "reason_code": "meets_policy", "text": ""},
                headers={**on_b[member], "If-Match": shown.headers["ETag"]},
                timeout=REQUEST_TIMEOUT_S,
            )
            assert voted.status_code == 200, voted.text
        active = requests.get(f"{a}/v1/policies/active", headers=on_a["builder"], timeout=60)
        assert active.json()["version"] == 2, active.text

        # Requested through A; built by a worker; its progress readable from B.
        requested = requests.post(
            f"{a}/v1/releases", json={"seed": 3}, headers=on_a["builder"], timeout=60
        )
        assert requested.status_code == 202, requested.text
        location = requested.headers["Location"]

        def finished() -> dict[str, Any] | None:
            job: dict[str, Any] = requests.get(
                f"{b}{location}", headers=on_b["first"], timeout=REQUEST_TIMEOUT_S
            ).json()
            if job["state"] in ("succeeded", "failed"):
                return job
            time.sleep(0.5)
            return None

        try:
            job = wait_for(finished, "the release build", BUILD_LIMIT_S)
        except AssertionError as error:
            pytest.fail(f"{error}:\n{processes.tails()}")
        assert job["state"] == "succeeded" and job["charged"], (job, processes.tails())
        candidate_id = job["result"]["release_candidate"]
        engine = make_engine(production_database)
        try:
            with engine.connect() as connection:
                ran_on = connection.execute(
                    sa.select(Job.worker).where(Job.id == job["id"])
                ).scalar_one()
        finally:
            engine.dispose()
        assert ran_on is not None
        assert int(ran_on.split(":")[1]) in {run.process.pid for run in workers}

        candidate = requests.get(
            f"{b}/v1/releases/candidates/{candidate_id}", headers=on_b["first"], timeout=60
        ).json()
        assert candidate["status"] == "candidate", candidate.get("checks")
        assert candidate["policy_version"] == 2

        # Approved and published through B by two members (not the builder).
        outcomes = [
            requests.post(
                f"{b}/v1/releases/candidates/{candidate_id}/votes",
                json={"decision": "approve", "reason_code": "meets_policy", "remark": "checked"},
                headers=on_b[member],
                timeout=REQUEST_TIMEOUT_S,
            )
            for member in ("first", "second")
        ]
        assert [o.status_code for o in outcomes] == [201, 201], [o.text for o in outcomes]
        release_id = outcomes[1].json()["release"]
        assert outcomes[1].json()["state"] == "approved" and release_id

        # Public, from A: every file downloads and matches the manifest.
        release = requests.get(f"{a}/v1/releases/{release_id}", timeout=60).json()
        assert release["version"] == 1 and release["policy_version"] == 2
        files = {f["path"]: f for f in release["files"]}
        assert {"microdata.csv", "datapackage.json"} <= set(files)
        manifest = requests.get(
            f"{a}/v1/releases/{release_id}/files/{publication.MANIFEST}", timeout=60
        )
        assert manifest.status_code == 200, manifest.text
        listed = dict(reversed(line.split("  ", 1)) for line in manifest.text.splitlines())
        assert listed == {path: item["sha256"] for path, item in files.items()}
        for path, item in files.items():
            body = requests.get(f"{a}{item['url']}", timeout=REQUEST_TIMEOUT_S)
            assert body.status_code == 200, (path, body.status_code)
            assert hashlib.sha256(body.content).hexdigest() == listed[path], path

        # The transparency log, from B: the policy, the spend and the release, one chain.
        log = requests.get(f"{b}/v1/transparency", timeout=60).json()
        kinds = [(e["kind"], e["body"].get("release")) for e in log]
        assert ("release", release_id) in kinds
        assert sum(kind == "privacy_spend" for kind, _ in kinds) == 1
        assert sum(kind == "policy_version" for kind, _ in kinds) == 2
        previous = transparency.GENESIS
        for entry in log:
            assert entry["previous_hash"] == previous
            previous = transparency.chain(previous, entry["body"])
            assert entry["entry_hash"] == previous
        assert builder_id not in str(log)
    finally:
        processes.stop()
