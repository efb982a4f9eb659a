"""Talk to a ctdhub over HTTP: get an OAuth 2 token, upload case records, list and withdraw them.

The client retries what is safe to retry. An upload carries one ``Idempotency-Key`` across all
of its attempts, so a retry after a lost answer cannot store the records twice: the hub answers
the repeated upload with the first upload's receipt. Every body carries a ``Content-Digest``
(RFC 9530) so the hub can prove it stored exactly the bytes the partner sent.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import quote, urlsplit

import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3 import BaseHTTPResponse
from urllib3.util.retry import Retry

from contributors import consent

__all__ = [
    "CSV",
    "DEFAULT_SCOPES",
    "JSON",
    "LOCAL_REJECTIONS_HEADER",
    "MEDIA_TYPES",
    "RETRY_STATUSES",
    "XLSX",
    "HubClient",
    "HubAuthError",
    "HubError",
    "HubUnavailable",
    "Receipt",
    "content_digest",
]

CSV = "text/csv"
JSON = "application/json"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: The media types the hub reads an upload in.
MEDIA_TYPES = frozenset({CSV, JSON, XLSX})

#: Scopes a partner's client asks for: upload records and read back its own receipts.
DEFAULT_SCOPES = ("records:write", "records:read")

#: The upload header that carries the rows a partner's toolkit refused before sending.
LOCAL_REJECTIONS_HEADER = "Local-Rejections"
LAWFUL_BASIS_HEADER = consent.LAWFUL_BASIS_HEADER

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


class HubAuthError(HubError):
    """The hub did not accept the client id and secret."""


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
    file_rows_total: int | None = None
    rows_rejected_locally: int | None = None
    rows_held_back: int | None = None
    lawful_basis: str | None = None
    rows_forgotten: int = 0

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
        optional_counts = ("file_rows_total", "rows_rejected_locally", "rows_held_back")
        for name in count_members + optional_counts:
            if name in optional_counts and data.get(name) is None:
                continue
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
            file_rows_total=data.get("file_rows_total"),
            rows_rejected_locally=data.get("rows_rejected_locally"),
            rows_held_back=data.get("rows_held_back"),
            lawful_basis=_optional_text(data, "lawful_basis"),
            rows_forgotten=_forgotten(data),
        )


def _optional_text(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise HubError(None, "Malformed receipt", f"the receipt's {name} is not text")
    return value


def _forgotten(data: Mapping[str, Any]) -> int:
    value = data.get("rows_forgotten", 0)
    if not isinstance(value, int) or isinstance(value, bool):
        raise HubError(None, "Malformed receipt", "the receipt's rows_forgotten is not a count")
    return value


@dataclass(frozen=True)
class Forgotten:
    """The hub's answer to a request to forget one case.

    :param records_removed: the records of the case the hub removed (at the first request).
    :param uploads: the ids of the partner's uploads the records were removed from.
    :param repeated: True when the case had been forgotten before (nothing changed now).
    """

    records_removed: int
    uploads: tuple[str, ...]
    repeated: bool


def content_digest(body: bytes) -> str:
    """Return the RFC 9530 ``Content-Digest`` header value of a body (SHA-256).

    :param body: the exact bytes sent.

    >>> content_digest(b"")
    'sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:'
    """
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii") + ":"


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

    def tell(self) -> int:
        return self._position

    def seek(self, position: int, whence: int = io.SEEK_SET) -> int:
        # urllib3 rewinds the body to where it started before each retry.
        self._position = position if whence == io.SEEK_SET else len(self._view) + position
        if self._bar is not None:
            self._bar.reset(total=len(self._view))
            self._bar.update(self._position)
        return self._position

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


class _ReportingRetry(Retry):
    """urllib3's ``Retry`` that tells a person about each retry before waiting for it.

    :param report: called with one line per retry (the URL, what went wrong, the wait).
    :param origin: the scheme, host and port the retried paths are on, to show whole URLs.
    """

    def __init__(
        self,
        *args: Any,
        report: Callable[[str], None] | None = None,
        origin: str = "",
        **kw: Any,
    ) -> None:
        super().__init__(*args, **kw)
        self.report = report
        self.origin = origin

    def new(self, **kw: Any) -> Self:
        # urllib3 makes a new Retry per attempt from the declared parameters only.
        kw.setdefault("report", self.report)
        kw.setdefault("origin", self.origin)
        return super().new(**kw)

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        if self.report is not None and self.history:
            last = self.history[-1]
            retry_after = self.get_retry_after(response) if response is not None else None
            wait = retry_after if retry_after is not None else self.get_backoff_time()
            why = f"answered {last.status}" if last.status else _cause(last.error)
            done = len(self.history)
            planned = "" if isinstance(self.total, bool | None) else f" of {done + self.total}"
            url = self.origin + (last.url or "")
            self.report(f"{last.method} {url}: {why}; retry {done}{planned} in {wait:.1f} s")
        super().sleep(response)


def _cause(error: Exception | None) -> str:
    """Name a connection failure for a person, without urllib3's wrapping."""
    if error is None:
        return "no answer"
    text = str(error).lower()
    if "refused" in text:
        return "connection refused"
    if "timed out" in text or "timeout" in text:
        return "timed out"
    if "name or service" in text or "nodename" in text or "resolution" in text:
        return "host name not found"
    if "remote" in text or "aborted" in text or "reset" in text:
        return "connection closed before an answer"
    return type(error).__name__


class HubClient:
    """A partner's client of the hub's upload API.

    Tokens come from Authlib's OAuth 2 client session (client-credentials grant, client
    authentication by HTTP Basic), which fetches a new token when the old one expires. Retries
    are urllib3's ``Retry`` on the session's adapters: connection failures and 429/502/503/504
    answers are retried with exponential back-off (and ``Retry-After``), for every method, because
    an upload carries one ``Idempotency-Key`` across its attempts.

    :param base_url: the hub's address, e.g. ``https://hub.example.org``. Plain ``http`` is
        refused except to this machine (loopback), because the client secret and the records
        would cross the network in clear.
    :param client_id: the partner's OAuth 2 client id.
    :param client_secret: the partner's OAuth 2 client secret.
    :param retries: how many times a request is retried after a connection error or a
        429/502/503/504 answer.
    :param timeout: (connect, read) timeouts in seconds.
    :param scopes: the OAuth 2 scopes asked for.
    :param backoff: the back-off factor: the n-th retry after the first waits
        ``backoff * 2**n`` seconds (plus up to ``backoff`` of jitter).
    :param backoff_max: the longest wait between two attempts, in seconds.
    :param on_retry: called with one line per retry (URL, cause, wait), e.g. to print it.
    """

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        retries: int = 5,
        timeout: float | tuple[float, float] = (10.0, 120.0),
        scopes: Sequence[str] = DEFAULT_SCOPES,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        on_retry: Callable[[str], None] | None = None,
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
        self.retries = retries
        self.timeout = timeout
        self.scopes = tuple(scopes)
        self.retry = _ReportingRetry(
            total=retries,
            allowed_methods=None,  # every method: uploads are made idempotent by their key
            status_forcelist=RETRY_STATUSES,
            backoff_factor=backoff,
            backoff_max=backoff_max,
            backoff_jitter=backoff,
            retry_after_max=backoff_max,
            respect_retry_after_header=True,
            raise_on_status=False,  # the last "try later" answer is reported, not an exception
            report=on_retry,
            origin=f"{parts.scheme}://{parts.netloc}",
        )
        self.session = OAuth2Session(
            client_id,
            client_secret,
            token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
            scope=" ".join(self.scopes),
            token_endpoint=self.base_url + "/oauth/token",
            grant_type="client_credentials",
            default_timeout=timeout,
        )
        adapter = HTTPAdapter(max_retries=self.retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        """Close the session's connections."""
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

    def _authenticate(self, *, again: bool = False) -> None:
        """Get an access token by the client-credentials grant, unless one is held.

        :param again: drop the token held and get a new one (the hub refused it).
        :raises HubAuthError: when the hub does not know the client id or secret.
        """
        if self.session.token and not again:
            return
        try:
            self.session.fetch_token(grant_type="client_credentials")
        except OAuthError as error:
            if error.error in ("invalid_client", "unauthorized_client"):
                raise HubAuthError(
                    401,
                    "Authentication failed",
                    "client id or secret is wrong (the hub does not know this client id, or "
                    "the secret is not its secret)",
                ) from None
            raise HubError(400, str(error.error), str(error.description or "")) from None
        except requests.HTTPError as error:
            raise self._unavailable_or_problem(error.response, "/oauth/token") from None
        except requests.RequestException as error:
            raise self._unreachable("POST", "/oauth/token", error) from None

    def _unreachable(self, method: str, path: str, error: Exception) -> HubUnavailable:
        cause: Any = error.args[0] if error.args else error
        reason = getattr(cause, "reason", None)
        return HubUnavailable(
            None,
            "Hub unreachable",
            f"{method} {self.base_url}{path} failed after {self.retries + 1} attempts: "
            f"{_cause(reason if isinstance(reason, Exception) else error)}",
        )

    def _unavailable_or_problem(self, response: requests.Response | None, path: str) -> HubError:
        if response is None:
            return HubUnavailable(None, "Hub unreachable", f"no answer from {self.base_url}{path}")
        if response.status_code in RETRY_STATUSES:
            answer = _problem(response)
            return HubUnavailable(
                answer.status,
                answer.title,
                f"{answer.detail} ({self.base_url}{path} gave up after {self.retries + 1} "
                "attempts)",
                request_id=answer.request_id,
                type=answer.type,
            )
        return _problem(response)

    # -- one request -----------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        body: Callable[[], _ProgressBody] | None = None,
    ) -> requests.Response:
        """Send one authenticated request (urllib3 retries it); return an answer below 400.

        :param body: makes a fresh body (a stream is read once per request).
        :raises HubUnavailable: when every attempt failed to connect or was told to wait.
        :raises HubError: on any other error answer.
        """
        self._authenticate()
        request_headers = dict(headers or {})
        request_headers.setdefault("Accept", "application/json")
        for fresh_token in (False, True):
            if fresh_token:
                # The token may have been revoked or the hub restarted: one fresh token, once.
                self._authenticate(again=True)
            try:
                response: requests.Response = self.session.request(
                    method,
                    self.base_url + path,
                    headers=request_headers,
                    params=params,
                    data=body() if body is not None else None,
                )
            except OAuthError as error:  # renewing an expired token failed
                raise HubAuthError(401, str(error.error), str(error.description or "")) from None
            except requests.RequestException as error:
                raise self._unreachable(method, path, error) from None
            if response.status_code != 401:
                break
        if response.status_code >= 400:
            raise self._unavailable_or_problem(response, path)
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
        local_rejections: Mapping[str, Any] | None = None,
        lawful_basis: str | None = None,
    ) -> Receipt:
        """Upload a file of case records and return the hub's receipt.

        :param data: the file's bytes (already prepared: no direct identifiers, pseudonyms).
        :param media_type: ``text/csv``, ``application/json`` or the XLSX media type.
        :param filename: the file's name, sent as a hint in ``Content-Disposition``.
        :param accept_valid: store the valid rows even when some rows are rejected.
        :param idempotency_key: the key that makes retries safe; a fresh uuid4 if not given.
            Pass the same key to repeat an upload whose answer was lost.
        :param progress: show a progress bar over the bytes sent (on stderr).
        :param local_rejections: when ``data`` holds only the rows accepted locally, the account
            of the rest (counts and reasons, never values), for the receipt: sent as the
            ``Local-Rejections`` header.
        :param lawful_basis: the lawful basis declared for the upload (one of
            :data:`contributors.consent.LAWFUL_BASES`), sent as the ``Lawful-Basis`` header.
        :raises HubError: when the hub refuses the upload (with the report on 422).
        """
        if media_type not in MEDIA_TYPES:
            raise ValueError(
                f"unsupported media type {media_type!r}; use one of {sorted(MEDIA_TYPES)}"
            )
        key = idempotency_key or str(uuid.uuid4())
        # Authenticate before the progress bar starts, so a refused client shows no bar.
        self._authenticate()
        headers = {
            "Content-Type": media_type,
            "Idempotency-Key": key,
            "Content-Digest": content_digest(data),
        }
        if filename:
            # Only the base name, quoted safely: a path could reveal the partner's folders.
            name = filename.replace("\\", "/").rsplit("/", 1)[-1]
            headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name)}"
        if local_rejections is not None:
            headers[LOCAL_REJECTIONS_HEADER] = json.dumps(
                local_rejections, separators=(",", ":"), ensure_ascii=True
            )
        if lawful_basis is not None:
            headers[LAWFUL_BASIS_HEADER] = lawful_basis
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

    def forget(self, pseudonym: str) -> Forgotten:
        """Ask the hub to remove every record of one case from this partner's uploads.

        The pseudonym travels in the request body, never in the address (addresses are logged).

        :param pseudonym: the case's pseudonym, made here with the partner's key.
        :raises HubError: 404 when no upload of this partner holds the case.
        """
        payload = json.dumps({"case": pseudonym}).encode("ascii")
        response = self._send(
            "POST",
            "/v1/uploads/forget",
            headers={"Content-Type": "application/json"},
            body=lambda: _ProgressBody(payload, None),
        )
        body = self._json(response)
        removed = body.get("records_removed") if isinstance(body, Mapping) else None
        uploads = body.get("uploads") if isinstance(body, Mapping) else None
        if not isinstance(removed, int) or not isinstance(uploads, list):
            raise HubError(None, "Bad answer", "the hub's answer to forget lacks its counts")
        return Forgotten(
            records_removed=removed,
            uploads=tuple(str(upload) for upload in uploads),
            repeated=bool(body.get("repeated")),
        )

    def withdraw(self, upload_id: str) -> Receipt | None:
        """Withdraw an upload; return its updated receipt if the hub sends one.

        :param upload_id: the id from the upload's receipt.
        """
        response = self._send("DELETE", f"/v1/uploads/{quote(upload_id, safe='')}")
        if response.status_code == 204 or not response.content:
            return None
        return Receipt.from_json(self._json(response))
