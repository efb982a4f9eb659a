"""Optimal full-domain generalisation with record suppression, and local (cell) suppression.

The search works on the distinct combinations of quasi-identifier values (and of the sensitive
attribute when l-diversity is asked for), weighted by how many records share them, so one node
of the generalisation lattice costs a pass over those combinations rather than over the records.

Nodes are visited in increasing order of a lower bound of their information loss (the loss the
node would have with no record suppressed: suppressing a cell can only cost more than
generalising it). The first bound that is not below the best loss found so far ends the search,
which is therefore exact for the additive metrics (precision, loss, entropy). Discernibility has
no such bound: every node that may meet the model is tried.

Levels of a hierarchy need not nest (year -> 2-year -> 5-year periods does not), so "more
specific" is the partial order :meth:`Hierarchy.generalises` computes from the hierarchy's table,
never the order of the level numbers: node ``m`` is below node ``n`` when, on every
quasi-identifier, ``n``'s level generalises ``m``'s. Every class of ``m`` then lies inside a
class of ``n``, so when ``n`` suppresses more records than the budget allows under a monotone
model (k-anonymity, distinct l-diversity), so does ``m``, and ``m`` is never evaluated.

Node tables are rolled up from the smallest cached table of a node below them in that order
(the bottom node always qualifies), so nodes high in the lattice cost little. A roll-up groups
by a mixed-radix key over the ranks of the labels the records take (one gather and one add per
quasi-identifier and row, then a bincount when the key space is small, a hash otherwise), and
carries the per-row entropy sums only when the entropy metric is minimised. Once a node within
the budget is known, a node's loss is first estimated from its bound and its withheld rows
alone; only a node that may beat the best is scored in full. The input and the release are
measured from the classes the search already has. The local strategy
(cell suppression) is greedy per node and tries the nodes of lowest bound, at most
``max_local_nodes`` of them: it is a heuristic, and the report says which strategy kept more.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from disclosure_control.sdc._groups import IntArray, column_codes, combine, densify
from disclosure_control.sdc.hierarchies import MARKERS, TOP, WITHHELD, Hierarchy
from disclosure_control.sdc.measures import (
    Diversity,
    Measures,
    diversity,
    measure,
    measure_classes,
    recursive_ratio,
    sensitive_attributes,
)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Metric = Literal["precision", "loss", "entropy", "discernibility"]
Strategy = Literal["full_domain", "local", "best"]
METRICS: tuple[Metric, ...] = ("precision", "loss", "entropy", "discernibility")


class AnonymisationError(ValueError):
    """Raised when no generalisation meets the privacy model within the suppression budget."""


@dataclass(frozen=True)
class PrivacyModel:
    """What a release must satisfy.

    :param k: smallest equivalence class allowed (CTDC publishes with k = 11).
    :param max_suppression: share of records that may be suppressed (0 to 1).
    :param sensitive: the sensitive attribute(s) for l-diversity and t-closeness, if any: one
        name or several. Every class must meet l (and t) on each of them separately, since an
        intruder who finds a victim's class reads each one off it.
    :param l: least diversity of every sensitive attribute in every class, if required.
    :param l_kind: ``distinct``, ``entropy`` or ``recursive`` ((c, l)-diversity: in every class
        the most common value is fewer than ``c`` times the records outside the l - 1 most
        common values; l must then be a whole number).
    :param c: the c of recursive (c, l)-diversity (only with ``l_kind="recursive"``).
    :param max_average_risk: highest average record risk (prosecutor: released classes over
        released records) allowed, as in HDX's global-risk rule (below 0.03).
    :param t: largest distance (total variation, the earth mover's distance with equal ground
        distances) of a class's sensitive distribution to that of the whole input.
    """

    k: int = 11
    max_suppression: float = 0.05
    sensitive: str | tuple[str, ...] | None = None
    l: float | None = None  # noqa: E741 - the privacy model is called l-diversity
    l_kind: Diversity = "distinct"
    t: float | None = None
    max_average_risk: float | None = None
    c: float | None = None

    def __post_init__(self) -> None:
        names = sensitive_attributes(self.sensitive)
        # One name or several are both accepted; a list becomes a tuple so the model stays
        # hashable and comparable.
        if self.sensitive is not None and not isinstance(self.sensitive, str):
            object.__setattr__(self, "sensitive", names)
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if not 0.0 <= self.max_suppression <= 1.0:
            raise ValueError(f"max_suppression must be within [0, 1], got {self.max_suppression}")
        if (self.l is not None or self.t is not None) and not names:
            raise ValueError("l-diversity and t-closeness need a sensitive attribute")
        if self.max_average_risk is not None and not 0 < self.max_average_risk <= 1:
            raise ValueError(f"max_average_risk must be within (0, 1], got {self.max_average_risk}")
        if self.l_kind not in ("distinct", "entropy", "recursive"):
            raise ValueError(f"unknown l-diversity kind {self.l_kind!r}")
        if self.l_kind == "recursive":
            if self.l is None or self.c is None:
                raise ValueError("recursive (c, l)-diversity needs both c and l")
            if self.l != int(self.l) or self.l < 1:
                raise ValueError(f"recursive (c, l)-diversity needs a whole l >= 1, got {self.l}")
            if not self.c > 0:
                raise ValueError(f"recursive (c, l)-diversity needs c > 0, got {self.c}")
        elif self.c is not None:
            raise ValueError("c applies to recursive (c, l)-diversity only (l_kind='recursive')")

    @property
    def measured_l(self) -> int:
        """Return the l at which a report measures recursive (c, l)-diversity's c (2 unless the
        model itself is recursive)."""
        return int(self.l) if self.l_kind == "recursive" and self.l is not None else 2

    @property
    def sensitive_attributes(self) -> tuple[str, ...]:
        """Return the sensitive attributes named (none, one or several), in order."""
        return sensitive_attributes(self.sensitive)

    @property
    def monotone(self) -> bool:
        """Return whether generalising can never add suppressed records (pruning is exact).

        The average-risk cap does not enter: it prunes nothing, since a more specific node may
        suppress a small class entirely and so lower its average risk. Entropy and recursive
        diversity are not monotone in this sense: a class that fails may contain parts that pass.
        """
        return self.t is None and (self.l is None or self.l_kind == "distinct")


@dataclass(frozen=True)
class AnonymisationReport:
    """What an anonymisation did, and what it cost.

    :param strategy: ``full_domain`` (generalise, then suppress records) or ``local``
        (generalise, then suppress single quasi-identifier values, records only as a last resort).
    :param quasi_identifiers: the columns treated as quasi-identifiers.
    :param levels: chosen level name per quasi-identifier.
    :param level_indices: chosen level number per quasi-identifier.
    :param heights: height (levels less one) of each quasi-identifier's hierarchy.
    :param records_in: records given.
    :param records_kept: records released.
    :param records_suppressed: records withheld.
    :param cells_suppressed: quasi-identifier values withheld (written :data:`WITHHELD`) in
        released records.
    :param classes: equivalence classes of the release.
    :param before: measures of the input.
    :param after: measures of the release.
    :param information_loss: every metric (0 = nothing lost, 1 = everything withheld); the
        ``precision`` entry is a loss, so Sweeney's precision is one minus it.
    :param metric: the metric the search minimised.
    :param nodes_evaluated: lattice nodes whose classes were computed.
    :param lattice_size: nodes in the lattice.
    :param alternatives: the minimised loss each strategy tried reached (for ``best``).
    :param cells_suppressed_by_field: the withheld values per quasi-identifier.
    """

    strategy: str
    quasi_identifiers: tuple[str, ...]
    levels: dict[str, str]
    level_indices: dict[str, int]
    records_in: int
    records_kept: int
    records_suppressed: int
    cells_suppressed: int
    classes: int
    before: Measures
    after: Measures
    information_loss: dict[str, float]
    metric: str
    nodes_evaluated: int
    lattice_size: int
    alternatives: dict[str, float] = field(default_factory=dict)
    heights: dict[str, int] = field(default_factory=dict)
    cells_suppressed_by_field: dict[str, int] = field(default_factory=dict)

    @property
    def markers(self) -> dict[str, dict[str, str]]:
        """Return, per quasi-identifier, the markers its released values may carry, and meanings.

        This is what the data dictionary and the release's privacy notes state: :data:`TOP`
        where the field is generalised to its top level (not published for anyone),
        :data:`WITHHELD` where single values were withheld, and the empty missing value, which
        the partner sent and every level but the top keeps.
        """
        out: dict[str, dict[str, str]] = {}
        for q in self.quasi_identifiers:
            shown = [TOP] if self.level_indices[q] == self.heights.get(q, -1) else [""]
            if self.cells_suppressed_by_field.get(q, 0):
                shown.append(WITHHELD)
            out[q] = {marker: MARKERS[marker] for marker in shown}
        return out

    @property
    def precision(self) -> float:
        """Return Sweeney's precision of the release (1 = no value generalised).

        It is ARX's: one minus the mean over records and quasi-identifiers of the chosen level
        over the hierarchy's height, where a suppressed record counts as fully generalised (level
        = height) on every quasi-identifier. That is ARX's default precision metric
        (``Metric.createPrecisionMetric()``, the non-monotonic ``MetricMDNMPrecision`` with the
        arithmetic mean and generalisation/suppression factor 0.5, which weighs both by 1). A
        value withheld by the local strategy counts as fully generalised too.
        """
        return 1.0 - self.information_loss["precision"]

    @property
    def generalisation_precision(self) -> float:
        """Return one minus the mean of level over height per quasi-identifier, suppression ignored.

        This is ARX's monotonic precision (``Metric.createPrecisionMetric(true)``,
        ``MetricMDPrecision``), which scores the node alone; it is never below :attr:`precision`.
        """
        if not self.heights:
            return 1.0
        generalised = sum(self.level_indices[q] / h for q, h in self.heights.items())
        return 1.0 - generalised / len(self.heights)


@dataclass(frozen=True)
class AnonymisationResult:
    """An anonymised release and its report.

    :param data: the released records, quasi-identifiers generalised (strings), in a fresh
        random order with a fresh ``RangeIndex``: neither carries anything of the input's order.
    :param suppressed: index labels (in the input) of the records withheld; for the hub's own
        report, never for publication.
    :param report: what was done.
    """

    data: pd.DataFrame
    suppressed: pd.Index
    report: AnonymisationReport


@dataclass
class _Table:
    """The records at one lattice node, grouped into distinct rows (internal).

    A row is a distinct combination of generalised quasi-identifier codes (and of the sensitive
    value when the model has one), carrying how many records it stands for and, per
    quasi-identifier, the sum over those records of -log2 of the leaf's frequency (which makes
    the non-uniform entropy of any coarser level a per-row sum as well).
    """

    node: tuple[int, ...]
    codes: IntArray  # quasi-identifier x row
    values: IntArray | None
    weights: FloatArray
    # Quasi-identifier x row; only the entropy metric reads it, so a search under another
    # metric leaves it out of every table it rolls up (``_Lattice.info`` makes it on demand).
    info: FloatArray | None


@dataclass
class _Outcome:
    """The evaluation of one node under one strategy (internal)."""

    node: tuple[int, ...]
    loss: float
    table: _Table
    suppressed: BoolArray  # per row: records withheld
    starred: BoolArray  # per quasi-identifier and row: value withheld (WITHHELD)


@dataclass(frozen=True)
class _Refused:
    """A node that breaks the model (internal).

    :param over_budget: whether it withholds more records than the budget allows (the one
        failure that, under a monotone model, every node below it shares).
    """

    node: tuple[int, ...]
    over_budget: bool


class _Lattice:
    """The generalisation lattice of one data set under one privacy model (internal)."""

    def __init__(
        self,
        frame: pd.DataFrame,
        quasi_identifiers: Sequence[str],
        hierarchies: Mapping[str, Hierarchy],
        model: PrivacyModel,
        cache_rows: int = 3_000_000,
        carry_info: bool = True,
    ) -> None:
        missing = [q for q in quasi_identifiers if q not in hierarchies]
        if missing:
            raise KeyError(f"no generalisation hierarchy for quasi-identifier(s) {missing}")
        absent = [q for q in quasi_identifiers if q not in frame.columns]
        absent += [a for a in model.sensitive_attributes if a not in frame.columns]
        if absent:
            raise KeyError(f"column(s) {absent} not among the columns of the data")
        self.model = model
        self.n = len(frame)
        self.hierarchies = [hierarchies[q] for q in quasi_identifiers]
        self.heights = [h.height for h in self.hierarchies]
        self.budget = math.floor(model.max_suppression * self.n + 1e-9)
        self.record_leaves = (
            np.stack(
                [
                    h.encode(frame[q], q).astype(np.int64)
                    for q, h in zip(quasi_identifiers, self.hierarchies, strict=True)
                ],
                axis=0,
            )
            if quasi_identifiers
            else np.zeros((0, self.n), dtype=np.int64)
        )
        # The sensitive attributes travel through the lattice as one joint code per record
        # (so a table row is a distinct combination of all of them); ``value_parts`` maps a
        # joint code back to each attribute's own code, which the checks need one by one.
        self.n_values = 1
        self.record_values: IntArray | None = None
        self.value_parts: list[tuple[IntArray, int]] = []
        if model.sensitive_attributes:
            encoded = [column_codes(frame[a]) for a in model.sensitive_attributes]
            self.record_values, self.n_values = combine(
                [codes for codes, _ in encoded], [size for _, size in encoded]
            )
            first = np.full(self.n_values, -1, dtype=np.int64)
            first[self.record_values[::-1]] = np.arange(self.n - 1, -1, -1)
            self.value_parts = [(codes[first], size) for codes, size in encoded]
        # Label code at level b of each label at level a, only where b generalises a (then it
        # is a function); elsewhere None, and codes at b come from the leaves.
        self.order = [h.generalisation_order() for h in self.hierarchies]
        self.up: list[list[list[IntArray | None]]] = []
        self.label_cost: list[dict[str, list[FloatArray]]] = []
        self.leaf_counts = [
            np.bincount(self.record_leaves[i], minlength=len(h.leaves)).astype(np.float64)
            for i, h in enumerate(self.hierarchies)
        ]
        for i, h in enumerate(self.hierarchies):
            self.up.append(
                [
                    [
                        h.level_map(a, b) if h.generalises(a, b) else None
                        for b in range(h.height + 1)
                    ]
                    for a in range(h.height + 1)
                ]
            )
            leaves_per_label = [
                np.bincount(h.level_codes(level)).astype(np.float64)
                for level in range(h.height + 1)
            ]
            records_per_label = [
                np.bincount(h.level_codes(level), weights=self.leaf_counts[i])
                for level in range(h.height + 1)
            ]
            with np.errstate(divide="ignore"):
                entropy = [np.log2(np.maximum(c, 1.0)) for c in records_per_label]
            self.label_cost.append(
                {
                    "precision": [
                        np.full(len(c), level / h.height)
                        for level, c in enumerate(leaves_per_label)
                    ],
                    "loss": [(c - 1) / max(len(h.leaves) - 1, 1) for c in leaves_per_label],
                    "entropy": entropy,
                }
            )
        # Grouping keys are built from each label's rank among the labels the records take at
        # its level, not from its code among all the hierarchy's labels: a country hierarchy
        # knows 251 countries where a data set may have 180, and the key space (the product
        # over quasi-identifiers) is what decides between a bincount and a hash.
        self.rank: list[list[IntArray]] = []
        self.observed: list[list[int]] = []
        self.rank_up: list[list[list[IntArray | None]]] = []
        for i, h in enumerate(self.hierarchies):
            ranks, observed = [], []
            for level in range(h.height + 1):
                taken = np.bincount(h.level_codes(level), weights=self.leaf_counts[i]) > 0
                ranks.append((np.cumsum(taken) - 1).astype(np.int64))
                observed.append(max(int(taken.sum()), 1))
            self.rank.append(ranks)
            self.observed.append(observed)
            self.rank_up.append(
                [
                    [None if to is None else ranks[b][to] for b, to in enumerate(row)]
                    for row in self.up[i]
                ]
            )
        self.carry_info = carry_info
        self.bottom, self.record_bottom = self._bottom()
        self._cache: dict[tuple[int, ...], _Table] = {self.bottom.node: self.bottom}
        self._cache_rows = cache_rows
        self._norm: dict[Metric, float] = {}
        self._level_totals: dict[Metric, list[list[float]]] = {}
        self.evaluated = 0

    def _bottom(self) -> tuple[_Table, IntArray]:
        """Return the table of the most specific node, straight from the records, and the row
        of it each record belongs to."""
        node = tuple(0 for _ in self.hierarchies)
        parts = [self.rank[i][0][self.record_leaves[i]] for i in range(len(self.hierarchies))]
        sizes = [self.observed[i][0] for i in range(len(self.hierarchies))]
        if self.record_values is not None:
            parts.append(self.record_values)
            sizes.append(self.n_values)
        ids, rows = combine(parts, sizes)
        weights = np.bincount(ids, minlength=rows).astype(np.float64)
        first = np.full(rows, -1, dtype=np.int64)
        first[ids[::-1]] = np.arange(self.n - 1, -1, -1)
        codes = self.record_leaves[:, first]
        with np.errstate(divide="ignore"):
            info = (
                np.stack(
                    [
                        weights * -np.log2(np.maximum(self.leaf_counts[i][codes[i]], 1.0))
                        for i in range(len(self.hierarchies))
                    ],
                    axis=0,
                )
                if self.hierarchies
                else np.zeros((0, rows))
            )
        values = self.record_values[first] if self.record_values is not None else None
        return _Table(node, codes, values, weights, info), ids

    def sizes(self, node: Sequence[int]) -> list[int]:
        """Return the number of codes per quasi-identifier at ``node``, withheld included."""
        return [len(h.level_labels(lv)) + 1 for h, lv in zip(self.hierarchies, node, strict=True)]

    def below(self, lower: Sequence[int], upper: Sequence[int]) -> bool:
        """Return whether node ``upper`` generalises node ``lower`` on every quasi-identifier."""
        return all(bool(order[a, b]) for order, a, b in zip(self.order, lower, upper, strict=True))

    def lift(self, i: int, codes: IntArray, a: int, b: int) -> IntArray:
        """Return label codes at level ``a`` of quasi-identifier ``i`` mapped to level ``b``."""
        if a == b:
            return codes
        to = self.up[i][a][b]
        if to is None:
            # The search only rolls up along the generalisation order; reaching here is a bug.
            raise AssertionError(
                f"quasi-identifier {i}: level {b} does not generalise level {a}, map from leaves"
            )
        return to[codes]

    def _group(self, source: _Table, node: Sequence[int]) -> tuple[IntArray, int]:
        """Return, for every row of ``source``, its row at ``node`` (dense), and the row count.

        ``node`` must generalise the source's node on every quasi-identifier.
        """
        maps: list[IntArray] = []
        sizes: list[int] = []
        for i, (a, b) in enumerate(zip(source.node, node, strict=True)):
            to = self.rank_up[i][a][b]
            if to is None:
                # The search only rolls up along the generalisation order; reaching here is a bug.
                raise AssertionError(
                    f"quasi-identifier {i}: level {b} does not generalise level {a}"
                )
            maps.append(to)
            sizes.append(self.observed[i][b])
        if source.values is not None:
            sizes.append(self.n_values)
        span = math.prod(sizes)
        if span >= 2**62 or not maps:
            parts = [to[source.codes[i]] for i, to in enumerate(maps)]
            if source.values is not None:
                parts.append(source.values)
            return combine(parts, sizes)
        # The mixed-radix key as a sum of lookups: each map is scaled by its digit's weight
        # first (a few hundred entries), so every row costs one gather and one add per column.
        weight = span
        key = np.zeros(source.codes.shape[1], dtype=np.int64)
        for i, to in enumerate(maps):
            weight //= sizes[i]
            key += (to * weight)[source.codes[i]]
        if source.values is not None:
            key += source.values
        return densify(key, span)

    def info(self, table: _Table) -> FloatArray:
        """Return the table's per-row sums of -log2 leaf frequency (made from the bottom if the
        table was rolled up without them)."""
        if table.info is None:
            ids = self.bottom_rows(table)
            rows = len(table.weights)
            bottom_info = cast(FloatArray, self.bottom.info)
            table.info = (
                np.stack(
                    [np.bincount(ids, weights=row, minlength=rows) for row in bottom_info], axis=0
                )
                if len(bottom_info)
                else np.zeros((0, rows))
            )
        return table.info

    def table(self, node: tuple[int, ...]) -> _Table:
        """Return the table of ``node``, rolled up from the smallest cached table below it."""
        if node in self._cache:
            return self._cache[node]
        # Only a node below in the generalisation order has classes that roll up; the bottom
        # node (the leaves) is below every node and always cached.
        source = min(
            (t for n, t in self._cache.items() if self.below(n, node)),
            key=lambda t: len(t.weights),
        )
        n_qis = len(node)
        ids, rows = self._group(source, node)
        # One source row per new row: any will do, since the new codes are a function of it.
        first = np.empty(rows, dtype=np.int64)
        first[ids] = np.arange(len(ids))
        codes = np.empty((n_qis, rows), dtype=np.int64)
        for i, (a, b) in enumerate(zip(source.node, node, strict=True)):
            # One representative per new row, lifted: the lift is a function of the source code.
            codes[i] = self.lift(i, source.codes[i][first], a, b)
        info = None
        if self.carry_info and source.info is not None:
            info = np.empty((n_qis, rows), dtype=np.float64)
            for i in range(n_qis):
                info[i] = np.bincount(ids, weights=source.info[i], minlength=rows)
        table = _Table(
            node,
            codes,
            source.values[first] if source.values is not None else None,
            np.bincount(ids, weights=source.weights, minlength=rows).astype(np.float64),
            info,
        )
        # Keep tables for later roll-ups, dropping the largest first when they no longer fit: a
        # roll-up costs a pass over its source, so small tables are the useful ones. The bottom
        # one always stays (it is below every node).
        self._cache[node] = table
        held = sum(len(t.weights) for t in self._cache.values())
        while held > self._cache_rows and len(self._cache) > 1:
            largest = max(
                (n for n in self._cache if n != self.bottom.node),
                key=lambda n: len(self._cache[n].weights),
            )
            held -= len(self._cache.pop(largest).weights)
        return table

    def cell_costs(self, table: _Table, metric: Metric) -> tuple[FloatArray, FloatArray]:
        """Return per row and quasi-identifier the cost at the table's level and at the top."""
        level_cost = np.empty(table.codes.shape)
        top_cost = np.empty(table.codes.shape)
        info = self.info(table) if metric == "entropy" else None
        for i, level in enumerate(table.node):
            label = self.label_cost[i][metric][level][table.codes[i]]
            if info is not None:
                level_cost[i] = info[i] + table.weights * label
                top_cost[i] = info[i] + table.weights * math.log2(max(self.n, 1))
            else:
                level_cost[i] = table.weights * label
                top_cost[i] = table.weights
        return level_cost, top_cost

    def norm(self, metric: Metric) -> float:
        """Return the cost of withholding every value (the normaliser of a metric)."""
        if metric not in self._norm:
            _, top = self.cell_costs(self.bottom, metric)
            total = float(top.sum())
            self._norm[metric] = total if total > 0 else 1.0
        return self._norm[metric]

    def lower_bound(self, node: Sequence[int], metric: Metric) -> float:
        """Return the loss of ``node`` if no value were suppressed (a lower bound)."""
        if metric == "discernibility":
            return 0.0
        if metric not in self._level_totals:
            # Per quasi-identifier and level, the cost of all records: the bound of a node is
            # then a sum of a few scalars.
            totals = []
            for i, h in enumerate(self.hierarchies):
                info = np.bincount(
                    self.bottom.codes[i], weights=self.info(self.bottom)[i], minlength=len(h.leaves)
                )
                per_level = []
                for level in range(h.height + 1):
                    label = self.label_cost[i][metric][level][h.level_codes(level)]
                    cost = self.leaf_counts[i] @ label
                    per_level.append(float(cost + (info.sum() if metric == "entropy" else 0.0)))
                totals.append(per_level)
            self._level_totals[metric] = totals
        totals = self._level_totals[metric]
        return sum(totals[i][level] for i, level in enumerate(node)) / self.norm(metric)

    def failing(self, table: _Table, codes: IntArray | None = None) -> BoolArray:
        """Return, per row of ``table``, whether its class breaks the model.

        :param codes: the table's codes with some values withheld, if any.
        """
        if codes is None and table.values is None:
            # The rows of a table are its distinct quasi-identifier combinations, so without a
            # sensitive attribute each row is a class and no grouping is needed.
            return np.asarray(table.weights < self.model.k, dtype=np.bool_)
        codes = table.codes if codes is None else codes
        ids, n_classes = combine([codes[i] for i in range(codes.shape[0])], self.sizes(table.node))
        class_size = np.bincount(ids, weights=table.weights, minlength=n_classes).astype(np.float64)
        bad = class_size < self.model.k
        if table.values is not None and (self.model.l is not None or self.model.t is not None):
            for part, n_part in self.value_parts:
                bad |= self.undiverse(ids, n_classes, class_size, part[table.values], n_part, table)
        return np.asarray(bad[ids], dtype=np.bool_)

    def undiverse(
        self,
        ids: IntArray,
        n_classes: int,
        class_size: FloatArray,
        values: IntArray,
        n_values: int,
        table: _Table,
    ) -> BoolArray:
        """Return, per class, whether one sensitive attribute breaks l-diversity or t-closeness.

        :param ids: class of every row of ``table``.
        :param class_size: records per class.
        :param values: the attribute's code on every row.
        :param n_values: number of codes of the attribute.
        """
        model = self.model
        bad = np.zeros(n_classes, dtype=np.bool_)
        pairs, n_pairs = combine([ids, values], [n_classes, n_values])
        counts = np.bincount(pairs, weights=table.weights, minlength=n_pairs)
        first = np.full(n_pairs, -1, dtype=np.int64)
        first[pairs[::-1]] = np.arange(len(pairs) - 1, -1, -1)
        classes, present = ids[first], values[first]
        if model.l is not None:
            if model.l_kind == "recursive":
                ratio = recursive_ratio(classes, counts, n_classes, int(model.l))
                bad |= ratio >= cast(float, model.c) - 1e-12
            else:
                bad |= diversity(classes, counts, n_classes, model.l_kind) < model.l - 1e-9
        if model.t is not None:
            overall = np.bincount(present, weights=counts, minlength=n_values)
            overall = overall / overall.sum()
            share = counts / class_size[classes]
            # Total variation distance: values absent from a class add their overall share,
            # so sum |share - overall| - overall over the present ones and add 1.
            gap = np.abs(share - overall[present]) - overall[present]
            distance = 0.5 * (np.bincount(classes, weights=gap, minlength=n_classes) + 1.0)
            bad |= distance > model.t + 1e-9
        return bad

    def loss(
        self, table: _Table, suppressed: BoolArray, starred: BoolArray, metric: Metric
    ) -> float:
        """Return the information loss of an outcome under ``metric`` (0 to 1)."""
        if metric == "discernibility":
            sizes = self.sizes(table.node)
            codes = np.where(starred, (np.array(sizes) - 1)[:, None], table.codes)
            ids, n_classes = combine([codes[i] for i in range(codes.shape[0])], sizes)
            kept = np.where(suppressed, 0.0, table.weights)
            class_size = np.bincount(ids, weights=kept, minlength=n_classes)
            withheld = float(table.weights[suppressed].sum())
            return (float(class_size @ class_size) + withheld * self.n) / max(
                float(self.n) ** 2, 1.0
            )
        level_cost, top_cost = self.cell_costs(table, metric)
        top = starred | suppressed[None, :]
        return float(np.where(top, top_cost, level_cost).sum()) / self.norm(metric)

    def refusal(self, table: _Table, suppressed: BoolArray, starred: BoolArray) -> _Refused | None:
        """Return why an outcome breaks the suppression budget or the risk cap, or ``None``."""
        withheld = float(table.weights[suppressed].sum())
        if withheld > self.budget + 1e-9:
            return _Refused(table.node, over_budget=True)
        if self.model.max_average_risk is None:
            return None
        kept = ~suppressed
        if not kept.any():
            return None
        sizes = self.sizes(table.node)
        codes = np.where(starred, (np.array(sizes) - 1)[:, None], table.codes)[:, kept]
        _, classes = combine([codes[i] for i in range(codes.shape[0])], sizes)
        if classes / (self.n - withheld) <= self.model.max_average_risk + 1e-12:
            return None
        return _Refused(table.node, over_budget=False)

    def full_domain(
        self, node: tuple[int, ...], metric: Metric, beat: float = math.inf
    ) -> _Outcome | _Refused | None:
        """Return the outcome of generalising to ``node`` and withholding failing records.

        :param beat: the least loss found so far: ``None`` is returned for a node whose loss is
            certainly not below it (known from its suppressed rows alone).
        """
        self.evaluated += 1
        table = self.table(node)
        suppressed = self.failing(table)
        starred = np.zeros(table.codes.shape, dtype=np.bool_)
        refused = self.refusal(table, suppressed, starred)
        if refused is not None:
            return refused
        if metric != "discernibility" and beat < math.inf:
            # The node's loss is its bound plus what withholding its failing rows adds: a sum
            # over those rows only. It differs from :meth:`loss` by rounding alone (far below
            # the margin), so a node it rules out could not have won by the exact loss either.
            if self.suppression_estimate(table, suppressed, metric) >= beat + 1e-9:
                return None
        return _Outcome(
            node, self.loss(table, suppressed, starred, metric), table, suppressed, starred
        )

    def suppression_estimate(self, table: _Table, suppressed: BoolArray, metric: Metric) -> float:
        """Return the loss of a full-domain outcome from its bound and its withheld rows."""
        rows = np.flatnonzero(suppressed)
        weights = table.weights[rows]
        added = 0.0
        for i, level in enumerate(table.node):
            label = self.label_cost[i][metric][level][table.codes[i, rows]]
            # At the top a value costs log2(n) (entropy) or 1; the record's own information
            # cancels out of the difference.
            top = math.log2(max(self.n, 1)) if metric == "entropy" else 1.0
            added += float(weights @ (top - label))
        return self.lower_bound(table.node, metric) + added / self.norm(metric)

    def local(self, node: tuple[int, ...], metric: Metric) -> _Outcome | _Refused:
        """Return the outcome of generalising to ``node`` and withholding single values.

        Greedy, like sdcMicro's local suppression: while some records are in failing classes,
        withhold for them the quasi-identifier that rescues the most records per unit of lost
        information; records still failing with every value withheld are suppressed whole.
        A withheld value is a value of its own (:data:`WITHHELD`), never a wildcard, so the
        result is k-anonymous under the plain definition.
        """
        self.evaluated += 1
        table = self.table(node)
        star_code = np.array(self.sizes(node), dtype=np.int64) - 1
        level_cost, top_cost = self.cell_costs(
            table, "loss" if metric == "discernibility" else metric
        )
        added_cost = top_cost - level_cost
        starred = np.zeros(table.codes.shape, dtype=np.bool_)
        offenders = self.failing(table)
        while offenders.any():
            current = np.where(starred, star_code[:, None], table.codes)
            best: tuple[float, int, BoolArray] | None = None
            for i in range(table.codes.shape[0]):
                if node[i] == self.heights[i]:
                    # Already at the top ("*" for everyone): withholding it changes nothing
                    # anyone learns and would only split a class on a marker.
                    continue
                movable = offenders & ~starred[i]
                if not movable.any():
                    continue
                trial = current.copy()
                trial[i, movable] = star_code[i]
                still = self.failing(table, trial)
                rescued = float(table.weights[offenders & ~still].sum())
                score = rescued / (float(added_cost[i, movable].sum()) + 1e-9)
                if best is None or score > best[0]:
                    best = (score, i, movable)
            if best is None:
                break
            starred[best[1], best[2]] = True
            offenders = self.failing(table, np.where(starred, star_code[:, None], table.codes))
        suppressed = offenders
        # Values withheld in records that end up suppressed are counted with the record.
        starred &= ~suppressed[None, :]
        refused = self.refusal(table, suppressed, starred)
        if refused is not None:
            return refused
        return _Outcome(
            node, self.loss(table, suppressed, starred, metric), table, suppressed, starred
        )

    def unsatisfiable(self) -> list[str]:
        """Return the sensitive attributes on which all records as one class break the model.

        Generalising cannot help those (all records in one class is as general as it gets):
        only withholding records could, so a refusal names them rather than only "no node".
        """
        if self.model.l is None and self.model.t is None:
            return []
        top = self.table(tuple(self.heights))
        if top.values is None:
            return []
        ids = np.zeros(len(top.weights), dtype=np.int64)
        size = np.array([float(top.weights.sum())])
        return [
            name
            for name, (part, n_part) in zip(
                self.model.sensitive_attributes, self.value_parts, strict=True
            )
            if self.undiverse(ids, 1, size, part[top.values], n_part, top)[0]
        ]

    def bottom_rows(self, table: _Table) -> IntArray:
        """Return, for every row of the bottom table, the row of ``table`` it belongs to."""
        if table is self.bottom:
            return np.arange(len(self.bottom.weights), dtype=np.int64)
        rows = len(table.weights)
        # The table's own rows, each its own source (a table's node generalises itself), then
        # the bottom's: grouped together, each bottom row meets the table row it rolls up to.
        both = _Table(
            table.node,
            np.concatenate([table.codes, self._lifted_bottom(table.node)], axis=1),
            None
            if table.values is None or self.bottom.values is None
            else np.concatenate([table.values, self.bottom.values]),
            np.empty(0),
            None,
        )
        ids, n_ids = self._group(both, table.node)
        lookup = np.full(n_ids, -1, dtype=np.int64)
        lookup[ids[:rows]] = np.arange(rows)
        return lookup[ids[rows:]]

    def _lifted_bottom(self, node: Sequence[int]) -> IntArray:
        """Return the bottom table's codes lifted to ``node`` (quasi-identifier x row)."""
        return (
            np.stack(
                [self.lift(i, self.bottom.codes[i], 0, level) for i, level in enumerate(node)],
                axis=0,
            )
            if len(node)
            else np.zeros((0, len(self.bottom.weights)), dtype=np.int64)
        )

    def record_classes(self) -> IntArray:
        """Return the equivalence class of every record in the input (dense codes)."""
        if self.bottom.values is None:
            # Without sensitive attributes the bottom rows are the classes.
            return self.record_bottom
        codes = self.bottom.codes
        bottom_class, _ = combine(
            [self.rank[i][0][codes[i]] for i in range(len(codes))],
            [self.observed[i][0] for i in range(len(codes))],
        )
        return bottom_class[self.record_bottom]

    def record_rows(self, table: _Table) -> IntArray:
        """Return, for every record, the row of ``table`` it belongs to."""
        return self.bottom_rows(table)[self.record_bottom]


def _below_any(lattice: _Lattice, node: Sequence[int], others: IntArray) -> bool:
    """Return whether some row of ``others`` (node levels) generalises ``node`` on every QI."""
    below = np.ones(len(others), dtype=np.bool_)
    for i, level in enumerate(node):
        below &= lattice.order[i][level, others[:, i]]
    return bool(below.any())


def _refusal_message(lattice: _Lattice) -> str:
    """Return why no node meets the model: its terms, and attributes generalising cannot help."""
    model = lattice.model
    terms = [f"k={model.k}"]
    if model.l is not None:
        kind = (
            f"recursive (c={model.c}, l={model.l:g})"
            if model.l_kind == "recursive"
            else f"{model.l_kind} l={model.l:g}"
        )
        terms.append(f"{kind} on {list(model.sensitive_attributes)}")
    if model.t is not None:
        terms.append(f"t={model.t}")
    if model.max_average_risk is not None:
        terms.append(f"average risk <= {model.max_average_risk}")
    message = (
        f"no generalisation meets {', '.join(terms)} with at most {lattice.budget} of "
        f"{lattice.n} records suppressed"
    )
    hopeless = lattice.unsatisfiable()
    if hopeless:
        message += (
            f"; even all records in one class break it on {hopeless}, so only withholding "
            "records could help there"
        )
    return message


def _search(
    lattice: _Lattice, metric: Metric, strategy: Literal["full_domain", "local"], max_nodes: int
) -> _Outcome:
    """Return the outcome of least loss over the lattice for one strategy."""
    nodes = list(itertools.product(*(range(h + 1) for h in lattice.heights)))
    bounds = np.array([lattice.lower_bound(node, metric) for node in nodes])
    # Among equal bounds (all of them for discernibility) specific nodes come first, so a
    # node's predecessors are usually in the cache when it is rolled up.
    order = np.lexsort((np.array([sum(n) for n in nodes]), bounds))

    prune = lattice.model.monotone and strategy == "full_domain"
    # Levels of the nodes found over budget, one row per node, to test "below" for all at once.
    failed = np.zeros((0, len(lattice.heights)), dtype=np.int64)
    best: _Outcome | None = None
    tried = 0
    for index in order.tolist():
        node = nodes[index]
        if best is not None and bounds[index] >= best.loss - 1e-12:
            break
        if best is not None and tried >= max_nodes:
            break
        if prune and len(failed) and _below_any(lattice, node, failed):
            continue
        tried += 1
        outcome = (
            lattice.full_domain(node, metric, best.loss if best is not None else math.inf)
            if strategy == "full_domain"
            else lattice.local(node, metric)
        )
        if outcome is None:
            continue
        if isinstance(outcome, _Refused):
            if outcome.over_budget:
                failed = np.vstack([failed, np.array(node, dtype=np.int64)[None, :]])
        elif best is None or outcome.loss < best.loss:
            best = outcome
    if best is None:
        raise AnonymisationError(_refusal_message(lattice))
    return best


def unlinked_order(n: int) -> IntArray:
    """Return a uniformly random permutation of ``range(n)`` drawn from the OS's CSPRNG.

    The order of released records must carry nothing about the input's order (CTDC's file is
    sorted by year: kept order lets anyone with per-year counts read every generalised year
    back by position). A seeded generator would be undone by whoever learns the seed, and a sort
    on released values still leaks through the order of ties, so each record gets 64 bits from
    ``os.urandom`` and the records are sorted by them. Two keys collide with probability below
    n^2 / 2^65 (under 3e-10 for 10^5 records); only then does the (stable) sort fall back on
    input order, for those two records.

    >>> sorted(unlinked_order(5).tolist())
    [0, 1, 2, 3, 4]
    """
    keys = np.frombuffer(os.urandom(8 * n), dtype=np.uint64)
    return np.asarray(np.argsort(keys, kind="stable"), dtype=np.int64)


def shuffle_records(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the records in a fresh random order (:func:`unlinked_order`) with a fresh index.

    Every record-level output goes through this before it leaves: no original index, row
    number or order survives.

    >>> out = shuffle_records(pd.DataFrame({"a": [1, 2, 3]}, index=[7, 8, 9]))
    >>> out.index.tolist(), sorted(out["a"].tolist())
    ([0, 1, 2], [1, 2, 3])
    """
    return frame.iloc[unlinked_order(len(frame))].reset_index(drop=True)


def _apply(
    frame: pd.DataFrame,
    quasi_identifiers: Sequence[str],
    lattice: _Lattice,
    outcome: _Outcome,
) -> tuple[pd.DataFrame, pd.Index, dict[str, int], IntArray]:
    """Return the released records, the suppressed index, the withheld cells per field and
    the equivalence class of every released record (dense codes)."""
    record_row = lattice.record_rows(outcome.table)
    record_suppressed = outcome.suppressed[record_row]
    # The records kept, in the release's order (:func:`unlinked_order`): every column is taken
    # once, already shuffled, and the quasi-identifiers are written from their codes.
    order = np.flatnonzero(~record_suppressed)[unlinked_order(int((~record_suppressed).sum()))]
    row = record_row[order]
    released = frame.drop(columns=list(quasi_identifiers)).iloc[order].reset_index(drop=True)
    table, sizes = outcome.table, lattice.sizes(outcome.node)
    # The withheld marker is the last code (see ``_Lattice.sizes``); the top label "*" is a
    # label of the hierarchy's top level only, so the two never meet in one field.
    codes = np.where(outcome.starred, (np.array(sizes, dtype=np.int64) - 1)[:, None], table.codes)
    cells: dict[str, int] = {}
    for i, (q, h) in enumerate(zip(quasi_identifiers, lattice.hierarchies, strict=True)):
        labels = pd.Series([*h.level_labels(outcome.node[i]), WITHHELD], dtype="string")
        released[q] = labels.take(codes[i, row]).array
        cells[q] = int(outcome.starred[i, row].sum())
    released = released[list(frame.columns)]
    row_class, n_classes = combine([codes[i] for i in range(len(sizes))], sizes)
    classes, _ = combine([row_class[row]], [n_classes])
    return released, frame.index[record_suppressed], cells, classes


def anonymise(
    frame: pd.DataFrame,
    quasi_identifiers: Sequence[str],
    hierarchies: Mapping[str, Hierarchy],
    model: PrivacyModel | None = None,
    metric: Metric = "loss",
    strategy: Strategy = "full_domain",
    risk_threshold: float = 0.2,
    max_local_nodes: int = 24,
) -> AnonymisationResult:
    """Return a release of the case records that satisfies the privacy model, and its report.

    :param frame: the case records (quasi-identifiers as strings, missing as ``""``).
    :param quasi_identifiers: the columns to protect, each with a hierarchy.
    :param hierarchies: generalisation hierarchy per quasi-identifier.
    :param model: what the release must satisfy (default: k = 11, 5 % suppression).
    :param metric: information loss to minimise: ``precision`` (Sweeney), ``loss`` (Iyengar),
        ``entropy`` (non-uniform entropy) or ``discernibility``.
    :param strategy: ``full_domain`` (withhold whole records), ``local`` (withhold single
        values first) or ``best`` (both, keeping the one with less loss; the report lists both).
    :param risk_threshold: record-risk threshold of the measures in the report.
    :param max_local_nodes: most lattice nodes the local strategy tries (it costs more per node).
    :raises AnonymisationError: if no node meets the model within the suppression budget.
    :raises HierarchyError: if a value is not covered by its hierarchy.
    """
    model = model if model is not None else PrivacyModel()
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}: use one of {METRICS}")
    if strategy not in ("full_domain", "local", "best"):
        raise ValueError(f"unknown strategy {strategy!r}: use full_domain, local or best")
    quasi_identifiers = tuple(quasi_identifiers)
    lattice = _Lattice(frame, quasi_identifiers, hierarchies, model, carry_info=metric == "entropy")
    if lattice.n == 0:
        raise AnonymisationError("there are no records to anonymise")
    tried: dict[str, _Outcome] = {}
    if strategy in ("full_domain", "best"):
        tried["full_domain"] = _search(lattice, metric, "full_domain", max_nodes=10**9)
    if strategy in ("local", "best"):
        tried["local"] = _search(lattice, metric, "local", max_nodes=max_local_nodes)
    chosen = min(tried, key=lambda name: tried[name].loss)
    outcome = tried[chosen]
    released, suppressed, cells, classes = _apply(frame, quasi_identifiers, lattice, outcome)
    recursive_l = model.measured_l
    names = model.sensitive_attributes
    if any(frame[q].hasnans for q in quasi_identifiers):
        # A missing value and "" are one leaf to the hierarchies but two values to a group-by
        # over the input: measure the input as given.
        before = measure(frame, quasi_identifiers, names, risk_threshold, recursive_l)
    else:
        before_ids = lattice.record_classes()
        before = measure_classes(
            frame,
            before_ids,
            np.bincount(before_ids).astype(np.int64),
            names,
            risk_threshold,
            recursive_l,
        )
    after = measure_classes(
        released,
        classes,
        np.bincount(classes, minlength=1 if len(classes) else 0).astype(np.int64),
        names,
        risk_threshold,
        recursive_l,
    )
    losses: dict[str, float] = {
        name: lattice.loss(outcome.table, outcome.suppressed, outcome.starred, name)
        for name in METRICS
    }
    report = AnonymisationReport(
        strategy=chosen,
        quasi_identifiers=quasi_identifiers,
        levels={
            q: h.level_names[level]
            for q, h, level in zip(
                quasi_identifiers, lattice.hierarchies, outcome.node, strict=True
            )
        },
        level_indices=dict(zip(quasi_identifiers, outcome.node, strict=True)),
        records_in=lattice.n,
        records_kept=len(released),
        records_suppressed=len(suppressed),
        cells_suppressed=sum(cells.values()),
        classes=after.classes,
        before=before,
        after=after,
        information_loss=losses,
        metric=metric,
        nodes_evaluated=lattice.evaluated,
        lattice_size=math.prod(h + 1 for h in lattice.heights),
        alternatives={name: o.loss for name, o in tried.items()},
        heights=dict(zip(quasi_identifiers, lattice.heights, strict=True)),
        cells_suppressed_by_field=cells,
    )
    return AnonymisationResult(released, suppressed, report)


def generalise(
    frame: pd.DataFrame, levels: Mapping[str, int], hierarchies: Mapping[str, Hierarchy]
) -> pd.DataFrame:
    """Return a copy of the records with each named column generalised to the given level.

    :param frame: the case records.
    :param levels: level number per quasi-identifier.
    :param hierarchies: generalisation hierarchy per quasi-identifier.

    >>> from disclosure_control.sdc.hierarchies import Hierarchy
    >>> h = Hierarchy.from_mapping("age", ["band", "majority", "any"],
    ...                            {"0--8": ["Minor"], "18--20": ["Adult"]})
    >>> generalise(pd.DataFrame({"age": ["0--8", ""]}), {"age": 1}, {"age": h})["age"].tolist()
    ['Minor', '']
    """
    out = frame.copy()
    for column, level in levels.items():
        out[column] = hierarchies[column].generalise(frame[column], level)
    return out
