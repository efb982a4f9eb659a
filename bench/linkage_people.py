"""Generated people and corrupted duplicates of them, FEBRL-style, for linkage tests and benches.

Never real names: given and family names are made of random syllables, drawn with Zipf-like
frequencies (a few names common, most rare, as in a population), so frequency attacks have the
skew they feed on. A duplicate is the same person written again by another partner: per field a
typo (substitution, insertion, deletion or transposition) or a missing value, as FEBRL corrupts
its duplicates.
"""

from __future__ import annotations

import random
from dataclasses import replace

from contributors.linkage import Person

_ONSETS = ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "ch", "sh")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ei")
_CODAS = ("", "", "", "n", "r", "l", "s", "m")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _name(rng: random.Random) -> str:
    syllables = rng.choice((2, 2, 3, 3, 4))
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)) + (
        rng.choice(_CODAS)
    )


def _pool(rng: random.Random, size: int) -> tuple[list[str], list[float]]:
    names = list(dict.fromkeys(_name(rng) for _ in range(size * 2)))[:size]
    weights = [1.0 / (rank + 1) for rank in range(len(names))]  # Zipf, s = 1
    return names, weights


def people(count: int, seed: int) -> list[Person]:
    """Return ``count`` generated people (names, birth date, sex) from a fixed seed."""
    rng = random.Random(seed)
    given, given_w = _pool(rng, max(50, count // 20))
    family, family_w = _pool(rng, max(100, count // 5))
    out = []
    for g, f in zip(
        rng.choices(given, given_w, k=count), rng.choices(family, family_w, k=count), strict=True
    ):
        birth = f"{rng.randint(1940, 2008)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        out.append(Person(g, f, birth, rng.choice("FM")))
    return out


def _typo(text: str, rng: random.Random) -> str:
    if len(text) < 2:
        return text + rng.choice(_LETTERS)
    i = rng.randrange(len(text) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        return text[:i] + rng.choice(_LETTERS) + text[i + 1 :]
    if kind == 1:
        return text[:i] + rng.choice(_LETTERS) + text[i:]
    if kind == 2:
        return text[:i] + text[i + 1 :]
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def corrupt(person: Person, rng: random.Random, typo: float = 0.3, missing: float = 0.03) -> Person:
    """Return ``person`` as another partner might record them: typos and missing values."""

    def field(value: str | None, digits: bool = False) -> str | None:
        if value is None:
            return None
        roll = rng.random()
        if roll < missing:
            return None
        if roll < missing + typo:
            if digits:  # a date keeps its form: one digit of it mistyped
                i = rng.choice([j for j, c in enumerate(value) if c.isdigit()])
                return value[:i] + rng.choice("0123456789") + value[i + 1 :]
            return _typo(value, rng)
        return value

    return replace(
        person,
        given_name=field(person.given_name),
        family_name=field(person.family_name),
        birth_date=field(person.birth_date, digits=True)
        if rng.random() < 0.4
        else person.birth_date,
    )


def duplicates(originals: list[Person], seed: int) -> list[Person]:
    """Return one corrupted duplicate of each person, in the same order."""
    rng = random.Random(seed)
    return [corrupt(p, rng) for p in originals]
