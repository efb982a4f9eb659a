"""A small OpenID Connect provider for the tests, built on Authlib's own server components.

It runs a real authorization-code flow on a free port in the test process: discovery, JWKS,
an authorization endpoint that signs in whichever account the test chose, and a token endpoint
whose id_token is made by Authlib's ``OpenIDCode`` extension. A test may make it misbehave the
way a hostile or broken provider would (:attr:`TestProvider.fault`): an id_token for another
audience, signed by a key not in its JWKS, or already expired.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from joserfc.jwk import RSAKey
from werkzeug.serving import BaseWSGIServer, make_server

CLIENT_ID, CLIENT_SECRET = "ctdhub-portal", "provider-secret-for-tests"
Fault = Literal["wrong-audience", "foreign-audience-naming-us", "bad-signature", "expired"] | None


@dataclass
class Account:
    """Someone the provider knows, and what it says about them."""

    subject: str
    email: str
    email_verified: bool = True


@dataclass
class _Client(ClientMixin):  # type: ignore[misc]  # authlib ships no type hints
    redirect_uris: list[str] = field(default_factory=list)

    def get_client_id(self) -> str:
        return CLIENT_ID

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in scope.split() if s in {"openid", "email", "profile"})

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, CLIENT_SECRET)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in {"client_secret_basic", "client_secret_post"}

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class _Code:
    code: str
    redirect_uri: str
    scope: str
    nonce: str | None
    account: Account

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return int(time.time())

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class TestProvider:
    """The provider: its issuer URL, the account it signs in next, and an optional fault."""

    __test__ = False  # not a test class, despite its name

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "provider-key"}, private=True)
        # Same key id, different key: what a forged id_token looks like to the hub.
        self.rogue_key = RSAKey.generate_key(2048, parameters={"kid": "provider-key"}, private=True)
        self.account: Account | None = None
        self.fault: Fault = None
        self.client = _Client()
        self._codes: dict[str, _Code] = {}
        self._server: BaseWSGIServer = make_server("127.0.0.1", 0, self._app(), threaded=True)
        self.issuer = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _app(self) -> Flask:
        app = Flask("test_oidc_provider")
        provider = self

        class Code(AuthorizationCodeGrant):  # type: ignore[misc]  # authlib ships no hints
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def save_authorization_code(self, code: str, request: Any) -> None:
                assert provider.account is not None, "the test chose nobody to sign in"
                provider._codes[code] = _Code(
                    code,
                    request.payload.redirect_uri,
                    request.payload.scope,
                    request.payload.data.get("nonce"),
                    provider.account,
                )

            def query_authorization_code(self, code: str, client: Any) -> _Code | None:
                return provider._codes.get(code)

            def delete_authorization_code(self, authorization_code: _Code) -> None:
                provider._codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: _Code) -> Account:
                return authorization_code.account

        class IdToken(OpenIDCode):  # type: ignore[misc]  # authlib ships no hints
            def resolve_client_private_key(self, client: Any) -> RSAKey:
                return provider.rogue_key if provider.fault == "bad-signature" else provider.key

            def get_client_algorithm(self, client: Any) -> str:
                return "RS256"

            def get_client_claims(self, client: Any) -> dict[str, Any]:
                now = int(time.time())
                claims: dict[str, Any] = {"iss": provider.issuer, "aud": [CLIENT_ID],
                                          "exp": now + 300, "iat": now}  # fmt: skip
                if provider.fault in ("wrong-audience", "foreign-audience-naming-us"):
                    claims["aud"] = ["someone-else"]
                if provider.fault == "foreign-audience-naming-us":
                    claims["azp"] = CLIENT_ID  # a token issued to another client, naming us
                if provider.fault == "expired":
                    # Well beyond the two minutes of clock skew a client allows.
                    claims.update(exp=now - 3600, iat=now - 7200)
                return claims

            def exists_nonce(self, nonce: str, request: Any) -> bool:
                return any(code.nonce == nonce for code in provider._codes.values())

            def generate_user_info(self, user: Account, scope: str) -> dict[str, Any]:
                return {"sub": user.subject, "email": user.email,
                        "email_verified": user.email_verified}  # fmt: skip

        server = AuthorizationServer(
            app,
            query_client=lambda client_id: self.client if client_id == CLIENT_ID else None,
            save_token=lambda token, request: None,
        )
        server.register_grant(Code, [IdToken(require_nonce=True)])

        @app.get("/.well-known/openid-configuration")
        def discovery() -> ResponseReturnValue:
            return jsonify(
                issuer=self.issuer,
                authorization_endpoint=f"{self.issuer}/authorize",
                token_endpoint=f"{self.issuer}/token",
                jwks_uri=f"{self.issuer}/jwks",
                response_types_supported=["code"],
                subject_types_supported=["public"],
                id_token_signing_alg_values_supported=["RS256"],
                token_endpoint_auth_methods_supported=["client_secret_basic"],
            )

        @app.get("/jwks")
        def jwks() -> ResponseReturnValue:
            return jsonify(keys=[self.key.as_dict(private=False)])

        @app.get("/authorize")
        def authorize() -> ResponseReturnValue:
            # The test's account has "signed in" at the provider and consents.
            grant = server.get_consent_grant(end_user=self.account)
            return server.create_authorization_response(grant=grant, grant_user=self.account)

        @app.post("/token")
        def token() -> ResponseReturnValue:
            return server.create_token_response()

        return app
