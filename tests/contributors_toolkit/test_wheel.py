"""The partner toolkit as its own distribution: built, installed alone, run against a live hub.

The wheel is built from a copy of ``toolkit/`` and ``contributors/`` (so nothing is written into
the checkout), installed into a fresh virtual environment outside the checkout with its own
dependencies only, and its ``ctdhub-contribute`` runs ``validate``, ``prepare`` and ``upload``
from a folder that is not the checkout.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import requests

from contributors.cli import CLIENT_SECRET_ENV
from tests.conftest import LiveHub

ROOT = Path(__file__).resolve().parents[2]
HUB_ONLY = ("flask", "apiflask", "opendp", "sqlalchemy", "alembic", "psycopg", "hub", "polars")


def _run(command: list[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and tools
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def toolkit_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the toolkit's wheel and its declared dependencies."""
    base = tmp_path_factory.mktemp("toolkit")
    stage = base / "src"
    ignore = shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    shutil.copytree(ROOT / "contributors", stage / "contributors", ignore=ignore)
    shutil.copytree(ROOT / "toolkit", stage / "toolkit", ignore=ignore)
    wheels = base / "wheels"
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", wheels, stage / "toolkit"],
        cwd=stage,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("ctdhub_contribute-*.whl")
    venv = base / "venv"
    made = _run([sys.executable, "-m", "venv", venv])
    assert made.returncode == 0, made.stderr
    installed = _run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel])
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv


@pytest.mark.slow
def test_the_wheel_carries_the_schema_and_none_of_the_hub(toolkit_venv: Path) -> None:
    probe = (
        "import importlib.util, json, contributors.schema as s; "
        f"print(json.dumps([[m for m in {HUB_ONLY!r} if importlib.util.find_spec(m)], "
        "str(s.SCHEMA_PATH), len(s.load_schema().names)]))"
    )
    answer = _run([toolkit_venv / "bin" / "python", "-c", probe], cwd=toolkit_venv)
    assert answer.returncode == 0, answer.stderr
    present, schema_path, fields = json.loads(answer.stdout)
    assert present == []
    assert schema_path.startswith(str(toolkit_venv)) and not schema_path.startswith(str(ROOT))
    from contributors.schema import load_schema

    assert fields == len(load_schema().names)


@pytest.mark.slow
def test_the_installed_toolkit_validates_prepares_and_uploads(
    toolkit_venv: Path, live_hub: LiveHub, ctdc_file: Path, tmp_path: Path
) -> None:
    work = tmp_path / "partner"
    work.mkdir()
    rows = pd.read_csv(ctdc_file, dtype="string", keep_default_na=False).iloc[::500]
    rows.to_csv(work / "cases.csv", index=False)
    command = toolkit_venv / "bin" / "ctdhub-contribute"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(work),
        "PARTNER_KEY": "wheel-test-partner-key-0123456789abcdef",
        CLIENT_SECRET_ENV: live_hub.client_secret,
    }

    version = _run([command, "--version"], cwd=work, env=env)
    assert version.returncode == 0 and version.stdout.startswith("ctdhub-contribute, version ")

    # Raw CTDC case numbers: the hub refuses them, so validate does too.
    raw = _run([command, "validate", "cases.csv"], cwd=work, env=env)
    assert raw.returncode == 1, raw.stdout + raw.stderr
    assert raw.stderr.strip().splitlines()[-1].startswith("error: the hub would refuse this file")

    key = ["--pseudonym-key-env", "PARTNER_KEY"]
    prepared = _run([command, "prepare", "cases.csv", "-o", "ready.csv", *key], cwd=work, env=env)
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    assert f"wrote {len(rows)} case records to ready.csv" in prepared.stdout

    checked = _run([command, "validate", "ready.csv"], cwd=work, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok: the hub would accept this file" in checked.stdout

    hub = ["--hub", live_hub.url, "--client-id", live_hub.client_id]
    sent = _run([command, "upload", "cases.csv", *hub, *key], cwd=work, env=env)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert f"rows: {len(rows)} total, {len(rows)} accepted, 0 rejected" in sent.stdout

    token = live_hub.token()
    (receipt,) = requests.get(
        f"{live_hub.url}/v1/uploads", headers={"Authorization": f"Bearer {token}"}, timeout=30
    ).json()["uploads"]
    assert receipt["rows_accepted"] == len(rows)
    assert receipt["sha256"] == hashlib.sha256((work / "ready.csv").read_bytes()).hexdigest()
