"""The DP count of people in several sources: its noise, and one person's effect on the count."""

from __future__ import annotations

import random

import pytest

from bench.linkage_people import duplicates, people
from contributors.linkage import encode_all
from disclosure_control.dp.count import noisy_count
from hub.services.linkage import link_persons, people_in_several_sources

SECRET = "linkage-secret-shared-by-partners-0001"


def test_noise_is_calibrated_to_rho_and_the_sensitivity() -> None:
    one = noisy_count(500, 0.005)
    assert one.scale == pytest.approx(10.0) and one.rho <= 0.005
    two = noisy_count(500, 0.005, sensitivity=2)
    assert two.scale == pytest.approx(20.0) and two.rho <= 0.005
    # The 95% interval of a discrete Gaussian of scale 10 is about +-1.96 scales wide.
    assert abs((one.upper_95 - one.lower_95) / 2 - 1.96 * one.scale) <= 2
    # Post-processed: never negative (unclamped, about half of these draws would be).
    assert all(noisy_count(0, 0.005).value >= 0 for _ in range(50))
    with pytest.raises(ValueError, match="rho must be positive"):
        noisy_count(5, 0.0)


def _several(records: list[tuple[bytes | None, int, str, str]]) -> int:
    encodings = [r[0] for r in records]
    keys = link_persons(encodings, [r[1] for r in records], [(r[2], r[3]) for r in records])
    return people_in_several_sources(keys, [r[2] for r in records])


def test_one_whole_person_changes_the_true_count_by_at_most_one() -> None:
    # Three partners (one upload each) recording overlapping generated people with typos; a
    # neighbouring data set lacks one person entirely (all their records).
    rng = random.Random(4)
    crowd = people(300, seed=11)
    sources = [sorted(rng.sample(range(len(crowd)), 150)) for _ in range(3)]
    records: list[tuple[bytes | None, int, str, str]] = []
    who: list[int] = []
    for source, members in enumerate(sources):
        written = (
            duplicates([crowd[i] for i in members], seed=source)
            if source
            else [crowd[i] for i in members]
        )
        for person, encoding in zip(members, encode_all(written, SECRET), strict=True):
            records.append((encoding, source, f"partner-{source}", f"case-{source}-{person}"))
            who.append(person)
    full = _several(records)
    assert full > 50  # the partners do share people
    for person in rng.sample(sorted(set(who)), 40):
        without = [r for r, w in zip(records, who, strict=True) if w != person]
        assert abs(_several(without) - full) <= 1, person
