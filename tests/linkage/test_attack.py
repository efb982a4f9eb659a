"""Frequency and pattern-mining attacks on stored encodings, with a plaintext list of the people.

The attacks must work where an encoding is weak (a positive control: an unkeyed, unsalted Bloom
filter of the family name alone, two bits per bigram) and re-identify at most 1% of the
toolkit's salted encodings. The full FEBRL figures are in ``make bench BENCH=linkage``.
"""

from __future__ import annotations

import hashlib
from functools import partial

import numpy as np
import pytest

from bench.linkage_people import people
from contributors.linkage import BITS, Person, encode_all, salted_tokens
from disclosure_control.evaluate.linkage_attack import (
    AttackOutcome,
    frequency_attack,
    pattern_mining_attack,
)

SECRET = "linkage-secret-shared-by-partners-0001"
PEOPLE = people(2000, seed=3)
TRUTH = list(range(len(PEOPLE)))
ATTACKS = [frequency_attack, pattern_mining_attack]


def _bigrams(person: object) -> frozenset[str]:
    assert isinstance(person, Person)
    name = f"_{person.family_name}_"
    return frozenset(name[i : i + 2] for i in range(len(name) - 1))


def _weak(person: Person) -> bytes:
    """An unkeyed field-level Bloom filter, two bits per bigram: what the attacks exploit."""
    value = 0
    for bigram in _bigrams(person):
        digest = hashlib.sha256(bigram.encode()).digest()
        for j in range(2):
            value |= 1 << (int.from_bytes(digest[2 * j : 2 * j + 2], "big") % BITS)
    return value.to_bytes(BITS // 8, "big")


def _salted(person: object) -> frozenset[tuple[str, str, str]]:
    assert isinstance(person, Person)
    return salted_tokens(person)


@pytest.mark.parametrize("attack", ATTACKS)
def test_attacks_reidentify_weak_encodings(attack: object) -> None:
    assert callable(attack)
    outcome: AttackOutcome = attack([_weak(p) for p in PEOPLE], PEOPLE, _bigrams, TRUTH)
    # The attack recovers tokens and its claims are right: it is a working attack, so its
    # failure on the hardened encodings below means something.
    assert outcome.tokens_recovered >= 40
    assert outcome.reidentified >= 40
    assert outcome.reidentified >= 0.9 * outcome.claimed


@pytest.mark.parametrize("attack", ATTACKS)
def test_salted_encodings_resist(attack: object) -> None:
    assert callable(attack)
    encodings = encode_all(PEOPLE, SECRET)
    # The intruder knows the scheme and the salt of every person on the list.
    outcome: AttackOutcome = attack(encodings, PEOPLE, _salted, TRUTH)
    assert outcome.share <= 0.01


def test_plaintext_order_does_not_matter() -> None:
    """The intruder's list is in another order; scoring follows the truth mapping."""
    order = list(reversed(range(len(PEOPLE))))
    shuffled = [PEOPLE[i] for i in order]
    truth = [order.index(i) for i in range(len(PEOPLE))]
    weak = [_weak(p) for p in PEOPLE]
    a = pattern_mining_attack(weak, PEOPLE, _bigrams, TRUTH)
    b = pattern_mining_attack(weak, shuffled, _bigrams, truth)
    assert (a.reidentified, a.claimed) == (b.reidentified, b.claimed)


def test_unsalted_tokens_ignore_the_year() -> None:
    person = Person("Ana", "Lima", "1990-01-02")
    unsalted = partial(salted_tokens, salted=False)(person)
    assert {salt for _, salt, _ in unsalted} == {""}
    assert {salt for _, salt, _ in salted_tokens(person)} == {"1990"}


def _year_partition(encodings: list[bytes], years: list[str]) -> dict[str, float]:
    """Run the hub's partition attack; return, per birth year, the precision of its pattern.

    The intruder (the hub, without the linkage secret) takes the bits that every record of one
    birth year carries and selects every stored encoding that carries all of them. A fixed
    pattern of the year (its own token) selects that year's records and hardly any other:
    precision near 1, and the records are sorted by birth year. Without it, the shared bits
    are few coincidences of common bigrams, which many records of other years carry too.
    """
    bits = np.unpackbits(
        np.frombuffer(b"".join(encodings), dtype=np.uint8).reshape(len(encodings), -1), axis=1
    ).astype(bool)
    labels = np.array(years)
    out: dict[str, float] = {}
    for year in sorted(set(years)):
        inside = labels == year
        if inside.sum() < 10:
            continue
        pattern = bits[inside].all(axis=0)
        if not pattern.any():
            out[year] = 0.0
            continue
        selected = bits[:, pattern].all(axis=1)
        out[year] = float(inside[selected].mean())
    return out


def test_no_bit_pattern_marks_a_birth_year() -> None:
    years = [(p.birth_date or "")[:4] for p in PEOPLE]
    # Positive control: the year as a token of its own (here unsalted; salted with itself, as
    # the encoder did before, it is as fixed) marks every record of its year: the attack
    # selects each year's records and almost nothing else.
    plain = _year_partition(encode_all(PEOPLE, SECRET, salted=False), years)
    assert len(plain) >= 40
    assert min(plain.values()) >= 0.9
    # The encodings partners send carry no such mark: whatever bits all records of a year
    # share select mostly records of other years.
    salted = _year_partition(encode_all(PEOPLE, SECRET), years)
    assert max(salted.values()) < 0.5, max(salted.items(), key=lambda item: item[1])
