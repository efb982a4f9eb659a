"""The HTTP API: thin views that parse, call one service function and serialise."""

from __future__ import annotations

from apiflask import APIFlask

from hub.actors import PrincipalActor
from hub.auth import current_principal, current_scopes


def current_actor() -> PrincipalActor:
    """Return this request's actor: its principal with the scopes its access token carries.

    :raises hub.domain_errors.Unauthenticated: if the view is not protected by
        :func:`hub.auth.require_scope`.
    """
    return PrincipalActor(current_principal(), current_scopes())


def register_api(app: APIFlask) -> None:
    """Register every API blueprint on ``app``."""
    from hub.api import jobs, meta, queries, uploads

    app.register_blueprint(meta.bp)
    app.register_blueprint(uploads.bp)
    app.register_blueprint(queries.bp)
    app.register_blueprint(jobs.bp)
