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
