"""Privacy measures of microdata: k-anonymity, l-diversity, t-closeness, re-identification risk.

Every measure groups the case records into equivalence classes (records sharing all
quasi-identifier values; a missing value is a value of its own) once, with integer codes, so a
measure costs about one group-by of the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from disclosure_control.sdc._groups import IntArray, class_ids, column_codes

FloatArray = npt.NDArray[np.float64]
Diversity = Literal["distinct", "entropy"]


def class_sizes(frame: pd.DataFrame, quasi_identifiers: Sequence[str]) -> IntArray:
    """Return, for every record, the size of its equivalence class.

    :param frame: the case records.
    :param quasi_identifiers: the columns an attacker may know.

    >>> frame = pd.DataFrame({"g": ["F", "F", "M"], "a": ["1", "1", ""]})
    >>> class_sizes(frame, ["g", "a"]).tolist()
    [2, 2, 1]
    """
    ids, sizes = class_ids(frame, quasi_identifiers)
    return sizes[ids]


def k_anonymity(frame: pd.DataFrame, quasi_identifiers: Sequence[str]) -> int:
    """Return the size of the smallest equivalence class (0 for no records).

    :param frame: the case records.
    :param quasi_identifiers: the columns an attacker may know.

    >>> k_anonymity(pd.DataFrame({"g": ["F", "F", "M", "M"]}), ["g"])
    2
    """
    if len(frame) == 0:
        return 0
    _, sizes = class_ids(frame, quasi_identifiers)
    return int(sizes.min())


def _class_value_counts(
    ids: IntArray, n_classes: int, sensitive: pd.Series
) -> tuple[IntArray, IntArray, IntArray, int]:
    """Return (class, value, count) triples of a sensitive attribute, and its number of values."""
    values, n_values = column_codes(sensitive)
    pair = ids * n_values + values
    uniques, counts = np.unique(pair, return_counts=True)
    return uniques // n_values, uniques % n_values, counts.astype(np.int64), n_values


def class_diversity(
    ids: IntArray, n_classes: int, sensitive: pd.Series, kind: Diversity = "distinct"
) -> FloatArray:
    """Return the diversity of every class: distinct values, or exp(entropy) for ``entropy``.

    :param ids: each record's class id (dense, ``0 .. n_classes - 1``).
    :param n_classes: number of classes.
    :param sensitive: the sensitive attribute (a missing value counts as a value).
    :param kind: ``distinct`` (number of values) or ``entropy`` (the largest l with entropy
        at least log l).
    """
    classes, _, counts, _ = _class_value_counts(ids, n_classes, sensitive)
    if kind == "distinct":
        return np.bincount(classes, minlength=n_classes).astype(np.float64)
    if kind != "entropy":
        raise ValueError(f"unknown l-diversity kind {kind!r}: use 'distinct' or 'entropy'")
    totals = np.bincount(classes, weights=counts, minlength=n_classes)
    share = counts / totals[classes]
    entropy = np.bincount(classes, weights=-share * np.log(share), minlength=n_classes)
    return np.asarray(np.exp(entropy), dtype=np.float64)


def l_diversity(
    frame: pd.DataFrame,
    quasi_identifiers: Sequence[str],
    sensitive: str,
    kind: Diversity = "distinct",
) -> float:
    """Return the l for which the records are l-diverse (the least diverse class decides).

    :param frame: the case records.
    :param quasi_identifiers: the columns an attacker may know.
    :param sensitive: the sensitive attribute.
    :param kind: ``distinct`` or ``entropy`` l-diversity.

    >>> frame = pd.DataFrame({"g": ["F", "F", "M", "M"], "s": ["a", "b", "a", "a"]})
    >>> l_diversity(frame, ["g"], "s")
    1.0
    >>> round(l_diversity(frame.iloc[:2], ["g"], "s", "entropy"), 6)
    2.0
    """
    if len(frame) == 0:
        return 0.0
    ids, sizes = class_ids(frame, quasi_identifiers)
    return float(class_diversity(ids, len(sizes), frame[sensitive], kind).min())


def class_distance(
    ids: IntArray, n_classes: int, sensitive: pd.Series, order: Sequence[str] | None = None
) -> FloatArray:
    """Return every class's earth mover's distance to the whole data's sensitive distribution.

    :param ids: each record's class id.
    :param n_classes: number of classes.
    :param sensitive: the sensitive attribute.
    :param order: for an ordinal attribute, its values in order (the distance then is the
        ordered EMD, normalised by the number of steps); ``None`` treats all values as equally
        far apart (the EMD is then the total variation distance).
    """
    if order is None:
        classes, values, counts, n_values = _class_value_counts(ids, n_classes, sensitive)
    else:
        codes = np.asarray(pd.Categorical(sensitive, categories=list(order)).codes, np.int64)
        if (codes < 0).any():
            bad = sensitive.iloc[int(np.flatnonzero(codes < 0)[0])]
            raise ValueError(f"sensitive value {bad!r} is not in the given order")
        n_values = len(order)
        uniques, counts = np.unique(ids * n_values + codes, return_counts=True)
        classes, values = uniques // n_values, uniques % n_values
    table = np.zeros((n_classes, n_values))
    table[classes, values] = counts
    overall = table.sum(axis=0) / table.sum()
    share = table / table.sum(axis=1, keepdims=True)
    if order is None:
        return np.asarray(0.5 * np.abs(share - overall).sum(axis=1), dtype=np.float64)
    steps = max(n_values - 1, 1)
    cumulative = np.cumsum(share - overall, axis=1)
    return np.asarray(np.abs(cumulative).sum(axis=1) / steps, dtype=np.float64)


def t_closeness(
    frame: pd.DataFrame,
    quasi_identifiers: Sequence[str],
    sensitive: str,
    order: Sequence[str] | None = None,
) -> float:
    """Return the t for which the records are t-close (the farthest class decides).

    :param frame: the case records.
    :param quasi_identifiers: the columns an attacker may know.
    :param sensitive: the sensitive attribute.
    :param order: values of an ordinal attribute in order, or ``None`` for a nominal one.

    >>> frame = pd.DataFrame({"g": ["F", "F", "M", "M"], "s": ["a", "b", "a", "a"]})
    >>> t_closeness(frame, ["g"], "s")
    0.25
    """
    if len(frame) == 0:
        return 0.0
    ids, sizes = class_ids(frame, quasi_identifiers)
    return float(class_distance(ids, len(sizes), frame[sensitive], order).max())


@dataclass(frozen=True)
class RiskSummary:
    """Record-level re-identification risk under one attacker model.

    :param highest: the largest record risk.
    :param average: the mean record risk (the expected share of records re-identified).
    :param share_above: share of records whose risk exceeds the threshold.
    :param threshold: the threshold used for ``share_above``.
    """

    highest: float
    average: float
    share_above: float
    threshold: float


@dataclass(frozen=True)
class RiskReport:
    """Re-identification risk under the prosecutor, journalist and marketer models.

    :param prosecutor: the attacker knows the target is in the release (risk 1 / class size).
    :param journalist: the attacker picks a target from the population (risk 1 / population
        class size); equal to the prosecutor's when no population is given.
    :param marketer: expected share of records re-identified when matching everyone.
    :param sample_uniques: records alone in their class in the release.
    :param population_uniques: records alone in their class in the population.
    """

    prosecutor: RiskSummary
    journalist: RiskSummary
    marketer: float
    sample_uniques: int
    population_uniques: int


def _summary(record_risk: FloatArray, threshold: float) -> RiskSummary:
    """Summarise a vector of record risks."""
    if record_risk.size == 0:
        return RiskSummary(0.0, 0.0, 0.0, threshold)
    return RiskSummary(
        highest=float(record_risk.max()),
        average=float(record_risk.mean()),
        share_above=float((record_risk > threshold).mean()),
        threshold=threshold,
    )


def risk_from_sizes(
    sample_sizes: IntArray, population_sizes: IntArray | None = None, threshold: float = 0.2
) -> RiskReport:
    """Return the risk report from each record's sample (and population) class size.

    :param sample_sizes: per record, the size of its class in the release.
    :param population_sizes: per record, the size of its class in the population, or ``None``.
    :param threshold: record risk above which a record counts as at risk.

    >>> r = risk_from_sizes(np.array([1, 2, 2]))
    >>> r.prosecutor.highest, round(r.marketer, 4), r.sample_uniques
    (1.0, 0.6667, 1)
    """
    prosecutor = 1.0 / sample_sizes.astype(np.float64)
    population = sample_sizes if population_sizes is None else population_sizes
    if population_sizes is not None and (population_sizes < sample_sizes).any():
        row = int(np.flatnonzero(population_sizes < sample_sizes)[0])
        raise ValueError(
            f"record {row}: its class is larger in the release ({sample_sizes[row]}) than in "
            f"the population ({population_sizes[row]}); the population must contain the release"
        )
    journalist = 1.0 / population.astype(np.float64)
    return RiskReport(
        prosecutor=_summary(prosecutor, threshold),
        journalist=_summary(journalist, threshold),
        marketer=float(journalist.mean()) if journalist.size else 0.0,
        sample_uniques=int((sample_sizes == 1).sum()),
        population_uniques=int((population == 1).sum()),
    )


def reidentification_risk(
    frame: pd.DataFrame,
    quasi_identifiers: Sequence[str],
    threshold: float = 0.2,
    population: pd.DataFrame | None = None,
) -> RiskReport:
    """Return the re-identification risk of the records under the three attacker models.

    :param frame: the released case records.
    :param quasi_identifiers: the columns an attacker may know.
    :param threshold: record risk above which a record counts as at risk (0.2 = class under 5).
    :param population: the records the release was drawn from (same quasi-identifiers, same
        coding), for the journalist and marketer models; ``None`` takes the release itself.
    :raises ValueError: if a released class does not occur in the population.

    >>> frame = pd.DataFrame({"g": ["F", "F", "M"]})
    >>> reidentification_risk(frame, ["g"], threshold=0.6).prosecutor.share_above
    0.3333333333333333
    """
    ids, sizes = class_ids(frame, quasi_identifiers)
    sample = sizes[ids]
    if population is None:
        return risk_from_sizes(sample, None, threshold)
    both = pd.concat(
        [frame[list(quasi_identifiers)], population[list(quasi_identifiers)]], ignore_index=True
    )
    joint_ids, _ = class_ids(both, quasi_identifiers)
    population_counts = np.bincount(joint_ids[len(frame) :], minlength=joint_ids.max() + 1)
    population_sizes = population_counts[joint_ids[: len(frame)]].astype(np.int64)
    if (population_sizes == 0).any():
        row = int(np.flatnonzero(population_sizes == 0)[0])
        raise ValueError(
            f"record {frame.index[row]}: its quasi-identifier values do not occur in the population"
        )
    return risk_from_sizes(sample, population_sizes, threshold)


@dataclass(frozen=True)
class Measures:
    """All privacy measures of one set of case records.

    :param records: number of records.
    :param classes: number of equivalence classes.
    :param k: size of the smallest class (0 for no records).
    :param l_distinct: distinct l-diversity of the sensitive attribute (``None`` without one).
    :param l_entropy: entropy l-diversity (``None`` without a sensitive attribute).
    :param t: t-closeness (``None`` without a sensitive attribute).
    :param risk: re-identification risk.
    """

    records: int
    classes: int
    k: int
    l_distinct: float | None
    l_entropy: float | None
    t: float | None
    risk: RiskReport


def measure(
    frame: pd.DataFrame,
    quasi_identifiers: Sequence[str],
    sensitive: str | None = None,
    threshold: float = 0.2,
) -> Measures:
    """Return every measure at once, grouping the records only once.

    :param frame: the case records.
    :param quasi_identifiers: the columns an attacker may know.
    :param sensitive: the sensitive attribute for l-diversity and t-closeness, if any.
    :param threshold: record-risk threshold of the risk report.

    >>> frame = pd.DataFrame({"g": ["F", "F", "M", "M"], "s": ["a", "b", "a", "b"]})
    >>> m = measure(frame, ["g"], "s")
    >>> m.k, m.l_distinct, m.t, m.risk.prosecutor.highest
    (2, 2.0, 0.0, 0.5)
    """
    ids, sizes = class_ids(frame, quasi_identifiers)
    n_classes = len(sizes)
    empty = len(frame) == 0
    l_distinct = l_entropy = t = None
    if sensitive is not None:
        column = frame[sensitive]
        l_distinct = 0.0 if empty else float(class_diversity(ids, n_classes, column).min())
        l_entropy = (
            0.0 if empty else float(class_diversity(ids, n_classes, column, "entropy").min())
        )
        t = 0.0 if empty else float(class_distance(ids, n_classes, column).max())
    return Measures(
        records=len(frame),
        classes=int((sizes > 0).sum()),
        k=0 if empty else int(sizes.min()),
        l_distinct=l_distinct,
        l_entropy=l_entropy,
        t=t,
        risk=risk_from_sizes(sizes[ids], None, threshold),
    )
