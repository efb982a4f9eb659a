"""Domain errors, and the one place that turns them into RFC 9457 problem+json responses.

Services raise these; views never build error responses themselves. A response never holds a
stack trace or a record value, and neither does the log line of an unexpected error.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from typing import Any

from flask import Flask, Response, g, json, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger("ctdhub.errors")

PROBLEM_JSON = "application/problem+json"


class HubError(Exception):
    """Base of the hub's domain errors: each maps to one HTTP status and problem type."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class InvalidInput(HubError):
    """The request is malformed (a parameter or header is wrong)."""

    status, slug, title = 400, "invalid-input", "Invalid input"


class Unauthenticated(HubError):
    """No valid access token was presented."""

    status, slug, title = 401, "unauthenticated", "Authentication required"


class NotAuthorized(HubError):
    """The principal is authenticated but may not do this."""

    status, slug, title = 403, "not-authorized", "Not authorized"


class NotFound(HubError):
    """The object does not exist, or is not visible to this principal."""

    status, slug, title = 404, "not-found", "Not found"


class Conflict(HubError):
    """The request conflicts with the current state (e.g. a reused Idempotency-Key)."""

    status, slug, title = 409, "conflict", "Conflict"


class PayloadTooLarge(HubError):
    """The body is larger than the configured cap."""

    status, slug, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(HubError):
    """The body's media type is not one the hub reads."""

    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class ServiceUnavailable(HubError):
    """The hub is not configured to do this (e.g. it has no key-encryption key)."""

    status, slug, title = 503, "service-unavailable", "Service unavailable"


class ValidationFailed(HubError):
    """The records do not pass the record schema or the identifier screen."""

    status, slug, title = 422, "validation-failed", "Validation failed"


def request_id() -> str:
    """Return this request's id (made on first use)."""
    if "request_id" not in g:
        g.request_id = str(uuid.uuid4())
    rid: str = g.request_id
    return rid


def problem(status: int, title: str, detail: str, slug: str, **extensions: Any) -> Response:
    """Build an RFC 9457 problem+json response carrying the request id."""
    body: dict[str, Any] = {
        "type": f"urn:ctdhub:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.path,
        "request_id": request_id(),
    }
    body.update(extensions)
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="ctdhub"'
    return response


def _slugify(name: str) -> str:
    return name.lower().replace(" ", "-").replace("'", "")


def init_app(app: Flask) -> None:
    """Register the error mappers and the request-id header."""

    @app.errorhandler(HubError)
    def _hub_error(error: HubError) -> Response:
        return problem(error.status, error.title, error.detail, error.slug, **error.extensions)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        name = error.name or "Error"
        detail = error.description or name
        if status == 413:
            detail = f"the body is larger than {app.config['MAX_UPLOAD_BYTES']} bytes"
        return problem(status, name, detail, _slugify(name))

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        # Only the exception's type and the code locations: its message may quote a value.
        frames = traceback.extract_tb(error.__traceback__)
        where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in frames[::-1])
        log.error("unexpected %s in request %s at %s", type(error).__name__, request_id(), where)
        return problem(
            500,
            "Internal error",
            "The hub could not complete the request; quote the request_id to its operators.",
            "internal-error",
        )

    processor = getattr(app, "error_processor", None)
    if processor is not None:
        # APIFlask's own errors (request parsing against the declared schemas).
        def _api_error(error: Any) -> tuple[dict[str, Any], int, dict[str, str]]:
            status = int(error.status_code)
            body: dict[str, Any] = {
                "type": f"urn:ctdhub:problem:{'invalid-input' if status == 422 else 'error'}",
                "title": "Invalid input" if status == 422 else str(error.message),
                "status": status,
                "detail": "the request's parameters do not match the API's schema"
                if status == 422
                else str(error.message),
                "instance": request.path,
                "request_id": request_id(),
            }
            if error.detail:
                body["errors"] = error.detail
            headers = dict(error.headers or {})
            headers["Content-Type"] = PROBLEM_JSON
            return body, status, headers

        processor(_api_error)

    @app.after_request
    def _tag(response: Response) -> Response:
        response.headers["X-Request-ID"] = request_id()
        return response
