"""Issue 11 item 6: bad input answers 4xx problem+json, an unreachable database 503.

Each used to be a 500: JSON nested 5,000 deep (RecursionError), a NUL byte in an upload id
(PostgreSQL refuses NUL in text), an offset past 64 bits (integer overflow in the database).
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from hub import create_app
from tests.conftest import Partner

DEEP = ("[" * 5000 + "]" * 5000).encode()
DEEP_OBJECT = ('{"a":' * 5000 + "1" + "}" * 5000).encode()


def _is_problem(response: object, status: int | None = None) -> dict[str, object]:
    assert 400 <= response.status_code < 500, response.status_code  # type: ignore[attr-defined]
    if status is not None:
        assert response.status_code == status  # type: ignore[attr-defined]
    assert response.mimetype == "application/problem+json"  # type: ignore[attr-defined]
    body: dict[str, object] = response.get_json()  # type: ignore[attr-defined]
    return body


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT])
def test_deeply_nested_json_preview_is_a_400(
    client: FlaskClient, researcher_headers: dict[str, str], body: bytes
) -> None:
    for path in ("/v1/queries/preview", "/v1/queries"):
        response = client.post(
            path, data=body, headers={**researcher_headers, "Content-Type": "application/json"}
        )
        _is_problem(response)


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT])
def test_deeply_nested_json_upload_is_refused(
    client: FlaskClient, partner_a: Partner, body: bytes
) -> None:
    response = client.post(
        "/v1/uploads",
        data=body,
        headers={**partner_a.headers, "Content-Type": "application/json"},
    )
    _is_problem(response)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/uploads/%00",
        "/v1/uploads/a%00b",
        "/v1/uploads/" + "x" * 300,
        "/v1/jobs/%00",
        "/v1/jobs/a%00b",
        "/v1/jobs/" + "x" * 300,
    ],
)
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_malformed_upload_id_is_not_found(
    client: FlaskClient, partner_a: Partner, path: str, method: str
) -> None:
    response = client.open(path, method=method, headers=partner_a.headers)
    _is_problem(response, 404)


@pytest.mark.parametrize("offset", ["9223372036854775808", "2147483648", "-1"])
def test_an_offset_past_the_database_integers_is_a_422(
    client: FlaskClient, partner_a: Partner, offset: str
) -> None:
    response = client.get(f"/v1/uploads?offset={offset}", headers=partner_a.headers)
    body = _is_problem(response, 422)
    assert "offset" in str(body["errors"])


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres@127.0.0.1:1/nothing?connect_timeout=2",
        "sqlite:////nonexistent-ctdhub-dir/hub.sqlite3",
    ],
)
def test_an_unreachable_database_is_a_503_with_retry_after(url: str) -> None:
    app = create_app({"TESTING": True, "DATABASE_URL": url, "RETRY_AFTER_SECONDS": 7})
    client = app.test_client()
    for response in (
        client.get("/health"),
        client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=("a", "b")),
        client.get("/v1/uploads", headers={"Authorization": "Bearer not-a-token"}),
    ):
        assert response.status_code == 503
        assert response.mimetype == "application/problem+json"
        assert response.headers["Retry-After"] == "7"
        assert "nothing" not in response.get_data(as_text=True)
    app.extensions["ctdhub.engine"].dispose()


def test_json_and_form_bodies_are_capped_below_the_upload_cap(
    client: FlaskClient, partner_a: Partner, researcher_headers: dict[str, str], app: object
) -> None:
    cap = app.config["MAX_JSON_BODY_BYTES"]  # type: ignore[attr-defined]
    big = b"[" + b"0," * cap + b"0]"
    preview = client.post(
        "/v1/queries/preview",
        data=big,
        headers={**researcher_headers, "Content-Type": "application/json"},
    )
    assert _is_problem(preview, 413)["detail"] == f"the body is larger than {cap} bytes"
    token = client.post("/oauth/token", data={"grant_type": "client_credentials", "x": "y" * cap})
    assert token.status_code == 413
    # An upload of the same size is read (and refused for what it holds, not for its size).
    upload = client.post(
        "/v1/uploads", data=big, headers={**partner_a.headers, "Content-Type": "text/csv"}
    )
    assert upload.status_code != 413
