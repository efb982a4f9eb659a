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

from collections.abc import Callable
from typing import Any

import waitress
from flask import Flask
from gunicorn.app.base import BaseApplication
from waitress.server import BaseWSGIServer, MultiSocketServer


class HubServer(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    """Gunicorn running the hub: each worker process builds its own app with ``factory``."""

    def __init__(self, factory: Callable[[], Flask], options: dict[str, Any]) -> None:
        self.factory = factory
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        """Apply our options (and nothing from the command line or a config file)."""
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        """Build the app inside the worker (never before the fork: no shared connections)."""
        return self.factory()


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
) -> None:
    """Serve the hub with gunicorn until it is stopped (SIGTERM or SIGINT).

    :param on_ready: called once the port is bound and the workers are starting.
    """
    options = gunicorn_options(host, port, workers, threads)
    if on_ready is not None:
        options["when_ready"] = lambda _arbiter: on_ready()
    HubServer(factory, options).run()


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
