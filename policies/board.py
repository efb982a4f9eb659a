"""The governance board's rules: proposals, votes, the quorum and what a proposal becomes.

Modelled on how trusted research environments release outputs (OpenSAFELY's airlock, SACRO):
a board member proposes (a policy version, a release candidate, a retraction); other members
vote, each vote with a reason code from a declared list; the proposal is decided by the votes.
The rules, enforced here rather than by convention:

- Only board members vote or comment. The proposer may comment but never vote: their own
  approval would never count, and a vote that does not count is refused rather than recorded
  as if it did.
- One vote per member and proposal. A second vote by the same member is refused, whatever it
  says: a vote once cast is what the others saw when they cast theirs, so letting it change
  would let the count move under them (and an approval withdrawn after the quorum was met
  would have to unpublish). A member who changes their mind says so in a comment and, if the
  proposal is still open, asks another member to request changes.
- A proposal is approved when ``quorum`` distinct members other than the proposer approve
  (default 2). A single ``reject`` or ``request_changes`` by an eligible member decides it at
  once: approving releases data and cannot be undone, so it needs the quorum; stopping costs a
  new proposal, so one informed objection, with its reason code, is enough.
- Once decided, a proposal takes no more votes (comments are still taken, for the record).

Everything here is pure: the hub stores the votes, passes them back in order, and records the
state these functions compute, each step with its audit event.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from disclosure_control.dp.accounting import PrivacySpend, rho_to_epsilon
from policies.document import Policy

__all__ = [
    "DEFAULT_QUORUM",
    "REASON_CODES",
    "Decision",
    "PolicyState",
    "ProposalRefused",
    "Review",
    "ReviewState",
    "Vote",
    "VoteRefused",
    "check_proposal",
    "open_review",
    "policy_state",
]

#: Approvals needed by default: two members besides the proposer.
DEFAULT_QUORUM = 2


class Decision(StrEnum):
    """What a board member says about a proposal."""

    APPROVE = "approve"
    REQUEST_CHANGES = "request_changes"
    REJECT = "reject"
    COMMENT = "comment"


#: The reason codes each decision may carry (output checkers record why, not only what).
REASON_CODES: Mapping[Decision, tuple[str, ...]] = {
    Decision.APPROVE: ("meets_policy", "risk_acceptable", "public_interest"),
    Decision.REQUEST_CHANGES: (
        "disclosure_risk",
        "privacy_spend",
        "utility",
        "rationale_unclear",
        "documentation",
        "other",
    ),
    Decision.REJECT: (
        "disclosure_risk",
        "privacy_spend",
        "out_of_scope",
        "legal_or_ethical",
        "other",
    ),
    Decision.COMMENT: ("question", "answer", "note"),
}
#: Reason codes that need words beside them.
_NEEDS_TEXT = frozenset({"other", "question", "answer", "note"})


class ReviewState(StrEnum):
    """Where a proposal stands."""

    PROPOSED = "proposed"
    APPROVED = "approved"
    REJECTED = "rejected"
    CHANGES_REQUESTED = "changes_requested"


class PolicyState(StrEnum):
    """Where a policy version stands (``approved`` makes it ``active``; the next active
    version makes it ``superseded``)."""

    PROPOSED = "proposed"
    ACTIVE = "active"
    REJECTED = "rejected"
    CHANGES_REQUESTED = "changes_requested"
    SUPERSEDED = "superseded"


def policy_state(review: ReviewState) -> PolicyState:
    """Return the state a policy version takes from its review's state.

    >>> policy_state(ReviewState.APPROVED)
    <PolicyState.ACTIVE: 'active'>
    """
    if review is ReviewState.APPROVED:
        return PolicyState.ACTIVE
    return PolicyState(review.value)


class VoteRefused(ValueError):
    """A vote or comment breaks a rule of the board; nothing was recorded.

    :param code: which rule (``not_board_member``, ``proposer_votes``, ``second_vote``,
        ``decided``, ``bad_decision``, ``bad_reason``, ``quorum_unreachable``), for the API's
        problem type.
    """

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class Vote:
    """One member's vote or comment on a proposal.

    :param member: the board member's id.
    :param decision: what they say.
    :param reason_code: why, from :data:`REASON_CODES` for the decision.
    :param text: their words (required with a comment and with the code ``other``).

    >>> Vote("m1", Decision.APPROVE, "meets_policy").counts
    True
    >>> Vote("m1", Decision.APPROVE, "spam")
    Traceback (most recent call last):
    ...
    policies.board.VoteRefused: reason code 'spam' is not one of approve's: meets_policy, \
risk_acceptable, public_interest
    """

    member: str
    decision: Decision
    reason_code: str
    text: str = ""

    def __post_init__(self) -> None:
        try:
            decision = Decision(self.decision)
        except ValueError:
            known = ", ".join(d.value for d in Decision)
            raise VoteRefused(
                "bad_decision", f"{self.decision!r} is not a decision; use one of {known}"
            ) from None
        # The API hands over plain strings: keep the member, so identity tests hold.
        object.__setattr__(self, "decision", decision)
        allowed = REASON_CODES[decision]
        if self.reason_code not in allowed:
            raise VoteRefused(
                "bad_reason",
                f"reason code {self.reason_code!r} is not one of {decision.value}'s: "
                + ", ".join(allowed),
            )
        if self.reason_code in _NEEDS_TEXT and not self.text.strip():
            raise VoteRefused(
                "bad_reason", f"a {decision.value} with reason {self.reason_code!r} needs a text"
            )

    @property
    def counts(self) -> bool:
        """Return whether this is a vote (comments are not)."""
        return self.decision is not Decision.COMMENT


@dataclass(frozen=True)
class Review:
    """The board's review of one proposal: who proposed it, the quorum, the votes so far.

    :param proposer: the member who proposed it.
    :param quorum: approvals needed from members other than the proposer.
    :param votes: the votes and comments, in the order they were cast.

    >>> board = {"ana", "ben", "chi"}
    >>> review = open_review("ana", board)
    >>> review = review.cast(Vote("ben", Decision.APPROVE, "meets_policy"), board)
    >>> review.state
    <ReviewState.PROPOSED: 'proposed'>
    >>> review.cast(Vote("chi", Decision.APPROVE, "meets_policy"), board).state
    <ReviewState.APPROVED: 'approved'>
    """

    proposer: str
    quorum: int = DEFAULT_QUORUM
    votes: tuple[Vote, ...] = ()

    def __post_init__(self) -> None:
        if self.quorum < 1:
            raise ValueError(f"the quorum must be at least 1, got {self.quorum}")

    @property
    def approvals(self) -> tuple[str, ...]:
        """Return the members whose approval counts, in order (never the proposer)."""
        seen: list[str] = []
        for vote in self.votes:
            if (
                vote.decision is Decision.APPROVE
                and vote.member != self.proposer
                and vote.member not in seen
            ):
                seen.append(vote.member)
        return tuple(seen)

    @property
    def state(self) -> ReviewState:
        """Return the state the votes, read in order, put the proposal in."""
        approvals: set[str] = set()
        for vote in self.votes:
            if vote.member == self.proposer or not vote.counts:
                continue
            if vote.decision is Decision.REJECT:
                return ReviewState.REJECTED
            if vote.decision is Decision.REQUEST_CHANGES:
                return ReviewState.CHANGES_REQUESTED
            approvals.add(vote.member)
            if len(approvals) >= self.quorum:
                return ReviewState.APPROVED
        return ReviewState.PROPOSED

    def cast(self, vote: Vote, board: Collection[str]) -> Review:
        """Return the review with ``vote`` added, or refuse it.

        :param vote: the vote or comment.
        :param board: the ids of the board's members now.
        :raises VoteRefused: from a non-member, a vote by the proposer, a second vote by one
            member, or a vote on a decided proposal.
        """
        if vote.member not in board:
            raise VoteRefused("not_board_member", "only board members vote or comment")
        if vote.counts:
            if vote.member == self.proposer:
                raise VoteRefused(
                    "proposer_votes",
                    "the proposer cannot vote on their own proposal (their approval never"
                    " counts); comment instead",
                )
            earlier = next((v for v in self.votes if v.counts and v.member == vote.member), None)
            if earlier is not None:
                raise VoteRefused(
                    "second_vote",
                    f"this member already voted ({earlier.decision.value}); one vote per member",
                )
            state = self.state
            if state is not ReviewState.PROPOSED:
                raise VoteRefused("decided", f"the proposal is already decided: {state.value}")
        return replace(self, votes=(*self.votes, vote))

    def needed(self) -> int:
        """Return how many more approvals the proposal needs (0 once approved)."""
        return max(self.quorum - len(self.approvals), 0)


def open_review(proposer: str, board: Collection[str], quorum: int = DEFAULT_QUORUM) -> Review:
    """Open the review of a proposal, refusing one the board could never approve.

    :param proposer: the proposing member.
    :param board: the ids of the board's members now.
    :param quorum: approvals needed (the hub's setting).
    :raises VoteRefused: when the proposer is not on the board, or the board has too few other
        members to reach the quorum.

    >>> open_review("ana", {"ana", "ben"})
    Traceback (most recent call last):
    ...
    policies.board.VoteRefused: the quorum is 2 approvals besides the proposer's, but the board \
has only 1 other member
    """
    if proposer not in board:
        raise VoteRefused("not_board_member", "only board members make proposals")
    others = len(set(board) - {proposer})
    if others < quorum:
        raise VoteRefused(
            "quorum_unreachable",
            f"the quorum is {quorum} approvals besides the proposer's, but the board has only"
            f" {others} other member{'s' if others != 1 else ''}",
        )
    return Review(proposer, quorum)


class ProposalRefused(ValueError):
    """A proposed policy cannot replace the active one; :attr:`problems` says why."""

    def __init__(self, problems: Collection[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("the policy cannot be proposed: " + "; ".join(self.problems))


def _shown(spend: PrivacySpend, display_delta: float) -> str:
    epsilon = rho_to_epsilon(spend.rho, display_delta)
    text = f"rho {spend.rho!r} (epsilon {epsilon:.4g} at delta {display_delta:g})"
    return text + (f" and delta {spend.delta!r}" if spend.delta else "")


def check_proposal(proposed: Policy, latest_version: int, spent: PrivacySpend) -> None:
    """Refuse a policy that cannot be proposed now.

    :param proposed: the validated policy.
    :param latest_version: the highest version number proposed so far (0 for none).
    :param spent: what the dataset's ledger has already charged.
    :raises ProposalRefused: when its version is not the next one, or its cap is lower than
        what is already spent (with the figures).
    """
    problems = []
    if proposed.version != latest_version + 1:
        problems.append(
            f"version {proposed.version} does not follow the latest, {latest_version}: propose"
            f" version {latest_version + 1}"
        )
    cap = proposed.privacy.dataset_cap.spend
    display = proposed.privacy.display_delta
    if cap.rho < spent.rho or cap.delta < spent.delta:
        problems.append(
            f"the dataset cap, {_shown(cap, display)}, is lower than what is already spent,"
            f" {_shown(spent, display)}"
        )
    if problems:
        raise ProposalRefused(problems)
