"""Uploads of case records: ``/v1/uploads``."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, Schema
from apiflask.fields import Boolean, DateTime, Dict, Integer, List, Nested, String
from apiflask.validators import Length, Range
from flask import current_app, request

from hub.api import current_actor
from hub.auth import require_scope
from hub.crypto import keyring
from hub.db import get_session
from hub.errors import request_id
from hub.guards import accepts_upload_body
from hub.models import Upload
from hub.services import uploads as service

bp = APIBlueprint("uploads", __name__, url_prefix="/v1/uploads", tag="Uploads")


class ReceiptSchema(Schema):
    """The receipt of an upload."""

    id = String(metadata={"description": "The upload's id."})
    organisation = String(metadata={"description": "Id of the uploading organisation."})
    status = String(metadata={"description": "accepted, or withdrawn"})
    sha256 = String(metadata={"description": "SHA-256 of the body as received (hex)."})
    media_type = String()
    size_bytes = Integer()
    rows_total = Integer()
    rows_accepted = Integer()
    rows_rejected = Integer()
    accept_valid = Boolean()
    file_rows_total = Integer(
        allow_none=True,
        metadata={
            "description": "Rows of the partner's whole file, when its toolkit sent only the "
            "rows it accepted (null: the file was sent whole)."
        },
    )
    rows_rejected_locally = Integer(
        allow_none=True,
        metadata={"description": "Rows the partner's toolkit refused before sending."},
    )
    local_rejections = Dict(
        allow_none=True,
        metadata={
            "description": "Why those rows were refused: bad cells tallied by field and reason "
            "(never a value)."
        },
    )
    rows_held_back = Integer(
        allow_none=True,
        metadata={
            "description": "Of the rows refused on the partner's machine, those held back "
            "because their consent to research use is not given (reason codes in "
            "local_rejections.held_back); null: the file was sent whole."
        },
    )
    lawful_basis = String(
        allow_none=True,
        metadata={
            "description": "The lawful basis the partner declared for the upload (consent, "
            "legal_obligation, vital_interests, public_task, legitimate_interests); null for an "
            "upload made before the hub recorded it."
        },
    )
    rows_forgotten = Integer(
        metadata={
            "description": "Records of this upload removed since at the partner's request "
            "(cases forgotten); the hub holds rows_accepted - rows_forgotten of them."
        }
    )
    created_at = DateTime()
    withdrawn_at = DateTime(allow_none=True)
    report = Dict(metadata={"description": "Validation report: counts and row errors."})


class ForgetSchema(Schema):
    """A case to forget."""

    case = String(
        required=True,
        validate=Length(min=1, max=200),
        metadata={
            "description": "The case's pseudonym, made by the partner's toolkit with the key its "
            "uploads use (`ctdhub-contribute forget CASE_ID`). It travels in the body, never "
            "in the address."
        },
    )


class ForgottenSchema(Schema):
    """What forgetting a case did."""

    records_removed = Integer(metadata={"description": "The case's records removed."})
    uploads = List(
        String(), metadata={"description": "The uploads re-sealed without them (empty: repeat)."}
    )
    repeated = Boolean(
        metadata={"description": "The case had been forgotten before; nothing changed now."}
    )


class ReceiptListSchema(Schema):
    """A page of receipts."""

    uploads = List(Nested(ReceiptSchema))


class UploadQuerySchema(Schema):
    """Query parameters of an upload."""

    accept_valid = Boolean(
        load_default=False,
        metadata={"description": "Store the valid rows even if some rows fail (default: no)."},
    )


class PageQuerySchema(Schema):
    """Paging of a list."""

    limit = Integer(load_default=100, validate=Range(1, 1000))
    # Bounded so it always fits the databases' 64-bit integers (an unbounded one was a 500).
    offset = Integer(load_default=0, validate=Range(0, 2**31 - 1))


def receipt(upload: Upload) -> dict[str, Any]:
    """Serialise an upload's receipt."""
    return {
        "id": upload.id,
        "organisation": upload.organisation_id,
        "status": "withdrawn" if upload.withdrawn_at is not None else "accepted",
        "sha256": upload.sha256,
        "media_type": upload.media_type,
        "size_bytes": upload.size_bytes,
        "rows_total": upload.rows_total,
        "rows_accepted": upload.rows_accepted,
        "rows_rejected": upload.rows_rejected,
        "accept_valid": upload.accept_valid,
        "file_rows_total": upload.file_rows_total,
        "rows_rejected_locally": upload.rows_rejected_locally,
        "local_rejections": upload.local_rejections,
        "rows_held_back": _rows_held_back(upload),
        "lawful_basis": upload.lawful_basis,
        "rows_forgotten": upload.rows_forgotten,
        "created_at": upload.created_at,
        "withdrawn_at": upload.withdrawn_at,
        "report": upload.report,
    }


def _rows_held_back(upload: Upload) -> int | None:
    if upload.local_rejections is None:
        return None
    return sum(int(item["rows"]) for item in upload.local_rejections.get("held_back", []))


@bp.post("")
@accepts_upload_body
@require_scope("records:write")
@bp.input(UploadQuerySchema, location="query", arg_name="query")
@bp.output(ReceiptSchema, status_code=201, description="Stored (200 if seen before)")
@bp.doc(
    summary="Upload case records (CSV, JSON or XLSX body)",
    description=(
        "The body is the file itself. Send `Idempotency-Key` to make retries safe and "
        "`Content-Digest: sha-256=:<base64>:` to have the hub check the body arrived whole. "
        "422 answers carry the validation report; nothing is stored unless every row passes "
        "or `accept_valid=true`. A partner toolkit that sends only the rows it accepted "
        "reports the rest in the `Local-Rejections` header (JSON: `file_rows_total`, "
        "`rows_rejected`, `error_count`, `reasons` [{`field`, `reason`, `cells`}] tallying "
        "every bad cell, and `held_back` [{`reason`, `rows`}] the rows kept back for want of "
        "consent to research use, reason `consent_not_given` or `consent_not_recorded`); the "
        "receipt records them. `Lawful-Basis` declares the basis the records are sent under "
        "(`consent`, the default, `legal_obligation`, `vital_interests`, `public_task` or "
        "`legitimate_interests`); the receipt and the audit trail record it. When the partners "
        "link records, the toolkit adds a `linkageEncoding` column: each case's keyed linkage "
        "encoding (128 bytes, standard base64; empty for none). It is no field of the record "
        "schema: the hub seals it with the records and uses it only to count people across "
        "partners; a bad cell is refused with `linkage_errors` [{`row`, `field`, `reason`}]."
    ),
    responses={409: "Idempotency-Key reused", 413: "Too large", 422: "Validation failed"},
)
def create_upload(query: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Receive, check, seal and store an upload."""
    body, sha = service.receive_body(
        iter(lambda: request.stream.read(1 << 16), b""),
        request.content_length,
        request.headers.get("Content-Digest"),
        current_app.config["MAX_UPLOAD_BYTES"],
    )
    outcome = service.ingest(
        get_session(),
        current_actor(),
        body,
        sha,
        media_type=request.headers.get("Content-Type", ""),
        idempotency_key=request.headers.get("Idempotency-Key"),
        accept_valid=query["accept_valid"],
        keyring=keyring(current_app),
        request_id=request_id(),
        read_limits=service.read_limits(current_app.config),
        local_rejections=request.headers.get(service.LOCAL_REJECTIONS_HEADER),
        lawful_basis=request.headers.get(service.LAWFUL_BASIS_HEADER),
    )
    return receipt(outcome.upload), 201 if outcome.created else 200


@bp.get("")
@require_scope("records:read")
@bp.input(PageQuerySchema, location="query", arg_name="page")
@bp.output(ReceiptListSchema)
@bp.doc(summary="List your organisation's uploads, newest first")
def list_uploads(page: dict[str, Any]) -> dict[str, Any]:
    """List the caller's organisation's receipts."""
    uploads = service.list_uploads(
        get_session(), current_actor(), limit=page["limit"], offset=page["offset"]
    )
    return {"uploads": [receipt(u) for u in uploads]}


@bp.get("/<id:upload_id>")
@require_scope("records:read")
@bp.output(ReceiptSchema)
@bp.doc(summary="Show one of your organisation's uploads", responses={404: "Not found"})
def get_upload(upload_id: str) -> dict[str, Any]:
    """Show a receipt."""
    return receipt(service.get_upload(get_session(), current_actor(), upload_id))


@bp.delete("/<id:upload_id>")
@require_scope("records:write")
@bp.output(ReceiptSchema)
@bp.doc(
    summary="Withdraw an upload: its data key is destroyed; receipt and audit trail remain",
    responses={404: "Not found"},
)
def withdraw_upload(upload_id: str) -> dict[str, Any]:
    """Withdraw an upload."""
    return receipt(
        service.withdraw(get_session(), current_actor(), upload_id, request_id=request_id())
    )


@bp.post("/forget")
@require_scope("records:write")
@bp.input(ForgetSchema, arg_name="body")
@bp.output(ForgottenSchema)
@bp.doc(
    summary="Forget one case: its records leave every one of your uploads, for good",
    description=(
        "For a survivor who withdrew consent or asked to be forgotten. Every upload of your "
        "organisation holding the case is sealed again without its records, under a new data "
        "key; the old data key is destroyed in the same transaction, and the audit trail names "
        "the case by a digest of its pseudonym only. Later snapshots, queries and releases do "
        "not see it; each receipt's `rows_forgotten` counts what left. Asking again answers "
        "`repeated: true`."
    ),
    responses={400: "Not a pseudonym", 404: "None of your uploads holds the case"},
)
def forget_case(body: dict[str, Any]) -> dict[str, Any]:
    """Forget one case."""
    outcome = service.forget_case(
        get_session(),
        current_actor(),
        body["case"],
        keyring=keyring(current_app),
        request_id=request_id(),
    )
    return {
        "records_removed": outcome.records_removed,
        "uploads": list(outcome.upload_ids),
        "repeated": outcome.repeated,
    }
