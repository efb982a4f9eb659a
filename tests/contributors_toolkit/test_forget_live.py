"""``ctdhub-contribute upload --htcds`` holds back records without consent, and ``forget``
removes one case, against a real hub on a loopback port (``live_hub``; issue 16)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner

from contributors.cli import cli
from contributors.client import HubClient
from contributors.htcds import CASE_ID_FIELD

from .test_consent import ANSWERS, GIVEN, KEY, _csv, _export


def test_upload_with_consent_then_forget_one_case(live_hub: Any, tmp_path: Path) -> None:
    export = _export()
    path = tmp_path / "export.csv"
    path.write_bytes(_csv(export))
    env = {"CTDC_PARTNER_CLIENT_SECRET": live_hub.client_secret, "LIVE_KEY": KEY.decode()}
    hub = ["--hub", live_hub.url, "--client-id", live_hub.client_id]
    key = ["--pseudonym-key-env", "LIVE_KEY"]
    result = CliRunner().invoke(cli, ["upload", str(path), "--htcds", *key, *hub], env=env)
    assert result.exit_code == 0, result.output
    held = len(ANSWERS) - len(GIVEN)
    assert f"held back for want of consent to research use: {held} record(s)" in result.output
    assert "lawful basis: consent" in result.output

    case = str(export.loc[GIVEN[0], CASE_ID_FIELD])
    forget = ["forget", case, *key, *hub]
    result = CliRunner().invoke(cli, forget, env=env)
    assert result.exit_code == 0, result.output
    assert "forgotten: 1 record(s) removed from 1 upload(s)" in result.output
    result = CliRunner().invoke(cli, forget, env=env)
    assert result.exit_code == 0 and "forgotten before" in result.output

    with HubClient(live_hub.url, live_hub.client_id, live_hub.client_secret) as client:
        (receipt,) = client.list_uploads()
    assert (receipt.rows_accepted, receipt.rows_forgotten) == (len(GIVEN), 1)
    assert receipt.rows_held_back == held

    # A case held back never reached the hub: there is nothing to forget (exit 3, the 404).
    never_sent = str(export.loc[len(ANSWERS) - 1, CASE_ID_FIELD])
    result = CliRunner().invoke(cli, ["forget", never_sent, *key, *hub], env=env)
    assert result.exit_code == 3, result.output
    assert never_sent not in result.output
