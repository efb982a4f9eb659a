"""Jobs: long work (release builds) run by a queue worker, its state kept in the hub's database.

The task queue (Huey, wired in :mod:`hub.jobs`) carries a job's id and nothing else; the job's
state, stage, progress, result and error live in the ``job`` table, so any app server answers
``GET /v1/jobs/{id}``. A job's life:

1. :func:`submit` authorizes the actor under the kind's scope, records the job ``queued`` with
   its audit event, commits, and only then hands the id to the queue (a worker never sees an id
   whose row is not there yet);
2. a worker :func:`run`\\ s it: an atomic claim (``queued`` -> ``running``) with a lease, so two
   workers handed the same id run it once; the lease is renewed by a heartbeat thread while the
   kind's work runs as the actor who asked for it;
3. the job ends ``succeeded`` with its result or ``failed`` with a reason code and the error's
   type (never its message: it could quote a record value), each with its audit event.

A worker killed mid-job renews nothing: once the lease ran out, :func:`reap` fails the job with
reason ``worker-lost``, or queues it again if it charged nothing yet. A kind that charges the
privacy ledger marks the job charged in the charge's own transaction (:meth:`JobRun.charged`),
so a job that charged is never started again and never charged twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from hub import audit
from hub.actors import Actor, PrincipalActor, SystemActor, authorize
from hub.crypto import Keyring
from hub.domain_errors import HubError, NotAuthorized, NotFound, ServiceUnavailable
from hub.models import Job, Principal, utcnow
from hub.services.snapshot import SnapshotCache

log = logging.getLogger("ctdhub.jobs")

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"

#: The hub ending jobs whose worker died. It needs no scope: it only records what happened.
JOB_REAPER = SystemActor("job-reaper", frozenset())

#: Progress is written when the stage changes and at every twentieth of a stage's steps, so a
#: synthesizer reporting thousands of measurements makes at most ~20 writes per stage.
PROGRESS_STEPS = 20


class JobQueue(Protocol):
    """Where a committed job's id is handed to workers (:class:`hub.jobs.HueyQueue`)."""

    def enqueue(self, job_id: str) -> None:
        """Queue ``job_id`` for a worker."""


@dataclass(frozen=True)
class JobEnvironment:
    """The hub's resources a job's work may use (opened by the worker, not the request).

    :param keyring: returns the keyring (raises :class:`ServiceUnavailable` without one).
    :param snapshots: the worker process's snapshot cache.
    :param settings: the hub's settings (the ledger's caps come from the active release
        policy, read when the job runs).
    :param release_directory: where release candidates' files are kept.
    """

    keyring: Callable[[], Keyring]
    snapshots: SnapshotCache
    settings: Mapping[str, Any]
    release_directory: Path


@dataclass(frozen=True)
class JobRun:
    """What a kind's work is handed while it runs.

    :param job_id: the job.
    :param actor: who asked for it (checked again by the work's own service).
    :param parameters: the job's parameters as submitted.
    :param request_id: the id of the HTTP request that submitted it, for audit events.
    :param environment: the hub's resources.
    :param progress: ``progress(stage, done, total)``; throttled, renews the lease.
    """

    job_id: str
    actor: Actor
    parameters: dict[str, Any]
    request_id: str | None
    environment: JobEnvironment
    progress: Callable[[str, int, int], None]

    def charged(self, session: Session, result: Mapping[str, Any]) -> None:
        """Mark the job charged, with its result so far, inside the caller's charge transaction.

        Call it in the very transaction that charges the ledger: both commit or neither does.
        """
        session.execute(
            update(Job)
            .where(Job.id == self.job_id)
            .values(charged_at=utcnow(), result=dict(result))
        )


@dataclass(frozen=True)
class JobKind:
    """A kind of job: what starting and reading it needs, its work, and its clean-up.

    :param name: stored in ``job.kind``.
    :param start_scope: the scope its submitter needs; the submitter reads the job under it.
    :param read_scope: the scope under which others (the board) read any job of this kind.
    :param work: runs the job; returns its result (ids only).
    :param abandon: cleans up after a worker lost mid-job (in the reaper's transaction).
    """

    name: str
    start_scope: str
    read_scope: str
    work: Callable[[Session, JobRun], dict[str, Any]]
    abandon: Callable[[Session, Job, SystemActor], None] | None = None


# --- submitting and reading -------------------------------------------------------------------


def _refuse_no_actor(actor: object) -> None:
    """Refuse at once when no actor is given: a job's scope comes from its kind, read later."""
    if not isinstance(actor, PrincipalActor | SystemActor):
        raise NotAuthorized(
            "no actor was given: a job is started, read or reaped only for a principal or a "
            "named system actor passed on purpose"
        )


def _actor_columns(actor: Actor) -> dict[str, Any]:
    if isinstance(actor, PrincipalActor):
        return {"principal_id": actor.id, "actor_name": None, "scopes": " ".join(actor.scopes)}
    return {"principal_id": None, "actor_name": actor.name, "scopes": " ".join(actor.scopes)}


def create(
    session: Session,
    actor: Actor,
    kind: JobKind,
    parameters: Mapping[str, Any],
    *,
    request_id: str | None = None,
) -> Job:
    """Record a ``queued`` job with its audit event and commit (without queueing it).

    :raises hub.domain_errors.NotAuthorized: if ``actor`` may not start a job of this kind.
    """
    _refuse_no_actor(actor)
    authorize(actor, kind.start_scope)
    job = Job(
        kind=kind.name,
        state=QUEUED,
        done=0,
        total=0,
        attempts=0,
        parameters=dict(parameters),
        request_id=request_id,
        **_actor_columns(actor),
    )
    session.add(job)
    session.flush()
    audit.record(
        session,
        "jobs:job:enqueue",
        actor=actor,
        request_id=request_id,
        subject_id=job.id,
        details={"kind": kind.name},
    )
    session.commit()
    return job


def submit(
    session: Session,
    actor: Actor,
    kind: JobKind,
    parameters: Mapping[str, Any],
    *,
    queue: JobQueue,
    request_id: str | None = None,
) -> Job:
    """Record a job and queue it for a worker; return it (``queued``).

    :raises hub.domain_errors.ServiceUnavailable: if the queue refused it; the job is then
        recorded ``failed`` with reason ``queue-unavailable``.
    """
    _refuse_no_actor(actor)
    job = create(session, actor, kind, parameters, request_id=request_id)
    try:
        queue.enqueue(job.id)
    except Exception as error:
        _end(
            session, job.id, None, FAILED, actor, error=f"queue-unavailable: {type(error).__name__}"
        )
        raise ServiceUnavailable(
            "the job queue is unavailable; the job was recorded as failed, nothing was charged",
            job_id=job.id,
        ) from None
    return job


def get(session: Session, actor: Actor, job_id: str, kinds: Mapping[str, JobKind]) -> Job:
    """Return a job to the actor who started it or to one holding its kind's read scope.

    Anyone else is told it does not exist, so job ids reveal nothing.

    :raises hub.domain_errors.NotFound: if there is no such job visible to ``actor``.
    """
    _refuse_no_actor(actor)
    job = session.get(Job, job_id)
    if job is None or job.kind not in kinds:
        raise NotFound("no such job")
    kind = kinds[job.kind]
    try:
        authorize(actor, kind.start_scope)
        if _started_by(job, actor):
            return job
    except NotAuthorized:
        pass
    try:
        authorize(actor, kind.read_scope)
    except NotAuthorized:
        raise NotFound("no such job") from None
    return job


def _started_by(job: Job, actor: Actor) -> bool:
    if isinstance(actor, PrincipalActor):
        return job.principal_id == actor.id
    return job.principal_id is None and job.actor_name == actor.name


def describe(job: Job) -> dict[str, Any]:
    """Return the job as the API shows it (ids, codes and counts only)."""

    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "stage": job.stage,
        "progress": {"done": job.done, "total": job.total},
        "attempts": job.attempts,
        "charged": job.charged_at is not None,
        "result": job.result,
        "error": job.error,
        "created_at": when(job.created_at),
        "started_at": when(job.started_at),
        "heartbeat_at": when(job.heartbeat_at),
        "lease_expires_at": when(job.lease_expires_at),
        "finished_at": when(job.finished_at),
    }


def actor_of(session: Session, job: Job) -> Actor:
    """Return the actor a job acts as: its submitter, with the scopes it submitted under.

    :raises hub.domain_errors.NotAuthorized: if the job names no actor or an unknown principal.
    """
    scopes = frozenset(job.scopes.split())
    if job.principal_id is not None:
        principal = session.get(Principal, job.principal_id)
        if principal is None:
            raise NotAuthorized(f"job {job.id} names an unknown principal")
        return PrincipalActor(principal, scopes)
    if job.actor_name:
        return SystemActor(job.actor_name, scopes)
    raise NotAuthorized(f"job {job.id} names no actor")


# --- running ----------------------------------------------------------------------------------


def worker_token() -> str:
    """Return a token naming this claim of a job: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def claim(session: Session, job_id: str, worker: str, lease: timedelta) -> Job | None:
    """Take a ``queued`` job for ``worker`` with a lease; ``None`` if it is not queued.

    One conditional update: of two workers handed the same id, one wins.
    """
    now = utcnow()
    taken = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == QUEUED)
        .values(
            state=RUNNING,
            worker=worker,
            attempts=Job.attempts + 1,
            started_at=now,
            heartbeat_at=now,
            lease_expires_at=now + lease,
        )
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        return None
    job = session.get_one(Job, job_id, populate_existing=True)
    audit.record(
        session,
        "jobs:job:start",
        actor=actor_of(session, job),
        request_id=job.request_id,
        subject_id=job.id,
        details={"kind": job.kind, "attempt": job.attempts},
    )
    session.commit()
    return job


def renew(
    session: Session,
    job_id: str,
    worker: str,
    lease: timedelta,
    progress: tuple[str, int, int] | None = None,
) -> bool:
    """Renew a running job's lease (and record its progress); ``False`` if no longer ours."""
    now = utcnow()
    values: dict[str, Any] = {"heartbeat_at": now, "lease_expires_at": now + lease}
    if progress is not None:
        values.update(stage=progress[0][:64], done=progress[1], total=progress[2])
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == RUNNING, Job.worker == worker)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _end(
    session: Session,
    job_id: str,
    worker: str | None,
    state: str,
    actor: Actor,
    *,
    result: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> bool:
    """End a job (if it is still ours) with its audit event, in one transaction."""
    session.rollback()
    condition = [Job.id == job_id, Job.state.in_((QUEUED, RUNNING))]
    if worker is not None:
        condition += [Job.state == RUNNING, Job.worker == worker]
    values: dict[str, Any] = {"state": state, "finished_at": utcnow(), "lease_expires_at": None}
    if result is not None:
        values["result"] = dict(result)
    if error is not None:
        values["error"] = error[:200]
    ended = session.execute(
        update(Job).where(*condition).values(**values).execution_options(synchronize_session=False)
    )
    if ended.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        return False
    job = session.get_one(Job, job_id, populate_existing=True)
    audit.record(
        session,
        "jobs:job:succeed" if state == SUCCEEDED else "jobs:job:fail",
        actor=actor,
        request_id=job.request_id,
        subject_id=job_id,
        details={"kind": job.kind, "error": job.error} if error else {"kind": job.kind},
    )
    session.commit()
    return True


class _Heartbeat:
    """Renews a running job's lease every third of it, and writes its progress (throttled)."""

    def __init__(
        self, sessions: sessionmaker[Session], job_id: str, worker: str, lease: timedelta
    ) -> None:
        self.sessions, self.job_id, self.worker, self.lease = sessions, job_id, worker, lease
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._last: tuple[str, int] | None = None
        self._thread = threading.Thread(target=self._beat, name=f"job-{job_id}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.lease.total_seconds() / 3):
            try:
                with self._lock, self.sessions() as session:
                    renew(session, self.job_id, self.worker, self.lease)
            except Exception as error:  # a missed beat is retried; the lease has slack
                log.warning("job %s: heartbeat failed (%s)", self.job_id, type(error).__name__)

    def progress(self, stage: str, done: int, total: int) -> None:
        step = max(1, total // PROGRESS_STEPS)
        last = self._last
        if last is not None and last[0] == stage and done < total and done - last[1] < step:
            return
        self._last = (stage, done)
        with self._lock, self.sessions() as session:
            renew(session, self.job_id, self.worker, self.lease, (stage, done, total))


def run(
    sessions: sessionmaker[Session],
    job_id: str,
    kinds: Mapping[str, JobKind],
    environment: JobEnvironment,
    *,
    lease: timedelta,
    worker: str | None = None,
    observe: Callable[[str, int, int], None] | None = None,
) -> str | None:
    """Claim and run one job; return its final state, or ``None`` if it was not queued.

    :param observe: also told every progress step (the command line's progress bar).

    The work's errors end the job ``failed`` (a domain error's problem slug, or the error's
    type) and are not raised: the job row is where they are reported.
    """
    worker = worker or worker_token()
    with sessions() as session:
        job = claim(session, job_id, worker, lease)
        if job is None:
            return None
        kind = kinds.get(job.kind)
        actor = actor_of(session, job)
        if kind is None:
            _end(session, job_id, worker, FAILED, actor, error=f"unknown-kind: {job.kind}")
            return FAILED
        with _Heartbeat(sessions, job_id, worker, lease) as heartbeat:

            def progress(stage: str, done: int, total: int) -> None:
                heartbeat.progress(stage, done, total)
                if observe is not None:
                    observe(stage, done, total)

            job_run = JobRun(
                job_id=job_id,
                actor=actor,
                parameters=dict(job.parameters),
                request_id=job.request_id,
                environment=environment,
                progress=progress,
            )
            try:
                result = kind.work(session, job_run)
            except HubError as error:
                _end(session, job_id, worker, FAILED, actor, error=f"{error.slug}: {error.detail}")
                return FAILED
            except OSError as error:
                reason = f"files-not-written: {type(error).__name__}"
                _end(session, job_id, worker, FAILED, actor, error=reason)
                return FAILED
            except Exception as error:
                log.warning("job %s failed: %s", job_id, type(error).__name__)
                _end(session, job_id, worker, FAILED, actor, error=type(error).__name__)
                return FAILED
        ended = _end(session, job_id, worker, SUCCEEDED, actor, result=result)
        return SUCCEEDED if ended else None


# --- reaping ----------------------------------------------------------------------------------


def reap(
    session: Session,
    actor: SystemActor,
    kinds: Mapping[str, JobKind],
    *,
    max_attempts: int,
    now: datetime | None = None,
) -> tuple[list[str], list[str]]:
    """End or requeue every running job whose lease ran out (its worker died).

    A job that charged the ledger, or that ran ``max_attempts`` times, is failed with reason
    ``worker-lost`` and its kind's clean-up; one that charged nothing goes back to ``queued``.
    Each change is conditional on the job being unchanged, so reapers racing do it once.

    :param actor: the system actor reaping (:data:`JOB_REAPER`), for the audit trail.
    :param now: the time the leases are compared with; the current time by default.
    :returns: the ids failed and the ids to queue again (after this commit).
    """
    _refuse_no_actor(actor)
    now = now or utcnow()
    expired = list(
        session.execute(
            select(Job.id).where(Job.state == RUNNING, Job.lease_expires_at < now)
        ).scalars()
    )
    session.rollback()
    failed: list[str] = []
    requeued: list[str] = []
    for job_id in expired:
        job = session.get(Job, job_id, populate_existing=True)
        if job is None or job.state != RUNNING or job.lease_expires_at is None:
            session.rollback()
            continue
        lost = job.worker
        give_up = job.charged_at is not None or job.attempts >= max_attempts
        if give_up:
            why = "charged" if job.charged_at is not None else "out of attempts"
            values: dict[str, Any] = {
                "state": FAILED,
                "finished_at": now,
                "lease_expires_at": None,
                "error": f"worker-lost: the worker stopped renewing its lease ({why})",
            }
        else:
            values = {"state": QUEUED, "worker": None, "lease_expires_at": None}
            values.update(stage=None, done=0, total=0)
        # Only if nothing changed since it was read: of reapers racing (or a late heartbeat),
        # one wins and the others leave it.
        changed = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.state == RUNNING,
                Job.worker == lost,
                Job.lease_expires_at < now,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if changed.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            continue
        job = session.get_one(Job, job_id, populate_existing=True)
        if give_up:
            kind = kinds.get(job.kind)
            if kind is not None and kind.abandon is not None:
                kind.abandon(session, job, actor)
            failed.append(job_id)
        else:
            requeued.append(job_id)
        audit.record(
            session,
            "jobs:job:expire" if give_up else "jobs:job:retry",
            actor=actor,
            request_id=None,
            subject_id=job_id,
            details={"kind": job.kind, "attempts": job.attempts, "worker": (lost or "")[:100]},
        )
        session.commit()
    return failed, requeued
