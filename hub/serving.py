"""Serve the hub with waitress, keeping request bodies in memory."""

from __future__ import annotations

from typing import Any

import waitress
from flask import Flask
from waitress.server import BaseWSGIServer, MultiSocketServer


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
