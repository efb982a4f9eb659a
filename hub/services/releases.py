"""Release candidates: DP synthetic case records, charged to the dataset's privacy ledger.

A candidate is built from the current analysis snapshot and kept for the governance board;
nothing here publishes anything. Building one:

1. checks the request, the actor's scope and that there are records;
2. in one short transaction, locks the dataset's ledger, refuses a spend over the cap (having
   changed nothing), charges the whole requested rho, and records the candidate as
   ``building`` with its audit event. The charge comes first and is never refunded: once the
   synthesizer has measured the records the privacy loss is real, whatever happens next;
3. fits the synthesizer (every measurement through OpenDP, within the charged rho), draws the
   table with the request's seed and scores it with :mod:`disclosure_control.evaluate`;
4. writes the artefacts into a temporary directory and renames it into place, so a failed
   build leaves no partial files; then records the candidate (model, spend, report, SHA-256 of
   each file) with its audit event. A failure marks the candidate ``failed``.

The fitted model holds released (noisy) values only, so it is stored: with the seed it redraws
the same table exactly (:func:`redraw`). OpenDP's noise itself cannot be seeded.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from contributors.normalise import BOOLEAN_SPELLING, format_records
from contributors.schema import RecordSchema, load_schema
from disclosure_control.dp import (
    Measure,
    PrivacySpend,
    QueryPlan,
    QuerySpec,
    QuerySpecError,
    SpendRequest,
    compose,
    epsilon_delta_to_rho,
    plan_query,
)
from disclosure_control.dp import Release as DPRelease
from disclosure_control.dp import Snapshot as DPSnapshot
from disclosure_control.dp import release as dp_release
from disclosure_control.dp.count import noisy_count
from disclosure_control.evaluate import evaluate_release
from disclosure_control.person import PERSON_COLUMN, person_keys
from disclosure_control.sdc import (
    AnonymisationError,
    Measures,
    SafeTable,
    TableError,
    TablePolicy,
    Tabulation,
    anonymise,
    class_sizes,
    frequency_table,
    load_hierarchies,
    measure,
)
from disclosure_control.synth import BudgetShares, Domain, MarginalSynthesizer, SynthesisModel
from hub import audit
from hub.actors import Actor, PrincipalActor, SystemActor, authorize
from hub.crypto import Keyring
from hub.domain_errors import Conflict, InvalidInput, NotFound
from hub.models import (
    Job,
    PolicyVersion,
    PublishedRelease,
    RecordBatch,
    ReleaseCandidate,
    utcnow,
)
from hub.services import jobs, ledger, transparency
from hub.services.policies import ActivePolicy, active_policy, budget_policy, parse_stored
from hub.services.queries import query_schema, with_derived
from hub.services.snapshot import Snapshot, SnapshotCache, analysis_snapshot
from policies import (
    CandidateReport,
    CheckResult,
    Policy,
    check_candidate,
)

CREATE_SCOPE = "releases:create"
#: A candidate and its report are computed from the real records: the board's alone to read.
CANDIDATES_READ_SCOPE = "releases:candidates:read"
SYNTHETIC = "dp-synthetic"
ARTEFACTS = ("synthetic.csv", "model.json", "report.json", "report.md", "report.html")

#: ``progress(stage, done, total)``, as the synthesizer reports it.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SyntheticRequest:
    """What a DP synthetic release candidate is built with.

    :param records: how many synthetic records to draw (choose a round number: drawing exactly
        as many records as the snapshot holds would publish its size).
    :param epsilon: the privacy loss as epsilon at ``delta`` (converted to rho by OpenDP);
        give this or ``rho``.
    :param rho: the privacy loss in zero-concentrated DP; give this or ``epsilon``.
    :param delta: the delta at which the loss is stated as (epsilon, delta).
    :param seed: seed of the held-out split and of the draw from the fitted model.
    :param holdout: share of records kept from the synthesizer to score attacks against (the
        control set of the risk report); 0 builds without the risk measures.
    :param columns: the schema columns to synthesise; every column with a public domain if
        empty.
    """

    records: int
    epsilon: float | None = None
    rho: float | None = None
    delta: float = 1e-6
    seed: int = 0
    holdout: float = 0.1
    columns: tuple[str, ...] = ()

    def checked_rho(self) -> float:
        """Return the run's rho, refusing a request that is incomplete or out of range."""
        if (self.epsilon is None) == (self.rho is None):
            raise InvalidInput("give the privacy loss as exactly one of epsilon or rho")
        if not 0 < self.delta < 1:
            raise InvalidInput(f"delta must be in (0, 1), got {self.delta!r}")
        if not 0 < self.records <= 10_000_000:
            raise InvalidInput(f"records must be between 1 and 10000000, got {self.records!r}")
        if not 0 <= self.seed < 2**32:  # numpy's generators take seeds of 32 bits here
            raise InvalidInput(f"seed must be between 0 and {2**32 - 1}, got {self.seed!r}")
        if not 0 <= self.holdout < 0.5:
            raise InvalidInput(f"holdout must be in [0, 0.5), got {self.holdout!r}")
        if self.epsilon is not None:
            if not (math.isfinite(self.epsilon) and self.epsilon > 0):
                raise InvalidInput(f"epsilon must be positive, got {self.epsilon!r}")
            return epsilon_delta_to_rho(self.epsilon, self.delta)
        if self.rho is None or not (math.isfinite(self.rho) and self.rho > 0):
            raise InvalidInput(f"rho must be positive, got {self.rho!r}")
        return self.rho


def synthesis_domain(schema: RecordSchema, columns: Sequence[str] = ()) -> Domain:
    """Return the public domain of the synthesised columns, from the record schema alone.

    Coded and bounded-integer fields take their schema values, booleans their CTDC spelling
    (:data:`~contributors.normalise.BOOLEAN_SPELLING`); a field
    without a public domain (the pseudonymous case number) cannot be synthesised.

    :param schema: the record schema.
    :param columns: the columns, in order; every column with a public domain if empty.
    """
    domains: dict[str, tuple[str, ...] | None] = {}
    for name in schema.names:
        spec = schema.field(name)
        domains[name] = BOOLEAN_SPELLING if spec.type == "boolean" else schema.domain(name)
    if columns:
        unknown = [c for c in columns if c not in domains]
        if unknown:
            raise InvalidInput(f"column(s) {unknown} are not in the record schema")
        chosen = list(columns)
    else:
        chosen = [name for name, codes in domains.items() if codes is not None]
    try:
        return Domain.from_schema(domains, chosen)
    except ValueError as error:
        raise InvalidInput(str(error)) from None


def charged_under(policy: ledger.BudgetPolicy) -> dict[str, Any]:
    """What a candidate's charge was made under, kept in its parameters: the privacy unit (the
    transparency log and the board's page state it) and the delta epsilon is shown at."""
    return {"privacy_unit": policy.unit.description, "display_delta": policy.display_delta}


def display_delta_of(candidate: ReleaseCandidate, default: float) -> float:
    """The delta a candidate's epsilons are shown at: its own, else ``default`` (older rows)."""
    value = (candidate.parameters or {}).get("display_delta")
    return float(value) if isinstance(value, int | float) else default


def _request_json(request: SyntheticRequest, rho: float) -> dict[str, Any]:
    document = asdict(request)
    document["columns"] = list(request.columns)
    document["rho"] = rho
    return document


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_synthetic(
    session: Session,
    actor: Actor,
    request: SyntheticRequest,
    *,
    keyring: Keyring,
    snapshots: SnapshotCache,
    policy: ledger.BudgetPolicy,
    directory: Path,
    progress: Progress | None = None,
    request_id: str | None = None,
    on_charge: Callable[[Session, str], None] | None = None,
) -> ReleaseCandidate:
    """Build a DP synthetic release candidate, its files under ``directory/<candidate id>``.

    :param actor: the board member building it, or :data:`hub.actors.OPERATOR` at the command
        line.
    :param request: the run's parameters.
    :param keyring: opens the record batches.
    :param snapshots: the hub's snapshot cache.
    :param policy: the ledger's caps.
    :param directory: where candidates' files are kept.
    :param progress: called as the synthesizer advances.
    :param request_id: the HTTP request's id for the audit events, if built in a request.
    :param on_charge: called with the session and the candidate's id inside the charge's
        transaction (a job marks itself charged there, so it is never run, or charged, twice).
    :raises hub.services.ledger.BudgetExceeded: if the spend does not fit; nothing is charged.
    """
    authorize(actor, CREATE_SCOPE)
    rho = request.checked_rho()
    domain = synthesis_domain(load_schema(), request.columns)
    try:
        # Built (and so checked) before anything is charged; it touches no data yet.
        synthesizer = MarginalSynthesizer(
            domain,
            rho,
            delta=request.delta,
            records_per_person=policy.unit.records_per_person,
        )
    except ValueError as error:
        raise InvalidInput(str(error)) from None
    snapshot = analysis_snapshot(session, keyring, snapshots)
    if len(snapshot.records) == 0:
        raise InvalidInput("there are no accepted records to synthesise from")
    # The records as CTDC writes them (booleans 1/0, missing empty): the domain's codes.
    coded = format_records(snapshot.records)[list(domain.columns)].reset_index(drop=True)
    training, control = _split(_with_persons(coded, snapshot), request.holdout)
    n_control = len(control)
    session.rollback()  # end the read transaction: the ledger's lock starts a fresh one

    spend = PrivacySpend(rho, 0.0)
    parameters = _request_json(request, rho) | charged_under(policy)
    try:
        ledger.lock_dataset(session)
        balance = ledger.dataset_balance(session, policy)
        ledger.refuse_unless_fits(
            spend, balance, None, policy.display_delta, what="this synthetic release"
        )
        ledger.charge(session, None, spend)
        candidate = ReleaseCandidate(
            kind=SYNTHETIC,
            dataset=ledger.DATASET,
            snapshot_id=snapshot.snapshot_id,
            status="building",
            created_by=actor.id if isinstance(actor, PrincipalActor) else None,
            parameters=parameters,
            rho=ledger.as_text(Fraction(rho)),
        )
        session.add(candidate)
        session.flush()
        transparency.log_spend(session, candidate, policy)
        audit.record(
            session,
            "releases:synthetic:charge",
            actor=actor,
            request_id=request_id,
            subject_id=candidate.id,
            details={"dataset": ledger.DATASET, "snapshot_id": snapshot.snapshot_id, "rho": rho},
        )
        if on_charge is not None:
            on_charge(session, candidate.id)
        session.commit()
    except ledger.BudgetExceeded:
        session.rollback()
        audit.record(
            session,
            "releases:synthetic:refuse",
            actor=actor,
            request_id=request_id,
            details={"dataset": ledger.DATASET, "snapshot_id": snapshot.snapshot_id, "rho": rho},
        )
        session.commit()
        raise
    except BaseException:
        session.rollback()
        raise

    candidate_id = candidate.id
    final = directory / candidate_id
    try:
        model = synthesizer.fit(training, progress)
        if progress is not None:
            progress("draw and evaluate", 0, 1)
        synthetic = model.sample(request.records, request.seed)
        training, control = _without_persons(training), _without_persons(control)
        report = evaluate_release(
            training,
            synthetic,
            control if n_control else None,
            metadata={
                "release candidate": candidate_id,
                "kind": SYNTHETIC,
                "epsilon": model.spend.epsilon,
                "delta": request.delta,
                "rho": model.spend.rho,
                "seed": request.seed,
                "note": "scored against the real records: for the board, not for publication",
            },
            n_attacks=200,
            seed=request.seed,
        )
        model_text = model.to_json()
        if progress is not None:
            progress("write files", 0, 1)
        directory.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{candidate_id}-", dir=directory))
        try:
            synthetic.to_csv(staging / "synthetic.csv", index=False)
            (staging / "model.json").write_text(model_text)
            (staging / "report.json").write_text(report.to_json())
            (staging / "report.md").write_text(report.to_markdown())
            (staging / "report.html").write_text(report.to_html())
            artefacts = {name: _sha256(staging / name) for name in ARTEFACTS}
            staging.rename(final)
            if progress is not None:
                progress("write files", 1, 1)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        row = session.get_one(ReleaseCandidate, candidate_id, populate_existing=True)
        if row.status != "building":
            # The job's lease ran out and the reaper failed it meanwhile: it stays failed.
            raise Conflict(f"release candidate {candidate_id} is {row.status}, not building")
        row.status = "candidate"
        row.finished_at = utcnow()
        row.spend = model.spend.to_dict()
        row.model = model_text
        row.report = json.loads(report.to_json())
        row.artefacts = artefacts
        audit.record(
            session,
            "releases:synthetic:build",
            actor=actor,
            request_id=request_id,
            subject_id=candidate_id,
            details={"records": request.records, "artefacts": artefacts},
        )
        session.commit()
        return row
    except BaseException as error:
        session.rollback()
        shutil.rmtree(final, ignore_errors=True)
        _fail(session, "synthetic", candidate_id, type(error).__name__, actor, request_id)
        session.commit()
        raise


# --- as a job ---------------------------------------------------------------------------------


def _checked(request: SyntheticRequest) -> float:
    """Check a request in full (parameters, columns, synthesizer) without touching any data."""
    rho = request.checked_rho()
    domain = synthesis_domain(load_schema(), request.columns)
    try:
        MarginalSynthesizer(domain, rho, delta=request.delta)
    except ValueError as error:
        raise InvalidInput(str(error)) from None
    return rho


def submit_synthetic(
    session: Session,
    actor: Actor,
    request: SyntheticRequest,
    *,
    queue: jobs.JobQueue | None,
    request_id: str | None = None,
) -> Job:
    """Check a synthetic candidate's request and queue its build as a job; return the job.

    Nothing is charged here: the build charges the ledger when a worker starts it.

    :param queue: where the job goes; ``None`` records it for the caller to run itself
        (:func:`hub.services.jobs.run`, as the command line does).
    :raises hub.domain_errors.InvalidInput: if the request is invalid (no job is recorded).
    """
    authorize(actor, CREATE_SCOPE)
    _checked(request)
    parameters = asdict(request)
    parameters["columns"] = list(request.columns)
    if queue is None:
        return jobs.create(session, actor, SYNTHETIC_BUILD, parameters, request_id=request_id)
    return jobs.submit(
        session, actor, SYNTHETIC_BUILD, parameters, queue=queue, request_id=request_id
    )


def _run_synthetic_build(session: Session, run: jobs.JobRun) -> dict[str, Any]:
    parameters = dict(run.parameters)
    parameters["columns"] = tuple(parameters.get("columns") or ())
    request = SyntheticRequest(**parameters)
    environment = run.environment
    caps = budget_policy(active_policy(session, environment.settings), environment.settings)

    def charged(charge_session: Session, candidate_id: str) -> None:
        run.charged(charge_session, {"release_candidate": candidate_id})

    row = build_synthetic(
        session,
        run.actor,
        request,
        keyring=environment.keyring(),
        snapshots=environment.snapshots,
        policy=caps,
        directory=environment.release_directory,
        progress=run.progress,
        request_id=run.request_id,
        on_charge=charged,
    )
    return {"release_candidate": row.id}


def _fail(
    session: Session,
    kind: str,
    candidate_id: str,
    error: str,
    by: Actor,
    request_id: str | None,
    **details: Any,
) -> None:
    """Mark a candidate still ``building`` failed, audited as ``releases:<kind>:fail``.

    :param error: the error's type name only: a message could quote record values.
    :param by: who failed it: the builder, or the reaper for a lost worker.
    """
    row = session.get(ReleaseCandidate, candidate_id)
    if row is None or row.status != "building":
        return
    row.status, row.finished_at, row.error = "failed", utcnow(), error
    audit.record(
        session,
        f"releases:{kind}:fail",
        actor=by,
        request_id=request_id,
        subject_id=candidate_id,
        details={"error": error, **details},
    )


def _abandon_build(kind: str) -> Callable[[Session, Job, SystemActor], None]:
    """Return the reaper's hook for a ``kind`` build ("synthetic" or "release"): it fails the
    candidate a lost worker left ``building``; the charge stands."""

    def abandon(session: Session, job: Job, reaper: SystemActor) -> None:
        candidate_id = (job.result or {}).get("release_candidate")
        if candidate_id is not None:
            _fail(session, kind, candidate_id, "WorkerLost", reaper, None, job_id=job.id)

    return abandon


#: Building a DP synthetic release candidate, as a job.
SYNTHETIC_BUILD = jobs.JobKind(
    name="releases.synthetic",
    start_scope=CREATE_SCOPE,
    read_scope=CANDIDATES_READ_SCOPE,
    work=_run_synthetic_build,
    abandon=_abandon_build("synthetic"),
)


def list_candidates(session: Session, actor: Actor) -> list[ReleaseCandidate]:
    """Return every release candidate, newest first (board only: reports show real records)."""
    authorize(actor, CANDIDATES_READ_SCOPE)
    return list(
        session.execute(
            select(ReleaseCandidate).order_by(
                ReleaseCandidate.created_at.desc(), ReleaseCandidate.id
            )
        ).scalars()
    )


def get_candidate(session: Session, actor: Actor, candidate_id: str) -> ReleaseCandidate:
    """Return one release candidate with its report (board only).

    :raises hub.domain_errors.NotFound: if there is none with that id.
    """
    authorize(actor, CANDIDATES_READ_SCOPE)
    row = session.get(ReleaseCandidate, candidate_id)
    if row is None:
        raise NotFound(f"no release candidate {candidate_id!r}")
    return row


def redraw(session: Session, actor: Actor, candidate_id: str) -> pd.DataFrame:
    """Draw a synthetic candidate's table again from its stored model and seed (no new spend).

    :raises hub.domain_errors.NotFound: if there is no such candidate.
    :raises hub.domain_errors.InvalidInput: if the candidate is not a finished synthetic one.
    """
    row = get_candidate(session, actor, candidate_id)
    if row.kind != SYNTHETIC or row.status != "candidate" or row.model is None:
        raise InvalidInput(f"release candidate {row.id} has no finished synthetic model")
    parameters = row.parameters
    domain = synthesis_domain(load_schema(), parameters["columns"])
    try:
        model = SynthesisModel.from_json(row.model, domain)
    except ValueError as error:
        raise InvalidInput(f"release candidate {row.id} cannot be redrawn: {error}") from None
    table: pd.DataFrame = model.sample(int(parameters["records"]), int(parameters["seed"]))
    return table


# --- full release candidates (issue 13) -------------------------------------------------------
#
# A full candidate is everything one release policy version asks for, built from one snapshot:
# k-anonymous microdata, the safe frequency tables, the DP aggregate tables with 95% intervals,
# DP synthetic microdata, and the utility and re-identification risk report. Its whole spend
# (every DP table and the synthesizer) is charged in one transaction before any measurement,
# exactly as a synthetic candidate is; then every artefact is built and checked by
# :func:`policies.check_candidate`. A candidate that fails a check is ``blocked`` with the
# checks' results; it never reaches the board's approval.

RELEASE = "release"
#: Where the hub's generalisation hierarchies live (one per quasi-identifier).
HIERARCHIES = Path(__file__).resolve().parents[2] / "config" / "hierarchies"
#: A column of the check's copy of the records naming each record's batch, so tables already
#: published are recounted on exactly the batches they counted.
BATCH_COLUMN = "ctdhub:batch"


@dataclass(frozen=True)
class _Plans:
    """What a policy's release spends, planned before anything is charged."""

    dp_tables: dict[str, QueryPlan]
    synthesizer: MarginalSynthesizer | None
    synthetic_domain: Domain | None
    charged: dict[str, PrivacySpend]
    total: PrivacySpend


def _plans(policy: Policy, schema: RecordSchema) -> _Plans:
    """Plan every DP artefact of ``policy`` (no data read), refusing a plan OpenDP cannot make."""
    dp_schema = dict(query_schema())
    cap = float(policy.privacy.dataset_cap.rho)
    tables: dict[str, QueryPlan] = {}
    charged: dict[str, PrivacySpend] = {}
    for table in policy.release.dp_tables:
        spec = QuerySpec(Measure("count"), SpendRequest(rho=table.rho), group_by=table.group_by)
        try:
            plan = plan_query(
                spec,
                dp_schema,
                display_delta=policy.privacy.display_delta,
                rho_range=(min(table.rho, cap) / 2, max(cap, table.rho) * 2),
                unit=policy.privacy.privacy_unit,
            )
        except (QuerySpecError, ValueError) as error:
            raise InvalidInput(f"release.dp_tables.{table.name}: {error}") from None
        tables[table.name] = plan
        charged[f"dp_tables.{table.name}"] = plan.preview.spend
    synthesizer = None
    domain = None
    settings = policy.release.synthetic
    if settings is not None:
        domain = synthesis_domain(schema, settings.columns)
        try:
            synthesizer = MarginalSynthesizer(
                domain,
                settings.rho,
                delta=policy.privacy.display_delta,
                shares=BudgetShares(**settings.shares.model_dump()),
                max_cells=settings.max_cells,
                max_parents=settings.max_parents,
                records_per_person=policy.privacy.privacy_unit.records_per_person,
            )
        except ValueError as error:
            raise InvalidInput(f"release.synthetic: {error}") from None
        charged["synthetic"] = PrivacySpend(settings.rho)
    charged.update(_linkage_count_plan(policy))
    if not charged and not policy.tables.frequency_tables:
        raise InvalidInput("the policy releases nothing: no DP table, no synthetic data, no table")
    return _Plans(tables, synthesizer, domain, charged, compose(charged.values()))


def _with_batches(snapshot: Snapshot, session: Session) -> pd.Series:
    """Return each record's batch id (records are concatenated in the batch set's order)."""
    counts = dict(
        session.execute(
            select(RecordBatch.id, RecordBatch.row_count).where(
                RecordBatch.id.in_(snapshot.batch_ids)
            )
        ).all()
    )
    labels = np.repeat(
        np.array(snapshot.batch_ids, dtype=object),
        [int(counts[batch]) for batch in snapshot.batch_ids],
    )
    if len(labels) != len(snapshot.records):
        raise Conflict("the snapshot's records do not match its batches' row counts")
    return pd.Series(labels, index=snapshot.records.index, dtype="string", name=BATCH_COLUMN)


def submit_release(
    session: Session,
    actor: Actor,
    config: Mapping[str, Any],
    *,
    queue: jobs.JobQueue | None,
    seed: int = 0,
    request_id: str | None = None,
) -> Job:
    """Check the active policy's release and queue its build as a job; return the job.

    Nothing is charged here: the build charges the ledger when a worker starts it. The job
    names the active policy version and its digest: the worker builds under exactly that
    version, even if another becomes active meanwhile.

    :param config: the hub's settings (to adopt the first release policy if there is none;
        adopting commits, so it is done before the job is recorded).
    :param queue: where the job goes; ``None`` records it for the caller to run itself.
    :param seed: seed of the synthetic draw and its held-out split.
    :raises hub.domain_errors.InvalidInput: if the policy's artefacts cannot be planned.
    """
    authorize(actor, CREATE_SCOPE)
    if not 0 <= seed < 2**32:
        raise InvalidInput(f"seed must be between 0 and {2**32 - 1}, got {seed!r}")
    # Before anything changes the session: adopting the first version commits its own
    # transaction, which must not carry a half-made job with it.
    policy = active_policy(session, config, request_id)
    _plans(policy.policy, load_schema())
    parameters = {"policy_version": policy.version, "policy_digest": policy.digest, "seed": seed}
    if queue is None:
        return jobs.create(session, actor, RELEASE_BUILD, parameters, request_id=request_id)
    return jobs.submit(
        session, actor, RELEASE_BUILD, parameters, queue=queue, request_id=request_id
    )


def build_release(
    session: Session,
    actor: Actor,
    policy: ActivePolicy,
    *,
    keyring: Keyring,
    snapshots: SnapshotCache,
    directory: Path,
    seed: int = 0,
    progress: Progress | None = None,
    request_id: str | None = None,
    on_charge: Callable[[Session, str], None] | None = None,
) -> ReleaseCandidate:
    """Build a full release candidate under ``policy``, its files under ``directory/<id>``.

    Steps: plan every DP artefact; read the snapshot; in one transaction lock the ledger,
    refuse a spend over the policy's cap (changing nothing), charge the whole spend and record
    the candidate ``building``; then build the microdata, the safe tables, the DP tables and
    the synthetic data, score them, run the policy's checks, and write the files (into a
    temporary directory renamed into place). The candidate ends ``candidate`` when every check
    passed, ``blocked`` (with the failed checks) otherwise, or ``failed`` on an error; the
    charge stands in every case.

    :param policy: the policy version it is built under.
    :param seed: seed of the synthetic draw and its held-out split.
    :param on_charge: called with the session and the candidate's id inside the charge's
        transaction.
    :raises hub.services.ledger.BudgetExceeded: if the spend does not fit; nothing is charged.
    """
    authorize(actor, CREATE_SCOPE)
    schema = load_schema()
    rules = policy.policy
    plans = _plans(rules, schema)
    snapshot = analysis_snapshot(session, keyring, snapshots)
    if len(snapshot.records) == 0:
        raise InvalidInput("there are no accepted records to build a release from")
    batches = _with_batches(snapshot, session)
    published = _published_tables(session)
    session.rollback()  # end the read transaction: the ledger's lock starts a fresh one

    caps = budget_policy(policy)
    spend = plans.total
    details = {
        "dataset": ledger.DATASET,
        "snapshot_id": snapshot.snapshot_id,
        "policy_version": policy.version,
        "rho": spend.rho,
    }
    try:
        ledger.lock_dataset(session)
        balance = ledger.dataset_balance(session, caps)
        ledger.refuse_unless_fits(spend, balance, None, caps.display_delta, what="this release")
        ledger.charge(session, None, spend)
        candidate = ReleaseCandidate(
            kind=RELEASE,
            dataset=ledger.DATASET,
            snapshot_id=snapshot.snapshot_id,
            status="building",
            created_by=actor.id if isinstance(actor, PrincipalActor) else None,
            parameters=charged_under(caps)
            | {
                "seed": seed,
                # The document itself: publication states its licence, citation and terms.
                "policy": rules.to_json(),
                "spent_before": {
                    "rho": ledger.as_text(balance.spent_rho),
                    "delta": ledger.as_text(balance.spent_delta),
                },
                "charged": {name: _spend_json(s) for name, s in plans.charged.items()},
            },
            rho=ledger.as_text(Fraction(spend.rho)),
            policy_version=policy.version,
            policy_digest=policy.digest,
            batch_ids=list(snapshot.batch_ids),
        )
        session.add(candidate)
        session.flush()
        transparency.log_spend(session, candidate, caps)
        audit.record(
            session,
            "releases:release:charge",
            actor=actor,
            request_id=request_id,
            subject_id=candidate.id,
            details=details,
        )
        if on_charge is not None:
            on_charge(session, candidate.id)
        session.commit()
    except ledger.BudgetExceeded:
        session.rollback()
        audit.record(
            session, "releases:release:refuse", actor=actor, request_id=request_id, details=details
        )
        session.commit()
        raise
    except BaseException:
        session.rollback()
        raise

    candidate_id = candidate.id
    final = directory / candidate_id
    spent_before = PrivacySpend(float(balance.spent_rho), float(balance.spent_delta))
    try:
        built = _build_artefacts(
            snapshot, batches, rules, plans, published, spent_before, seed, progress
        )
        if progress is not None:
            progress("write files", 0, 1)
        directory.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{candidate_id}-", dir=directory))
        try:
            # Imported here: publication reads candidates, so it imports this module.
            from hub.services.publication import write_candidate_files

            artefacts = write_candidate_files(staging, built)
            staging.rename(final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if progress is not None:
            progress("write files", 1, 1)
        row = session.get_one(ReleaseCandidate, candidate_id, populate_existing=True)
        if row.status != "building":
            # The job's lease ran out and the reaper failed it meanwhile: it stays failed.
            raise Conflict(f"release candidate {candidate_id} is {row.status}, not building")
        passed = built.checks.passed
        row.status = "candidate" if passed else "blocked"
        row.finished_at = utcnow()
        row.spend = {name: _spend_json(s) for name, s in built.charged.items()}
        row.model = built.model_text
        row.report = built.report
        row.artefacts = artefacts
        row.checks = built.checks.to_json()
        audit.record(
            session,
            "releases:release:build" if passed else "releases:release:block",
            actor=actor,
            request_id=request_id,
            subject_id=candidate_id,
            details={
                "failed_checks": [f"{r.check}:{r.subject}" for r in built.checks.failures],
                "files": len(artefacts),
            },
        )
        session.commit()
        return row
    except BaseException as error:
        session.rollback()
        shutil.rmtree(final, ignore_errors=True)
        _fail(session, "release", candidate_id, type(error).__name__, actor, request_id)
        session.commit()
        raise


@dataclass(frozen=True)
class BuiltRelease:
    """A candidate's artefacts in memory, before they are written.

    :param microdata: the k-anonymous microdata (``None`` if the anonymiser found no release).
    :param safe_tables: the safe frequency tables by their policy name.
    :param dp_tables: the DP tables by their policy name.
    :param synthetic: the DP synthetic records (``None`` without a synthesizer).
    :param model_text: the fitted synthesis model's JSON.
    :param report: the utility and risk report (for the board; computed from real records).
    :param checks: the policy checks' results.
    :param charged: the spend of every DP artefact.
    :param policy: the policy it was built under.
    :param linkage_count: the DP count of people recorded by more than one partner, with its
        privacy note (``None`` when the policy does not release it).
    """

    microdata: pd.DataFrame | None
    safe_tables: dict[str, SafeTable]
    dp_tables: dict[str, DPRelease]
    synthetic: pd.DataFrame | None
    model_text: str | None
    report: dict[str, Any]
    checks: CandidateReport
    charged: dict[str, PrivacySpend]
    policy: Policy
    linkage_count: dict[str, Any] | None = None


def _anonymised(
    coded: pd.DataFrame, rules: Policy
) -> tuple[pd.DataFrame | None, dict[str, Any], list[CheckResult]]:
    """Return the k-anonymous microdata (the quasi-identifiers, generalised, and the sensitive
    attributes: no other field, since only these are covered by the k and l checks)."""
    micro = rules.microdata
    qis = list(micro.quasi_identifiers)
    sensitive = [] if micro.l_diversity is None else list(micro.l_diversity.attributes)
    carried = [PERSON_COLUMN] if PERSON_COLUMN in coded.columns else []
    try:
        result = anonymise(
            coded[[*qis, *sensitive, *carried]],
            qis,
            load_hierarchies(HIERARCHIES),
            micro.privacy_model(),
            risk_threshold=micro.record_risk.threshold,
        )
    except AnonymisationError as error:
        # The anonymiser's refusal states figures only (sizes, k, the suppression budget).
        refusal = CheckResult("anonymisation", "microdata", False, str(error))
        return None, {"refused": str(error)}, [refusal]
    report = result.report
    data, by_person = _persons_at_least_k(result.data, qis, micro.k)
    suppressed = report.records_suppressed + by_person
    if suppressed > micro.max_suppression * report.records_in:
        reason = (
            f"{by_person} more records are in classes of fewer than k = {micro.k} persons; "
            f"suppressing them would remove {suppressed} of {report.records_in} records, more "
            f"than the {micro.max_suppression:.2%} allowed"
        )
        return None, {"refused": reason}, [CheckResult("anonymisation", "microdata", False, reason)]
    summary = {
        "strategy": report.strategy,
        "levels": dict(report.levels),
        "records_in": report.records_in,
        # The anonymiser's figures with the persons' suppression after it: what is published.
        "records_kept": report.records_kept - by_person,
        "records_suppressed": suppressed,
        "cells_suppressed": report.cells_suppressed,
        "cells_suppressed_by_field": dict(report.cells_suppressed_by_field),
        "classes": report.classes,
        "before": _plain(asdict(report.before)),
        "after": _plain(asdict(report.after if by_person == 0 else _measured(data, rules))),
        "information_loss": dict(report.information_loss),
        "records_suppressed_in_classes_of_fewer_than_k_people": by_person,
    }
    return data.reset_index(drop=True), summary, []


def _measured(data: pd.DataFrame, rules: Policy) -> Measures:
    """Measure the microdata as the anonymiser measures its output (after the persons' step)."""
    micro = rules.microdata
    sensitive = [] if micro.l_diversity is None else list(micro.l_diversity.attributes)
    return measure(
        data,
        list(micro.quasi_identifiers),
        sensitive,
        micro.record_risk.threshold,
        micro.privacy_model().measured_l,
    )


def _persons_at_least_k(data: pd.DataFrame, qis: Sequence[str], k: int) -> tuple[pd.DataFrame, int]:
    """Suppress the records of classes with fewer than ``k`` distinct persons.

    The anonymiser counts records; a class of eleven records of three people is 3-anonymous.
    Returns the data (keeping the person key, for the candidate's checks) and how many records
    were suppressed.
    """
    if PERSON_COLUMN not in data.columns or data.empty:
        return data, 0
    keep = class_sizes(data, list(qis)) >= k
    return data[keep], int((~keep).sum())


def _spend_json(spend: PrivacySpend) -> dict[str, float]:
    return {"rho": spend.rho, "delta": spend.delta}


def _plain(value: Any) -> Any:
    """Return ``value`` as JSON data: NaN and infinities become ``None``, tuples lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _build_artefacts(
    snapshot: Snapshot,
    batches: pd.Series,
    rules: Policy,
    plans: _Plans,
    published: Sequence[PublishedTable],
    spent_before: PrivacySpend,
    seed: int,
    progress: Progress | None,
) -> BuiltRelease:
    """Build and check every artefact of a candidate (after its charge)."""
    schema = load_schema()

    def stage(name: str, done: int, total: int) -> None:
        if progress is not None:
            progress(name, done, total)

    # The records as CTDC writes them (codes, booleans 1/0, missing empty) with the derived
    # attributes: what the anonymiser, the tables and the synthesizer read.
    coded = with_derived(format_records(snapshot.records).reset_index(drop=True))
    # The hub-internal person key rides along so that k and risk count persons; it is dropped
    # from every artefact (the microdata below, the synthesizer's input inside its fit).
    coded = _with_persons(coded, snapshot)

    stage("microdata", 0, 1)
    microdata, anonymisation, refusals = _anonymised(coded, rules)
    stage("microdata", 1, 1)

    declared = rules.tables.frequency_tables
    safe: dict[str, SafeTable] = {}
    table_policy = rules.tables.table_policy()
    for index, table in enumerate(declared):
        stage("safe tables", index, len(declared))
        try:
            safe[table.name] = frequency_table(coded, list(table.dimensions), table_policy)
        except TableError as error:
            refusals.append(CheckResult("table", f"tables.{table.name}", False, str(error)))
    stage("safe tables", len(declared), len(declared))

    dp_tables: dict[str, DPRelease] = {}
    if plans.dp_tables:
        dp_schema = dict(query_schema())
        dp_records = with_derived(snapshot.records.reset_index(drop=True))
        with DPSnapshot(dp_records, dp_schema, missing_values=schema.missing_values) as data:
            for index, (name, plan) in enumerate(plans.dp_tables.items()):
                stage("dp tables", index, len(plans.dp_tables))
                dp_tables[name] = dp_release(plan, data, nonnegative_counts=True)
        stage("dp tables", len(plans.dp_tables), len(plans.dp_tables))

    synthetic = None
    model_text = None
    report: dict[str, Any] = {"microdata": anonymisation}
    charged = {name: s for name, s in plans.charged.items() if not name.startswith("synthetic")}
    settings = rules.release.synthetic
    if plans.synthesizer is not None and plans.synthetic_domain is not None and settings:
        columns = list(plans.synthetic_domain.columns)
        training, control = _split(coded[[*columns, PERSON_COLUMN]], settings.holdout)
        model = plans.synthesizer.fit(training, progress)
        stage("draw and evaluate", 0, 1)
        synthetic = model.sample(settings.records, seed)
        training, control = _without_persons(training), _without_persons(control)
        evaluation = evaluate_release(
            training,
            synthetic,
            control if len(control) else None,
            metadata={
                "kind": RELEASE,
                "epsilon": model.spend.epsilon,
                "delta": rules.privacy.display_delta,
                "rho": model.spend.rho,
                "seed": seed,
                "note": "scored against the real records: for the board, not for publication",
            },
            n_attacks=200,
            seed=seed,
        )
        report["synthetic"] = json.loads(evaluation.to_json())
        model_text = model.to_json()
        # The synthesizer's delta is the one its epsilon is stated at, not a spend of its own.
        charged["synthetic"] = PrivacySpend(model.spend.rho)
        stage("draw and evaluate", 1, 1)

    stage("checks", 0, 1)
    check_records = coded.assign(**{BATCH_COLUMN: batches.reset_index(drop=True)})
    comparable, skipped = _recountable(published, check_records)
    checked = check_candidate(
        rules,
        microdata=microdata,
        tables=safe,
        charged=charged,
        spent_before=spent_before,
        records=check_records,
        published=comparable,
    )
    extra = list(refusals)
    if skipped:
        extra.append(
            CheckResult(
                "differencing_coverage",
                "release",
                True,
                f"{skipped} table(s) of earlier releases count records since withdrawn and"
                " cannot be recounted; they were left out of the differencing check",
                {"tables_left_out": skipped},
            )
        )
    checks = CandidateReport((*checked.results, *extra))
    stage("checks", 1, 1)
    if microdata is not None:
        microdata = _without_persons(microdata)
    return BuiltRelease(
        microdata,
        safe,
        dp_tables,
        synthetic,
        model_text,
        report,
        checks,
        charged,
        rules,
        linkage_count=_linkage_count(snapshot, rules),
    )


# --- record linkage (issue 16): how many people more than one partner recorded --------------

#: The privacy unit of the linkage count, as every note and answer states it.
LINKAGE_UNIT = "one person (all their records, as the hub links them)"


def _linkage_count_plan(policy: Policy) -> dict[str, PrivacySpend]:
    """Return the linkage count's spend, charged with the rest of the release (or nothing)."""
    count = policy.release.linkage_count
    return {} if count is None else {"linkage_count": PrivacySpend(count.rho)}


def _linkage_count(snapshot: Snapshot, rules: Policy) -> dict[str, Any] | None:
    """Measure, after the charge, how many people appear in more than one partner's records.

    The unit is a person as the hub links them: one such group of records added or removed
    changes the count by at most one while the links between the other records stand. That is
    weaker than one survivor: a survivor whose records the hub links into other people's groups
    (one case re-sent, each copy matching another group) merges those groups, and removing only
    their own records can change the count by more than one. The note says so.
    """
    count = rules.release.linkage_count
    if count is None:
        return None
    answer = noisy_count(snapshot.people_in_several_sources, count.rho)
    return {
        "statistic": "people recorded by more than one partner",
        "count": answer.value,
        "lower_95": answer.lower_95,
        "upper_95": answer.upper_95,
        "privacy_unit": LINKAGE_UNIT,
        "rho": answer.rho,
        "mechanism": f"discrete Gaussian, scale {answer.scale:.4g}, sensitivity 1",
        "assumes": (
            "one person as the hub links them (a group of records joined by keyed Bloom-filter "
            "encodings the partners made, or by one case number) changes the count by at most "
            "one, while the links between the other records stand; a survivor whose records "
            "the hub joined to other people's groups is protected only as part of the merged "
            "group, and the greedy matching is not proven to keep the others' links"
        ),
    }


def _with_persons(coded: pd.DataFrame, snapshot: Snapshot) -> pd.DataFrame:
    """Return ``coded`` with each record's hub-internal person key, for the synthesizer to
    bound each person's records by (it never leaves the fit)."""
    keys = person_keys(snapshot.records.reset_index(drop=True)).to_numpy()
    return coded.assign(**{PERSON_COLUMN: keys})


def _without_persons(records: pd.DataFrame) -> pd.DataFrame:
    return records.drop(columns=[PERSON_COLUMN], errors="ignore")


def _split(coded: pd.DataFrame, holdout: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the records, person by person, into the synthesizer's training set and a held-out
    control set.

    Whole persons go one way or the other (a person in both would make the control set look
    like members and understate the attack's advantage), and the draw is fresh and kept
    nowhere: a known seed would make which of the others' records are trained on a known
    function of the record count, so removing one person would move others between the sets.
    """
    persons = person_keys(coded).to_numpy()
    unique, inverse = np.unique(persons, return_inverse=True)
    rng = np.random.default_rng(secrets.randbits(128))
    to_control = rng.permutation(len(unique))[: math.floor(holdout * len(unique))]
    in_control = np.isin(inverse, to_control)
    control = coded.loc[in_control].reset_index(drop=True)
    training = coded.loc[~in_control].reset_index(drop=True)
    return training, control


# --- tables already published, for the differencing check ----------------------------------


@dataclass(frozen=True)
class PublishedTable:
    """A safe table as a release published it: what a reader saw, and what it counted.

    :param release_id: the release.
    :param name: the table's name in its policy.
    :param dimensions: its dimensions.
    :param categories: its categories per dimension.
    :param status: every cell's status code, flattened (margins included).
    :param shown: every cell's published value, flattened (``None`` where hidden).
    :param rounding_base: its rounding base, if rounded.
    :param batch_ids: the batches it counted.
    """

    release_id: str
    name: str
    dimensions: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]
    status: tuple[int, ...]
    shown: tuple[float | None, ...]
    rounding_base: int | None
    batch_ids: frozenset[str]

    @staticmethod
    def record(name: str, table: SafeTable) -> dict[str, Any]:
        """Return what the hub keeps of a safe table it publishes (JSON data)."""
        status = table.status.ravel()
        shown: list[float | None] = [None] * status.size
        values = table.cells["value"].astype("Float64")
        visible = np.flatnonzero(status != _UNPUBLISHED_STATUS)
        for position, value in zip(visible, values, strict=True):
            shown[int(position)] = None if pd.isna(value) else float(value)
        return {
            "name": name,
            "dimensions": list(table.dimensions),
            "categories": [list(c) for c in table.categories],
            "status": [int(s) for s in status],
            "shown": shown,
            "rounding_base": table.rounding_base,
        }


#: SafeTable's status code of a total that is not published (disclosure_control.sdc.tables).
_UNPUBLISHED_STATUS = 3


def _published_tables(session: Session) -> list[PublishedTable]:
    """Return every safe table ever published (retracted releases too: they were public)."""
    rows = session.execute(select(PublishedRelease).order_by(PublishedRelease.version)).scalars()
    tables = []
    for row in rows:
        for item in row.tables:
            tables.append(
                PublishedTable(
                    release_id=row.id,
                    name=str(item["name"]),
                    dimensions=tuple(item["dimensions"]),
                    categories=tuple(tuple(c) for c in item["categories"]),
                    status=tuple(int(s) for s in item["status"]),
                    shown=tuple(item["shown"]),
                    rounding_base=item["rounding_base"],
                    batch_ids=frozenset(row.batch_ids),
                )
            )
    return tables


def _recountable(
    published: Sequence[PublishedTable], records: pd.DataFrame
) -> tuple[list[Tabulation], int]:
    """Return the published tables as tabulations of the records they counted, and how many
    could not be rebuilt (they count batches withdrawn since)."""
    live = set(records[BATCH_COLUMN].dropna().unique())
    out: list[Tabulation] = []
    skipped = 0
    for table in published:
        if not table.batch_ids <= live:
            skipped += 1
            continue
        population = records[records[BATCH_COLUMN].isin(table.batch_ids)]
        domains = dict(zip(table.dimensions, table.categories, strict=True))
        try:
            recount = frequency_table(
                population, list(table.dimensions), TablePolicy(threshold=1), domains=domains
            )
        except TableError:
            skipped += 1
            continue
        if recount.categories != table.categories:
            skipped += 1
            continue
        status = np.array(table.status, dtype=np.int8).reshape(recount.values.shape)
        flat = status.ravel()
        visible = flat != _UNPUBLISHED_STATUS
        cells = recount.cells.copy()
        shown = [table.shown[i] for i in np.flatnonzero(visible)]
        cells["value"] = pd.array(shown, dtype="Float64")
        rebuilt = SafeTable(
            table.dimensions,
            table.categories,
            cells,
            recount.values,
            status,
            (),
            table.rounding_base,
        )
        out.append(Tabulation(rebuilt, keep={BATCH_COLUMN: table.batch_ids}))
    return out, skipped


# --- the full build as a job ----------------------------------------------------------------


def _run_release_build(session: Session, run: jobs.JobRun) -> dict[str, Any]:
    parameters = run.parameters
    version = int(parameters["policy_version"])
    stored = session.scalar(select(PolicyVersion).where(PolicyVersion.version == version))
    if stored is None or stored.sha256 != parameters["policy_digest"]:
        raise Conflict(f"release policy version {version} is not the one the build was asked for")
    policy = ActivePolicy(
        stored.version, parse_stored(stored), stored.sha256, stored.id, stored.document
    )
    session.rollback()  # the build reads the snapshot in a transaction of its own
    environment = run.environment

    def charged(charge_session: Session, candidate_id: str) -> None:
        run.charged(charge_session, {"release_candidate": candidate_id})

    row = build_release(
        session,
        run.actor,
        policy,
        keyring=environment.keyring(),
        snapshots=environment.snapshots,
        directory=environment.release_directory,
        seed=int(parameters.get("seed", 0)),
        progress=run.progress,
        request_id=run.request_id,
        on_charge=charged,
    )
    return {"release_candidate": row.id, "status": row.status}


#: Building a full release candidate under a policy version, as a job.
RELEASE_BUILD = jobs.JobKind(
    name="releases.release",
    start_scope=CREATE_SCOPE,
    read_scope=CANDIDATES_READ_SCOPE,
    work=_run_release_build,
    abandon=_abandon_build("release"),
)
