"""Signing in through an external OpenID Connect provider, when the hub is configured for one.

Authlib's Flask client does the protocol: discovery, the authorization-code flow with state and
nonce, the token request, and the id_token's checks (signature against the provider's JWKS,
issuer, audience = our client id, expiry, nonce). The hub then maps one configured claim
(``PORTAL_OIDC_CLAIM``, the e-mail address by default) to a person it already has; nobody is
ever created here. Board members and admins still pass their TOTP second factor afterwards,
exactly as after a password.
"""

from __future__ import annotations

import logging
from typing import Any

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.flask_client import OAuth
from flask import Blueprint, Flask, Response, abort, current_app, render_template, url_for
from flask.typing import ResponseReturnValue
from joserfc.errors import JoseError

from hub.db import get_session
from hub.domain_errors import Unauthenticated
from hub.errors import request_id
from hub.portal.access import public
from hub.services import people

log = logging.getLogger("ctdhub.portal")

_CLIENT = "oidc"
_EXTENSION = "ctdhub.oidc"


def init_app(app: Flask) -> None:
    """Register the configured provider with Authlib's Flask client (nothing if none is)."""
    if not app.config["PORTAL_OIDC_METADATA_URL"]:
        return
    oauth = OAuth(app)
    oauth.register(
        _CLIENT,
        client_id=app.config["PORTAL_OIDC_CLIENT_ID"],
        client_secret=app.config["PORTAL_OIDC_CLIENT_SECRET"],
        server_metadata_url=app.config["PORTAL_OIDC_METADATA_URL"],
        client_kwargs={"scope": "openid email profile", "timeout": 10},
    )
    app.extensions[_EXTENSION] = oauth


def enabled() -> bool:
    """Tell whether people may sign in through an external provider."""
    return _EXTENSION in current_app.extensions


def register(bp: Blueprint, limited: Any) -> None:
    """Attach the external sign-in's two steps to the portal's blueprint, rate-limited."""
    bp.add_url_rule("/sign-in/oidc", "oidc_start", limited(start), methods=["POST"])
    bp.add_url_rule("/sign-in/oidc/callback", "oidc_callback", limited(callback))
    bp.context_processor(_sign_in_choice)


def _sign_in_choice() -> dict[str, bool | str]:
    # The sign-in page offers the provider only when one is configured.
    return {
        "external_sign_in": enabled(),
        "external_label": current_app.config["PORTAL_OIDC_LABEL"],
    }


def _client() -> Any:
    if not enabled():
        abort(404)
    return current_app.extensions[_EXTENSION].create_client(_CLIENT)


@public
def start() -> ResponseReturnValue:
    """Send the browser to the provider (a form post: it carries the portal's CSRF token)."""
    client = _client()
    try:
        to_provider: Response = client.authorize_redirect(
            url_for("portal.oidc_callback", _external=True)
        )
    except (AuthlibBaseError, requests.RequestException, ValueError, KeyError) as error:
        log.warning("the OpenID Connect provider could not be reached: %s", type(error).__name__)
        return render_template("portal/sign_in.html", external_unreachable=True), 502
    return to_provider


@public
def callback() -> ResponseReturnValue:
    """Take the provider's answer: check the id_token, find the person, then the second factor."""
    from hub.portal.account import after_first_factor  # account registers this module's pages

    client = _client()
    try:
        token = client.authorize_access_token(claims_options=_required_claims(client))
    except (AuthlibBaseError, JoseError, requests.RequestException, ValueError) as error:
        # The class names why (bad signature, expired, wrong audience, state mismatch); the
        # token itself is never logged.
        log.info("an external sign-in was refused: %s", type(error).__name__)
        people.refuse_external(
            get_session(),
            provider=current_app.config["PORTAL_OIDC_METADATA_URL"],
            reason=type(error).__name__,
            request_id=request_id(),
        )
        return _refused(401)
    claims = token.get("userinfo")
    if not claims:
        log.info("an external sign-in was refused: the provider sent no id_token")
        return _refused(401)
    try:
        person = people.authenticate_external(
            get_session(),
            _claimed_email(claims),
            provider=current_app.config["PORTAL_OIDC_METADATA_URL"],
            request_id=request_id(),
        )
    except Unauthenticated:
        return _refused(401)
    return after_first_factor(person)


def _required_claims(client: Any) -> dict[str, Any]:
    # Authlib checks the audience only through ``azp`` unless told: an id_token issued to
    # another client that names us as its ``azp`` would pass. Require both, explicitly.
    issuer = client.load_server_metadata().get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise ValueError("the provider's metadata names no issuer")
    return {
        "iss": {"essential": True, "value": issuer},
        "aud": {"essential": True, "value": current_app.config["PORTAL_OIDC_CLIENT_ID"]},
        "sub": {"essential": True},
    }


def _claimed_email(claims: Any) -> str | None:
    name = current_app.config["PORTAL_OIDC_CLAIM"]
    value = claims.get(name)
    if not isinstance(value, str):
        return None
    # A provider that lets people type any address must also say it checked this one.
    if name == "email" and claims.get("email_verified") is not True:
        return None
    return value


def _refused(status: int) -> ResponseReturnValue:
    return render_template("portal/sign_in.html", external_refused=True), status
