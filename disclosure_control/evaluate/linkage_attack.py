"""Attacks on stored linkage encodings by an intruder who holds a plaintext list of the people.

The intruder has every stored encoding (bit vectors, :mod:`contributors.linkage`) and a
plaintext list of the same people, but neither the linkage secret nor which encoding is whose.
Both attacks first recover which bit positions a token (a name bigram, a birth-date part) sets,
then re-identify: an encoding is claimed for a person when exactly one person in the list carries
exactly the recovered tokens that the encoding carries. The figure is the share of encodings
claimed for the right person.

- **Frequency attack** (after Kuzu et al. 2011): a bit position set in exactly as many encodings
  as one token occurs in the list, and no other token as often, is taken to be that token's.
- **Pattern-mining attack** (after Christen et al. 2018): sets of two or more positions that are
  set in exactly the same encodings (a token's positions when nothing collides with them) are
  aligned with the token of that frequency; when several tokens share it, the one whose
  co-occurrence with the tokens already aligned matches the set's is taken.

The intruder knows the encoding scheme (Kerckhoffs): ``tokens_of`` gives each person's tokens as
the encoder forms them, salt included. Pure numpy; no hub import.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["AttackOutcome", "frequency_attack", "pattern_mining_attack"]

Token = Hashable


@dataclass(frozen=True)
class AttackOutcome:
    """What an attack achieved.

    :param tokens_recovered: tokens whose bit positions the attack claims to know.
    :param claimed: encodings the attack claimed for one person.
    :param reidentified: encodings claimed for the right person.
    :param total: encodings attacked.
    """

    tokens_recovered: int
    claimed: int
    reidentified: int
    total: int

    @property
    def share(self) -> float:
        """Return the share of encodings re-identified (0 to 1)."""
        return self.reidentified / self.total if self.total else 0.0


def _matrix(encodings: Sequence[bytes]) -> npt.NDArray[np.bool_]:
    packed = np.frombuffer(b"".join(encodings), dtype=np.uint8).reshape(len(encodings), -1)
    return np.unpackbits(packed, axis=1).astype(bool)


def _reidentify(
    bits: npt.NDArray[np.bool_],
    people_tokens: Sequence[frozenset[Token]],
    truth: Sequence[int],
    assigned: dict[Token, list[int]],
) -> AttackOutcome:
    """Claim each encoding for the one person whose recovered tokens it carries exactly."""
    recovered = list(assigned)
    if not recovered:
        return AttackOutcome(0, 0, 0, len(truth))
    carries = np.stack([bits[:, assigned[t]].all(axis=1) for t in recovered], axis=1)
    people_index: dict[bytes, list[int]] = defaultdict(list)
    for person, tokens in enumerate(people_tokens):
        signature = np.array([t in tokens for t in recovered], dtype=bool)
        people_index[np.packbits(signature).tobytes()].append(person)
    claimed = correct = 0
    for row in range(bits.shape[0]):
        if not carries[row].any():
            continue
        candidates = people_index.get(np.packbits(carries[row]).tobytes(), [])
        if len(candidates) == 1:
            claimed += 1
            correct += candidates[0] == truth[row]
    return AttackOutcome(len(recovered), claimed, correct, len(truth))


def _frequencies(people_tokens: Sequence[frozenset[Token]]) -> Counter[Token]:
    return Counter(t for tokens in people_tokens for t in tokens)


def frequency_attack(
    encodings: Sequence[bytes],
    people: Sequence[object],
    tokens_of: Callable[[object], frozenset[Token]],
    truth: Sequence[int],
    *,
    min_support: int = 5,
) -> AttackOutcome:
    """Align bit-position frequencies with token frequencies, then re-identify.

    :param encodings: the stored encodings.
    :param people: the intruder's plaintext list (any order).
    :param tokens_of: a person's tokens as the encoder forms them.
    :param truth: for each encoding, the index in ``people`` of its person (only for scoring).
    :param min_support: frequencies below this are too common among tokens to align.
    """
    bits = _matrix(encodings)
    people_tokens = [tokens_of(p) for p in people]
    by_frequency: dict[int, list[Token]] = defaultdict(list)
    for token, count in _frequencies(people_tokens).items():
        by_frequency[count].append(token)
    assigned: dict[Token, list[int]] = defaultdict(list)
    for position, support in enumerate(bits.sum(axis=0).tolist()):
        tokens = by_frequency.get(support, [])
        if support >= min_support and len(tokens) == 1:
            assigned[tokens[0]].append(position)
    return _reidentify(bits, people_tokens, truth, assigned)


def pattern_mining_attack(
    encodings: Sequence[bytes],
    people: Sequence[object],
    tokens_of: Callable[[object], frozenset[Token]],
    truth: Sequence[int],
    *,
    min_support: int = 2,
) -> AttackOutcome:
    """Mine sets of positions that always occur together, align them with tokens, re-identify.

    Parameters as :func:`frequency_attack`.
    """
    bits = _matrix(encodings)
    people_tokens = [tokens_of(p) for p in people]
    frequency = _frequencies(people_tokens)
    by_frequency: dict[int, list[Token]] = defaultdict(list)
    for token, count in frequency.items():
        by_frequency[count].append(token)
    # Patterns: positions whose columns (the encodings that set them) are identical.
    columns: dict[bytes, list[int]] = defaultdict(list)
    for position in range(bits.shape[1]):
        columns[np.packbits(bits[:, position]).tobytes()].append(position)
    patterns = sorted(
        (
            (int(bits[:, ps[0]].sum()), ps)
            for ps in columns.values()
            if len(ps) >= 2 and bits[:, ps[0]].sum() >= min_support
        ),
        key=lambda item: -item[0],
    )
    token_rows: dict[Token, set[int]] = defaultdict(set)
    for person, tokens in enumerate(people_tokens):
        for t in tokens:
            token_rows[t].add(person)
    assigned: dict[Token, list[int]] = {}
    pending = list(patterns)
    progress = True
    while pending and progress:
        progress = False
        still: list[tuple[int, list[int]]] = []
        for support, positions in pending:
            candidates = [t for t in by_frequency.get(support, []) if t not in assigned]
            if len(candidates) > 1 and assigned:
                # Break the tie by co-occurrence with the tokens already aligned.
                column = bits[:, positions[0]]
                observed = [
                    int((column & bits[:, ps].all(axis=1)).sum()) for ps in assigned.values()
                ]
                candidates = [
                    t
                    for t in candidates
                    if [len(token_rows[t] & token_rows[a]) for a in assigned] == observed
                ]
            if len(candidates) == 1:
                assigned[candidates[0]] = positions
                progress = True
            else:
                still.append((support, positions))
        pending = still
    return _reidentify(bits, people_tokens, truth, assigned)
