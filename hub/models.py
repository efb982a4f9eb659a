"""The hub's tables, as typed SQLAlchemy 2 models. Alembic migrations own the schema."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hub.storage import Base


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: give a timezone-aware UTC time")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """Return a fresh random identifier (a UUID4 string)."""
    return str(uuid.uuid4())


class Organisation(Base):
    """A partner NGO, research institute or the hub's own operator."""

    __tablename__ = "organisation"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    principals: Mapped[list[Principal]] = relationship(back_populates="organisation")


class Principal(Base):
    """A person or system acting for one organisation, with roles that map to scopes."""

    __tablename__ = "principal"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisation.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    # Space-separated role names (partner, researcher, board, admin).
    roles: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    organisation: Mapped[Organisation] = relationship(back_populates="principals")

    __table_args__ = (UniqueConstraint("organisation_id", "name"),)


class OAuthClient(Base):
    """OAuth 2 client credentials of a principal; the secret is kept only as a hash."""

    __tablename__ = "oauth_client"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(200))
    principal_id: Mapped[str] = mapped_column(ForeignKey("principal.id"), index=True)
    # Space-separated scopes this client may ask for (a subset of its principal's roles).
    scopes: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    secret_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    principal: Mapped[Principal] = relationship()


class OAuthToken(Base):
    """An issued access token; only its SHA-256 is stored."""

    __tablename__ = "oauth_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("oauth_client.client_id"), index=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principal.id"), index=True)
    scope: Mapped[str] = mapped_column(String(500))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    principal: Mapped[Principal] = relationship()


class Upload(Base):
    """One accepted upload of case records, with its receipt and validation summary."""

    __tablename__ = "upload"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisation.id"), index=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principal.id"))
    sha256: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    media_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(Integer)
    rows_total: Mapped[int] = mapped_column(Integer)
    rows_accepted: Mapped[int] = mapped_column(Integer)
    rows_rejected: Mapped[int] = mapped_column(Integer)
    accept_valid: Mapped[bool] = mapped_column(Boolean)
    # The validation report (counts, row/field/value-class/reason; never a value).
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    # When the partner's toolkit sent only the rows it accepted: the whole file's row count and
    # what it refused locally (counts and reasons, never a value). NULL: the file was sent whole.
    file_rows_total: Mapped[int | None] = mapped_column(Integer)
    rows_rejected_locally: Mapped[int | None] = mapped_column(Integer)
    local_rejections: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The lawful basis the partner declared for this upload (``contributors.consent``); NULL
    # for an upload made before the hub recorded it.
    lawful_basis: Mapped[str | None] = mapped_column(String(40))
    # Records of this upload removed since, one case at a time (a survivor asked to be
    # forgotten): the batch holds ``rows_accepted - rows_forgotten`` records.
    rows_forgotten: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    batch: Mapped[RecordBatch | None] = relationship(back_populates="upload")

    # A key names one upload of an organisation for good; a body is stored once among the
    # organisation's live uploads (a withdrawn body may be uploaded again).
    __table_args__ = (
        UniqueConstraint("organisation_id", "idempotency_key"),
        Index(
            "uq_upload_live_body",
            "organisation_id",
            "sha256",
            unique=True,
            sqlite_where=text("withdrawn_at IS NULL"),
            postgresql_where=text("withdrawn_at IS NULL"),
        ),
    )


class RecordBatch(Base):
    """An upload's normalised records: one Parquet file sealed with AES-GCM.

    The data key is wrapped by a key-encryption key named by ``key_id``; destroying
    ``wrapped_key`` (withdrawal) makes the ciphertext unreadable for good.
    """

    __tablename__ = "record_batch"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    upload_id: Mapped[str] = mapped_column(ForeignKey("upload.id"), unique=True)
    row_count: Mapped[int] = mapped_column(Integer)
    key_id: Mapped[str] = mapped_column(String(64))
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    upload: Mapped[Upload] = relationship(back_populates="batch")


class ForgottenCase(Base):
    """A case a partner asked the hub to forget, named by a digest of its pseudonym only.

    It makes a repeated request harmless (the case is no longer in any batch to be found) and
    says how many records were removed; the pseudonym itself is never stored.
    """

    __tablename__ = "forgotten_case"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisation.id"))
    pseudonym_sha256: Mapped[str] = mapped_column(String(64))
    records_removed: Mapped[int] = mapped_column(Integer)
    forgotten_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("organisation_id", "pseudonym_sha256"),)


class AuditEvent(Base):
    """A typed audit event (``source:subject:action``); never holds record contents."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tag: Mapped[str] = mapped_column(String(100), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The acting principal, or for the hub acting by itself the system actor's name.
    actor_id: Mapped[str | None] = mapped_column(String(36))
    actor_name: Mapped[str | None] = mapped_column(String(100))
    organisation_id: Mapped[str | None] = mapped_column(String(36), index=True)
    subject_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # The X-Request-ID of the answer that made the change, so the two can be matched.
    request_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # Counts, ids and codes only: no free text, so no record content can slip in.
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class PrivacyLedger(Base):
    """The privacy ledger of one dataset: everything DP releases and queries charged to it.

    Spends are zero-concentrated DP (rho) plus key selection's additive delta, kept as exact
    fractions (``"numerator/denominator"`` of the sum of every charged float), so a cap is never
    crossed by float rounding. The row is locked by every charge.
    """

    __tablename__ = "privacy_ledger"

    dataset: Mapped[str] = mapped_column(String(64), primary_key=True)
    spent_rho: Mapped[str] = mapped_column(Text, default="0")
    spent_delta: Mapped[str] = mapped_column(Text, default="0")
    charges: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ResearcherAllowance(Base):
    """What one researcher has spent of their allowance within a dataset's ledger (exact)."""

    __tablename__ = "researcher_allowance"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(ForeignKey("privacy_ledger.dataset"))
    principal_id: Mapped[str] = mapped_column(ForeignKey("principal.id"), index=True)
    spent_rho: Mapped[str] = mapped_column(Text, default="0")
    spent_delta: Mapped[str] = mapped_column(Text, default="0")
    charges: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("dataset", "principal_id"),)


class QueryAnswer(Base):
    """A DP answer given to a researcher, re-served free for the same spec and snapshot.

    ``answer`` holds released (noisy) values only; it is never written to a log or audit event.
    The row is written with the charge, ``measuring``, and committed before OpenDP runs; the
    answer follows (``answered``), or the measurement failed (``failed``, the charge stands).
    """

    __tablename__ = "query_answer"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    dataset: Mapped[str] = mapped_column(ForeignKey("privacy_ledger.dataset"))
    principal_id: Mapped[str] = mapped_column(ForeignKey("principal.id"), index=True)
    snapshot_id: Mapped[str] = mapped_column(String(64))
    # SHA-256 of the canonical JSON spec: the key under which the answer is re-served.
    spec_sha256: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    answer: Mapped[dict[str, Any]] = mapped_column(JSON)
    rho: Mapped[str] = mapped_column(Text)
    delta: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # measuring -> answered | failed; a failed (or abandoned) one is measured again only when
    # charged again. charged_at: when it was last charged. error: the failure's type, no text.
    state: Mapped[str] = mapped_column(String(16), default="answered", server_default="answered")
    charged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (UniqueConstraint("principal_id", "dataset", "snapshot_id", "spec_sha256"),)


class ReleaseCandidate(Base):
    """A release built from one snapshot, awaiting the governance board (never public as is).

    A DP synthetic candidate holds its fitted model (released, noisy values only) and the seed
    of its draw, so its table can be drawn again exactly; its spend is on the dataset's ledger.
    ``report`` is the evaluation report, computed against the real records: it is for the board
    and is not itself DP.
    """

    __tablename__ = "release_candidate"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32))
    dataset: Mapped[str] = mapped_column(ForeignKey("privacy_ledger.dataset"))
    snapshot_id: Mapped[str] = mapped_column(String(64))
    # building -> candidate, or failed (the charge stands: the records may have been measured).
    status: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str | None] = mapped_column(ForeignKey("principal.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    rho: Mapped[str] = mapped_column(Text)
    spend: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    model: Mapped[str | None] = mapped_column(Text)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    artefacts: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(String(200))
    # A full release candidate (kind ``release``, issue 13): the policy version it was built
    # under and that document's SHA-256, the batch set (``snapshot_id`` is its digest), and the
    # policy checks' results. Its status runs building -> candidate | blocked | failed, then
    # candidate -> published | rejected by the board's votes.
    policy_version: Mapped[int | None] = mapped_column(Integer)
    policy_digest: Mapped[str | None] = mapped_column(String(64))
    batch_ids: Mapped[list[str] | None] = mapped_column(JSON)
    checks: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Job(Base):
    """Long work run by a queue worker, with its state and progress for ``/v1/jobs/{id}``.

    The queue (Huey) carries only the job's id; everything an app server answers with lives
    here. A running job holds a lease its worker renews; a job whose lease ran out was cut off
    (its worker died) and is failed or retried by the reaper. ``charged_at`` is set in the same
    transaction as a privacy charge, so a job that charged the ledger is never run twice.
    """

    __tablename__ = "job"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(64))
    # queued -> running -> succeeded | failed; running -> queued again only if nothing charged.
    state: Mapped[str] = mapped_column(String(16), index=True)
    stage: Mapped[str | None] = mapped_column(String(64))
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Who asked: a principal (with the scopes it acted under) or a named system actor.
    principal_id: Mapped[str | None] = mapped_column(ForeignKey("principal.id"), index=True)
    actor_name: Mapped[str | None] = mapped_column(String(100))
    scopes: Mapped[str] = mapped_column(String(500))
    request_id: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))
    charged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What the job made: e.g. {"release_candidate": id}. Ids only, never a record value.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Why it failed, as a reason code and the error's type: a message could quote a value.
    error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class KeyringState(Base):
    """The one row that orders sealing against key retirement (see :mod:`hub.services.keys`).

    An upload's transaction holds a shared lock on it from sealing to commit, and retirement
    an exclusive one, so no upload sealed under a key commits after that key's retirement.
    """

    __tablename__ = "keyring_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # How many retirements have run: written by each, which takes the exclusive lock.
    retirements: Mapped[int] = mapped_column(Integer, default=0)
    changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RetiredKey(Base):
    """A key-encryption key retired (destroyed from the keyring): nothing is sealed under it."""

    __tablename__ = "retired_key"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    retired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- release policies (hub.services.policies) --------------------------------------------------


class PolicyVersion(Base):
    """One version of the release policy: its YAML document as proposed, and where it stands.

    ``document`` is kept byte for byte as the board member wrote it, ``sha256`` is its digest.
    ``state`` is a :class:`policies.PolicyState`; at most one version is ``active``.
    ``revision`` counts every change of the version (a vote, a comment, a decision) and makes
    its ETag: a write names the revision it read and raises it by one in a conditional
    ``UPDATE``, so a write made meanwhile by someone else makes it stale.
    """

    __tablename__ = "policy_version"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    document: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(24))
    # The proposing board member, or for the first version the system actor that adopted it.
    proposed_by: Mapped[str | None] = mapped_column(ForeignKey("principal.id"), index=True)
    proposer_name: Mapped[str | None] = mapped_column(String(100))
    rationale: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revision: Mapped[int] = mapped_column(Integer, default=1)

    __table_args__ = (
        Index(
            "uq_policy_version_active",
            "state",
            unique=True,
            sqlite_where=text("state = 'active'"),
            postgresql_where=text("state = 'active'"),
        ),
    )


class PolicyVote(Base):
    """A board member's vote or comment on a policy version, with its reason code.

    A member votes once per version (a partial unique index backs the service's rule); comments
    are any number. ``remark`` is the member's own words to the board, never audited.
    """

    __tablename__ = "policy_vote"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    policy_version_id: Mapped[str] = mapped_column(ForeignKey("policy_version.id"), index=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("principal.id"))
    # A policies.Decision: approve, request_changes, reject or comment.
    decision: Mapped[str] = mapped_column(String(24))
    reason_code: Mapped[str] = mapped_column(String(32))
    remark: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index(
            "uq_policy_vote_one_per_member",
            "policy_version_id",
            "member_id",
            unique=True,
            sqlite_where=text("decision != 'comment'"),
            postgresql_where=text("decision != 'comment'"),
        ),
    )


class Person(Base):
    """Someone who signs in to the portal: a principal of an organisation, acting by hand.

    The principal carries the organisation and the roles, so a person's pages are authorised by
    exactly the service functions and scopes that authorise the API. The password is kept only
    as an Argon2id hash; the TOTP secret (second factor, required of board members and admins)
    only once the person has confirmed it with a first code.
    """

    __tablename__ = "person"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principal.id"), unique=True)
    # Lower-cased: the sign-in name.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    # NULL until the person accepts their invitation and chooses a password.
    password_hash: Mapped[str | None] = mapped_column(String(200))
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    # The last TOTP time step accepted, so one code is never accepted twice.
    totp_last_step: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Bumped by a password change or reset: sessions signed in before it stop working.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)

    principal: Mapped[Principal] = relationship()


class PersonLink(Base):
    """A one-time link for a person: an invitation or a password reset; only its SHA-256 kept."""

    __tablename__ = "person_link"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    person_id: Mapped[str] = mapped_column(ForeignKey("person.id"), index=True)
    # invitation | reset
    purpose: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# --- governance: the board's votes, published releases, the transparency log (issue 13) -------


class ReleaseVote(Base):
    """A board member's vote or comment on a motion: publish a candidate, or retract a release.

    One counting vote per member and motion, enforced by a unique index as well as by
    :mod:`policies.board`, so two concurrent second votes cannot both be recorded.
    """

    __tablename__ = "release_vote"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # ``publish`` (subject: a release candidate) or ``retract`` (subject: a published release).
    motion: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(36), index=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("principal.id"))
    decision: Mapped[str] = mapped_column(String(32))
    reason_code: Mapped[str] = mapped_column(String(32))
    # The member's own words (never a record value: the board sees only checked outputs).
    remark: Mapped[str] = mapped_column(Text, default="")
    counts: Mapped[bool] = mapped_column(Boolean)
    cast_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index(
            "uq_release_vote_one_per_member",
            "motion",
            "subject_id",
            "member_id",
            unique=True,
            sqlite_where=text("counts"),
            postgresql_where=text("counts"),
        ),
    )


class PublishedRelease(Base):
    """An immutable published release: its files, manifest and notes never change.

    Retraction (board quorum) sets ``retracted_at``, which hides the files; the record stays.
    ``tables`` keeps what each safe table published (cells and their status) so later
    candidates are checked against differencing with it; it is the hub's, not public.
    """

    __tablename__ = "published_release"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    candidate_id: Mapped[str] = mapped_column(ForeignKey("release_candidate.id"), unique=True)
    policy_version: Mapped[int] = mapped_column(Integer)
    policy_digest: Mapped[str] = mapped_column(String(64))
    # The digest of the batch set (:func:`hub.services.snapshot.snapshot_id`) and the set.
    snapshot_id: Mapped[str] = mapped_column(String(64))
    batch_ids: Mapped[list[str]] = mapped_column(JSON)
    # Relative path -> SHA-256 of every file.
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    notes: Mapped[dict[str, Any]] = mapped_column(JSON)
    tables: Mapped[list[Any]] = mapped_column(JSON)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retracted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TransparencyEntry(Base):
    """One entry of the public transparency log, hash-chained to the one before it.

    ``entry_hash`` is the SHA-256 of the previous entry's hash and this entry's canonical JSON
    body; a unique ``previous_hash`` lets each entry have one successor only.
    """

    __tablename__ = "transparency_entry"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(32))
    # What the entry is about (a release, a query answer, a policy version), unique per kind.
    source_id: Mapped[str] = mapped_column(String(64))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    previous_hash: Mapped[str] = mapped_column(String(64), unique=True)
    entry_hash: Mapped[str] = mapped_column(String(64))
    logged_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("kind", "source_id"),)
