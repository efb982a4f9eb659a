"""Issue 11 item 8: logging is configured at start, in JSON lines, and shows security events.

Before, the ``ctdhub`` logger had no handler: failed logins and refusals left no line at all.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient

from hub.logs import JsonLines
from tests.conftest import Partner
from tests.hub_uploads.test_uploads_api import post, sample_csv


def _lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_the_hub_logger_has_a_json_lines_handler_from_the_start(app: APIFlask) -> None:
    handlers = logging.getLogger("ctdhub").handlers
    assert any(isinstance(handler.formatter, JsonLines) for handler in handlers)


def test_security_events_are_logged_as_json_lines_without_record_values(
    app: APIFlask,
    client: FlaskClient,
    partner_a: Partner,
    ctdc_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    capsys.readouterr()
    secret_guess = "guess-Amaranta-Buendia"
    client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(partner_a.client_id, secret_guess),
    )
    # A body refused whole: its cells name people, which must never reach a log line.
    body = sample_csv(ctdc_file, step=2000).replace(b"\n", b",Amaranta Buendia\n", 1)
    refused = post(client, partner_a.headers, body)
    assert refused.status_code == 422
    app.config["TOKEN_RATE_LIMIT_PER_ADDRESS"] = "1 per minute"
    for _ in range(2):
        client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=("x", "y"))

    text = capsys.readouterr().err
    lines = _lines(text)  # every line is one JSON object
    messages = [str(line["message"]) for line in lines]
    assert any("authentication refused (wrong_secret)" in m for m in messages)
    assert any("rate limit" in m for m in messages)
    assert all(line["request_id"] for line in lines if line["logger"] != "ctdhub.audit")
    assert "Amaranta" not in text and secret_guess not in text
