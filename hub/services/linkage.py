"""Link partners' linkage encodings into persons, inside the hub (anonlink).

The hub receives keyed Bloom-filter encodings (:mod:`contributors.linkage`), never names, and
never holds the linkage secret. Two encodings are a candidate link when their Dice similarity is
at least :data:`THRESHOLD`; to scale, only encodings that agree on one of :data:`BLOCKS` random
samples of :data:`BLOCK_BITS` bit positions are compared (anonlink's bit blocking: a true pair,
which shares about 95% of its bits, agrees on a sample with high probability; two strangers
rarely do). Candidates are resolved greedily, best similarity first, into groups holding at most
one encoding per source. The links and groups stay inside the hub: no API returns them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from bitarray import bitarray

with warnings.catch_warnings():
    # anonlink 0.15.3 builds its TypedDicts with mypy_extensions' deprecated functional form at
    # import time; the warning is about anonlink's own source and says nothing about this use.
    warnings.filterwarnings("ignore", "mypy_extensions.TypedDict is deprecated", DeprecationWarning)
    from anonlink import candidate_generation, solving
    from anonlink.similarities import dice_coefficient_accelerated

__all__ = [
    "BLOCKS",
    "BLOCK_BITS",
    "THRESHOLD",
    "link",
    "people_in_several_sources",
    "link_persons",
    "to_bits",
]

#: Dice similarity at or above which two encodings may be the same person (tuned on FEBRL 4).
THRESHOLD = 0.55
#: Bit blocking: the number of samples per encoding and the bits in each sample.
BLOCKS = 6
BLOCK_BITS = 10
#: Fixed so the same encodings always give the same links.
_BLOCKING_SEED = 16


def to_bits(encoding: bytes) -> bitarray:
    """Return an encoding as the bitarray anonlink compares.

    >>> to_bits(b"\\x80\\x01").count(), len(to_bits(b"\\x80\\x01"))
    (2, 16)
    """
    bits = bitarray(endian="big")
    bits.frombytes(encoding)
    return bits


def _block_keys(
    sources: Sequence[Sequence[bytes]], blocks: int, block_bits: int
) -> list[list[list[tuple[int, int]]]]:
    """Return each encoding's bit-blocking keys: (sample, the sampled bits read as a number).

    The samples are the same fixed random bit positions for every source (as anonlink's
    ``bit_blocking`` draws them), computed over all encodings at once with numpy.

    >>> _block_keys([[b"\\xff" * 128], [b"\\x00" * 128]], 2, 3)
    [[[(0, 7), (1, 7)]], [[(0, 0), (1, 0)]]]
    """
    width = max((len(e) for source in sources for e in source), default=0)
    rng = np.random.default_rng(_BLOCKING_SEED)
    samples = np.stack(
        [rng.choice(width * 8, size=block_bits, replace=False) for _ in range(blocks)]
    )
    weights = 1 << np.arange(block_bits, dtype=np.int64)
    out: list[list[list[tuple[int, int]]]] = []
    for source in sources:
        if not source:
            out.append([])
            continue
        packed = np.frombuffer(b"".join(source), dtype=np.uint8).reshape(len(source), width)
        bits = np.unpackbits(packed, axis=1).astype(np.int64)
        keys = bits[:, samples] @ weights  # (records, blocks)
        out.append([list(enumerate(row)) for row in keys.tolist()])
    return out


def link(
    sources: Sequence[Sequence[bytes]],
    *,
    threshold: float = THRESHOLD,
    blocks: int | None = BLOCKS,
    block_bits: int = BLOCK_BITS,
) -> list[list[tuple[int, int]]]:
    """Return the groups of encodings that are one person, as (source, row) pairs.

    :param sources: the encodings of each source (a partner's upload), one per case.
    :param threshold: the least Dice similarity of a link.
    :param blocks: bit-blocking samples per encoding; ``None`` compares every pair.
    :param block_bits: bits per sample.
    :returns: groups of two or more; an encoding in no group is linked to nobody.

    >>> from contributors.linkage import Person, encode
    >>> a = [encode(Person("Maria", "Silva", "1990-05-17"), "s" * 32)]
    >>> b = [encode(Person("Joao", "Souza", "1971-01-01"), "s" * 32),
    ...      encode(Person("Marai", "Silva", "1990-05-17"), "s" * 32)]
    >>> link([a, b])
    [[(0, 0), (1, 1)]]
    """
    if sum(1 for source in sources if source) < 2:
        return []  # links join sources: with fewer than two non-empty ones there is none
    datasets = [[to_bits(e) for e in source] for source in sources]
    blocking_f = None
    if blocks is not None:
        keys = _block_keys(sources, blocks, block_bits)

        def blocking_f(source: int, row: int, _: bitarray) -> list[tuple[int, int]]:
            return keys[source][row]

    candidates = candidate_generation.find_candidate_pairs(
        datasets, dice_coefficient_accelerated, threshold, blocking_f=blocking_f
    )
    groups = solving.greedy_solve(candidates)
    return sorted(sorted((int(d), int(r)) for d, r in group) for group in groups)


def link_persons(
    encodings: Sequence[bytes | None],
    sources: Sequence[object],
    cases: Sequence[object] | None = None,
    *,
    threshold: float = THRESHOLD,
    blocks: int | None = BLOCKS,
    block_bits: int = BLOCK_BITS,
) -> list[int]:
    """Return a person key per record: records linked into one person share it.

    Encodings are linked by :func:`link` across sources, a source being one upload's batch:
    so a person is found across partners and across one partner's uploads, each group holding
    at most one record per batch (anonlink's greedy solver; without that constraint, chains of
    weak links join strangers who share a common name and birth year). Records of one case
    (the same partner's case pseudonym, sent again) are one person too. Persons are the
    connected components of those links; a record without an encoding, and of no case seen
    twice, is a person of its own. Two records of one person within one upload, under two
    case numbers, stay two persons. Keys are 0, 1, ... in the order each person's first record
    comes; they are for use inside the hub only (never published, never returned by an API).

    :param encodings: each record's linkage encoding, or ``None``.
    :param sources: each record's source (its batch), anything hashable.
    :param cases: each record's case, as something equal only for the same case of the same
        partner (for example ``(organisation, pseudonym)``); ``None`` entries link nothing.

    >>> from contributors.linkage import Person, encode
    >>> maria = encode(Person("Maria", "Silva", "1990-05-17"), "s" * 32)
    >>> typo = encode(Person("Marai", "Silva", "1990-05-17"), "s" * 32)
    >>> joao = encode(Person("Joao", "Souza", "1971-01-01"), "s" * 32)
    >>> link_persons([maria, None, joao, typo, None], [0, 0, 0, 1, 1], ["a", "b", "c", "d", "b"])
    [0, 1, 2, 0, 1]
    """
    parent = list(range(len(encodings)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    order: dict[object, int] = {}
    members: list[list[int]] = []
    for i, (encoding, source) in enumerate(zip(encodings, sources, strict=True)):
        if encoding is None:
            continue
        index = order.setdefault(source, len(order))
        if index == len(members):
            members.append([])
        members[index].append(i)
    groups = link(
        [[encodings[i] or b"" for i in rows] for rows in members],
        threshold=threshold,
        blocks=blocks,
        block_bits=block_bits,
    )
    for group in groups:
        first = members[group[0][0]][group[0][1]]
        for source, row in group[1:]:
            join(first, members[source][row])
    if cases is not None:
        seen: dict[object, int] = {}
        for i, case in enumerate(cases):
            if case is not None:
                join(i, seen.setdefault(case, i))
    keys: dict[int, int] = {}
    return [keys.setdefault(root(i), len(keys)) for i in range(len(encodings))]


def people_in_several_sources(keys: Sequence[int], partners: Sequence[object]) -> int:
    """Return how many persons have records of more than one partner (exact, hub-internal).

    >>> people_in_several_sources([0, 1, 0, 2, 2], ["a", "a", "b", "b", "b"])
    1
    """
    seen: dict[int, object] = {}
    several: set[int] = set()
    for key, partner in zip(keys, partners, strict=True):
        if seen.setdefault(key, partner) != partner:
            several.add(key)
    return len(several)
