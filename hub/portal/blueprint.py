"""The portal's blueprint: its CSRF check, its error pages and its security headers."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, CSRFProtect

from hub.actors import principal_scopes
from hub.domain_errors import HubError, NotAuthorized, NotFound, Unauthenticated
from hub.portal.access import PUBLIC, current_person

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


def _signed_in() -> dict[str, Any]:
    person = current_person()
    scopes = principal_scopes(person.principal) if person is not None else frozenset()
    return {"portal_person": person, "portal_scopes": scopes}
