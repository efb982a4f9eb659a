"""Privacy measures: what a synthetic table reveals about the real records it was made from.

Every attack is scored twice: on *training* records (those the synthesizer saw) and on
*control* records (a held-out sample it never saw). A synthetic table that leaks does better on
the training records than on the control records; ``risk`` is that excess, normalised as in
Anonymeter (Giomi et al., 2023): ``(main - control) / (1 - control)``. Each attack also has a
naive *baseline* that does not use the synthetic records at all: an attack no better than its
baseline shows nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import sqrt
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from disclosure_control.evaluate._encoding import IntMatrix, encode_tables

FloatArray = npt.NDArray[np.float64]
_CHUNK = 256


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Return the Wilson score interval of a success rate.

    :param successes: how many attacks succeeded.
    :param trials: how many attacks were made.
    :param z: the normal quantile (1.96 for 95 %).

    >>> lo, hi = wilson_interval(50, 100)
    >>> round(lo, 3), round(hi, 3)
    (0.404, 0.596)
    """
    if trials <= 0:
        raise ValueError("an interval needs at least one trial")
    rate = successes / trials
    denominator = 1 + z * z / trials
    centre = (rate + z * z / (2 * trials)) / denominator
    half = z * sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def excess_risk(main_rate: float, control_rate: float) -> float:
    """Return the attack's success on training records beyond its success on control records.

    :param main_rate: success rate against training records.
    :param control_rate: success rate against control (held-out) records.

    >>> excess_risk(0.75, 0.5)
    0.5
    >>> excess_risk(0.1, 0.2)
    0.0
    """
    if control_rate >= 1.0:
        return 0.0
    return max(0.0, (main_rate - control_rate) / (1.0 - control_rate))


def hamming_to_nearest(
    queries: IntMatrix, reference: IntMatrix, columns: Sequence[int] | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Return each query row's Hamming distance to its closest reference row, and that row.

    Ties go to the lowest reference index, so the answer is deterministic.

    :param queries: encoded rows to look up.
    :param reference: encoded rows searched.
    :param columns: compare on these columns only; all by default.

    >>> d, i = hamming_to_nearest(np.array([[0, 1]]), np.array([[1, 1], [0, 1]]))
    >>> d.tolist(), i.tolist()
    ([0], [1])
    """
    cols = list(range(queries.shape[1])) if columns is None else list(columns)
    q = queries[:, cols].astype(np.int16 if queries.max(initial=0) < 2**15 else np.int64)
    r = reference[:, cols].astype(q.dtype)
    distances = np.empty(len(q), dtype=np.int64)
    nearest = np.empty(len(q), dtype=np.int64)
    for start in range(0, len(q), _CHUNK):
        block = q[start : start + _CHUNK]
        mismatches = np.zeros((len(block), len(r)), dtype=np.int16)
        for j in range(len(cols)):
            mismatches += block[:, j, None] != r[None, :, j]
        nearest[start : start + len(block)] = mismatches.argmin(axis=1)
        distances[start : start + len(block)] = mismatches.min(axis=1)
    return distances, nearest


@dataclass(frozen=True)
class AttackResult:
    """One attack's success against training and control records and its naive baseline.

    :param name: the attack.
    :param n_attacks: attacks made per target set: the rates' denominator.
    :param n_requested: attacks asked for; singling out makes fewer when its attempt budget
        runs out first, the other attacks when the training or control table is smaller.
    :param main_rate: success rate against training records.
    :param control_rate: success rate against control records.
    :param baseline_rate: success rate of the naive attack that ignores the synthetic table.
    :param main_interval: 95 % Wilson interval of ``main_rate``.
    :param risk: ``(main - control) / (1 - control)``, floored at 0.
    :param risk_interval: the risk at the ends of the two rates' 95 % Wilson intervals (lowest
        main with highest control, and the reverse); it holds the risk whenever both intervals
        hold their rates, so (by the union bound, attacks taken as independent trials) at least
        about 90 % of the time.
    """

    name: str
    n_attacks: int
    n_requested: int
    main_rate: float
    control_rate: float
    baseline_rate: float
    main_interval: tuple[float, float]
    risk: float
    risk_interval: tuple[float, float]

    @classmethod
    def from_counts(
        cls, name: str, n: int, main: int, control: int, baseline: int, requested: int
    ) -> AttackResult:
        """Build a result from success counts out of ``n`` attacks each.

        :param name: the attack.
        :param n: attacks made per target set (at least one).
        :param main: successes against training records.
        :param control: successes against control records.
        :param baseline: successes of the naive attack.
        :param requested: attacks asked for.

        >>> r = AttackResult.from_counts("test", 100, 60, 20, 5, 100)
        >>> round(r.risk, 3), [round(x, 3) for x in r.risk_interval]
        (0.5, [0.3, 0.643])
        """
        main_interval = wilson_interval(main, n)
        control_interval = wilson_interval(control, n)
        return cls(
            name=name,
            n_attacks=n,
            n_requested=requested,
            main_rate=main / n,
            control_rate=control / n,
            baseline_rate=baseline / n,
            main_interval=main_interval,
            risk=excess_risk(main / n, control / n),
            risk_interval=(
                excess_risk(main_interval[0], control_interval[1]),
                excess_risk(main_interval[1], control_interval[0]),
            ),
        )

    @classmethod
    def none_made(cls, name: str, requested: int) -> AttackResult:
        """Build the result of an attack that found nothing to attack with: nothing is known.

        :param name: the attack.
        :param requested: attacks asked for.
        """
        return cls(name, 0, requested, 0.0, 0.0, 0.0, (0.0, 1.0), 0.0, (0.0, 1.0))


def _unique_matches(matrix: IntMatrix, columns: Sequence[int], values: Sequence[int]) -> int:
    """Return how many rows of a matrix hold the given values in the given columns."""
    mask = np.ones(len(matrix), dtype=bool)
    for j, v in zip(columns, values, strict=True):
        mask &= matrix[:, j] == v
    return int(mask.sum())


def _same_size_samples(
    training: IntMatrix, control: IntMatrix, rng: np.random.Generator
) -> tuple[IntMatrix, IntMatrix]:
    """Return training and control records at the smaller table's size.

    The smaller table is kept whole; the larger one is a uniform random sample of that size
    (without replacement), so a sorted table is not cut to its first rows.
    """
    size = min(len(training), len(control))

    def cut(matrix: IntMatrix) -> IntMatrix:
        if len(matrix) == size:
            return matrix
        return matrix[np.sort(rng.choice(len(matrix), size, replace=False))]

    return cut(training), cut(control)


#: Default singling-out attempt budget per requested predicate. Each attempt (a random
#: synthetic record and random columns) is kept only if it describes exactly one synthetic
#: record; on the CTDC records, where most rows are duplicates, as few as 1 in 700 attempts is
#: kept (25 columns, 4 per predicate), so a budget of 20 per predicate made 9-221 of 500. The
#: whole default budget for 500 predicates, spent on 10,000 synthetic records, takes about 2 s.
SINGLING_OUT_ATTEMPTS_PER_PREDICATE = 2000

#: Bytes of packed row sets examined per batch of singling-out attempts, and the most attempts
#: per batch (its random column choices take 8 bytes per column and attempt).
_BATCH_BYTES = 8_000_000
_BATCH_ATTEMPTS = 4096


def _packed_row_sets(
    matrix: IntMatrix, cardinalities: Sequence[int]
) -> tuple[npt.NDArray[np.uint8], IntMatrix]:
    """Return, for every (column, code), the set of rows holding it, packed as bits.

    :return: the packed sets, one row per code of every column in turn, and each column's
        first row in them.
    """
    offsets = np.concatenate([[0], np.cumsum(cardinalities)[:-1]]).astype(np.int64)
    rows = np.arange(len(matrix))
    blocks = []
    for j, size in enumerate(cardinalities):
        holds = np.zeros((size, len(matrix)), dtype=bool)
        holds[matrix[:, j], rows] = True
        blocks.append(np.packbits(holds, axis=1))
    return np.concatenate(blocks), offsets


def singling_out(
    training: IntMatrix,
    synthetic: IntMatrix,
    control: IntMatrix,
    cardinalities: Sequence[int],
    n_attacks: int,
    n_columns: int,
    rng: np.random.Generator,
    *,
    max_attempts: int | None = None,
) -> AttackResult:
    """Score multivariate singling out: predicates unique in the synthetic table.

    The attacker takes a random synthetic record and a random set of ``n_columns`` columns
    (one attempt); if those values describe exactly one synthetic record, they make a
    predicate, and the attacker guesses it describes exactly one real person. Attempts go on
    until ``n_attacks`` predicates are made or ``max_attempts`` are spent; the rates are out
    of the predicates made (``n_attacks`` of the result), beside the number asked for
    (``n_requested``). Success: the predicate matches exactly one training record (main) or
    exactly one control record (control). Whether a predicate is unique depends on the size
    of the table, so both are scored at the smaller one's size: the smaller table whole, and
    a seeded uniform random sample (without replacement) of the larger. The baseline draws each
    predicate value uniformly from the column's codes present in the three tables (training,
    synthetic, control; the column's full domain is not known here), and succeeds when that
    predicate matches exactly one record of the training sample.

    :param training: encoded training records.
    :param synthetic: encoded synthetic records.
    :param control: encoded control records.
    :param cardinalities: number of codes of every column.
    :param n_attacks: predicates asked for.
    :param n_columns: columns per predicate.
    :param rng: source of randomness.
    :param max_attempts: attempts allowed in all; by default
        ``SINGLING_OUT_ATTEMPTS_PER_PREDICATE * n_attacks``.
    """
    budget = (
        SINGLING_OUT_ATTEMPTS_PER_PREDICATE * n_attacks if max_attempts is None else max_attempts
    )
    if budget < 1:
        raise ValueError(f"singling out: max_attempts must be at least 1, not {budget}")
    if n_columns < 1:
        raise ValueError(f"singling out: a predicate needs at least one column, not {n_columns}")
    d = training.shape[1]
    k = min(n_columns, d)
    training_part, control_part = _same_size_samples(training, control, rng)
    sets, offsets = _packed_row_sets(synthetic, cardinalities)
    batch = max(16, min(_BATCH_ATTEMPTS, _BATCH_BYTES // (k * sets.shape[1])))
    predicates: list[tuple[list[int], list[int]]] = []
    tries = 0
    while len(predicates) < n_attacks and tries < budget:
        size = min(batch, budget - tries)
        rows = rng.integers(len(synthetic), size=size)
        # The first k of a random permutation of the columns: k columns without replacement.
        cols = np.argsort(rng.random((size, d)), axis=1)[:, :k]
        values = synthetic[rows[:, None], cols]
        matching = np.bitwise_and.reduce(sets[offsets[cols] + values], axis=1)
        unique = np.flatnonzero(np.bitwise_count(matching).sum(axis=1, dtype=np.int64) == 1)
        kept = unique[: n_attacks - len(predicates)]
        predicates.extend((cols[i].tolist(), values[i].tolist()) for i in kept)
        # Attempts after the last predicate needed were never made.
        tries += int(kept[-1]) + 1 if len(predicates) == n_attacks else size
    if not predicates:
        # No synthetic record is unique on any tried predicate: nothing to single out with.
        return AttackResult.none_made("singling out", n_attacks)
    main = control_hits = baseline = 0
    sizes = np.asarray(cardinalities)
    for columns, predicate in predicates:
        main += _unique_matches(training_part, columns, predicate) == 1
        control_hits += _unique_matches(control_part, columns, predicate) == 1
        guess = rng.integers(sizes[columns]).tolist()
        baseline += _unique_matches(training_part, columns, guess) == 1
    made = len(predicates)
    return AttackResult.from_counts("singling out", made, main, control_hits, baseline, n_attacks)


def _mismatches(block: IntMatrix, reference: IntMatrix, columns: Sequence[int]) -> IntMatrix:
    """Return the number of differing columns between every block row and every reference row."""
    counts = np.zeros((len(block), len(reference)), dtype=np.int64)
    for j in columns:
        counts += block[:, j, None] != reference[None, :, j]
    return counts


def _random_nearest(distances: IntMatrix, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """Return, for each row, the column of its smallest value, ties broken uniformly at random.

    :param distances: one row of distances per query.
    :param rng: source of randomness.

    >>> _random_nearest(np.array([[2, 0, 1]]), np.random.default_rng(0)).tolist()
    [1]
    """
    # The largest of independent uniform keys is equally likely to sit on any tied column.
    keys = rng.random(distances.shape)
    keys[distances != distances.min(axis=1, keepdims=True)] = -1.0
    return np.asarray(keys.argmax(axis=1), dtype=np.int64)


def linkability(
    training: IntMatrix,
    synthetic: IntMatrix,
    control: IntMatrix,
    n_attacks: int,
    rng: np.random.Generator,
) -> AttackResult:
    """Score linkability: can two halves of a record be joined through the synthetic table?

    The columns are split at random into two halves, as if held by two different data holders
    (the split is the generator's first draw, so a caller can repeat it). For each target, the
    attacker takes the synthetic record closest to each half, one record per half, ties broken
    uniformly at random; success is the same synthetic record for both halves. The baseline
    draws one uniformly random synthetic record for each half, and so succeeds with probability
    1/n for n synthetic records.

    Attack and baseline are like for like. If the synthetic table says nothing about how the
    halves go together (its two halves independent, each with rows in random order), the two
    picks are independent, and each is equally likely to be any synthetic row, because ties
    are broken at random: the attack then succeeds with probability exactly 1/n, as the
    baseline does. Breaking ties by row order would pile both picks onto the first rows and
    beat the baseline by itself; so would counting a success when ANY of the tied closest
    records is closest to both halves (categorical records tie often: most CTDC rows are
    duplicates), which also rewards an attacker for naming many links at once. A baseline of
    random sets of the tie sets' sizes would match that variant, but a success then no longer
    names one link, and it nears certainty for any record with a copy in the synthetic table,
    held out or not. One neighbour per half is also Anonymeter's choice for this comparison.

    :param training: encoded training records.
    :param synthetic: encoded synthetic records.
    :param control: encoded control records.
    :param n_attacks: targets per set.
    :param rng: source of randomness.
    """
    d = training.shape[1]
    if d < 2:
        raise ValueError("linkability needs at least two columns")
    order = rng.permutation(d)
    first = [int(j) for j in order[: d // 2]]
    second = [int(j) for j in order[d // 2 :]]
    n = min(n_attacks, len(training), len(control))

    def linked(targets: IntMatrix) -> int:
        hits = 0
        for start in range(0, len(targets), _CHUNK):
            block = targets[start : start + _CHUNK]
            nearest_first = _random_nearest(_mismatches(block, synthetic, first), rng)
            nearest_second = _random_nearest(_mismatches(block, synthetic, second), rng)
            hits += int((nearest_first == nearest_second).sum())
        return hits

    main_targets = training[rng.choice(len(training), n, replace=False)]
    control_targets = control[rng.choice(len(control), n, replace=False)]
    main = linked(main_targets)
    control_hits = linked(control_targets)
    draws = rng.integers(len(synthetic), size=(2, n))
    baseline = int((draws[0] == draws[1]).sum())
    return AttackResult.from_counts("linkability", n, main, control_hits, baseline, n_attacks)


def inference(
    training: IntMatrix,
    synthetic: IntMatrix,
    control: IntMatrix,
    secret: int,
    n_attacks: int,
    rng: np.random.Generator,
) -> AttackResult:
    """Score attribute inference of one secret column from all the others.

    The attacker knows a target's other columns, finds the closest synthetic record on them and
    guesses its secret value. The baseline guesses a value drawn from the synthetic table's
    distribution of the secret, ignoring the target.

    :param training: encoded training records.
    :param synthetic: encoded synthetic records.
    :param control: encoded control records.
    :param secret: index of the secret column.
    :param n_attacks: targets per set.
    :param rng: source of randomness.
    """
    known = [j for j in range(training.shape[1]) if j != secret]
    n = min(n_attacks, len(training), len(control))

    def guessed(targets: IntMatrix) -> int:
        _, nearest = hamming_to_nearest(targets, synthetic, known)
        return int((synthetic[nearest, secret] == targets[:, secret]).sum())

    main_targets = training[rng.choice(len(training), n, replace=False)]
    main = guessed(main_targets)
    control_hits = guessed(control[rng.choice(len(control), n, replace=False)])
    draws = synthetic[rng.integers(len(synthetic), size=n), secret]
    baseline = int((draws == main_targets[:, secret]).sum())
    return AttackResult.from_counts("inference", n, main, control_hits, baseline, n_attacks)


@dataclass(frozen=True)
class DistanceSummary:
    """Distance to closest record, synthetic against training, beside control against training.

    :param n_sampled: synthetic (and control) records sampled.
    :param synthetic_exact_share: share of sampled synthetic records equal to a training record.
    :param control_exact_share: the same for control records: the natural rate of repeats.
    :param synthetic_median: median Hamming distance, synthetic to closest training record.
    :param control_median: the same for control records.
    :param synthetic_mean: mean distance, synthetic.
    :param control_mean: mean distance, control.
    """

    n_sampled: int
    synthetic_exact_share: float
    control_exact_share: float
    synthetic_median: float
    control_median: float
    synthetic_mean: float
    control_mean: float


@dataclass
class PrivacyReport:
    """All privacy measures of one synthetic table.

    :param exact_match_share: share of all synthetic records identical to some training record.
    :param control_exact_match_share: share of control records identical to a training record,
        the baseline a fresh real sample shows.
    :param distance: distance-to-closest-record summary.
    :param attacks: singling-out, linkability and inference results.
    """

    exact_match_share: float
    control_exact_match_share: float
    distance: DistanceSummary
    attacks: list[AttackResult]

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-ready data."""
        return {
            "exact_match_share": self.exact_match_share,
            "control_exact_match_share": self.control_exact_match_share,
            "distance_to_closest_record": vars(self.distance),
            "attacks": [
                vars(a)
                | {"main_interval": list(a.main_interval), "risk_interval": list(a.risk_interval)}
                for a in self.attacks
            ],
        }


def _row_keys(matrix: IntMatrix) -> npt.NDArray[np.void]:
    """Return one hashable byte key per row, for exact-match tests."""
    contiguous = np.ascontiguousarray(matrix.astype(np.int64))
    return contiguous.view(np.dtype((np.void, contiguous.dtype.itemsize * matrix.shape[1]))).ravel()


def exact_match_share(candidates: IntMatrix, reference: IntMatrix) -> float:
    """Return the share of candidate rows identical to some reference row.

    :param candidates: encoded rows to test.
    :param reference: encoded rows they are compared with.

    >>> exact_match_share(np.array([[0, 1], [1, 1]]), np.array([[0, 1]]))
    0.5
    """
    return float(np.isin(_row_keys(candidates), _row_keys(reference)).mean())


def evaluate_privacy(
    training: pd.DataFrame,
    synthetic: pd.DataFrame,
    control: pd.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    n_attacks: int = 500,
    n_distance_sample: int = 500,
    singling_out_columns: int = 4,
    singling_out_attempts: int | None = None,
    secrets: Sequence[str] = (),
    seed: int = 0,
) -> PrivacyReport:
    """Measure exact matches, distance to closest record and three attacks against baselines.

    :param training: the real records the synthesizer saw.
    :param synthetic: the synthetic records.
    :param control: real records the synthesizer did not see, from the same population.
    :param columns: the columns compared; by default the training table's columns.
    :param n_attacks: attacks per attack type and target set.
    :param n_distance_sample: records sampled for the distance to closest record.
    :param singling_out_columns: columns per singling-out predicate.
    :param singling_out_attempts: singling-out attempts allowed in all (see ``singling_out``);
        by default ``SINGLING_OUT_ATTEMPTS_PER_PREDICATE`` (2000) per predicate asked for. The
        singling-out result's ``n_attacks`` says how many predicates were made, its
        ``n_requested`` how many were asked for.
    :param secrets: columns to infer; by default the first column.
    :param seed: seed of every sample and attack.
    """
    chosen = list(training.columns if columns is None else columns)
    for label, frame in (("training", training), ("synthetic", synthetic), ("control", control)):
        if len(frame) == 0:
            raise ValueError(f"privacy evaluation: the {label} table is empty")
    if n_attacks < 1:
        raise ValueError(f"privacy evaluation: n_attacks must be at least 1, not {n_attacks}")
    unknown = [s for s in secrets if s not in chosen]
    if unknown:
        raise ValueError(f"privacy evaluation: secret column(s) {unknown} are not compared")
    encoding = encode_tables([training, synthetic, control], chosen)
    train_m, synth_m, control_m = encoding.matrices
    rng = np.random.default_rng(seed)

    n_dist = min(n_distance_sample, len(synth_m), len(control_m))
    synth_d, _ = hamming_to_nearest(
        synth_m[rng.choice(len(synth_m), n_dist, replace=False)], train_m
    )
    control_d, _ = hamming_to_nearest(
        control_m[rng.choice(len(control_m), n_dist, replace=False)], train_m
    )
    distance = DistanceSummary(
        n_sampled=n_dist,
        synthetic_exact_share=float((synth_d == 0).mean()),
        control_exact_share=float((control_d == 0).mean()),
        synthetic_median=float(np.median(synth_d)),
        control_median=float(np.median(control_d)),
        synthetic_mean=float(synth_d.mean()),
        control_mean=float(control_d.mean()),
    )
    attacks = [
        singling_out(
            train_m,
            synth_m,
            control_m,
            encoding.cardinalities,
            n_attacks,
            singling_out_columns,
            rng,
            max_attempts=singling_out_attempts,
        ),
        linkability(train_m, synth_m, control_m, n_attacks, rng),
    ]
    for secret in secrets or chosen[:1]:
        result = inference(train_m, synth_m, control_m, chosen.index(secret), n_attacks, rng)
        attacks.append(AttackResult(**(vars(result) | {"name": f"inference of {secret}"})))
    return PrivacyReport(
        exact_match_share=exact_match_share(synth_m, train_m),
        control_exact_match_share=exact_match_share(control_m, train_m),
        distance=distance,
        attacks=attacks,
    )
