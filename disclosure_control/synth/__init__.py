"""Differentially private synthetic case records, and CTDC's 2021 k-synthetic mode."""

from disclosure_control.synth.domain import Domain
from disclosure_control.synth.marginal import BudgetShares, MarginalSynthesizer
from disclosure_control.synth.measure import ProgressCallback
from disclosure_control.synth.model import SynthesisModel

__all__ = [
    "BudgetShares",
    "Domain",
    "MarginalSynthesizer",
    "ProgressCallback",
    "SynthesisModel",
]
