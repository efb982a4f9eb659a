"""Talk to a ctdhub over HTTP: get an OAuth 2 token, upload case records, list and withdraw them.

The client retries what is safe to retry. An upload carries one ``Idempotency-Key`` across all
of its attempts, so a retry after a lost answer cannot store the records twice: the hub answers
the repeated upload with the first upload's receipt. Every body carries a ``Content-Digest``
(RFC 9530) so the hub can prove it stored exactly the bytes the partner sent.
"""

from __future__ import annotations

import base64
import hashlib
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from tqdm import tqdm

__all__ = [
    "CSV",
    "DEFAULT_SCOPES",
    "JSON",
    "MEDIA_TYPES",
    "RETRY_STATUSES",
    "XLSX",
    "HubClient",
    "HubError",
    "HubUnavailable",
    "Receipt",
    "backoff_delay",
    "content_digest",
]

CSV = "text/csv"
JSON = "application/json"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: The media types the hub reads an upload in.
MEDIA_TYPES = frozenset({CSV, JSON, XLSX})

#: Scopes a partner's client asks for: upload records and read back its own receipts.
DEFAULT_SCOPES = ("records:write", "records:read")

#: Answers that say "try again later": rate limiting and an unavailable or overloaded gateway.
RETRY_STATUSES = frozenset({429, 502, 503, 504})

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_CHUNK_BYTES = 64 * 1024


class HubError(Exception):
    """The hub refused a request, or answered something the client cannot use.

    :param status: the HTTP status, or ``None`` when no answer arrived.
    :param title: the problem's short title.
    :param detail: what went wrong, in the hub's words.
    :param report: the validation report of a 422 answer, if any.
    :param request_id: the hub's id for the request (quote it to the hub's operators).
    :param type: the problem type URI.
    """

    def __init__(
        self,
        status: int | None,
        title: str,
        detail: str,
        *,
        report: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        type: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.report = dict(report) if report is not None else None
        self.request_id = request_id
        self.type = type

    def __str__(self) -> str:
        """Return the error as one line, for a person at a terminal."""
        head = f"{self.status} {self.title}" if self.status is not None else self.title
        tail = f" (request {self.request_id})" if self.request_id else ""
        return f"{head}: {self.detail}{tail}"


class HubUnavailable(HubError):
    """The hub could not be reached, or kept answering "try again later", on every attempt."""


@dataclass(frozen=True)
class Receipt:
    """The hub's receipt for one upload.

    :param replayed: True when the hub had seen this upload before (it answered 200, not 201).
    """

    id: str
    organisation: str
    status: str
    sha256: str
    rows_total: int
    rows_accepted: int
    rows_rejected: int
    created_at: str
    report: dict[str, Any] = field(default_factory=dict)
    replayed: bool = False

    @classmethod
    def from_json(cls, data: Any, *, replayed: bool = False) -> Receipt:
        """Build a receipt from the hub's JSON, refusing one that lacks a member.

        :param data: the decoded JSON object.
        :param replayed: whether the hub answered 200 (seen before) rather than 201.
        :raises HubError: if a member is missing or has the wrong type.

        >>> r = Receipt.from_json({"id": "u1", "organisation": "o", "status": "stored",
        ...     "sha256": "ab", "rows_total": 3, "rows_accepted": 3, "rows_rejected": 0,
        ...     "created_at": "2026-01-01T00:00:00Z", "report": {}})
        >>> r.id, r.rows_accepted, r.replayed
        ('u1', 3, False)
        >>> Receipt.from_json({"id": "u1"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        contributors.client.HubError: Malformed receipt: the hub's receipt lacks organisation, ...
        """
        if not isinstance(data, Mapping):
            raise HubError(None, "Malformed receipt", "the hub's receipt is not a JSON object")
        text_members = ("id", "organisation", "status", "sha256", "created_at")
        count_members = ("rows_total", "rows_accepted", "rows_rejected")
        missing = [name for name in text_members + count_members if name not in data]
        if missing:
            raise HubError(
                None, "Malformed receipt", f"the hub's receipt lacks {', '.join(missing)}"
            )
        for name in count_members:
            # bool is an int subclass; a count of True is a contract error, not 1.
            if not isinstance(data[name], int) or isinstance(data[name], bool):
                raise HubError(None, "Malformed receipt", f"the receipt's {name} is not a count")
        report = data.get("report") or {}
        if not isinstance(report, Mapping):
            raise HubError(None, "Malformed receipt", "the receipt's report is not an object")
        return cls(
            id=str(data["id"]),
            organisation=str(data["organisation"]),
            status=str(data["status"]),
            sha256=str(data["sha256"]),
            rows_total=data["rows_total"],
            rows_accepted=data["rows_accepted"],
            rows_rejected=data["rows_rejected"],
            created_at=str(data["created_at"]),
            report=dict(report),
            replayed=replayed,
        )


def content_digest(body: bytes) -> str:
    """Return the RFC 9530 ``Content-Digest`` header value of a body (SHA-256).

    :param body: the exact bytes sent.

    >>> content_digest(b"")
    'sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:'
    """
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii") + ":"


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Return how long to wait before retry number ``attempt`` (0 for the first retry).

    Exponential backoff with "full jitter": a uniform draw from ``[0, min(cap, base * 2**n)]``,
    so many partners retrying after the same outage do not come back in lockstep.

    :param attempt: how many retries came before this one.
    :param base: the ceiling of the first wait, in seconds.
    :param cap: the largest ceiling, in seconds.
    :param rng: the random source of the jitter.

    >>> rng = random.Random(7)
    >>> all(0 <= backoff_delay(n, 0.5, 30, rng) <= min(30, 0.5 * 2**n) for n in range(12))
    True
    """
    ceiling = min(cap, base * (2.0**attempt))
    return rng.uniform(0.0, ceiling)


def _retry_after(response: requests.Response, cap: float) -> float | None:
    """Return the wait a ``Retry-After`` header asks for (seconds form only), capped."""
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return min(float(value), cap)
    # The HTTP-date form is rare from an API; fall back to our own backoff rather than parse it.
    return None


class _ProgressBody:
    """A request body read in chunks, advancing a progress bar over the bytes sent.

    It has a length, so requests sends ``Content-Length`` rather than chunked encoding, and it
    is read, not copied, by the HTTP connection.
    """

    def __init__(self, data: bytes, bar: tqdm[Any] | None) -> None:
        self._view = memoryview(data)
        self._position = 0
        self._bar = bar

    def __len__(self) -> int:
        return len(self._view) - self._position

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else self._position + size
        chunk = bytes(self._view[self._position : end])
        self._position += len(chunk)
        if self._bar is not None and chunk:
            self._bar.update(len(chunk))
        return chunk

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(_CHUNK_BYTES):
            yield chunk


def _problem(response: requests.Response) -> HubError:
    """Turn an error answer (problem+json, an OAuth 2 error, or anything else) into HubError."""
    status = response.status_code
    request_id = response.headers.get("X-Request-ID")
    try:
        body = response.json()
    except ValueError:
        body = None
    finally:
        # The error's traceback keeps this response alive; its connection must not be.
        response.close()
    if isinstance(body, Mapping):
        if "title" in body or "detail" in body:
            report = body.get("report")
            return HubError(
                int(body.get("status", status)),
                str(body.get("title", response.reason or "Error")),
                str(body.get("detail", "")),
                report=report if isinstance(report, Mapping) else None,
                request_id=str(body.get("request_id", request_id or "")) or None,
                type=str(body["type"]) if "type" in body else None,
            )
        if "error" in body:  # RFC 6749 section 5.2, from the token endpoint
            return HubError(
                status,
                str(body["error"]),
                str(body.get("error_description", "the token request was refused")),
                request_id=request_id,
            )
    return HubError(
        status,
        response.reason or "Error",
        f"the hub answered {status} without a problem description",
        request_id=request_id,
    )


class HubClient:
    """A partner's client of the hub's upload API.

    :param base_url: the hub's address, e.g. ``https://hub.example.org``. Plain ``http`` is
        refused except to this machine (loopback), because the client secret and the records
        would cross the network in clear.
    :param client_id: the partner's OAuth 2 client id.
    :param client_secret: the partner's OAuth 2 client secret.
    :param session: a requests session to use (a new one if not given).
    :param retries: how many times a request is retried after a connection error or a
        429/502/503/504 answer.
    :param timeout: (connect, read) timeouts in seconds.
    :param scopes: the OAuth 2 scopes asked for.
    :param backoff: ceiling of the first retry's wait, in seconds; it doubles on each retry.
    :param backoff_max: the longest wait between two attempts, in seconds.
    :param rng: the random source of the backoff's jitter.
    """

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        session: requests.Session | None = None,
        retries: int = 5,
        timeout: float | tuple[float, float] = (10.0, 120.0),
        scopes: Sequence[str] = DEFAULT_SCOPES,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the hub's address must be an http(s) URL, not {base_url!r}")
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
            raise ValueError(
                f"refusing plain http to {parts.hostname}: use https so the client secret and "
                "the records are encrypted in transit"
            )
        if retries < 0:
            raise ValueError("retries must be zero or more")
        if not client_id or not client_secret:
            raise ValueError("a client id and a client secret are both needed")
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self._owns_session = session is None
        self.session = session if session is not None else requests.Session()
        self.retries = retries
        self.timeout = timeout
        self.scopes = tuple(scopes)
        self.backoff = backoff
        self.backoff_max = backoff_max
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not crypto
        self._token: str | None = None
        self._token_expires_at = 0.0

    def close(self) -> None:
        """Close the connections of the session this client made (not one it was given)."""
        if not self._owns_session:
            return
        # urllib3 2 drops its pools on clear() without closing them, leaving their sockets to
        # the garbage collector; a caller holding an error's traceback would keep them open.
        for adapter in self.session.adapters.values():
            pools: Any = getattr(getattr(adapter, "poolmanager", None), "pools", None)
            if pools is None:
                continue
            for key in list(pools.keys()):
                pool = pools.get(key)
                if pool is not None:
                    pool.close()
        self.session.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        # Never show the secret or the token.
        return f"HubClient({self.base_url!r}, client_id={self.client_id!r})"

    # -- tokens ----------------------------------------------------------------------------

    def _access_token(self) -> str:
        """Return a valid access token, asking for a new one when the last one expired."""
        if self._token is None or time.monotonic() >= self._token_expires_at:
            self._token = self._fetch_token()
        return self._token

    def _fetch_token(self) -> str:
        """Get an access token by the client-credentials grant (client auth by HTTP Basic)."""
        response = self._send(
            "POST",
            "/oauth/token",
            data={"grant_type": "client_credentials", "scope": " ".join(self.scopes)},
            auth=(self.client_id, self._client_secret),
            authenticated=False,
        )
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, Mapping) or not body.get("access_token"):
            raise HubError(response.status_code, "Bad token answer", "no access_token in it")
        if str(body.get("token_type", "")).lower() != "bearer":
            raise HubError(
                response.status_code, "Bad token answer", "the token is not a Bearer token"
            )
        expires_in = body.get("expires_in", 0)
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 0.0
        # Renew a little early so a token does not expire between check and use.
        margin = min(30.0, lifetime / 10.0)
        self._token_expires_at = time.monotonic() + max(0.0, lifetime - margin)
        return str(body["access_token"])

    # -- the request loop ------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        body: Callable[[], _ProgressBody] | None = None,
        auth: tuple[str, str] | None = None,
        authenticated: bool = True,
    ) -> requests.Response:
        """Send one request with retries; return the first answer below 400.

        :param body: makes a fresh body for each attempt (a stream cannot be re-read).
        :raises HubUnavailable: when every attempt failed to connect or was told to wait.
        :raises HubError: on any other error answer.
        """
        url = self.base_url + path
        attempt = 0
        token_refreshed = False
        while True:
            request_headers = dict(headers or {})
            request_headers.setdefault("Accept", "application/json")
            if authenticated:
                request_headers["Authorization"] = f"Bearer {self._access_token()}"
            try:
                response = self.session.request(
                    method,
                    url,
                    headers=request_headers,
                    params=params,
                    data=body() if body is not None else data,
                    auth=auth,
                    timeout=self.timeout,
                )
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as error:
                if attempt >= self.retries:
                    raise HubUnavailable(
                        None,
                        "Hub unreachable",
                        f"{method} {path} failed after {attempt + 1} attempts: "
                        f"{type(error).__name__}",
                    ) from error
                time.sleep(backoff_delay(attempt, self.backoff, self.backoff_max, self._rng))
                attempt += 1
                continue
            status = response.status_code
            if status == 401 and authenticated and not token_refreshed:
                # The token may have been revoked or the hub restarted: one fresh token, once.
                token_refreshed = True
                self._token = None
                continue
            if status in RETRY_STATUSES:
                if attempt >= self.retries:
                    error_answer = _problem(response)
                    raise HubUnavailable(
                        status,
                        error_answer.title,
                        f"{error_answer.detail} (gave up after {attempt + 1} attempts)",
                        request_id=error_answer.request_id,
                        type=error_answer.type,
                    )
                wait = _retry_after(response, self.backoff_max)
                if wait is None:
                    wait = backoff_delay(attempt, self.backoff, self.backoff_max, self._rng)
                time.sleep(wait)
                attempt += 1
                continue
            if status >= 400:
                raise _problem(response)
            return response

    def _json(self, response: requests.Response) -> Any:
        """Decode a success answer's JSON body, with a clear error when it is not JSON."""
        try:
            return response.json()
        except ValueError:
            raise HubError(
                response.status_code,
                "Bad answer",
                "the hub's answer is not JSON",
                request_id=response.headers.get("X-Request-ID"),
            ) from None

    # -- the API ---------------------------------------------------------------------------

    def upload(
        self,
        data: bytes,
        *,
        media_type: str,
        filename: str | None = None,
        accept_valid: bool = False,
        idempotency_key: str | None = None,
        progress: bool = False,
    ) -> Receipt:
        """Upload a file of case records and return the hub's receipt.

        :param data: the file's bytes (already prepared: no direct identifiers, pseudonyms).
        :param media_type: ``text/csv``, ``application/json`` or the XLSX media type.
        :param filename: the file's name, sent as a hint in ``Content-Disposition``.
        :param accept_valid: store the valid rows even when some rows are rejected.
        :param idempotency_key: the key that makes retries safe; a fresh uuid4 if not given.
            Pass the same key to repeat an upload whose answer was lost.
        :param progress: show a progress bar over the bytes sent (on stderr).
        :raises HubError: when the hub refuses the upload (with the report on 422).
        """
        if media_type not in MEDIA_TYPES:
            raise ValueError(
                f"unsupported media type {media_type!r}; use one of {sorted(MEDIA_TYPES)}"
            )
        key = idempotency_key or str(uuid.uuid4())
        # Authenticate before the progress bar starts, so a refused client shows no bar.
        self._access_token()
        headers = {
            "Content-Type": media_type,
            "Idempotency-Key": key,
            "Content-Digest": content_digest(data),
        }
        if filename:
            # Only the base name, quoted safely: a path could reveal the partner's folders.
            name = filename.replace("\\", "/").rsplit("/", 1)[-1]
            headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name)}"
        params = {"accept_valid": "true"} if accept_valid else None
        with tqdm(
            total=len(data),
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc="upload",
            disable=not progress,
            leave=False,
        ) as bar:

            def fresh_body() -> _ProgressBody:
                bar.reset(total=len(data))
                return _ProgressBody(data, bar if progress else None)

            response = self._send(
                "POST", "/v1/uploads", headers=headers, params=params, body=fresh_body
            )
        if response.status_code not in (200, 201):
            raise HubError(
                response.status_code,
                "Unexpected answer",
                f"the hub answered {response.status_code} to an upload; expected 201 or 200",
                request_id=response.headers.get("X-Request-ID"),
            )
        receipt = Receipt.from_json(self._json(response), replayed=response.status_code == 200)
        self._check_digest(receipt, data)
        return receipt

    @staticmethod
    def _check_digest(receipt: Receipt, data: bytes) -> None:
        """Refuse a receipt whose SHA-256 is not that of the bytes sent."""
        digest = hashlib.sha256(data).digest()
        accepted = {digest.hex(), base64.b64encode(digest).decode("ascii")}
        if receipt.sha256 not in accepted and receipt.sha256.lower() not in accepted:
            raise HubError(
                None,
                "Digest mismatch",
                f"the receipt of upload {receipt.id} names a SHA-256 that is not the one of the "
                "file sent; the hub did not store what was sent",
            )

    def list_uploads(self) -> list[Receipt]:
        """Return the receipts of this partner's uploads."""
        body = self._json(self._send("GET", "/v1/uploads"))
        items = body.get("uploads") if isinstance(body, Mapping) else body
        if not isinstance(items, list):
            raise HubError(None, "Bad answer", "the list of uploads is not a JSON list")
        return [Receipt.from_json(item) for item in items]

    def get_upload(self, upload_id: str) -> Receipt:
        """Return the receipt of one upload.

        :param upload_id: the id from the upload's receipt.
        """
        response = self._send("GET", f"/v1/uploads/{quote(upload_id, safe='')}")
        return Receipt.from_json(self._json(response))

    def withdraw(self, upload_id: str) -> Receipt | None:
        """Withdraw an upload; return its updated receipt if the hub sends one.

        :param upload_id: the id from the upload's receipt.
        """
        response = self._send("DELETE", f"/v1/uploads/{quote(upload_id, safe='')}")
        if response.status_code == 204 or not response.content:
            return None
        return Receipt.from_json(self._json(response))
