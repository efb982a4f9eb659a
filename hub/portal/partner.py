"""A partner's pages: their organisation's uploads, receipts and reports; upload; withdraw.

The same service functions as ``/v1/uploads`` do the work with the signed-in person's actor, so
the checks, the report and the organisation boundary are the API's: a person of one partner is
answered "not found" for another partner's upload, as a client of the API is.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from contributors.formats import EXTENSIONS
from hub.crypto import keyring
from hub.db import get_session
from hub.domain_errors import (
    HubError,
    InvalidInput,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from hub.errors import request_id
from hub.guards import accepts_upload_body, body_slot
from hub.portal.access import current_actor, needs
from hub.services import uploads as service

#: The media type the upload service reads for each file extension a browser may send.
_MEDIA_BY_FORMAT = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json",
    "jsonl": "application/x-ndjson",
}
PAGE = 100


def register(bp: Blueprint) -> None:
    """Attach the partner pages to the portal's blueprint."""
    bp.add_url_rule("/partner/uploads", "uploads", uploads)
    bp.add_url_rule("/partner/uploads/<id:upload_id>", "upload", upload)
    bp.add_url_rule("/partner/uploads/new", "new_upload", new_upload, methods=["GET", "POST"])
    bp.add_url_rule(
        "/partner/uploads/<id:upload_id>/withdraw",
        "withdraw_upload",
        withdraw_upload,
        methods=["POST"],
    )


@needs("records:read")
def uploads() -> ResponseReturnValue:
    """The organisation's uploads, newest first."""
    listed = service.list_uploads(get_session(), current_actor(), limit=PAGE)
    return render_template("portal/uploads.html", uploads=listed)


@needs("records:read")
def upload(upload_id: str) -> ResponseReturnValue:
    """One receipt with its validation report."""
    found = service.get_upload(get_session(), current_actor(), upload_id)
    return render_template("portal/upload.html", upload=found, report=found.report)


def media_type_of(filename: str, declared: str | None) -> str:
    """Return the media type to read a browser's file as: by its extension, else as declared.

    Browsers label files from the operating system's guess (a CSV is often
    ``application/vnd.ms-excel``), so the extension decides when it is one the hub reads.

    >>> media_type_of("cases.CSV", "application/vnd.ms-excel")
    'text/csv'
    >>> media_type_of("cases", "application/json")
    'application/json'
    """
    table_format = EXTENSIONS.get(PurePath(filename).suffix.lower())
    if table_format is not None:
        return _MEDIA_BY_FORMAT[table_format]
    return declared or ""


@accepts_upload_body
@needs("records:write")
def new_upload() -> ResponseReturnValue:
    """Upload a file from the browser: the API's checks, the report shown per row and field."""
    if request.method == "GET":
        return render_template("portal/new_upload.html")
    with body_slot():
        return _receive()


def _receive() -> ResponseReturnValue:
    sent = request.files.get("file")
    accept_valid = request.form.get("accept_valid") == "yes"
    if sent is None or not sent.filename:
        return _refused(InvalidInput("choose a file to upload", field="file"), accept_valid)
    config = current_app.config
    try:
        body, sha = service.receive_body(
            iter(lambda: sent.stream.read(1 << 16), b""),
            None,
            None,
            config["MAX_UPLOAD_BYTES"],
        )
        outcome = service.ingest(
            get_session(),
            current_actor(),
            body,
            sha,
            media_type=media_type_of(sent.filename, sent.mimetype),
            idempotency_key=None,
            accept_valid=accept_valid,
            keyring=keyring(current_app),
            request_id=request_id(),
            read_limits=service.read_limits(config),
        )
    except (ValidationFailed, InvalidInput, UnsupportedMediaType, PayloadTooLarge) as error:
        return _refused(error, accept_valid)
    return redirect(
        url_for("portal.upload", upload_id=outcome.upload.id, stored=int(outcome.created)), 303
    )


def _refused(error: HubError, accept_valid: bool) -> ResponseReturnValue:
    report: dict[str, Any] | None = error.extensions.get("report")
    return (
        render_template(
            "portal/new_upload.html",
            error=error,
            report=report,
            accept_valid=accept_valid,
        ),
        error.status,
    )


@needs("records:write")
def withdraw_upload(upload_id: str) -> ResponseReturnValue:
    """Withdraw an upload: its records are destroyed; the receipt stays."""
    service.withdraw(get_session(), current_actor(), upload_id, request_id=request_id())
    return redirect(url_for("portal.upload", upload_id=upload_id), 303)
