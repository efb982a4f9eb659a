"""The client's retries, backoff, token handling and idempotency, against a real HTTP server.

The real hub cannot be made to fail on demand, so a small scripted ``http.server`` on 127.0.0.1
answers each request from a queue of canned answers and records what arrived.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from contributors.client import (
    CSV,
    HubAuthError,
    HubClient,
    HubError,
    HubUnavailable,
    content_digest,
)

LOST = 0  # an Answer status meaning "drop the connection without answering"
BODY = b"caseNo,gender\n" + b"".join(b"%064x,Female\n" % n for n in range(2000))


@dataclass
class Arrival:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    """One canned answer."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"


@dataclass
class ScriptedHub:
    """A scripted server: answers per path, popped in order; the last one repeats."""

    url: str
    script: dict[str, list[Answer]]
    arrivals: list[Arrival] = field(default_factory=list)

    def on(self, method: str, path: str, *answers: Answer) -> None:
        self.script[f"{method} {path}"] = list(answers)

    def seen(self, method: str, path: str) -> list[Arrival]:
        return [a for a in self.arrivals if a.method == method and a.path.split("?")[0] == path]


def _receipt(body: bytes, status: str = "stored") -> dict[str, Any]:
    return {
        "id": "up-1",
        "organisation": "org-a",
        "status": status,
        "sha256": hashlib.sha256(body).hexdigest(),
        "rows_total": 2000,
        "rows_accepted": 2000,
        "rows_rejected": 0,
        "created_at": "2026-11-23T20:00:00Z",
        "report": {"rows_total": 2000},
    }


def _token(expires_in: int = 900) -> Answer:
    return Answer(
        200,
        {
            "access_token": f"tok-{random.random()}",  # noqa: S311 - a test token
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": "records:write records:read",
        },
    )


@pytest.fixture
def hub() -> Iterator[ScriptedHub]:
    """A scripted hub on a free loopback port, stopped after the test."""
    state = ScriptedHub(url="", script={})
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length) if length else b""
            arrival = Arrival(self.command, self.path, dict(self.headers.items()), body)
            with lock:
                state.arrivals.append(arrival)
                queue = state.script.get(f"{self.command} {self.path.split('?')[0]}")
                if not queue:
                    answer = Answer(404, {"title": "Not found", "status": 404, "detail": "none"})
                else:
                    answer = queue.pop(0) if len(queue) > 1 else queue[0]
            if answer.status == LOST:
                # The request arrived whole, but the answer never leaves: the connection drops.
                self.close_connection = True
                return
            payload = answer.body(arrival) if callable(answer.body) else answer.body
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.media_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Keep the test output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    state.on("POST", "/oauth/token", _token())
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _client(hub: ScriptedHub, **options: Any) -> HubClient:
    options.setdefault("backoff", 0.01)
    return HubClient(hub.url, "partner-a", "s3cret", **options)


def test_503_twice_then_201_reuses_key_and_digest(hub: ScriptedHub) -> None:
    unavailable = Answer(503, {"title": "Unavailable", "status": 503, "detail": "busy"})
    hub.on("POST", "/v1/uploads", unavailable, unavailable, Answer(201, _receipt(BODY)))
    receipt = _client(hub).upload(BODY, media_type=CSV, filename="cases.csv")

    attempts = hub.seen("POST", "/v1/uploads")
    assert len(attempts) == 3
    keys = {a.headers["Idempotency-Key"] for a in attempts}
    digests = {a.headers["Content-Digest"] for a in attempts}
    assert len(keys) == 1 and len(digests) == 1
    expected = "sha-256=:" + base64.b64encode(hashlib.sha256(BODY).digest()).decode() + ":"
    assert digests == {expected}
    for attempt in attempts:
        # Every attempt carried the whole body, with a length, not chunked.
        assert attempt.body == BODY
        assert attempt.headers["Content-Length"] == str(len(BODY))
        assert attempt.headers["Content-Type"] == CSV
        assert attempt.headers["Authorization"].startswith("Bearer tok-")
    assert receipt.id == "up-1" and not receipt.replayed
    assert len(hub.seen("POST", "/oauth/token")) == 1


def test_given_idempotency_key_is_sent_and_200_is_a_replay(hub: ScriptedHub) -> None:
    hub.on("POST", "/v1/uploads", Answer(200, _receipt(BODY)))
    receipt = _client(hub).upload(
        BODY, media_type=CSV, idempotency_key="k-123", accept_valid=True, progress=True
    )
    (attempt,) = hub.seen("POST", "/v1/uploads")
    assert attempt.headers["Idempotency-Key"] == "k-123"
    assert attempt.path.endswith("?accept_valid=true")
    assert receipt.replayed


def test_fresh_uploads_get_fresh_keys(hub: ScriptedHub) -> None:
    hub.on("POST", "/v1/uploads", Answer(201, _receipt(BODY)))
    client = _client(hub)
    client.upload(BODY, media_type=CSV)
    client.upload(BODY, media_type=CSV)
    keys = [a.headers["Idempotency-Key"] for a in hub.seen("POST", "/v1/uploads")]
    assert len(keys) == 2 and keys[0] != keys[1]


def test_token_request_is_client_credentials_with_basic_auth(hub: ScriptedHub) -> None:
    hub.on("GET", "/v1/uploads", Answer(200, {"uploads": [_receipt(BODY)]}))
    (listed,) = _client(hub).list_uploads()
    assert listed.id == "up-1"
    (token_request,) = hub.seen("POST", "/oauth/token")
    assert (
        token_request.headers["Authorization"]
        == "Basic " + base64.b64encode(b"partner-a:s3cret").decode()
    )
    form = dict(pair.split("=", 1) for pair in token_request.body.decode().split("&"))
    assert form == {"grant_type": "client_credentials", "scope": "records%3Awrite+records%3Aread"}


def test_422_is_not_retried_and_carries_the_report(hub: ScriptedHub) -> None:
    report = {"rows_total": 2, "rows_rejected": 1, "errors": [{"row": 2, "field": "gender"}]}
    problem = {
        "type": "urn:ctdhub:problem:validation-failed",
        "title": "Validation failed",
        "status": 422,
        "detail": "1 row rejected",
        "request_id": "rq-9",
        "report": report,
    }
    hub.on("POST", "/v1/uploads", Answer(422, problem, media_type="application/problem+json"))
    with pytest.raises(HubError) as caught:
        _client(hub).upload(BODY, media_type=CSV)
    error = caught.value
    assert (error.status, error.title, error.detail) == (422, "Validation failed", "1 row rejected")
    assert error.report == report and error.request_id == "rq-9"
    assert not isinstance(error, HubUnavailable)
    assert len(hub.seen("POST", "/v1/uploads")) == 1


@pytest.mark.parametrize("status", [400, 403, 404, 409, 413, 415, 500])
def test_other_errors_are_not_retried(hub: ScriptedHub, status: int) -> None:
    hub.on("POST", "/v1/uploads", Answer(status, {"title": "No", "status": status, "detail": "x"}))
    with pytest.raises(HubError) as caught:
        _client(hub).upload(BODY, media_type=CSV)
    assert caught.value.status == status
    assert len(hub.seen("POST", "/v1/uploads")) == 1


def test_401_refreshes_the_token_once(hub: ScriptedHub) -> None:
    unauthenticated = Answer(401, {"title": "Authentication required", "status": 401, "detail": ""})
    hub.on("POST", "/oauth/token", _token(), _token())
    hub.on("GET", "/v1/uploads/up-1", unauthenticated, Answer(200, _receipt(BODY)))
    assert _client(hub).get_upload("up-1").id == "up-1"
    tokens = [a.headers["Authorization"] for a in hub.seen("GET", "/v1/uploads/up-1")]
    assert len(tokens) == 2 and tokens[0] != tokens[1]
    assert len(hub.seen("POST", "/oauth/token")) == 2


def test_repeated_401_is_an_error_not_a_loop(hub: ScriptedHub) -> None:
    hub.on("GET", "/v1/uploads/up-1", Answer(401, {"title": "Auth", "status": 401, "detail": "no"}))
    with pytest.raises(HubError) as caught:
        _client(hub).get_upload("up-1")
    assert caught.value.status == 401
    assert len(hub.seen("GET", "/v1/uploads/up-1")) == 2


def test_expired_token_is_renewed(hub: ScriptedHub) -> None:
    # The first token expires within the renewal margin (a minute); the second lasts.
    hub.on("POST", "/oauth/token", _token(expires_in=1), _token(expires_in=900))
    hub.on("GET", "/v1/uploads", Answer(200, []))
    client = _client(hub)
    client.list_uploads()
    client.list_uploads()
    assert len(hub.seen("POST", "/oauth/token")) == 2
    used = {a.headers["Authorization"] for a in hub.seen("GET", "/v1/uploads")}
    assert len(used) == 1


def test_429_honours_retry_after_and_gives_up_after_retries(hub: ScriptedHub) -> None:
    limited = Answer(
        429, {"title": "Too many", "status": 429, "detail": "slow"}, {"Retry-After": "0"}
    )
    hub.on("DELETE", "/v1/uploads/up-1", limited)
    with pytest.raises(HubUnavailable) as caught:
        _client(hub, retries=3).withdraw("up-1")
    assert caught.value.status == 429
    assert len(hub.seen("DELETE", "/v1/uploads/up-1")) == 4


def test_refused_client_is_told_its_id_or_secret_is_wrong(hub: ScriptedHub) -> None:
    refusal = {
        "error": "invalid_client",
        "error_description": "The client cannot authenticate with methods: ['client_secret_basic']",
    }
    hub.on("POST", "/oauth/token", Answer(401, refusal))
    with pytest.raises(HubAuthError, match="client id or secret is wrong") as caught:
        _client(hub).list_uploads()
    assert "cannot authenticate with methods" not in str(caught.value)
    assert hub.seen("GET", "/v1/uploads") == []


def test_receipt_with_another_digest_is_refused(hub: ScriptedHub) -> None:
    hub.on("POST", "/v1/uploads", Answer(201, _receipt(b"something else")))
    with pytest.raises(HubError, match="Digest mismatch"):
        _client(hub).upload(BODY, media_type=CSV)


def test_connection_errors_are_retried_then_reported() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port now, so every attempt is refused.
    client = HubClient(f"http://127.0.0.1:{port}", "a", "b", retries=2, backoff=0.001)
    with pytest.raises(HubUnavailable, match="failed after 3 attempts"):
        client.list_uploads()


def test_plain_http_to_a_remote_host_is_refused() -> None:
    with pytest.raises(ValueError, match="use https"):
        HubClient("http://hub.example.org", "a", "b")
    HubClient("https://hub.example.org", "a", "b")


def test_unsupported_media_type_is_refused_before_sending(hub: ScriptedHub) -> None:
    with pytest.raises(ValueError, match="unsupported media type"):
        _client(hub).upload(BODY, media_type="text/plain")
    assert hub.arrivals == []


def test_each_retry_is_reported_with_the_url(hub: ScriptedHub) -> None:
    unavailable = Answer(503, {"title": "Unavailable", "status": 503, "detail": "busy"})
    hub.on("POST", "/v1/uploads", unavailable, unavailable, Answer(201, _receipt(BODY)))
    lines: list[str] = []
    _client(hub, retries=4, on_retry=lines.append).upload(BODY, media_type=CSV)
    assert len(lines) == 2
    for number, line in enumerate(lines, start=1):
        assert line.startswith(f"POST {hub.url}/v1/uploads")
        assert f"answered 503; retry {number} of 4 in " in line


def test_unreachable_hub_names_its_url_and_reports_each_retry() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    lines: list[str] = []
    client = HubClient(
        f"http://127.0.0.1:{port}", "a", "b", retries=2, backoff=0.001, on_retry=lines.append
    )
    with pytest.raises(HubUnavailable) as caught:
        client.list_uploads()
    assert f"http://127.0.0.1:{port}/oauth/token" in str(caught.value)
    assert "connection refused" in str(caught.value)
    assert [line.split(";")[1].split(" in ")[0] for line in lines] == [
        " retry 1 of 2",
        " retry 2 of 2",
    ]
    assert all("connection refused" in line for line in lines)


def test_content_digest_matches_rfc_9530_example_form() -> None:
    # The value RFC 9530 gives for the body {"hello": "world"}.
    assert (
        content_digest(b'{"hello": "world"}')
        == "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
    )


def test_lost_answer_is_retried_with_the_same_key_and_replayed(hub: ScriptedHub) -> None:
    # The first attempt reaches the hub but its answer is lost; the retry must carry the same
    # Idempotency-Key so the hub can answer with the first upload's receipt (200), not store twice.
    hub.on("POST", "/v1/uploads", Answer(LOST), Answer(200, _receipt(BODY)))
    receipt = _client(hub).upload(BODY, media_type=CSV)
    attempts = hub.seen("POST", "/v1/uploads")
    assert len(attempts) == 2
    assert attempts[0].headers["Idempotency-Key"] == attempts[1].headers["Idempotency-Key"]
    assert attempts[0].body == attempts[1].body == BODY
    assert receipt.replayed
