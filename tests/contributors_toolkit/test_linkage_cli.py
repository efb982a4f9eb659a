"""The toolkit's linkage encodings: made on the partner's machine under the shared secret.

With a linkage secret (a file, or the environment variable), ``prepare`` and ``upload`` add one
keyed encoding per record of the person's HTCDS fields and drop those fields; without one,
nothing changes. A file made by ``prepare`` carries its encodings on.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from apiflask import APIFlask
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from contributors.cli import LINKAGE_SECRET_ENV, cli
from contributors.htcds import map_htcds
from contributors.linkage import BITS, ENCODING_COLUMN, Person, encode
from contributors.pseudonym import pseudonymise
from hub.crypto import keyring
from hub.models import RecordBatch, Upload
from hub.services.uploads import open_record_batch

from .htcds_export import CANARY, fake_export
from .test_cli import KEY, KEY_ENV, _read, _run

SECRET = "linkage-secret-shared-by-partners-0001"


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    frame = fake_export(rows=40, seed=9)
    path = tmp_path_factory.mktemp("htcds") / "htcds.csv"
    frame.to_csv(path, index=False)
    return path, frame


def _expected(frame: pd.DataFrame, case: str) -> str:
    """Encode one case of the export the way the toolkit must: names, birth date, codes."""
    row = frame.index[frame["cas_CaseNumber"] == case][0]
    mapped = map_htcds(frame, pseudonym_key=KEY).records.iloc[row]
    person = Person(
        given_name=f"{frame.at[row, 'prs_FirstName']} {frame.at[row, 'prs_MiddleName']}",
        family_name=frame.at[row, "prs_SecondName"],
        birth_date=frame.at[row, "prs_Birthdate"],
        sex=None if pd.isna(mapped["gender"]) or not mapped["gender"] else mapped["gender"],
        nationality=mapped["citizenship"] or None,
    )
    return base64.b64encode(encode(person, SECRET)).decode()


def test_prepare_with_a_secret_adds_one_encoding_per_record(
    export: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    path, frame = export
    out = tmp_path / "out.csv"
    result = _run(
        "prepare", str(path), "-o", str(out), "--htcds", "--pseudonym-key-env", KEY_ENV,
        key=True, **{LINKAGE_SECRET_ENV: SECRET},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    prepared = _read(out)
    assert f"linkage encodings: {len(prepared)} of {len(prepared)} record(s)" in result.output
    assert not prepared.apply(lambda column: column.str.contains(CANARY)).any().any()
    cells = prepared[ENCODING_COLUMN].tolist()
    assert all(len(base64.b64decode(cell)) == BITS // 8 for cell in cells)
    assert len(set(cells)) == len(cells)
    # Each encoding is its own record's person (the rows held back for consent are skipped).
    compared = 0
    for case in frame["cas_CaseNumber"]:
        sent = prepared.loc[prepared["caseNo"] == pseudonymise(case, KEY), ENCODING_COLUMN]
        if len(sent):
            assert sent.iloc[0] == _expected(frame, case)
            compared += 1
    assert compared == len(prepared) > 0

    # The secret from a file gives the same encodings; a file's final line break is not in it.
    secret_file = tmp_path / "linkage.secret"
    secret_file.write_text(SECRET + "\n")
    again = tmp_path / "again.csv"
    result = _run(
        "prepare", str(path), "-o", str(again), "--htcds", "--pseudonym-key-env", KEY_ENV,
        "--linkage-secret-file", str(secret_file), key=True,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _read(again)[ENCODING_COLUMN].tolist() == cells

    # A prepared file carries its encodings on, without the secret, and with the secret still
    # exported from the prepare step (it is not used again: nothing is encoded twice).
    for secret in ({}, {LINKAGE_SECRET_ENV: SECRET}):
        carried = tmp_path / "carried.csv"
        result = _run("prepare", str(out), "-o", str(carried), **secret)
        assert result.exit_code == 0, result.output
        assert _read(carried)[ENCODING_COLUMN].tolist() == cells
        carried.unlink()


def test_without_a_secret_nothing_changes(
    export: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    path, _ = export
    out = tmp_path / "out.csv"
    result = _run(
        "prepare", str(path), "-o", str(out), "--htcds", "--pseudonym-key-env", KEY_ENV, key=True
    )
    assert result.exit_code == 0, result.output
    assert ENCODING_COLUMN not in _read(out).columns
    assert "linkage encodings" not in result.output


def _table(tmp_path: Path, birth: str = "1990-05-17") -> Path:
    path = tmp_path / "cases.csv"
    pd.DataFrame(
        {
            "caseNo": ["case-1", "case-2"],
            "yearOfRegistration": ["2019", "2020"],
            "gender": ["Female", "Male"],
            "citizenship": ["BR", "PT"],
            "prs_FirstName": ["Maria", "Joao"],
            "prs_SecondName": ["Silva", "Souza"],
            "prs_Birthdate": [birth, "1971"],
        }
    ).to_csv(path, index=False)
    return path


def test_a_hub_schema_table_gives_person_fields_by_their_htcds_names(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    result = _run(
        "prepare", str(_table(tmp_path)), "-o", str(out), "--pseudonym-key-env", KEY_ENV,
        key=True, **{LINKAGE_SECRET_ENV: SECRET},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "dropped column prs_FirstName: person field: encoded for linkage here" in result.output
    prepared = _read(out)
    assert not {"prs_FirstName", "prs_SecondName", "prs_Birthdate"} & set(prepared.columns)
    maria = Person("Maria", "Silva", "1990-05-17", "Female", "BR")
    assert prepared[ENCODING_COLUMN].iloc[0] == base64.b64encode(encode(maria, SECRET)).decode()


def test_a_bad_birth_date_or_a_short_secret_is_one_clear_line(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    result = _run(
        "prepare", str(_table(tmp_path, birth="17/05/90")), "-o", str(out),
        "--pseudonym-key-env", KEY_ENV, key=True, **{LINKAGE_SECRET_ENV: SECRET},
    )  # fmt: skip
    assert result.exit_code == 2
    assert "row 1, field birth date" in result.output
    assert "17/05" not in result.output
    assert not out.exists()
    result = _run(
        "prepare", str(_table(tmp_path)), "-o", str(out), "--pseudonym-key-env", KEY_ENV,
        key=True, **{LINKAGE_SECRET_ENV: "short"},
    )  # fmt: skip
    assert result.exit_code == 2
    assert "at least 32 bytes" in result.output


def test_upload_sends_the_encodings_to_a_real_hub(
    live_hub: Any, app: APIFlask, db_session: Session, tmp_path: Path
) -> None:
    frame = fake_export(rows=30, seed=12)
    path = tmp_path / "htcds.csv"
    frame.to_csv(path, index=False)
    secret_file = tmp_path / "linkage.secret"
    secret_file.write_text(SECRET)
    env = {"CTDC_PARTNER_CLIENT_SECRET": live_hub.client_secret, KEY_ENV: KEY}
    args = ["upload", str(path), "--htcds", "--pseudonym-key-env", KEY_ENV]
    args += ["--linkage-secret-file", str(secret_file)]
    args += ["--hub", live_hub.url, "--client-id", live_hub.client_id]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    assert "linkage encodings:" in result.output

    db_session.expire_all()
    upload = db_session.scalars(select(Upload)).one()
    batch = db_session.scalars(select(RecordBatch)).one()
    sealed = open_record_batch(keyring(app), batch, upload.organisation_id)
    assert len(sealed) == upload.rows_accepted > 0
    expected = {pseudonymise(case, KEY): _expected(frame, case) for case in frame["cas_CaseNumber"]}
    for case, encoding in zip(sealed["caseNo"], sealed[ENCODING_COLUMN], strict=True):
        assert base64.b64encode(encoding).decode() == expected[case]
