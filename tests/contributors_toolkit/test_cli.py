"""The ctdhub-contribute commands, run through click's CliRunner on real and fake files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner, Result

from contributors.cli import cli
from contributors.normalise import validate_records
from contributors.pseudonym import is_pseudonym, pseudonymise

from .htcds_export import CANARY, fake_export

KEY_ENV = "TEST_PARTNER_PSEUDONYM_KEY"
KEY = "a-partner-key-that-is-long-enough-0123456789"
EVERY = 500  # every 500th CTDC record: 196 rows, a deterministic sample


@pytest.fixture(scope="module")
def ctdc_sample(tmp_path_factory: pytest.TempPathFactory, ctdc_file: Path) -> Path:
    """Every 500th record of the real CTDC file, written as a partner CSV."""
    frame = pd.read_csv(ctdc_file, dtype="string", keep_default_na=False)
    path = tmp_path_factory.mktemp("ctdc") / "sample.csv"
    frame.iloc[::EVERY].to_csv(path, index=False)
    return path


def _run(*args: str, key: bool = False, **env: str) -> Result:
    environment = {KEY_ENV: KEY} if key else {}
    environment.update(env)
    return CliRunner().invoke(cli, list(args), env=environment)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype="string", keep_default_na=False)


@pytest.mark.slow
def test_validate_accepts_the_ctdc_sample(ctdc_sample: Path, tmp_path: Path) -> None:
    # CTDC's own case numbers are not pseudonyms: the hub refuses them, and so does validate
    result = _run("validate", str(ctdc_sample))
    assert result.exit_code == 1
    assert "field caseNo (integer): not a case pseudonym" in result.output
    prepared = tmp_path / "prepared.csv"
    result = _run(
        "prepare", str(ctdc_sample), "-o", str(prepared), "--pseudonym-key-env", KEY_ENV, key=True
    )
    assert result.exit_code == 0, result.output
    result = _run("validate", str(prepared))
    assert result.exit_code == 0, result.output
    assert "rows: 196 total, 196 accepted, 0 rejected" in result.output


@pytest.mark.slow
def test_prepare_pseudonymises_and_is_deterministic(ctdc_sample: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    for out in (first, second):
        result = _run(
            "prepare", str(ctdc_sample), "-o", str(out), "--pseudonym-key-env", KEY_ENV, key=True
        )
        assert result.exit_code == 0, result.output
    assert first.read_bytes() == second.read_bytes()

    source, prepared = _read(ctdc_sample), _read(first)
    assert len(prepared) == len(source) == 196
    assert prepared["caseNo"].tolist() == [pseudonymise(c, KEY) for c in source["caseNo"]]
    assert not set(source["caseNo"]) & set(prepared["caseNo"])
    # Everything but the case id arrives unchanged (the sample is already in canonical form).
    pd.testing.assert_frame_equal(prepared.drop(columns="caseNo"), source.drop(columns="caseNo"))
    assert validate_records(prepared).report.ok

    # A prepared file goes through again without a key, unchanged; with a key it is refused,
    # since hashing pseudonyms again would give the same case a second pseudonym.
    again = tmp_path / "c.csv"
    result = _run("prepare", str(first), "-o", str(again))
    assert result.exit_code == 0, result.output
    assert again.read_bytes() == first.read_bytes()
    result = _run("prepare", str(first), "-o", str(again), "--pseudonym-key-env", KEY_ENV, key=True)
    assert result.exit_code == 2
    assert "already holds pseudonyms" in result.output


@pytest.mark.slow
def test_prepare_refuses_raw_case_ids_without_a_key(ctdc_sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    result = _run("prepare", str(ctdc_sample), "-o", str(out))
    assert result.exit_code == 2
    assert "holds the partner's own case ids" in result.output
    assert not out.exists()


@pytest.fixture
def flawed(tmp_path: Path) -> Path:
    """A small partner file with a name column, a phone column and one bad gender code."""
    frame = pd.DataFrame(
        {
            "caseNo": ["1", "2", "3", "4"],
            "victimFullName": ["Ana Cruz", "Bo Lee", "Cy Ray", "Di Moe"],
            "gender": ["Female", "Male", "Femme", "Female"],
            "ageBroad": ["18--20", "30", "9--17", ""],
            "citizenship": ["PH", "NA", "VNM", "TH"],
            "contact": ["+63 917 555 0199", "", "+66 81 234 5678", ""],
        },
        dtype="string",
    )
    path = tmp_path / "flawed.csv"
    frame.to_csv(path, index=False)
    return path


def test_validate_reports_rejected_rows_and_flagged_columns(flawed: Path) -> None:
    frame = _read(flawed)  # with case pseudonyms, so only the flaws below are reported
    frame["caseNo"] = [pseudonymise(case, KEY) for case in frame["caseNo"]]
    frame.to_csv(flawed, index=False)
    result = _run("validate", str(flawed))
    assert result.exit_code == 1
    assert "flagged column victimFullName: name" in result.output
    assert "flagged column contact: phone in 2 row(s)" in result.output
    assert "rows: 4 total, 3 accepted, 1 rejected" in result.output
    assert "row 3, field gender" in result.output
    # The report never echoes the partner's values.
    assert "Femme" not in result.output and "Ana Cruz" not in result.output


def test_prepare_drops_identifiers_and_refuses_rejected_rows(flawed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    result = _run("prepare", str(flawed), "-o", str(out), "--pseudonym-key-env", KEY_ENV, key=True)
    assert result.exit_code == 1
    assert "dropped column victimFullName: direct identifier (name)" in result.output
    assert "dropped column contact: direct identifier (phone)" in result.output
    assert "1 of 4 row(s) would be rejected" in result.output
    assert not out.exists()

    result = _run(
        "prepare",
        str(flawed),
        "-o",
        str(out),
        "--pseudonym-key-env",
        KEY_ENV,
        "--accept-valid",
        key=True,
    )
    assert result.exit_code == 0, result.output
    prepared = _read(out)
    assert "victimFullName" not in prepared.columns and "contact" not in prepared.columns
    assert prepared["caseNo"].tolist() == [pseudonymise(c, KEY) for c in ("1", "2", "4")]
    # Normalised on the way: an exact age becomes its band, alpha-3 becomes alpha-2.
    assert prepared["ageBroad"].tolist() == ["18--20", "30--38", ""]
    assert prepared["citizenship"].tolist() == ["PH", "NA", "TH"]


def test_missing_or_short_key_is_one_clear_line(flawed: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "out.csv")
    result = _run("prepare", str(flawed), "-o", out, "--pseudonym-key-env", KEY_ENV)
    assert result.exit_code == 2
    assert (
        result.output.strip()
        .splitlines()[-1]
        .startswith(f"error: the environment variable {KEY_ENV}")
    )
    result = _run(
        "prepare", str(flawed), "-o", out, "--pseudonym-key-env", KEY_ENV, **{KEY_ENV: "short"}
    )
    assert result.exit_code == 2
    assert "at least 32 bytes" in result.output
    assert "Traceback" not in result.output


def test_unreadable_file_is_one_clear_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"caseNo,gender\n1,Female,extra\n")
    result = _run("validate", str(broken))
    assert result.exit_code == 2
    assert result.output.startswith("error: CSV line 2 has 3 fields")
    assert len(result.output.strip().splitlines()) == 1


def test_prepare_htcds_export(tmp_path: Path) -> None:
    export = tmp_path / "htcds.csv"
    frame = fake_export(rows=60, seed=5)
    frame.to_csv(export, index=False)
    consented = int(
        ((frame["con_DataForResearch"] == "true") & (frame["con_UseOfData"] == "true")).sum()
    )
    out = tmp_path / "out.csv"
    result = _run(
        "prepare", str(export), "-o", str(out), "--htcds", "--pseudonym-key-env", KEY_ENV, key=True
    )
    assert result.exit_code == 0, result.output
    assert "dropped column prs_FirstName: direct identifier" in result.output
    assert "dropped column org_Type: HTCDS field the hub does not collect" in result.output
    prepared = _read(out)
    # Records without consent to research use stay on the partner's machine (test_consent.py).
    assert 0 < len(prepared) == consented < 60
    assert all(is_pseudonym(value) for value in prepared["caseNo"])
    assert not prepared.apply(lambda column: column.str.contains(CANARY)).any().any()
    assert validate_records(prepared).report.ok

    # Validation of the export needs no key: nothing is written.
    result = _run("validate", str(export), "--htcds")
    assert result.exit_code == 0, result.output


def test_upload_needs_the_client_secret_and_https(flawed: Path) -> None:
    result = _run("upload", str(flawed), "--hub", "https://hub.example.org", "--client-id", "p")
    assert result.exit_code == 2
    assert "CTDC_PARTNER_CLIENT_SECRET" in result.output
    result = _run(
        "upload",
        str(flawed),
        "--hub",
        "http://hub.example.org",
        "--client-id",
        "p",
        CTDC_PARTNER_CLIENT_SECRET="s",
    )
    assert result.exit_code == 2
    assert "use https" in result.output


def test_upload_refuses_a_file_that_would_be_rejected(flawed: Path) -> None:
    # Port 9 on loopback: nothing must be sent, so it does not matter that nothing listens.
    result = _run(
        "upload",
        str(flawed),
        "--hub",
        "http://127.0.0.1:9",
        "--client-id",
        "p",
        "--pseudonym-key-env",
        KEY_ENV,
        key=True,
        CTDC_PARTNER_CLIENT_SECRET="s",
    )
    assert result.exit_code == 1
    assert "1 of 4 row(s) would be rejected" in result.output


def test_help_documents_exit_codes() -> None:
    result = _run("upload", "--help")
    assert result.exit_code == 0
    assert "Exit codes: 0 success; 1 rows would be rejected" in " ".join(result.output.split())


def test_missing_case_id_rejects_its_row_only(tmp_path: Path) -> None:
    source = tmp_path / "cases.csv"
    source.write_text("caseNo,gender\nA-1,Female\n,Male\nNULL,Male\nA-4,Female\n")
    out = tmp_path / "out.csv"
    args = ["prepare", str(source), "-o", str(out), "--pseudonym-key-env", KEY_ENV]
    result = _run(*args, key=True)
    assert result.exit_code == 1
    assert "row 2, field caseNo" in result.output and "row 3, field caseNo" in result.output
    result = _run(*args, "--accept-valid", key=True)
    assert result.exit_code == 0, result.output
    assert _read(out)["caseNo"].tolist() == [pseudonymise(c, KEY) for c in ("A-1", "A-4")]
