"""The HTTP API: thin views that parse, call one service function and serialise."""

from __future__ import annotations

from apiflask import APIFlask
from werkzeug.routing import BaseConverter

from hub.actors import PrincipalActor
from hub.auth import current_principal, current_scopes


class ObjectIdConverter(BaseConverter):
    """An object id in a path: the hub's ids are UUIDs; anything else is simply not found.

    A NUL byte or a kilobyte of text in ``/v1/uploads/<id>`` used to reach the database
    (PostgreSQL refuses NUL in text: a 500); such a path now matches no route (404).
    """

    regex = r"[A-Za-z0-9-]{1,64}"


def current_actor() -> PrincipalActor:
    """Return this request's actor: its principal with the scopes its access token carries.

    :raises hub.domain_errors.Unauthenticated: if the view is not protected by
        :func:`hub.auth.require_scope`.
    """
    return PrincipalActor(current_principal(), current_scopes())


def register_api(app: APIFlask) -> None:
    """Register every API blueprint on ``app``."""
    from hub.api import jobs, meta, openapi, queries, uploads
    from hub.api import releases as release_api  # issue 13: releases and publication

    app.url_map.converters["id"] = ObjectIdConverter
    app.spec_processor(openapi.complete)
    app.register_blueprint(meta.bp)
    app.register_blueprint(uploads.bp)
    app.register_blueprint(queries.bp)
    app.register_blueprint(jobs.bp)

    # Release policies and the board's review of them.
    from hub.api import policies

    app.register_blueprint(policies.bp)
    app.register_blueprint(release_api.bp)
