"""Differentially private synthetic case records, and CTDC's 2021 k-synthetic mode."""

from disclosure_control.synth.accounting import SynthesisSpend
from disclosure_control.synth.domain import Domain
from disclosure_control.synth.marginal import (
    BudgetShares,
    MarginalSynthesizer,
    ProgressCallback,
    SynthesisModel,
)

__all__ = [
    "BudgetShares",
    "Domain",
    "MarginalSynthesizer",
    "SynthesisSpend",
    "ProgressCallback",
    "SynthesisModel",
]
