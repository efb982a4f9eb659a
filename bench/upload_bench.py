"""Upload the whole CTDC file through the API, against the floor of reading + validating it.

Run: ``python -m bench.upload_bench [--repeat N]``. The floor is what one process does with
pandas alone: read the file's bytes as strings and validate them with the hub's schema code.
The API number is a real HTTP upload to a hub served by ``ctdhub serve`` (gunicorn) in its own
process, on a fresh SQLite database: token, streaming, hashing, identifier screen, validation,
Parquet, AES-GCM and the database transaction. Peak memory is the largest high-water mark
(VmHWM) of the server's processes: gunicorn's master and the workers that serve the uploads.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
CTDC_FILE = ROOT.parent / "shared" / "data" / "ctdc" / "ctdc_global_kanon_2021.csv"
#: The benches' partner key: the hub takes case ids only as the toolkit's pseudonyms.
BENCH_PSEUDONYM_KEY = "bench-partner-pseudonym-key-" + "b" * 32


def ctdc_upload_body() -> bytes:
    """Return the CTDC file as a partner's ``prepare`` sends it: case numbers pseudonymised."""
    from contributors.pseudonym import pseudonymise

    header, *rows = CTDC_FILE.read_bytes().splitlines(keepends=True)
    out = [header]
    for row in rows:
        case, rest = row.split(b",", 1)
        out.append(pseudonymise(case.decode(), BENCH_PSEUDONYM_KEY).encode() + b"," + rest)
    return b"".join(out)


def floor_seconds(body: bytes, repeat: int) -> list[float]:
    """Time reading and validating the file in this process, with the hub's schema code."""
    from contributors.formats import read_table
    from contributors.normalise import validate_records

    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = validate_records(read_table(body, media_type="text/csv"))
        times.append(time.perf_counter() - start)
        assert result.report.rows_accepted == 97_750
    return times


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _peak_rss_mib(pid: int) -> float:
    """Return the largest VmHWM of ``pid`` and its descendants (gunicorn's workers), in MiB."""
    peaks = []
    pending = [pid]
    while pending:
        proc = Path(f"/proc/{pending.pop()}")
        try:
            status = (proc / "status").read_text().splitlines()
            peaks += [int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:")]
            for task in (proc / "task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue  # a process that ended meanwhile
    return max(peaks, default=float("nan"))


@dataclass(frozen=True)
class Hub:
    """A hub served in its own process, with one partner's credentials and a token."""

    url: str
    client_id: str
    secret: str
    token: str
    pid: int

    def withdraw_all(self) -> None:
        """Withdraw every live upload, so the same body is a new upload next round."""
        headers = {"Authorization": f"Bearer {self.token}"}
        listed = requests.get(f"{self.url}/v1/uploads", headers=headers, timeout=30).json()
        for receipt in listed["uploads"]:
            if receipt["status"] != "withdrawn":
                requests.delete(
                    f"{self.url}/v1/uploads/{receipt['id']}", headers=headers, timeout=30
                ).raise_for_status()


@contextmanager
def served_hub() -> Iterator[Hub]:
    """Serve a fresh hub (SQLite, ``ctdhub serve``) in its own process; stop it afterwards."""
    from hub import create_app, migrate
    from hub.actors import OPERATOR
    from hub.crypto import Keyring
    from hub.db import session_factory
    from hub.services import principals

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.sqlite3"
        keyring = Keyring.generate().to_json()
        migrate.upgrade(url)
        app = create_app({"DATABASE_URL": url, "KEYRING": keyring})
        with session_factory(app)() as session:
            org = principals.create_organisation(session, OPERATOR, "Bench Partner")
            person = principals.create_principal(session, OPERATOR, org.id, "bench", ["partner"])
            client, secret = principals.create_client(session, OPERATOR, person.id)
            client_id = client.client_id
        app.extensions["ctdhub.engine"].dispose()
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "CTDHUB_DATABASE_URL": url, "CTDHUB_KEYRING": keyring}
        server = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            [sys.executable, "-m", "hub.cli", "serve", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if requests.get(f"{base}/health", timeout=1).ok:
                        break
                except requests.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            token = requests.post(
                f"{base}/oauth/token",
                data={"grant_type": "client_credentials", "scope": "records:write records:read"},
                auth=(client_id, secret),
                timeout=30,
            ).json()["access_token"]
            yield Hub(base, client_id, secret, token, server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)


def api_seconds(body: bytes, repeat: int) -> tuple[list[float], float]:
    """Time HTTP uploads of ``body`` to a fresh hub; return the times and peak server MiB."""
    times = []
    with served_hub() as hub:
        for _ in range(repeat):
            start = time.perf_counter()
            response = requests.post(
                f"{hub.url}/v1/uploads",
                data=body,
                headers={"Authorization": f"Bearer {hub.token}", "Content-Type": "text/csv"},
                timeout=300,
            )
            times.append(time.perf_counter() - start)
            if response.status_code != 201:
                raise RuntimeError(f"upload answered {response.status_code}: {response.text}")
            # Withdraw it so the same body is a new upload next round, not a duplicate.
            hub.withdraw_all()
        peak = _peak_rss_mib(hub.pid)
    return times, peak


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print records/s, the ratio to the floor and peak memory."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    body = ctdc_upload_body()
    rows = 97_750

    floor = statistics.median(floor_seconds(body, args.repeat))
    api_times, peak = api_seconds(body, args.repeat)
    api = statistics.median(api_times)
    mb = len(body) / 1e6
    print(f"upload of the CTDC file ({rows:,} records, {mb:.1f} MB), median of {args.repeat}")
    print(f"  floor: pandas read + validate   {floor:6.2f} s  {rows / floor:>10,.0f} records/s")
    print(f"  hub API: HTTP upload to receipt {api:6.2f} s  {rows / api:>10,.0f} records/s")
    print(f"  ratio API / floor: {api / floor:.2f}x   (target <= 3x)")
    print(f"  peak memory of the hub process: {peak:.0f} MiB   (target < 1024 MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
