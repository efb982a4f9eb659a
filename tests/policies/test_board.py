"""The board's rules: reason codes, the quorum of independent approvals, one vote per member."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from disclosure_control.dp.accounting import PrivacySpend, rho_to_epsilon
from policies import (
    REASON_CODES,
    Decision,
    Policy,
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

BOARD = {"ana", "ben", "chi", "dev"}


def approve(member: str) -> Vote:
    return Vote(member, Decision.APPROVE, "meets_policy")


def refused(review: Review, vote: Vote, board: set[str] = BOARD) -> str:
    with pytest.raises(VoteRefused) as caught:
        review.cast(vote, board)
    return caught.value.code


def test_two_independent_approvals_activate_a_policy() -> None:
    review = open_review("ana", BOARD)
    review = review.cast(approve("ben"), BOARD)
    assert review.state is ReviewState.PROPOSED and review.needed() == 1
    review = review.cast(Vote("chi", Decision.COMMENT, "question", "why 0.02?"), BOARD)
    assert review.state is ReviewState.PROPOSED
    review = review.cast(approve("chi"), BOARD)
    assert review.state is ReviewState.APPROVED
    assert review.approvals == ("ben", "chi")
    assert policy_state(review.state) is PolicyState.ACTIVE


def test_the_proposer_never_counts() -> None:
    review = open_review("ana", BOARD)
    assert refused(review, approve("ana")) == "proposer_votes"
    # Even written into the stored votes by hand, the proposer's approval is not counted.
    forged = Review("ana", 2, (approve("ana"), approve("ben")))
    assert forged.state is ReviewState.PROPOSED
    assert forged.approvals == ("ben",)
    # The proposer may still comment.
    assert review.cast(Vote("ana", Decision.COMMENT, "answer", "see the notes"), BOARD).votes


def test_a_second_vote_by_one_member_is_refused() -> None:
    review = open_review("ana", BOARD).cast(approve("ben"), BOARD)
    assert refused(review, approve("ben")) == "second_vote"
    assert refused(review, Vote("ben", Decision.REJECT, "disclosure_risk")) == "second_vote"
    # Stored duplicates would still count once.
    assert Review("ana", 2, (approve("ben"), approve("ben"))).state is ReviewState.PROPOSED


def test_only_board_members_vote_or_propose() -> None:
    review = open_review("ana", BOARD)
    assert refused(review, approve("eve")) == "not_board_member"
    assert refused(review, Vote("eve", Decision.COMMENT, "note", "hello")) == "not_board_member"
    with pytest.raises(VoteRefused, match="only board members make proposals"):
        open_review("eve", BOARD)


def test_one_objection_decides() -> None:
    review = open_review("ana", BOARD).cast(approve("ben"), BOARD)
    rejected = review.cast(Vote("chi", Decision.REJECT, "privacy_spend"), BOARD)
    assert rejected.state is ReviewState.REJECTED
    assert policy_state(rejected.state) is PolicyState.REJECTED
    changes = review.cast(Vote("dev", Decision.REQUEST_CHANGES, "documentation"), BOARD)
    assert changes.state is ReviewState.CHANGES_REQUESTED
    # Decided: no more votes, comments still taken.
    assert refused(rejected, approve("dev")) == "decided"
    assert rejected.cast(Vote("dev", Decision.COMMENT, "note", "agreed"), BOARD).state is (
        ReviewState.REJECTED
    )


def test_the_quorum_is_a_parameter() -> None:
    review = open_review("ana", BOARD, quorum=3)
    for member in ("ben", "chi"):
        review = review.cast(approve(member), BOARD)
    assert review.state is ReviewState.PROPOSED
    assert review.cast(approve("dev"), BOARD).state is ReviewState.APPROVED
    with pytest.raises(VoteRefused, match="the board has only 3 other members"):
        open_review("ana", BOARD, quorum=4)
    with pytest.raises(ValueError, match="at least 1"):
        Review("ana", 0)


@pytest.mark.parametrize(
    ("decision", "code", "text", "message"),
    [
        (Decision.APPROVE, "disclosure_risk", "", "is not one of approve's"),
        (Decision.REJECT, "meets_policy", "", "is not one of reject's"),
        (Decision.REJECT, "other", " ", "needs a text"),
        (Decision.COMMENT, "note", "", "needs a text"),
    ],
)
def test_reason_codes_come_from_the_declared_list(
    decision: Decision, code: str, text: str, message: str
) -> None:
    with pytest.raises(VoteRefused, match=message):
        Vote("ben", decision, code, text)


def test_decisions_arrive_as_plain_strings() -> None:
    review = open_review("ana", BOARD)
    review = review.cast(Vote("ben", "approve", "meets_policy"), BOARD)  # type: ignore[arg-type]
    review = review.cast(Vote("chi", "approve", "meets_policy"), BOARD)  # type: ignore[arg-type]
    assert review.state is ReviewState.APPROVED
    with pytest.raises(VoteRefused, match="'veto' is not a decision"):
        Vote("ben", "veto", "meets_policy")  # type: ignore[arg-type]


def test_every_decision_declares_reason_codes() -> None:
    assert set(REASON_CODES) == set(Decision)
    assert all(REASON_CODES[d] for d in Decision)


def test_a_cap_below_what_is_spent_is_refused_with_the_figures(default_policy: Policy) -> None:
    spent = PrivacySpend(1.5, 0.0)
    with pytest.raises(ProposalRefused) as caught:
        check_proposal(default_policy, 0, spent)
    (problem,) = caught.value.problems
    eps_cap = rho_to_epsilon(1.0, 1e-6)
    eps_spent = rho_to_epsilon(1.5, 1e-6)
    assert problem == (
        f"the dataset cap, rho 1.0 (epsilon {eps_cap:.4g} at delta 1e-06) and delta 1e-07,"
        f" is lower than what is already spent, rho 1.5 (epsilon {eps_spent:.4g} at delta"
        " 1e-06)"
    )
    check_proposal(default_policy, 0, PrivacySpend(1.0, 1e-7))  # exactly the cap is fine
    with pytest.raises(ProposalRefused, match="lower than what is already spent"):
        check_proposal(default_policy, 0, PrivacySpend(0.1, 2e-7))


def test_a_proposal_takes_the_next_version(default_policy: Policy) -> None:
    with pytest.raises(ProposalRefused, match="does not follow the latest, 3: propose version 4"):
        check_proposal(default_policy, 3, PrivacySpend(0.0))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 3),
    st.lists(
        st.tuples(
            st.sampled_from(["ana", "ben", "chi", "dev", "eve"]),
            st.sampled_from([Decision.APPROVE, Decision.REJECT, Decision.REQUEST_CHANGES]),
        ),
        max_size=12,
    ),
)
def test_the_review_obeys_its_rules_whatever_the_order(
    quorum: int, attempts: list[tuple[str, Decision]]
) -> None:
    review = open_review("ana", BOARD, quorum)
    accepted: list[Vote] = []
    for member, decision in attempts:
        vote = Vote(member, decision, REASON_CODES[decision][0])
        try:
            review = review.cast(vote, BOARD)
        except VoteRefused:
            continue
        accepted.append(vote)
    voters = [v.member for v in accepted]
    assert len(voters) == len(set(voters))
    assert "ana" not in voters and "eve" not in voters
    objections = [v for v in accepted if v.decision is not Decision.APPROVE]
    approvals = [v for v in accepted if v.decision is Decision.APPROVE]
    # At most one decisive vote ends the review, and it is the last vote accepted.
    if objections:
        assert objections == [accepted[-1]]
        expected = (
            ReviewState.REJECTED
            if objections[0].decision is Decision.REJECT
            else ReviewState.CHANGES_REQUESTED
        )
        assert review.state is expected and len(approvals) < quorum
    elif len(approvals) >= quorum:
        assert len(approvals) == quorum and review.state is ReviewState.APPROVED
    else:
        assert review.state is ReviewState.PROPOSED
