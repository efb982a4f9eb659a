"""Serve the hub: gunicorn for ``ctdhub serve``, waitress for a server inside this process.

``ctdhub serve`` runs gunicorn's threaded workers. Gunicorn hands the application a request as
soon as its headers are read and streams the body from the socket as the view reads it, so
the bearer token is checked before one body byte is read (an unauthenticated 60 MiB body costs
no memory; gunicorn discards it unread), and the bound on bodies in flight
(``MAX_BODIES_IN_FLIGHT``, per worker) answers 429 before reading too. Gunicorn writes no body
to disk; its workers' heartbeat files hold no request data.

Waitress stays for one job gunicorn cannot do: serving an app object from a thread of the
calling process (the test suite's live hubs, the query bench, and ``make demo``, which uploads
the CTDC data through the API it is serving and stops cleanly on Ctrl-C from its own main
thread), since gunicorn's arbiter must own the main thread, its signals and forked workers.
Waitress reads each whole body before the application sees it; it is kept in memory (never
spooled to a file) and capped, and those servers listen on loopback by default.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import waitress
from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.errors import HaltServer
from waitress.server import BaseWSGIServer, MultiSocketServer


class HubServer(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    """Gunicorn running the hub: each worker process builds its own app with ``factory``.

    :param consumer: the command of a job consumer (``ctdhub worker``) for the master to run as
        a child process beside the workers, or ``None``.
    """

    def __init__(
        self,
        factory: Callable[[], Flask],
        options: dict[str, Any],
        consumer: Sequence[str] | None = None,
    ) -> None:
        self.factory = factory
        self.options = options
        self.consumer = consumer
        super().__init__()

    def run(self) -> None:
        """Run gunicorn's master (with the consumer child, if any) until it is stopped."""
        try:
            HubArbiter(self).run()
        except RuntimeError as error:  # as BaseApplication.run: a bad setting, said in one line
            print(f"\nError: {error}\n", file=sys.stderr)
            sys.exit(1)

    def load_config(self) -> None:
        """Apply our options (and nothing from the command line or a config file)."""
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        """Build the app inside the worker (never before the fork: no shared connections)."""
        return self.factory()


class HubArbiter(Arbiter):  # type: ignore[misc]  # gunicorn ships no type hints
    """Gunicorn's master, which also runs the job consumer as a child process of its own.

    With ``QUEUE_CONSUMER=in-process`` the consumer used to be threads of this process. The
    master forks a worker at start and again whenever one dies, and a child forked while
    another thread holds a lock (logging's, SQLite's, Huey's storage's) inherits it held and
    can deadlock. Starting the consumer in one worker after the fork instead would tie jobs
    to a process gunicorn kills at will (timeouts, respawns) and leave the choice of "the one
    worker" to races. So the consumer is ``ctdhub worker`` in a separate process, started with
    fork+exec (nothing of this process runs in it), and the master keeps a single thread.

    The consumer has a process group of its own, so Ctrl-C reaches it only through the master:
    on any stop the master asks it for a graceful stop (Huey's SIGINT: a running job finishes,
    as the in-process consumer did, so no charged build is thrown away) and waits for it once
    the web workers are gone; a Ctrl-C or SIGTERM during that wait tells it to stop now (the
    reaper then settles its job). If the consumer ends on its own, the master says so and
    stops the hub: queued jobs would otherwise wait for nobody. If the master itself is
    killed (SIGKILL), the consumer lives on as a plain ``ctdhub worker``; stop it by its pid.
    """

    def __init__(self, app: HubServer) -> None:
        super().__init__(app)
        self.consumer_command = app.consumer
        self.consumer: subprocess.Popen[bytes] | None = None
        self.consumer_stopping = False
        self.consumer_reported = False

    def start(self) -> None:
        """Bind and get ready as gunicorn does, then start the consumer (before any worker)."""
        super().start()
        if self.consumer_command is not None:
            self.consumer = subprocess.Popen(  # noqa: S603 - our own command
                list(self.consumer_command), process_group=0, stdin=subprocess.DEVNULL
            )
            self.log.info("job consumer started (pid %s)", self.consumer.pid)

    def spawn_worker(self) -> int:
        """Fork a worker once no other thread of this process runs.

        Building the app for the command (its settings) leaves a short-lived timer thread of
        the rate limiter's memory storage; it ends within moments and is waited for here.
        """
        others = [
            thread for thread in threading.enumerate() if thread is not threading.main_thread()
        ]
        for thread in others:
            thread.join(timeout=5.0)
        running = [thread.name for thread in others if thread.is_alive()]
        if running:
            self.log.warning("forking a worker while other threads run: %s", ", ".join(running))
        pid: int = super().spawn_worker()
        return pid

    def reap_workers(self) -> None:
        """Reap the consumer if it ended (first, by its pid), then gunicorn's workers."""
        consumer = self.consumer
        # Polled even while stopping: gunicorn's waitpid(-1) below would take its status.
        if consumer is not None and consumer.poll() is not None and not self.consumer_stopping:
            self.consumer_reported = True
            reason = f"job consumer (pid {consumer.pid}) {_ending(consumer.returncode)}"
            raise HaltServer(f"{reason}; stopping the hub", 1)
        super().reap_workers()

    def stop(self, graceful: bool = True) -> None:
        """Stop the workers as gunicorn does and the consumer, waiting for both."""
        consumer = self.consumer
        if consumer is not None and not self.consumer_stopping:
            self.consumer_stopping = True
            if consumer.poll() is None:
                consumer.send_signal(signal.SIGINT)
        super().stop(graceful)
        if consumer is None or self.consumer_reported:
            return
        while consumer.poll() is None:
            try:
                sig = self.SIG_QUEUE.get(timeout=0.5)
            except queue.Empty:
                continue
            if sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
                self.log.info("stopping the job consumer now (the reaper settles its job)")
                # Huey's second SIGINT ends its graceful stop at once.
                consumer.send_signal(signal.SIGINT)
        self.consumer_reported = True
        self.log.info("job consumer (pid %s) %s", consumer.pid, _ending(consumer.returncode))


def _ending(status: int) -> str:
    """Describe a child's exit status as ``Popen.returncode`` gives it."""
    if status < 0:
        try:
            return f"ended by {signal.Signals(-status).name}"
        except ValueError:
            return f"ended by signal {-status}"
    return f"exited with status {status}"


def gunicorn_options(
    host: str, port: int, workers: int, threads: int, log_level: str = "info"
) -> dict[str, Any]:
    """Return gunicorn's settings for the hub.

    >>> options = gunicorn_options("127.0.0.1", 5000, 2, 4)
    >>> options["bind"], options["worker_class"], options["preload_app"]
    (['127.0.0.1:5000'], 'gthread', False)
    """
    return {
        "bind": [f"{host}:{port}"],
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "preload_app": False,
        # A worker busy with one long request (a large upload) still beats its heartbeat from
        # its main thread; this only ends workers that are truly stuck.
        "timeout": 120,
        "graceful_timeout": 30,
        "keepalive": 5,
        # The hub writes its own JSON log lines; gunicorn's access log would repeat paths.
        "accesslog": None,
        "errorlog": "-",
        "loglevel": log_level.lower(),
        "proc_name": "ctdhub",
        # No runtime control socket in the user's home: nothing outside the hub steers it.
        "control_socket_disable": True,
    }


def serve(
    factory: Callable[[], Flask],
    host: str,
    port: int,
    workers: int,
    threads: int,
    on_ready: Callable[[], None] | None = None,
    consumer: Sequence[str] | None = None,
) -> None:
    """Serve the hub with gunicorn until it is stopped (SIGTERM or SIGINT).

    :param on_ready: called once the port is bound and the workers are starting.
    :param consumer: a job consumer's command, run as a child process and stopped with the
        hub (see :class:`HubArbiter`).
    """
    options = gunicorn_options(host, port, workers, threads)
    if on_ready is not None:
        options["when_ready"] = lambda _arbiter: on_ready()
    HubServer(factory, options, consumer).run()


def make_server(
    app: Flask, host: str = "127.0.0.1", port: int = 5000, threads: int = 4
) -> BaseWSGIServer | MultiSocketServer:
    """Create (not start) a waitress server for ``app``.

    Waitress spools request bodies over 512 KiB to temporary files by default; an upload body
    is plaintext case records, so it is kept in memory up to the upload cap instead.
    """
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "threads": threads,
        "inbuf_overflow": app.config["MAX_UPLOAD_BYTES"] + (1 << 20),
        "max_request_body_size": app.config["MAX_UPLOAD_BYTES"] + (1 << 20),
        "ident": "ctdhub",
    }
    return waitress.create_server(app, **options)


def stop_server(server: BaseWSGIServer | MultiSocketServer, timeout: float = 10.0) -> None:
    """Stop a server running in another thread, closing its sockets from its own loop.

    Closing sockets from a foreign thread races the event loop ("Bad file descriptor"); the
    trigger runs the close inside the loop, which then ends because nothing is left to watch.
    """

    def close_everything() -> None:
        for channel in list(server._map.values()):
            try:
                channel.close()
            except OSError:
                # Already half-closed; close() takes a channel off the map before anything
                # that can fail, so the loop still ends.
                continue

    # Workers first: a worker finishing a request pulls the trigger, which must still be open.
    server.task_dispatcher.shutdown(timeout=timeout)
    try:
        server.trigger.pull_trigger(close_everything)
    except OSError:
        # The trigger's pipe is already gone (seen once in CI at a live test's teardown, cause
        # not found): the loop cannot be woken, so close the channels from here. The loop
        # rebuilds its watch list from the emptied map on its next turn and ends.
        close_everything()
