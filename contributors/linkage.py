"""Turn a person's identifying fields into a keyed linkage encoding on the partner's machine.

An encoding is a cryptographic long-term key (CLK, Schnell et al. 2011): a Bloom filter of
:data:`BITS` bits into which every token of the person's identifying fields (padded bigrams of
the given and family names, the day, month and year of birth, sex, nationality) sets a few
bits. Two encodings of the same person written slightly differently (a typo, a swapped letter)
share most of their bits, so the hub can link them by the Dice similarity of the bits without
ever seeing a name. See ``contributors/LINKAGE.md`` for the design and why.

- Keyed: the bit positions of a token are ``HMAC-SHA256(linkage secret, context || salt ||
  token)``, read as independent positions ("random hashing"), not double hashing, whose
  arithmetic pattern ``h1 + i*h2`` is itself attackable. The linkage secret is shared by the
  partners and never reaches the hub: without it nobody can encode a guessed person and compare.
- Hardened by record-specific salting: every token is salted with the person's year of birth,
  so the same name sets different bits in people born in different years (the year itself is
  then no token: salted with itself it would mark every record of one birth year alike). The
  frequency of a bigram, or of a set of bits that always occur together, no longer follows the
  frequency of a name in the population, which is what frequency and pattern-mining attacks
  align.

Pure: no hub import, no I/O, only :mod:`hmac`/:mod:`hashlib` from the standard library.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "BITS",
    "ENCODING_COLUMN",
    "EncodingError",
    "MIN_SECRET_BYTES",
    "LinkageError",
    "LinkageSecretError",
    "Person",
    "check_secret",
    "dice",
    "encode",
    "encode_all",
    "encoding_text",
    "read_encodings",
    "salted_tokens",
    "tokens",
]

#: Length of an encoding in bits (128 bytes).
BITS = 1024
#: The column of an upload that carries each case's encoding (base64; empty: no encoding). It is
#: no field of the record schema: the hub takes it off before validation and seals it with the
#: records, and it never reaches a snapshot's columns, a release or an answer.
ENCODING_COLUMN = "linkageEncoding"
#: Like the pseudonym key, the linkage secret is an HMAC key: at least the hash's output size.
MIN_SECRET_BYTES = 32
#: Bits each token sets, per field: names carry most of the evidence, one token each for the rest.
BITS_PER_TOKEN = {
    "given_name": 12,
    "family_name": 12,
    "birth_day": 12,
    "birth_month": 12,
    "birth_year": 16,
    "sex": 6,
    "nationality": 8,
}

_CONTEXT = b"ctdhub/linkage/clk/v1\x00"
_POSITION_BYTES = 2  # a position is 16 bits of the HMAC output modulo BITS (1024 divides 2**16)
_NOT_LETTER = re.compile(r"[^a-z]+")
_DIGITS = re.compile(r"\d+")


class LinkageError(ValueError):
    """A person's fields cannot be encoded (a birth date that is no date)."""


class EncodingError(LinkageError):
    """An upload's encodings column holds bad cells; ``problems`` lists (row, reason) of each."""

    def __init__(self, message: str, problems: list[tuple[int, str]]) -> None:
        super().__init__(message)
        self.problems = problems


class LinkageSecretError(ValueError):
    """The linkage secret is missing or too short to be safe."""


@dataclass(frozen=True)
class Person:
    """The identifying fields of one case's person, as the partner holds them; any may be empty.

    :param given_name: first (and middle) names.
    :param family_name: surname.
    :param birth_date: ``YYYY-MM-DD``, ``YYYYMMDD`` or only the year ``YYYY``.
    :param sex: as recorded (``F``, ``female``, ...); only its first letter is used.
    :param nationality: a country code or name.
    """

    given_name: str | None = None
    family_name: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    nationality: str | None = None


def _fold(text: str | None) -> str:
    """Return ``text`` without accents, case, spaces, hyphens or punctuation.

    >>> _fold(" Zoë O'Brien-Núñez "), _fold(None)
    ('zoeobriennunez', '')
    """
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NOT_LETTER.sub("", plain.casefold())


def _birth(value: str | None) -> tuple[str, str, str]:
    """Return (year, month, day) of a birth date; month and day empty when only a year is known.

    >>> _birth("1987-03-09"), _birth("19870309"), _birth("1987"), _birth(None)
    (('1987', '03', '09'), ('1987', '03', '09'), ('1987', '', ''), ('', '', ''))
    >>> _birth("09/03/87")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    contributors.linkage.LinkageError: the birth date is neither YYYY-MM-DD, YYYYMMDD nor YYYY...
    """
    if value is None or not value.strip():
        return "", "", ""
    digits = "".join(_DIGITS.findall(value.strip().removesuffix(".0")))
    if len(digits) == 4 and value.strip().removesuffix(".0").isdigit():
        return digits, "", ""
    parts = _DIGITS.findall(value)
    if len(digits) == 8 and (len(parts) == 1 or [len(p) for p in parts] == [4, 2, 2]):
        return digits[:4], digits[4:6], digits[6:]
    raise LinkageError(
        "the birth date is neither YYYY-MM-DD, YYYYMMDD nor YYYY (a year alone is enough)"
    )


def _bigrams(name: str) -> list[str]:
    """Return the padded bigrams of a folded name (none for an empty name).

    >>> _bigrams("ana"), _bigrams("")
    (['_a', 'an', 'na', 'a_'], [])
    """
    if not name:
        return []
    padded = f"_{name}_"
    return [padded[i : i + 2] for i in range(len(padded) - 1)]


def tokens(person: Person) -> list[tuple[str, str]]:
    """Return the (field, token) pairs that the encoding of ``person`` is made of.

    >>> tokens(Person(given_name="Al", birth_date="1990-01-02", sex="female"))
    [('given_name', '_a'), ('given_name', 'al'), ('given_name', 'l_'), ('birth_year', '1990'), \
('birth_month', '01'), ('birth_day', '02'), ('sex', 'f')]
    """
    year, month, day = _birth(person.birth_date)
    out = [("given_name", g) for g in _bigrams(_fold(person.given_name))]
    out += [("family_name", g) for g in _bigrams(_fold(person.family_name))]
    out += [(f, v) for f, v in (("birth_year", year), ("birth_month", month)) if v]
    if day:
        out.append(("birth_day", day))
    sex = _fold(person.sex)[:1]
    if sex:
        out.append(("sex", sex))
    nationality = _fold(person.nationality)
    if nationality:
        out.append(("nationality", nationality))
    return out


def salted_tokens(person: Person, *, salted: bool = True) -> frozenset[tuple[str, str, str]]:
    """Return the (field, salt, token) triples that set the bits of ``person``'s encoding.

    What an intruder who knows the scheme (but not the secret) can compute from a plaintext list;
    the attack benchmark uses it.

    >>> sorted(salted_tokens(Person(given_name="A", birth_date="1990")))
    [('given_name', '1990', '_a'), ('given_name', '1990', 'a_')]
    >>> sorted(salted_tokens(Person(given_name="A", birth_date="1990"), salted=False))[0]
    ('birth_year', '', '1990')
    """
    salt = _birth(person.birth_date)[0] if salted else ""
    return frozenset((field, salt, token) for field, token in _encoded(person, salted))


def _encoded(person: Person, salted: bool) -> list[tuple[str, str]]:
    """Return the tokens that set bits: without the year's own token when the year is the salt.

    Salted with itself, the year token would set the same bits in every record of one birth
    year and in no other: a fixed pattern by which the hub could sort records into birth years.
    The salt carries the year already (records of different years share no bit), so the token
    adds nothing to linkage.
    """
    pairs = tokens(person)
    return [pair for pair in pairs if pair[0] != "birth_year"] if salted else pairs


def check_secret(secret: str | bytes) -> bytes:
    """Return the linkage secret as bytes, refusing one too short to be safe.

    :raises LinkageSecretError: if it is shorter than :data:`MIN_SECRET_BYTES`.
    """
    return _secret(secret)


def _secret(secret: str | bytes) -> bytes:
    raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if len(raw) < MIN_SECRET_BYTES:
        raise LinkageSecretError(
            f"the linkage secret is {len(raw)} bytes long; at least {MIN_SECRET_BYTES} bytes "
            "are needed, agreed between the partners and never given to the hub"
        )
    return raw


class _Encoder:
    """Encode many people under one secret (the HMAC key's padded states made once)."""

    def __init__(self, secret: bytes, salted: bool) -> None:
        self._mac = hmac.new(secret, _CONTEXT, hashlib.sha256)
        self._salted = salted

    def positions(self, field: str, salt: str, token: str, count: int) -> list[int]:
        """Return ``count`` bit positions of one token: 16-bit slices of keyed HMAC blocks."""
        out: list[int] = []
        message = f"{field}\x00{salt}\x00{token}".encode()
        block = 0
        while len(out) < count:
            mac = self._mac.copy()
            mac.update(message + bytes([block]))
            digest = mac.digest()
            for i in range(0, len(digest), _POSITION_BYTES):
                out.append(int.from_bytes(digest[i : i + _POSITION_BYTES], "big") % BITS)
                if len(out) == count:
                    break
            block += 1
        return out

    def encode(self, person: Person) -> bytes:
        salt = _birth(person.birth_date)[0] if self._salted else ""
        value = 0
        for field, token in _encoded(person, self._salted):
            for position in self.positions(field, salt, token, BITS_PER_TOKEN[field]):
                value |= 1 << position
        return value.to_bytes(BITS // 8, "big")


def encode(person: Person, secret: str | bytes, *, salted: bool = True) -> bytes:
    """Return the linkage encoding of one person: :data:`BITS` bits as ``BITS // 8`` bytes.

    :param person: the person's identifying fields.
    :param secret: the linkage secret the partners share (at least :data:`MIN_SECRET_BYTES`).
    :param salted: salt every token with the year of birth (the hardening). ``False`` exists
        only so the attack benchmark and tests can measure what the salt protects against.
    :raises LinkageSecretError: if the secret is too short.
    :raises LinkageError: if the birth date is not a date.

    >>> a = encode(Person("Maria", "Silva", "1990-05-17", "F", "BR"), "s" * 32)
    >>> b = encode(Person("Marai", "Silva", "1990-05-17", "F", "BR"), "s" * 32)
    >>> c = encode(Person("Maria", "Silva", "1991-05-17", "F", "BR"), "s" * 32)
    >>> len(a), dice(a, b) > 0.8, dice(a, c) < 0.5
    (128, True, True)
    """
    return _Encoder(_secret(secret), salted).encode(person)


def encode_all(
    people: Iterable[Person],
    secret: str | bytes,
    *,
    salted: bool = True,
    rows: Iterable[int] | None = None,
) -> list[bytes]:
    """Return the encodings of many people, in order, naming the first row that cannot be encoded.

    :param rows: each person's row as the partner's file counts it (1, 2, ... when not given).
    :raises LinkageError: naming the row and the field, never the value.
    """
    encoder = _Encoder(_secret(secret), salted)
    out: list[bytes] = []
    numbers = rows if rows is not None else itertools.count(1)
    for row, person in zip(numbers, people, strict=rows is not None):
        try:
            out.append(encoder.encode(person))
        except LinkageError as error:
            raise LinkageError(f"row {row}, field birth date: {error}") from None
    return out


def dice(a: bytes, b: bytes) -> float:
    """Return the Dice coefficient of two encodings: ``2|a & b| / (|a| + |b|)`` (0 when empty).

    >>> dice(b"\\x0f", b"\\x03"), dice(b"\\x00", b"\\x00")
    (0.6666666666666666, 0.0)
    """
    x, y = int.from_bytes(a, "big"), int.from_bytes(b, "big")
    total = x.bit_count() + y.bit_count()
    return 2 * (x & y).bit_count() / total if total else 0.0


def encoding_text(encoding: bytes | None) -> str:
    """Write an encoding for the upload's :data:`ENCODING_COLUMN` (empty for none).

    >>> encoding_text(bytes(BITS // 8))[:8], encoding_text(None)
    ('AAAAAAAA', '')
    """
    return "" if encoding is None else base64.b64encode(encoding).decode("ascii")


def _one_encoding(text: str) -> bytes | None:
    if not text:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise LinkageError("not base64 (the toolkit writes standard base64)") from None
    if len(raw) != BITS // 8:
        raise LinkageError(f"{len(raw)} bytes, where an encoding is {BITS // 8} bytes")
    if not any(raw):
        raise LinkageError("sets no bit: leave the cell empty for a case without an encoding")
    return raw


def read_encodings(
    cells: Iterable[str | None], *, rows: Iterable[int] | None = None
) -> list[bytes | None]:
    """Read an upload's :data:`ENCODING_COLUMN`: one encoding (or ``None``) per row.

    :param cells: the column's cells, in row order; empty or ``None`` means no encoding.
    :param rows: each cell's row as the file counts its rows (1, 2, ... when not given).
    :raises EncodingError: naming every bad row (the message at most ten), the field and why;
        never a value.

    >>> read_encodings([encoding_text(b"\\x01" * 128), "", None]) == [b"\\x01" * 128, None, None]
    True
    >>> read_encodings(["", "abc"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    contributors.linkage.EncodingError: 1 bad linkage encoding(s): row 2, field linkageEncoding: ...
    """
    out: list[bytes | None] = []
    problems: list[tuple[int, str]] = []
    numbers = rows if rows is not None else itertools.count(1)
    for row, cell in zip(numbers, cells, strict=rows is not None):
        try:
            out.append(_one_encoding((cell or "").strip()))
        except LinkageError as error:
            out.append(None)
            problems.append((row, str(error)))
    if problems:
        shown = "; ".join(f"row {r}, field {ENCODING_COLUMN}: {why}" for r, why in problems[:10])
        more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise EncodingError(f"{len(problems)} bad linkage encoding(s): {shown}{more}", problems)
    return out
