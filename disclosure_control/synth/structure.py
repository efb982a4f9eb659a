"""Structure learning: the tree of associated column pairs and each column's parent set.

Both are chosen by noisy max through the run's :class:`~disclosure_control.synth.measure.
Measurements`; everything else here (candidates, biases, rooting, ordering, tie-breaks) is
deterministic and uses released values only.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from math import prod

import numpy as np

from disclosure_control.synth.measure import Measurements
from disclosure_control.synth.scores import RecordStatistics, parent_set_score, tree_score


def select_tree(
    measurements: Measurements,
    statistics: RecordStatistics,
    penalty: float,
    rho: float,
) -> list[tuple[int, int]]:
    """Select a maximum spanning tree of column pairs by noisy max, one edge per round.

    Kruskal's rule: each round joins two components by the pair whose real counts lie
    farthest from independence, less ``penalty`` times its number of cells (the noise its
    marginal would cost).

    :param measurements: the run's composition.
    :param statistics: the shared statistics of the records.
    :param penalty: the expected noise of one cell of a measured marginal.
    :param rho: the loss of each round.
    """
    sizes = statistics.sizes
    d = len(sizes)
    component = list(range(d))
    tree: list[tuple[int, int]] = []
    for _ in range(d - 1):
        candidates = [
            (a, b) for a in range(d) for b in range(a + 1, d) if component[a] != component[b]
        ]
        bias = np.array([-penalty * sizes[a] * sizes[b] for a, b in candidates])
        chosen = measurements.select("tree edge", tree_score(statistics, candidates, bias), rho)
        a, b = candidates[chosen]
        tree.append((a, b))
        old, new = component[b], component[a]
        component = [new if c == old else c for c in component]
    return tree


def root_tree(tree: Sequence[tuple[int, int]], d: int) -> tuple[list[int], dict[int, int]]:
    """Root a tree at its best-connected column and order the columns breadth first.

    :param tree: the tree's edges.
    :param d: the number of columns.
    :returns: the columns in sampling order, and each column's tree parent (-1 for the root).

    >>> root_tree([(0, 1), (1, 2), (1, 3)], 4)
    ([1, 0, 2, 3], {1: -1, 0: 1, 2: 1, 3: 1})
    """
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
    return order, tree_parent


def select_parent_sets(
    measurements: Measurements,
    statistics: RecordStatistics,
    order: Sequence[int],
    tree_parent: dict[int, int],
    limits: tuple[int, int],
    penalty: float,
    rho: float,
    names: Sequence[str],
) -> dict[int, tuple[int, ...]]:
    """Give each column a parent set by noisy max.

    Each set is the column's tree parent plus up to ``max_parents - 1`` columns placed before
    it, scored by how far the child's real counts given the set lie from the child's released
    1-way distribution, less the noise the larger marginal would cost. The root has no parent
    and the second column only its tree parent (no round is spent on either).

    :param measurements: the run's composition.
    :param statistics: the shared statistics of the records.
    :param order: the columns in sampling order.
    :param tree_parent: each column's tree parent.
    :param limits: ``(max_parents, max_cells)``: the largest set, and the most cells a
        measured marginal may have.
    :param penalty: the expected noise of one cell of a measured marginal.
    :param rho: the loss of each round.
    :param names: the column names, for the measurements' labels.
    """
    max_parents, max_cells = limits
    sizes = statistics.sizes
    parents: dict[int, tuple[int, ...]] = {order[0]: ()}
    for position, child in enumerate(order[1:], start=1):
        parent = tree_parent[child]
        if position == 1:
            parents[child] = (parent,)
            continue
        options = candidate_parent_sets(
            parent,
            [q for q in order[:position] if q != parent],
            sizes,
            max_parents,
            max_cells // sizes[child],
        )
        bias = np.array([-penalty * sizes[child] * prod(sizes[q] for q in s) for s in options])
        chosen = measurements.select(
            f"parents of {names[child]}",
            parent_set_score(statistics, options, child, bias),
            rho,
            sensitivity=2,
        )
        parents[child] = options[chosen]
    return parents


def candidate_parent_sets(
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

    >>> candidate_parent_sets(0, [1, 2], [2, 3, 4], 3, 100)
    [(0,), (0, 1), (0, 2), (0, 1, 2)]
    >>> candidate_parent_sets(0, [1, 2], [2, 3, 4], 3, 10)
    [(0,), (0, 1), (0, 2)]
    """
    sets: list[tuple[int, ...]] = [(parent,)]
    for extra in range(1, max_parents):
        for chosen in combinations(others, extra):
            candidate = (parent, *chosen)
            if prod(sizes[q] for q in candidate) <= max_cells:
                sets.append(candidate)
    return sets
