"""The job queue in the app: Huey, its consumer, and the reaper of jobs whose worker died.

Huey carries only job ids (one task, ``ctdhub.run_job``); each job's state and progress are
rows of the hub's database (:mod:`hub.services.jobs`). The queue's storage is chosen by the
``QUEUE_URL`` setting: empty means SqliteHuey on a file in the instance folder (the demo and a
single machine), ``sqlite:///path`` another file, ``redis://...`` RedisHuey (production: several
workers on several machines). Huey pickles messages, so with ``QUEUE_SECRET`` set (required
with Redis) each is signed and checked before a worker unpickles it. Huey is created on first
use, so an app that queues nothing touches no queue file.

The consumer runs as ``ctdhub worker``; with ``QUEUE_CONSUMER=in-process`` ``ctdhub serve`` runs
that command itself as a child of gunicorn's master (never as threads of a process that forks:
see :class:`hub.serving.HubArbiter`). A server that is not forked (waitress in a thread of the
caller) can instead run it on threads of its own process (:func:`start_in_process`). Either
way a reaper thread runs beside it: at start and every half lease it fails or requeues jobs
whose lease ran out.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from huey import Huey, RedisHuey, SqliteHuey
from huey.consumer import Consumer
from huey.serializer import SignedSerializer

from hub.db import session_factory
from hub.services import jobs as service
from hub.services import releases

log = logging.getLogger("ctdhub.jobs")

TASK_NAME = "ctdhub.run_job"

#: Every kind of job the hub runs, by the name stored in ``job.kind``.
KINDS: dict[str, service.JobKind] = {
    kind.name: kind for kind in (releases.SYNTHETIC_BUILD, releases.RELEASE_BUILD)
}


class HueyQueue:
    """The app's queue: a Huey instance with the one task that runs a job by id."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.huey = make_huey(app)
        self._run_job = self.huey.task(name=TASK_NAME)(self._execute)

    def enqueue(self, job_id: str) -> None:
        """Queue ``job_id`` for a worker."""
        self._run_job(job_id)

    def _execute(self, job_id: str) -> None:
        run_job(self.app, job_id)


def make_huey(app: Flask) -> Huey:
    """Create the Huey instance ``QUEUE_URL`` names (messages only: no results are stored)."""
    url: str = app.config["QUEUE_URL"]
    name: str = app.config["QUEUE_NAME"]
    secret: str = app.config["QUEUE_SECRET"]
    # Huey pickles messages: signed ones are checked before a worker unpickles them.
    serializer = SignedSerializer(secret=secret, salt="ctdhub-queue") if secret else None
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisHuey(name, results=False, serializer=serializer, url=url)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
    else:
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        path = Path(app.instance_path) / "queue.sqlite3"
    return SqliteHuey(name, results=False, serializer=serializer, filename=str(path))


def queue(app: Flask) -> HueyQueue:
    """Return the app's job queue, creating it on first use."""
    existing: HueyQueue | None = app.extensions.get("ctdhub.queue")
    if existing is None:
        existing = app.extensions.setdefault("ctdhub.queue", HueyQueue(app))
    return existing


def lease(app: Flask) -> timedelta:
    """Return the lease a running job holds (``JOB_LEASE_SECONDS``)."""
    return timedelta(seconds=int(app.config["JOB_LEASE_SECONDS"]))


def environment(app: Flask) -> service.JobEnvironment:
    """Return the hub's resources as jobs see them."""
    from hub import crypto

    return service.JobEnvironment(
        keyring=lambda: crypto.keyring(app),
        snapshots=app.extensions["ctdhub.snapshots"],
        settings=app.config,
        release_directory=Path(app.instance_path) / str(app.config["RELEASE_DIRECTORY"]),
    )


def run_job(
    app: Flask, job_id: str, observe: Callable[[str, int, int], None] | None = None
) -> str | None:
    """Run one job in this process (what a worker does with a queued id); see service.run."""
    with app.app_context():
        return service.run(
            session_factory(app),
            job_id,
            KINDS,
            environment(app),
            lease=lease(app),
            observe=observe,
        )


def reap(app: Flask) -> tuple[list[str], list[str]]:
    """Fail or requeue jobs whose lease ran out, and queue the requeued ones again."""
    with session_factory(app)() as session:
        failed, requeued = service.reap(
            session, service.JOB_REAPER, KINDS, max_attempts=int(app.config["JOB_MAX_ATTEMPTS"])
        )
    for job_id in requeued:
        queue(app).enqueue(job_id)
    if failed or requeued:
        log.warning("reaped jobs: %d failed, %d queued again", len(failed), len(requeued))
    return failed, requeued


class Reaper:
    """A thread reaping expired jobs at start and every half lease until stopped."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ctdhub-reaper", daemon=True)

    def start(self) -> Reaper:
        """Reap once now, then keep reaping in the background."""
        reap(self.app)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop reaping (the current pass finishes first)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(lease(self.app).total_seconds() / 2):
            try:
                reap(self.app)
            except Exception as error:  # the database may be briefly away: try next time
                log.warning("reaper pass failed: %s", type(error).__name__)


def consumer(app: Flask, workers: int = 1, **options: Any) -> Consumer:
    """Return a Huey consumer of the app's queue, running jobs on ``workers`` threads."""
    options.setdefault("max_delay", 1.0)
    return queue(app).huey.create_consumer(workers=workers, worker_type="thread", **options)


class _HostedConsumer(Consumer):  # type: ignore[misc]  # huey ships no type hints
    """A consumer started inside another program, which keeps its own signal handlers."""

    def _set_signal_handlers(self) -> None:
        # Consumer.start installs SIGINT/SIGTERM handlers, which only the main thread may do
        # and which would take Ctrl-C away from the server hosting it.
        return None


class InProcessConsumer:
    """Huey's consumer and the reaper on threads of this process (a server that never forks)."""

    def __init__(self, app: Flask, workers: int = 1) -> None:
        self.app = app
        self.consumer = _HostedConsumer(
            queue(app).huey, workers=workers, worker_type="thread", max_delay=1.0
        )
        self.reaper = Reaper(app)

    def start(self) -> InProcessConsumer:
        """Start reaping and consuming."""
        self.reaper.start()
        self.consumer.start()
        return self

    def stop(self) -> None:
        """Stop consuming (a running job finishes first) and reaping."""
        self.consumer.stop(graceful=True)
        self.reaper.stop()


def start_in_process(app: Flask) -> InProcessConsumer | None:
    """Start an in-process consumer if ``QUEUE_CONSUMER`` is ``in-process``; else ``None``."""
    if app.config["QUEUE_CONSUMER"] != "in-process":
        return None
    return InProcessConsumer(app).start()
