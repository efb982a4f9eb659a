"""Releases: building full candidates, the board's votes, and the public published releases.

``POST /v1/releases`` queues a full release candidate's build (202, ``Location: /v1/jobs/{id}``);
the board reads candidates and votes on them; the quorum's vote publishes. Published releases,
their files and data packages are public: no login.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apiflask import APIBlueprint, Schema
from apiflask.fields import Boolean, Dict, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range
from flask import Response, current_app, send_file

from hub import jobs
from hub.api import current_actor
from hub.api.jobs import JobSchema
from hub.auth import require_scope
from hub.db import get_session
from hub.errors import request_id
from hub.services import jobs as job_service
from hub.services import publication, releases, transparency
from hub.services.policies import board_quorum
from policies import Decision

bp = APIBlueprint("releases", __name__, url_prefix="/v1", tag="Releases")


def _app() -> Any:
    return current_app._get_current_object()  # type: ignore[attr-defined]


def _places() -> publication.Places:
    return publication.Places.under(jobs.environment(_app()).release_directory)


class ReleaseRequestSchema(Schema):
    """A full release candidate's build: everything the active policy asks for."""

    seed = Integer(
        load_default=0,
        validate=Range(min=0, max=2**32 - 1),
        metadata={"description": "Seed of the synthetic draw and its held-out split."},
    )


class BallotSchema(Schema):
    """A board member's vote or comment, with a reason code (see policies.REASON_CODES)."""

    decision = String(required=True, validate=OneOf([d.value for d in Decision]))
    reason_code = String(required=True, validate=Length(min=1, max=32))
    remark = String(load_default="", validate=Length(max=2000))


class VoteOutcomeSchema(Schema):
    """Where the board's review stands after a vote."""

    candidate = String()
    release = String(allow_none=True)
    retracted = Boolean(allow_none=True)
    state = String(metadata={"description": "proposed, approved, rejected or changes_requested"})
    approvals = List(String())
    needed = Integer(metadata={"description": "Approvals still needed."})


class CandidateSchema(Schema):
    """A release candidate as the board sees it (its report is computed from real records)."""

    id = String()
    kind = String()
    status = String()
    policy_version = Integer(allow_none=True)
    policy_digest = String(allow_none=True)
    batch_set_digest = String()
    batch_ids = List(String(), allow_none=True)
    rho = String()
    spend = Dict(allow_none=True)
    checks = Dict(allow_none=True)
    report = Dict(allow_none=True)
    files = Dict(allow_none=True)
    error = String(allow_none=True)
    created_at = String()
    finished_at = String(allow_none=True)


class FileSchema(Schema):
    """One file of a release, with its SHA-256."""

    path = String()
    sha256 = String()
    url = String()


class ReleaseSchema(Schema):
    """A published release: immutable; a retracted one keeps its record but not its files."""

    id = String()
    version = Integer()
    policy_version = Integer()
    policy_digest = String()
    batch_set_digest = String()
    published_at = String()
    retracted_at = String(allow_none=True)
    built_before_a_withdrawal = Boolean()
    notes = Dict()
    datapackage = String(allow_none=True)
    files = List(Nested(FileSchema))


@bp.post("/releases")
@require_scope("releases:create")
@bp.input(ReleaseRequestSchema, location="json", arg_name="body")
@bp.output(JobSchema, status_code=202, description="Queued; follow Location for progress")
@bp.doc(
    summary="Build a full release candidate under the active policy, as a job",
    description="k-anonymous microdata, safe tables, DP tables with 95% intervals, DP synthetic "
    "records and the utility and risk report, as the policy states; the whole spend is charged "
    "when a worker starts the build, and the candidate is checked against the policy. Answers "
    "202 with `Location: /v1/jobs/{id}`.",
    responses={400: "The policy's release cannot be planned", 503: "The job queue is unavailable"},
)
def build_release(body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Queue a full release candidate's build."""
    job = releases.submit_release(
        get_session(),
        current_actor(),
        current_app.config,
        queue=jobs.queue(_app()),
        seed=int(body["seed"]),
        request_id=request_id(),
    )
    return job_service.describe(job), 202, {"Location": f"/v1/jobs/{job.id}"}


def _candidate_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "status": row.status,
        "policy_version": row.policy_version,
        "policy_digest": row.policy_digest,
        "batch_set_digest": row.snapshot_id,
        "batch_ids": row.batch_ids,
        "rho": row.rho,
        "spend": row.spend,
        "checks": row.checks,
        "report": row.report,
        "files": (row.artefacts or {}).get("files")
        if row.kind == releases.RELEASE
        else row.artefacts,
        "error": row.error,
        "created_at": row.created_at.isoformat(),
        "finished_at": None if row.finished_at is None else row.finished_at.isoformat(),
    }


@bp.get("/releases/candidates/<id:candidate_id>")
@require_scope("releases:candidates:read")
@bp.output(CandidateSchema)
@bp.doc(
    summary="Show a release candidate, its checks and its report (board only)",
    responses={404: "No such candidate"},
)
def show_candidate(candidate_id: str) -> dict[str, Any]:
    """Show a candidate."""
    return _candidate_json(releases.get_candidate(get_session(), current_actor(), candidate_id))


@bp.post("/releases/candidates/<id:candidate_id>/votes")
@require_scope("releases:approve")
@bp.input(BallotSchema, location="json", arg_name="body")
@bp.output(VoteOutcomeSchema, status_code=201, description="Recorded; the quorum publishes")
@bp.doc(
    summary="Vote on a release candidate (board); the quorum's approval publishes it",
    description="One vote per member; the candidate's builder comments but never votes. A "
    "rejection or a request for changes decides at once.",
    responses={
        403: "Not a board member",
        404: "No such candidate",
        409: "A second vote, a blocked, failed, decided or already published candidate",
    },
)
def vote_on_candidate(candidate_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Record a vote on a candidate."""
    return publication.vote_on_candidate(
        get_session(),
        current_actor(),
        candidate_id,
        publication.Ballot(body["decision"], body["reason_code"], body["remark"]),
        quorum=board_quorum(current_app.config),
        places=_places(),
        request_id=request_id(),
    )


@bp.post("/releases/<id:release_id>/retraction/votes")
@require_scope("releases:approve")
@bp.input(BallotSchema, location="json", arg_name="body")
@bp.output(VoteOutcomeSchema, status_code=201, description="Recorded; the quorum retracts")
@bp.doc(
    summary="Propose (a comment) or vote on retracting a published release (board)",
    description="Retraction hides the files and keeps the release's record and audit trail.",
    responses={403: "Not a board member", 404: "No such release", 409: "Already retracted"},
)
def vote_on_retraction(release_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Record a vote on a retraction."""
    return publication.vote_on_retraction(
        get_session(),
        current_actor(),
        release_id,
        publication.Ballot(body["decision"], body["reason_code"], body["remark"]),
        quorum=board_quorum(current_app.config),
        request_id=request_id(),
    )


@bp.get("/releases")
@bp.output(ReleaseSchema(many=True))
@bp.doc(summary="List published releases, newest first (public)")
def list_releases() -> list[dict[str, Any]]:
    """List the published releases."""
    return publication.list_releases(get_session())


@bp.get("/releases/<id:release_id>")
@bp.output(ReleaseSchema)
@bp.doc(
    summary="Show a published release, its notes and files (public)",
    responses={404: "No such release"},
)
def show_release(release_id: str) -> dict[str, Any]:
    """Show a published release."""
    return publication.get_release(get_session(), release_id)


_MEDIA = {
    ".csv": "text/csv",
    ".json": "application/json",
    ".md": "text/markdown",
    ".txt": "text/plain",
    ".xlsx": publication.MEDIA_TYPES["xlsx"],
    ".parquet": publication.MEDIA_TYPES["parquet"],
}


def _send(path: Path) -> Response:
    response = send_file(
        path,
        mimetype=_MEDIA.get(path.suffix, "application/octet-stream"),
        as_attachment=path.suffix not in (".json", ".md", ".txt"),
        download_name=path.name,
        max_age=0,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/releases/<id:release_id>/files/<path:path>")
@bp.doc(
    summary="Download a file of a published release (public)",
    responses={
        200: "The file, as its manifest lists it",
        404: "No such release or file, or the release was retracted",
        409: "The file no longer matches the manifest",
    },
)
def release_file(release_id: str, path: str) -> Response:
    """Send one file of a release."""
    return _send(publication.release_file(get_session(), release_id, path, _places().published))


@bp.get("/releases/<id:release_id>/datapackage.json")
@bp.doc(
    summary="The release's Frictionless data package (public)",
    responses={200: "The datapackage.json", 404: "No such release, or retracted"},
)
def release_datapackage(release_id: str) -> Response:
    """Send the release's datapackage.json."""
    return _send(
        publication.release_file(
            get_session(), release_id, publication.DATAPACKAGE, _places().published
        )
    )


class TransparencyEntrySchema(Schema):
    """One entry of the transparency log, hash-chained to the one before it."""

    seq = Integer()
    kind = String(metadata={"description": "release, retraction, policy_version or privacy_spend"})
    logged_at = String()
    body = Dict(metadata={"description": "Ids, codes and figures: never a person or a question"})
    previous_hash = String()
    entry_hash = String(metadata={"description": "SHA-256 of previous_hash and the body's JSON"})


@bp.get("/transparency")
@bp.output(TransparencyEntrySchema(many=True))
@bp.doc(
    summary="The public transparency log: releases, policy versions and privacy spends",
    description="Every published release and retraction, every policy version and every "
    "privacy spend (releases and researcher queries, the latter without the researcher or the "
    "question), each written in the transaction of what it records, "
    "with the privacy unit, rho, epsilon and delta, the cap and what was left, oldest first. "
    "Each entry's hash chains it to the one before (`ctdhub transparency verify`).",
)
def transparency_log() -> list[dict[str, Any]]:
    """Show the transparency log (each entry was written with what it records)."""
    return transparency.published_log(get_session())
