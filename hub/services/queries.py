"""Differentially private researcher queries over every accepted case record.

A query is a JSON spec (see :func:`disclosure_control.dp.parse_spec`) validated against the
record schema and the active release policy (the fields researchers may group and filter by,
and the ledger's caps). Its cost is known before any data is read (:func:`preview`); :func:`run`
then re-serves a stored answer if the researcher asked the same question of the same snapshot
(free: fresh noise on the same question would average the noise away), and otherwise follows
the ledger's protocol: lock the dataset's ledger, refuse the query if it does not fit, charge
it and commit (with the answer row, ``measuring``, and the audit event), and only then run the
OpenDP measurement, holding no lock, and store the answer. Answers are never logged or
audited: the audit event holds who, the spec, the spend and the time.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction
from functools import lru_cache
from typing import Any, Literal

import pandas as pd
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
from disclosure_control.person import PrivacyUnit
from disclosure_control.sdc.hierarchies import DerivedAttribute, derived_attributes
from hub import audit
from hub.actors import Actor, PrincipalActor, acting_principal
from hub.crypto import Keyring
from hub.domain_errors import (
    HubError,
    InvalidInput,
    NotAuthorized,
    ServiceUnavailable,
    ValidationFailed,
)
from hub.models import QueryAnswer, utcnow
from hub.services import ledger, policies, transparency
from hub.services.snapshot import (
    SnapshotCache,
    analysis_snapshot,
    live_batches,
    live_record_count,
    live_record_parts,
    live_snapshot_id,
    snapshot_id,
)

SCOPE = "queries:run"
log = logging.getLogger("ctdhub.queries")


@lru_cache(maxsize=1)
def derived() -> dict[str, DerivedAttribute]:
    """Return the record schema's derived attributes (e.g. ``exploitationType``), by name."""
    return derived_attributes(load_schema().as_dict())


def with_derived(records: pd.DataFrame) -> pd.DataFrame:
    """Return ``records`` with a column for each derived attribute, computed from its fields.

    What queries and releases measure alike: a derived attribute is a function of one record's
    own fields, so adding it changes no record's contribution to any count (the privacy unit
    and the sensitivity of every measurement stay those of the plain fields).

    :param records: case records with every field the derived attributes are computed from.
    """
    return records.assign(**{name: item.compute(records) for name, item in derived().items()})


@lru_cache(maxsize=1)
def query_schema() -> dict[str, Field]:
    """Return the fields a researcher may query, built from the one record schema.

    The pseudonym is left out: it links a partner's re-submissions and is not an attribute of
    a case anyone may group or filter on. The derived attributes are in, as coded fields: a
    flag-set attribute takes one of the public combinations of its flags (in schema order,
    joined by its separator) or its ``none`` value, so its domain is public too.
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
    for name, attribute in derived().items():
        codes = [attribute.none]
        for size in range(1, len(attribute.flags) + 1):
            codes += [
                attribute.separator.join(chosen)
                for chosen in itertools.combinations(attribute.flags, size)
            ]
        fields.append(Field(name, "string", tuple(codes)))
    return schema_of(fields)


class DPSnapshotCache:
    """The typed DP snapshots of recent analysis snapshots, by ``snapshot_id``.

    Typing a snapshot for OpenDP takes a pass over every record; queries on the same snapshot
    share one. With ``spill="tmpfs"`` each is one Arrow IPC image on a RAM-backed filesystem,
    which OpenDP scans by path; with ``"memory"`` the records stay in process memory and are
    copied into OpenDP's engine on every query. Neither ever writes records to a disk.

    :param size: how many typed snapshots to keep (at least one)
    :param spill: ``"memory"`` or ``"tmpfs"`` (the hub's ``DP_SNAPSHOT_SPILL``)
    :param tmpfs_dir: the tmpfs directory of the images (``DP_SNAPSHOT_TMPFS_DIR``)
    """

    def __init__(
        self,
        size: int = 2,
        spill: Literal["memory", "tmpfs"] = "memory",
        tmpfs_dir: str = "/dev/shm",  # noqa: S108 -- RAM-backed, checked by Snapshot
    ) -> None:
        self.size = size
        self.spill: Literal["memory", "tmpfs"] = spill
        self.tmpfs_dir = tmpfs_dir
        self._items: OrderedDict[str, Snapshot] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, config: Mapping[str, Any]) -> DPSnapshotCache:
        """Return the cache the hub's settings describe."""
        spill = config["DP_SNAPSHOT_SPILL"]
        return cls(
            spill="tmpfs" if spill == "tmpfs" else "memory",
            tmpfs_dir=config["DP_SNAPSHOT_TMPFS_DIR"],
        )

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
                    # Dropped, not closed: a query may still be scanning it (charged, measuring).
                    # Its tmpfs image goes when the last reader lets go (Snapshot's finalizer).
                    self._items.popitem(last=False)
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


def rules(session: Session, config: Mapping[str, Any], request_id: str | None = None) -> Rules:
    """Return the active release policy's rules for queries (adopting the first if need be).

    :param config: the hub's settings
    :param request_id: the HTTP request's id, for the audit event if the first policy is adopted
    """
    active = policies.active_policy(session, config, request_id)
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
            unit=rules.active.policy.privacy.privacy_unit,
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
        "privacy_unit": plan.unit.description,
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
        "privacy_unit": answer.unit.description,
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
    unit: PrivacyUnit,
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
            "privacy_unit": unit.description,
        },
    )


#: The states of a stored answer (see :class:`hub.models.QueryAnswer`).
MEASURING, ANSWERED, FAILED = "measuring", "answered", "failed"
#: A measuring answer charged longer ago than this was cut off (its process died before it
#: could say): the next ask of the question charges it again and measures it.
ABANDONED_AFTER = timedelta(minutes=15)
#: How long a request waits for the answer to the same question another request is measuring.
WAIT_FOR_ANSWER_SECONDS = 120.0
_POLL_SECONDS = 0.05


class MeasurementFailed(HubError):
    """OpenDP failed after the query was charged: the charge stands, nothing was released."""

    status, slug, title = 500, "measurement-failed", "The measurement failed after its charge"


def _abandoned(row: QueryAnswer) -> bool:
    return row.charged_at is None or utcnow() - row.charged_at > ABANDONED_AFTER


def _await_answer(session: Session, row_id: str) -> QueryAnswer:
    """Wait, holding no lock, until another request's measurement of a question ends."""
    deadline = time.monotonic() + WAIT_FOR_ANSWER_SECONDS
    while True:
        session.rollback()  # see the other request's commit
        row = session.get(QueryAnswer, row_id, populate_existing=True)
        if row is None or row.state != MEASURING or _abandoned(row):
            if row is None:  # a row is never deleted; kept for a clear message all the same
                raise ServiceUnavailable("the answer being measured vanished; ask again")
            return row
        if time.monotonic() > deadline:
            raise ServiceUnavailable(
                "the same question is still being measured by another of your requests; ask "
                "again shortly (it will be re-served free once answered)",
                retry_after=5,
            )
        time.sleep(_POLL_SECONDS)


def _refused(
    session: Session,
    principal: PrincipalActor,
    refusal: ledger.BudgetExceeded,
    snapshot_id: str,
    spec_text: str,
    spend: PrivacySpend,
    request_id: str | None,
    unit: PrivacyUnit,
) -> None:
    """Record a refusal (who asked what, for how much) in its own transaction."""
    audit.record(
        session,
        "queries:query:refuse",
        actor=principal,
        request_id=request_id,
        details={
            "dataset": ledger.DATASET,
            "snapshot_id": snapshot_id,
            "spec": json.loads(spec_text),
            "rho": spend.rho,
            "key_selection_delta": spend.delta,
            "privacy_unit": unit.description,
            "ledger": refusal.extensions["ledger"],
        },
    )
    session.commit()


def _charge(
    session: Session,
    principal: PrincipalActor,
    plan: QueryPlan,
    snapshot_id: str,
    policy: ledger.BudgetPolicy,
    request_id: str | None,
) -> QueryAnswer:
    """Lock the ledger, check, charge and commit; return the answer row to measure.

    Returns an ``answered`` row instead when the question was answered while this request
    waited (re-served free). A question another request is measuring is waited for, holding no
    lock; one whose measurement failed, or was cut off, is charged again here and measured
    again by this request: a measurement is never repeated without its charge.

    :raises hub.services.ledger.BudgetExceeded: if the spend does not fit; nothing is charged
    """
    spec_text = canonical_json(plan.spec)
    spec_sha256 = hashlib.sha256(spec_text.encode()).hexdigest()
    spend = plan.preview.spend
    while True:
        try:
            ledger.lock(session, principal.id)
            stored = _stored(session, principal, snapshot_id, spec_sha256)
            if stored is not None and stored.state == ANSWERED:
                return stored
            if stored is not None and stored.state == MEASURING and not _abandoned(stored):
                session.rollback()  # let go of the ledger while the other request measures
                if _await_answer(session, stored.id).state == ANSWERED:
                    return stored
                continue  # it failed or was cut off: charge it again, under the lock
            ledger.admit(session, principal.id, spend, policy)
            row = stored or QueryAnswer(
                dataset=ledger.DATASET,
                principal_id=principal.id,
                snapshot_id=snapshot_id,
                spec_sha256=spec_sha256,
                spec=json.loads(spec_text),
                answer={},
            )
            # The unit is known at the charge: the transparency log states it from here.
            row.answer = {**(row.answer or {}), "privacy_unit": plan.unit.description}
            row.state, row.error, row.charged_at = MEASURING, None, utcnow()
            row.rho = ledger.as_text(Fraction(spend.rho))
            row.delta = ledger.as_text(Fraction(spend.delta))
            session.add(row)
            session.flush()
            transparency.log_spend(session, row, policy)
            _audit(session, principal, row, spend, False, request_id, plan.unit)
            session.commit()
            return row
        except ledger.BudgetExceeded as refusal:
            session.rollback()
            _refused(
                session, principal, refusal, snapshot_id, spec_text, spend, request_id, plan.unit
            )
            raise
        except BaseException:
            session.rollback()
            raise


def _measure_failed(
    session: Session,
    principal: PrincipalActor,
    row_id: str,
    error: Exception,
    request_id: str | None,
) -> None:
    """Mark a charged answer failed, with the error's type only; the charge stands."""
    session.rollback()
    row = session.get(QueryAnswer, row_id, populate_existing=True)
    if row is None or row.state != MEASURING:
        return
    row.state, row.error = FAILED, type(error).__name__[:200]
    # The error's type, never its message: it could quote a record value.
    audit.record(
        session,
        "queries:query:fail",
        actor=principal,
        request_id=request_id,
        subject_id=row.id,
        details={
            "dataset": row.dataset,
            "snapshot_id": row.snapshot_id,
            "spec": row.spec,
            "error": row.error,
            "charge_stands": True,
        },
    )
    session.commit()


def run(
    session: Session,
    actor: Actor,
    document: object,
    context: QueryContext,
    *,
    request_id: str | None,
    nonnegative_counts: bool = False,
) -> Outcome:
    """Answer a researcher's query: re-served free, or charged and then measured once.

    The ledger's protocol, as for releases: lock, check, charge, commit, then measure. The
    ledger is locked only while the charge is checked and written, never while OpenDP runs,
    so uploads and other researchers' charges do not wait behind a measurement. If the
    measurement fails after the commit, the charge stands, the answer is marked failed and
    :class:`MeasurementFailed` says so; asking the same question again charges it again.

    :param actor: a researcher acting under ``queries:run``
    :param document: the decoded JSON query spec
    :param context: keyring, caches and the hub's settings
    :param request_id: the HTTP request's id, recorded in the audit events
    :param nonnegative_counts: post-process counts to non-negative integers with a kept total
    :raises hub.services.ledger.BudgetExceeded: if the spend does not fit; nothing is charged
    :raises MeasurementFailed: if OpenDP failed after the charge (which stands)
    """
    principal = acting_principal(actor, SCOPE)
    current = rules(session, context.config, request_id)
    policy = current.budget
    plan = _plan(document, current)
    spend = plan.preview.spend
    spec_sha256 = hashlib.sha256(canonical_json(plan.spec).encode()).hexdigest()
    stored = _stored(session, principal, live_snapshot_id(session), spec_sha256)
    if stored is None or stored.state != ANSWERED:
        # Decrypt and type the records before taking the ledger's lock, so a slow snapshot
        # build does not hold up other researchers' charges.
        key, build = _dp_snapshot_source(session, context)
        data = context.dp_snapshots.get(key, build)
        session.rollback()  # end the read transaction: the lock must start a fresh one
        stored = _charge(session, principal, plan, key, policy, request_id)
    if stored.state == ANSWERED:
        _audit(session, principal, stored, spend, True, request_id, plan.unit)
        session.commit()
        return _served(stored, True, nonnegative_counts)

    # Charged and committed: only now does OpenDP run, holding no lock.
    row_id = stored.id
    try:
        answer = release(plan, data)
    except Exception as error:
        log.error(
            "the measurement of query answer %s failed after its charge: %s",
            row_id,
            type(error).__name__,
        )
        _measure_failed(session, principal, row_id, error, request_id)
        raise MeasurementFailed(
            f"the measurement failed after the query was charged (rho={spend.rho!r}, "
            f"key-selection delta={spend.delta!r}); the charge stands and nothing was released. "
            "Asking the same question again charges it again.",
            answer_id=row_id,
        ) from None
    row = session.get(QueryAnswer, row_id, populate_existing=True)
    if row is None:  # pragma: no cover - rows are never deleted
        raise ServiceUnavailable("the charged answer vanished before it was stored")
    row.answer = _answer_json(answer, plan, row.snapshot_id, policy.display_delta)
    row.state = ANSWERED
    session.commit()
    return _served(row, False, nonnegative_counts)


def _dp_snapshot_source(
    session: Session, context: QueryContext
) -> tuple[str, Callable[[], Snapshot]]:
    """Return the live snapshot's id and how to build its typed DP snapshot.

    Up to ``SNAPSHOT_MAX_RECORDS`` records, from the decrypted analysis snapshot (shared with
    the rest of the hub); past it, batch by batch, never holding every record at once.
    """
    schema = query_schema()
    missing = load_schema().missing_values
    cache = context.dp_snapshots
    if live_record_count(session) > context.config["SNAPSHOT_MAX_RECORDS"]:
        rows = live_batches(session)
        key = snapshot_id(tuple(batch_id for batch_id, _ in rows))
        parts = (with_derived(part) for part in live_record_parts(session, context.keyring, rows))
        return key, lambda: Snapshot.from_parts(
            parts, schema, missing_values=missing, tmpfs_dir=cache.tmpfs_dir
        )
    records = analysis_snapshot(session, context.keyring, context.snapshots)
    return records.snapshot_id, lambda: Snapshot(
        with_derived(records.records),
        schema,
        missing_values=missing,
        spill=cache.spill,
        tmpfs_dir=cache.tmpfs_dir,
    )


def context_from(config: Mapping[str, Any], **parts: Any) -> QueryContext:
    """Build a :class:`QueryContext` from settings and the app's caches.

    :param config: the hub's settings
    :param parts: ``keyring``, ``snapshots`` and ``dp_snapshots``
    """
    return QueryContext(config=config, **parts)
