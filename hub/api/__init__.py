"""The HTTP API: thin views that parse, call one service function and serialise."""

from __future__ import annotations

from apiflask import APIFlask


def register_api(app: APIFlask) -> None:
    """Register every API blueprint on ``app``."""
    from hub.api import meta, queries, uploads

    app.register_blueprint(meta.bp)
    app.register_blueprint(uploads.bp)
    app.register_blueprint(queries.bp)
