"""The README's first hour: its sample files, its walk-through, and what it tells a newcomer."""

from __future__ import annotations

import io
import re
import secrets
import subprocess
from pathlib import Path

import pandas as pd
from flask.testing import FlaskClient

from contributors.schema import load_schema
from examples import make_examples
from tests.conftest import Partner
from tests.hub_core.processes import BIN

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def toolkit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``ctdhub-contribute`` as the README does."""
    return subprocess.run(  # noqa: S603 - our own command
        [str(BIN / "ctdhub-contribute"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_the_sample_files_are_what_the_script_makes() -> None:
    """They are generated (made-up rows, fixed seed), and the script still makes them."""
    for path, made in (
        (make_examples.CTDC_FILE, make_examples.ctdc_cases()),
        (make_examples.HTCDS_FILE, make_examples.htcds_export()),
    ):
        assert path.read_text(encoding="utf-8") == made.to_csv(index=False, lineterminator="\n")
        assert path.stat().st_size < 20_000  # small enough to read in an editor


def test_the_ctdc_sample_is_in_the_schema_and_the_hub_accepts_it_whole(
    client: FlaskClient, partner_a: Partner
) -> None:
    body = make_examples.CTDC_FILE.read_bytes()
    frame = pd.read_csv(io.BytesIO(body), dtype="string", keep_default_na=False)
    assert tuple(frame.columns) == load_schema().names
    response = client.post(
        "/v1/uploads", data=body, headers={**partner_a.headers, "Content-Type": "text/csv"}
    )
    assert response.status_code == 201, response.get_json()
    receipt = response.get_json()
    assert receipt["rows_total"] == receipt["rows_accepted"] == len(frame) == 40


def test_the_htcds_walk_through(client: FlaskClient, partner_a: Partner, tmp_path: Path) -> None:
    """validate, prepare --htcds, validate, upload: as the README's walk-through does it."""
    assert toolkit("validate", str(make_examples.CTDC_FILE)).returncode == 0
    key = secrets.token_urlsafe(32)
    ready = tmp_path / "ready.csv"
    env = {"PATH": str(BIN), "PARTNER_PSEUDONYM_KEY": key}
    prepared = toolkit(
        "prepare",
        str(make_examples.HTCDS_FILE),
        "--htcds",
        "-o",
        str(ready),
        "--pseudonym-key-env",
        "PARTNER_PSEUDONYM_KEY",
        env=env,
    )
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    assert toolkit("validate", str(ready)).returncode == 0
    export = pd.read_csv(make_examples.HTCDS_FILE, dtype="string", keep_default_na=False)
    text = ready.read_text(encoding="utf-8")
    for column in ("prs_FirstName", "prs_SecondName", "prs_Birthdate", "cas_CaseNumber"):
        assert not any(value in text for value in export[column]), column
    response = client.post(
        "/v1/uploads",
        data=ready.read_bytes(),
        headers={**partner_a.headers, "Content-Type": "text/csv"},
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["rows_accepted"] == len(export) == 40


def test_readme_tells_how_to_run_and_where() -> None:
    assert "make demo PORT=" in README and "HOST=" in README
    assert ".venv/bin/" in README and "source .venv/bin/activate" in README
    assert "ctdhub --version" in README and "ctdhub --help" in README
    for mentioned in set(re.findall(r"examples/[\w./-]+\.(?:csv|py)", README)):
        assert (ROOT / mentioned).is_file(), mentioned
    assert "examples/ctdc_cases.csv" in README and "examples/htcds_export.csv" in README
