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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Run:
    """One timed run: wall-clock seconds, and the CPU seconds of the hub and of the toolkit.

    On a shared machine the wall clock also counts other people's work; CPU seconds count only
    what each side did, so their ratio is the one a quiet machine would show.
    """

    seconds: float
    hub_cpu: float
    toolkit_cpu: float = 0.0
    peak_mib: float = 0.0


def hub_cpu_seconds(pid: int) -> float:
    """Return the CPU seconds used so far by the hub's processes (gunicorn and its workers)."""
    total = 0
    pending = [pid]
    while pending:
        proc = Path(f"/proc/{pending.pop()}")
        try:
            # fields after the command name: utime and stime are the 12th and 13th
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            for task in (proc / "task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue  # a process that ended meanwhile
    return total / os.sysconf("SC_CLK_TCK")


def floor_seconds(hub: Hub, body: bytes) -> Run:
    """Time the hub's own ingest of ``body``: one POST, to the receipt."""
    hub.withdraw_all()
    cpu = hub_cpu_seconds(hub.pid)
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
    return Run(seconds, hub_cpu_seconds(hub.pid) - cpu)


def toolkit_seconds(hub: Hub, scratch: Path) -> Run:
    """Time ``ctdhub-contribute upload`` of the raw CTDC file.

    The toolkit runs with its compiled bytecode kept under ``scratch`` (the first run writes
    it), as in a partner's installation, where pip compiles the modules when it installs them:
    a checkout run with ``PYTHONDONTWRITEBYTECODE`` would compile the toolkit's source at every
    start. Nothing is written into the checkout.

    :param scratch: a directory for the bytecode and :mod:`bench.measured_run`'s report.
    """
    env = {
        **{name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"},
        "PYTHONPYCACHEPREFIX": str(scratch / "pycache"),
        KEY_VARIABLE: KEY,
        "CTDC_PARTNER_CLIENT_SECRET": hub.secret,
        "CTDC_PARTNER_HUB_URL": hub.url,
        "CTDC_PARTNER_CLIENT_ID": hub.client_id,
    }
    report = scratch / "run.json"
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
    cpu = hub_cpu_seconds(hub.pid)
    done = subprocess.run(  # noqa: S603 - our own modules, fixed arguments
        command, env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0 or f"{ROWS} accepted" not in done.stdout:
        raise RuntimeError(f"the toolkit failed ({done.returncode}): {done.stderr[-2000:]}")
    hub_cpu = hub_cpu_seconds(hub.pid) - cpu
    measured = json.loads(report.read_text(encoding="utf-8"))
    return Run(
        float(measured["seconds"]),
        hub_cpu,
        float(measured["cpu_seconds"]),
        float(measured["peak_mib"]),
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the times, the ratio to the floor and client peak memory."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    body = prepared_body()
    floors: list[Run] = []
    toolkits: list[Run] = []
    with served_hub() as hub, tempfile.TemporaryDirectory() as tmp:
        # once each untimed: the hub's workers load what they load lazily, the toolkit's
        # first run compiles its bytecode
        floor_seconds(hub, body)
        toolkit_seconds(hub, Path(tmp))
        # The two alternate, so both see the same load on a shared machine.
        for _ in range(args.repeat):
            floors.append(floor_seconds(hub, body))
            toolkits.append(toolkit_seconds(hub, Path(tmp)))
    floor = statistics.median(run.seconds for run in floors)
    toolkit = statistics.median(run.seconds for run in toolkits)
    peaks = [run.peak_mib for run in toolkits]
    print(f"toolkit prepare + upload of the CTDC file ({ROWS:,} records), median of {args.repeat}")
    print(f"  floor: the hub's own ingest (one POST) {floor:6.2f} s  {ROWS / floor:>9,.0f} rec/s")
    print(
        f"  toolkit: ctdhub-contribute upload      {toolkit:6.2f} s  {ROWS / toolkit:>9,.0f} rec/s"
    )
    print(f"  ratio toolkit / floor: {toolkit / floor:.2f}x   (target <= 2x)")
    print(
        f"  runs (s): floor {_spread([r.seconds for r in floors])}; "
        f"toolkit {_spread([r.seconds for r in toolkits])}"
    )
    # CPU seconds: the toolkit's process plus the hub's work for it (token and ingest), against
    # the hub's work for the floor's POST
    floor_cpu = statistics.median(run.hub_cpu for run in floors)
    toolkit_cpu = statistics.median(run.toolkit_cpu for run in toolkits)
    served_cpu = statistics.median(run.hub_cpu for run in toolkits)
    print(
        f"  CPU (s, medians): floor {floor_cpu:.2f} (hub); toolkit {toolkit_cpu:.2f} + hub "
        f"{served_cpu:.2f}; ratio {(toolkit_cpu + served_cpu) / floor_cpu:.2f}x"
    )
    print(
        f"  client peak memory: {max(peaks):.0f} MiB, the largest of {_spread(peaks, 0)}   "
        f"(target < 500 MB = {500e6 / 2**20:.0f} MiB)"
    )
    return 0


def _spread(values: list[float], digits: int = 2) -> str:
    return " ".join(f"{value:.{digits}f}" for value in values)


if __name__ == "__main__":
    sys.exit(main())
