"""The web portal: server-rendered pages for the public, partners, researchers and the board.

Views are thin, like the API's: they parse a form, call the same service function the API calls
with the signed-in person's actor (:func:`hub.portal.access.current_actor`) and render a
template. Every asset is served by the hub (no CDN: hubs run on closed networks), the pages carry
no inline script, and every form carries a CSRF token (Flask-WTF). Pages are in English, French,
Spanish and Arabic (:mod:`hub.portal.i18n`).
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

from flask import Flask
from flask_limiter import Limiter
from flask_wtf.csrf import CSRFProtect

from hub.portal import i18n

KEY_FILE_NAME = "portal-secret-key"


def secret_key(app: Flask) -> str:
    """Return the session-signing key: the setting, else the instance folder's (made once)."""
    configured: str = app.config["SECRET_KEY"]
    if configured:
        return configured
    path = Path(app.instance_path) / KEY_FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: of several workers starting at once, one writes the key and the others read it.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        key = secrets.token_urlsafe(48)
        handle.write(key)
    return key


def init_app(app: Flask, rate_limiter: Limiter) -> None:
    """Configure sessions, CSRF and languages, and register the portal's pages."""
    from hub.portal import account, board, oidc, partner, public, releases, researcher
    from hub.portal.blueprint import make_blueprint, page_for_people

    app.config["SECRET_KEY"] = secret_key(app)
    app.config.update(
        SESSION_COOKIE_NAME="ctdhub_session",
        SESSION_COOKIE_SECURE=bool(app.config["PORTAL_COOKIE_SECURE"]),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=app.config["PORTAL_SESSION_SECONDS"]),
        # The portal checks every unsafe request itself (hub.portal.blueprint); the API's
        # bearer-token endpoints take no cookie, so they need no CSRF token.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the signed session
        # Flask-WTF's HTTPS check compares the Referer with the host, but the hub sends no
        # Referer at all (Referrer-Policy: no-referrer, hub.guards); the session's token and
        # the SameSite cookie stand.
        WTF_CSRF_SSL_STRICT=False,
    )
    app.extensions["ctdhub.csrf"] = CSRFProtect(app)
    i18n.init_app(app)
    oidc.init_app(app)
    bp = make_blueprint()
    public.register(bp)
    releases.register(bp)
    account.register(bp, rate_limiter)
    partner.register(bp)
    researcher.register(bp)
    board.register(bp)
    app.register_blueprint(bp)
    page_for_people(app)
