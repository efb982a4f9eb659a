"""Uploads against a real server: concurrent duplicates, and a server killed mid-upload."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.crypto import Keyring
from hub.models import AuditEvent, RecordBatch, Upload
from hub.services.uploads import open_record_batch
from hub.storage import make_engine
from tests.hub_uploads.test_uploads_api import pseudonymised_csv, sample_csv

ROOT = Path(__file__).resolve().parents[2]


def test_concurrent_duplicates_with_one_key_store_one_batch(
    live_hub: Any, ctdc_file: Path, database_url: str
) -> None:
    body = sample_csv(ctdc_file, step=20)
    token = live_hub.token()
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "text/csv",
        "Idempotency-Key": "one-key-for-all",
    }
    barrier = threading.Barrier(8)
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()

    def send() -> None:
        barrier.wait()
        response = requests.post(
            f"{live_hub.url}/v1/uploads", data=body, headers=headers, timeout=60
        )
        with lock:
            answers.append((response.status_code, response.json().get("id", "")))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(status for status, _ in answers)
    assert statuses.count(201) == 1 and statuses.count(200) == 7, statuses
    assert len({upload_id for _, upload_id in answers}) == 1
    engine = make_engine(database_url)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(RecordBatch)) == 1
        assert connection.scalar(select(func.count()).select_from(Upload)) == 1
    engine.dispose()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the hub process exited before it served")
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError("the hub did not come up within 60 s")


def test_a_server_killed_mid_upload_leaves_no_partial_batch(
    live_hub: Any, ctdc_file: Path, database_url: str, test_keyring: Keyring
) -> None:
    body = pseudonymised_csv(ctdc_file.read_bytes())
    env = {
        **os.environ,
        "CTDHUB_DATABASE_URL": database_url,
        "CTDHUB_KEYRING": test_keyring.to_json(),
    }
    engine = make_engine(database_url)
    interrupted = 0
    for delay in (0.05, 0.3, 0.6, 1.0, 1.5, 3.0):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        process = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "serve", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # gunicorn: a master and its worker; kill -9 takes the whole group, as a crash would.
            start_new_session=True,
        )
        failures: list[BaseException] = []
        try:
            _wait_until_up(url, process)
            headers = {"Authorization": f"Bearer {live_hub.token(url)}", "Content-Type": "text/csv"}

            def send(
                target: str = url,
                hdrs: dict[str, str] = headers,
                failed: list[BaseException] = failures,
            ) -> None:
                try:
                    requests.post(f"{target}/v1/uploads", data=body, headers=hdrs, timeout=60)
                except requests.RequestException as error:
                    failed.append(error)  # the server died under the request

            sender = threading.Thread(target=send)
            sender.start()
            time.sleep(delay)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            sender.join(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        interrupted += bool(failures)
        with Session(engine) as session:
            uploads = session.scalars(select(Upload)).all()
            batches = session.scalars(select(RecordBatch)).all()
            accepts = session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.tag == "ingest:upload:accept")
            )
            # All or nothing: every stored upload has its whole batch and its audit event.
            assert len(uploads) == len(batches) == accepts <= 1
            for batch in batches:
                frame = open_record_batch(test_keyring, batch, batch.upload.organisation_id)
                assert len(frame) == batch.row_count == 97_750
    engine.dispose()
    assert interrupted, "no kill landed while an upload was in flight: the test proved nothing"
