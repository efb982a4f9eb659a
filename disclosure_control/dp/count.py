"""One DP count of a statistic whose sensitivity is known: OpenDP's discrete Gaussian.

For counts that are not a query over the records' columns, such as how many people the hub's
record linkage finds in more than one partner's records: the caller states the privacy unit
and how much one unit can change the count; the noise is calibrated to that and ``rho``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import opendp.prelude as dp

from disclosure_control.dp.calibrate import scale_for_loss
from disclosure_control.dp.plan import CONFIDENCE

dp.enable_features("contrib")

__all__ = ["NoisyCount", "noisy_count"]


@dataclass(frozen=True)
class NoisyCount:
    """A DP count and what it cost.

    :param value: the noisy count, made non-negative (post-processing).
    :param lower_95: lower end of the 95% interval around the true count.
    :param upper_95: upper end.
    :param scale: the discrete Gaussian's scale.
    :param rho: the zero-concentrated DP spend (OpenDP's privacy map at the sensitivity).
    :param sensitivity: how much one privacy unit can change the true count.
    """

    value: int
    lower_95: int
    upper_95: int
    scale: float
    rho: float
    sensitivity: int


def _measurement(scale: float) -> dp.Measurement:
    return dp.m.make_gaussian(dp.atom_domain(T=int), dp.absolute_distance(T=int), scale=scale)


def _loss(scale: float, sensitivity: int) -> float:
    return float(_measurement(scale).map(sensitivity))  # type: ignore[no-untyped-call]  # opendp


def noisy_count(true_count: int, rho: float, *, sensitivity: int = 1) -> NoisyCount:
    """Release ``true_count`` under rho-zCDP with OpenDP's discrete Gaussian mechanism.

    :param true_count: the exact count (never leaves this function).
    :param rho: the spend, already charged to the ledger by the caller.
    :param sensitivity: the most one privacy unit changes ``true_count``.
    :raises ValueError: for a non-positive rho or sensitivity.

    >>> answer = noisy_count(1000, 0.005)
    >>> answer.scale, answer.rho, answer.upper_95 - answer.lower_95
    (10.0, 0.005, 42)
    """
    if not rho > 0 or sensitivity < 1:
        raise ValueError("rho must be positive and the sensitivity at least 1")
    scale = scale_for_loss(lambda s: _loss(s, sensitivity), rho)
    measurement = _measurement(scale)
    spent = _loss(scale, sensitivity)
    half = math.ceil(dp.discrete_gaussian_scale_to_accuracy(scale, 1 - CONFIDENCE))
    value = int(measurement(int(true_count)))
    return NoisyCount(
        value=max(value, 0),
        lower_95=max(value - half, 0),
        upper_95=max(value + half, 0),
        scale=scale,
        rho=spent,
        sensitivity=sensitivity,
    )
