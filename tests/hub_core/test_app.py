"""The application shell: problem+json errors, OpenAPI, docs without a CDN, migrations."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from apiflask import APIFlask
from flask.testing import FlaskClient

from hub import migrate
from hub.storage import Base, make_engine


def test_unknown_route_is_problem_json_with_request_id(client: FlaskClient) -> None:
    response = client.get("/no/such/route")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == 404 and body["instance"] == "/no/such/route"
    assert body["request_id"] == response.headers["X-Request-ID"]


def test_unexpected_errors_leak_nothing(app: APIFlask, caplog: object) -> None:
    secret = "Amaranta-Buendia-555-0100"

    @app.get("/boom")
    def boom() -> None:
        raise ValueError(f"bad value {secret}")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    text = response.get_data(as_text=True)
    assert secret not in text and "Traceback" not in text and "ValueError" not in text
    assert secret not in caplog.text  # type: ignore[attr-defined]
    assert "ValueError" in caplog.text  # type: ignore[attr-defined]


def test_openapi_and_docs_are_served_without_a_cdn(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert "/v1/uploads" in spec["paths"]
    assert "oauth2" in spec["components"]["securitySchemes"]
    page = client.get("/docs").get_data(as_text=True)
    assert "/docs/assets/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower() and "unpkg" not in page.lower()
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        response = client.get(f"/docs/assets/{asset}")
        assert response.status_code == 200
        response.close()


def test_health(client: FlaskClient) -> None:
    assert client.get("/health").get_json()["status"] == "ok"


def test_migrations_match_the_models(database_url: str) -> None:
    assert migrate.current(database_url) is not None
    engine = make_engine(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert differences == []


def test_parameter_errors_are_problem_json(client: FlaskClient, partner_a: object) -> None:
    headers = partner_a.headers  # type: ignore[attr-defined]
    response = client.get("/v1/uploads?limit=0", headers=headers)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert "limit" in body["errors"]["query"]
