"""Issue 11 item 9: the OpenAPI document tells clients the truth about errors and bodies."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def test_errors_are_documented_as_problem_json(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()
    assert "Problem" in spec["components"]["schemas"]
    for path, method, operation in _operations(spec):
        for code, response in operation["responses"].items():
            if int(code) < 400:
                continue
            oauth_error = path.startswith("/oauth/") and code in ("400", "401")
            expected = "application/json" if oauth_error else "application/problem+json"
            assert list(response["content"]) == [expected], (method, path, code)


def test_each_status_is_documented_where_it_can_happen(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()
    for path, method, operation in _operations(spec):
        codes = set(operation["responses"])
        where = f"{method} {path}"
        assert {"500", "503"} <= codes, where
        if operation.get("security") and not path.startswith("/oauth/"):
            assert {"401", "403"} <= codes, where
        if "{" in path:
            assert "404" in codes, where
        if method == "post":
            assert {"400", "413", "429"} <= codes, where
            assert "requestBody" in operation, where
        for code in ("429", "503"):
            if code in codes:
                assert "Retry-After" in operation["responses"][code]["headers"], where


def test_the_upload_operation_has_a_request_body(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()
    upload = spec["paths"]["/v1/uploads"]["post"]
    content = upload["requestBody"]["content"]
    assert {"text/csv", "application/json"} <= set(content)
    assert content["text/csv"]["schema"] == {"type": "string", "format": "binary"}
    assert {"200", "201", "409", "415", "422"} <= set(upload["responses"])
    headers = {p["name"] for p in upload["parameters"] if p["in"] == "header"}
    assert headers == {"Idempotency-Key", "Content-Digest", "Local-Rejections", "Lawful-Basis"}
