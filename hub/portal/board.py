"""The governance board's pages: policy proposals, release candidates, retractions, trails.

Views are thin over the services the API uses (:mod:`hub.services.policies`,
:mod:`hub.services.releases`, :mod:`hub.services.publication`), called with the signed-in
person's actor, so the roles, the quorum, the proposer who never counts and the one vote per
member are the services' rules, exactly as over ``/v1``. A vote or proposal the rules refuse is
shown on its page with the reason, in the status the API answers (403, 409, 412, 422); nothing
was recorded.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from markupsafe import Markup

from disclosure_control.dp import rho_to_epsilon
from disclosure_control.evaluate import report_figures
from hub import jobs
from hub.db import get_session
from hub.domain_errors import Conflict, HubError, InvalidInput, NotAuthorized
from hub.errors import request_id
from hub.portal.access import current_actor, needs
from hub.services import policies, publication, releases, transparency
from policies import REASON_CODES, Decision

#: What a ballot's select sends: ``decision:reason_code``.
_BALLOT = re.compile(r"^([a-z_]{1,32}):([a-z_]{1,32})$")
#: Refusals the board's forms show on their page (the services' HTTP statuses).
_REFUSALS = (
    policies.BoardRefusal,
    policies.InvalidPolicy,
    policies.PreconditionFailed,
    policies.PreconditionRequired,
    Conflict,
    InvalidInput,
    NotAuthorized,
)


def register(bp: Blueprint) -> None:
    """Attach the board's pages to the portal's blueprint."""
    bp.add_url_rule("/board", "board", overview)
    bp.add_url_rule("/board/policies/new", "board_propose", propose, methods=["GET", "POST"])
    bp.add_url_rule("/board/policies/<int:version>", "board_policy", policy_version)
    bp.add_url_rule(
        "/board/policies/<int:version>/reviews",
        "board_policy_review",
        review_policy,
        methods=["POST"],
    )
    bp.add_url_rule("/board/candidates/<id:candidate_id>", "board_candidate", candidate)
    bp.add_url_rule(
        "/board/candidates/<id:candidate_id>/votes",
        "board_candidate_vote",
        vote_on_candidate,
        methods=["POST"],
    )
    bp.add_url_rule("/board/releases/<id:release_id>", "board_release", release)
    bp.add_url_rule(
        "/board/releases/<id:release_id>/retraction",
        "board_retraction_vote",
        vote_on_retraction,
        methods=["POST"],
    )


def decision_labels() -> dict[str, str]:
    """Return each decision's words in the request's language."""
    return {
        Decision.APPROVE.value: gettext("Approve"),
        Decision.REQUEST_CHANGES.value: gettext("Request changes"),
        Decision.REJECT.value: gettext("Reject"),
        Decision.COMMENT.value: gettext("Comment"),
    }


def reason_labels() -> dict[str, str]:
    """Return each reason code's words in the request's language."""
    return {
        "meets_policy": gettext("It meets the policy"),
        "risk_acceptable": gettext("The remaining risk is acceptable"),
        "public_interest": gettext("It serves the public interest"),
        "disclosure_risk": gettext("Disclosure risk"),
        "privacy_spend": gettext("Privacy spend"),
        "utility": gettext("Utility"),
        "rationale_unclear": gettext("The rationale is unclear"),
        "documentation": gettext("Documentation"),
        "out_of_scope": gettext("Out of scope"),
        "legal_or_ethical": gettext("Legal or ethical concern"),
        "other": gettext("Other (say why)"),
        "question": gettext("A question"),
        "answer": gettext("An answer"),
        "note": gettext("A note"),
    }


def state_labels() -> dict[str, str]:
    """Return the words for the states of versions, candidates and reviews."""
    return {
        "proposed": gettext("proposed, under review"),
        "active": gettext("active"),
        "superseded": gettext("superseded"),
        "rejected": gettext("rejected"),
        "changes_requested": gettext("changes requested"),
        "approved": gettext("approved"),
        "building": gettext("being built"),
        "candidate": gettext("awaiting the board"),
        "blocked": gettext("blocked by the policy's checks"),
        "failed": gettext("build failed"),
        "published": gettext("published"),
    }


def _refusal_text(error: HubError) -> str:
    """Say in the reader's language why the board's rules refused a form (the service's own
    English sentence is shown beside it)."""
    code = error.extensions.get("code")
    by_code: dict[str, str] = {
        "proposer_votes": gettext("You proposed or built this: you may comment, not vote."),
        "second_vote": gettext("You have already voted on this; one vote per member."),
        "decided": gettext("The board has already decided on this."),
        "published": gettext("This candidate is already published."),
        "rejected": gettext("The board has already decided against this candidate."),
        "blocked": gettext("This candidate failed the policy's checks: it cannot be approved."),
        "not_board_member": gettext("Only board members vote."),
        "quorum_unreachable": gettext("The board has too few members to reach its quorum."),
        "bad_reason": gettext("Choose a reason that fits the decision, and say why if asked."),
        "retracted": gettext("This release is already retracted."),
    }
    if isinstance(error, policies.PreconditionFailed | policies.PreconditionRequired):
        return str(
            gettext("This version changed since you opened the page. Read it again, then decide.")
        )
    if isinstance(error, policies.InvalidPolicy):
        return str(
            gettext("The policy document is not valid. Each problem is listed by key and line.")
        )
    if isinstance(code, str) and code in by_code:
        return by_code[code]
    return str(gettext("The board's rules refuse this; nothing was recorded."))


def _ballot_choices(decisions: tuple[Decision, ...]) -> list[dict[str, Any]]:
    decided, reasons = decision_labels(), reason_labels()
    return [
        {
            "label": decided[d.value],
            "options": [
                {"value": f"{d.value}:{code}", "label": reasons.get(code, code)}
                for code in REASON_CODES[d]
            ],
        }
        for d in decisions
    ]


_MOST_WORDS = 5000


def _ballot() -> tuple[str, str, str]:
    """Read a ballot form: (decision, reason code, words)."""
    found = _BALLOT.match(request.form.get("ballot", ""))
    if found is None:
        raise InvalidInput("choose a decision and its reason", code="bad_reason")
    text = request.form.get("text", "")
    if len(text) > _MOST_WORDS:
        # Refused, never cut short: the API takes at most as much (hub.api.policies).
        raise InvalidInput(f"your words are at most {_MOST_WORDS} characters", code="bad_reason")
    return found.group(1), found.group(2), text


def _shown(value: Any) -> str:
    """Write a policy value as the diff shows it (JSON, keys sorted; nothing for absent)."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _common() -> dict[str, Any]:
    return {
        "decisions": decision_labels(),
        "reasons": reason_labels(),
        "states": state_labels(),
    }


@needs("policies:read")
def overview() -> ResponseReturnValue:
    """The board's work: policy versions, release candidates and published releases."""
    db = get_session()
    actor = current_actor()
    versions = policies.list_versions(db, actor, current_app.config)
    candidates = releases.list_candidates(db, actor)
    published = publication.list_releases(db)
    for listed in versions["versions"]:
        listed["created"] = _moment(listed["created_at"])
    return render_template(
        "portal/board/overview.html",
        versions=versions,
        candidates=candidates,
        releases=published,
        **_common(),
    )


def _policy_page(version: int, status: int = 200, **context: Any) -> ResponseReturnValue:
    db = get_session()
    actor = current_actor()
    shown = policies.show(db, actor, version, current_app.config)
    trail = policies.version_trail(db, actor, version)
    members = {event["actor_id"]: event["actor"] for event in trail if event["actor_id"]}
    changes = [
        {**change, "old_text": _shown(change["old"]), "new_text": _shown(change["new"])}
        for change in shown["diff_against_active"]["changes"]
    ]
    votes = [{**vote, "at": _moment(vote["at"])} for vote in shown["review"]["votes"]]
    return (
        render_template(
            "portal/board/policy.html",
            version=shown,
            votes=votes,
            changes=changes,
            trail=trail,
            members=members,
            ballot_choices=_ballot_choices(tuple(Decision)),
            **_common(),
            **context,
        ),
        status,
    )


@needs("policies:read")
def policy_version(version: int) -> ResponseReturnValue:
    """One policy version: its diff against the active one, its review, comments and trail."""
    return _policy_page(version, recorded=request.args.get("recorded") == "1")


def _moment(text: str | None) -> datetime | None:
    """Read a time the policy service wrote in ISO 8601 (to show it in the reader's language)."""
    return None if text is None else datetime.fromisoformat(text)


@needs("policies:read")
def review_policy(version: int) -> ResponseReturnValue:
    """Vote on or comment on a policy version (the service checks the member's scope)."""
    try:
        decision, reason_code, text = _ballot()
        policies.vote(
            get_session(),
            current_actor(),
            current_app.config,
            version,
            decision=decision,
            reason_code=reason_code,
            text=text,
            if_match=request.form.get("etag"),
            request_id=request_id(),
        )
    except _REFUSALS as error:
        return _policy_page(version, error.status, error=error, why=_refusal_text(error))
    return redirect(url_for("portal.board_policy", version=version, recorded=1), 303)


def _next_document(document: str, number: int) -> str:
    """Return the active document with its ``version`` set to the next number, to edit.

    >>> _next_document("format: 1\\nversion: 3  # the third\\n", 4)
    'format: 1\\nversion: 4  # the third\\n'
    """
    return re.sub(r"(?m)^version:\s*\d+", f"version: {number}", document, count=1)


@needs("policies:write")
def propose() -> ResponseReturnValue:
    """Propose a new policy version: its YAML document and the rationale for the board."""
    db = get_session()
    actor = current_actor()
    listed = policies.list_versions(db, actor, current_app.config)
    latest = max(v["version"] for v in listed["versions"])
    if request.method == "GET":
        active = policies.show(db, actor, None, current_app.config)
        return render_template(
            "portal/board/propose.html",
            document=_next_document(active["document"], latest + 1),
            rationale="",
            next_version=latest + 1,
        )
    document = request.form.get("document", "").replace("\r\n", "\n")
    rationale = request.form.get("rationale", "")
    try:
        shown = policies.propose(
            db,
            actor,
            current_app.config,
            text=document,
            rationale=rationale,
            request_id=request_id(),
        )
    except _REFUSALS as error:
        return (
            render_template(
                "portal/board/propose.html",
                document=document,
                rationale=rationale,
                next_version=latest + 1,
                error=error,
                why=_refusal_text(error),
                problems=error.extensions.get("problems") or [],
            ),
            error.status,
        )
    return redirect(url_for("portal.board_policy", version=shown["version"], recorded=1), 303)


def _places() -> publication.Places:
    return publication.Places.under(jobs.environment(current_app).release_directory)


def _spend_rows(spend: dict[str, Any] | None, display_delta: float) -> list[dict[str, Any]]:
    rows = []
    for name, charged in sorted((spend or {}).items()):
        rho = float(charged["rho"])
        rows.append(
            {
                "artefact": name,
                "rho": rho,
                "delta": float(charged.get("delta", 0.0)),
                "epsilon": rho_to_epsilon(rho, display_delta) if rho > 0 else 0.0,
            }
        )
    return rows


def _synthetic_report(row: Any) -> dict[str, Any] | None:
    """Return a candidate's synthetic records' utility and risk report, if it has one.

    A full release keeps it under ``synthetic`` beside the microdata's; a DP synthetic
    candidate's report is that report alone.

    >>> from types import SimpleNamespace
    >>> scored = {"utility": {"tvd": []}, "privacy": None}
    >>> _synthetic_report(SimpleNamespace(kind="dp-synthetic", report=scored)) is scored
    True
    >>> full = SimpleNamespace(kind="release", report={"microdata": {}, "synthetic": scored})
    >>> _synthetic_report(full) is scored, _synthetic_report(SimpleNamespace(kind="release",
    ...     report={"microdata": {}}))
    (True, None)
    """
    report = row.report or {}
    found = report.get("synthetic") if row.kind == releases.RELEASE else report
    return found if isinstance(found, dict) and found.get("utility") else None


def _report_charts(synthetic: dict[str, Any] | None) -> dict[str, Markup]:
    if synthetic is None:
        return {}
    # vl-convert escapes every text and attribute it writes (disclosure_control.charts).
    return {key: Markup(svg) for key, svg in report_figures(synthetic).items()}  # noqa: S704


def _candidate_page(candidate_id: str, status: int = 200, **context: Any) -> ResponseReturnValue:
    db = get_session()
    actor = current_actor()
    row = releases.get_candidate(db, actor, candidate_id)
    review = publication.motion_review(
        db,
        actor,
        publication.PUBLISH,
        candidate_id,
        quorum=policies.board_quorum(current_app.config),
    )
    display_delta = releases.display_delta_of(
        row, policies.budget_policy(policies.active_policy(db, current_app.config)).display_delta
    )
    return (
        render_template(
            "portal/board/candidate.html",
            candidate=row,
            checks=(row.checks or {}).get("results", []),
            checks_passed=(row.checks or {}).get("passed"),
            report=row.report or {},
            synthetic=(synthetic := _synthetic_report(row)),
            charts=_report_charts(synthetic),
            spend=_spend_rows(row.spend, display_delta),
            display_delta=display_delta,
            privacy_unit=transparency.candidate_unit(row),
            review=review,
            votable=row.kind == releases.RELEASE and row.status == "candidate",
            ballot_choices=_ballot_choices(
                (Decision.APPROVE, Decision.REQUEST_CHANGES, Decision.REJECT, Decision.COMMENT)
            ),
            **_common(),
            **context,
        ),
        status,
    )


@needs("releases:candidates:read")
def candidate(candidate_id: str) -> ResponseReturnValue:
    """A release candidate: its policy checks, spend, utility and risk report, votes, trail."""
    return _candidate_page(candidate_id, recorded=request.args.get("recorded") == "1")


@needs("releases:approve")
def vote_on_candidate(candidate_id: str) -> ResponseReturnValue:
    """Approve, reject or comment on a candidate; the quorum's approval publishes it."""
    try:
        decision, reason_code, text = _ballot()
        outcome = publication.vote_on_candidate(
            get_session(),
            current_actor(),
            candidate_id,
            publication.Ballot(decision, reason_code, text),
            quorum=policies.board_quorum(current_app.config),
            places=_places(),
            request_id=request_id(),
        )
    except _REFUSALS as error:
        return _candidate_page(candidate_id, error.status, error=error, why=_refusal_text(error))
    if outcome["release"]:
        return redirect(url_for("portal.board_release", release_id=outcome["release"]), 303)
    return redirect(url_for("portal.board_candidate", candidate_id=candidate_id, recorded=1), 303)


def _release_page(release_id: str, status: int = 200, **context: Any) -> ResponseReturnValue:
    db = get_session()
    actor = current_actor()
    review = publication.motion_review(
        db,
        actor,
        publication.RETRACT,
        release_id,
        quorum=policies.board_quorum(current_app.config),
    )
    shown = publication.get_release(db, release_id)
    return (
        render_template(
            "portal/board/release.html",
            release=shown,
            published=_moment(shown["published_at"]),
            review=review,
            ballot_choices=_ballot_choices(
                (Decision.COMMENT,) if not review["votes"] else tuple(Decision)
            ),
            **_common(),
            **context,
        ),
        status,
    )


@needs("releases:candidates:read")
def release(release_id: str) -> ResponseReturnValue:
    """A published release as the board sees it: its retraction's review and its trail."""
    return _release_page(release_id, recorded=request.args.get("recorded") == "1")


@needs("releases:approve")
def vote_on_retraction(release_id: str) -> ResponseReturnValue:
    """Propose (a comment) or vote on retracting a published release."""
    try:
        decision, reason_code, text = _ballot()
        publication.vote_on_retraction(
            get_session(),
            current_actor(),
            release_id,
            publication.Ballot(decision, reason_code, text),
            quorum=policies.board_quorum(current_app.config),
            request_id=request_id(),
        )
    except _REFUSALS as error:
        return _release_page(release_id, error.status, error=error, why=_refusal_text(error))
    return redirect(url_for("portal.board_release", release_id=release_id, recorded=1), 303)
