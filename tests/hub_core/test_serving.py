"""Stopping a live server: from its own loop, or from here when its trigger cannot be pulled."""

from __future__ import annotations

import errno
import threading

import pytest
import requests
from apiflask import APIFlask

from hub.serving import make_server, stop_server


def _serve(app: APIFlask) -> tuple[object, threading.Thread, str]:
    server = make_server(app, "127.0.0.1", 0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.effective_port}/health"  # type: ignore[union-attr]
    assert requests.get(url, timeout=10).status_code == 200
    return server, thread, url


def test_a_server_stops_from_its_own_loop(app: APIFlask) -> None:
    server, thread, url = _serve(app)
    stop_server(server)  # type: ignore[arg-type]
    thread.join(timeout=10)
    assert not thread.is_alive()
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=2)


def test_a_server_whose_trigger_is_gone_still_stops(
    app: APIFlask, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, thread, url = _serve(app)

    def gone() -> None:
        raise OSError(errno.EBADF, "Bad file descriptor")

    # The failure seen once in CI: writing to the trigger's pipe fails.
    monkeypatch.setattr(server.trigger, "_physical_pull", gone)  # type: ignore[attr-defined]
    stop_server(server)  # type: ignore[arg-type]
    thread.join(timeout=10)
    assert not thread.is_alive()
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=2)
