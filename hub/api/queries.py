"""Differentially private researcher queries and the budget: ``/v1/queries``, ``/v1/budget``."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, Schema
from apiflask.fields import Boolean, Dict, Float, Integer, List, Nested, String
from flask import current_app

from hub.api import current_actor
from hub.auth import require_scope
from hub.crypto import keyring
from hub.db import get_session
from hub.errors import request_id
from hub.services import queries as service

bp = APIBlueprint("queries", __name__, url_prefix="/v1", tag="Queries")

_SPEC_HELP = (
    "The query spec: `measure` ({kind: count|sum|mean|quantile, field, quantile}), `group_by` "
    "(0 to 4 schema fields), `filters` ([{field, values}]) and `spend` (exactly one of {rho}, "
    "{epsilon, delta} or {half_width}: the 95% half-width wanted on each cell)."
)


class QuerySpecSchema(Schema):
    """A researcher's query spec (checked in full against the record schema by the hub)."""

    measure = Dict(required=True, metadata={"description": "What each cell releases."})
    spend = Dict(required=True, metadata={"description": "rho; epsilon with delta; half_width"})
    group_by = List(String(), metadata={"description": "Up to 4 fields of the record schema."})
    filters = List(Dict(), metadata={"description": "[{field, values}]: all must hold."})
    key_selection_delta = Float(
        metadata={"description": "Delta DP key selection may spend on a field with no domain."}
    )


class RunOptionsSchema(Schema):
    """Options of a query run."""

    nonnegative_counts = Boolean(
        load_default=False,
        metadata={
            "description": "Post-process counts to non-negative integers keeping the total "
            "(free: it touches only released values)."
        },
    )


class SpendSchema(Schema):
    """A privacy spend: rho, with epsilon at delta beside it; ``*_exact`` are exact decimals."""

    rho = Float()
    rho_exact = String()
    key_selection_delta = Float()
    key_selection_delta_exact = String()
    epsilon = Float()
    delta = Float()
    delta_exact = String()


class AnswerSchema(Schema):
    """A DP answer: each cell with its 95% interval, the mechanism and the spend."""

    id = String()
    reused = Boolean(metadata={"description": "Re-served from the store: charged nothing."})
    created_at = String()
    snapshot_id = String()
    spec = Dict()
    measure = String()
    group_by = List(String())
    mechanism = String()
    privacy_unit = String(
        metadata={"description": 'What the spend protects: "one person, up to c records".'}
    )
    spend = Nested(SpendSchema)
    confidence = Float()
    post_processed = Boolean()
    cells = List(Dict(), metadata={"description": "[{key, value, interval, noisy?}]"})


class PreviewSchema(Schema):
    """What a query would cost and how accurate it would be."""

    spec = Dict()
    mechanism = String()
    privacy_unit = String(
        metadata={"description": 'What the spend protects: "one person, up to c records".'}
    )
    spend = Nested(SpendSchema)
    cells = Integer(allow_none=True)
    threshold = Integer(allow_none=True)
    confidence = Float()
    statistics = List(Dict())
    fits = Boolean()
    remaining = Dict()


class BudgetSchema(Schema):
    """A researcher's allowance, spent and remaining, with the dataset's ledger beside it."""

    dataset = String()
    unit = String()
    display_delta = Float()
    policy_version = Integer(
        allow_none=True, metadata={"description": "The release policy version setting the caps."}
    )
    researcher = Dict()
    dataset_ledger = Dict()


def _context() -> service.QueryContext:
    extensions = current_app.extensions
    return service.context_from(
        current_app.config,
        keyring=keyring(current_app),
        snapshots=extensions["ctdhub.snapshots"],
        dp_snapshots=extensions["ctdhub.dp_snapshots"],
    )


@bp.post("/queries")
@require_scope("queries:run")
@bp.input(QuerySpecSchema, location="json", arg_name="spec")
@bp.input(RunOptionsSchema, location="query", arg_name="options")
@bp.output(AnswerSchema, status_code=201, description="Answered (200: re-served free)")
@bp.doc(
    summary="Run a differentially private query over every accepted case record",
    description=_SPEC_HELP
    + " The spend is charged to your allowance and the dataset's ledger before OpenDP runs; "
    "the same spec on the same snapshot is re-served free.",
    responses={
        400: "The spec does not fit the record schema",
        403: "The release policy does not let researchers group or filter by a field",
        409: "Over budget",
    },
)
def run_query(spec: dict[str, Any], options: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Answer a query."""
    outcome = service.run(
        get_session(),
        current_actor(),
        spec,
        _context(),
        request_id=request_id(),
        nonnegative_counts=options["nonnegative_counts"],
    )
    return outcome.answer, 200 if outcome.reused else 201


@bp.post("/queries/preview")
@require_scope("queries:run")
@bp.input(QuerySpecSchema, location="json", arg_name="spec")
@bp.output(PreviewSchema)
@bp.doc(
    summary="Preview a query's spend and expected accuracy; charges nothing",
    description=_SPEC_HELP,
    responses={400: "The spec does not fit the record schema"},
)
def preview_query(spec: dict[str, Any]) -> dict[str, Any]:
    """Preview a query."""
    return service.preview(get_session(), current_actor(), spec, current_app.config)


@bp.get("/budget")
@require_scope("queries:run")
@bp.output(BudgetSchema)
@bp.doc(summary="Show your privacy allowance: allowance, spent and remaining")
def show_budget() -> dict[str, Any]:
    """Show the caller's budget."""
    return service.budget(get_session(), current_actor(), current_app.config)
