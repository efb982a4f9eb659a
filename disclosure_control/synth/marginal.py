"""A differentially private, marginal-based synthesizer of case records.

The method, in the family of PrivBayes, MST and AIM (the winners on categorical data):

1. measure every column's 1-way marginal; merge each column's rare values (those whose noisy
   count is under three noise deviations) into one bucket, as MST implementations do, or drop
   them as absent when the bucket's counts are no more than noise (:func:`_compress`);
2. select a maximum spanning tree of strongly associated column pairs with the exponential
   mechanism (noisy max), one edge per round;
3. give each column a parent set by noisy max: its tree parent plus up to two columns placed
   before it, scored by how far the child's counts given the set lie from its released 1-way
   distribution, less the noise the larger marginal costs (so 3- and 4-way structure is
   modelled where the budget affords it);
4. measure each column's marginal with its parents with the Gaussian mechanism;
5. turn the noisy marginals into a Bayesian network of smoothed conditional tables;
6. rake each column's conditional table so its marginal moves to the inverse-variance
   combination of the network's marginal and its own 1-way measurement (:func:`_rake`), and
   sample.

Every access to the real records is an OpenDP measurement inside one OpenDP adaptive
composition under rho-zCDP, so the run's privacy loss is OpenDP's figure.

What OpenDP proves and what this module argues: the noise (``make_gaussian``,
``make_noisy_max``), the counting (``make_count_by_categories`` with its L2 sensitivity) and
the composition are OpenDP's own. Three steps are user transformations, under OpenDP's
"honest-but-curious" flag, each a module-level pure function whose stated stability is checked
by property tests on neighbouring record sets (``tests/synth/test_stability.py``):
:func:`marginal_cells` (record -> marginal cell, 1-stable in the symmetric distance),
:func:`tree_score` (L-inf sensitivity 1) and :func:`parent_set_score` (L-inf sensitivity 2).
OpenDP 0.16 can count marginals natively (a Polars plan: ``replace_strict`` for the
compression, ``group_by(...).agg(dp.len(...))`` joined to the public cells), but then the
composition's input is a LazyFrame that OpenDP hands to every Python score function by
serialising the whole table: measured 0.7 s per score call for 50,000 x 54 Int32 columns
(0.85 s for 97,750), times about 105 score releases, against about 27 s for the whole fit
of 50,000 records today. So the counts stay on the encoded matrix.

Determinism, and its limit: OpenDP 0.16 draws all noise (Gaussian and noisy max alike) from
the operating system's cryptographically secure generator and offers no seed or deterministic
mode (by design: a seeded generator would let anyone who learns the seed subtract the noise).
So two fits of the same records differ by their noise, and a fit cannot be replayed. Everything
after the measurements is deterministic: compression, tree rooting and ordering, tie-breaks
(lowest column index), candidate order, estimation; and sampling a fitted model is
deterministic given its seed. A release is therefore reproduced from its saved model and its
seed: :meth:`SynthesisModel.to_json` writes the model (released, noisy values only, floats
exactly), :meth:`SynthesisModel.from_json` reads it back against the schema domain, and
``sample(n, seed)`` on the loaded model gives exactly the released table.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from math import pi, prod, sqrt
from typing import Any

import numpy as np
import numpy.typing as npt
import opendp.prelude as dp
import pandas as pd

from disclosure_control.dp.accounting import rho_to_epsilon
from disclosure_control.synth.accounting import SynthesisSpend
from disclosure_control.synth.domain import Domain, IntMatrix

# User transformations (record codes -> cells, records -> selection scores) need this flag;
# their stability is argued in each function's docstring and checked by property tests.
dp.enable_features("contrib", "honest-but-curious")

FloatArray = npt.NDArray[np.float64]
#: ``progress(stage, done, total)``: called as the run advances.
ProgressCallback = Callable[[str, int, int], None]


def _ignore_progress(stage: str, done: int, total: int) -> None:
    """Discard a progress report."""


@dataclass(frozen=True)
class BudgetShares:
    """How the run's rho is split between its four kinds of measurement.

    :param one_way: 1-way marginals (domain compression and smoothing priors).
    :param tree: the noisy-max choice of tree edges.
    :param parent_sets: the noisy-max choice of each column's parent set.
    :param model: the Gaussian measurement of each column with its parents.
    """

    one_way: float = 0.15
    tree: float = 0.1
    parent_sets: float = 0.1
    model: float = 0.65

    def __post_init__(self) -> None:
        """Refuse shares that are not positive or do not add up to one."""
        parts = (self.one_way, self.tree, self.parent_sets, self.model)
        if min(parts) <= 0 or abs(sum(parts) - 1.0) > 1e-9:
            raise ValueError(f"budget shares must be positive and add up to 1, got {parts}")


def _cells(matrix: IntMatrix, columns: Sequence[int], sizes: Sequence[int]) -> IntMatrix:
    """Return the mixed-radix cell of every row over some columns (first column slowest)."""
    cells = np.zeros(len(matrix), dtype=np.int64)
    for j in columns:
        cells = cells * sizes[j] + matrix[:, j]
    return cells


def _loss(measurement: dp.Measurement, d_in: Any) -> float:
    """Return OpenDP's privacy loss of a measurement at an input distance."""
    return float(measurement.map(d_in))  # type: ignore[no-untyped-call]  # opendp is untyped


def _calibrate(make: Callable[[float], dp.Measurement], d_in: Any, rho: float) -> dp.Measurement:
    """Return the measurement, built with the smallest scale tried, whose loss is within rho.

    Both the Gaussian mechanism and noisy max lose ``c / scale**2`` zCDP, so the scale is
    solved from one probe, then nudged up until OpenDP's own map confirms it.
    """
    probe = _loss(make(1.0), d_in)
    scale = sqrt(probe / rho)
    measurement = make(scale)
    while _loss(measurement, d_in) > rho:
        scale *= 1 + 1e-9
        measurement = make(scale)
    return measurement


def encoded_records_domain(n_columns: int) -> dp.Domain:
    """Return the OpenDP domain of encoded case records: integer matrices of ``n_columns``.

    :param n_columns: the number of domain columns.
    """
    return dp.user_domain(
        f"EncodedCaseRecords{n_columns}",
        member=lambda x: isinstance(x, np.ndarray) and x.ndim == 2 and x.shape[1] == n_columns,
    )


def compress_records(matrix: IntMatrix, lookups: Sequence[IntMatrix]) -> IntMatrix:
    """Map every field of every record through its column's lookup, row by row.

    :param matrix: encoded records, one column per domain column.
    :param lookups: per column, the compressed code of each schema code.

    >>> compress_records(np.array([[0, 2], [1, 0]]), [np.array([0, 0]), np.array([1, 0, 2])])
    array([[0, 2],
           [0, 1]])
    """
    return np.column_stack([lookups[j][matrix[:, j]] for j in range(len(lookups))]).astype(
        np.int64, copy=False
    )


def marginal_cells(
    matrix: IntMatrix, columns: Sequence[int], lookups: Sequence[IntMatrix]
) -> list[int]:
    """Return each record's cell of the marginal over some columns, in compressed codes.

    Each record's cell depends on that record alone, so adding or removing records adds or
    removes as many cells: the map is 1-stable in the symmetric distance.

    :param matrix: encoded records.
    :param columns: the marginal's columns (first column slowest in the cell number).
    :param lookups: per column, the compressed code of each schema code.

    >>> marginal_cells(np.array([[0, 2], [1, 0]]), [0, 1], [np.arange(2), np.arange(3)])
    [2, 3]
    """
    cells = np.zeros(len(matrix), dtype=np.int64)
    for j in columns:
        cells = cells * (int(lookups[j].max()) + 1) + lookups[j][matrix[:, j]]
    return [int(v) for v in cells]


def make_marginal_counts(
    records_domain: dp.Domain, columns: Sequence[int], lookups: Sequence[IntMatrix]
) -> dp.Transformation:
    """Return the transformation from records to the count vector of one marginal.

    The record-to-cell map is a user transformation (1-stable, see :func:`marginal_cells`);
    the counting is OpenDP's ``make_count_by_categories``, which states the count vector's
    L2 sensitivity itself (1 per record added or removed).

    :param records_domain: the domain of encoded records.
    :param columns: the marginal's columns.
    :param lookups: per column, the compressed code of each schema code.
    """
    n_cells = prod(int(lookups[j].max()) + 1 for j in columns)
    cells = dp.t.make_user_transformation(
        records_domain,
        dp.symmetric_distance(),
        dp.vector_domain(dp.atom_domain(T=int)),
        dp.symmetric_distance(),
        function=lambda matrix: marginal_cells(matrix, columns, lookups),
        stability_map=lambda d_in: d_in,
    )
    counts: dp.Transformation = cells >> dp.t.then_count_by_categories(
        categories=list(range(n_cells)), null_category=False, MO="L2Distance<int>"
    )
    return counts


def make_score_transformation(
    records_domain: dp.Domain, score: Callable[[IntMatrix], list[float]], sensitivity: float
) -> dp.Transformation:
    """Return the user transformation from records to a vector of selection scores.

    OpenDP is told that ``k`` records added or removed move every score by at most
    ``k * sensitivity`` (an L-inf bound); each score function argues its own sensitivity and
    the property tests check it on neighbouring record sets.

    :param records_domain: the domain of encoded records.
    :param score: the scores of a record matrix, one per candidate.
    :param sensitivity: the most one record added or removed moves any score.
    """
    return dp.t.make_user_transformation(
        records_domain,
        dp.symmetric_distance(),
        dp.vector_domain(dp.atom_domain(T=float, nan=False)),
        dp.linf_distance(T=float),
        function=score,
        stability_map=lambda d_in: sensitivity * float(d_in),
    )


class RecordStatistics:
    """Statistics of one record matrix that several selection scores share, computed once.

    A value is reused only for the very matrix object it was computed from, and only while
    that matrix is read-only (``fit`` freezes its matrix); the statistics hold a reference to
    it, so its ``id`` cannot pass to another matrix. Any other matrix, a neighbour included,
    gets freshly computed values.

    :param lookups: per column, the compressed code of each schema code.
    :param priors: per column, its released (noisy) 1-way distribution in compressed codes.
    :param n_hat: the released (noisy) number of records.
    """

    def __init__(
        self, lookups: Sequence[IntMatrix], priors: Sequence[FloatArray], n_hat: float
    ) -> None:
        """Keep the released values the statistics are computed against."""
        self.lookups = list(lookups)
        self.sizes = [int(lk.max()) + 1 for lk in lookups]
        self.priors = list(priors)
        self.n_hat = n_hat
        self._matrix: IntMatrix | None = None
        self._values: dict[str, Any] = {}
        self.computed = 0  # how many values were computed rather than reused, for the tests

    def _remembered(self, matrix: IntMatrix, key: str, compute: Callable[[], Any]) -> Any:
        """Return a value of ``matrix``, reusing it only for the same frozen matrix."""
        if matrix.flags.writeable:
            self.computed += 1
            return compute()
        if self._matrix is not matrix:
            self._matrix, self._values = matrix, {}
        if key not in self._values:
            self.computed += 1
            self._values[key] = compute()
        return self._values[key]

    def compressed(self, matrix: IntMatrix) -> IntMatrix:
        """Return the records in compressed codes."""
        result: IntMatrix = self._remembered(
            matrix, "compressed", lambda: compress_records(matrix, self.lookups)
        )
        return result

    def pair_distances(self, matrix: IntMatrix) -> FloatArray:
        """Return every column pair's distance from independence (see :func:`pair_distances`)."""
        result: FloatArray = self._remembered(
            matrix,
            "pairs",
            lambda: pair_distances(self.compressed(matrix), self.sizes, self.priors, self.n_hat),
        )
        return result


def pair_distances(
    mapped: IntMatrix, sizes: Sequence[int], priors: Sequence[FloatArray], n_hat: float
) -> FloatArray:
    """Return the L1 distance of each real pair marginal from independence.

    Independence is predicted from released values only (the noisy record count times the
    product of the noisy 1-way distributions). Adding or removing one record moves one cell of
    each pair's counts by one and leaves the prediction fixed: every entry moves by at most 1.

    :param mapped: the records, in compressed codes.
    :param sizes: every column's number of compressed values.
    :param priors: every column's released 1-way distribution.
    :param n_hat: the released number of records.

    >>> m = np.array([[0, 0], [1, 1]])
    >>> pair_distances(m, [2, 2], [np.array([0.5, 0.5])] * 2, 2.0).tolist()
    [[0.0, 2.0], [2.0, 0.0]]
    """
    d = len(sizes)
    table = np.zeros((d, d))
    for a in range(d):
        for b in range(a + 1, d):
            counts = np.bincount(
                mapped[:, a] * sizes[b] + mapped[:, b], minlength=sizes[a] * sizes[b]
            )
            expected = n_hat * np.outer(priors[a], priors[b]).ravel()
            table[a, b] = table[b, a] = np.abs(counts - expected).sum()
    return table


def tree_score(
    statistics: RecordStatistics, candidates: Sequence[tuple[int, int]], bias: FloatArray
) -> Callable[[IntMatrix], list[float]]:
    """Return the score function of one round of the tree's noisy max (sensitivity 1).

    Each candidate edge scores its pair's distance from independence plus a fixed (public)
    bias, so the scores move as the distances do: by at most 1 per record.

    :param statistics: the shared statistics of the records.
    :param candidates: the candidate edges.
    :param bias: each candidate's fixed bias.
    """
    pairs = list(candidates)
    offsets = np.asarray(bias, dtype=np.float64)

    def score(matrix: IntMatrix) -> list[float]:
        table = statistics.pair_distances(matrix)
        return [float(v) for v in np.array([table[x, y] for x, y in pairs]) + offsets]

    return score


def parent_set_score(
    statistics: RecordStatistics,
    options: Sequence[tuple[int, ...]],
    child: int,
    bias: FloatArray,
) -> Callable[[IntMatrix], list[float]]:
    """Return the score function of a column's parent-set noisy max (sensitivity 2).

    Each candidate set scores :func:`_dependence` plus a fixed (public) bias, so the scores
    move by at most 2 per record.

    :param statistics: the shared statistics of the records.
    :param options: the candidate parent sets.
    :param child: the column whose parents are chosen.
    :param bias: each candidate's fixed bias.
    """
    sets = list(options)
    offsets = np.asarray(bias, dtype=np.float64)

    def score(matrix: IntMatrix) -> list[float]:
        mapped = statistics.compressed(matrix)
        prior = statistics.priors[child]
        scores = [_dependence(mapped, s, child, statistics.sizes, prior) for s in sets]
        return [float(v) for v in np.array(scores) + offsets]

    return score


@dataclass
class _Factor:
    """One column's conditional distribution given its parents, in compressed codes."""

    child: int
    parents: tuple[int, ...]
    table: FloatArray  # shape (product of parent sizes, child size); rows sum to 1


@dataclass
class SynthesisModel:
    """A fitted synthesizer: released (noisy) information only, safe to keep and to publish.

    Keep it with :meth:`to_json` and read it back with :meth:`from_json`: the loaded model
    samples exactly as the original for the same seed, which is how a release is reproduced.

    :param domain: the schema domain of the synthetic columns.
    :param order: columns in sampling order.
    :param factors: each column's conditional table, in sampling order.
    :param expand: per column, ``(kept codes, rare codes, rare weights)`` turning a compressed
        code back into a schema code.
    :param spend: the privacy loss of the run that fitted the model.
    :param tree: the selected tree edges, as column name pairs.
    """

    domain: Domain
    order: list[int]
    factors: list[_Factor]
    expand: list[tuple[IntMatrix, IntMatrix, FloatArray]]
    spend: SynthesisSpend
    tree: list[tuple[str, str]]

    def parents(self) -> dict[str, tuple[str, ...]]:
        """Return each column's parents in the model, by name."""
        names = self.domain.columns
        return {names[f.child]: tuple(names[p] for p in f.parents) for f in self.factors}

    def to_json(self) -> str:
        """Return the model as JSON text, to keep a release reproducible.

        The text holds a format name and version, the domain (columns and their codes), the
        sampling order, every conditional table, the expansion of compressed codes, the
        privacy spend and the tree, with a SHA-256 digest of all of it. Every float is written
        as its exact hexadecimal form (``float.hex``), so a loaded model samples exactly as
        the original. Read it back with :meth:`from_json`.
        """
        payload = {
            "domain": {
                "columns": list(self.domain.columns),
                "codes": [list(c) for c in self.domain.codes],
            },
            "order": [int(j) for j in self.order],
            "factors": [
                {
                    "child": int(f.child),
                    "parents": [int(q) for q in f.parents],
                    "shape": [int(n) for n in f.table.shape],
                    "table": _hex_floats(f.table),
                }
                for f in self.factors
            ],
            "expand": [
                {
                    "kept": [int(v) for v in kept],
                    "rare": [int(v) for v in rare],
                    "weights": _hex_floats(weights),
                }
                for kept, rare, weights in self.expand
            ],
            "spend": {
                "rho": float(self.spend.rho).hex(),
                "delta": float(self.spend.delta).hex(),
                "epsilon": float(self.spend.epsilon).hex(),
                "measurements": [[label, float(r).hex()] for label, r in self.spend.measurements],
            },
            "tree": [[a, b] for a, b in self.tree],
        }
        return json.dumps(
            {
                "format": MODEL_FORMAT,
                "version": MODEL_VERSION,
                "sha256": _digest(payload),
                "model": payload,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str, domain: Domain) -> SynthesisModel:
        """Load a model written by :meth:`to_json`, checking it against the expected domain.

        :param text: the model's JSON text.
        :param domain: the schema domain the model must have been fitted over.
        :raises ValueError: if the text is not a model file of this version, is truncated or
            altered (its digest does not match), or was fitted over another domain.
        """
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"synthesis model: not valid JSON (truncated?): {error}") from None
        if not isinstance(document, dict) or document.get("format") != MODEL_FORMAT:
            raise ValueError(f"synthesis model: not a {MODEL_FORMAT!r} file")
        if document.get("version") != MODEL_VERSION:
            raise ValueError(
                f"synthesis model: format version {document.get('version')!r} is not "
                f"supported (this code reads version {MODEL_VERSION})"
            )
        payload = document.get("model")
        if not isinstance(payload, dict) or document.get("sha256") != _digest(payload):
            raise ValueError("synthesis model: content does not match its SHA-256 digest")
        try:
            return _model_from_payload(payload, domain)
        except (KeyError, TypeError, IndexError, ValueError) as error:
            if isinstance(error, ValueError) and str(error).startswith("synthesis model"):
                raise
            raise ValueError(f"synthesis model: malformed content ({error!r})") from None

    def sample(self, n_records: int, seed: int) -> pd.DataFrame:
        """Draw synthetic case records from the model; the same seed gives the same table.

        The order of the rows carries nothing about the real records' order (issue 10: a
        release must not leave in an order derived from its input), so unlike a k-anonymous
        release it needs no CSPRNG shuffle, which would break the exact redraw from model and
        seed: every row is an independent draw from the network, whose tables are noisy
        aggregates (counts) of the records and so the same whatever order the records came in.
        Row ``i`` is the ``i``-th draw of a generator seeded by the release's own seed; nothing
        of any real record's position enters it. The table has a fresh ``RangeIndex``.

        :param n_records: how many records to draw.
        :param seed: seed of the draw.
        """
        if n_records < 0:
            raise ValueError("the number of synthetic records cannot be negative")
        rng = np.random.default_rng(seed)
        sizes = [len(kept) + (1 if rare.size else 0) for kept, rare, _ in self.expand]
        compressed = _draw_compressed(self.factors, sizes, n_records, rng)
        codes = np.empty_like(compressed)
        for j, (kept, rare, weights) in enumerate(self.expand):
            column = compressed[:, j]
            in_bucket = column >= len(kept)
            codes[:, j] = kept[np.minimum(column, len(kept) - 1)]
            if rare.size and in_bucket.any():
                codes[in_bucket, j] = rng.choice(rare, size=int(in_bucket.sum()), p=weights)
        return self.domain.decode(codes)


#: The name and version written into every saved model.
MODEL_FORMAT = "ctdhub-synthesis-model"
MODEL_VERSION = 1


def _hex_floats(values: FloatArray) -> list[str]:
    """Write floats exactly, as hexadecimal strings (row-major)."""
    return [float(v).hex() for v in np.asarray(values, dtype=np.float64).ravel()]


def _read_floats(values: Any, what: str) -> FloatArray:
    """Read floats written by :func:`_hex_floats`."""
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"synthesis model: {what} must be a list of hexadecimal floats")
    return np.array([float.fromhex(v) for v in values], dtype=np.float64)


def _read_ints(values: Any, what: str) -> IntMatrix:
    """Read a list of integers."""
    if not isinstance(values, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in values
    ):
        raise ValueError(f"synthesis model: {what} must be a list of integers")
    return np.array(values, dtype=np.int64).reshape(len(values))


def _digest(payload: Any) -> str:
    """Return the SHA-256 digest of a model's canonical JSON form."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _model_from_payload(payload: dict[str, Any], domain: Domain) -> SynthesisModel:
    """Rebuild a model from its checked JSON payload, refusing any inconsistency."""
    saved = payload["domain"]
    columns, codes = list(saved["columns"]), [list(c) for c in saved["codes"]]
    if columns != list(domain.columns):
        raise ValueError(
            f"synthesis model: fitted over columns {columns}, not the expected "
            f"{list(domain.columns)}"
        )
    for column, mine, theirs in zip(columns, domain.codes, codes, strict=True):
        if list(mine) != theirs:
            raise ValueError(
                f"synthesis model: column {column!r} was fitted over other codes than the "
                "expected domain's"
            )
    d = len(columns)
    order = [int(j) for j in _read_ints(payload["order"], "order")]
    if sorted(order) != list(range(d)):
        raise ValueError("synthesis model: order is not a permutation of the columns")
    expand: list[tuple[IntMatrix, IntMatrix, FloatArray]] = []
    for j, entry in enumerate(payload["expand"]):
        kept = _read_ints(entry["kept"], f"expand[{j}].kept")
        rare = _read_ints(entry["rare"], f"expand[{j}].rare")
        weights = _read_floats(entry["weights"], f"expand[{j}].weights")
        listed = [*kept.tolist(), *rare.tolist()]
        if len(set(listed)) != len(listed) or not set(listed) <= set(
            range(domain.cardinalities[j])
        ):
            # Codes in neither list are values the fit found absent: never drawn.
            raise ValueError(f"synthesis model: expand[{j}] lists codes outside column {j}'s")
        if kept.size == 0 or weights.size != rare.size:
            raise ValueError(f"synthesis model: expand[{j}] is inconsistent")
        if rare.size and ((weights < 0).any() or not np.isclose(weights.sum(), 1.0)):
            raise ValueError(f"synthesis model: expand[{j}] weights are not a distribution")
        expand.append((kept, rare, weights))
    if len(expand) != d:
        raise ValueError("synthesis model: expand must have one entry per column")
    sizes = [len(kept) + (1 if rare.size else 0) for kept, rare, _ in expand]
    factors: list[_Factor] = []
    placed: set[int] = set()
    for position, entry in enumerate(payload["factors"]):
        child = int(entry["child"])
        parents = tuple(int(q) for q in _read_ints(entry["parents"], "factor parents"))
        if position >= d or child != order[position] or not set(parents) <= placed:
            raise ValueError(
                f"synthesis model: factor {position} does not follow the sampling order"
            )
        shape = (prod(sizes[q] for q in parents), sizes[child])
        if [int(n) for n in entry["shape"]] != list(shape):
            raise ValueError(f"synthesis model: factor {position} has the wrong shape")
        table = _read_floats(entry["table"], f"factor {position} table").reshape(shape)
        if (table < 0).any() or not np.allclose(table.sum(axis=1), 1.0):
            raise ValueError(f"synthesis model: factor {position} rows are not distributions")
        factors.append(_Factor(child, parents, table))
        placed.add(child)
    if len(factors) != d:
        raise ValueError("synthesis model: there must be one factor per column")
    saved_spend = payload["spend"]
    spend = SynthesisSpend(
        float.fromhex(saved_spend["rho"]),
        float.fromhex(saved_spend["delta"]),
        float.fromhex(saved_spend["epsilon"]),
        [(str(label), float.fromhex(r)) for label, r in saved_spend["measurements"]],
    )
    tree = [(str(a), str(b)) for a, b in payload["tree"]]
    if not all(a in columns and b in columns for a, b in tree):
        raise ValueError("synthesis model: a tree edge names a column outside the domain")
    return SynthesisModel(domain, order, factors, expand, spend, tree)


class MarginalSynthesizer:
    """Fit a differentially private Bayesian network of low-order marginals to case records.

    :param domain: the schema domain of the columns to synthesise.
    :param rho: the run's total privacy loss (zero-concentrated DP, privacy unit one record).
    :param delta: the delta at which the spend is also stated as (epsilon, delta).
    :param shares: how rho is split between the kinds of measurement.
    :param max_cells: the largest marginal (in compressed cells) the model measures.
    :param max_parents: the most parents a column may have (its tree parent included).
    """

    def __init__(
        self,
        domain: Domain,
        rho: float,
        *,
        delta: float = 1e-6,
        shares: BudgetShares | None = None,
        max_cells: int = 20_000,
        max_parents: int = 3,
    ) -> None:
        """Keep the run's settings; nothing touches data until :meth:`fit`."""
        if rho <= 0:
            raise ValueError("rho must be positive")
        if len(domain.columns) < 2:
            raise ValueError("a marginal-based synthesizer needs at least two columns")
        self.domain = domain
        self.rho = rho
        self.delta = delta
        self.shares = shares or BudgetShares()
        self.max_cells = max_cells
        if max_parents < 1:
            raise ValueError("every column but the first needs at least its tree parent")
        self.max_parents = max_parents

    def fit(
        self, records: pd.DataFrame, progress: ProgressCallback | None = None
    ) -> SynthesisModel:
        """Measure the records through OpenDP and fit the model.

        :param records: the analysis snapshot's case records, as strings.
        :param progress: called with ``(stage, done, total)`` as the run advances.
        """
        report = progress or _ignore_progress
        data = self.domain.encode(records)
        d = len(self.domain.columns)
        full_sizes = self.domain.cardinalities
        records_domain = encoded_records_domain(d)
        metric = dp.symmetric_distance()
        # The run's budget is cut a hair below rho so float rounding in the sum of the parts
        # can never take the composition over it.
        budget = self.rho * (1 - 1e-9)
        n_rounds = {"one_way": d, "tree": d - 1, "parent_sets": d - 2, "model": d - 1}
        per_round = {
            kind: budget * getattr(self.shares, kind) / count
            for kind, count in n_rounds.items()
            if count > 0
        }

        def count_query(
            columns: Sequence[int], lookups: Sequence[IntMatrix], rho: float
        ) -> dp.Measurement:
            counts = make_marginal_counts(records_domain, columns, lookups)
            return _calibrate(lambda s: counts >> dp.m.then_gaussian(scale=s), 1, rho)

        def select_query(
            score: Callable[[IntMatrix], list[float]], rho: float, sensitivity: float = 1.0
        ) -> dp.Measurement:
            scores = make_score_transformation(records_domain, score, sensitivity)
            return _calibrate(
                lambda s: scores >> dp.m.then_noisy_max(dp.zero_concentrated_divergence(), s),
                1,
                rho,
            )

        def constant_score(matrix: IntMatrix) -> list[float]:
            return [0.0]

        identity = [np.arange(k, dtype=np.int64) for k in full_sizes]
        probe_one_way = count_query([0], identity, per_round["one_way"])
        probe_model = count_query([0], identity, per_round["model"])
        # A measurement's loss depends only on its noise scale and sensitivity, so these
        # probes state each round's loss exactly as the round's own measurement will.
        d_mids = [_loss(probe_one_way, 1)] * d
        d_mids += [_loss(select_query(constant_score, per_round["tree"]), 1)] * (d - 1)
        if d > 2:
            probe_sets = select_query(constant_score, per_round["parent_sets"], sensitivity=2)
            d_mids += [_loss(probe_sets, 1)] * (d - 2)
        d_mids += [_loss(probe_model, 1)] * (d - 1)
        composition = dp.c.make_adaptive_composition(
            records_domain, metric, dp.zero_concentrated_divergence(), d_in=1, d_mids=d_mids
        )
        total_steps = len(d_mids)
        # Frozen, so the score cache below can tell this exact matrix from any other.
        data.setflags(write=False)
        queryable = composition(data)
        ledger: list[tuple[str, float]] = []
        names = self.domain.columns

        def release(label: str, measurement: dp.Measurement) -> Any:
            ledger.append((label, _loss(measurement, 1)))
            answer = queryable(measurement)
            report("measure", len(ledger), total_steps)
            return answer

        # 1. One-way marginals, then domain compression (post-processing of released counts).
        one_way_sigma = sqrt(0.5 / d_mids[0])
        one_way: list[FloatArray] = []
        for j in range(d):
            noisy = release(f"1-way {names[j]}", count_query([j], identity, per_round["one_way"]))
            one_way.append(np.asarray(noisy, dtype=np.float64))
        # The record count, from every column's noisy total weighted by the inverse of its
        # noise variance (a total over k cells has k times one cell's variance).
        weights = np.array([1.0 / c.size for c in one_way])
        totals = np.array([c.sum() for c in one_way])
        n_hat = max(float((weights * totals).sum() / weights.sum()), 1.0)
        lookups, expand, sizes, priors = [], [], [], []
        for counts in one_way:
            column = _compress(counts, one_way_sigma, n_hat)
            lookups.append(column.lookup)
            expand.append((column.kept, column.rare, column.weights))
            sizes.append(column.size)
            priors.append(column.prior)

        model_sigma = sqrt(0.5 / d_mids[-1])
        penalty = sqrt(2 / pi) * model_sigma
        statistics = RecordStatistics(lookups, priors, n_hat)

        # 2. Maximum spanning tree by noisy max (Kruskal's rule: join two components per round).
        component = list(range(d))
        tree: list[tuple[int, int]] = []
        for _ in range(d - 1):
            candidates = [
                (a, b) for a in range(d) for b in range(a + 1, d) if component[a] != component[b]
            ]
            bias = np.array([-penalty * sizes[a] * sizes[b] for a, b in candidates])
            chosen = release(
                "tree edge",
                select_query(tree_score(statistics, candidates, bias), per_round["tree"]),
            )
            a, b = candidates[int(chosen)]
            tree.append((a, b))
            old, new = component[b], component[a]
            component = [new if c == old else c for c in component]

        # Root the tree at its best-connected column; order columns breadth first.
        neighbours: dict[int, list[int]] = {j: [] for j in range(d)}
        for a, b in tree:
            neighbours[a].append(b)
            neighbours[b].append(a)
        root = max(range(d), key=lambda j: (len(neighbours[j]), -j))
        order, tree_parent = [root], {root: -1}
        for node in order:
            for child in sorted(neighbours[node]):
                if child not in tree_parent:
                    tree_parent[child] = node
                    order.append(child)

        # 3. Each column's parent set by noisy max: its tree parent, plus up to
        # ``max_parents - 1`` columns placed before it, scored by how far the child's real
        # counts given the set lie from the child's released 1-way distribution, less the
        # noise the larger marginal would cost.
        parents: dict[int, tuple[int, ...]] = {root: ()}
        for position, child in enumerate(order[1:], start=1):
            parent = tree_parent[child]
            if position == 1:
                parents[child] = (parent,)
                continue
            options = _parent_sets(
                parent,
                [q for q in order[:position] if q != parent],
                [sizes[q] for q in range(d)],
                self.max_parents,
                self.max_cells // sizes[child],
            )
            bias = np.array([-penalty * sizes[child] * prod(sizes[q] for q in s) for s in options])
            chosen = release(
                f"parents of {names[child]}",
                select_query(
                    parent_set_score(statistics, options, child, bias),
                    per_round["parent_sets"],
                    sensitivity=2,
                ),
            )
            parents[child] = options[int(chosen)]

        # 4. Measure each column with its parents; 5. smooth into conditional tables.
        factors = [_Factor(root, (), priors[root][None, :])]
        for child in order[1:]:
            columns = [*parents[child], child]
            noisy = release(
                f"marginal {'/'.join(names[c] for c in columns)}",
                count_query(columns, lookups, per_round["model"]),
            )
            counts = np.asarray(noisy, dtype=np.float64).reshape([sizes[c] for c in columns])
            factors.append(
                _Factor(child, parents[child], _conditional(counts, priors[child], model_sigma))
            )

        # 6. Post-processing: pull each column's marginal towards its 1-way measurement,
        # weighting the two estimates by the inverse of their noise variance.
        one_way_var = [one_way_sigma**2] * d
        model_var = [one_way_sigma**2 if f.child == root else model_sigma**2 * len(f.table)
                     for f in factors]  # fmt: skip
        factors = _rake(factors, sizes, priors, one_way_var, model_var)

        rho_spent = _loss(composition, 1)
        spend = SynthesisSpend(rho_spent, self.delta, rho_to_epsilon(rho_spent, self.delta), ledger)
        return SynthesisModel(
            domain=self.domain,
            order=order,
            factors=factors,
            expand=expand,
            spend=spend,
            tree=[(names[a], names[b]) for a, b in tree],
        )


def _conditional(counts: FloatArray, prior: FloatArray, pseudo: float) -> FloatArray:
    """Turn a noisy marginal (parents..., child) into a smoothed conditional table.

    Negative noisy counts are clipped; every parent configuration is shrunk towards the
    child's distribution given fewer parents (then its 1-way distribution) with ``pseudo``
    pseudo-records, so sparse configurations fall back on what was measured more reliably.

    :param counts: noisy counts with the child on the last axis.
    :param prior: the child's 1-way distribution.
    :param pseudo: the pseudo-count of the shrinkage, about one noise deviation.

    >>> t = _conditional(np.array([[90.0, 10.0], [-3.0, -1.0]]), np.array([0.5, 0.5]), 10.0)
    >>> t.round(3).tolist()
    [[0.95, 0.05], [0.5, 0.5]]
    """
    k = counts.shape[-1]
    if counts.ndim <= 2:
        base_rows = np.broadcast_to(prior, (max(counts.size // k, 1), k))
    else:
        # Condition on the first parent alone, then repeat for each value of the others
        # (cells run first parent slowest, so its rows repeat in consecutive blocks).
        coarser = counts.sum(axis=tuple(range(1, counts.ndim - 1)))
        base_rows = np.repeat(
            _conditional(coarser, prior, pseudo), int(np.prod(counts.shape[1:-1])), axis=0
        )
    # Cells under one noise deviation are mostly noise; keeping them would spread mass evenly
    # over empty cells, so they are zeroed (the shrinkage still covers them).
    flat = counts.reshape(-1, k)
    table = np.where(flat > pseudo, flat, 0.0) + pseudo * base_rows
    return np.asarray(table / table.sum(axis=1, keepdims=True), dtype=np.float64)


def _parent_sets(
    parent: int, others: Sequence[int], sizes: Sequence[int], max_parents: int, max_cells: int
) -> list[tuple[int, ...]]:
    """List a column's candidate parent sets, smallest first.

    Each set is the tree parent plus up to ``max_parents - 1`` of the other placed columns,
    with at most ``max_cells`` parent configurations.

    :param parent: the column's tree parent, in every set.
    :param others: the other columns placed before it.
    :param sizes: every column's number of (compressed) values.
    :param max_parents: the largest set.
    :param max_cells: the most parent configurations a set may have.

    >>> _parent_sets(0, [1, 2], [2, 3, 4], 3, 100)
    [(0,), (0, 1), (0, 2), (0, 1, 2)]
    >>> _parent_sets(0, [1, 2], [2, 3, 4], 3, 10)
    [(0,), (0, 1), (0, 2)]
    """
    sets: list[tuple[int, ...]] = [(parent,)]
    for extra in range(1, max_parents):
        for chosen in combinations(others, extra):
            candidate = (parent, *chosen)
            if prod(sizes[q] for q in candidate) <= max_cells:
                sets.append(candidate)
    return sets


def _dependence(
    mapped: IntMatrix, parents: Sequence[int], child: int, sizes: Sequence[int], prior: FloatArray
) -> float:
    """Return how far a column's counts given a parent set lie from its released distribution.

    The score is the L1 distance between the real counts of (parents, child) and what the
    parents' real counts times the child's released 1-way distribution predict. Adding or
    removing one record moves one count by one and one row of the prediction by a vector
    summing to one: the score moves by at most 2 (its sensitivity). Refining the parent set
    never lowers it.

    :param mapped: the records, in compressed codes.
    :param parents: the parent set.
    :param child: the column.
    :param sizes: every column's number of compressed values.
    :param prior: the child's released (noisy) 1-way distribution.

    >>> m = np.array([[0, 0], [0, 0], [1, 1], [1, 1]])
    >>> _dependence(m, [0], 1, [2, 2], np.array([0.5, 0.5]))
    4.0
    """
    config = _cells(mapped, parents, sizes)
    k = sizes[child]
    joint = np.bincount(
        config * k + mapped[:, child], minlength=prod(sizes[q] for q in parents) * k
    )
    table = joint.reshape(-1, k).astype(np.float64)
    return float(np.abs(table - np.outer(table.sum(axis=1), prior)).sum())


def _rare_weights(noisy: FloatArray, sigma: float) -> FloatArray:
    """Return how a column's rare-value bucket is shared out among its values when sampling.

    The bucket holds the values whose noisy count was under three noise deviations, most of
    them (for a schema domain of 250 countries) values no record has. Sharing by the clipped
    noisy counts would hand most of the bucket to such values; so only values whose noisy count
    clears two deviations (about 2% of empty values do, by noise alone) take a share, in
    proportion to it, and the bucket is shared by clipped counts only when none does.

    :param noisy: the noisy 1-way counts of the bucket's values.
    :param sigma: the noise deviation of those counts.

    >>> _rare_weights(np.array([5.0, -1.0, 0.5, 3.0]), 1.0).round(3).tolist()
    [0.625, 0.0, 0.0, 0.375]
    >>> _rare_weights(np.array([1.0, -1.0, 0.0, 1.0]), 1.0).round(3).tolist()
    [0.5, 0.0, 0.0, 0.5]
    """
    if noisy.size == 0:
        return noisy.astype(np.float64)
    weights = np.where(noisy > 2 * sigma, noisy, 0.0)
    if weights.sum() <= 0:
        weights = np.clip(noisy, 0, None)
    weights = weights + 1e-12
    return np.asarray(weights / weights.sum(), dtype=np.float64)


@dataclass(frozen=True)
class _Compressed:
    """One column's domain compression, decided from its released 1-way counts alone."""

    lookup: IntMatrix  # schema code -> compressed code
    kept: IntMatrix  # schema codes with a compressed code of their own
    rare: IntMatrix  # schema codes sharing the last compressed code (the bucket)
    weights: FloatArray  # how a drawn bucket is shared among the rare codes
    prior: FloatArray  # the column's distribution over compressed codes

    @property
    def size(self) -> int:
        """Return the number of compressed codes."""
        return len(self.kept) + (1 if self.rare.size else 0)


def _compress(counts: FloatArray, sigma: float, n_hat: float) -> _Compressed:
    """Compress a column's domain from its noisy 1-way counts (post-processing only).

    Values counted at three noise deviations or more keep a code of their own; the others
    share one bucket code. When the bucket's noisy counts add up to no more than their noise
    (twice its deviation), as for a boolean's "false" where records say only "true" or
    nothing, its values are treated as absent: no code of their own, never drawn, and a record
    that has one is counted with the most frequent value. The bucket's mass is what the kept
    values leave of the record count: summing its values' own noisy counts would add the noise
    of every (mostly empty) schema value, and clipping them first 0.4 deviations each.

    :param counts: the column's noisy 1-way counts, one per schema code.
    :param sigma: their noise deviation.
    :param n_hat: the estimated number of records.

    >>> c = _compress(np.array([900.0, 1.0, -2.0, 500.0]), 10.0, 1400.0)
    >>> c.kept.tolist(), c.rare.tolist(), c.lookup.tolist()
    ([0, 3], [], [0, 0, 0, 1])
    >>> c = _compress(np.array([900.0, 25.0, 20.0, 500.0]), 10.0, 1450.0)
    >>> c.kept.tolist(), c.rare.tolist(), c.lookup.tolist(), c.prior.round(3).tolist()
    ([0, 3], [1, 2], [0, 2, 2, 1], [0.621, 0.345, 0.034])
    """
    kept = np.flatnonzero(counts >= 3 * sigma)
    if kept.size == 0:
        kept = np.array([int(np.argmax(counts))])
    rare = np.setdiff1d(np.arange(counts.size), kept)
    lookup = np.full(counts.size, len(kept), dtype=np.int64)
    if rare.size and counts[rare].sum() < 2 * sigma * sqrt(rare.size):
        lookup[rare] = int(np.argmax(counts[kept]))
        rare = rare[:0]
    lookup[kept] = np.arange(len(kept))
    clipped = np.clip(counts, 0, None)
    bucket = [max(n_hat - float(clipped[kept].sum()), 0.0)] if rare.size else []
    prior = np.append(clipped[kept], bucket) + 1e-9
    return _Compressed(
        lookup=lookup,
        kept=kept.astype(np.int64),
        rare=rare.astype(np.int64),
        weights=_rare_weights(counts[rare], sigma),
        prior=np.asarray(prior / prior.sum(), dtype=np.float64),
    )


def _draw_compressed(
    factors: Sequence[_Factor], sizes: Sequence[int], n_records: int, rng: np.random.Generator
) -> IntMatrix:
    """Draw records in compressed codes from a Bayesian network's factors, in their order."""
    compressed = np.zeros((n_records, len(sizes)), dtype=np.int64)
    for factor in factors:
        config = _cells(compressed, factor.parents, sizes)
        cdf = np.cumsum(factor.table, axis=1)
        cdf[:, -1] = 1.0
        u = rng.random(n_records)
        drawn = np.empty(n_records, dtype=np.int64)
        for start in range(0, n_records, 65536):
            part = slice(start, start + 65536)
            drawn[part] = (cdf[config[part]] < u[part, None]).sum(axis=1)
        compressed[:, factor.child] = drawn
    return compressed


#: Records drawn to read the network's marginals while raking, and rounds of raking.
RAKE_DRAW = 100_000
RAKE_ROUNDS = 3


def _rake(
    factors: list[_Factor],
    sizes: Sequence[int],
    measured: Sequence[FloatArray],
    measured_var: Sequence[float],
    model_var: Sequence[float],
) -> list[_Factor]:
    """Rescale each factor so its column's marginal moves to a combined estimate (post-processing).

    A column's marginal as the network draws it sums its noisy marginal over every parent
    configuration, so its noise grows with their number; the column's own 1-way measurement
    has one cell's noise. Each round draws records from the network (seeded: deterministic),
    reads every column's marginal, combines it with the measured one by inverse variance (per
    cell, in counts), and multiplies the factor's columns by target / drawn, renormalising rows.

    :param factors: the network, in sampling order.
    :param sizes: every column's number of compressed codes.
    :param measured: every column's measured 1-way distribution (compressed).
    :param measured_var: the noise variance of one measured count, per column.
    :param model_var: the noise variance of the network's marginal, in counts, per factor.
    """
    rng = np.random.default_rng(0)
    raked = [_Factor(f.child, f.parents, f.table.copy()) for f in factors]
    for _ in range(RAKE_ROUNDS):
        drawn = _draw_compressed(raked, sizes, RAKE_DRAW, rng)
        for position, factor in enumerate(raked):
            j = factor.child
            current = np.bincount(drawn[:, j], minlength=sizes[j]) / RAKE_DRAW
            w_model = 1.0 / model_var[position]
            w_measured = 1.0 / measured_var[j]
            target = (w_model * current + w_measured * measured[j]) / (w_model + w_measured)
            ratio = np.where(current > 0, target / np.maximum(current, 1e-300), 1.0)
            table = factor.table * ratio[None, :]
            sums = table.sum(axis=1, keepdims=True)
            factor.table = np.where(sums > 0, table / np.where(sums > 0, sums, 1.0), factor.table)
    return raked
