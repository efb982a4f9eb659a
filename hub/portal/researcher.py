"""A researcher's pages: compose a DP query, preview its cost and accuracy, run it, read answers.

The form is turned into the same JSON query spec ``/v1/queries`` takes, and the same service
functions preview, charge and answer it, so the ledger, the allowance and re-serving are the
API's. Every figure shown states its privacy unit and spend.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from werkzeug.datastructures import MultiDict

from contributors.schema import load_schema
from disclosure_control.person import CASE_RECORD
from hub.crypto import keyring
from hub.db import get_session
from hub.domain_errors import InvalidInput, NotAuthorized, ValidationFailed
from hub.errors import request_id
from hub.models import QueryAnswer
from hub.portal.access import current_actor, needs
from hub.portal.charts import answer_chart
from hub.services import answers, ledger
from hub.services import queries as service

MEASURES = ("count", "sum", "mean", "quantile")
SPENDS = ("half_width", "epsilon", "rho")
MAX_GROUP_BY = 4


def register(bp: Blueprint) -> None:
    """Attach the researcher pages to the portal's blueprint."""
    bp.add_url_rule("/researcher/queries", "queries", compose, methods=["GET"])
    bp.add_url_rule("/researcher/queries", "query_action", act, methods=["POST"])
    bp.add_url_rule("/researcher/answers/<id:answer_id>", "answer", answer)
    bp.add_url_rule("/researcher/answers/<id:answer_id>.csv", "answer_csv", download_answer)


def _number(form: MultiDict[str, str], name: str) -> float | None:
    text = form.get(name, "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise InvalidInput(f"{name} must be a number", field=name) from None


def _filter_value(kind: str, text: str) -> Any:
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise InvalidInput(f"filter value {text[:40]!r} is not a whole number") from None
    if kind == "boolean":
        if text.lower() not in {"true", "false"}:
            raise InvalidInput("a yes/no field is filtered with true or false")
        return text.lower() == "true"
    return text


def spec_from_form(form: MultiDict[str, str], display_delta: float) -> dict[str, Any]:
    """Turn the compose form into the API's query spec (the service checks it in full).

    >>> from werkzeug.datastructures import MultiDict
    >>> spec = spec_from_form(MultiDict([("measure", "count"), ("group_by", "gender"),
    ...     ("spend_kind", "rho"), ("spend", "0.01")]), 1e-6)
    >>> spec["measure"], spec["group_by"], spec["filters"], spec["spend"]
    ({'kind': 'count'}, ['gender'], [], {'rho': 0.01})
    """
    fields = service.query_schema()
    kind = form.get("measure", "count")
    measure: dict[str, Any] = {"kind": kind}
    if kind != "count":
        measure["field"] = form.get("measure_field", "")
    if kind == "quantile":
        measure["quantile"] = _number(form, "quantile")
    group_by = [name for name in form.getlist("group_by") if name]
    filters = []
    filter_field = form.get("filter_field", "")
    if filter_field:
        if filter_field not in fields:
            raise InvalidInput(f"{filter_field[:60]!r} is not a field you may filter on")
        values = [v.strip() for v in form.get("filter_values", "").split(",") if v.strip()]
        field_kind = fields[filter_field].kind
        filters.append(
            {"field": filter_field, "values": [_filter_value(field_kind, v) for v in values]}
        )
    spend_kind = form.get("spend_kind", "half_width")
    amount = _number(form, "spend")
    if spend_kind not in SPENDS or amount is None:
        raise InvalidInput("choose how much to spend: a half-width, an epsilon or a rho")
    spend: dict[str, Any] = {spend_kind: amount}
    if spend_kind == "epsilon":
        spend["delta"] = display_delta
    return {"measure": measure, "group_by": group_by, "filters": filters, "spend": spend}


def _page(status: int = 200, **context: Any) -> ResponseReturnValue:
    actor = current_actor()
    db = get_session()
    config = current_app.config
    allowed = service.rules(db, config)
    researchers = allowed.active.policy.researchers
    fields = service.query_schema()
    return (
        render_template(
            "portal/queries.html",
            group_fields=list(researchers.group_by),
            filter_fields=list(researchers.filter_by),
            policy_version=allowed.active.version,
            numeric=[name for name, field in fields.items() if field.kind == "integer"],
            titles={spec.name: gettext(spec.title) for spec in load_schema().fields},
            measures=MEASURES,
            spends=SPENDS,
            max_group_by=MAX_GROUP_BY,
            budget=service.budget(db, actor, config),
            privacy_unit=allowed.budget.unit,
            history=answers.list_answers(db, actor, limit=50),
            form=request.form,
            **context,
        ),
        status,
    )


@needs("queries:run")
def compose() -> ResponseReturnValue:
    """Compose a query; the budget gauge and the history of answers beside it."""
    return _page()


@needs("queries:run")
def act() -> ResponseReturnValue:
    """Preview (charges nothing) or run (charges the ledger, then measures) the composed query."""
    config = current_app.config
    try:
        display_delta = service.rules(get_session(), config).budget.display_delta
        spec = spec_from_form(request.form, display_delta)
        if request.form.get("action") == "run":
            outcome = service.run(
                get_session(),
                current_actor(),
                spec,
                service.context_from(
                    config,
                    keyring=keyring(current_app),
                    snapshots=current_app.extensions["ctdhub.snapshots"],
                    dp_snapshots=current_app.extensions["ctdhub.dp_snapshots"],
                ),
                request_id=request_id(),
            )
            return redirect(url_for("portal.answer", answer_id=outcome.answer["id"]), 303)
        preview = service.preview(get_session(), current_actor(), spec, config)
    except (InvalidInput, ValidationFailed, NotAuthorized, ledger.BudgetExceeded) as error:
        # NotAuthorized here: the release policy does not list a field (the role was checked).
        return _page(error.status, error=error)
    return _page(preview=preview)


@needs("queries:run")
def answer(answer_id: str) -> ResponseReturnValue:
    """One of the researcher's answers: each cell with its 95% interval, and the spend."""
    row = answers.get_answer(get_session(), current_actor(), answer_id)
    budget = service.budget(get_session(), current_actor(), current_app.config)
    return render_template(
        "portal/answer.html",
        row=row,
        answer=row.answer,
        budget=budget,
        privacy_unit=service.rules(get_session(), current_app.config).budget.unit,
        chart=answer_chart(row.answer),
    )


@needs("queries:run")
def download_answer(answer_id: str) -> ResponseReturnValue:
    """One of the researcher's answers as CSV (released values only; charges nothing)."""
    row = answers.get_answer(get_session(), current_actor(), answer_id)
    return Response(
        answer_csv(row),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="ctdhub-answer-{row.id}.csv"'},
    )


#: What each row of a downloaded answer carries besides its group keys: the released value,
#: its 95% interval, and the spend and privacy unit it was released under.
CSV_COLUMNS = ("value", "ci95_low", "ci95_high", "rho", "epsilon", "delta", "privacy_unit")


def _cell_text(value: Any) -> str:
    text = "" if value is None else str(value)
    # A spreadsheet runs a cell starting with these as a formula.
    return "'" + text if isinstance(value, str) and text[:1] in ("=", "+", "@", "\t") else text


def answer_csv(row: QueryAnswer) -> str:
    """Write an answer as CSV: a row per cell, with its interval, spend and privacy unit.

    >>> from types import SimpleNamespace
    >>> stored = SimpleNamespace(answer={"group_by": ["gender"], "cells": [
    ...     {"key": {"gender": "Female"}, "value": 10.5, "interval": [8.0, 13.0]}],
    ...     "spend": {"rho": 0.01, "epsilon": 0.7, "delta": 1e-6}})
    >>> print(answer_csv(stored))  # doctest: +NORMALIZE_WHITESPACE
    gender,value,ci95_low,ci95_high,rho,epsilon,delta,privacy_unit
    Female,10.5,8.0,13.0,0.01,0.7,1e-06,one case record
    """
    released = row.answer
    group_by = list(released["group_by"])
    spend = released["spend"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*group_by, *CSV_COLUMNS])
    for cell in released["cells"]:
        low, high = cell["interval"] if cell.get("interval") else (None, None)
        writer.writerow(
            [_cell_text(cell["key"][name]) for name in group_by]
            + [_cell_text(v) for v in (cell["value"], low, high)]
            + [_cell_text(spend[k]) for k in ("rho", "epsilon", "delta")]
            + [released.get("privacy_unit", CASE_RECORD.description)]
        )
    return buffer.getvalue()
