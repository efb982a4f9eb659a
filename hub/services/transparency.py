"""The public transparency log: every published release, policy version and privacy spend.

Each entry's body says what happened in ids, codes and numbers only: a release's version, its
policy version and batch set digest; a retraction; a policy version's digest; a privacy
spend's privacy unit, rho, epsilon at the policy's delta, the dataset's cap and what was left
after it, and the time from request to decision. A researcher's spend names neither the
researcher nor the question.

Entries are hash-chained: ``entry_hash = SHA-256(previous_hash || canonical JSON body)``, the
first entry's ``previous_hash`` being 64 zeros, and each hash may be followed once (a unique
index). Every entry is written in the transaction of what it records (:func:`log_spend`,
:func:`log_policy`, :func:`log_release`, :func:`log_retraction`), so the log holds a spend
exactly when the ledger holds its charge. Appends are serialised by the dataset's ledger row
lock (:func:`hub.services.ledger.lock_dataset`), which a charge already holds: concurrent
spends, activations and publications make one chain on SQLite and PostgreSQL alike.
:func:`backfill` adds, once, the entries a log written before this rule lacks; :func:`verify`
recomputes the chain, compares every body with the record it was made from and finds records
without an entry, so a history rewritten in the log, or in the records beneath it, is detected.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from disclosure_control.dp import rho_to_epsilon
from disclosure_control.person import PrivacyUnit
from hub.models import (
    PolicyVersion,
    PublishedRelease,
    QueryAnswer,
    ReleaseCandidate,
    ReleaseVote,
    TransparencyEntry,
)
from hub.services import ledger

GENESIS = "0" * 64
RELEASE, RETRACTION, POLICY, SPEND = "release", "retraction", "policy_version", "privacy_spend"
#: How the n-th charge (n > 1) of one query answer is named: a failed measurement asked again
#: is charged again on the same answer row.
_RECHARGE = "{answer}/{charge}"


def canonical(body: Mapping[str, Any]) -> str:
    """Return the canonical JSON text of an entry's body (sorted keys, no spaces).

    >>> canonical({"b": 1, "a": [1.5, None]})
    '{"a":[1.5,null],"b":1}'
    """
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)


def chain(previous_hash: str, body: Mapping[str, Any]) -> str:
    """Return an entry's hash from the previous entry's hash and its body."""
    return hashlib.sha256((previous_hash + canonical(body)).encode()).hexdigest()


def _when(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else round((end - start).total_seconds(), 3)


@dataclass(frozen=True)
class _Source:
    """A record the log has an entry for: its kind, id, time and the entry's body (less the
    running figures, which depend on the entries before it)."""

    kind: str
    source_id: str
    at: datetime
    body: dict[str, Any]
    rho: Fraction


def _release_source(release: PublishedRelease, candidate: ReleaseCandidate) -> _Source:
    body = {
        "release": release.id,
        "version": release.version,
        "policy_version": release.policy_version,
        "policy_digest": release.policy_digest,
        "batch_set_digest": release.snapshot_id,
        "published_at": _when(release.published_at),
        "seconds_from_request_to_decision": _seconds(candidate.created_at, release.published_at),
    }
    return _Source(RELEASE, release.id, release.published_at, body, Fraction(0))


def _retraction_source(session: Session, release: PublishedRelease) -> _Source:
    assert release.retracted_at is not None  # noqa: S101 - only retracted releases are passed
    # The retraction was asked for by the first member to speak on it.
    asked = session.scalar(
        select(func.min(ReleaseVote.cast_at)).where(
            ReleaseVote.motion == "retract", ReleaseVote.subject_id == release.id
        )
    )
    body = {
        "release": release.id,
        "version": release.version,
        "retracted_at": _when(release.retracted_at),
        "seconds_from_request_to_decision": _seconds(asked, release.retracted_at),
    }
    return _Source(RETRACTION, release.id, release.retracted_at, body, Fraction(0))


def _policy_source(version: PolicyVersion) -> _Source:
    assert version.activated_at is not None  # noqa: S101 - only activated versions are passed
    body = {
        "policy_version": version.version,
        "policy_digest": version.sha256,
        "activated_at": _when(version.activated_at),
        "seconds_from_request_to_decision": _seconds(version.created_at, version.decided_at),
    }
    return _Source(POLICY, version.id, version.activated_at, body, Fraction(0))


def _candidate_source(candidate: ReleaseCandidate, display_delta: float) -> _Source:
    rho = ledger.exact(candidate.rho)
    body = _spend_body(
        "release candidate",
        candidate.kind,
        rho,
        Fraction(0),
        display_delta,
        candidate_unit(candidate),
    ) | {
        "release_candidate": candidate.id,
        "charged_at": _when(candidate.created_at),
    }
    return _Source(SPEND, candidate.id, candidate.created_at, body, rho)


def _answer_source(answer: QueryAnswer, display_delta: float, charge: int = 1) -> _Source:
    rho = ledger.exact(answer.rho)
    # The researcher and the question are left out: a count of spends and their sizes only.
    unit = (answer.answer or {}).get("privacy_unit", _RECORD_UNIT)
    body = _spend_body(
        "researcher query", "query", rho, ledger.exact(answer.delta), display_delta, unit
    )
    if charge == 1:
        return _Source(
            SPEND,
            answer.id,
            answer.created_at,
            body | {"charged_at": _when(answer.created_at)},
            rho,
        )
    charged_at = answer.charged_at or answer.created_at
    body |= {"charged_at": _when(charged_at)}
    return _Source(SPEND, _RECHARGE.format(answer=answer.id, charge=charge), charged_at, body, rho)


_RECORD_UNIT = "case record"
"""How the log has always named the case-record unit (entries written before the person unit)."""


def candidate_unit(candidate: ReleaseCandidate) -> str:
    """The privacy unit a candidate was charged under, as its charge recorded it.

    Candidates charged before the unit was recorded name it through the policy document they
    keep (full releases) or are case-record candidates (the log's old name for them).
    """
    parameters = candidate.parameters or {}
    if isinstance(parameters.get("privacy_unit"), str):
        return str(parameters["privacy_unit"])
    policy = parameters.get("policy")
    privacy = policy.get("privacy") if isinstance(policy, dict) else None
    if isinstance(privacy, dict) and privacy.get("unit") == "person":
        return PrivacyUnit(int(privacy["records_per_person"])).description
    return _RECORD_UNIT


def _spend_body(
    who: str, kind: str, rho: Fraction, key_delta: Fraction, display_delta: float, unit: str
) -> dict[str, Any]:
    return {
        "spender": who,
        "kind": kind,
        "privacy_unit": unit,
        "rho": float(rho),
        "rho_exact": ledger.decimal_text(rho),
        "epsilon": rho_to_epsilon(float(rho), display_delta) if rho > 0 else 0.0,
        "delta": display_delta + float(key_delta),
        "display_delta": display_delta,
        # Queries and release builds are decided in the request or job that asked for them.
        "seconds_from_request_to_decision": None,
    }


def _sources(session: Session, display_delta: float) -> Iterator[_Source]:
    """Yield every record the log describes, as the hub holds it now (a query answer charged
    more than once: its first charge only, :func:`verify` and :func:`backfill` say why)."""
    for release in session.execute(select(PublishedRelease)).scalars():
        yield _release_source(release, session.get_one(ReleaseCandidate, release.candidate_id))
        if release.retracted_at is not None:
            yield _retraction_source(session, release)
    for version in session.execute(select(PolicyVersion)).scalars():
        if version.activated_at is not None:
            yield _policy_source(version)
    for candidate in session.execute(select(ReleaseCandidate)).scalars():
        yield _candidate_source(candidate, display_delta)
    for answer in session.execute(select(QueryAnswer)).scalars():
        yield _answer_source(answer, display_delta)


def _tail(session: Session) -> TransparencyEntry | None:
    return session.execute(
        select(TransparencyEntry).order_by(TransparencyEntry.seq.desc()).limit(1)
    ).scalar_one_or_none()


def _append(session: Session, kind: str, source_id: str, body: dict[str, Any]) -> None:
    """Chain ``body`` onto the log's tail in the caller's transaction (which holds the lock)."""
    tail = _tail(session)
    seq, previous = (0, GENESIS) if tail is None else (tail.seq, tail.entry_hash)
    session.add(
        TransparencyEntry(
            seq=seq + 1,
            kind=kind,
            source_id=source_id,
            body=body,
            previous_hash=previous,
            entry_hash=chain(previous, body),
        )
    )
    session.flush()


def _running(cap_rho: Fraction, spent: Fraction) -> dict[str, Any]:
    left = max(cap_rho - spent, Fraction(0))
    return {
        "cap_rho": float(cap_rho),
        "left_rho": float(left),
        "left_rho_exact": ledger.decimal_text(left),
    }


def log_spend(
    session: Session, spender: QueryAnswer | ReleaseCandidate, policy: ledger.BudgetPolicy
) -> None:
    """Log a charge just made to the dataset's ledger, in the charge's transaction.

    The caller holds the ledger's lock (:func:`hub.services.ledger.lock` or ``lock_dataset``)
    and has flushed the charge: the entry states the cap and what the ledger has left after it.

    :param spender: the query answer or release candidate the charge pays for (flushed).
    :param policy: the caps the charge was admitted under.
    """
    if isinstance(spender, ReleaseCandidate):
        source = _candidate_source(spender, policy.display_delta)
    else:
        charges = session.scalar(
            select(func.count())
            .select_from(TransparencyEntry)
            .where(
                TransparencyEntry.kind == SPEND,
                (TransparencyEntry.source_id == spender.id)
                | TransparencyEntry.source_id.startswith(f"{spender.id}/"),
            )
        )
        source = _answer_source(spender, policy.display_delta, int(charges or 0) + 1)
    spent, _delta = ledger.dataset_spent(session)
    _append(session, SPEND, source.source_id, source.body | _running(policy.dataset_rho, spent))


def log_policy(session: Session, version: PolicyVersion) -> None:
    """Log a policy version's activation, in its transaction (locks the dataset's ledger).

    :param version: the version just made active (flushed).
    """
    ledger.lock_dataset(session)
    source = _policy_source(version)
    _append(session, POLICY, source.source_id, source.body)


def log_release(session: Session, release: PublishedRelease, candidate: ReleaseCandidate) -> None:
    """Log a publication, in its transaction (locks the dataset's ledger).

    :param release: the release just published (flushed).
    :param candidate: the candidate it publishes.
    """
    ledger.lock_dataset(session)
    source = _release_source(release, candidate)
    _append(session, RELEASE, source.source_id, source.body)


def log_retraction(session: Session, release: PublishedRelease) -> None:
    """Log a release's retraction, in its transaction (locks the dataset's ledger).

    :param release: the release just retracted (its ``retracted_at`` set).
    """
    ledger.lock_dataset(session)
    session.flush()
    source = _retraction_source(session, release)
    _append(session, RETRACTION, source.source_id, source.body)


def _missing(session: Session, display_delta: float) -> list[_Source]:
    """Return the records the log has no entry for, oldest first."""
    logged = set(session.execute(select(TransparencyEntry.kind, TransparencyEntry.source_id)).all())
    return sorted(
        (s for s in _sources(session, display_delta) if (s.kind, s.source_id) not in logged),
        key=lambda s: (s.at, s.kind, s.source_id),
    )


def backfill(session: Session) -> int:
    """Append, once and oldest first, an entry for every record a log written before entries
    were made in their records' transactions lacks; commit and return how many.

    Spends take the active policy's cap (none: no cap is stated) and what was left by the sum
    of the spends logged before them, as that log did.
    """
    from hub.services.policies import ActivePolicy, budget_policy, parse_stored

    if not _missing(session, _display_delta(session)):
        session.rollback()
        return 0
    ledger.lock_dataset(session)
    active = session.execute(
        select(PolicyVersion).where(PolicyVersion.state == "active")
    ).scalar_one_or_none()
    cap: Fraction | None = None
    display = 1e-6
    if active is not None:
        policy = ActivePolicy(
            active.version, parse_stored(active), active.sha256, active.id, active.document
        )
        cap, display = budget_policy(policy).dataset_rho, policy.policy.privacy.display_delta
    missing = _missing(session, display)
    spent = sum(
        (
            Fraction(str(body["rho_exact"]))
            for body in session.execute(
                select(TransparencyEntry.body).where(TransparencyEntry.kind == SPEND)
            ).scalars()
        ),
        Fraction(0),
    )
    for source in missing:
        body = dict(source.body)
        if source.kind == SPEND:
            spent += source.rho
            body |= _running(cap, spent) if cap is not None else {"cap_rho": None}
        _append(session, source.kind, source.source_id, body)
    session.commit()
    return len(missing)


def published_log(session: Session) -> list[dict[str, Any]]:
    """Return the public log, oldest entry first (read only)."""
    shown = entries(session)
    session.rollback()
    return shown


def entries(session: Session) -> list[dict[str, Any]]:
    """Return the log, oldest entry first."""
    rows = session.execute(select(TransparencyEntry).order_by(TransparencyEntry.seq)).scalars()
    return [
        {
            "seq": row.seq,
            "kind": row.kind,
            "logged_at": row.logged_at.isoformat(),
            "body": row.body,
            "previous_hash": row.previous_hash,
            "entry_hash": row.entry_hash,
        }
        for row in rows
    ]


def _display_delta(session: Session) -> float:
    from hub.services.policies import parse_stored

    active = session.execute(
        select(PolicyVersion).where(PolicyVersion.state == "active")
    ).scalar_one_or_none()
    return 1e-6 if active is None else parse_stored(active).privacy.display_delta


def _recorded(session: Session, row: TransparencyEntry, display: float) -> _Source | None:
    """Return the record ``row`` describes, as the hub holds it now (``None``: it is gone).

    A spend is compared at the display delta its entry states (a later policy may state
    epsilon at another); an entry written before entries stated it, at the active policy's.
    """
    at = float(row.body.get("display_delta", display)) if row.kind == SPEND else display
    if row.kind == SPEND and "/" in row.source_id:
        answer_id, charge = row.source_id.split("/", 1)
        answer = session.get(QueryAnswer, answer_id)
        return None if answer is None else _answer_source(answer, at, int(charge))
    if row.kind == SPEND:
        answer = session.get(QueryAnswer, row.source_id)
        if answer is not None:
            return _answer_source(answer, at)
        candidate = session.get(ReleaseCandidate, row.source_id)
        return None if candidate is None else _candidate_source(candidate, at)
    if row.kind in (RELEASE, RETRACTION):
        release = session.get(PublishedRelease, row.source_id)
        if release is None:
            return None
        if row.kind == RETRACTION:
            return None if release.retracted_at is None else _retraction_source(session, release)
        return _release_source(release, session.get_one(ReleaseCandidate, release.candidate_id))
    version = session.get(PolicyVersion, row.source_id)
    return None if version is None or version.activated_at is None else _policy_source(version)


#: Keys a later charge of the same query answer changes in its record: a re-charge's entry
#: keeps the time it was charged at, which the answer row no longer holds once charged again.
_RECHARGE_VOLATILE = frozenset({"charged_at"})


def verify(session: Session) -> list[str]:
    """Recompute the chain, compare every entry with the record it describes, and find records
    the log has no entry for.

    :returns: what is wrong, one line per problem (none: the history is as it was logged).
    """
    problems: list[str] = []
    previous = GENESIS
    expected_seq = 1
    display = _display_delta(session)
    for row in session.execute(select(TransparencyEntry).order_by(TransparencyEntry.seq)).scalars():
        where = f"entry {row.seq}"
        if row.seq != expected_seq:
            problems.append(f"{where}: entries are missing before it (expected {expected_seq})")
        expected_seq = row.seq + 1
        if row.previous_hash != previous:
            problems.append(f"{where}: its previous hash is not the hash of the entry before it")
        if chain(row.previous_hash, row.body) != row.entry_hash:
            problems.append(f"{where}: its body does not match its hash (rewritten)")
        previous = row.entry_hash
        source = _recorded(session, row, display)
        if source is None:
            problems.append(f"{where}: the {row.kind} it records no longer exists")
            continue
        for key, value in source.body.items():
            if key == "display_delta" and key not in row.body:
                continue  # an entry written before entries stated it
            if "/" in row.source_id and key in _RECHARGE_VOLATILE:
                continue
            if row.body.get(key) != value:
                problems.append(f"{where}: its {key} differs from the hub's record")
    for source in _missing(session, display):
        problems.append(f"the {source.kind} {source.source_id} has no entry in the log")
    session.rollback()
    return problems
