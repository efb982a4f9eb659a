"""Privacy accounting in zero-concentrated DP: conversions, composition and the cap check.

Every function here is pure: the hub persists its own ledger and asks these functions what a
charge costs and whether it fits, *before* any OpenDP measurement runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Any

import opendp.prelude as dp
from opendp.mod import OpenDPException

from disclosure_control.dp.calibrate import search

dp.enable_features("contrib")

__all__ = [
    "AccountingError",
    "BudgetCheck",
    "ItemisedSpend",
    "PrivacySpend",
    "check_charge",
    "compose",
    "epsilon_delta_to_rho",
    "rho_to_epsilon",
    "to_epsilon_delta",
]


class AccountingError(ValueError):
    """A privacy parameter is out of range (negative, NaN, or a delta outside (0, 1))."""


def _check_rho(rho: float, what: str = "rho") -> None:
    if not (isinstance(rho, int | float) and math.isfinite(rho) and rho >= 0):
        raise AccountingError(f"{what} must be a finite number >= 0, got {rho!r}")


def _check_delta(delta: float, what: str = "delta", allow_zero: bool = False) -> None:
    low_ok = delta >= 0 if allow_zero else delta > 0
    if not (isinstance(delta, int | float) and math.isfinite(delta) and low_ok and delta < 1):
        bound = "[0, 1)" if allow_zero else "(0, 1)"
        raise AccountingError(f"{what} must lie in {bound}, got {delta!r}")


@dataclass(frozen=True, slots=True)
class PrivacySpend:
    """A privacy loss in approximate zero-concentrated DP: ``rho`` plus an additive ``delta``.

    ``delta`` is only non-zero when a release used DP key selection (group keys not known in
    advance); it adds to whatever delta the rho -> (epsilon, delta) conversion uses.

    :param rho: zero-concentrated DP parameter (>= 0)
    :param delta: additive failure probability of key selection (>= 0, < 1)

    >>> PrivacySpend(0.5) + PrivacySpend(0.25, 1e-9)
    PrivacySpend(rho=0.75, delta=1e-09)
    """

    rho: float
    delta: float = 0.0

    def __post_init__(self) -> None:
        _check_rho(self.rho)
        _check_delta(self.delta, allow_zero=True)

    def __add__(self, other: PrivacySpend) -> PrivacySpend:
        """Compose two spends sequentially (rho and delta both add up)."""
        return compose([self, other])


def compose(spends: Iterable[PrivacySpend]) -> PrivacySpend:
    """Compose spends sequentially: zCDP rhos add, key-selection deltas add.

    The sum is rounded up to the next float so a composed total never under-reports the loss.

    :param spends: the spends to compose, in any order

    >>> compose([PrivacySpend(0.1), PrivacySpend(0.2), PrivacySpend(0.3, 1e-9)])
    PrivacySpend(rho=0.6000000000000001, delta=1e-09)
    >>> compose([])
    PrivacySpend(rho=0.0, delta=0.0)
    """
    rho = Fraction(0)
    delta = Fraction(0)
    for spend in spends:
        rho += Fraction(spend.rho)
        delta += Fraction(spend.delta)
    return PrivacySpend(_round_up(rho), _round_up(delta))


def _round_up(value: Fraction) -> float:
    """Return the smallest float >= ``value`` (exact rational sums, rounded conservatively)."""
    nearest = float(value)
    return nearest if Fraction(nearest) >= value else math.nextafter(nearest, math.inf)


@lru_cache(maxsize=1024)
def rho_to_epsilon(rho: float, delta: float) -> float:
    """Return the epsilon that ``rho``-zCDP implies at ``delta``, using OpenDP's conversion.

    OpenDP's ``make_zCDP_to_approxDP`` is tighter than the textbook bound
    ``rho + 2 sqrt(rho ln(1/delta))``; the conversion runs on a Gaussian measurement whose
    privacy map at ``sqrt(2 rho)`` is ``rho`` (OpenDP rounds that map up, never down).

    :param rho: zero-concentrated DP parameter (>= 0)
    :param delta: the delta at which to read epsilon, in (0, 1)

    >>> round(rho_to_epsilon(0.5, 1e-6), 4)
    5.2215
    >>> rho_to_epsilon(0.5, 1e-6) < 0.5 + 2 * math.sqrt(0.5 * math.log(1e6))
    True
    >>> rho_to_epsilon(0.0, 1e-6)
    0.0
    """
    _check_rho(rho)
    _check_delta(delta)
    return _opendp_epsilon(rho, delta)


def _opendp_epsilon(rho: float, delta: float) -> float:
    """Read epsilon at ``delta`` off OpenDP's zCDP privacy profile for ``rho`` (uncached)."""
    if rho == 0:
        return 0.0
    gaussian = dp.m.make_gaussian(
        dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float), scale=1.0
    )
    profile = dp.c.make_zCDP_to_approxDP(gaussian)
    try:
        curve = profile.map(math.sqrt(2.0 * rho))  # type: ignore[no-untyped-call]  # untyped
        return float(curve.epsilon(delta))
    except OpenDPException:
        # OpenDP's tight conversion overflows exp() once epsilon passes ~700; Bun and Steinke's
        # bound (Proposition 1.3) still holds there and is what such a spend honestly means.
        return rho + 2 * math.sqrt(rho * math.log(1 / delta))


@lru_cache(maxsize=1024)
def epsilon_delta_to_rho(epsilon: float, delta: float) -> float:
    """Return the largest rho whose OpenDP (epsilon, delta) conversion stays within ``epsilon``.

    The one conversion from (epsilon, delta) to rho, for queries and synthesis alike: the
    bounded search of :func:`disclosure_control.dp.calibrate.search` on the monotone map
    :func:`rho_to_epsilon`; the answer errs on the small side.

    :param epsilon: target epsilon (> 0)
    :param delta: the delta of the target, in (0, 1)

    >>> rho = epsilon_delta_to_rho(1.0, 1e-6)
    >>> rho_to_epsilon(rho, 1e-6) <= 1.0
    True
    >>> round(rho, 4)
    0.0244
    """
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise AccountingError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    _check_delta(delta)
    # rho <= epsilon always, since epsilon(rho) >= rho: the boundary lies in [0, epsilon].
    return search(lambda rho: rho <= 0 or rho_to_epsilon(rho, delta) <= epsilon, 0.0, epsilon)


def to_epsilon_delta(spend: PrivacySpend, delta: float) -> tuple[float, float]:
    """Express ``spend`` as (epsilon, delta): epsilon at ``delta`` plus key selection's delta.

    :param spend: the spend to express
    :param delta: the delta spent on the rho -> epsilon conversion, in (0, 1)

    >>> eps, total_delta = to_epsilon_delta(PrivacySpend(0.5, 1e-9), 1e-6)
    >>> round(eps, 4), total_delta
    (5.2215, 1.001e-06)
    """
    return rho_to_epsilon(spend.rho, delta), delta + spend.delta


@dataclass(frozen=True)
class ItemisedSpend:
    """What a run of several measurements spent: its total, each measurement's part, and the
    total stated as (epsilon, delta).

    :param total: the run's spend, as OpenDP's composition states it.
    :param display_delta: the delta at which the total's rho is also stated as epsilon (the
        total's own key-selection delta adds to it, as in :func:`to_epsilon_delta`).
    :param measurements: each measurement's label and spend, in the order they were made.

    >>> run = ItemisedSpend(PrivacySpend(0.5), 1e-6, (("1-way gender", PrivacySpend(0.5)),))
    >>> round(run.epsilon, 4), run.rho
    (5.2215, 0.5)
    >>> run.to_dict()["measurements"]
    [{'label': '1-way gender', 'rho': 0.5}]
    """

    total: PrivacySpend
    display_delta: float
    measurements: tuple[tuple[str, PrivacySpend], ...] = field(default=())

    def __post_init__(self) -> None:
        _check_delta(self.display_delta, "display_delta")

    @property
    def rho(self) -> float:
        """Return the run's total rho."""
        return self.total.rho

    @property
    def epsilon(self) -> float:
        """Return the epsilon of the total at ``display_delta``, by OpenDP's conversion."""
        return to_epsilon_delta(self.total, self.display_delta)[0]

    @property
    def delta(self) -> float:
        """Return the delta of the (epsilon, delta) statement: display plus key selection."""
        return to_epsilon_delta(self.total, self.display_delta)[1]

    def to_dict(self) -> dict[str, Any]:
        """Return the spend as JSON-ready data: rho, epsilon, delta and each measurement's rho."""
        return {
            "rho": self.rho,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "measurements": [{"label": k, "rho": v.rho} for k, v in self.measurements],
        }


@dataclass(frozen=True, slots=True)
class BudgetCheck:
    """The answer of :func:`check_charge`: whether a charge fits, and what is left either way.

    :param fits: True when ``spent + charge`` stays within the cap in both rho and delta
    :param remaining: what is left before the charge
    :param remaining_after: what would be left after it (None when it does not fit)
    """

    fits: bool
    remaining: PrivacySpend
    remaining_after: PrivacySpend | None


def check_charge(charge: PrivacySpend, spent: PrivacySpend, cap: PrivacySpend) -> BudgetCheck:
    """Decide whether ``charge`` fits under ``cap`` given what is already ``spent``.

    Arithmetic is exact (rationals of the stored floats): a charge that would exceed the cap by
    one unit in the last place is refused, never rounded in.

    :param charge: what the query would cost
    :param spent: what the ledger has already charged
    :param cap: the policy's cap

    >>> check_charge(PrivacySpend(0.25), PrivacySpend(0.75), PrivacySpend(1.0)).fits
    True
    >>> check_charge(PrivacySpend(0.1), PrivacySpend(0.2), PrivacySpend(0.3)).fits
    False
    >>> check_charge(PrivacySpend(0.1), PrivacySpend(0.2), PrivacySpend(0.3)).remaining
    PrivacySpend(rho=0.09999999999999998, delta=0.0)
    """
    rho_left = Fraction(cap.rho) - Fraction(spent.rho)
    delta_left = Fraction(cap.delta) - Fraction(spent.delta)
    remaining = PrivacySpend(_round_down(rho_left), _round_down(delta_left))
    fits = Fraction(charge.rho) <= rho_left and Fraction(charge.delta) <= delta_left
    after = (
        PrivacySpend(
            _round_down(rho_left - Fraction(charge.rho)),
            _round_down(delta_left - Fraction(charge.delta)),
        )
        if fits
        else None
    )
    return BudgetCheck(fits=fits, remaining=remaining, remaining_after=after)


def _round_down(value: Fraction) -> float:
    """Return the largest float <= ``value``, floored at zero (an overspent ledger has none)."""
    if value <= 0:
        return 0.0
    nearest = float(value)
    return nearest if Fraction(nearest) <= value else math.nextafter(nearest, 0.0)
