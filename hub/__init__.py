"""The ctdhub application: ``create_app`` builds it; nothing happens at import time."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Imported where used, so that importing a Flask-free part of the hub (its services,
    # domain errors, actors) does not load the web framework.
    from apiflask import APIFlask

__version__ = "0.1.0"


def create_app(overrides: Mapping[str, Any] | None = None) -> APIFlask:
    """Create the hub: settings, database, errors, auth and the HTTP API.

    :param overrides: settings that win over ``config/`` defaults and ``CTDHUB_*`` variables.
    :raises hub.settings.SettingsError: if a setting is missing or invalid.
    """
    from apiflask import APIFlask

    from hub import actors, auth, crypto, db, docs, errors, guards, logs, portal, settings
    from hub.api import register_api
    from hub.services.queries import DPSnapshotCache
    from hub.services.snapshot import SnapshotCache

    app = APIFlask(
        __name__,
        title="ctdhub",
        version=__version__,
        spec_path="/openapi.json",
        docs_path=None,  # hub.docs serves /docs
        json_errors=False,
    )
    app.config.update(settings.load_settings(overrides))
    if not app.config["DATABASE_URL"]:
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        app.config["DATABASE_URL"] = f"sqlite:///{Path(app.instance_path) / 'ctdhub.sqlite3'}"
    # Per view, hub.guards lowers this to MAX_JSON_BODY_BYTES for all but uploads.
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_UPLOAD_BYTES"]
    logs.configure(app.config["LOG_LEVEL"])
    behind_proxies(app)

    docs.init_app(app)
    app.info = {
        "description": (
            "ctdhub pools de-identified human-trafficking case records from partner "
            "organisations and releases only what disclosure control has made safe."
        )
    }
    app.security_schemes = {
        "oauth2": {
            "type": "oauth2",
            "flows": {"clientCredentials": {"tokenUrl": "/oauth/token", "scopes": actors.SCOPES}},
        }
    }

    db.init_app(app)
    errors.init_app(app)
    rate_limiter = guards.init_app(app)
    crypto.init_app(app)
    app.extensions["ctdhub.snapshots"] = SnapshotCache(app.config["SNAPSHOT_CACHE_SIZE"])
    app.extensions["ctdhub.dp_snapshots"] = DPSnapshotCache.from_settings(app.config)
    auth.init_app(app, rate_limiter)
    register_api(app)
    portal.init_app(app, rate_limiter)
    return app


def behind_proxies(app: APIFlask) -> None:
    """Read the client's address, scheme and host from trusted proxies' headers, if configured.

    With ``TRUSTED_PROXY_HOPS`` at 0 (the default) ``X-Forwarded-*`` headers are ignored: a
    client could write them itself. Behind a TLS-terminating proxy, set it to the number of
    proxies, so URLs the hub builds (the OIDC callback) are the https ones people use and rate
    limits count per client, not per proxy.
    """
    hops = int(app.config["TRUSTED_PROXY_HOPS"])
    if hops == 0:
        return
    from werkzeug.middleware.proxy_fix import ProxyFix

    app.wsgi_app = ProxyFix(  # type: ignore[method-assign]  # werkzeug's documented wrapping
        app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
    )
