"""Replace a partner's case ids with keyed pseudonyms before anything leaves the partner.

A pseudonym is ``HMAC-SHA256(key, context || case id)``, written as lowercase hex. The key is
the partner's own secret: it stays on the partner's machine and is never sent to the hub, so the
hub (or anyone holding a release) cannot recompute a pseudonym from a guessed case id, while the
partner gets the same pseudonym for the same case on every upload, which lets the hub recognise
a case that is uploaded again.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterable

import pandas as pd

__all__ = [
    "MIN_KEY_BYTES",
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
    raw_key = _key_bytes(key)
    out: list[str] = []
    for row, value in enumerate(values, start=1):
        if value is None or pd.isna(value):
            value = ""
        try:
            out.append(pseudonymise(str(value), raw_key))
        except PseudonymError as error:
            raise PseudonymError(f"row {row}, field caseNo: {error}") from None
    return out


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
