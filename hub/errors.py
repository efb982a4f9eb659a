"""The one place that turns the hub's domain errors into RFC 9457 problem+json responses.

Services raise the errors of :mod:`hub.domain_errors`;
views never build error responses themselves. A response never holds a stack trace or a record
value, and neither does the log line of an unexpected error.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from typing import Any

import sqlalchemy.exc
from flask import Flask, Response, g, json, request
from werkzeug.exceptions import HTTPException

from hub.domain_errors import HubError

__all__ = ["PROBLEM_JSON", "init_app", "problem", "request_id"]

log = logging.getLogger("ctdhub.errors")

PROBLEM_JSON = "application/problem+json"


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
    if "retry_after" in extensions:
        response.headers["Retry-After"] = str(extensions["retry_after"])
    return response


def _too_large() -> str:
    # The cap of this request's endpoint (hub.guards sets it per view).
    return f"the body is larger than {request.max_content_length} bytes"


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
            detail = _too_large()
        return problem(status, name, detail, _slugify(name))

    @app.errorhandler(RecursionError)
    def _too_deep(error: RecursionError) -> Response:
        # Raised by JSON parsers on a body nested thousands deep: a bad body, not a bug.
        log.warning("request %s: body nested too deeply to parse", request_id())
        return problem(
            400,
            "Invalid input",
            "the body is nested too deeply to read; send a flat JSON document",
            "invalid-input",
        )

    @app.errorhandler(sqlalchemy.exc.OperationalError)
    def _database_unreachable(error: sqlalchemy.exc.OperationalError) -> Response:
        # Only the type: the message may quote the statement's parameters.
        log.error("request %s: database unavailable (%s)", request_id(), type(error).__name__)
        return problem(
            503,
            "Service unavailable",
            "the hub's database cannot be reached; retry later",
            "service-unavailable",
            retry_after=app.config.get("RETRY_AFTER_SECONDS", 5),
        )

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
                else _too_large()
                if status == 413
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
