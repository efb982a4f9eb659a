"""Replace a partner's case ids with keyed pseudonyms before anything leaves the partner.

A pseudonym is ``HMAC-SHA256(key, context || case id)``, written as lowercase hex. The key is
the partner's own secret: it stays on the partner's machine and is never sent to the hub, so the
hub (or anyone holding a release) cannot recompute a pseudonym from a guessed case id, while the
partner gets the same pseudonym for the same case on every upload, which lets the hub recognise
a case that is uploaded again.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import os
import re
import uuid
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

__all__ = [
    "MAPPING_COLUMNS",
    "MIN_KEY_BYTES",
    "CaseIdMapping",
    "PSEUDONYM_PATTERN",
    "PseudonymError",
    "PseudonymKeyError",
    "is_pseudonym",
    "key_from_env",
    "pseudonymise",
    "pseudonymise_column",
]

#: RFC 2104 strongly discourages HMAC keys shorter than the hash output (32 bytes for SHA-256);
#: a shorter key would let someone holding a release brute-force the key and re-link case ids.
MIN_KEY_BYTES = 32

#: What a pseudonym made here looks like: 64 lowercase hex digits (the full SHA-256 output).
PSEUDONYM_PATTERN = re.compile(r"^[0-9a-f]{64}$")

# Domain separation: the same partner key must not yield the same value in any other HMAC use
# (for example a future pseudonym of perpetrator ids).
_CONTEXT = b"ctdhub/caseNo/v1\x00"


class PseudonymError(ValueError):
    """A case id cannot be pseudonymised (it is empty)."""


class PseudonymKeyError(ValueError):
    """The pseudonym key is missing or too short to be safe."""


def _key_bytes(key: str | bytes) -> bytes:
    """Return the key as bytes, refusing a key shorter than :data:`MIN_KEY_BYTES`.

    :param key: the partner's secret, as text (encoded UTF-8) or raw bytes.
    :raises PseudonymKeyError: if the key is shorter than :data:`MIN_KEY_BYTES` bytes.
    """
    raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    if len(raw) < MIN_KEY_BYTES:
        raise PseudonymKeyError(
            f"the pseudonym key is {len(raw)} bytes long; at least {MIN_KEY_BYTES} bytes are "
            'needed (make one with: python -c "import secrets; print(secrets.token_urlsafe(32))")'
        )
    return raw


def pseudonymise(case_id: str, key: str | bytes) -> str:
    """Return the keyed pseudonym of one case id.

    Surrounding whitespace of the case id is ignored, because exports of the same case system
    differ in padding; everything else is significant.

    :param case_id: the partner's own case id.
    :param key: the partner's secret key (at least :data:`MIN_KEY_BYTES` bytes).
    :raises PseudonymKeyError: if the key is too short.
    :raises PseudonymError: if the case id is empty.

    >>> key = "k" * 32
    >>> p = pseudonymise("CASE-0042", key)
    >>> len(p), p == pseudonymise(" CASE-0042 ", key)
    (64, True)
    >>> p == pseudonymise("CASE-0043", key) or p == pseudonymise("CASE-0042", "j" * 32)
    False
    >>> pseudonymise("CASE-0042", "short")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    contributors.pseudonym.PseudonymKeyError: the pseudonym key is 5 bytes long; ...
    """
    raw_key = _key_bytes(key)
    text = case_id.strip()
    if not text:
        raise PseudonymError("the case id is empty: every case record needs its own case id")
    return hmac.new(raw_key, _CONTEXT + text.encode("utf-8"), hashlib.sha256).hexdigest()


def is_pseudonym(value: str) -> bool:
    """Tell whether a value has the form of a pseudonym made by :func:`pseudonymise`.

    :param value: a caseNo value.

    >>> is_pseudonym(pseudonymise("17", "k" * 32)), is_pseudonym("17")
    (True, False)
    """
    return PSEUDONYM_PATTERN.fullmatch(value) is not None


def pseudonymise_column(values: Iterable[str], key: str | bytes) -> list[str]:
    """Return the pseudonyms of a column of case ids, in order.

    :param values: the case ids, one per case record.
    :param key: the partner's secret key.
    :raises PseudonymKeyError: if the key is too short.
    :raises PseudonymError: naming the first row (counted from 1) whose case id is empty.

    >>> pseudonymise_column(["a", "b", "a"], "k" * 32)[0] == pseudonymise("a", "k" * 32)
    True
    >>> pseudonymise_column(["a", ""], "k" * 32)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    contributors.pseudonym.PseudonymError: row 2, field caseNo: the case id is empty: ...
    """
    keyed = _KeyedHmac(_key_bytes(key))
    out: list[str] = []
    for row, value in enumerate(values, start=1):
        if isinstance(value, str):
            text = value.strip()
        else:
            text = "" if value is None or pd.isna(value) else str(value).strip()
        if not text:
            raise PseudonymError(
                f"row {row}, field caseNo: the case id is empty: every case record needs its "
                "own case id"
            )
        out.append(keyed.hexdigest(text.encode("utf-8")))
    return out


class _KeyedHmac:
    """HMAC-SHA256 under one key and :data:`_CONTEXT`, for many messages (RFC 2104).

    ``HMAC(K, m) = H((K' ^ opad) || H((K' ^ ipad) || m))``. The hash states after the key's
    padded blocks (and the context) are made once and copied per message, in hashlib's C code,
    which is what ``hmac.new(...).copy()`` does with a Python object around each copy; the
    result is the same, byte for byte (the tests compare it with :mod:`hmac`).

    >>> key = b"k" * 32
    >>> _KeyedHmac(key).hexdigest(b"17") == hmac.new(key, _CONTEXT + b"17", "sha256").hexdigest()
    True
    """

    _BLOCK = 64  # SHA-256's block size in bytes

    def __init__(self, key: bytes) -> None:
        if len(key) > self._BLOCK:
            key = hashlib.sha256(key).digest()
        padded = key.ljust(self._BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in padded) + _CONTEXT)
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in padded))

    def hexdigest(self, message: bytes) -> str:
        """Return ``HMAC-SHA256(key, context || message)`` as lowercase hex."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def key_from_env(variable: str, environ: dict[str, str] | None = None) -> bytes:
    """Read the pseudonym key from an environment variable and check its length.

    The key is read from the environment, never from a command-line argument, because command
    lines land in shell history and process listings.

    :param variable: the environment variable's name.
    :param environ: the environment to read (``os.environ`` when not given).
    :raises PseudonymKeyError: if the variable is unset, empty or too short.

    >>> len(key_from_env("K", {"K": "x" * 40}))
    40
    >>> key_from_env("K", {})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    contributors.pseudonym.PseudonymKeyError: the environment variable K is not set ...
    """
    env = os.environ if environ is None else environ
    value = env.get(variable, "")
    if not value:
        raise PseudonymKeyError(
            f"the environment variable {variable} is not set or empty: it must hold the "
            "partner's pseudonym key"
        )
    try:
        return _key_bytes(value)
    except PseudonymKeyError as error:
        raise PseudonymKeyError(f"{variable}: {error}") from None


#: The columns of a case-id mapping file, as ``prepare --assign-case-ids`` writes it.
MAPPING_COLUMNS = ("file_sha256", "row", "caseNo")


class CaseIdMapping:
    """Case ids the toolkit assigned to rows that had none, kept on the partner's machine.

    A row is named by its file's SHA-256 and its 1-based data row number, so the same file
    prepared again gets the same case ids (and the same pseudonyms: the upload is a replay), and
    a case can be found and withdrawn later. The hub only ever receives the ids' pseudonyms.

    An existing file is only ever appended to, and only when it is a mapping this class wrote
    (same header, one id per row, no id used twice); anything else is refused, untouched.

    :param path: the mapping file (CSV).
    :raises PseudonymError: if the file exists and is not a consistent mapping.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._known: dict[tuple[str, int], str] = {}
        self._added: list[tuple[str, int, str]] = []
        if path.exists():
            self._read()

    def _read(self) -> None:
        refuse = (
            f"{self.path} exists and is not a case-id mapping made by prepare "
            f"(columns {','.join(MAPPING_COLUMNS)}); refusing to overwrite it: name a new file "
            "or the mapping this file was prepared with"
        )
        try:
            text = self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise PseudonymError(refuse) from None
        rows = list(csv.reader(io.StringIO(text)))
        if not rows or tuple(rows[0]) != MAPPING_COLUMNS:
            raise PseudonymError(refuse)
        used: set[str] = set()
        for number, row in enumerate(rows[1:], start=2):
            if len(row) != len(MAPPING_COLUMNS) or not row[1].isdigit() or not row[2]:
                raise PseudonymError(f"{self.path}, line {number}: not a mapping entry; {refuse}")
            key = (row[0], int(row[1]))
            if key in self._known or row[2] in used:
                raise PseudonymError(
                    f"{self.path}, line {number}: a row or case id is listed twice; the mapping "
                    "is inconsistent, so it is left as it is"
                )
            self._known[key] = row[2]
            used.add(row[2])

    def __len__(self) -> int:
        return len(self._known) + len(self._added)

    def assign(self, file_sha256: str, rows: Iterable[int]) -> list[str]:
        """Return a case id for each row: the one the mapping holds, or a new random one.

        :param file_sha256: the SHA-256 (hex) of the partner's file.
        :param rows: the 1-based data row numbers that lack a case id.
        """
        out: list[str] = []
        for row in rows:
            key = (file_sha256, row)
            if key not in self._known:
                # 122 random bits: no meaning, nothing of the person, no collision to fear.
                self._known[key] = str(uuid.uuid4())
                self._added.append((file_sha256, row, self._known[key]))
            out.append(self._known[key])
        return out

    @property
    def added(self) -> int:
        """Return how many case ids this run assigned anew."""
        return len(self._added)

    def save(self) -> None:
        """Append the new entries, atomically: the file is whole before and after, or untouched."""
        if not self._added:
            return
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if not self.path.exists():
            writer.writerow(MAPPING_COLUMNS)
            before = ""
        else:
            before = self.path.read_text(encoding="utf-8")
            if before and not before.endswith("\n"):
                before += "\n"
        writer.writerows(self._added)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text(before + buffer.getvalue(), encoding="utf-8")
        os.replace(temporary, self.path)
        self._added = []
