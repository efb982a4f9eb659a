"""Differentially private researcher queries over every accepted case record.

A query is a JSON spec (see :func:`disclosure_control.dp.parse_spec`) validated against the
record schema. Its cost is known before any data is read (:func:`preview`); :func:`run` then
re-serves a stored answer if the researcher asked the same question of the same snapshot (free:
fresh noise on the same question would average the noise away), and otherwise locks the
dataset's ledger, refuses the query if it does not fit, runs the OpenDP measurement once and
stores the answer, the charge and the audit event in one transaction. Answers are never logged
or audited: the audit event holds who, the spec, the spend and the time.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contributors.schema import load_schema
from disclosure_control.dp import (
    Field,
    PrivacySpend,
    QueryPlan,
    QuerySpec,
    QuerySpecError,
    Release,
    Snapshot,
    SpendOutOfRange,
    canonical_json,
    nonnegative_integer_counts,
    parse_spec,
    plan_query,
    release,
    schema_of,
)
from hub import audit
from hub.actors import Actor, PrincipalActor, acting_principal
from hub.crypto import Keyring
from hub.domain_errors import InvalidInput, NotAuthorized, ValidationFailed
from hub.models import QueryAnswer
from hub.services import ledger, policies
from hub.services.snapshot import SnapshotCache, analysis_snapshot, live_snapshot_id

SCOPE = "queries:run"


@lru_cache(maxsize=1)
def query_schema() -> dict[str, Field]:
    """Return the fields a researcher may query, built from the one record schema.

    The pseudonym is left out: it links a partner's re-submissions and is not an attribute of
    a case anyone may group or filter on.
    """
    schema = load_schema()
    fields = []
    for item in schema.fields:
        if item.role == "pseudonym":
            continue
        if item.type == "string":
            fields.append(Field(item.name, "string", item.codes or None))
        elif item.type == "integer":
            bounds = (
                (item.minimum, item.maximum)
                if item.minimum is not None and item.maximum is not None
                else None
            )
            fields.append(Field(item.name, "integer", bounds=bounds))
        else:
            fields.append(Field(item.name, "boolean"))
    return schema_of(fields)


class DPSnapshotCache:
    """The typed, in-memory DP snapshots of recent analysis snapshots, by ``snapshot_id``.

    Typing a snapshot for OpenDP takes a pass over every record; queries on the same snapshot
    share one. Records stay in process memory (never spilled to a file).
    """

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._items: OrderedDict[str, Snapshot] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, build: Callable[[], Snapshot]) -> Snapshot:
        """Return the snapshot under ``key``, building it with ``build()`` if absent.

        :param key: the analysis snapshot's id
        :param build: makes the typed snapshot (called under the cache's lock, so once)
        """
        with self._lock:
            item = self._items.get(key)
            if item is None:
                item = build()
                self._items[key] = item
                while len(self._items) > max(self.size, 1):
                    self._items.popitem(last=False)[1].close()
            self._items.move_to_end(key)
            return item


@dataclass(frozen=True)
class QueryContext:
    """What a query needs besides the session and principal: keys, caches and the settings.

    :param keyring: decrypts record batches
    :param snapshots: the hub's cache of decrypted analysis snapshots
    :param dp_snapshots: the cache of typed DP snapshots
    :param config: the hub's settings (the caps come from the active release policy)
    """

    keyring: Keyring
    snapshots: SnapshotCache
    dp_snapshots: DPSnapshotCache
    config: Mapping[str, Any]


@dataclass(frozen=True)
class Rules:
    """What the active release policy says about queries: its fields and the ledger's caps.

    :param active: the release policy in force
    :param budget: its caps, as the ledger compares them
    """

    active: policies.ActivePolicy
    budget: ledger.BudgetPolicy


def rules(session: Session, config: Mapping[str, Any]) -> Rules:
    """Return the active release policy's rules for queries (adopting the first if need be).

    :param config: the hub's settings
    """
    active = policies.active_policy(session, config)
    return Rules(active, policies.budget_policy(active, config))


def _refuse_unlisted_fields(spec: QuerySpec, active: policies.ActivePolicy) -> None:
    """Refuse a spec grouping or filtering by a field the release policy does not list."""
    allowed = active.policy.researchers
    for position, name in enumerate(spec.group_by):
        if name not in allowed.group_by:
            raise NotAuthorized(
                f"the release policy (version {active.version}) does not let researchers group "
                f"by {name!r}; they may group by: " + ", ".join(allowed.group_by),
                field=f"group_by[{position}]",
            )
    for position, condition in enumerate(spec.filters):
        if condition.field not in allowed.filter_by:
            raise NotAuthorized(
                f"the release policy (version {active.version}) does not let researchers filter "
                f"on {condition.field!r}; they may filter on: "
                + (", ".join(allowed.filter_by) or "nothing"),
                field=f"filters[{position}].field",
            )


@dataclass(frozen=True)
class Outcome:
    """An answer as served: the stored answer and whether this request was re-served free."""

    answer: dict[str, Any]
    reused: bool


def _plan(document: object, rules: Rules) -> QueryPlan:
    policy = rules.budget
    try:
        plan = plan_query(
            parse_spec(document),
            query_schema(),
            display_delta=policy.display_delta,
            rho_range=policy.query_rho_range,
        )
    except SpendOutOfRange as error:
        raise ValidationFailed(
            f"the query spec is refused at {error.field}: {error.reason}", field=error.field
        ) from None
    except QuerySpecError as error:
        raise InvalidInput(
            f"the query spec is refused at {error.field}: {error.reason}", field=error.field
        ) from None
    # A spec the schema accepts may still ask for what the policy does not allow; refused
    # before any spend is known, let alone charged.
    _refuse_unlisted_fields(plan.spec, rules.active)
    return plan


def _spend_json(spend: PrivacySpend, display_delta: float) -> dict[str, Any]:
    return ledger.amount_json(Fraction(spend.rho), Fraction(spend.delta), display_delta)


def preview(
    session: Session, actor: Actor, document: object, config: Mapping[str, Any]
) -> dict[str, Any]:
    """Return a query's spend and expected accuracy, and whether it fits; charge nothing.

    :param actor: a researcher acting under ``queries:run``
    :param document: the decoded JSON query spec
    :param config: the hub's settings
    """
    principal = acting_principal(actor, SCOPE)
    current = rules(session, config)
    policy = current.budget
    plan = _plan(document, current)
    dataset, researcher = ledger.balances(session, principal.id, policy)
    session.rollback()  # read only: end the read transaction at once
    spend = plan.preview.spend
    return {
        "spec": json.loads(canonical_json(plan.spec)),
        "mechanism": plan.preview.mechanism,
        "spend": _spend_json(spend, policy.display_delta),
        "cells": plan.preview.cells,
        "threshold": plan.preview.threshold,
        "confidence": 0.95,
        "statistics": [
            {
                "name": stat.name,
                "distribution": stat.distribution,
                "scale": stat.scale,
                "half_width": stat.half_width,
            }
            for stat in plan.preview.statistics
        ],
        "fits": dataset.fits(spend) and researcher.fits(spend),
        "remaining": researcher.as_json(policy.display_delta)["remaining"],
    }


def budget(session: Session, actor: Actor, config: Mapping[str, Any]) -> dict[str, Any]:
    """Return the researcher's allowance, spent and remaining, with the dataset's beside it.

    :param actor: a researcher acting under ``queries:run``
    :param config: the hub's settings
    """
    principal = acting_principal(actor, SCOPE)
    policy = rules(session, config).budget
    dataset, researcher = ledger.balances(session, principal.id, policy)
    session.rollback()
    return {
        "dataset": ledger.DATASET,
        "unit": "zero-concentrated DP (rho); epsilon shown at delta",
        "display_delta": policy.display_delta,
        "policy_version": policy.policy_version,
        "researcher": researcher.as_json(policy.display_delta),
        "dataset_ledger": dataset.as_json(policy.display_delta),
    }


def _stored(
    session: Session, principal: PrincipalActor, snapshot: str, spec_sha256: str
) -> QueryAnswer | None:
    return session.scalars(
        select(QueryAnswer).where(
            QueryAnswer.principal_id == principal.id,
            QueryAnswer.dataset == ledger.DATASET,
            QueryAnswer.snapshot_id == snapshot,
            QueryAnswer.spec_sha256 == spec_sha256,
        )
    ).one_or_none()


def _answer_json(
    answer: Release, plan: QueryPlan, snapshot: str, display_delta: float
) -> dict[str, Any]:
    return {
        "snapshot_id": snapshot,
        "spec": json.loads(canonical_json(plan.spec)),
        "measure": answer.measure,
        "group_by": list(answer.group_by),
        "mechanism": answer.mechanism,
        "spend": _spend_json(answer.spend, display_delta),
        "confidence": 0.95,
        "cells": [
            {
                "key": dict(zip(answer.group_by, cell.key, strict=True)),
                "value": cell.noisy,
                "interval": list(cell.interval) if cell.interval is not None else None,
            }
            for cell in answer.cells
        ],
    }


def _served(row: QueryAnswer, reused: bool, nonnegative_counts: bool) -> Outcome:
    """Shape a stored answer for the researcher; post-process counts if asked (costs nothing)."""
    answer = dict(row.answer)
    cells = [dict(cell) for cell in answer["cells"]]
    if nonnegative_counts:
        if answer["measure"] != "count":
            raise InvalidInput(
                f"nonnegative_counts applies to counts, not to a {answer['measure']}",
                field="nonnegative_counts",
            )
        shown = nonnegative_integer_counts([cell["value"] for cell in cells])
        for cell, value in zip(cells, shown, strict=True):
            cell["noisy"] = cell["value"]
            cell["value"] = value
    answer["cells"] = cells
    answer["post_processed"] = nonnegative_counts
    answer["id"] = row.id
    answer["created_at"] = row.created_at.isoformat()
    answer["reused"] = reused
    return Outcome(answer=answer, reused=reused)


def _audit(
    session: Session,
    principal: PrincipalActor,
    row: QueryAnswer,
    spend: PrivacySpend,
    reused: bool,
    request_id: str | None,
) -> None:
    # The spec and the spend, never the answer: its values are released to this researcher
    # only, and logs are read by others.
    audit.record(
        session,
        "queries:query:reuse" if reused else "queries:query:run",
        actor=principal,
        request_id=request_id,
        subject_id=row.id,
        details={
            "dataset": row.dataset,
            "snapshot_id": row.snapshot_id,
            "spec": row.spec,
            "rho": 0.0 if reused else spend.rho,
            "key_selection_delta": 0.0 if reused else spend.delta,
        },
    )


def run(
    session: Session,
    actor: Actor,
    document: object,
    context: QueryContext,
    *,
    request_id: str | None,
    nonnegative_counts: bool = False,
) -> Outcome:
    """Answer a researcher's query: re-served free, or charged and released once.

    :param actor: a researcher acting under ``queries:run``
    :param document: the decoded JSON query spec
    :param context: keyring, caches and budget policy
    :param request_id: the HTTP request's id, recorded in the audit events
    :param nonnegative_counts: post-process counts to non-negative integers with a kept total
    :raises hub.services.ledger.BudgetExceeded: if the spend does not fit; nothing is charged
    """
    principal = acting_principal(actor, SCOPE)
    current = rules(session, context.config)
    policy = current.budget
    plan = _plan(document, current)
    spec_text = canonical_json(plan.spec)
    spec_sha256 = hashlib.sha256(spec_text.encode()).hexdigest()
    stored = _stored(session, principal, live_snapshot_id(session), spec_sha256)
    if stored is not None:
        _audit(session, principal, stored, plan.preview.spend, True, request_id)
        session.commit()
        return _served(stored, True, nonnegative_counts)

    # Decrypt and type the records before taking the ledger's lock, so a slow snapshot build
    # does not hold up other researchers' charges.
    records = analysis_snapshot(session, context.keyring, context.snapshots)
    schema = query_schema()
    data = context.dp_snapshots.get(
        records.snapshot_id,
        lambda: Snapshot(records.records, schema, missing_values=load_schema().missing_values),
    )
    session.rollback()  # end the read transaction: the lock below must start a fresh one

    spend = plan.preview.spend
    try:
        ledger.lock(session, principal.id)
        stored = _stored(session, principal, records.snapshot_id, spec_sha256)
        if stored is not None:
            # The same question was answered while this request waited for the lock.
            _audit(session, principal, stored, spend, True, request_id)
            session.commit()
            return _served(stored, True, nonnegative_counts)
        dataset, researcher = ledger.balances(session, principal.id, policy)
        ledger.refuse_unless_fits(spend, dataset, researcher, policy.display_delta)
        # Only now, with the charge known to fit and the ledger locked, does OpenDP run.
        answer = release(plan, data)
        ledger.charge(session, principal.id, spend)
        row = QueryAnswer(
            dataset=ledger.DATASET,
            principal_id=principal.id,
            snapshot_id=records.snapshot_id,
            spec_sha256=spec_sha256,
            spec=json.loads(spec_text),
            answer=_answer_json(answer, plan, records.snapshot_id, policy.display_delta),
            rho=ledger.as_text(Fraction(spend.rho)),
            delta=ledger.as_text(Fraction(spend.delta)),
        )
        session.add(row)
        session.flush()
        _audit(session, principal, row, spend, False, request_id)
        session.commit()
    except ledger.BudgetExceeded as refusal:
        session.rollback()
        # The refusal is recorded too (who asked what, for how much), in its own transaction:
        # the ledger itself was not touched.
        audit.record(
            session,
            "queries:query:refuse",
            actor=principal,
            request_id=request_id,
            details={
                "dataset": ledger.DATASET,
                "snapshot_id": records.snapshot_id,
                "spec": json.loads(spec_text),
                "rho": spend.rho,
                "key_selection_delta": spend.delta,
                "ledger": refusal.extensions["ledger"],
            },
        )
        session.commit()
        raise
    except BaseException:
        session.rollback()
        raise
    return _served(row, False, nonnegative_counts)


def context_from(config: Mapping[str, Any], **parts: Any) -> QueryContext:
    """Build a :class:`QueryContext` from settings and the app's caches.

    :param config: the hub's settings
    :param parts: ``keyring``, ``snapshots`` and ``dp_snapshots``
    """
    return QueryContext(config=config, **parts)
