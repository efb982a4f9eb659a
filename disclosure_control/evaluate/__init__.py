"""Utility and disclosure-risk measures of synthetic case records against the real ones."""

from disclosure_control.evaluate.privacy import (
    AttackResult,
    DistanceSummary,
    PrivacyReport,
    evaluate_privacy,
    exact_match_share,
)
from disclosure_control.evaluate.report import EvaluationReport, evaluate_release, report_figures
from disclosure_control.evaluate.utility import (
    CTDC_ANALYST_QUERIES,
    AnalystQuery,
    CombinationSummary,
    QueryResult,
    TvdSummary,
    UtilityReport,
    evaluate_utility,
    total_variation,
)

__all__ = [
    "CTDC_ANALYST_QUERIES",
    "AnalystQuery",
    "AttackResult",
    "CombinationSummary",
    "DistanceSummary",
    "EvaluationReport",
    "PrivacyReport",
    "QueryResult",
    "TvdSummary",
    "UtilityReport",
    "evaluate_privacy",
    "evaluate_release",
    "evaluate_utility",
    "exact_match_share",
    "report_figures",
    "total_variation",
]
