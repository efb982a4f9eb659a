"""The API documentation page at ``/docs``: Swagger UI 5, served by the hub itself.

Hubs run on closed networks, so the page and its scripts come from the hub (Swagger UI's
distribution as shipped by the ``flask-swagger-ui`` package), never from a CDN. Swagger UI 5
renders the OpenAPI 3.1 document APIFlask publishes (Swagger UI 4 renders only 3.0). The page
carries no inline script: ``docs.js`` starts Swagger UI, so a Content-Security-Policy with
``script-src 'self'`` holds.
"""

from __future__ import annotations

from pathlib import Path

from apiflask import APIFlask
from flask import render_template, send_from_directory, url_for
from flask.typing import ResponseReturnValue


def swagger_ui_directory() -> Path:
    """Return the folder of the installed Swagger UI distribution."""
    import flask_swagger_ui

    return Path(flask_swagger_ui.__file__).resolve().parent / "dist"


def init_app(app: APIFlask) -> None:
    """Serve ``/docs``, its start-up script and Swagger UI's files."""
    assets = str(swagger_ui_directory())

    @app.get("/docs")
    @app.doc(hide=True)
    def docs() -> ResponseReturnValue:
        return render_template(
            "docs.html",
            title=app.title,
            version=app.version,
            spec_url=url_for("openapi.spec"),
        )

    @app.get("/docs/assets/<path:filename>")
    @app.doc(hide=True)
    def docs_assets(filename: str) -> ResponseReturnValue:
        return send_from_directory(assets, filename)
