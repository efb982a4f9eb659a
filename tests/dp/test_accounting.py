"""Accounting: rho <-> (epsilon, delta), composition, and the exact cap check."""

from __future__ import annotations

import math

import opendp.prelude as dp
import pytest

from disclosure_control.dp import (
    AccountingError,
    ItemisedSpend,
    PrivacySpend,
    check_charge,
    compose,
    epsilon_delta_to_rho,
    rho_to_epsilon,
    to_epsilon_delta,
)
from disclosure_control.dp.calibrate import CalibrationError, scale_for_loss


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


def test_itemised_spend_states_epsilon_by_the_one_conversion() -> None:
    run = ItemisedSpend(PrivacySpend(0.3, 1e-9), 1e-6, (("a", PrivacySpend(0.1)),) * 3)
    assert (run.epsilon, run.delta) == to_epsilon_delta(PrivacySpend(0.3, 1e-9), 1e-6)
    assert run.to_dict() == {
        "rho": 0.3,
        "epsilon": rho_to_epsilon(0.3, 1e-6),
        "delta": 1e-6 + 1e-9,
        "measurements": [{"label": "a", "rho": 0.1}] * 3,
    }


def test_itemised_spend_of_a_huge_rho_falls_back_to_the_textbook_bound() -> None:
    # OpenDP's tight conversion overflows somewhere between rho 1e4 (it answers) and 1e5 (it
    # raises); the account must still state an epsilon, and a bound that holds.
    rho, delta = 1e5, 1e-6
    bound = rho + 2 * math.sqrt(rho * math.log(1 / delta))
    assert ItemisedSpend(PrivacySpend(rho), delta).epsilon == pytest.approx(bound, rel=1e-12)


def test_itemised_spend_refuses_a_delta_out_of_range() -> None:
    with pytest.raises(AccountingError, match="display_delta"):
        ItemisedSpend(PrivacySpend(0.1), 0.0)


def _gaussian_count_loss(scale: float) -> float:
    counts = dp.t.make_count_by_categories(
        dp.vector_domain(dp.atom_domain(T=int)),
        dp.symmetric_distance(),
        categories=[0, 1, 2],
        null_category=False,
        MO="L2Distance<int>",
    )
    measurement = counts >> dp.m.then_gaussian(scale=scale)
    return float(measurement.map(1))


@pytest.mark.parametrize("rho", [1e-4, 0.0123, 0.5, 7.0])
def test_scale_for_loss_is_the_smallest_scale_openDP_accepts(rho: float) -> None:
    scale = scale_for_loss(_gaussian_count_loss, rho)
    assert _gaussian_count_loss(scale) <= rho
    # A scale a millionth of a percent smaller loses about 2e-8 relatively more than rho.
    assert _gaussian_count_loss(scale * (1 - 1e-8)) > rho


def test_scale_for_loss_searches_when_the_map_rounds_up() -> None:
    # A loss rounded up by a fixed amount (as OpenDP's maps round up): the inverse-square
    # solution from the probe at scale 1 then overspends, and only the search finds the scale.
    def rounded_up(scale: float) -> float:
        return 0.3 / scale**2 + 1e-12

    solved = math.sqrt(rounded_up(1.0) / 0.1)
    assert rounded_up(solved) > 0.1
    scale = scale_for_loss(rounded_up, 0.1)
    assert rounded_up(scale) <= 0.1 < rounded_up(scale * (1 - 1e-9))


def test_scale_for_loss_is_bounded_when_no_scale_fits() -> None:
    # A loss no scale brings under the target: the search gives up at its bound, never spins.
    with pytest.raises(CalibrationError):
        scale_for_loss(lambda scale: 1.0, 0.5)
    with pytest.raises(CalibrationError, match="finite number > 0"):
        scale_for_loss(lambda scale: 1.0 / scale**2, 0.0)
