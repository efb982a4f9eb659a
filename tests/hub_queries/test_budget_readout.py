"""Budgets read as exact decimals, and every spend shows in what is left (issue 12, item 13)."""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from disclosure_control.dp import PrivacySpend
from hub.cli import main
from hub.services import ledger

ALLOWANCE_RHO, DISPLAY_DELTA = Fraction("0.25"), Fraction("1e-6")


def _no_float_artefacts(document: Any) -> None:
    """Every number reads as the shortest decimal of its exact amount (no 0.99999...)."""
    text = json.dumps(document)
    assert "9999999" not in text and "0000001e" not in text, text


def test_the_budget_reads_in_exact_decimals(client: FlaskClient, researcher: Any) -> None:
    budget = client.get("/v1/budget", headers=researcher.headers).get_json()
    allowance = budget["researcher"]["allowance"]
    # Was 1.0099999999999999e-06 (float addition) and 9.999999999999999e-09 left (a floor).
    assert allowance["delta"] == 1.01e-06 and allowance["delta_exact"] == "0.00000101"
    remaining = budget["researcher"]["remaining"]
    assert remaining["key_selection_delta"] == 1e-08
    assert remaining["key_selection_delta_exact"] == "0.00000001"
    assert remaining["rho_exact"] == "0.25"
    _no_float_artefacts(budget)


def test_a_charge_reads_exactly_in_spent_and_remaining(
    client: FlaskClient, researcher: Any, accepted_records: int
) -> None:
    spec = {"measure": {"kind": "count"}, "group_by": ["gender"], "spend": {"rho": 0.01}}
    answer = client.post("/v1/queries", json=spec, headers=researcher.headers).get_json()
    assert answer["spend"]["rho_exact"] == ledger.decimal_text(Fraction(0.01))
    assert answer["spend"]["delta_exact"] == "0.000001"
    budget = client.get("/v1/budget", headers=researcher.headers).get_json()["researcher"]
    assert Fraction(budget["spent"]["rho_exact"]) == Fraction(0.01)
    assert Fraction(budget["remaining"]["rho_exact"]) == ALLOWANCE_RHO - Fraction(0.01)
    assert budget["spent"]["rho"] == 0.01 and budget["remaining"]["rho"] == 0.24


def test_the_dataset_remaining_delta_changes_with_every_spend(
    app: APIFlask, db_session: Session
) -> None:
    """Even a key-selection delta far below a double's resolution of the total is seen."""
    policy = ledger.BudgetPolicy.from_settings(app.config)
    before = ledger.dataset_balance(db_session, policy).as_json(policy.display_delta)
    tiny = 2.0**-80  # 8e-25: 1.1e-6 - tiny == 1.1e-6 in doubles
    assert float(DISPLAY_DELTA) + (float(policy.dataset_delta) - tiny) == 1.1e-06
    ledger.lock_dataset(db_session)
    ledger.charge(db_session, None, PrivacySpend(0.01, tiny))
    db_session.commit()
    after = ledger.dataset_balance(db_session, policy).as_json(policy.display_delta)
    drop = Fraction(before["remaining"]["delta_exact"]) - Fraction(
        after["remaining"]["delta_exact"]
    )
    assert drop == Fraction(tiny)
    assert Fraction(after["spent"]["key_selection_delta_exact"]) == Fraction(tiny)
    assert after["remaining"]["delta_exact"] != before["remaining"]["delta_exact"]


def test_the_command_line_shows_the_dataset_ledger_exactly(
    app: APIFlask, db_session: Session
) -> None:
    ledger.lock_dataset(db_session)
    ledger.charge(db_session, None, PrivacySpend(0.1, 0.0))
    db_session.commit()
    result = app.test_cli_runner().invoke(main, ["budget"])
    assert result.exit_code == 0, result.output
    assert "1 charge(s)" in result.output
    assert f"spent      rho {ledger.decimal_text(Fraction(0.1))} " in result.output
    assert "allowance  rho 1 " in result.output and "at delta 0.0000011)" in result.output
    assert f"remaining  rho {ledger.decimal_text(1 - Fraction(0.1))} " in result.output
