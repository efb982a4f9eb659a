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
import shutil
import tempfile
from collections.abc import Callable, Sequence
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
from disclosure_control.dp import PrivacySpend, epsilon_delta_to_rho
from disclosure_control.evaluate import evaluate_release
from disclosure_control.synth import Domain, MarginalSynthesizer, SynthesisModel
from hub import audit
from hub.actors import Actor, PrincipalActor, SystemActor, authorize
from hub.crypto import Keyring
from hub.domain_errors import Conflict, InvalidInput, NotFound
from hub.models import Job, ReleaseCandidate, utcnow
from hub.services import jobs, ledger
from hub.services.snapshot import SnapshotCache, analysis_snapshot

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
        synthesizer = MarginalSynthesizer(domain, rho, delta=request.delta)
    except ValueError as error:
        raise InvalidInput(str(error)) from None
    snapshot = analysis_snapshot(session, keyring, snapshots)
    if len(snapshot.records) == 0:
        raise InvalidInput("there are no accepted records to synthesise from")
    # The records as CTDC writes them (booleans 1/0, missing empty): the domain's codes.
    coded = format_records(snapshot.records)[list(domain.columns)].reset_index(drop=True)
    order = np.random.default_rng(request.seed).permutation(len(coded))
    n_control = math.floor(request.holdout * len(coded))
    control = coded.iloc[np.sort(order[:n_control])].reset_index(drop=True)
    training = coded.iloc[np.sort(order[n_control:])].reset_index(drop=True)
    session.rollback()  # end the read transaction: the ledger's lock starts a fresh one

    spend = PrivacySpend(rho, 0.0)
    parameters = _request_json(request, rho)
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
        row = session.get_one(ReleaseCandidate, candidate_id)
        row.status = "failed"
        row.finished_at = utcnow()
        # The error's type only: a message could quote record values.
        row.error = type(error).__name__
        audit.record(
            session,
            "releases:synthetic:fail",
            actor=actor,
            request_id=request_id,
            subject_id=candidate_id,
            details={"error": type(error).__name__},
        )
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

    def charged(charge_session: Session, candidate_id: str) -> None:
        run.charged(charge_session, {"release_candidate": candidate_id})

    row = build_synthetic(
        session,
        run.actor,
        request,
        keyring=environment.keyring(),
        snapshots=environment.snapshots,
        policy=environment.policy,
        directory=environment.release_directory,
        progress=run.progress,
        request_id=run.request_id,
        on_charge=charged,
    )
    return {"release_candidate": row.id}


def _abandon_synthetic_build(session: Session, job: Job, reaper: SystemActor) -> None:
    """Fail the candidate a lost worker left ``building``; its charge stands."""
    candidate_id = (job.result or {}).get("release_candidate")
    if candidate_id is None:
        return
    row = session.get(ReleaseCandidate, candidate_id)
    if row is None or row.status != "building":
        return
    row.status, row.finished_at, row.error = "failed", utcnow(), "WorkerLost"
    audit.record(
        session,
        "releases:synthetic:fail",
        actor=reaper,
        request_id=None,
        subject_id=candidate_id,
        details={"error": "WorkerLost", "job_id": job.id},
    )


#: Building a DP synthetic release candidate, as a job.
SYNTHETIC_BUILD = jobs.JobKind(
    name="releases.synthetic",
    start_scope=CREATE_SCOPE,
    read_scope=CANDIDATES_READ_SCOPE,
    work=_run_synthetic_build,
    abandon=_abandon_synthetic_build,
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
