"""Accounting: rho <-> (epsilon, delta), composition, and the exact cap check."""

from __future__ import annotations

import math

import pytest

from disclosure_control.dp import (
    AccountingError,
    PrivacySpend,
    check_charge,
    compose,
    epsilon_delta_to_rho,
    rho_to_epsilon,
    to_epsilon_delta,
)


@pytest.mark.parametrize("rho", [1e-4, 0.01, 0.1, 0.5, 2.0])
@pytest.mark.parametrize("delta", [1e-9, 1e-6, 1e-3])
def test_conversion_lies_between_the_known_bounds(rho: float, delta: float) -> None:
    epsilon = rho_to_epsilon(rho, delta)
    # Lower bound: rho-zCDP implies no epsilon below rho itself at any delta < 1 worth having;
    # upper bound: Bun and Steinke's rho + 2 sqrt(rho ln(1/delta)), which OpenDP improves on.
    assert rho <= epsilon <= rho + 2 * math.sqrt(rho * math.log(1 / delta))


def test_conversion_is_monotone_in_rho_and_delta() -> None:
    assert rho_to_epsilon(0.1, 1e-6) < rho_to_epsilon(0.2, 1e-6)
    assert rho_to_epsilon(0.1, 1e-6) > rho_to_epsilon(0.1, 1e-3)


@pytest.mark.parametrize("epsilon", [0.1, 1.0, 3.0])
def test_epsilon_to_rho_is_the_largest_rho_within_epsilon(epsilon: float) -> None:
    rho = epsilon_delta_to_rho(epsilon, 1e-6)
    assert rho_to_epsilon(rho, 1e-6) <= epsilon
    assert rho_to_epsilon(rho * (1 + 1e-6), 1e-6) > epsilon


def test_epsilon_delta_adds_key_selection_delta() -> None:
    epsilon, delta = to_epsilon_delta(PrivacySpend(0.1, 2e-9), 1e-6)
    assert epsilon == rho_to_epsilon(0.1, 1e-6)
    assert delta == pytest.approx(1e-6 + 2e-9, rel=1e-12)


@pytest.mark.parametrize(
    ("rho", "delta"), [(-0.1, 1e-6), (math.nan, 1e-6), (0.1, 0.0), (0.1, 1.0), (math.inf, 1e-6)]
)
def test_conversion_refuses_parameters_out_of_range(rho: float, delta: float) -> None:
    with pytest.raises(AccountingError):
        rho_to_epsilon(rho, delta)


def test_spend_refuses_negative_parts() -> None:
    with pytest.raises(AccountingError, match="rho"):
        PrivacySpend(-1e-12)
    with pytest.raises(AccountingError, match="delta"):
        PrivacySpend(0.1, -1e-12)


def test_composition_adds_and_never_rounds_down() -> None:
    spends = [PrivacySpend(0.1)] * 10
    total = compose(spends)
    assert total.rho >= 1.0  # naive float addition of ten 0.1s gives 0.9999999999999999
    assert total.rho == pytest.approx(1.0, rel=1e-15)
    assert compose([PrivacySpend(0.2, 1e-9), PrivacySpend(0.3, 2e-9)]).delta == pytest.approx(
        3e-9, rel=1e-15
    )


def test_charge_exactly_at_the_cap_fits() -> None:
    check = check_charge(PrivacySpend(0.5), PrivacySpend(0.5), PrivacySpend(1.0))
    assert check.fits
    assert check.remaining_after == PrivacySpend(0.0)


def test_charge_one_ulp_over_the_cap_is_refused() -> None:
    over = math.nextafter(0.5, 1.0)
    check = check_charge(PrivacySpend(over), PrivacySpend(0.5), PrivacySpend(1.0))
    assert not check.fits
    assert check.remaining == PrivacySpend(0.5)
    assert check.remaining_after is None


def test_charge_over_the_delta_cap_is_refused() -> None:
    check = check_charge(PrivacySpend(0.01, 2e-9), PrivacySpend(0.0, 9e-9), PrivacySpend(1, 1e-8))
    assert not check.fits


def test_an_overspent_ledger_has_nothing_left() -> None:
    check = check_charge(PrivacySpend(0.0), PrivacySpend(1.5), PrivacySpend(1.0))
    assert check.remaining == PrivacySpend(0.0)
    assert not check.fits  # not even a zero charge: the ledger is already in breach
