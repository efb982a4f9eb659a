"""Privacy-loss arithmetic of synthetic releases, computed by OpenDP."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import opendp.prelude as dp

from disclosure_control.dp.accounting import rho_to_epsilon
from disclosure_control.dp.calibrate import search

dp.enable_features("contrib")


def rho_for_epsilon(epsilon: float, delta: float) -> float:
    """Return the largest rho whose (epsilon, delta) conversion stays within ``epsilon``.

    :param epsilon: the approximate-DP epsilon.
    :param delta: the approximate-DP delta.

    >>> rho = rho_for_epsilon(1.0, 1e-6)
    >>> round(rho, 4), rho_to_epsilon(rho, 1e-6) <= 1.0
    (0.0244, True)
    """
    if not (0 < epsilon < float("inf")) or not 0 < delta < 1:
        raise ValueError("epsilon must be positive and finite, and delta in (0, 1)")
    # rho <= epsilon always (epsilon(rho) >= rho), so the boundary lies in [0, epsilon].
    return search(lambda rho: rho <= 0 or rho_to_epsilon(rho, delta) <= epsilon, 0.0, epsilon)


@dataclass
class SynthesisSpend:
    """The account of one synthetic run's privacy loss: its rho, its epsilon at ``delta`` and
    each measurement's share (the ledger's own unit is :class:`disclosure_control.dp.PrivacySpend`).

    :param rho: the run's total zero-concentrated DP loss, from OpenDP's composition.
    :param delta: the delta at which ``epsilon`` is stated.
    :param epsilon: the epsilon of the (epsilon, delta) conversion of ``rho``.
    :param measurements: each measurement's label and rho, in order.
    """

    rho: float
    delta: float
    epsilon: float
    measurements: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the spend as JSON-ready data."""
        return {
            "rho": self.rho,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "measurements": [{"label": k, "rho": v} for k, v in self.measurements],
        }
