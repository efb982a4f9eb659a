"""Frequency and pattern-mining attacks on stored encodings, with a plaintext list of the people.

The attacks must work where an encoding is weak (a positive control: an unkeyed, unsalted Bloom
filter of the family name alone, two bits per bigram) and re-identify at most 1% of the
toolkit's salted encodings. The full FEBRL figures are in ``make bench BENCH=linkage``.
"""

from __future__ import annotations

import hashlib
from functools import partial

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
