"""The hub's matcher: links encodings of one person across sources, and only those."""

from __future__ import annotations

import random

from bench.linkage_people import corrupt, duplicates, people
from contributors.linkage import encode_all
from hub.services.linkage import link

SECRET = "linkage-secret-shared-by-partners-0001"
ORIGINALS = people(1000, seed=11)
COPIES = duplicates(ORIGINALS, seed=12)
A, B = encode_all(ORIGINALS, SECRET), encode_all(COPIES, SECRET)


def _score(groups: list[list[tuple[int, int]]]) -> tuple[float, float]:
    correct = sum(1 for (_, i), (_, j) in groups if i == j)
    return correct / len(groups), correct / len(ORIGINALS)


def test_links_duplicates_across_two_sources() -> None:
    groups = link([A, B])
    assert all(len(g) == 2 and g[0][0] == 0 and g[1][0] == 1 for g in groups)
    precision, recall = _score(groups)
    # Duplicates lose their link only when a typo hit their year of birth (the salt) or the
    # blocking missed them; strangers almost never pass 0.55.
    assert precision >= 0.97
    assert recall >= 0.85


def test_blocking_keeps_almost_every_link_of_the_full_comparison() -> None:
    blocked = {tuple(map(tuple, g)) for g in link([A, B])}
    full = {tuple(map(tuple, g)) for g in link([A, B], blocks=None)}
    assert len(blocked & full) >= 0.97 * len(full)


def test_three_sources_one_group_per_person_at_most_one_record_per_source() -> None:
    rng = random.Random(13)
    third = encode_all([corrupt(p, rng) for p in ORIGINALS[:200]], SECRET)
    groups = link([A[:200], B[:200], third])
    for group in groups:
        assert len({source for source, _ in group}) == len(group)
    whole = [g for g in groups if len(g) == 3]
    assert len(whole) >= 150
    # As with two sources, a stranger slips into a group now and then, rarely.
    assert sum(len({row for _, row in g}) == 1 for g in whole) >= 0.97 * len(whole)


def test_an_empty_source_links_nothing() -> None:
    assert link([A[:50], []]) == []
    assert link([[], []]) == []
