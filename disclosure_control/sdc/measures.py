"""Privacy measures of microdata: k-anonymity, l-diversity, t-closeness, re-identification risk.

Every measure groups the case records into equivalence classes (records sharing all
quasi-identifier values; a missing value is a value of its own) once, with integer codes, so a
measure costs about one group-by of the data. l-diversity comes in three kinds (distinct,
entropy, recursive (c, l)) and is measured for every sensitive attribute named, each on its own:
an intruder who finds a victim's class reads every attribute off it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from disclosure_control.sdc._groups import IntArray, class_ids, column_codes

FloatArray = npt.NDArray[np.float64]
#: Kinds of l-diversity: distinct values, entropy, and recursive (c, l)-diversity.
Diversity = Literal["distinct", "entropy", "recursive"]


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


def sensitive_attributes(sensitive: str | Sequence[str] | None) -> tuple[str, ...]:
    """Return the sensitive attributes named, as a tuple (one name, several, or none).

    >>> sensitive_attributes("isForcedLabour"), sensitive_attributes(None)
    (('isForcedLabour',), ())
    """
    if sensitive is None:
        return ()
    names = (sensitive,) if isinstance(sensitive, str) else tuple(sensitive)
    if any(not isinstance(n, str) or not n for n in names):
        raise ValueError(f"sensitive attributes must be non-empty column names, got {names!r}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"sensitive attribute(s) {repeated} named more than once")
    return names


def _class_value_counts(
    ids: IntArray, n_classes: int, sensitive: pd.Series
) -> tuple[IntArray, IntArray, IntArray, int]:
    """Return (class, value, count) triples of a sensitive attribute, and its number of values."""
    values, n_values = column_codes(sensitive)
    pair = ids * n_values + values
    uniques, counts = np.unique(pair, return_counts=True)
    return uniques // n_values, uniques % n_values, counts.astype(np.int64), n_values


def diversity(
    classes: IntArray,
    counts: npt.NDArray[np.floating[Any]] | IntArray,
    n_classes: int,
    kind: Literal["distinct", "entropy"],
) -> FloatArray:
    """Return every class's diversity from its (class, count) pairs, one pair per value present.

    :param classes: class of each pair.
    :param counts: records of the pair (may be weights).
    :param n_classes: number of classes.
    :param kind: ``distinct`` (number of values) or ``entropy`` (exp of the entropy: the largest
        l with entropy at least log l).
    """
    if kind == "distinct":
        return np.bincount(classes, minlength=n_classes).astype(np.float64)
    if kind != "entropy":
        raise ValueError(f"unknown l-diversity kind {kind!r}: use 'distinct' or 'entropy'")
    totals = np.bincount(classes, weights=counts, minlength=n_classes)
    share = counts / totals[classes]
    entropy = np.bincount(classes, weights=-share * np.log(share), minlength=n_classes)
    return np.asarray(np.exp(entropy), dtype=np.float64)


def recursive_ratio(
    classes: IntArray,
    counts: npt.NDArray[np.floating[Any]] | IntArray,
    n_classes: int,
    l: int,  # noqa: E741 - the privacy model is called (c, l)-diversity
) -> FloatArray:
    """Return every class's r1 / (r_l + ... + r_m), the bound recursive (c, l)-diversity puts on c.

    With a class's value counts sorted r1 >= r2 >= ... >= rm, the class is recursive
    (c, l)-diverse (Machanavajjhala et al. 2007) when r1 < c (r_l + ... + r_m): the most common
    value is not overwhelming even after the l - 2 next ones are taken away. The class is
    (c, l)-diverse for every c above the returned ratio; a class with fewer than l values has
    ratio ``inf`` (no c will do). An empty class has ratio 0.

    >>> recursive_ratio(np.array([0, 0, 1, 1, 1]), np.array([8, 2, 5, 3, 2]), 2, 2).tolist()
    [4.0, 1.0]
    """
    if l < 1:
        raise ValueError(f"recursive (c, l)-diversity needs l >= 1, got {l}")
    counts = np.asarray(counts, dtype=np.float64)
    order = np.lexsort((-counts, classes))
    ranked_classes, ranked = classes[order], counts[order]
    starts = np.searchsorted(ranked_classes, ranked_classes, side="left")
    rank = np.arange(len(ranked)) - starts
    largest = np.zeros(n_classes)
    largest[ranked_classes[rank == 0]] = ranked[rank == 0]
    tail = np.bincount(
        ranked_classes, weights=np.where(rank >= l - 1, ranked, 0.0), minlength=n_classes
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(tail > 0, largest / np.where(tail > 0, tail, 1.0), np.inf)
    return np.asarray(np.where(largest > 0, ratio, 0.0), dtype=np.float64)


def largest_share(
    classes: IntArray, counts: npt.NDArray[np.floating[Any]] | IntArray, n_classes: int
) -> FloatArray:
    """Return, per class, the share of its records holding its most common value.

    It is what an intruder who finds a victim's class guesses right with the best guess.
    """
    counts = np.asarray(counts, dtype=np.float64)
    totals = np.bincount(classes, weights=counts, minlength=n_classes)
    most = np.zeros(n_classes)
    np.maximum.at(most, classes, counts)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(totals > 0, most / np.where(totals > 0, totals, 1.0), 0.0))


def class_diversity(
    ids: IntArray,
    n_classes: int,
    sensitive: pd.Series,
    kind: Diversity = "distinct",
    l: int = 2,  # noqa: E741
) -> FloatArray:
    """Return the diversity of every class: distinct values, exp(entropy), or the recursive ratio.

    :param ids: each record's class id (dense, ``0 .. n_classes - 1``).
    :param n_classes: number of classes.
    :param sensitive: the sensitive attribute (a missing value counts as a value).
    :param kind: ``distinct`` (number of values), ``entropy`` (the largest l with entropy
        at least log l) or ``recursive`` (:func:`recursive_ratio`, the least c at ``l``: lower
        is more diverse).
    :param l: the l of the recursive ratio.
    """
    classes, _, counts, _ = _class_value_counts(ids, n_classes, sensitive)
    if kind == "recursive":
        return recursive_ratio(classes, counts, n_classes, l)
    return diversity(classes, counts, n_classes, kind)


def l_diversity(
    frame: pd.DataFrame,
    quasi_identifiers: Sequence[str],
    sensitive: str,
    kind: Literal["distinct", "entropy"] = "distinct",
) -> float:
    """Return the l for which the records are l-diverse (the least diverse class decides).

    :param frame: the case records.
    :param quasi_identifiers: the columns an attacker may know.
    :param sensitive: the sensitive attribute.
    :param kind: ``distinct`` or ``entropy`` l-diversity (for recursive (c, l)-diversity see
        :func:`recursive_diversity`).

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


def recursive_diversity(
    frame: pd.DataFrame,
    quasi_identifiers: Sequence[str],
    sensitive: str,
    l: int = 2,  # noqa: E741 - the privacy model is called (c, l)-diversity
) -> float:
    """Return the c at which the records are recursive (c, l)-diverse: any larger c holds.

    :param frame: the case records.
    :param quasi_identifiers: the columns an attacker may know.
    :param sensitive: the sensitive attribute.
    :param l: the l of the model.

    >>> frame = pd.DataFrame({"g": ["F"] * 4 + ["M"] * 2, "s": ["a", "a", "a", "b", "a", "b"]})
    >>> recursive_diversity(frame, ["g"], "s", 2)
    3.0
    >>> recursive_diversity(frame, ["g"], "s", 3)
    inf
    """
    if len(frame) == 0:
        return 0.0
    ids, sizes = class_ids(frame, quasi_identifiers)
    return float(class_diversity(ids, len(sizes), frame[sensitive], "recursive", l).max())


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
class SensitiveMeasures:
    """How well the classes of a release hide one sensitive attribute.

    :param attribute: the sensitive attribute.
    :param l_distinct: distinct l-diversity (values in the least diverse class).
    :param l_entropy: entropy l-diversity.
    :param recursive_l: the l at which recursive (c, l)-diversity is measured.
    :param recursive_c: the c at which the records are recursive (c, ``recursive_l``)-diverse
        (any larger c holds; ``inf`` when a class has fewer than ``recursive_l`` values).
    :param t: t-closeness (total variation distance to the whole data's distribution).
    :param largest_share: the highest share of one value in any class (the intruder's best
        guess inside the worst class is right this often).
    :param dominance: the share at which a class counts as dominated by one value.
    :param dominated_classes: classes where one value holds at least ``dominance`` of records.
    :param dominated_records: records in those classes.
    """

    attribute: str
    l_distinct: float
    l_entropy: float
    recursive_l: int
    recursive_c: float
    t: float
    largest_share: float
    dominance: float
    dominated_classes: int
    dominated_records: int


def _sensitive_measures(
    ids: IntArray,
    sizes: IntArray,
    column: pd.Series,
    recursive_l: int,
    dominance: float,
) -> SensitiveMeasures:
    """Return the measures of one sensitive attribute over classes already formed."""
    n_classes = len(sizes)
    attribute = str(column.name)
    if len(column) == 0:
        return SensitiveMeasures(attribute, 0.0, 0.0, recursive_l, 0.0, 0.0, 0.0, dominance, 0, 0)
    classes, _, counts, _ = _class_value_counts(ids, n_classes, column)
    share = largest_share(classes, counts, n_classes)
    dominated = (share >= dominance - 1e-12) & (sizes > 0)
    return SensitiveMeasures(
        attribute=attribute,
        l_distinct=float(diversity(classes, counts, n_classes, "distinct").min()),
        l_entropy=float(diversity(classes, counts, n_classes, "entropy").min()),
        recursive_l=recursive_l,
        recursive_c=float(recursive_ratio(classes, counts, n_classes, recursive_l).max()),
        t=float(class_distance(ids, n_classes, column).max()),
        largest_share=float(share.max()),
        dominance=dominance,
        dominated_classes=int(dominated.sum()),
        dominated_records=int(sizes[dominated].sum()),
    )


@dataclass(frozen=True)
class Measures:
    """All privacy measures of one set of case records.

    :param records: number of records.
    :param classes: number of equivalence classes.
    :param k: size of the smallest class (0 for no records).
    :param l_distinct: distinct l-diversity, the least over the sensitive attributes (``None``
        without one).
    :param l_entropy: entropy l-diversity, the least over the sensitive attributes.
    :param t: t-closeness, the largest over the sensitive attributes.
    :param risk: re-identification risk.
    :param sensitive: the measures of every sensitive attribute named, in the order named.
    """

    records: int
    classes: int
    k: int
    l_distinct: float | None
    l_entropy: float | None
    t: float | None
    risk: RiskReport
    sensitive: tuple[SensitiveMeasures, ...] = ()

    def of(self, attribute: str) -> SensitiveMeasures:
        """Return the measures of one sensitive attribute.

        :raises KeyError: if the attribute was not measured.
        """
        for entry in self.sensitive:
            if entry.attribute == attribute:
                return entry
        raise KeyError(f"{attribute!r} was not measured as a sensitive attribute")


def measure(
    frame: pd.DataFrame,
    quasi_identifiers: Sequence[str],
    sensitive: str | Sequence[str] | None = None,
    threshold: float = 0.2,
    recursive_l: int = 2,
    dominance: float = 0.95,
) -> Measures:
    """Return every measure at once, grouping the records only once.

    :param frame: the case records.
    :param quasi_identifiers: the columns an attacker may know.
    :param sensitive: the sensitive attribute(s) for l-diversity and t-closeness, if any: each
        is measured on its own (an intruder learns each one from the class).
    :param threshold: record-risk threshold of the risk report.
    :param recursive_l: the l at which the recursive (c, l)-diversity c is measured.
    :param dominance: share of one value at which a class counts as dominated.
    :raises KeyError: naming sensitive attributes the frame lacks.

    >>> frame = pd.DataFrame({"g": ["F", "F", "M", "M"], "s": ["a", "b", "a", "b"]})
    >>> m = measure(frame, ["g"], "s")
    >>> m.k, m.l_distinct, m.t, m.risk.prosecutor.highest
    (2, 2.0, 0.0, 0.5)
    """
    names = sensitive_attributes(sensitive)
    absent = [name for name in names if name not in frame.columns]
    if absent:
        raise KeyError(f"sensitive attribute(s) {absent} not among the columns of the data")
    ids, sizes = class_ids(frame, quasi_identifiers)
    return measure_classes(frame, ids, sizes, names, threshold, recursive_l, dominance)


def measure_classes(
    frame: pd.DataFrame,
    ids: IntArray,
    sizes: IntArray,
    sensitive: Sequence[str] = (),
    threshold: float = 0.2,
    recursive_l: int = 2,
    dominance: float = 0.95,
) -> Measures:
    """Return every measure of records already grouped into equivalence classes.

    :func:`measure` groups the records itself; a caller that has the classes already (the
    anonymisation, which has grouped them by code) passes them here.

    :param ids: the class of every record (dense: every class from 0 to ``len(sizes) - 1``
        has a record).
    :param sizes: the records in every class.
    The other parameters are :func:`measure`'s.
    """
    names = tuple(sensitive)
    empty = len(frame) == 0
    per_attribute = tuple(
        _sensitive_measures(ids, sizes, frame[name], recursive_l, dominance) for name in names
    )
    return Measures(
        records=len(frame),
        classes=int((sizes > 0).sum()),
        k=0 if empty else int(sizes.min()),
        l_distinct=min((m.l_distinct for m in per_attribute), default=None),
        l_entropy=min((m.l_entropy for m in per_attribute), default=None),
        t=max((m.t for m in per_attribute), default=None),
        risk=risk_from_sizes(sizes[ids], None, threshold),
        sensitive=per_attribute,
    )
