"""Release policies: the versioned document, its validation, the checks a release candidate
must pass and the board's approval rules.

Pure: this package imports ``disclosure_control`` and nothing of the hub's. The hub reads the
record schema and passes its fields in (:class:`RecordFields`), stores policy versions and
votes, and calls these functions to decide.
"""

from policies.board import (
    DEFAULT_QUORUM,
    REASON_CODES,
    Decision,
    PolicyState,
    ProposalRefused,
    Review,
    ReviewState,
    Vote,
    VoteRefused,
    check_proposal,
    open_review,
    policy_state,
)
from policies.checks import (
    CandidateReport,
    CheckResult,
    check_candidate,
    check_microdata,
    check_spend,
    check_table,
)
from policies.diff import Change, diff_policies, format_diff
from policies.document import (
    FORMAT,
    Policy,
    PolicyError,
    Problem,
    RecordFields,
    load_policy,
    policy_json_schema,
    validate_policy,
)

__all__ = [
    "DEFAULT_QUORUM",
    "FORMAT",
    "REASON_CODES",
    "CandidateReport",
    "Change",
    "CheckResult",
    "Decision",
    "Policy",
    "PolicyError",
    "PolicyState",
    "Problem",
    "ProposalRefused",
    "RecordFields",
    "Review",
    "ReviewState",
    "Vote",
    "VoteRefused",
    "check_candidate",
    "check_microdata",
    "check_proposal",
    "check_spend",
    "check_table",
    "diff_policies",
    "format_diff",
    "load_policy",
    "open_review",
    "policy_json_schema",
    "policy_state",
    "validate_policy",
]
