"""The budget settings: exact decimals, checked at start."""

from __future__ import annotations

from fractions import Fraction

import pytest

from hub.services.ledger import BudgetPolicy
from hub.settings import SettingsError, load_settings


def test_defaults_give_an_exact_policy() -> None:
    policy = BudgetPolicy.from_settings(load_settings(environ={}))
    assert policy.dataset_rho == Fraction(1) and policy.researcher_rho == Fraction(1, 4)
    assert policy.researcher_rho <= policy.dataset_rho
    assert policy.researcher_delta <= policy.dataset_delta


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"DP_DATASET_RHO_CAP": "lots"}, "DP_DATASET_RHO_CAP must be a decimal number"),
        ({"DP_RESEARCHER_RHO_ALLOWANCE": "0"}, "must be greater than 0"),
        ({"DP_RESEARCHER_RHO_ALLOWANCE": "2"}, "must not exceed DP_DATASET_RHO_CAP"),
        ({"DP_RESEARCHER_DELTA_ALLOWANCE": "1e-3"}, "must not exceed DP_DATASET_DELTA_CAP"),
        ({"DP_DISPLAY_DELTA": "1.5"}, "must be below 1"),
    ],
)
def test_bad_budget_settings_are_refused_at_start(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(overrides, environ={})


def test_a_budget_setting_comes_from_the_environment() -> None:
    settings = load_settings(environ={"CTDHUB_DP_DATASET_RHO_CAP": "0.5"})
    assert BudgetPolicy.from_settings(settings).dataset_rho == Fraction(1, 2)
