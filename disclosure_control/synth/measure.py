"""The synthesizer's access to the real records: OpenDP transformations and measurements.

Every access to the real records is an OpenDP measurement inside one OpenDP adaptive
composition under rho-zCDP (:class:`Measurements`), so a run's privacy loss is OpenDP's figure.
The noise (``make_gaussian``, ``make_noisy_max``), the counting (``make_count_by_categories``
with its L2 sensitivity) and the composition are OpenDP's own. The record-to-cell map
(:func:`marginal_cells`) and the selection scores (:mod:`disclosure_control.synth.scores`) are
user transformations, under OpenDP's "honest-but-curious" flag; each states its stability and
property tests check it on neighbouring record sets (``tests/synth/test_stability.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import prod
from typing import Any

import numpy as np
import numpy.typing as npt
import opendp.prelude as dp

from disclosure_control.dp.accounting import ItemisedSpend, PrivacySpend
from disclosure_control.dp.calibrate import scale_for_loss
from disclosure_control.synth.domain import IntMatrix

# User transformations (record codes -> cells, records -> selection scores) need this flag;
# their stability is argued in each function's docstring and checked by property tests.
dp.enable_features("contrib", "honest-but-curious")

#: ``progress(stage, done, total)``: called as the run advances.
ProgressCallback = Callable[[str, int, int], None]


def ignore_progress(stage: str, done: int, total: int) -> None:
    """Discard a progress report."""


def loss(measurement: dp.Measurement, d_in: Any = 1) -> float:
    """Return OpenDP's privacy loss of a measurement at an input distance."""
    return float(measurement.map(d_in))  # type: ignore[no-untyped-call]  # opendp is untyped


def calibrated(make: Callable[[float], dp.Measurement], rho: float) -> dp.Measurement:
    """Return the measurement built with the smallest scale whose loss on neighbours is rho.

    The scale comes from :func:`disclosure_control.dp.calibrate.scale_for_loss`, the one
    bounded calibration the query path uses too.
    """
    return make(scale_for_loss(lambda scale: loss(make(scale)), rho))


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
) -> npt.NDArray[np.int32]:
    """Return each record's cell of the marginal over some columns, in compressed codes.

    Each record's cell depends on that record alone, so adding or removing records adds or
    removes as many cells: the map is 1-stable in the symmetric distance.

    :param matrix: encoded records.
    :param columns: the marginal's columns (first column slowest in the cell number).
    :param lookups: per column, the compressed code of each schema code.

    >>> marginal_cells(np.array([[0, 2], [1, 0]]), [0, 1], [np.arange(2), np.arange(3)])
    array([2, 3], dtype=int32)
    """
    cells = np.zeros(len(matrix), dtype=np.int64)
    for j in columns:
        cells = cells * (int(lookups[j].max()) + 1) + lookups[j][matrix[:, j]]
    # A numpy vector of OpenDP's integer type crosses into OpenDP in one copy; a list of
    # Python ints is checked one by one (measured: most of a fit's time).
    return cells.astype(np.int32)


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


def count_measurement(
    records_domain: dp.Domain, columns: Sequence[int], lookups: Sequence[IntMatrix], rho: float
) -> dp.Measurement:
    """Return the Gaussian measurement of one marginal's counts, spending ``rho``.

    :param records_domain: the domain of encoded records.
    :param columns: the marginal's columns.
    :param lookups: per column, the compressed code of each schema code.
    :param rho: the measurement's zCDP loss on neighbouring record sets.
    """
    counts = make_marginal_counts(records_domain, columns, lookups)
    return calibrated(lambda scale: counts >> dp.m.then_gaussian(scale=scale), rho)


def selection_measurement(
    records_domain: dp.Domain,
    score: Callable[[IntMatrix], list[float]],
    rho: float,
    sensitivity: float = 1.0,
) -> dp.Measurement:
    """Return the noisy-max measurement choosing the best-scoring candidate, spending ``rho``.

    :param records_domain: the domain of encoded records.
    :param score: the scores of a record matrix, one per candidate.
    :param rho: the measurement's zCDP loss on neighbouring record sets.
    :param sensitivity: the most one record added or removed moves any score.
    """
    scores = make_score_transformation(records_domain, score, sensitivity)
    return calibrated(
        lambda scale: scores >> dp.m.then_noisy_max(dp.zero_concentrated_divergence(), scale),
        rho,
    )


def _constant_score(matrix: IntMatrix) -> list[float]:
    """Score one candidate at zero: a probe of what a noisy max at some scale loses."""
    return [0.0]


class Measurements:
    """One run's adaptive composition over the records, and its account of what it spent.

    A measurement's loss depends only on its noise scale and sensitivity, so each round's loss
    is stated to the composition in advance by a probe built exactly as that round's own
    measurement will be; then every release is checked by OpenDP against its stated loss.

    :param data: the encoded records (frozen here, so score caches can tell them apart).
    :param rounds: per kind of measurement, ``(how many, rho of each, sensitivity)``; a count
        when the sensitivity is None, a noisy max otherwise; in the order they will be made.
    :param progress: called with ``("measure", done, total)`` after every release.
    :param unit_distance: the records one privacy unit adds or removes: 1 for a case record,
        ``c`` for a person whose records were bounded to ``c`` before the run. Rounds are
        calibrated and stated per record (``round_losses``); OpenDP's composition, the ledger
        and :meth:`spend` state the loss at this distance, for one unit.
    """

    def __init__(
        self,
        data: IntMatrix,
        rounds: Sequence[tuple[int, float, float | None]],
        progress: ProgressCallback,
        unit_distance: int = 1,
    ) -> None:
        """Open the composition over ``data``."""
        self.records_domain = encoded_records_domain(data.shape[1])
        identity = [np.arange(2, dtype=np.int64)] * data.shape[1]
        probes: dict[tuple[float, float | None], tuple[float, float]] = {}
        per_record: list[float] = []
        d_mids: list[float] = []
        for count, rho, sensitivity in rounds:
            if count <= 0:
                continue
            if (rho, sensitivity) not in probes:
                probe = (
                    count_measurement(self.records_domain, [0], identity, rho)
                    if sensitivity is None
                    else selection_measurement(
                        self.records_domain, _constant_score, rho, sensitivity
                    )
                )
                probes[rho, sensitivity] = (loss(probe), loss(probe, unit_distance))
            per_record += [probes[rho, sensitivity][0]] * count
            d_mids += [probes[rho, sensitivity][1]] * count
        self.round_losses = per_record
        self.unit_distance = unit_distance
        composition = dp.c.make_adaptive_composition(
            self.records_domain,
            dp.symmetric_distance(),
            dp.zero_concentrated_divergence(),
            d_in=unit_distance,
            d_mids=d_mids,
        )
        self._composition = composition
        # Frozen, so the score cache can tell this exact matrix from any other.
        data.setflags(write=False)
        self._queryable = composition(data)
        self._progress = progress
        self.ledger: list[tuple[str, PrivacySpend]] = []

    def release(self, label: str, measurement: dp.Measurement) -> Any:
        """Release one measurement through the composition, recording its loss."""
        self.ledger.append((label, PrivacySpend(loss(measurement, self.unit_distance))))
        answer = self._queryable(measurement)
        self._progress("measure", len(self.ledger), len(self.round_losses))
        return answer

    def counts(
        self, label: str, columns: Sequence[int], lookups: Sequence[IntMatrix], rho: float
    ) -> npt.NDArray[np.float64]:
        """Release one marginal's noisy counts (flat, first column slowest)."""
        measurement = count_measurement(self.records_domain, columns, lookups, rho)
        return np.asarray(self.release(label, measurement), dtype=np.float64)

    def select(
        self,
        label: str,
        score: Callable[[IntMatrix], list[float]],
        rho: float,
        sensitivity: float = 1.0,
    ) -> int:
        """Release the index of the candidate a noisy max over ``score`` picks."""
        measurement = selection_measurement(self.records_domain, score, rho, sensitivity)
        return int(self.release(label, measurement))

    def spend(self, display_delta: float) -> ItemisedSpend:
        """Return what the run spent, as OpenDP's composition states it."""
        return ItemisedSpend(
            PrivacySpend(loss(self._composition, self.unit_distance)),
            display_delta,
            tuple(self.ledger),
        )
