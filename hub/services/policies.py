"""Release policies in the hub: the stored versions, the active one, and the board's review.

The policy document and the board's rules are pure (:mod:`policies`); this module stores the
versions (:class:`hub.models.PolicyVersion`) and their votes, tells every other service which
version is active, and runs the board's workflow: a member proposes a version, members comment
and vote with reason codes, and the version becomes active once :mod:`policies.board` says the
quorum (setting ``BOARD_QUORUM``) is met. Each step is one transaction with its audit event.
Every write to a version names the revision it read (its ETag, sent as ``If-Match``) and takes
the version's row by raising that revision in one conditional ``UPDATE``: a concurrent write
makes it stale (412) instead of being counted on a state its author never saw.

The first version is adopted from ``config/policies/default.yaml`` the first time any
service asks, with the settings' DP caps (``DP_DATASET_*_CAP``, ``DP_RESEARCHER_*_ALLOWANCE``,
``DP_DISPLAY_DELTA``) written into its privacy section: those settings are only the defaults
of the first policy; from then on the board's versions set the caps.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import yaml
from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contributors.schema import load_schema
from disclosure_control.dp import PrivacySpend
from disclosure_control.dp.plan import RHO_RANGE
from hub import audit
from hub.actors import OPERATOR, Actor, acting_principal, authorize
from hub.domain_errors import Conflict, HubError, InvalidInput, NotFound, ServiceUnavailable
from hub.models import PolicyVersion, PolicyVote, Principal, new_id, utcnow
from hub.services import ledger, transparency
from policies import (
    DEFAULT_QUORUM,
    Decision,
    Policy,
    PolicyError,
    PolicyState,
    ProposalRefused,
    RecordFields,
    Review,
    Vote,
    VoteRefused,
    check_proposal,
    diff_policies,
    format_diff,
    load_policy,
    open_review,
    policy_state,
)

#: The document the first policy version is made from.
DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "config" / "policies" / "default.yaml"

#: Where in a policy each DP setting goes when the first version is adopted.
_SETTINGS_IN_POLICY: dict[tuple[str, ...], str] = {
    ("privacy", "display_delta"): "DP_DISPLAY_DELTA",
    ("privacy", "dataset_cap", "rho"): "DP_DATASET_RHO_CAP",
    ("privacy", "dataset_cap", "delta"): "DP_DATASET_DELTA_CAP",
    ("privacy", "researcher_allowance", "rho"): "DP_RESEARCHER_RHO_ALLOWANCE",
    ("privacy", "researcher_allowance", "delta"): "DP_RESEARCHER_DELTA_ALLOWANCE",
}


@lru_cache(maxsize=1)
def record_fields() -> RecordFields:
    """Return what a policy may name: the record schema's fields and its derived attributes."""
    return RecordFields.from_table_schema(load_schema().as_dict())


@dataclass(frozen=True)
class ActivePolicy:
    """The release policy in force.

    :param version: its version number.
    :param policy: the validated document.
    :param digest: the SHA-256 of its YAML text, as stored.
    :param id: the id of its :class:`~hub.models.PolicyVersion` row.
    :param document: its YAML text, as stored (the caps are read from it exactly).
    """

    version: int
    policy: Policy
    digest: str
    id: str
    document: str


def digest(text: str) -> str:
    """Return the SHA-256 of a policy document's text (UTF-8), in hex.

    >>> digest("format: 1\\n")[:12]
    '1f7b96350b26'
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@lru_cache(maxsize=8)
def _parsed(text: str, sha256: str) -> Policy:
    """Validate a stored document once per text (a stored version never changes)."""
    return load_policy(text, record_fields())


def parse_stored(row: PolicyVersion) -> Policy:
    """Return the policy a stored version holds, after checking its digest.

    :raises hub.domain_errors.ServiceUnavailable: if the stored text no longer matches its
        digest, or no longer validates (the record schema changed under it).
    """
    if digest(row.document) != row.sha256:
        raise ServiceUnavailable(
            f"release policy version {row.version} does not match its stored SHA-256; the "
            "policy table was changed outside the hub"
        )
    try:
        return _parsed(row.document, row.sha256)
    except PolicyError as error:
        raise ServiceUnavailable(
            f"release policy version {row.version} no longer validates against the record "
            f"schema: {error}"
        ) from None


def _yaml_number(text: str) -> str:
    """Write a DP setting as the exact decimal it is, a number a YAML 1.2 reader sees.

    >>> _yaml_number("1"), _yaml_number("1e-7"), _yaml_number("0.25"), _yaml_number("1/3")
    ('1', '0.0000001', '0.25', '0.3333333333333333')
    """
    value = Fraction(str(text).strip())
    try:
        return ledger.decimal_text(value)
    except ValueError:  # no finite decimal (a setting written as a fraction): the nearest double
        return repr(float(value))


def _scalar(root: yaml.Node | None, path: tuple[str, ...]) -> yaml.ScalarNode | None:
    """Return the scalar node at a key path of a YAML node tree, if there is one."""
    node = root
    for key in path:
        if not isinstance(node, yaml.MappingNode):
            return None
        node = next((v for k, v in node.value if k.value == key), None)
    return node if isinstance(node, yaml.ScalarNode) else None


def _exact(node: yaml.ScalarNode | None, validated: float) -> Fraction:
    """Return a number of the document exactly as written, or the validated double's decimal.

    The policy model holds doubles; the ledger compares exact fractions, so a cap is the
    decimal the board wrote (0.1 is 1/10, not the double nearest it). A literal no decimal
    reading gives back the validated value for (0x10, a missing key's default) falls back to
    the double's shortest decimal.
    """
    if node is not None:
        try:
            written = Fraction(node.value.replace("_", ""))
        except ValueError:
            written = None
        if written is not None and float(written) == validated:
            return written
    return Fraction(repr(validated))


def budget_policy(
    active: ActivePolicy, config: Mapping[str, Any] | None = None
) -> ledger.BudgetPolicy:
    """Return the ledger's caps from the active policy, exactly as its document writes them.

    :param active: the policy in force.
    :param config: the hub's settings (only the per-query rho range is read from them);
        without them the range is the ledger's default (release builds spend no query).
    """
    privacy = active.policy.privacy
    cap, allowance = privacy.dataset_cap, privacy.researcher_allowance
    query_rho_range = (
        ledger.BudgetPolicy.from_settings(config).query_rho_range
        if config is not None
        else RHO_RANGE
    )
    dataset_rho, dataset_delta, researcher_rho, researcher_delta = _written_caps(
        active.document, cap.rho, cap.delta, allowance.rho, allowance.delta
    )
    return ledger.BudgetPolicy(
        dataset_rho=dataset_rho,
        dataset_delta=dataset_delta,
        researcher_rho=researcher_rho,
        researcher_delta=researcher_delta,
        display_delta=privacy.display_delta,
        query_rho_range=query_rho_range,
        policy_version=active.version,
        unit=privacy.privacy_unit,
    )


@lru_cache(maxsize=8)
def _written_caps(
    document: str, cap_rho: float, cap_delta: float, allowance_rho: float, allowance_delta: float
) -> tuple[Fraction, Fraction, Fraction, Fraction]:
    """Read the four caps of a document as written, once per text and validated values.

    Composing the YAML took most of a re-served query's time when done on every request; the
    result depends on nothing but these arguments (a stored version's text never changes).
    """
    root = yaml.compose(document, Loader=yaml.SafeLoader)

    def exact(path: tuple[str, ...], validated: float) -> Fraction:
        return _exact(_scalar(root, ("privacy", *path)), validated)

    return (
        exact(("dataset_cap", "rho"), cap_rho),
        exact(("dataset_cap", "delta"), cap_delta),
        exact(("researcher_allowance", "rho"), allowance_rho),
        exact(("researcher_allowance", "delta"), allowance_delta),
    )


def default_document(config: Mapping[str, Any]) -> str:
    """Return the first policy's YAML text: the default document with the settings' DP caps.

    Only the five numbers are replaced, where they stand in the text, so the document keeps its
    comments and layout. Each is written as the exact decimal the setting is, so the ledger's
    caps are the settings' to the last digit (:func:`budget_policy` reads them as written).

    :param config: the hub's settings (the ``DP_*`` ones are read).
    :raises ValueError: if the default document lacks one of the five keys.
    """
    text = DEFAULT_POLICY.read_text("utf-8")
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    spans: list[tuple[int, int, str]] = []
    for path, setting in _SETTINGS_IN_POLICY.items():
        node = _scalar(root, path)
        if node is None:
            raise ValueError(f"{DEFAULT_POLICY} has no {'.'.join(path)} to set from {setting}")
        spans.append((node.start_mark.index, node.end_mark.index, _yaml_number(config[setting])))
    for start, end, value in sorted(spans, reverse=True):
        text = text[:start] + value + text[end:]
    return text


def _active_row(session: Session) -> PolicyVersion | None:
    return session.scalars(
        select(PolicyVersion)
        .where(PolicyVersion.state == PolicyState.ACTIVE.value)
        .execution_options(populate_existing=True)
    ).one_or_none()


def _adopt_default(
    session: Session, config: Mapping[str, Any], request_id: str | None = None
) -> None:
    """Store version 1 from the default document, unless a concurrent call already did.

    The insert does nothing when version 1 exists (the unique version number decides between
    concurrent first calls: PostgreSQL makes the second wait for the first's commit, SQLite
    serialises them), and only the call that inserted writes the audit event and commits.
    """
    text = default_document(config)
    try:
        policy = load_policy(text, record_fields())
    except PolicyError as error:
        raise ServiceUnavailable(
            "the first release policy, config/policies/default.yaml with the settings' DP caps "
            f"(DP_DATASET_RHO_CAP and others), is invalid: {error}"
        ) from None
    now, version_id, sha256 = utcnow(), new_id(), digest(text)
    values = {
        "id": version_id,
        "version": policy.version,
        "document": text,
        "sha256": sha256,
        "state": PolicyState.ACTIVE.value,
        "proposed_by": None,
        "proposer_name": OPERATOR.name,
        "rationale": "adopted from config/policies/default.yaml with the settings' DP caps",
        "created_at": now,
        "decided_at": now,
        "activated_at": now,
        "revision": 1,
    }
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    # RETURNING names the row only when this call inserted it (rowcount is not reliable for an
    # ORM insert on every driver).
    inserted = session.execute(
        module.insert(PolicyVersion)
        .values(**values)
        .on_conflict_do_nothing()
        .returning(PolicyVersion.id)
    ).scalar_one_or_none()
    if inserted is None:
        session.rollback()  # a concurrent call adopted it first; nothing of ours to keep
        return
    transparency.log_policy(session, session.get_one(PolicyVersion, version_id))
    audit.record(
        session,
        "policies:version:adopt_default",
        actor=OPERATOR,
        request_id=request_id,
        subject_id=version_id,
        details={
            "version": policy.version,
            "sha256": sha256,
            "dataset_cap_rho": policy.privacy.dataset_cap.rho,
            "dataset_cap_delta": policy.privacy.dataset_cap.delta,
            "researcher_allowance_rho": policy.privacy.researcher_allowance.rho,
            "researcher_allowance_delta": policy.privacy.researcher_allowance.delta,
        },
    )
    session.commit()


def active_policy(
    session: Session, config: Mapping[str, Any], request_id: str | None = None
) -> ActivePolicy:
    """Return the release policy in force, adopting the first version if there is none yet.

    Adopting the first version commits its own transaction (the version and its audit event,
    made by the operator's system actor), so call this before changing anything in
    ``session``. Concurrent first calls store one version 1 between them.

    :param config: the hub's settings; their DP caps are read only to adopt the first version.
    :param request_id: the HTTP request that needed the policy, recorded on the adoption's audit
        event when this call adopts the first version.
    :raises hub.domain_errors.ServiceUnavailable: if the first version cannot be made from the
        settings, or the stored active version fails its digest or validation.
    """
    with session.no_autoflush:
        row = _active_row(session)
    if row is None:
        if session.new or session.dirty or session.deleted:
            # Adopting commits: it must not commit a caller's half-made change with it.
            raise RuntimeError("call active_policy before changing anything in the session")
        _adopt_default(session, config, request_id)
        row = _active_row(session)
        if row is None:
            raise ServiceUnavailable(
                "no release policy is active although versions exist; the board must approve one"
            )
    return ActivePolicy(
        version=row.version,
        policy=parse_stored(row),
        digest=row.sha256,
        id=row.id,
        document=row.document,
    )


# --- the board's workflow ---------------------------------------------------------------------

READ_SCOPE = "policies:read"
PROPOSE_SCOPE = "policies:write"
VOTE_SCOPE = "policies:approve"
_BOARD_ROLE = "board"


class PreconditionFailed(HubError):
    """The ``If-Match`` names a revision that is no longer current; nothing was changed."""

    status, slug, title = 412, "precondition-failed", "Precondition failed"


class PreconditionRequired(HubError):
    """A write to a policy version came without ``If-Match``; nothing was changed."""

    status, slug, title = 428, "precondition-required", "Precondition required"


class InvalidPolicy(HubError):
    """A proposed policy document does not validate; ``problems`` lists each, nothing stored."""

    status, slug, title = 422, "invalid-policy", "Invalid release policy"


class BoardRefusal(HubError):
    """The board's rules refuse a proposal, vote or comment; nothing was recorded.

    The status follows the rule: a non-member is not authorised (403); a bad decision or reason
    code, or a proposal whose version number or cap cannot follow, is invalid input (422); a
    vote the state of the review forbids (by the proposer, a second vote, on a decided
    version) or a quorum the board cannot reach is a conflict (409).
    """

    slug, title = "board-refusal", "Refused by the board's rules"
    _STATUS = {
        "not_board_member": 403,
        "bad_decision": 422,
        "bad_reason": 422,
        "cap": 422,
        "version": 422,
    }

    def __init__(self, code: str, detail: str, **extensions: Any) -> None:
        super().__init__(detail, code=code, **extensions)
        self.status = self._STATUS.get(code, 409)


def etag(row: PolicyVersion) -> str:
    """Return the ETag of a policy version: its number and revision, quoted."""
    return f'"policy-{row.version}-r{row.revision}"'


def _expected_revision(if_match: str | None, row: PolicyVersion) -> int:
    """Return the revision an ``If-Match`` names for ``row``, or refuse the write."""
    if if_match is None or not if_match.strip():
        raise PreconditionRequired(
            f"send If-Match with the ETag of policy version {row.version} as you last read it "
            f"(GET /v1/policies/{row.version}); it is {etag(row)} now"
        )
    tags = [tag.strip() for tag in if_match.split(",")]
    if etag(row) not in tags:
        raise PreconditionFailed(
            f"policy version {row.version} changed since you read it: If-Match {if_match.strip()!r}"
            f" does not match its ETag {etag(row)}; read it again and decide again",
            etag=etag(row),
        )
    return row.revision


def _board(session: Session) -> frozenset[str]:
    """Return the ids of the board's members now: enabled principals with the board role."""
    found = session.scalars(
        select(Principal).where(
            Principal.roles.contains(_BOARD_ROLE), Principal.disabled_at.is_(None)
        )
    )
    return frozenset(p.id for p in found if _BOARD_ROLE in p.roles.split())


def _row(session: Session, number: int) -> PolicyVersion:
    row = session.scalars(
        select(PolicyVersion)
        .where(PolicyVersion.version == number)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if row is None:
        raise NotFound(f"there is no release policy version {number}")
    return row


def _votes(session: Session, row: PolicyVersion) -> list[PolicyVote]:
    return list(
        session.scalars(
            select(PolicyVote)
            .where(PolicyVote.policy_version_id == row.id)
            .order_by(PolicyVote.id)
            .execution_options(populate_existing=True)
        )
    )


def _review(row: PolicyVersion, votes: list[PolicyVote], quorum: int) -> Review:
    proposer = row.proposed_by if row.proposed_by is not None else f"system:{row.proposer_name}"
    return Review(
        proposer,
        quorum,
        tuple(Vote(v.member_id, Decision(v.decision), v.reason_code, v.remark) for v in votes),
    )


def board_quorum(config: Mapping[str, Any]) -> int:
    """Return how many independent board approvals decide (setting ``BOARD_QUORUM``): for
    policy versions, release candidates and retractions alike."""
    return int(config.get("BOARD_QUORUM", DEFAULT_QUORUM))


def _float_at_least(value: Fraction) -> float:
    """Return the smallest double not below ``value`` (a spend is never shown smaller)."""
    near = float(value)
    return near if Fraction(near) >= value else math.nextafter(near, math.inf)


def _spent(session: Session) -> PrivacySpend:
    rho, delta = ledger.dataset_spent(session)
    return PrivacySpend(_float_at_least(rho), _float_at_least(delta))


def _refusal(error: VoteRefused) -> BoardRefusal:
    return BoardRefusal(error.code, str(error))


def _proposal_refusal(error: ProposalRefused) -> BoardRefusal:
    code = "cap" if any("already spent" in p for p in error.problems) else "version"
    return BoardRefusal(code, str(error), problems=list(error.problems))


def _read_document(text: str | None, document: object) -> str:
    """Return the YAML text of a proposal sent as YAML, or as a JSON object or string."""
    if text is not None:
        return text
    if isinstance(document, str):
        return document
    if isinstance(document, Mapping):
        # Kept as YAML, the one form every version is stored and read in; the text is then
        # validated as stored, so what is checked is what is kept.
        return yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True)
    raise InvalidInput(
        "send the policy as a YAML body (application/yaml), or as JSON with 'document' (the "
        "YAML text or the policy as an object) and 'rationale'",
        field="document",
    )


def propose(
    session: Session,
    actor: Actor,
    config: Mapping[str, Any],
    *,
    text: str | None = None,
    document: object = None,
    rationale: str,
    request_id: str | None,
) -> dict[str, Any]:
    """Propose a new policy version for the board's review; return it as :func:`show` does.

    :param text: the YAML document, or ``None`` when ``document`` carries it.
    :param document: the policy as a JSON object, or its YAML text.
    :param rationale: why the board should adopt it.
    :raises InvalidPolicy: naming each problem's key path, line and reason; nothing stored.
    :raises BoardRefusal: for a proposer not on the board, a quorum the board cannot reach, a
        version number that does not follow the latest, or a cap below what is spent.
    """
    principal = acting_principal(actor, PROPOSE_SCOPE)
    yaml_text = _read_document(text, document)
    if not rationale.strip():
        raise InvalidInput("a proposal needs a rationale for the board", field="rationale")
    active = active_policy(session, config)
    try:
        open_review(principal.id, _board(session), board_quorum(config))
    except VoteRefused as error:
        raise _refusal(error) from None
    try:
        policy = load_policy(yaml_text, record_fields())
    except PolicyError as error:
        raise InvalidPolicy(
            str(error),
            problems=[
                {"path": problem.path, "reason": problem.reason, "line": problem.line}
                for problem in error.problems
            ],
        ) from None
    latest = session.scalar(select(func.max(PolicyVersion.version))) or active.version
    try:
        check_proposal(policy, latest, _spent(session))
    except ProposalRefused as error:
        raise _proposal_refusal(error) from None
    row = PolicyVersion(
        version=policy.version,
        document=yaml_text,
        sha256=digest(yaml_text),
        state=PolicyState.PROPOSED.value,
        proposed_by=principal.id,
        rationale=rationale.strip(),
        revision=1,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(
            f"version {policy.version} was proposed by someone else meanwhile; propose version"
            f" {policy.version + 1}"
        ) from None
    audit.record(
        session,
        "policies:version:propose",
        actor=principal,
        request_id=request_id,
        subject_id=row.id,
        details={"version": row.version, "sha256": row.sha256, "active_version": active.version},
    )
    session.commit()
    return show(session, principal, row.version, config)


def _activate(session: Session, row: PolicyVersion, actor: Actor, request_id: str | None) -> None:
    """Make ``row`` the active version (the quorum approved it), in the caller's transaction."""
    policy = parse_stored(row)
    # The ledger may have been charged since the proposal: with its row locked, the cap is
    # checked again against what is spent now (check_proposal's version rule holds trivially).
    ledger.lock_dataset(session)
    try:
        check_proposal(policy, row.version - 1, _spent(session))
    except ProposalRefused as error:
        raise _proposal_refusal(error) from None
    now = utcnow()
    previous = _active_row(session)
    if previous is not None:
        previous.state = PolicyState.SUPERSEDED.value
        previous.superseded_at = now
        previous.revision += 1
        session.flush()  # before the new one is active: at most one active row at any moment
    # Open proposals older than the new active version can no longer become active.
    older = session.scalars(
        select(PolicyVersion).where(
            PolicyVersion.state == PolicyState.PROPOSED.value,
            PolicyVersion.version < row.version,
        )
    )
    for stale in older:
        stale.state, stale.decided_at = PolicyState.SUPERSEDED.value, now
        stale.revision += 1
    row.state, row.decided_at, row.activated_at = PolicyState.ACTIVE.value, now, now
    session.flush()
    transparency.log_policy(session, row)
    audit.record(
        session,
        "policies:version:activate",
        actor=actor,
        request_id=request_id,
        subject_id=row.id,
        details={
            "version": row.version,
            "sha256": row.sha256,
            "superseded_version": previous.version if previous is not None else None,
        },
    )


def vote(
    session: Session,
    actor: Actor,
    config: Mapping[str, Any],
    number: int,
    *,
    decision: str,
    reason_code: str,
    text: str = "",
    if_match: str | None,
    request_id: str | None,
) -> dict[str, Any]:
    """Record a board member's vote or comment on a version; activate it on the quorum.

    :param number: the version's number.
    :param decision: ``approve``, ``request_changes``, ``reject`` or ``comment``.
    :param reason_code: one of :data:`policies.REASON_CODES` for the decision.
    :param text: the member's words (required with some codes).
    :param if_match: the ETag the member read.
    :raises PreconditionRequired: without ``if_match``; :raises PreconditionFailed: when stale.
    :raises BoardRefusal: when the board's rules refuse it; nothing is recorded.
    """
    principal = acting_principal(actor, PROPOSE_SCOPE if decision == "comment" else VOTE_SCOPE)
    active_policy(session, config)
    row = _row(session, number)
    expected = _expected_revision(if_match, row)
    try:
        # Vote checks a decision given as text itself (bad_decision), as the API hands it over.
        ballot = Vote(principal.id, cast("Decision", decision), reason_code, text)
    except VoteRefused as error:
        raise _refusal(error) from None
    # Take the version: one conditional UPDATE, which waits for a concurrent writer's commit
    # (PostgreSQL's row lock, SQLite's write lock) and then finds the revision moved on.
    taken = session.execute(
        update(PolicyVersion)
        .where(PolicyVersion.id == row.id, PolicyVersion.revision == expected)
        .values(revision=expected + 1)
        .execution_options(synchronize_session=False)
    )
    if cast("CursorResult[Any]", taken).rowcount != 1:
        session.rollback()
        raise PreconditionFailed(
            f"policy version {number} changed while your request was on its way; read it again",
            etag=etag(_row(session, number)),
        )
    row = _row(session, number)
    review = _review(row, _votes(session, row), board_quorum(config))
    try:
        if ballot.counts and row.state != PolicyState.PROPOSED.value:
            raise VoteRefused("decided", f"policy version {number} is already {row.state}")
        review = review.cast(ballot, _board(session))
    except VoteRefused as error:
        session.rollback()
        raise _refusal(error) from None
    session.add(
        PolicyVote(
            policy_version_id=row.id,
            member_id=principal.id,
            decision=ballot.decision.value,
            reason_code=reason_code,
            remark=text,
        )
    )
    # The reason code, never the member's words: they are for the board, not the trail.
    audit.record(
        session,
        "policies:version:comment" if not ballot.counts else "policies:version:vote",
        actor=principal,
        request_id=request_id,
        subject_id=row.id,
        details={"version": number, "decision": ballot.decision.value, "reason_code": reason_code},
    )
    outcome = policy_state(review.state)
    try:
        if row.state == PolicyState.PROPOSED.value and outcome is PolicyState.ACTIVE:
            _activate(session, row, principal, request_id)
        elif row.state == PolicyState.PROPOSED.value and outcome is not PolicyState.PROPOSED:
            row.state, row.decided_at = outcome.value, utcnow()
            audit.record(
                session,
                f"policies:version:{outcome.value}",
                actor=principal,
                request_id=request_id,
                subject_id=row.id,
                details={"version": number, "reason_code": reason_code},
            )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return show(session, principal, number, config)


def _version_json(row: PolicyVersion) -> dict[str, Any]:
    return {
        "version": row.version,
        "state": row.state,
        "sha256": row.sha256,
        "proposed_by": row.proposed_by,
        "proposer_name": row.proposer_name,
        "rationale": row.rationale,
        "created_at": row.created_at.isoformat(),
        "decided_at": row.decided_at.isoformat() if row.decided_at else None,
        "activated_at": row.activated_at.isoformat() if row.activated_at else None,
        "superseded_at": row.superseded_at.isoformat() if row.superseded_at else None,
        "revision": row.revision,
        "etag": etag(row),
    }


def list_versions(session: Session, actor: Actor, config: Mapping[str, Any]) -> dict[str, Any]:
    """Return every policy version, newest first, with the active one's number."""
    authorize(actor, READ_SCOPE)
    active = active_policy(session, config)
    rows = session.scalars(select(PolicyVersion).order_by(PolicyVersion.version.desc()))
    listed = {"active_version": active.version, "versions": [_version_json(r) for r in rows]}
    session.rollback()  # read only
    return listed


def show(
    session: Session, actor: Actor, number: int | None, config: Mapping[str, Any]
) -> dict[str, Any]:
    """Return one version (the active one for ``None``): its document, its review and the
    changes it makes to the active version, one readable line each.

    :raises hub.domain_errors.NotFound: if there is no such version.
    """
    authorize(actor, READ_SCOPE)
    active = active_policy(session, config)
    row = _row(session, active.version if number is None else number)
    policy = parse_stored(row)
    review = _review(row, votes := _votes(session, row), board_quorum(config))
    changes = diff_policies(active.policy, policy) if row.version != active.version else []
    shown = {
        **_version_json(row),
        "active_version": active.version,
        "document": row.document,
        "policy": policy.to_json(),
        "review": {
            "quorum": review.quorum,
            "approvals": list(review.approvals),
            "needed": review.needed() if row.state == PolicyState.PROPOSED.value else 0,
            "votes": [
                {
                    "member_id": v.member_id,
                    "decision": v.decision,
                    "reason_code": v.reason_code,
                    "text": v.remark,
                    "at": v.created_at.isoformat(),
                }
                for v in votes
            ],
        },
        "diff_against_active": {
            "active_version": active.version,
            "changes": [
                {"path": c.path, "old": c.old, "new": c.new, "note": c.note, "text": str(c)}
                for c in changes
            ],
            "text": format_diff(changes),
        },
    }
    session.rollback()  # read only
    return shown


def version_trail(session: Session, actor: Actor, number: int) -> list[dict[str, Any]]:
    """Return the audit trail of one version: proposed, each vote and comment, its decision.

    :raises hub.domain_errors.NotFound: if there is no such version.
    """
    authorize(actor, READ_SCOPE)
    events = audit.trail(session, [_row(session, number).id])
    session.rollback()  # read only
    return events
