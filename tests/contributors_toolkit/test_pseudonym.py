"""Properties of the keyed case-id pseudonyms."""

from __future__ import annotations

import hashlib
import hmac
import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contributors.pseudonym import (
    MIN_KEY_BYTES,
    PseudonymError,
    PseudonymKeyError,
    is_pseudonym,
    key_from_env,
    pseudonymise,
    pseudonymise_column,
)

KEY = b"0123456789abcdef0123456789abcdef"
case_ids = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != "")


@settings(max_examples=200, deadline=None)
@given(case_ids)
def test_same_key_and_id_give_the_same_pseudonym(case_id: str) -> None:
    first = pseudonymise(case_id, KEY)
    assert first == pseudonymise(case_id, KEY)
    assert is_pseudonym(first)


@settings(max_examples=200, deadline=None)
@given(case_ids, case_ids)
def test_different_ids_give_different_pseudonyms(a: str, b: str) -> None:
    if a.strip() != b.strip():
        assert pseudonymise(a, KEY) != pseudonymise(b, KEY)


def test_a_different_key_gives_unrelated_pseudonyms() -> None:
    other = secrets.token_bytes(32)
    ids = [str(n) for n in range(1, 501)]
    ours = set(pseudonymise_column(ids, KEY))
    theirs = set(pseudonymise_column(ids, other))
    assert len(ours) == len(ids)
    assert not ours & theirs


def test_pseudonym_is_not_a_plain_hash_of_the_id() -> None:
    # Without the key, hashing guessed case ids must not find the pseudonym.
    pseudonym = pseudonymise("CASE-1", KEY)
    assert pseudonym != hashlib.sha256(b"CASE-1").hexdigest()
    assert pseudonym != hmac.new(KEY, b"CASE-1", hashlib.sha256).hexdigest()
    assert "CASE" not in pseudonym


def test_bits_of_the_pseudonym_are_balanced() -> None:
    # Each output bit of HMAC-SHA256 over 2,000 ids is 1 with probability 1/2; the count of ones
    # in a bit position is Binomial(2000, 1/2), sd = sqrt(500) ~ 22.4. A bound of 6 sd over 256
    # positions fails by chance with probability below 256 * 2e-9.
    pseudonyms = pseudonymise_column([f"id-{n}" for n in range(2000)], KEY)
    for bit in range(256):
        ones = sum((int(p, 16) >> bit) & 1 for p in pseudonyms)
        assert abs(ones - 1000) <= 6 * 22.4


def test_short_key_is_refused() -> None:
    with pytest.raises(PseudonymKeyError, match=f"at least {MIN_KEY_BYTES} bytes"):
        pseudonymise("1", b"x" * (MIN_KEY_BYTES - 1))
    assert is_pseudonym(pseudonymise("1", b"x" * MIN_KEY_BYTES))


def test_empty_case_id_names_its_row() -> None:
    with pytest.raises(PseudonymError, match="row 3, field caseNo"):
        pseudonymise_column(["1", "2", "  "], KEY)


def test_key_from_env_checks_presence_and_length() -> None:
    with pytest.raises(PseudonymKeyError, match="PARTNER_KEY is not set"):
        key_from_env("PARTNER_KEY", {})
    with pytest.raises(PseudonymKeyError, match="PARTNER_KEY: the pseudonym key is 3 bytes"):
        key_from_env("PARTNER_KEY", {"PARTNER_KEY": "abc"})
    assert key_from_env("PARTNER_KEY", {"PARTNER_KEY": "k" * 32}) == b"k" * 32


# Known pseudonyms, made by HMAC-SHA256 over b"ctdhub/caseNo/v1\x00" + the stripped case id with
# the standard library's hmac (the construction of every release so far): the column's fast path
# must give them byte for byte, whatever the key's length against SHA-256's 64-byte block.
KNOWN = [
    (KEY, "1", "094d3145733ae8c5a57eb2ff2278262d27b76f115e259592690d5137f4daef15"),
    (KEY, "CASE-0042", "9c490243f0066f807e853bb3cad6863561789cbd6b4799b33ccf71e80c8ebab2"),
    (KEY, " 17 ", "b5b1e9eaae849568cd042179f2d7282593dc38a93a86825e3467dda361387b43"),
    (KEY, "é-ü", "caa7a388b70c96ecb40ac9e6d7c791ce04f0ea26330916a94169e1b3fb89e682"),
    (KEY, "x" * 200, "d308137e9bc6fb9274f3bd615b13424f79510f82e2c6a75ad4af87d3ff632159"),
    (b"k" * 100, "1", "80ac1d75f6e316acd3ad942ac719fcdb41ef8bd38e6e9cb672be5b3f0d2f308d"),
]


@pytest.mark.parametrize(("key", "case_id", "expected"), KNOWN)
def test_known_pseudonyms(key: bytes, case_id: str, expected: str) -> None:
    assert pseudonymise(case_id, key) == expected
    assert pseudonymise_column(["other", case_id], key)[1] == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(case_ids, min_size=1, max_size=5), st.binary(min_size=32, max_size=200))
def test_column_is_the_standard_hmac_of_each_id(ids: list[str], key: bytes) -> None:
    # Keys shorter than, as long as and longer than the block (hashed first) alike.
    expected = [
        hmac.new(key, b"ctdhub/caseNo/v1\x00" + i.strip().encode(), hashlib.sha256).hexdigest()
        for i in ids
    ]
    assert pseudonymise_column(ids, key) == expected
    assert [pseudonymise(i, key) for i in ids] == expected
