"""The portal's blueprint: its CSRF check, its error pages and its security headers."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any, cast

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from hub.actors import principal_scopes
from hub.domain_errors import HubError, NotAuthorized, NotFound, Unauthenticated
from hub.errors import request_id
from hub.portal.access import PUBLIC, current_person

log = logging.getLogger("ctdhub.errors")

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def make_blueprint() -> Blueprint:
    """Return a new portal blueprint (one per app) with its checks, headers and error pages."""
    bp = Blueprint("portal", __name__)
    # APIFlask reads this of every blueprint with request hooks: pages are not API operations.
    bp.enable_openapi = False  # type: ignore[attr-defined]
    bp.before_request(_check_csrf)
    bp.after_request(_headers)
    bp.register_error_handler(CSRFError, _csrf_refused)
    bp.register_error_handler(Unauthenticated, _sign_in_first)
    bp.register_error_handler(NotAuthorized, _forbidden)
    bp.register_error_handler(NotFound, _not_found)
    bp.register_error_handler(HubError, _other)
    bp.register_error_handler(HTTPException, _http_error)
    bp.register_error_handler(Exception, _unexpected)
    bp.context_processor(_signed_in)
    return bp


def _check_csrf() -> None:
    if request.method in _SAFE_METHODS:
        return
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, "_ctdhub_portal_needs", PUBLIC) != PUBLIC and current_person() is None:
        # Nobody signed in: refuse before a body (an upload) is read for the token check.
        raise Unauthenticated("sign in to send this form")
    # Every form of the portal posts a CSRF token; a request without a right one stops here.
    csrf: CSRFProtect = current_app.extensions["ctdhub.csrf"]
    csrf.protect()


def _headers(response: Response) -> Response:
    # Pages show a person's receipts, answers and budget: no shared cache may keep them.
    response.headers.setdefault("Cache-Control", "no-store")
    response.vary.add("Cookie")
    response.vary.add("Accept-Language")
    return response


def _csrf_refused(error: CSRFError) -> ResponseReturnValue:
    return render_template("portal/error.html", status=400, reason="csrf"), 400


def _sign_in_first(error: Unauthenticated) -> ResponseReturnValue:
    return redirect(url_for("portal.sign_in", next=request.full_path.rstrip("?")))


def _forbidden(error: NotAuthorized) -> ResponseReturnValue:
    return render_template("portal/error.html", status=403, reason="forbidden"), 403


def _not_found(error: NotFound) -> ResponseReturnValue:
    return render_template("portal/error.html", status=404, reason="not-found"), 404


def _other(error: HubError) -> ResponseReturnValue:
    # Details are the services' own sentences (never a record value); shown in English.
    return (
        render_template("portal/error.html", status=error.status, reason="other", detail=error),
        error.status,
    )


#: Paths whose errors stay problem+json whatever the client accepts.
_API_PREFIXES = ("/v1", "/oauth", "/openapi.json", "/docs", "/health", "/static")
_REASONS = {404: "not-found", 405: "not-found", 413: "too-large", 429: "too-many"}


def _http_error(error: HTTPException) -> ResponseReturnValue:
    status = error.code or 500
    response = make_response(
        render_template("portal/error.html", status=status, reason=_REASONS.get(status, "other")),
        status,
    )
    if status == 429:
        response.headers["Retry-After"] = str(60)
    return response


def _unexpected(error: Exception) -> ResponseReturnValue:
    # As hub.errors logs it: the type and the code locations, never the message (it may quote a
    # value); the page names the request id for the operators.
    frames = traceback.extract_tb(error.__traceback__)
    where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in frames[::-1])
    log.error("unexpected %s in request %s at %s", type(error).__name__, request_id(), where)
    page = render_template(
        "portal/error.html", status=500, reason="unexpected", request_reference=request_id()
    )
    return page, 500


def page_for_people(app: Flask) -> None:
    """Answer a browser asking for a page the hub does not have with the portal's error page.

    API paths, and clients that do not prefer HTML, keep hub.errors' problem+json answer.
    """
    api_mapper = cast(
        Callable[[HTTPException], ResponseReturnValue],
        app.error_handler_spec[None][None][HTTPException],
    )

    def _not_found(error: HTTPException) -> ResponseReturnValue:
        wants_html = (
            request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"
        )
        if request.path.startswith(_API_PREFIXES) or not wants_html:
            response: ResponseReturnValue = api_mapper(error)
            return response
        return _http_error(error)

    app.register_error_handler(404, _not_found)
    app.register_error_handler(405, _not_found)


def _signed_in() -> dict[str, Any]:
    person = current_person()
    scopes = principal_scopes(person.principal) if person is not None else frozenset()
    return {"portal_person": person, "portal_scopes": scopes}
