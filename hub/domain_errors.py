"""The hub's domain errors: what services raise, free of any web framework.

Each names the HTTP status and problem type it stands for, so the one mapper in
:mod:`hub.errors` can answer with RFC 9457 problem+json; the command line prints ``detail``.
A detail never quotes a record value.
"""

from __future__ import annotations

from typing import Any


class HubError(Exception):
    """Base of the hub's domain errors: each maps to one HTTP status and problem type."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class InvalidInput(HubError):
    """The request is malformed (a parameter or header is wrong)."""

    status, slug, title = 400, "invalid-input", "Invalid input"


class Unauthenticated(HubError):
    """No valid access token was presented."""

    status, slug, title = 401, "unauthenticated", "Authentication required"


class NotAuthorized(HubError):
    """The principal is authenticated but may not do this."""

    status, slug, title = 403, "not-authorized", "Not authorized"


class NotFound(HubError):
    """The object does not exist, or is not visible to this principal."""

    status, slug, title = 404, "not-found", "Not found"


class Conflict(HubError):
    """The request conflicts with the current state (e.g. a reused Idempotency-Key)."""

    status, slug, title = 409, "conflict", "Conflict"


class PayloadTooLarge(HubError):
    """The body is larger than the configured cap."""

    status, slug, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(HubError):
    """The body's media type is not one the hub reads."""

    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class ServiceUnavailable(HubError):
    """The hub is not configured to do this (e.g. it has no key-encryption key)."""

    status, slug, title = 503, "service-unavailable", "Service unavailable"


class ValidationFailed(HubError):
    """The records do not pass the record schema or the identifier screen."""

    status, slug, title = 422, "validation-failed", "Validation failed"
