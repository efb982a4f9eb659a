"""What the OpenAPI document says beyond what APIFlask derives from the views.

APIFlask documents errors as ``application/json`` and only those a view declares; the hub
answers every error as RFC 9457 ``application/problem+json`` (OAuth's token endpoints excepted:
RFC 6749 fixes their error format), and some errors can happen on any operation (an
unreachable database, an unexpected error) or on any operation of a kind (a body too large, a
busy hub). :func:`complete` writes all of that into the document in one pass, from what each
operation is (protected, with a body, with parameters), so a new view is documented alike.
"""

from __future__ import annotations

from typing import Any

from contributors.consent import LAWFUL_BASES
from hub.services import uploads

PROBLEM_JSON = "application/problem+json"

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem: never holds a record value or a stack trace.",
    "required": ["type", "title", "status", "detail", "instance", "request_id"],
    "properties": {
        "type": {"type": "string", "description": "urn:ctdhub:problem:<slug>"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string", "description": "The request's path."},
        "request_id": {"type": "string", "description": "Also sent as X-Request-ID."},
        "field": {"type": "string", "description": "The part of the request at fault."},
        "errors": {"type": "object", "description": "Parameter errors, by location and name."},
        "retry_after": {"type": "integer", "description": "Seconds; also sent as Retry-After."},
    },
    "additionalProperties": True,
}

OAUTH_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An OAuth 2 error (RFC 6749 section 5.2).",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
    "additionalProperties": True,
}

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 1},
    }
}

#: Why each status can happen, by kind of operation.
_WHY = {
    400: "The request is malformed (e.g. a body that is not JSON or nested too deeply)",
    401: "No valid access token (WWW-Authenticate says why)",
    403: "The access token lacks a scope this operation needs",
    404: "No such object, or not visible to you",
    413: "The body is larger than the hub accepts",
    415: "The body's media type is not one the operation reads",
    422: "The request's parameters or body do not validate",
    429: "Too many requests (rate limit or bodies in flight); see Retry-After",
    500: "An unexpected error; quote request_id to the hub's operators",
    503: (
        "The hub's database or key store cannot be reached, or its sealing key was retired "
        "while an upload was stored; see Retry-After"
    ),
}

# Every type hub.services.uploads reads, sorted as the document is served: the docs page offers
# the first, "application/csv", so that is what a person trying an upload sends.
_UPLOAD_MEDIA_TYPES = tuple(sorted(uploads.MEDIA_TYPES))

_TOKEN_FORM: dict[str, Any] = {
    "type": "object",
    "required": ["grant_type"],
    "properties": {
        "grant_type": {"type": "string", "enum": ["client_credentials"]},
        "scope": {"type": "string", "description": "Space-separated scopes."},
        "client_id": {"type": "string"},
        "client_secret": {"type": "string"},
    },
}
_TOKEN_ARGUMENT_FORM: dict[str, Any] = {
    "type": "object",
    "required": ["token"],
    "properties": {
        "token": {"type": "string"},
        "token_type_hint": {"type": "string"},
        "client_id": {"type": "string"},
        "client_secret": {"type": "string"},
    },
}
_TOKEN_ANSWER: dict[str, Any] = {
    "type": "object",
    "required": ["access_token", "token_type", "expires_in"],
    "properties": {
        "access_token": {"type": "string"},
        "token_type": {"type": "string"},
        "expires_in": {"type": "integer"},
        "scope": {"type": "string"},
    },
}


def _problem(status: int, description: str | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description or _WHY[status],
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status in (429, 503):
        response["headers"] = dict(_RETRY_AFTER)
    return response


def _oauth_error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}},
    }


def _statuses(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    statuses = [500, 503]
    if operation.get("security"):
        statuses += [401, 403]
    if "{" in path:
        statuses.append(404)
    has_body = method in ("post", "put", "patch")
    if has_body:
        statuses += [400, 413, 415, 422, 429]
    if any(p.get("in") in ("query", "header") for p in operation.get("parameters", [])):
        statuses += [400, 422]
    return sorted(set(statuses))


def _complete_oauth(path: str, operation: dict[str, Any]) -> None:
    form = _TOKEN_FORM if path.endswith("/token") else _TOKEN_ARGUMENT_FORM
    operation["requestBody"] = {
        "required": True,
        "content": {"application/x-www-form-urlencoded": {"schema": form}},
    }
    # The client authenticates with HTTP Basic or the form's client_id and client_secret; the
    # docs page's Authorize dialog does this itself for the oauth2 scheme, so no second scheme.
    responses = operation.setdefault("responses", {})
    if path.endswith("/token"):
        responses["200"] = {
            "description": "An access token",
            "content": {"application/json": {"schema": _TOKEN_ANSWER}},
        }
    else:
        responses["200"] = {
            "description": "Done (RFC 7009) or described (RFC 7662)",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    responses["400"] = _oauth_error("The request is malformed (OAuth 2 error)")
    responses["401"] = _oauth_error("Client authentication failed (invalid_client)")
    for status in (413, 429, 500, 503):
        responses[str(status)] = _problem(status)


def complete(spec: dict[Any, Any] | str) -> dict[Any, Any] | str:
    """Document every error as problem+json, each status where it can happen, and bodies.

    :param spec: the OpenAPI document APIFlask generated; changed in place and returned.
    """
    if isinstance(spec, str):  # APIFlask hands over a dict unless asked for YAML text
        return spec
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas["OAuthError"] = OAUTH_ERROR_SCHEMA
    for unused in ("HTTPError", "ValidationError"):
        schemas.pop(unused, None)
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            if path.startswith("/oauth/"):
                _complete_oauth(path, operation)
                continue
            responses = operation.setdefault("responses", {})
            for code in list(responses):
                if int(code) >= 400:
                    responses[code] = _problem(int(code), responses[code].get("description"))
            for status in _statuses(path, method, operation):
                responses.setdefault(str(status), _problem(status))
    _complete_upload(spec)
    _complete_releases(spec)
    _replayed_answers(spec)
    _describe_query_specs(spec)
    _describe_policy_writes(spec)
    return spec


def _describe_policy_writes(spec: dict[str, Any]) -> None:
    """Document a proposal's two body forms and the If-Match of a vote (the views read them)."""
    from hub.api.policies import YAML_TYPES

    propose = spec["paths"].get("/v1/policies", {}).get("post")
    if propose is not None:
        yaml_body = {"schema": {"type": "string", "description": "The policy's YAML document."}}
        propose["requestBody"] = {
            "required": True,
            "content": {
                **{media: dict(yaml_body) for media in YAML_TYPES},
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["document", "rationale"],
                        "properties": {
                            "document": {"type": ["string", "object"]},
                            "rationale": {"type": "string", "minLength": 1, "maxLength": 5000},
                        },
                    }
                },
            },
        }
        propose["parameters"] = [
            *propose.get("parameters", []),
            {
                "in": "query",
                "name": "rationale",
                "required": False,
                "description": "Why the board should adopt it (with a YAML body).",
                "schema": {"type": "string", "maxLength": 5000},
            },
        ]
        for status in (400, 422):
            propose["responses"].setdefault(str(status), _problem(status))
    etag_header = {"ETag": {"description": "The version's ETag.", "schema": {"type": "string"}}}
    for path, item in spec["paths"].items():
        if not path.startswith("/v1/policies"):
            continue
        for operation in item.values():
            for code in ("200", "201"):
                if code in operation.get("responses", {}):
                    operation["responses"][code].setdefault("headers", {}).update(etag_header)
    review = spec["paths"].get("/v1/policies/{version}/reviews", {}).get("post")
    if review is not None:
        review["parameters"] = [
            *review.get("parameters", []),
            {
                "in": "header",
                "name": "If-Match",
                "required": False,
                "description": "The ETag of the version as you read it (428 without it).",
                "schema": {"type": "string"},
            },
        ]


def _describe_query_specs(spec: dict[str, Any]) -> None:
    """Spell out the query spec from the record schema (the view's schema only says "object").

    The hub checks a spec itself, with a message naming the part at fault (400), so the view
    accepts any object; the document still tells clients, and fuzzers, what a spec looks like.
    """
    from hub.services.queries import query_schema

    fields = query_schema()
    names = sorted(fields)
    numeric = sorted(name for name, item in fields.items() if item.value_bounds is not None)
    positive = {"type": "number", "exclusiveMinimum": 0}
    query_spec = {
        "type": "object",
        "required": ["measure", "spend"],
        "additionalProperties": False,
        "properties": {
            "measure": {
                "type": "object",
                "required": ["kind"],
                "additionalProperties": False,
                "properties": {
                    "kind": {"type": "string", "enum": ["count", "sum", "mean", "quantile"]},
                    "field": {"type": "string", "enum": numeric},
                    "quantile": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                },
            },
            "group_by": {
                "type": "array",
                "maxItems": 4,
                "uniqueItems": True,
                "items": {"type": "string", "enum": names},
            },
            "filters": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "values"],
                    "additionalProperties": False,
                    "properties": {
                        "field": {"type": "string", "enum": names},
                        "values": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": ["string", "integer", "boolean", "null"]},
                        },
                    },
                },
            },
            "spend": {
                "description": "Exactly one of: rho; epsilon with delta; half_width.",
                "oneOf": [
                    _only({"rho": positive}),
                    _only(
                        {
                            "epsilon": positive,
                            "delta": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                        }
                    ),
                    _only({"half_width": positive}),
                ],
            },
            "key_selection_delta": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        },
    }
    for path in ("/v1/queries", "/v1/queries/preview"):
        operation = spec["paths"].get(path, {}).get("post")
        if operation is not None:
            operation["requestBody"]["content"]["application/json"]["schema"] = query_spec


def _only(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": sorted(properties),
        "additionalProperties": False,
        "properties": properties,
    }


def _complete_upload(spec: dict[str, Any]) -> None:
    operation = spec["paths"].get("/v1/uploads", {}).get("post")
    if operation is None:
        return
    binary = {"schema": {"type": "string", "format": "binary"}}
    operation["requestBody"] = {
        "required": True,
        "description": "The file itself: CSV, JSON (an array of records) or XLSX.",
        "content": {media: dict(binary) for media in _UPLOAD_MEDIA_TYPES},
    }
    operation["parameters"] = [
        *operation.get("parameters", []),
        {
            "in": "header",
            "name": "Idempotency-Key",
            "required": False,
            "description": "Names this upload for good: a retry with it stores nothing twice.",
            "schema": {"type": "string", "maxLength": 200},
        },
        {
            "in": "header",
            "name": "Content-Digest",
            "required": False,
            "description": "sha-256=:<base64>: of the body (RFC 9530), checked on arrival.",
            "schema": {"type": "string"},
        },
        {
            "in": "header",
            "name": uploads.LOCAL_REJECTIONS_HEADER,
            "required": False,
            "description": "JSON: the rows the partner's toolkit refused before sending, "
            "tallied by field and reason, and those held back for want of consent by reason "
            "code (never a value); recorded on the receipt.",
            "schema": {"type": "string"},
        },
        {
            "in": "header",
            "name": uploads.LAWFUL_BASIS_HEADER,
            "required": False,
            "description": "The lawful basis the records are sent under (default consent); "
            "recorded on the receipt and in the audit trail.",
            "schema": {"type": "string", "enum": list(LAWFUL_BASES)},
        },
    ]
    operation["responses"]["409"] = _problem(409, "Idempotency-Key reused for another body")


def _replayed_answers(spec: dict[str, Any]) -> None:
    # A body or question seen before is answered 200 with the first answer (201 otherwise).
    for path in ("/v1/uploads", "/v1/queries"):
        operation = spec["paths"].get(path, {}).get("post")
        if operation is not None and "201" in operation["responses"]:
            operation["responses"].setdefault(
                "200",
                {**operation["responses"]["201"], "description": "Seen before: the first answer"},
            )


# --- releases (issue 13) ------------------------------------------------------------------------

#: What a published release's files are served as (hub.api.releases).
_RELEASE_FILE_TYPES = (
    "text/csv",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.apache.parquet",
    "application/json",
    "text/markdown",
    "text/plain",
)


def _complete_releases(spec: dict[str, Any]) -> None:
    """Document a release's files as what they are: binary or text, not JSON objects."""
    paths = spec["paths"]
    binary = {"schema": {"type": "string", "format": "binary"}}
    for path, item in paths.items():
        operation = item.get("get")
        if operation is None or not path.startswith("/v1/releases/{release_id}/"):
            continue
        responses = operation["responses"]
        if path.endswith("/datapackage.json"):
            responses["200"] = {
                "description": "The Frictionless data package (datapackage.json)",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        elif "/files/" in path:
            responses["200"] = {
                "description": "The file, exactly as its SHA-256 in the manifest says",
                "content": {media: dict(binary) for media in _RELEASE_FILE_TYPES},
            }
            responses["409"] = _problem(409, "The file on disk no longer matches the manifest")
