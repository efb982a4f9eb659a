"""Ingest, list and withdraw uploads of case records.

An upload is stored whole or not at all: its receipt, validation report, sealed record batch and
audit event are written in one transaction. A body is identified by its SHA-256, so a body sent
twice is stored once, and an ``Idempotency-Key`` names one upload for good.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contributors import consent, formats
from contributors.consent import CONSENT_REASONS, DEFAULT_LAWFUL_BASIS, LAWFUL_BASES
from contributors.formats import FormatError, LimitExceeded, ReadLimits, read_table
from contributors.linkage import ENCODING_COLUMN, EncodingError, read_encodings
from contributors.normalise import ValidationResult, row_numbers, validate_records
from contributors.pseudonym import PSEUDONYM_PATTERN
from contributors.schema import RecordSchema, load_schema
from contributors.verdict import refusal
from hub import audit
from hub.actors import Actor, PrincipalActor, acting_principal
from hub.crypto import Keyring, SealedBatch, associated_data, open_batch, seal
from hub.domain_errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
    ValidationFailed,
)
from hub.models import ForgottenCase, RecordBatch, Upload, new_id, utcnow
from hub.services.keys import hold_seal_key
from hub.storage import checkpoint

log = logging.getLogger("ctdhub.uploads")

# What the reader takes, except text/plain: a client of the API says what it sends.
MEDIA_TYPES = {kind: fmt for kind, fmt in formats.MEDIA_TYPES.items() if kind != "text/plain"}
_DIGEST = re.compile(r"(?:^|,)\s*sha-256=:([A-Za-z0-9+/=]+):")
_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")
#: The request header in which a partner's toolkit reports the rows it refused before sending.
LOCAL_REJECTIONS_HEADER = "Local-Rejections"
#: The request header that declares the upload's lawful basis (one of ``LAWFUL_BASES``).
LAWFUL_BASIS_HEADER = consent.LAWFUL_BASIS_HEADER
_LOCAL_REJECTIONS_MAX_BYTES = 64 * 1024
_LOCAL_REASONS_MAX = 1000
# A reason is one of the normaliser's sentences (field names and public codes, never a value).
_REASON = re.compile(r"^[^\x00-\x1f\x7f]{1,300}$")


@dataclass(frozen=True)
class IngestOutcome:
    """The upload's receipt and whether this request stored it (False: seen before)."""

    upload: Upload
    created: bool


def read_capped(chunks: Iterable[bytes], max_bytes: int) -> tuple[bytes, str]:
    """Read a body chunk by chunk, hashing as it goes; refuse it past ``max_bytes``.

    >>> body, digest = read_capped([b"ab", b"c"], 10)
    >>> body, digest[:12]
    (b'abc', 'ba7816bf8f01')
    """
    hasher = hashlib.sha256()
    buffer = io.BytesIO()
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
        hasher.update(chunk)
        buffer.write(chunk)
    return buffer.getvalue(), hasher.hexdigest()


def receive_body(
    chunks: Iterable[bytes], content_length: int | None, digest: str | None, max_bytes: int
) -> tuple[bytes, str]:
    """Read an upload body under the size cap, hash it, and check the client's digest.

    :returns: the body and its SHA-256 (hex).
    :raises PayloadTooLarge: before reading, if the declared length is over the cap.
    """
    if content_length is not None and content_length > max_bytes:
        raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
    body, sha = read_capped(chunks, max_bytes)
    if not body:
        raise InvalidInput("the body is empty: send the file's bytes as the request body")
    check_digest(digest, sha)
    return body, sha


def read_limits(settings: Mapping[str, Any]) -> ReadLimits:
    """Return the table size limits the settings declare (``READ_MAX_ROWS`` ...)."""
    return ReadLimits(
        max_rows=int(settings["READ_MAX_ROWS"]),
        max_cells=int(settings["READ_MAX_CELLS"]),
        max_uncompressed_bytes=int(settings["XLSX_MAX_UNCOMPRESSED_BYTES"]),
        max_compression_ratio=int(settings["XLSX_MAX_COMPRESSION_RATIO"]),
    )


def check_digest(header: str | None, sha256_hex: str) -> None:
    """Compare an RFC 9530 ``Content-Digest`` header with the body's SHA-256, if one was sent."""
    if not header:
        return
    match = _DIGEST.search(header)
    if match is None:
        raise InvalidInput(
            "Content-Digest must carry a sha-256 digest, e.g. sha-256=:<base64>:",
            field="Content-Digest",
        )
    try:
        claimed = base64.b64decode(match.group(1), validate=True).hex()
    except binascii.Error:
        raise InvalidInput("Content-Digest's sha-256 is not valid base64") from None
    if claimed != sha256_hex:
        raise InvalidInput(
            "the body's SHA-256 does not match Content-Digest: it was altered or truncated",
            field="Content-Digest",
        )


def media_kind(media_type: str | None) -> str:
    """Map a Content-Type header to the format the reader parses."""
    base = (media_type or "").split(";", 1)[0].strip().lower()
    if base not in MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {base or '(none)'!r} is not accepted; send one of: "
            + ", ".join(MEDIA_TYPES)
        )
    return base


def _existing(session: Session, organisation_id: str, key: str | None, sha: str) -> Upload | None:
    if key is not None:
        by_key = session.scalar(
            select(Upload).where(
                Upload.organisation_id == organisation_id, Upload.idempotency_key == key
            )
        )
        if by_key is not None:
            if by_key.sha256 != sha:
                raise Conflict(
                    "this Idempotency-Key was used for a different body; use a new key for "
                    "new content",
                    upload_id=by_key.id,
                )
            return by_key
    return session.scalar(
        select(Upload).where(
            Upload.organisation_id == organisation_id,
            Upload.sha256 == sha,
            Upload.withdrawn_at.is_(None),
        )
    )


@dataclass(frozen=True)
class LocalRejections:
    """What a partner's toolkit refused before sending: the rest of the file is the body.

    :param file_rows_total: the data rows of the partner's whole file.
    :param rows_rejected: the rows refused on the partner's machine (not sent).
    :param error_count: the bad cells in those rows.
    :param reasons: ``(field, reason, cells)`` tallies of every one of those bad cells: their
        cells add up to ``error_count``.
    :param held_back: ``(reason code, rows)``: rows among ``rows_rejected`` kept on the
        partner's machine for want of consent to research use
        (:data:`contributors.consent.CONSENT_REASONS`).
    """

    file_rows_total: int
    rows_rejected: int
    error_count: int
    reasons: tuple[tuple[str, str, int], ...]
    held_back: tuple[tuple[str, int], ...] = ()

    @property
    def rows_held_back(self) -> int:
        """Return the rows held back for want of consent."""
        return sum(rows for _, rows in self.held_back)

    def as_dict(self) -> dict[str, Any]:
        """Return the account as stored on the receipt."""
        account: dict[str, Any] = {
            "error_count": self.error_count,
            "reasons": [
                {"field": field, "reason": reason, "cells": cells}
                for field, reason, cells in self.reasons
            ],
        }
        if self.held_back:
            account["held_back"] = [
                {"reason": reason, "rows": rows} for reason, rows in self.held_back
            ]
        return account


def _count(document: dict[str, Any], name: str) -> int:
    value = document.get(name)
    # bool is an int subclass; true is not a count
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput(
            f"{LOCAL_REJECTIONS_HEADER}: {name} must be a count (a whole number >= 0)",
            field=LOCAL_REJECTIONS_HEADER,
        )
    return value


def parse_local_rejections(header: str | None, schema: RecordSchema) -> LocalRejections | None:
    """Read the toolkit's account of the rows it refused before sending (JSON in one header).

    :param header: the header's value, or ``None`` when the file was sent whole.
    :param schema: the record schema, whose fields the reasons must name.
    :raises InvalidInput: naming the member that is malformed.

    >>> from contributors.schema import load_schema
    >>> text = ('{"file_rows_total": 5, "rows_rejected": 2, "error_count": 3, "reasons": '
    ...     '[{"field": "gender", "reason": "not one of the codes", "cells": 3}]}')
    >>> parse_local_rejections(text, load_schema()).reasons
    (('gender', 'not one of the codes', 3),)
    """
    if header is None:
        return None
    where = LOCAL_REJECTIONS_HEADER
    if len(header) > _LOCAL_REJECTIONS_MAX_BYTES:
        raise InvalidInput(f"{where} is longer than {_LOCAL_REJECTIONS_MAX_BYTES} bytes")
    try:
        document = json.loads(header)
    except ValueError:
        raise InvalidInput(f"{where} must be a JSON object", field=where) from None
    if not isinstance(document, dict):
        raise InvalidInput(f"{where} must be a JSON object", field=where)
    raw_reasons = document.get("reasons", [])
    if not isinstance(raw_reasons, list) or len(raw_reasons) > _LOCAL_REASONS_MAX:
        raise InvalidInput(
            f"{where}: reasons must be a list of at most {_LOCAL_REASONS_MAX} tallies", field=where
        )
    reasons: list[tuple[str, str, int]] = []
    for number, item in enumerate(raw_reasons, start=1):
        if not isinstance(item, dict):
            raise InvalidInput(f"{where}: reason {number} must be an object", field=where)
        field, reason = item.get("field"), item.get("reason")
        if not isinstance(field, str) or field not in schema:
            raise InvalidInput(
                f"{where}: reason {number} must name a field of the record schema", field=where
            )
        if not isinstance(reason, str) or not _REASON.match(reason):
            raise InvalidInput(
                f"{where}: reason {number} must be 1-300 characters, none a control character",
                field=where,
            )
        reasons.append((field, reason, _count(item, "cells")))
    rejections = LocalRejections(
        file_rows_total=_count(document, "file_rows_total"),
        rows_rejected=_count(document, "rows_rejected"),
        error_count=_count(document, "error_count"),
        reasons=tuple(reasons),
        held_back=_held_back(document.get("held_back", [])),
    )
    if rejections.rows_rejected > rejections.file_rows_total:
        raise InvalidInput(f"{where}: rows_rejected exceeds file_rows_total", field=where)
    if rejections.rows_held_back > rejections.rows_rejected:
        raise InvalidInput(
            f"{where}: the rows held_back are more than rows_rejected (they are among them)",
            field=where,
        )
    if sum(cells for _, _, cells in reasons) != rejections.error_count:
        raise InvalidInput(
            f"{where}: the reasons' cells must add up to error_count (every bad cell tallied)",
            field=where,
        )
    return rejections


def _held_back(raw: object) -> tuple[tuple[str, int], ...]:
    """Read the ``held_back`` member: one ``{reason, rows}`` per consent reason code."""
    where = LOCAL_REJECTIONS_HEADER
    if not isinstance(raw, list) or len(raw) > len(CONSENT_REASONS):
        raise InvalidInput(
            f"{where}: held_back must be a list of at most {len(CONSENT_REASONS)} tallies",
            field=where,
        )
    held: dict[str, int] = {}
    for number, item in enumerate(raw, start=1):
        if not isinstance(item, dict) or item.get("reason") not in CONSENT_REASONS:
            raise InvalidInput(
                f"{where}: held_back {number} must be an object whose reason is one of "
                + ", ".join(CONSENT_REASONS),
                field=where,
            )
        reason = str(item["reason"])
        if reason in held:
            raise InvalidInput(f"{where}: held_back names {reason} twice", field=where)
        held[reason] = _count(item, "rows")
    return tuple(held.items())


def parse_lawful_basis(header: str | None) -> str:
    """Read the ``Lawful-Basis`` header: one of the fixed bases; absent means consent.

    >>> parse_lawful_basis(None), parse_lawful_basis("public_task")
    ('consent', 'public_task')
    """
    if header is None:
        return DEFAULT_LAWFUL_BASIS
    if header not in LAWFUL_BASES:
        raise InvalidInput(
            f"{LAWFUL_BASIS_HEADER} must be one of {', '.join(LAWFUL_BASES)}",
            field=LAWFUL_BASIS_HEADER,
        )
    return header


def encode_batch(records: pd.DataFrame) -> bytes:
    """Serialise normalised records as Parquet, in memory."""
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(records, preserve_index=False), sink, compression="zstd")
    return sink.getvalue()


def decode_batch(data: bytes) -> pd.DataFrame:
    """Read a batch written by :func:`encode_batch` back into the same typed frame."""
    frame: pd.DataFrame = pq.read_table(io.BytesIO(data)).to_pandas()
    return frame


def ingest(
    session: Session,
    actor: Actor,
    body: bytes,
    sha256_hex: str,
    *,
    media_type: str,
    idempotency_key: str | None,
    accept_valid: bool,
    keyring: Keyring,
    request_id: str | None,
    read_limits: ReadLimits | None = None,
    local_rejections: str | None = None,
    lawful_basis: str | None = None,
) -> IngestOutcome:
    """Validate, seal and store an upload; return its receipt.

    :param actor: a partner's principal acting under ``records:write``.
    :param request_id: the HTTP request's id, recorded in the audit event.
    :param read_limits: the table's size limits (:func:`read_limits` of the settings).
    :param local_rejections: the ``Local-Rejections`` header: the partner's toolkit sent only
        the rows it accepted, and says how many it refused and why (see
        :func:`parse_local_rejections`); the receipt records the whole file's totals.
    :param lawful_basis: the ``Lawful-Basis`` header (:func:`parse_lawful_basis`), recorded on
        the receipt and in the audit event.
    :raises ValidationFailed: (422) with the report when the identifier screen, the columns or
        any row fails (unless ``accept_valid`` and some rows pass).
    :raises Conflict: (409) when ``idempotency_key`` was used for a different body.
    :raises PayloadTooLarge: (413) naming the limit a table or workbook is over.
    :raises ServiceUnavailable: (503 with Retry-After) when the key it was sealed under was
        retired meanwhile (``ctdhub keys rotate --retire``); nothing is stored.
    """
    principal = acting_principal(actor, "records:write").principal
    if idempotency_key is not None and not _KEY.match(idempotency_key):
        raise InvalidInput(
            "Idempotency-Key must be 1-200 visible ASCII characters", field="Idempotency-Key"
        )
    media = media_kind(media_type)
    schema = load_schema()
    local = parse_local_rejections(local_rejections, schema)
    basis = parse_lawful_basis(lawful_basis)
    organisation_id = principal.organisation_id
    seen = _existing(session, organisation_id, idempotency_key, sha256_hex)
    if seen is not None:
        return IngestOutcome(seen, created=False)

    try:
        frame = read_table(body, media_type=media, limits=read_limits)
    except LimitExceeded as error:
        raise PayloadTooLarge(str(error), limit=error.limit) from None
    except FormatError as error:
        raise ValidationFailed(f"the file could not be read: {error}") from None
    frame, encodings = _take_encodings(frame)

    result = validate_records(frame, schema)
    report = result.report.as_dict()
    if (
        local is not None
        and local.file_rows_total - local.rows_rejected != result.report.rows_total
    ):
        raise InvalidInput(
            f"{LOCAL_REJECTIONS_HEADER} says {local.file_rows_total - local.rows_rejected} rows "
            f"were sent, but the body holds {result.report.rows_total}",
            field=LOCAL_REJECTIONS_HEADER,
        )
    reason = refusal(result.report, accept_valid=accept_valid)
    if reason is not None:
        if result.report.identifier_findings:
            raise ValidationFailed(
                reason, identifier_findings=report["identifier_findings"], report=report
            )
        raise ValidationFailed(reason, report=report)
    _refuse_forgotten_cases(session, organisation_id, frame, result)

    upload_id = new_id()
    stored = result.records
    encoded = 0
    if encodings is not None:
        # Sealed with the records they belong to, under the batch's data key: a withdrawal or
        # a forgotten case takes them along, and only the snapshot's linkage ever reads them.
        kept = [e for e, accepted in zip(encodings, result.accepted_mask, strict=True) if accepted]
        encoded = sum(e is not None for e in kept)
        stored = stored.assign(
            **{ENCODING_COLUMN: pd.Series(kept, index=stored.index, dtype=object)}
        )
    sealed = seal(keyring, encode_batch(stored), associated_data(upload_id, organisation_id))
    upload = Upload(
        id=upload_id,
        organisation_id=organisation_id,
        principal_id=principal.id,
        sha256=sha256_hex,
        idempotency_key=idempotency_key,
        media_type=media,
        size_bytes=len(body),
        rows_total=result.report.rows_total,
        rows_accepted=result.report.rows_accepted,
        rows_rejected=result.report.rows_rejected,
        accept_valid=accept_valid,
        report=report,
        file_rows_total=local.file_rows_total if local is not None else None,
        rows_rejected_locally=local.rows_rejected if local is not None else None,
        local_rejections=local.as_dict() if local is not None else None,
        lawful_basis=basis,
        rows_forgotten=0,
    )
    batch = RecordBatch(
        upload_id=upload_id,
        row_count=result.report.rows_accepted,
        key_id=sealed.key_id,
        wrapped_key=sealed.wrapped_key,
        nonce=sealed.nonce,
        ciphertext=sealed.ciphertext,
    )
    session.add(upload)
    session.add(batch)
    audit.record(
        session,
        "ingest:upload:accept",
        actor=actor,
        request_id=request_id,
        subject_id=upload_id,
        details={
            "rows_total": upload.rows_total,
            "rows_accepted": upload.rows_accepted,
            "rows_rejected": upload.rows_rejected,
            "rows_rejected_locally": upload.rows_rejected_locally,
            "rows_held_back": local.rows_held_back if local is not None else 0,
            "lawful_basis": basis,
            "linkage_encodings": encoded,
            "size_bytes": upload.size_bytes,
            "sha256": sha256_hex,
        },
    )
    try:
        # Until the commit, no retirement of the sealing key can slip in (hub.services.keys).
        hold_seal_key(session, sealed.key_id)
        session.commit()
    except ServiceUnavailable:
        session.rollback()
        raise
    except IntegrityError:
        # A concurrent request stored the same key or body first: answer with its receipt.
        session.rollback()
        seen = _existing(session, organisation_id, idempotency_key, sha256_hex)
        if seen is None:
            raise
        return IngestOutcome(seen, created=False)
    return IngestOutcome(upload, created=True)


def _take_encodings(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[bytes | None] | None]:
    """Take the linkage encodings off an upload's table, one per row (``None``: no encoding).

    The column is no field of the record schema: the toolkit adds it when the partners link
    (``contributors.linkage``). ``None`` when the table has no such column or it is all empty.

    :raises ValidationFailed: naming each bad cell's row, the field and why (never its value);
        nothing is stored.
    """
    if ENCODING_COLUMN not in frame.columns:
        return frame, None
    cells = frame[ENCODING_COLUMN].fillna("").astype(str).tolist()
    try:
        # Numbered as the validation report numbers the file's rows (empty rows left out).
        encodings = read_encodings(cells, rows=row_numbers(frame).tolist())
    except EncodingError as error:
        raise ValidationFailed(
            str(error),
            linkage_errors=[
                {"row": row, "field": ENCODING_COLUMN, "reason": reason}
                for row, reason in error.problems[:1000]
            ],
        ) from None
    frame = frame.drop(columns=[ENCODING_COLUMN])
    if all(e is None for e in encodings):
        return frame, None
    return frame, encodings


def _refuse_forgotten_cases(
    session: Session, organisation_id: str, frame: pd.DataFrame, result: ValidationResult
) -> None:
    """Refuse records of cases the organisation asked the hub to forget: none comes back.

    :raises ValidationFailed: naming the rows (as the file counts them), never the pseudonyms.
    """
    forgotten = set(
        session.scalars(
            select(ForgottenCase.pseudonym_sha256).where(
                ForgottenCase.organisation_id == organisation_id
            )
        )
    )
    if not forgotten:
        return
    (case_field,) = load_schema().by_role("pseudonym")
    cases = result.records[case_field].fillna("").tolist()
    hits = [position for position, case in enumerate(cases) if pseudonym_digest(case) in forgotten]
    if not hits:
        return
    # The reader numbers data rows from 0 in the frame's index (empty rows left out).
    numbers = (np.asarray(frame.index)[result.accepted_mask][hits] + 1).tolist()
    shown = ", ".join(str(number) for number in numbers[:10])
    more = f" and {len(numbers) - 10} more" if len(numbers) > 10 else ""
    raise ValidationFailed(
        f"{len(hits)} row(s) hold a case your organisation asked the hub to forget (row(s) "
        f"{shown}{more}): a forgotten case is not taken again; remove those rows",
        report=result.report.as_dict(),
    )


def list_uploads(
    session: Session, actor: Actor, *, limit: int = 100, offset: int = 0
) -> Sequence[Upload]:
    """Return the acting principal's organisation's uploads, newest first."""
    principal = acting_principal(actor, "records:read")
    return session.scalars(
        select(Upload)
        .where(Upload.organisation_id == principal.organisation_id)
        .order_by(Upload.created_at.desc(), Upload.id)
        .limit(limit)
        .offset(offset)
    ).all()


def get_upload(session: Session, actor: Actor, upload_id: str) -> Upload:
    """Return one of the acting principal's organisation's uploads; another's is not found."""
    return _own_upload(session, acting_principal(actor, "records:read"), upload_id)


def _own_upload(session: Session, principal: PrincipalActor, upload_id: str) -> Upload:
    upload = session.get(Upload, upload_id)
    # Another partner's upload answers exactly as a missing one: its existence is not shown.
    if upload is None or upload.organisation_id != principal.organisation_id:
        raise NotFound(f"no upload {upload_id} among your organisation's uploads")
    return upload


def withdraw(session: Session, actor: Actor, upload_id: str, *, request_id: str | None) -> Upload:
    """Withdraw an upload: destroy its data key and ciphertext, keep receipt and audit trail.

    :param actor: a partner's principal acting under ``records:write``.
    :param request_id: the HTTP request's id, recorded in the audit event.
    """
    upload = _own_upload(session, acting_principal(actor, "records:write"), upload_id)
    if upload.withdrawn_at is not None:
        return upload
    now = utcnow()
    upload.withdrawn_at = now
    batch = upload.batch
    if batch is not None:
        batch.wrapped_key = None
        batch.ciphertext = None
        batch.destroyed_at = now
    audit.record(
        session,
        "ingest:upload:withdraw",
        actor=actor,
        request_id=request_id,
        subject_id=upload.id,
    )
    session.commit()
    # SQLite zeroes the freed pages (secure_delete); its log still holds them until this.
    if not checkpoint(session.get_bind().engine):
        log.warning("upload %s withdrawn; the WAL checkpoint waits for readers", upload.id)
    return upload


@dataclass(frozen=True)
class ForgetOutcome:
    """What forgetting one case did.

    :param records_removed: the case's records removed (at the first request).
    :param upload_ids: the uploads re-sealed without them (empty for a repeated request).
    :param repeated: the case had been forgotten before; nothing changed now.
    """

    records_removed: int
    upload_ids: tuple[str, ...]
    repeated: bool


def pseudonym_digest(pseudonym: str) -> str:
    """Name a case in the audit trail without its pseudonym: a domain-separated SHA-256.

    >>> len(pseudonym_digest("ab" * 32))
    64
    """
    return hashlib.sha256(f"ctdhub:forgotten-case:v1:{pseudonym}".encode()).hexdigest()


def forget_case(
    session: Session,
    actor: Actor,
    pseudonym: str,
    *,
    keyring: Keyring,
    request_id: str | None,
) -> ForgetOutcome:
    """Remove every record of one case from the acting partner's live uploads, for good.

    Each batch holding the case is opened, and sealed again without its records under a new
    data key, as a new batch row; the old row, with its wrapped data key, is deleted. The new
    batch id changes the analysis snapshot's id, so no cached snapshot, DP snapshot or release
    candidate built later sees the case. All of it, the upload's ``rows_forgotten`` count, a
    :class:`~hub.models.ForgottenCase` row and the audit event (the pseudonym's digest, never
    the pseudonym) are one transaction. A copy of the database made before still holds the old
    batch under its key-encryption key: ``ctdhub keys rotate --retire`` makes it unreadable.

    :param actor: a partner's principal acting under ``records:write``.
    :param pseudonym: the case's pseudonym, made by the partner's toolkit.
    :param request_id: the HTTP request's id, recorded in the audit event.
    :raises InvalidInput: if ``pseudonym`` is not one the toolkit makes.
    :raises NotFound: if no live upload of the partner holds the case (another partner's
        uploads are not searched, so the answer says nothing about them).
    :raises ServiceUnavailable: (503) if the active key was retired meanwhile; nothing changed.
    """
    principal = acting_principal(actor, "records:write").principal
    if not PSEUDONYM_PATTERN.match(pseudonym):
        raise InvalidInput(
            "case must be a case's pseudonym as the toolkit makes it (64 hexadecimal digits)",
            field="case",
        )
    organisation_id = principal.organisation_id
    digest = pseudonym_digest(pseudonym)
    try:
        outcome = _forget(session, actor, organisation_id, pseudonym, digest, keyring, request_id)
    except IntegrityError:
        # The same case forgotten by a concurrent request, which committed first.
        session.rollback()
        repeated = _forgotten_before(session, organisation_id, digest)
        if repeated is None:
            raise
        return repeated
    except BaseException:
        session.rollback()
        raise
    if not outcome.repeated and not checkpoint(session.get_bind().engine):
        log.warning("a case was forgotten; the WAL checkpoint waits for readers")
    return outcome


def _forgotten_before(session: Session, organisation_id: str, digest: str) -> ForgetOutcome | None:
    previous = session.scalar(
        select(ForgottenCase).where(
            ForgottenCase.organisation_id == organisation_id,
            ForgottenCase.pseudonym_sha256 == digest,
        )
    )
    if previous is None:
        return None
    return ForgetOutcome(previous.records_removed, (), repeated=True)


def _forget(
    session: Session,
    actor: Actor,
    organisation_id: str,
    pseudonym: str,
    digest: str,
    keyring: Keyring,
    request_id: str | None,
) -> ForgetOutcome:
    # First, the lock sealing takes: no retirement of the active key slips in before the
    # commit, and on SQLite the write lock is held from here, so two requests that re-seal the
    # same batch run one after the other (PostgreSQL: the batches' rows are locked below).
    hold_seal_key(session, keyring.active)
    # The partner's uploads are locked before anything is read, and each read after is a
    # statement of its own: on PostgreSQL a request that waited here sees what the one before
    # it committed (its forgotten case, its new batch rows), never a batch that is gone.
    session.execute(
        select(Upload.id)
        .where(Upload.organisation_id == organisation_id, Upload.withdrawn_at.is_(None))
        .with_for_update()
    ).all()
    previous = _forgotten_before(session, organisation_id, digest)
    if previous is not None:
        session.rollback()
        return previous
    (case_field,) = load_schema().by_role("pseudonym")
    rows = session.execute(
        select(RecordBatch, Upload)
        .join(Upload, Upload.id == RecordBatch.upload_id)
        .where(
            Upload.organisation_id == organisation_id,
            Upload.withdrawn_at.is_(None),
            RecordBatch.wrapped_key.is_not(None),
        )
        .order_by(Upload.created_at, Upload.id)
    ).all()
    removed = 0
    upload_ids: list[str] = []
    for batch, upload in rows:
        records = open_record_batch(keyring, batch, organisation_id)
        matches = records[case_field].eq(pseudonym).fillna(False).to_numpy(dtype=bool)
        count = int(matches.sum())
        if not count:
            continue
        kept = records[~matches].reset_index(drop=True)
        sealed = seal(keyring, encode_batch(kept), associated_data(upload.id, organisation_id))
        # The old row goes, wrapped data key and all, before its successor takes the upload.
        session.delete(batch)
        session.flush()
        session.expire(upload, ["batch"])
        session.add(
            RecordBatch(
                upload_id=upload.id,
                row_count=len(kept),
                key_id=sealed.key_id,
                wrapped_key=sealed.wrapped_key,
                nonce=sealed.nonce,
                ciphertext=sealed.ciphertext,
            )
        )
        upload.rows_forgotten += count
        removed += count
        upload_ids.append(upload.id)
    if not removed:
        session.rollback()
        raise NotFound("no case with this pseudonym among your organisation's uploads")
    session.add(
        ForgottenCase(
            organisation_id=organisation_id, pseudonym_sha256=digest, records_removed=removed
        )
    )
    audit.record(
        session,
        "ingest:case:forget",
        actor=actor,
        request_id=request_id,
        details={
            "pseudonym_sha256": digest,
            "records_removed": removed,
            "uploads": upload_ids,
        },
    )
    session.commit()
    return ForgetOutcome(removed, tuple(upload_ids), repeated=False)


def open_record_batch(keyring: Keyring, batch: RecordBatch, organisation_id: str) -> pd.DataFrame:
    """Decrypt one live batch into its normalised records."""
    if batch.wrapped_key is None or batch.ciphertext is None:
        raise NotFound(f"the records of upload {batch.upload_id} were withdrawn and destroyed")
    sealed = SealedBatch(
        ciphertext=batch.ciphertext,
        nonce=batch.nonce,
        wrapped_key=batch.wrapped_key,
        key_id=batch.key_id,
    )
    plaintext = open_batch(keyring, sealed, associated_data(batch.upload_id, organisation_id))
    return decode_batch(plaintext)
