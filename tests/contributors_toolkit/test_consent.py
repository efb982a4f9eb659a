"""Consent to research use (issue 16): a record without it never leaves the partner's machine.

The exports are HTCDS-shaped, made here from the standard itself (``htcds_export``), with the
consent checkboxes set row by row.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from contributors.cli import cli, prepare_upload
from contributors.consent import CONSENT_FIELDS
from contributors.htcds import CASE_ID_FIELD, HtcdsMappingError, map_htcds
from contributors.pseudonym import pseudonymise

from .htcds_export import CANARY, fake_export

KEY = b"partner-secret-key-of-32-bytes!!"
KEY_ENV = "TEST_PARTNER_PSEUDONYM_KEY"

#: (con_DataForResearch, con_UseOfData) per row, and the verdict each must give.
ANSWERS = [
    ("true", "true", "consent_given"),
    ("TRUE", "1", "consent_given"),
    ("yes", "true", "consent_given"),
    ("true", "true", "consent_given"),
    ("false", "true", "consent_not_given"),
    ("true", "false", "consent_not_given"),
    ("0", "", "consent_not_given"),  # one "no" is a no, whatever the other says
    ("", "true", "consent_not_recorded"),
    ("true", "", "consent_not_recorded"),
    ("", "", "consent_not_recorded"),
]
GIVEN = [row for row, (_, _, verdict) in enumerate(ANSWERS) if verdict == "consent_given"]


def _export() -> pd.DataFrame:
    export = fake_export(rows=len(ANSWERS), seed=16)
    export["con_DataForResearch"] = pd.array([a for a, _, _ in ANSWERS], dtype="string")
    export["con_UseOfData"] = pd.array([b for _, b, _ in ANSWERS], dtype="string")
    return export


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode("utf-8")


def test_the_consent_checkboxes_give_each_record_its_verdict() -> None:
    mapping = map_htcds(_export(), pseudonym_key=KEY)
    assert list(mapping.consent) == [verdict for _, _, verdict in ANSWERS]
    # The checkboxes are read, never sent.
    assert not set(CONSENT_FIELDS) & set(mapping.records.columns)
    assert set(CONSENT_FIELDS) <= set(mapping.not_in_schema_dropped)


def test_an_unreadable_checkbox_is_named_by_row_and_field_without_its_value() -> None:
    export = _export()
    export.loc[2, "con_UseOfData"] = f"{CANARY} perhaps"
    with pytest.raises(HtcdsMappingError) as caught:
        map_htcds(export, pseudonym_key=KEY)
    assert "row 3, field con_UseOfData: not a checkbox value" in str(caught.value)
    assert CANARY not in str(caught.value)


def test_records_without_consent_stay_here_and_are_counted_by_reason() -> None:
    export = _export()
    prepared = prepare_upload(_csv(export), filename="export.csv", htcds=True, pseudonym_key=KEY)
    assert prepared.held_back == (("consent_not_given", 3), ("consent_not_recorded", 3))
    kept = [pseudonymise(export.loc[row, CASE_ID_FIELD], KEY) for row in GIVEN]
    assert prepared.result.records["caseNo"].tolist() == kept
    sent = prepared.to_csv().decode()
    for row in set(range(len(ANSWERS))) - set(GIVEN):
        assert pseudonymise(export.loc[row, CASE_ID_FIELD], KEY) not in sent
    assert prepared.local_rejections() == {
        "file_rows_total": len(ANSWERS),
        "rows_rejected": len(ANSWERS) - len(GIVEN),
        "error_count": 0,
        "reasons": [],
        "held_back": [
            {"reason": "consent_not_given", "rows": 3},
            {"reason": "consent_not_recorded", "rows": 3},
        ],
    }


def test_rows_kept_are_still_named_by_their_row_in_the_export() -> None:
    export = _export()
    # A registration year the schema does not accept, on the last consented row (row 4).
    export.loc[GIVEN[-1], "cas_CreatedDate"] = "1890-05-05"
    export.loc[GIVEN[-1], "prs_Birthdate"] = ""
    prepared = prepare_upload(_csv(export), filename="export.csv", htcds=True, pseudonym_key=KEY)
    errors = prepared.report.as_dict()["errors"]
    assert errors and {error["row"] for error in errors} == {GIVEN[-1] + 1}
    account = prepared.local_rejections()
    assert account is not None
    assert account["rows_rejected"] == len(ANSWERS) - len(GIVEN) + 1
    assert account["file_rows_total"] - account["rows_rejected"] == prepared.report.rows_accepted


def test_an_export_without_consent_fields_sends_nothing_by_default() -> None:
    export = _export().drop(columns=list(CONSENT_FIELDS))
    prepared = prepare_upload(_csv(export), filename="export.csv", htcds=True, pseudonym_key=KEY)
    assert prepared.held_back == (("consent_not_recorded", len(ANSWERS)),)
    assert prepared.report.rows_total == 0


def test_another_lawful_basis_sends_every_record() -> None:
    prepared = prepare_upload(
        _csv(_export()),
        filename="export.csv",
        htcds=True,
        pseudonym_key=KEY,
        lawful_basis="public_task",
    )
    assert prepared.held_back == ()
    assert prepared.report.rows_accepted == len(ANSWERS)
    assert prepared.local_rejections() is None
    assert prepared.lawful_basis == "public_task"


def test_the_command_line_says_what_was_held_back_and_refuses_an_unknown_basis(
    tmp_path: Path,
) -> None:
    export = tmp_path / "export.csv"
    export.write_bytes(_csv(_export()))
    out = tmp_path / "ready.csv"
    runner = CliRunner()
    env = {KEY_ENV: KEY.decode()}
    args = ["prepare", str(export), "--htcds", "-o", str(out), "--pseudonym-key-env", KEY_ENV]
    result = runner.invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    assert "held back on this machine: 3 record(s), consent_not_given (not sent)" in result.output
    assert "held back on this machine: 3 record(s), consent_not_recorded (not sent)" in (
        result.output
    )
    written = pd.read_csv(io.StringIO(out.read_text()), dtype="string", keep_default_na=False)
    assert len(written) == len(GIVEN)

    result = runner.invoke(cli, [*args, "--lawful-basis", "because-we-can"], env=env)
    assert result.exit_code == 2
    assert "legitimate_interests" in result.output
