"""Authentication and roles: the hub's OAuth 2 authorization server and its scope checks.

Partner systems and API clients get short-lived bearer tokens by the client-credentials grant
at ``POST /oauth/token``; they can revoke a token (RFC 7009) and introspect one (RFC 7662).
Views declare what they need with :func:`require_scope`; services check the acting principal
with :func:`authorize`. Client secrets are kept only as Argon2id hashes and access tokens
only as SHA-256 digests, so a copy of the database lets nobody act as a client. The token
endpoint is rate-limited per client id and per address; every refused client authentication
is logged and audited, and an unknown client id gets the same answer, after the same work, as
a wrong secret.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from apiflask import APIBlueprint, APIFlask
from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import (
    ClientMixin,
    InvalidClientError,
    InvalidScopeError,
    MissingAuthorizationError,
    TokenMixin,
)
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6750 import (
    BearerTokenGenerator,
    BearerTokenValidator,
    InsufficientScopeError,
    InvalidTokenError,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import Response, current_app, g, has_request_context, request
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from hub import audit
from hub.actors import SCOPES, PrincipalActor, principal_scopes
from hub.credentials import dummy_hash, hash_secret, needs_rehash, token_digest, verify_secret
from hub.db import get_session
from hub.domain_errors import NotAuthorized, Unauthenticated
from hub.errors import request_id
from hub.guards import with_body_slot
from hub.models import OAuthClient, OAuthToken, Principal, utcnow

log = logging.getLogger("ctdhub.auth")

GRANT_TYPE = "client_credentials"
CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post")

_OAUTH_SERVER = "ctdhub.oauth.server"
_OAUTH_PROTECTOR = "ctdhub.oauth.protector"

F = TypeVar("F", bound=Callable[..., ResponseReturnValue])


# --- secrets and tokens -----------------------------------------------------------------------


def _as_utc(moment: datetime) -> datetime:
    # SQLite hands timezone-aware columns back naive; the hub only ever writes UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --- Authlib adapters over our models ---------------------------------------------------------


class HubClient(ClientMixin):  # type: ignore[misc]  # authlib ships no type hints
    """An :class:`~hub.models.OAuthClient` as Authlib sees it: confidential, client credentials."""

    def __init__(self, row: OAuthClient) -> None:
        self.row = row

    @property
    def allowed_scopes(self) -> frozenset[str]:
        """Return the scopes this client may ask for."""
        return frozenset(self.row.scopes.split())

    def get_client_id(self) -> str:
        """Return the public client id."""
        return self.row.client_id

    def get_default_redirect_uri(self) -> None:
        """Return None: client credentials never redirect."""
        return None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """Return the scope to grant: all of the client's if none was asked, else as asked.

        None (Authlib's ``invalid_scope``) if more was asked than the client holds: a request
        is refused, never narrowed.
        """
        if not scope or not scope.strip():
            return " ".join(sorted(self.allowed_scopes))
        requested = set(scope.split())
        if not requested <= self.allowed_scopes:
            return None
        return " ".join(sorted(requested))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Refuse every redirect URI: there is no authorization endpoint."""
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        """Verify the secret; a right secret on a revoked client is refused with the reason.

        A good secret under an outdated hash (the old scrypt format, or weaker Argon2id
        parameters) is rehashed with the current parameters and stored at once.
        """
        if not verify_secret(client_secret, self.row.secret_hash):
            _refuse_client(self.row.client_id, "wrong_secret", principal=self.row.principal)
            return False
        # Told only to a caller who proved it holds the secret, so it leaks nothing to others.
        if self.row.revoked_at is not None:
            _refuse_client(self.row.client_id, "revoked_client", principal=self.row.principal)
            raise InvalidClientError(status_code=401, description="This client has been revoked.")
        if self.row.principal.disabled_at is not None:
            _refuse_client(self.row.client_id, "disabled_principal", principal=self.row.principal)
            raise InvalidClientError(
                status_code=401, description="The principal of this client has been disabled."
            )
        if needs_rehash(self.row.secret_hash):
            self.row.secret_hash = hash_secret(client_secret)
            get_session().commit()
            log.info("client %s: secret rehashed with Argon2id", self.row.client_id)
        return True

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """Accept HTTP Basic and form-field client authentication, never ``none``."""
        return method in CLIENT_AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        """Refuse every response type: there is no authorization endpoint."""
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        """Allow only the client-credentials grant."""
        return grant_type == GRANT_TYPE


class _UnknownClient(ClientMixin):  # type: ignore[misc]  # authlib ships no type hints
    """A client id this hub does not know: it fails authentication exactly as a wrong secret.

    Authlib answers "the client does not exist" at once for a missing client, which tells a
    guesser which ids exist (and does it ten times faster); this stand-in makes both paths
    verify one Argon2id hash and end in the same ``invalid_client`` answer.
    """

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id

    def check_client_secret(self, client_secret: str) -> bool:
        """Verify against a dummy hash (never matches), then refuse."""
        verify_secret(client_secret, dummy_hash())
        _refuse_client(self.client_id, "unknown_client", principal=None)
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """Accept the same methods as a real client, so the secret is always checked."""
        return method in CLIENT_AUTH_METHODS


def _refuse_client(client_id: str, reason: str, *, principal: Principal | None) -> None:
    """Log and audit a refused client authentication (no secret, no record value).

    :param reason: ``wrong_secret``, ``unknown_client``, ``revoked_client`` or
        ``disabled_principal``
    """
    known = principal is not None
    address = request.remote_addr if has_request_context() else None
    # A guessed id is attacker-chosen text: logged only as a bounded, printable repr.
    shown = client_id if known else repr(client_id[:64])
    log.warning(
        "auth: client authentication refused (%s): client %s from %s",
        reason,
        shown,
        address,
    )
    session = get_session()
    session.rollback()
    audit.record(
        session,
        "auth:client:refuse",
        actor=None,
        request_id=request_id() if has_request_context() else None,
        organisation_id=principal.organisation_id if principal is not None else None,
        subject_id=client_id if known else None,
        details={
            "reason": reason,
            "remote_address": address,
            "endpoint": request.path if has_request_context() else None,
        },
    )
    session.commit()


class HubToken(TokenMixin):  # type: ignore[misc]  # authlib ships no type hints
    """An :class:`~hub.models.OAuthToken` with its client, as Authlib sees it."""

    def __init__(self, row: OAuthToken, client: OAuthClient) -> None:
        self.row = row
        self.client = client

    def check_client(self, client: HubClient) -> bool:
        """Tell whether the token was issued to ``client``."""
        return self.row.client_id == client.row.client_id

    def get_scope(self) -> str:
        """Return the granted scopes, space-separated."""
        return self.row.scope

    def get_expires_in(self) -> int:
        """Return the lifetime the token was issued with, in seconds."""
        return int((_as_utc(self.row.expires_at) - _as_utc(self.row.issued_at)).total_seconds())

    def is_expired(self) -> bool:
        """Tell whether the token's lifetime is over."""
        return _as_utc(self.row.expires_at) <= utcnow()

    def is_revoked(self) -> bool:
        """Tell whether the token, its client or its principal has been withdrawn."""
        return (
            self.row.revoked_at is not None
            or self.client.revoked_at is not None
            or self.row.principal.disabled_at is not None
        )

    def get_user(self) -> Principal:
        """Return the principal the token acts for."""
        return self.row.principal

    def get_client(self) -> HubClient:
        """Return the client the token was issued to."""
        return HubClient(self.client)


def _query_client(client_id: str) -> HubClient | _UnknownClient:
    row = (
        get_session()
        .scalars(
            select(OAuthClient)
            .where(OAuthClient.client_id == client_id)
            .options(joinedload(OAuthClient.principal))
        )
        .first()
    )
    return HubClient(row) if row is not None else _UnknownClient(client_id)


def _find_token(token_string: str) -> HubToken | None:
    found = (
        get_session()
        .execute(
            select(OAuthToken, OAuthClient)
            .join(OAuthClient, OAuthClient.client_id == OAuthToken.client_id)
            .where(OAuthToken.token_hash == token_digest(token_string))
            .options(joinedload(OAuthToken.principal).joinedload(Principal.organisation))
        )
        .first()
    )
    return HubToken(found[0], found[1]) if found is not None else None


def _save_token(token: dict[str, Any], request: Any) -> None:
    client: HubClient = request.client
    session = get_session()
    issued_at = utcnow()
    row = OAuthToken(
        token_hash=token_digest(token["access_token"]),
        client_id=client.row.client_id,
        principal_id=client.row.principal_id,
        scope=token.get("scope", ""),
        issued_at=issued_at,
        expires_at=issued_at + timedelta(seconds=int(token["expires_in"])),
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        "auth:token:issue",
        actor=PrincipalActor(client.row.principal, client.allowed_scopes),
        request_id=request_id(),
        subject_id=str(row.id),
        details={
            "client_id": client.row.client_id,
            "scope": row.scope.split(),
            "expires_in": int(token["expires_in"]),
        },
    )
    session.commit()


class _ClientCredentialsGrant(ClientCredentialsGrant):  # type: ignore[misc]  # no type hints
    TOKEN_ENDPOINT_AUTH_METHODS = list(CLIENT_AUTH_METHODS)

    def validate_requested_scope(self) -> None:
        """Refuse a scope the hub does not know or the client does not hold, naming it."""
        requested = (self.request.payload.scope or "").split()
        unknown = sorted(s for s in set(requested) if s not in SCOPES)
        if unknown:
            raise InvalidScopeError(description="Unknown scope: " + " ".join(unknown))
        client: HubClient = self.request.client
        lacking = sorted(set(requested) - client.allowed_scopes)
        if lacking:
            raise InvalidScopeError(
                description="This client may not ask for scope: " + " ".join(lacking)
            )


class _RevocationEndpoint(RevocationEndpoint):  # type: ignore[misc]  # no type hints
    CLIENT_AUTH_METHODS = list(CLIENT_AUTH_METHODS)

    def query_token(self, token_string: str, token_type_hint: str | None) -> HubToken | None:
        """Find an access token by its digest (the hub issues no refresh tokens)."""
        return _find_token(token_string)

    def revoke_token(self, token: HubToken, request: Any) -> None:
        """Mark the token revoked (kept, so its digest can never be issued again)."""
        if token.row.revoked_at is not None:
            return
        session = get_session()
        token.row.revoked_at = utcnow()
        client: HubClient = request.client
        audit.record(
            session,
            "auth:token:revoke",
            actor=PrincipalActor(client.row.principal, client.allowed_scopes),
            request_id=request_id(),
            organisation_id=token.row.principal.organisation_id,
            subject_id=str(token.row.id),
            details={"client_id": token.row.client_id, "via": "revocation_endpoint"},
        )
        session.commit()


class _IntrospectionEndpoint(IntrospectionEndpoint):  # type: ignore[misc]  # no type hints
    CLIENT_AUTH_METHODS = list(CLIENT_AUTH_METHODS)

    def query_token(self, token_string: str, token_type_hint: str | None) -> HubToken | None:
        """Find an access token by its digest."""
        return _find_token(token_string)

    def check_permission(self, token: HubToken, client: HubClient, request: Any) -> bool:
        """Let a client introspect its own tokens, and an admin client any token."""
        if token.check_client(client):
            return True
        return "admin:clients" in client.allowed_scopes and "admin:clients" in principal_scopes(
            client.row.principal
        )

    def introspect_token(self, token: HubToken) -> dict[str, Any]:
        """Describe an active token (RFC 7662 section 2.2)."""
        principal = token.row.principal
        return {
            "active": True,
            "client_id": token.row.client_id,
            "token_type": "Bearer",
            "scope": token.row.scope,
            "sub": principal.id,
            "username": principal.name,
            "organisation_id": principal.organisation_id,
            "iat": int(_as_utc(token.row.issued_at).timestamp()),
            "exp": int(_as_utc(token.row.expires_at).timestamp()),
        }


class _BearerTokenValidator(BearerTokenValidator):  # type: ignore[misc]  # no type hints
    def authenticate_token(self, token_string: str) -> HubToken | None:
        """Find the presented token by its digest."""
        return _find_token(token_string)

    def validate_token(self, token: HubToken | None, scopes: list[str], request: Any) -> None:
        """Check that the token is live and carries every required scope, saying why not."""
        if token is None:
            raise InvalidTokenError(description="The access token is not known to this hub.")
        if token.is_expired():
            raise InvalidTokenError(description="The access token has expired.")
        if token.row.revoked_at is not None:
            raise InvalidTokenError(description="The access token has been revoked.")
        if token.client.revoked_at is not None:
            raise InvalidTokenError(description="The client of this token has been revoked.")
        if token.row.principal.disabled_at is not None:
            raise InvalidTokenError(description="The principal of this token has been disabled.")
        held = _effective_scopes(token)
        if self.scope_insufficient(" ".join(held), scopes):
            lacking = sorted({s for group in scopes for s in group.split()} - set(held))
            raise InsufficientScopeError(
                description="The access token lacks scope: " + " ".join(lacking)
            )


def _effective_scopes(token: HubToken) -> list[str]:
    # A token is worth no more than its principal's roles today.
    granted = set(token.row.scope.split()) & principal_scopes(token.row.principal)
    return sorted(granted)


def _expires_in(client: HubClient, grant_type: str) -> int:
    ttl: int = current_app.config["ACCESS_TOKEN_TTL"]
    return ttl


def _new_access_token(**_context: Any) -> str:
    return secrets.token_urlsafe(32)


# --- wiring -----------------------------------------------------------------------------------


def init_app(app: APIFlask, rate_limiter: Limiter) -> None:
    """Give ``app`` its authorization server, resource protector and ``/oauth/*`` endpoints.

    Each app gets its own server, so several apps (tests) in one process never share state.
    """
    server = AuthorizationServer()
    server.init_app(app, query_client=_query_client, save_token=_save_token)
    server.register_token_generator(
        "default", BearerTokenGenerator(_new_access_token, None, _expires_in)
    )
    server.scopes_supported = sorted(SCOPES)
    server.register_grant(_ClientCredentialsGrant)
    server.register_endpoint(_RevocationEndpoint)
    server.register_endpoint(_IntrospectionEndpoint)
    protector = ResourceProtector()
    protector.register_token_validator(_BearerTokenValidator(realm="ctdhub"))
    app.extensions[_OAUTH_SERVER] = server
    app.extensions[_OAUTH_PROTECTOR] = protector
    app.register_blueprint(_oauth_blueprint(rate_limiter))


def _oauth_blueprint(rate_limiter: Limiter) -> APIBlueprint:
    bp = APIBlueprint("oauth", __name__, url_prefix="/oauth", tag="OAuth")

    def limited(view: F) -> F:
        # Only refused attempts count, so a client that holds its secret is never slowed; once
        # a client id or an address is over its limit, even a right secret waits (429).
        per_address = rate_limiter.limit(
            lambda: str(current_app.config["TOKEN_RATE_LIMIT_PER_ADDRESS"]), deduct_when=_refused
        )
        per_client = rate_limiter.limit(
            lambda: str(current_app.config["TOKEN_RATE_LIMIT_PER_CLIENT"]),
            key_func=_presented_client_id,
            deduct_when=_refused,
        )
        return cast(F, per_client(per_address(view)))

    @bp.post("/token")
    @limited
    @bp.doc(
        summary="Issue an access token (client-credentials grant)",
        description=(
            "Form fields `grant_type=client_credentials` and optionally `scope` (space-separated;"
            " omitted means all of the client's scopes). Authenticate the client with HTTP Basic"
            " or the form fields `client_id` and `client_secret`. Asking for a scope the client"
            " does not hold is refused with `invalid_scope`. Errors follow RFC 6749 section 5.2."
        ),
    )
    def issue_token() -> ResponseReturnValue:
        response: ResponseReturnValue = _server().create_token_response()
        return response

    @bp.post("/revoke")
    @limited
    @bp.doc(
        summary="Revoke one of your access tokens (RFC 7009)",
        description="Form field `token`; authenticate the client as for the token endpoint.",
    )
    def revoke_token() -> ResponseReturnValue:
        response: ResponseReturnValue = _server().create_endpoint_response(
            RevocationEndpoint.ENDPOINT_NAME
        )
        return response

    @bp.post("/introspect")
    @limited
    @bp.doc(
        summary="Describe an access token (RFC 7662)",
        description=(
            "Form field `token`. A client may introspect its own tokens; a client holding"
            ' `admin:clients` may introspect any. Anything else answers `{"active": false}`.'
        ),
    )
    def introspect_token() -> ResponseReturnValue:
        response: ResponseReturnValue = _server().create_endpoint_response(
            IntrospectionEndpoint.ENDPOINT_NAME
        )
        return response

    return bp


def _refused(response: Response) -> bool:
    return response.status_code != 200


def _presented_client_id(default: str = "-") -> str:
    """Return the client id a token request presents (HTTP Basic or form), for rate limits."""
    authorization = request.authorization
    client_id = authorization.username if authorization is not None else None
    if not client_id and request.mimetype == "application/x-www-form-urlencoded":
        client_id = request.form.get("client_id")
    return "client:" + (client_id or default)[:200]


def _server() -> AuthorizationServer:
    server: AuthorizationServer = current_app.extensions[_OAUTH_SERVER]
    return server


# --- protecting views -------------------------------------------------------------------------


def require_scope(*scopes: str) -> Callable[[F], F]:
    """Protect a view: a live bearer token carrying every one of ``scopes`` is required.

    Place it directly under the route decorator, above ``input``/``output``/``doc``, so the
    token is checked before anything else reads the request. The scopes are recorded on the
    view (``_ctdhub_scopes``) and in its OpenAPI ``security``.

    :param scopes: the scopes required, all of them; at least one.
    :raises ValueError: at import time, for no scope or an unknown one.
    """
    if not scopes:
        raise ValueError("require_scope needs at least one scope; public views are allowlisted")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ValueError(f"require_scope got unknown scope(s) {unknown}; see hub.auth.SCOPES")
    required = tuple(dict.fromkeys(scopes))

    def decorator(view: F) -> F:
        bounded = with_body_slot(view)

        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            # The token first: a body is read only for a principal who may send it, and then
            # only within the bound on bodies in flight.
            _authenticate(required)
            return bounded(*args, **kwargs)

        # functools.wraps shares the inner view's APIFlask spec dict; copy it before editing.
        spec = dict(getattr(view, "_spec", {}))
        spec["security"] = [{"oauth2": list(required)}]
        responses = spec.get("responses")
        if responses is None or isinstance(responses, dict):
            # APIFlask documents the 401 itself; the 403 for a token lacking a scope is ours.
            spec["responses"] = {
                **(responses or {}),
                403: "The access token lacks a scope: " + " ".join(required),
            }
        guarded._spec = spec  # type: ignore[attr-defined]  # APIFlask reads it for OpenAPI
        guarded._ctdhub_scopes = required  # type: ignore[attr-defined]  # read by route tests
        return cast(F, guarded)

    return decorator


def _authenticate(required: tuple[str, ...]) -> None:
    protector: ResourceProtector = current_app.extensions[_OAUTH_PROTECTOR]
    try:
        token: HubToken = protector.acquire_token([" ".join(required)])
    except MissingAuthorizationError:
        raise Unauthenticated(
            "this endpoint needs an 'Authorization: Bearer <token>' header; "
            "get a token from POST /oauth/token"
        ) from None
    except InsufficientScopeError as error:
        raise NotAuthorized(_as_detail(error.description), required_scopes=list(required)) from None
    except OAuth2Error as error:
        raise Unauthenticated(_as_detail(error.description)) from None
    g.ctdhub_principal = token.row.principal
    g.ctdhub_token = token


def _as_detail(description: str | None) -> str:
    # Authlib's descriptions are sentences; problem details in the hub are lower-case clauses.
    text = (description or "the access token is not valid").rstrip(".")
    return text[:1].lower() + text[1:]


def current_principal() -> Principal:
    """Return the principal acting in this request, with its organisation loaded.

    :raises hub.domain_errors.Unauthenticated: if the view is not protected by
        :func:`require_scope`.
    """
    principal: Principal | None = g.get("ctdhub_principal")
    if principal is None:
        raise Unauthenticated("no authenticated principal in this request")
    return principal


def current_scopes() -> frozenset[str]:
    """Return the scopes the request's access token carries (empty outside a protected view)."""
    token: HubToken | None = g.get("ctdhub_token")
    return frozenset(_effective_scopes(token)) if token is not None else frozenset()
