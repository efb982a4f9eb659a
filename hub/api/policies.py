"""Release policies and the board's review of them: ``/v1/policies``."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, Schema
from apiflask.fields import Dict, Integer, List, Nested, String
from apiflask.validators import Length
from flask import current_app, request

from hub.api import current_actor
from hub.auth import require_scope
from hub.db import get_session
from hub.domain_errors import InvalidInput, UnsupportedMediaType
from hub.errors import request_id
from hub.services import policies as service

bp = APIBlueprint("policies", __name__, url_prefix="/v1/policies", tag="Release policies")

#: The media types a policy document may be sent as, besides JSON.
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


class VersionSchema(Schema):
    """A policy version: its number, state, digest and who proposed it."""

    version = Integer()
    state = String(metadata={"description": "proposed, active, rejected, changes_requested, ..."})
    sha256 = String(metadata={"description": "SHA-256 of the YAML document as stored (hex)."})
    proposed_by = String(allow_none=True)
    proposer_name = String(allow_none=True)
    rationale = String()
    created_at = String()
    decided_at = String(allow_none=True)
    activated_at = String(allow_none=True)
    superseded_at = String(allow_none=True)
    revision = Integer()
    etag = String(metadata={"description": "Send it as If-Match to vote or comment."})


class VersionListSchema(Schema):
    """Every policy version, newest first."""

    active_version = Integer()
    versions = List(Nested(VersionSchema))


class VersionDetailSchema(VersionSchema):
    """A policy version with its document, its review and its changes to the active version."""

    active_version = Integer()
    document = String(metadata={"description": "The YAML document as proposed."})
    policy = Dict(metadata={"description": "The validated policy, defaults filled in."})
    review = Dict(metadata={"description": "quorum, approvals, needed, votes"})
    diff_against_active = Dict(
        metadata={"description": "changes [{path, old, new, note, text}] and text, one per line"}
    )


class ProposalSchema(Schema):
    """A proposal sent as JSON (a YAML body carries the rationale as a query parameter)."""

    document = String(
        required=True, metadata={"description": "The YAML document (or an object in JSON)."}
    )
    rationale = String(required=True, validate=Length(1, 5000))


class RationaleQuerySchema(Schema):
    """The rationale of a proposal sent as a YAML body."""

    rationale = String(validate=Length(1, 5000), metadata={"description": "With a YAML body."})


class VoteSchema(Schema):
    """A board member's vote or comment."""

    decision = String(
        required=True,
        metadata={
            "description": "approve, request_changes, reject or comment",
            "enum": ["approve", "request_changes", "reject", "comment"],
        },
    )
    reason_code = String(required=True, metadata={"description": "See policies.REASON_CODES."})
    text = String(load_default="", validate=Length(0, 5000))


def _answer(shown: dict[str, Any], status: int = 200) -> tuple[dict[str, Any], int, dict[str, str]]:
    return shown, status, {"ETag": shown["etag"]}


def _proposal() -> tuple[str | None, object, str]:
    """Read a proposal's body: YAML text with ``?rationale=``, or JSON."""
    media = request.mimetype
    if media in YAML_TYPES:
        raw = request.get_data(cache=False)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("the YAML document is not UTF-8 text", field="body") from None
        return text, None, request.args.get("rationale", "")
    if media == "application/json":
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise InvalidInput(
                "the JSON body must be an object with 'document' and 'rationale'", field="body"
            )
        rationale = body.get("rationale", "")
        if not isinstance(rationale, str):
            raise InvalidInput("'rationale' must be text", field="rationale")
        return None, body.get("document"), rationale
    raise UnsupportedMediaType(
        f"send the policy as {', '.join(YAML_TYPES)} or application/json, not {media or 'nothing'}"
    )


@bp.get("")
@require_scope("policies:read")
@bp.output(VersionListSchema)
@bp.doc(summary="List the release policy versions, newest first")
def list_versions() -> dict[str, Any]:
    """List policy versions."""
    return service.list_versions(get_session(), current_actor(), current_app.config)


@bp.post("")
@require_scope("policies:write")
@bp.output(VersionDetailSchema, status_code=201, description="Proposed; the board reviews it")
@bp.doc(
    summary="Propose a release policy version for the board's review",
    description="The body is the YAML document (`application/yaml`, with `?rationale=`) or "
    "JSON `{document, rationale}`. Its `version` must be the next one. An invalid document "
    "is answered 422 with `problems` [{path, reason, line}]; a dataset cap below what the "
    "ledger has already spent is refused (422) with the figures.",
    responses={409: "Another proposal took the version, or the board rules refuse it"},
)
def propose() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Propose a version."""
    text, document, rationale = _proposal()
    shown = service.propose(
        get_session(),
        current_actor(),
        current_app.config,
        text=text,
        document=document,
        rationale=rationale,
        request_id=request_id(),
    )
    answer, status, headers = _answer(shown, 201)
    return answer, status, {**headers, "Location": f"/v1/policies/{shown['version']}"}


@bp.get("/active")
@require_scope("policies:read")
@bp.output(VersionDetailSchema)
@bp.doc(summary="Show the release policy in force")
def show_active() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Show the active version."""
    return _answer(service.show(get_session(), current_actor(), None, current_app.config))


@bp.get("/<int:version>")
@require_scope("policies:read")
@bp.output(VersionDetailSchema)
@bp.doc(summary="Show a release policy version, its review and its diff against the active one")
def show_version(version: int) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Show one version."""
    return _answer(service.show(get_session(), current_actor(), version, current_app.config))


@bp.post("/<int:version>/reviews")
@require_scope("policies:read")
@bp.input(VoteSchema, location="json", arg_name="body")
@bp.output(VersionDetailSchema, description="Recorded; the version as it now stands")
@bp.doc(
    summary="Vote on (approve, request changes, reject) or comment on a policy version",
    description="Send `If-Match` with the ETag you read. One vote per member; the proposer "
    "only comments. The version becomes active when the quorum of approvals is met.",
    responses={
        409: "The board's rules refuse the vote (second vote, proposer, decided)",
        412: "The version changed since you read it (If-Match is stale)",
        428: "If-Match is missing",
    },
)
def review(version: int, body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Vote or comment."""
    return _answer(
        service.vote(
            get_session(),
            current_actor(),
            current_app.config,
            version,
            decision=body["decision"],
            reason_code=body["reason_code"],
            text=body["text"],
            if_match=request.headers.get("If-Match"),
            request_id=request_id(),
        )
    )
