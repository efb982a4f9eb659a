"""The public transparency log: every published release, policy version and privacy spend.

Each entry's body says what happened in ids, codes and numbers only: a release's version, its
policy version and batch set digest; a policy version's digest; a privacy spend's privacy unit,
rho, epsilon at the policy's delta, the dataset's cap and what was left after it, and the time
from request to decision. A researcher's spend names neither the researcher nor the question.

Entries are hash-chained: ``entry_hash = SHA-256(previous_hash || canonical JSON body)``, the
first entry's ``previous_hash`` being 64 zeros, and each hash may be followed once (a unique
index). The log is brought up to date from the hub's own records (:func:`sync`) whenever it is
read, so no service has to remember to write it; :func:`verify` recomputes the chain and compares
every body with the record it was made from, so a history rewritten in the log, or in the records
beneath it, is detected.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from disclosure_control.dp import rho_to_epsilon
from hub.models import (
    PolicyVersion,
    PublishedRelease,
    QueryAnswer,
    ReleaseCandidate,
    TransparencyEntry,
)
from hub.services import ledger
from hub.services.policies import active_policy, budget_policy

GENESIS = "0" * 64
RELEASE, POLICY, SPEND = "release", "policy_version", "privacy_spend"


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


def _sources(session: Session, display_delta: float) -> Iterator[_Source]:
    """Yield every record the log describes, as the hub holds it now."""
    for release in session.execute(select(PublishedRelease)).scalars():
        candidate = session.get_one(ReleaseCandidate, release.candidate_id)
        yield _Source(
            RELEASE,
            release.id,
            release.published_at,
            {
                "release": release.id,
                "version": release.version,
                "policy_version": release.policy_version,
                "policy_digest": release.policy_digest,
                "batch_set_digest": release.snapshot_id,
                "published_at": _when(release.published_at),
                "seconds_from_request_to_decision": _seconds(
                    candidate.created_at, release.published_at
                ),
            },
            Fraction(0),
        )
    for version in session.execute(select(PolicyVersion)).scalars():
        if version.activated_at is None:
            continue
        yield _Source(
            POLICY,
            version.id,
            version.activated_at,
            {
                "policy_version": version.version,
                "policy_digest": version.sha256,
                "activated_at": _when(version.activated_at),
                "seconds_from_request_to_decision": _seconds(
                    version.created_at, version.decided_at
                ),
            },
            Fraction(0),
        )
    for candidate in session.execute(select(ReleaseCandidate)).scalars():
        rho = ledger.exact(candidate.rho)
        yield _Source(
            SPEND,
            candidate.id,
            candidate.created_at,
            _spend_body("release candidate", candidate.kind, rho, Fraction(0), display_delta)
            | {"release_candidate": candidate.id, "charged_at": _when(candidate.created_at)},
            rho,
        )
    for answer in session.execute(select(QueryAnswer)).scalars():
        rho = ledger.exact(answer.rho)
        # The researcher and the question are left out: a count of spends and their sizes only.
        yield _Source(
            SPEND,
            answer.id,
            answer.created_at,
            _spend_body("researcher query", "query", rho, ledger.exact(answer.delta), display_delta)
            | {"charged_at": _when(answer.created_at)},
            rho,
        )


def _spend_body(
    who: str, kind: str, rho: Fraction, key_delta: Fraction, display_delta: float
) -> dict[str, Any]:
    return {
        "spender": who,
        "kind": kind,
        "privacy_unit": "case record",
        "rho": float(rho),
        "rho_exact": ledger.decimal_text(rho),
        "epsilon": rho_to_epsilon(float(rho), display_delta) if rho > 0 else 0.0,
        "delta": display_delta + float(key_delta),
        # Queries and release builds are decided in the request or job that asked for them.
        "seconds_from_request_to_decision": None,
    }


def _tail(session: Session) -> TransparencyEntry | None:
    return session.execute(
        select(TransparencyEntry).order_by(TransparencyEntry.seq.desc()).limit(1)
    ).scalar_one_or_none()


def sync(session: Session, cap_rho: Fraction) -> int:
    """Append an entry for every record the log lacks, oldest first; return how many.

    A concurrent sync that appended first wins; this one then adds nothing (it is re-run on the
    next read).

    :param cap_rho: the dataset's cap, stated in each spend entry with what was left after it.
    """
    logged = {
        (kind, source_id)
        for kind, source_id in session.execute(
            select(TransparencyEntry.kind, TransparencyEntry.source_id)
        ).all()
    }
    display = _display_delta(session)
    missing = sorted(
        (s for s in _sources(session, display) if (s.kind, s.source_id) not in logged),
        key=lambda s: (s.at, s.kind, s.source_id),
    )
    if not missing:
        session.rollback()
        return 0
    tail = _tail(session)
    spent = _spent_so_far(session)
    seq, previous = (0, GENESIS) if tail is None else (tail.seq, tail.entry_hash)
    for source in missing:
        body = dict(source.body)
        if source.kind == SPEND:
            spent += source.rho
            left = max(cap_rho - spent, Fraction(0))
            body |= {
                "cap_rho": float(cap_rho),
                "left_rho": float(left),
                "left_rho_exact": ledger.decimal_text(left),
            }
        seq += 1
        entry_hash = chain(previous, body)
        session.add(
            TransparencyEntry(
                seq=seq,
                kind=source.kind,
                source_id=source.source_id,
                body=body,
                previous_hash=previous,
                entry_hash=entry_hash,
            )
        )
        previous = entry_hash
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return 0
    return len(missing)


def _spent_so_far(session: Session) -> Fraction:
    total = Fraction(0)
    for body in session.execute(
        select(TransparencyEntry.body).where(TransparencyEntry.kind == SPEND)
    ).scalars():
        total += Fraction(str(body["rho_exact"]))
    return total


def _display_delta(session: Session) -> float:
    from hub.services.policies import parse_stored

    active = session.execute(
        select(PolicyVersion).where(PolicyVersion.state == "active")
    ).scalar_one_or_none()
    return 1e-6 if active is None else parse_stored(active).privacy.display_delta


def published_log(
    session: Session, config: Mapping[str, Any], request_id: str | None = None
) -> list[dict[str, Any]]:
    """Bring the log up to date under the active policy's cap, then return it, oldest first.

    :param config: the hub's settings (to adopt the first release policy if there is none).
    :param request_id: the HTTP request's id, for the audit event of such an adoption.
    """
    active = active_policy(session, config, request_id)
    sync(session, budget_policy(active, config).dataset_rho)
    return entries(session)


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


def verify(session: Session) -> list[str]:
    """Recompute the chain and compare every entry with the record it describes.

    :returns: what is wrong, one line per problem (none: the history is as it was logged).
    """
    problems: list[str] = []
    previous = GENESIS
    expected_seq = 1
    sources = {(s.kind, s.source_id): s for s in _sources(session, _display_delta(session))}
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
        source = sources.get((row.kind, row.source_id))
        if source is None:
            problems.append(f"{where}: the {row.kind} it records no longer exists")
            continue
        for key, value in source.body.items():
            if row.body.get(key) != value:
                problems.append(f"{where}: its {key} differs from the hub's record")
    session.rollback()
    return problems
