"""The client and the upload command against a real hub on a loopback port (``live_hub``)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from contributors.cli import cli, prepare_upload
from contributors.client import CSV, HubClient, HubError
from contributors.pseudonym import pseudonymise

KEY = b"live-test-partner-key-0123456789abcdef"


def _records(rows: int, *, bad_row: int | None = None) -> bytes:
    """A small hub-ready CSV: pseudonymised case ids and valid codes (one bad code if asked)."""
    genders = ["Female", "Male", "Transgender/NonConforming"]
    frame = pd.DataFrame(
        {
            "caseNo": [pseudonymise(f"LIVE-{n}", KEY) for n in range(rows)],
            "yearOfRegistration": [str(2015 + n % 6) for n in range(rows)],
            "Datasource": ["Case Management"] * rows,
            "gender": [genders[n % 3] for n in range(rows)],
            "ageBroad": ["18--20"] * rows,
            "citizenship": ["PH"] * rows,
            "isForcedLabour": ["1"] * rows,
        },
        dtype="string",
    )
    if bad_row is not None:
        frame.loc[bad_row, "gender"] = "unknown-code"
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode()


def _client(live_hub: Any, **options: Any) -> HubClient:
    return HubClient(live_hub.url, live_hub.client_id, live_hub.client_secret, **options)


def test_upload_replay_get_list_withdraw(live_hub: Any) -> None:
    with _client(live_hub) as client:
        _upload_replay_get_list_withdraw(client)


def _upload_replay_get_list_withdraw(client: HubClient) -> None:
    body = _records(12)
    first = client.upload(body, media_type=CSV, filename="cases.csv", idempotency_key="live-1")
    assert not first.replayed
    assert first.sha256 == hashlib.sha256(body).hexdigest()
    assert (first.rows_total, first.rows_accepted, first.rows_rejected) == (12, 12, 0)

    again = client.upload(body, media_type=CSV, idempotency_key="live-1")
    assert again.replayed and again.id == first.id

    assert client.get_upload(first.id).id == first.id
    assert first.id in {receipt.id for receipt in client.list_uploads()}
    withdrawn = client.withdraw(first.id)
    assert withdrawn is not None and withdrawn.status == "withdrawn"


def test_rejected_rows_give_a_422_report_unless_accept_valid(live_hub: Any) -> None:
    with _client(live_hub) as client:
        _rejected_rows(client)


def _rejected_rows(client: HubClient) -> None:
    body = _records(6, bad_row=2)
    with pytest.raises(HubError) as caught:
        client.upload(body, media_type=CSV)
    error = caught.value
    assert error.status == 422
    assert error.report is not None and error.report["rows_rejected"] == 1
    assert {e["row"] for e in error.report["errors"]} == {3}

    receipt = client.upload(body, media_type=CSV, accept_valid=True)
    assert (receipt.rows_accepted, receipt.rows_rejected) == (5, 1)


def test_wrong_secret_is_refused(live_hub: Any) -> None:
    with (
        HubClient(live_hub.url, live_hub.client_id, "not-the-secret", retries=0) as client,
        pytest.raises(HubError) as caught,
    ):
        client.list_uploads()
    assert caught.value.status in (400, 401)


@pytest.mark.slow
def test_cli_upload_of_the_ctdc_sample(live_hub: Any, ctdc_file: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(ctdc_file, dtype="string", keep_default_na=False).iloc[::500]
    source = tmp_path / "sample.csv"
    frame.to_csv(source, index=False)
    env = {"CTDC_PARTNER_CLIENT_SECRET": live_hub.client_secret, "LIVE_KEY": KEY.decode()}
    args = [
        "upload",
        str(source),
        "--hub",
        live_hub.url,
        "--client-id",
        live_hub.client_id,
        "--pseudonym-key-env",
        "LIVE_KEY",
        "--idempotency-key",
        "cli-live-1",
    ]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    assert "rows: 196 total, 196 accepted, 0 rejected" in result.output
    prepared = prepare_upload(
        source.read_bytes(), filename=source.name, htcds=False, pseudonym_key=KEY
    )
    digest = hashlib.sha256(prepared.to_csv()).hexdigest()
    assert f"sha256: {digest}" in result.output

    # The same command again is a replay of the same upload, not a second one.
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    assert "already received before" in result.output

    env["CTDC_PARTNER_CLIENT_SECRET"] = "wrong"
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 3
    assert result.output.strip().splitlines()[-1].startswith("error: the hub refused")


def test_cli_lists_and_withdraws(live_hub: Any) -> None:
    with _client(live_hub) as client:
        receipt = client.upload(_records(3), media_type=CSV)
    env = {"CTDC_PARTNER_CLIENT_SECRET": live_hub.client_secret}
    hub = ["--hub", live_hub.url, "--client-id", live_hub.client_id]
    listed = CliRunner().invoke(cli, ["uploads", *hub], env=env)
    assert listed.exit_code == 0, listed.output
    assert receipt.id in listed.output and "3/3 rows accepted" in listed.output
    withdrawn = CliRunner().invoke(cli, ["withdraw", receipt.id, *hub], env=env)
    assert withdrawn.exit_code == 0, withdrawn.output
    assert f"upload {receipt.id}: withdrawn" in withdrawn.output
    missing = CliRunner().invoke(cli, ["withdraw", "no-such-upload", *hub], env=env)
    assert missing.exit_code == 3
    assert missing.output.startswith("error: the hub refused: 404")
