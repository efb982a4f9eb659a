"""Jobs and the routes that start them: ``/v1/jobs/{id}``, ``POST /v1/releases/synthetic``."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, Schema
from apiflask.fields import Boolean, Dict, Float, Integer, List, Nested, String
from flask import current_app

from hub import jobs
from hub.api import current_actor
from hub.auth import require_scope
from hub.db import get_session
from hub.errors import request_id
from hub.services import jobs as service
from hub.services import releases

bp = APIBlueprint("jobs", __name__, url_prefix="/v1", tag="Jobs")


class ProgressSchema(Schema):
    """How far the current stage is."""

    done = Integer()
    total = Integer()


class JobSchema(Schema):
    """A job: its state, stage, progress, result and error (ids and codes only)."""

    id = String()
    kind = String()
    state = String(metadata={"description": "queued, running, succeeded or failed"})
    stage = String(allow_none=True)
    progress = Nested(ProgressSchema)
    attempts = Integer()
    charged = Boolean(metadata={"description": "Whether it charged the privacy ledger."})
    result = Dict(allow_none=True, metadata={"description": "What it made, e.g. a candidate id."})
    error = String(allow_none=True, metadata={"description": "Reason code and error type."})
    created_at = String()
    started_at = String(allow_none=True)
    heartbeat_at = String(allow_none=True)
    lease_expires_at = String(allow_none=True)
    finished_at = String(allow_none=True)


class SyntheticRequestSchema(Schema):
    """A DP synthetic release candidate's parameters (see ``ctdhub release synthetic``)."""

    records = Integer(required=True)
    epsilon = Float(allow_none=True)
    rho = Float(allow_none=True)
    delta = Float(load_default=1e-6)
    seed = Integer(load_default=0)
    holdout = Float(load_default=0.1)
    columns = List(String(), load_default=list)


@bp.get("/jobs/<id:job_id>")
# Release builds are the only jobs yet: their submitters and the board hold this scope.
@require_scope("releases:create")
@bp.output(JobSchema)
@bp.doc(
    summary="Show a job's state, stage and progress",
    description="Visible to the principal who started it and to the board; 404 to anyone else.",
    responses={404: "No such job visible to you"},
)
def show_job(job_id: str) -> dict[str, Any]:
    """Show a job."""
    return service.describe(service.get(get_session(), current_actor(), job_id, jobs.KINDS))


@bp.post("/releases/synthetic")
@require_scope("releases:create")
@bp.input(SyntheticRequestSchema, location="json", arg_name="body")
@bp.output(JobSchema, status_code=202, description="Queued; follow Location for progress")
@bp.doc(
    summary="Build a DP synthetic release candidate as a job",
    description="The request is checked now; the whole spend is charged to the dataset's ledger "
    "when a worker starts the build. Answers 202 with `Location: /v1/jobs/{id}`.",
    responses={400: "The request is invalid", 503: "The job queue is unavailable"},
)
def build_synthetic(body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Queue a synthetic candidate's build."""
    request = releases.SyntheticRequest(**{**body, "columns": tuple(body["columns"])})
    job = releases.submit_synthetic(
        get_session(),
        current_actor(),
        request,
        queue=jobs.queue(current_app._get_current_object()),  # type: ignore[attr-defined]
        request_id=request_id(),
    )
    return service.describe(job), 202, {"Location": f"/v1/jobs/{job.id}"}
