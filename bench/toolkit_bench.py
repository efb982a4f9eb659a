"""The partner toolkit's ``prepare`` + ``upload`` of the whole CTDC file, against the hub's own
ingest of the same file.

Run: ``python -m bench.toolkit_bench [--repeat N]`` (``make bench BENCH=toolkit``). A hub is served
by ``ctdhub serve`` (gunicorn) in its own process on a fresh SQLite database. The floor is the hub's
own ingest of the file the toolkit sends (the CTDC file with its case ids pseudonymised, since the
hub refuses raw case ids): one HTTP POST, timed to the receipt. The toolkit is the real command,
``ctdhub-contribute upload`` on the raw CTDC file, in its own process, timed from start to exit:
interpreter start, reading, header matching, identifier screen, pseudonymisation, validation, CSV,
token, upload and the hub's ingest. Client peak memory is that process's high-water mark, taken
by :mod:`bench.measured_run` (this process's own ``RUSAGE_CHILDREN`` would charge the toolkit
with this process's memory). Targets: within 2x of the floor, under 500 MB. The machine may be
shared, so every run's time is printed beside the median.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

from bench.upload_bench import CTDC_FILE, ROOT, Hub, served_hub

ROWS = 97_750
KEY_VARIABLE = "BENCH_PARTNER_PSEUDONYM_KEY"
KEY = "bench-partner-pseudonym-key-0123456789abcdef"


def prepared_body() -> bytes:
    """Return what the toolkit sends for the CTDC file (made here, outside the timings)."""
    from contributors.cli import prepare_upload

    prepared = prepare_upload(
        CTDC_FILE.read_bytes(),
        filename=CTDC_FILE.name,
        htcds=False,
        pseudonym_key=KEY.encode(),
    )
    assert prepared.report.rows_accepted == ROWS, prepared.report.as_dict()
    return prepared.to_csv()


def floor_seconds(hub: Hub, body: bytes) -> float:
    """Time the hub's own ingest of ``body``: one POST, to the receipt."""
    hub.withdraw_all()
    start = time.perf_counter()
    response = requests.post(
        f"{hub.url}/v1/uploads",
        data=body,
        headers={
            "Authorization": f"Bearer {hub.token}",
            "Content-Type": "text/csv",
            "Idempotency-Key": str(uuid.uuid4()),
        },
        timeout=600,
    )
    seconds = time.perf_counter() - start
    if response.status_code != 201:
        raise RuntimeError(f"upload answered {response.status_code}: {response.text[:500]}")
    return seconds


def toolkit_seconds(hub: Hub, report: Path) -> tuple[float, float]:
    """Time ``ctdhub-contribute upload`` of the raw CTDC file; return its time and peak MiB.

    :param report: where :mod:`bench.measured_run` writes what it measured.
    """
    env = {
        **os.environ,
        KEY_VARIABLE: KEY,
        "CTDC_PARTNER_CLIENT_SECRET": hub.secret,
        "CTDC_PARTNER_HUB_URL": hub.url,
        "CTDC_PARTNER_CLIENT_ID": hub.client_id,
    }
    command = [
        sys.executable,
        "-m",
        "bench.measured_run",
        str(report),
        sys.executable,
        "-m",
        "contributors.cli",
        "upload",
        str(CTDC_FILE),
        "--pseudonym-key-env",
        KEY_VARIABLE,
    ]
    hub.withdraw_all()
    done = subprocess.run(  # noqa: S603 - our own modules, fixed arguments
        command, env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0 or f"{ROWS} accepted" not in done.stdout:
        raise RuntimeError(f"the toolkit failed ({done.returncode}): {done.stderr[-2000:]}")
    measured = json.loads(report.read_text(encoding="utf-8"))
    return float(measured["seconds"]), float(measured["peak_mib"])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the times, the ratio to the floor and client peak memory."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    body = prepared_body()
    floor_times, toolkit_times, peaks = [], [], []
    with served_hub() as hub, tempfile.TemporaryDirectory() as tmp:
        floor_seconds(hub, body)  # once untimed: the hub's workers load what they load lazily
        # The two alternate, so both see the same load on a shared machine.
        for _ in range(args.repeat):
            floor_times.append(floor_seconds(hub, body))
            seconds, peak = toolkit_seconds(hub, Path(tmp) / "run.json")
            toolkit_times.append(seconds)
            peaks.append(peak)
    floor = statistics.median(floor_times)
    toolkit = statistics.median(toolkit_times)
    print(f"toolkit prepare + upload of the CTDC file ({ROWS:,} records), median of {args.repeat}")
    print(f"  floor: the hub's own ingest (one POST) {floor:6.2f} s  {ROWS / floor:>9,.0f} rec/s")
    print(
        f"  toolkit: ctdhub-contribute upload      {toolkit:6.2f} s  {ROWS / toolkit:>9,.0f} rec/s"
    )
    print(f"  runs (s): floor {_spread(floor_times)}; toolkit {_spread(toolkit_times)}")
    print(f"  ratio toolkit / floor: {toolkit / floor:.2f}x   (target <= 2x)")
    print(
        f"  client peak memory: {max(peaks):.0f} MiB, the largest of {_spread(peaks, 0)}   "
        f"(target < 500 MB = {500e6 / 2**20:.0f} MiB)"
    )
    return 0


def _spread(values: list[float], digits: int = 2) -> str:
    return " ".join(f"{value:.{digits}f}" for value in values)


if __name__ == "__main__":
    sys.exit(main())
