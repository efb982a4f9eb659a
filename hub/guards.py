"""What every request passes before and after its view: body caps, the bound on bodies in
flight, rate limits, and the security headers of every answer.

Kept in one place so that a reviewer can see every limit the hub puts on a client. Each limit
comes from a setting (``config/settings.toml``) and is checked in the order that costs the hub
least: the declared length against the cap before anything is read, the bearer token before
a body is read (in :func:`hub.auth.require_scope`), and a slot among the bodies in flight
before the view reads one.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from flask import Flask, Response, current_app, request
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter, RateLimitExceeded, RequestLimit
from flask_limiter.util import get_remote_address

from hub.domain_errors import HubError
from hub.errors import problem

log = logging.getLogger("ctdhub.security")

F = TypeVar("F", bound=Callable[..., ResponseReturnValue])

_LIMITER = "ctdhub.limiter"
_BODY_SLOTS = "ctdhub.body_slots"

#: The Content-Security-Policy of every answer. The docs page loads Swagger UI's script and
#: style from /docs/assets (same origin) and has no inline script (its start-up is
#: /static/docs.js), so scripts run only from the hub itself. Swagger UI sets inline styles on
#: its elements and shows its logo from a data: URL.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)


class TooBusy(HubError):
    """The hub is already reading as many request bodies as it allows; retry shortly."""

    status, slug, title = 429, "too-busy", "Too many requests in flight"


def accepts_upload_body(view: F) -> F:
    """Mark a view whose body may be as large as ``MAX_UPLOAD_BYTES`` (others: a JSON cap)."""
    view._ctdhub_upload_body = True  # type: ignore[attr-defined]  # read by _cap_body
    return view


def init_app(app: Flask) -> Limiter:
    """Install the body caps, the bound on bodies in flight, the limiter and the headers."""
    app.extensions[_BODY_SLOTS] = threading.BoundedSemaphore(app.config["MAX_BODIES_IN_FLIGHT"])
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=app.config["RATELIMIT_STORAGE_URL"],
        headers_enabled=False,  # Retry-After on 429 only: see _rate_limited
        strategy="moving-window",
        key_prefix="ctdhub",
        on_breach=_log_breach,
    )
    app.extensions[_LIMITER] = limiter
    app.register_error_handler(RateLimitExceeded, _rate_limited)
    app.before_request(_cap_body)
    app.after_request(_security_headers)
    return limiter


def limiter() -> Limiter:
    """Return the current app's rate limiter."""
    found: Limiter = current_app.extensions[_LIMITER]
    return found


def _cap_body() -> None:
    view = current_app.view_functions.get(request.endpoint or "")
    large = getattr(view, "_ctdhub_upload_body", False)
    # Werkzeug refuses a declared length over the cap with 413 before reading anything, and
    # stops reading a chunked body at the cap.
    request.max_content_length = current_app.config[
        "MAX_UPLOAD_BYTES" if large else "MAX_JSON_BODY_BYTES"
    ]


def has_body() -> bool:
    """Tell whether the request carries a body (declared by length or by chunked encoding)."""
    return (
        bool(request.content_length)
        or "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    )


@contextmanager
def body_slot() -> Iterator[None]:
    """Hold one of the process's ``MAX_BODIES_IN_FLIGHT`` slots while a body is read and used.

    :raises TooBusy: (429 with Retry-After) if every slot is taken; nothing is read.
    """
    slots: threading.BoundedSemaphore = current_app.extensions[_BODY_SLOTS]
    if not slots.acquire(blocking=False):
        log.warning(
            "security: body refused, %d bodies already in flight: %s %s from %s",
            current_app.config["MAX_BODIES_IN_FLIGHT"],
            request.method,
            request.path,
            request.remote_addr,
        )
        raise TooBusy(
            f"the hub is reading {current_app.config['MAX_BODIES_IN_FLIGHT']} request bodies "
            "already; retry after the number of seconds in Retry-After",
            retry_after=current_app.config["RETRY_AFTER_SECONDS"],
        )
    try:
        yield
    finally:
        slots.release()


def with_body_slot(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    """Run ``view`` holding a body slot when the request carries a body."""

    @functools.wraps(view)
    def bounded(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        if not has_body():
            return view(*args, **kwargs)
        with body_slot():
            return view(*args, **kwargs)

    return bounded


def _rate_limited(error: RateLimitExceeded) -> Response:
    current = limiter().current_limit
    wait = max(1, math.ceil(current.reset_at - time.time())) if current is not None else 60
    return problem(
        429,
        "Too many requests",
        f"too many attempts ({error.description}); retry after the seconds in Retry-After",
        "too-many-requests",
        retry_after=wait,
    )


def _log_breach(limit: RequestLimit) -> None:
    log.warning(
        "security: rate limit %s exceeded for %s on %s %s",
        limit.limit,
        limit.key,
        request.method,
        request.path,
    )


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if request.path.startswith(("/v1", "/oauth")):
        # Answers carry receipts, reports, tokens and DP answers: no cache may keep them.
        headers["Cache-Control"] = "no-store"
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    return response
