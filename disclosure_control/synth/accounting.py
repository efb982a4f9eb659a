"""The account of a synthetic run's privacy loss; the arithmetic is disclosure_control.dp's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
