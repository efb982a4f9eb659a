"""Safe tables: frequency and magnitude tables with primary and secondary cell suppression.

A table of one to four dimensions is built with all its margins (each dimension gets a
``Total`` category), because what is published is the table *and* its totals: a suppressed cell
that is the only one in its row is recovered by subtracting the published cells from the row
total. Secondary suppression uses the hypercube method (as tau-ARGUS's GHMITER does): each
primary cell is hidden with the other corners of a hypercube of cells, chosen so that moving
value around the corners keeps every margin and leaves the primary cell free to take any value
from zero up to the threshold. That freedom is what an attacker solving the linear bounds of the
published table finds, so the protection is proven per cell rather than assumed.

Controlled rounding to a base then moves every cell and margin to an adjacent multiple so that
the table still adds up: by a maximum flow for one or two dimensions (one always exists), by a
0/1 integer program for three or four (one may not exist, and the table is then refused).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

from disclosure_control.person import PERSON_COLUMN, person_keys

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
#: Label of the margin category added to every dimension.
TOTAL = "Total"
_PUBLISHED, _PRIMARY, _SECONDARY, _UNPUBLISHED = 0, 1, 2, 3
_STATUS_NAMES = ("published", "primary", "secondary", "unpublished")


class TableError(ValueError):
    """Raised when a table cannot be built or checked as asked."""


@dataclass(frozen=True)
class TablePolicy:
    """How a table is protected.

    :param threshold: a count below this is a primary cell (UK output checking uses 10).
    :param suppress_zeros: also treat zero counts as primary cells (when a zero discloses, for
        instance that no survivor of one nationality was recorded in one place).
    :param rounding_base: apply controlled rounding to this base to the published cells
        (``None``: none); the rounded cells still add up to the rounded totals. Suppressed
        cells stay suppressed (the whole table is rounded, then they are hidden). A table of
        three or four dimensions may have no controlled rounding to a base: it is then refused
        with a :class:`TableError`, never published half-rounded.
    :param dominance_n: magnitude tables: the top ``n`` contributors of a cell ...
    :param dominance_k: ... may hold at most ``k`` percent of it (UK: top 2 under 90 %).
    :param p_percent: magnitude tables: the rest of the cell, less the second contributor, must
        be at least ``p`` percent of the largest contributor (UK: p = 10).
    """

    threshold: int = 10
    suppress_zeros: bool = False
    rounding_base: int | None = None
    dominance_n: int = 2
    dominance_k: float = 90.0
    p_percent: float = 10.0

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise TableError(f"threshold must be at least 1, got {self.threshold}")
        if self.rounding_base is not None and self.rounding_base < 2:
            raise TableError(f"rounding base must be at least 2, got {self.rounding_base}")
        if not 0 < self.dominance_k <= 100 or self.dominance_n < 1:
            raise TableError("dominance needs n >= 1 and 0 < k <= 100")
        if self.p_percent < 0:
            raise TableError(f"p must not be negative, got {self.p_percent}")


@dataclass(frozen=True)
class SafeTable:
    """A protected table in long form, with its margins.

    :param dimensions: the dimension columns.
    :param categories: the categories of every dimension (without ``Total``).
    :param cells: one row per cell, margins included (``Total`` in a dimension column); column
        ``value`` holds the published value (``<NA>`` where suppressed, never 0), ``status`` is
        ``published``, ``primary`` or ``secondary``.
    :param values: the true values as an array with a trailing ``Total`` index per dimension
        (kept for checks by the data holder; never publish it).
    :param status: the status codes in the same shape (0 published, 1 primary, 2 secondary,
        3 a total that is not published).
    :param unprotected: cells whose protection interval could not be reached (should be empty).
    :param rounding_base: the base of the controlled rounding of the published values, or
        ``None`` when they are exact (an attacker then knows each published cell only to within
        ``rounding_base - 1``).
    """

    dimensions: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]
    cells: pd.DataFrame
    values: FloatArray = field(repr=False)
    status: npt.NDArray[np.int8] = field(repr=False)
    unprotected: tuple[tuple[str, ...], ...] = ()
    rounding_base: int | None = None

    @property
    def primary(self) -> int:
        """Return the number of primary suppressed cells."""
        return int((self.status == _PRIMARY).sum())

    @property
    def secondary(self) -> int:
        """Return the number of secondary suppressed cells."""
        return int((self.status == _SECONDARY).sum())


def _categories(
    frame: pd.DataFrame, dimensions: Sequence[str], domains: Mapping[str, Sequence[str]] | None
) -> list[list[str]]:
    """Return the categories of each dimension: the declared domain, or the values seen."""
    result = []
    for d in dimensions:
        if d not in frame.columns:
            raise TableError(f"dimension {d!r} is not a column of the data")
        seen = frame[d].astype("string").fillna("").unique().tolist()
        if domains is not None and d in domains:
            declared = [str(v) for v in domains[d]]
            outside = sorted(set(seen) - set(declared))
            if outside:
                raise TableError(f"dimension {d!r}: values {outside[:5]} are not in its domain")
            cats = declared
        else:
            cats = sorted(str(v) for v in seen)
        if TOTAL in cats:
            raise TableError(f"dimension {d!r} has a category named {TOTAL!r}, the margin label")
        result.append(cats)
    return result


def _with_margins(inner: FloatArray) -> FloatArray:
    """Return the array with a trailing total along every axis (totals of totals included).

    >>> _with_margins(np.array([[1.0, 2.0], [3.0, 4.0]])).tolist()
    [[1.0, 2.0, 3.0], [3.0, 4.0, 7.0], [4.0, 6.0, 10.0]]
    """
    out = inner
    for axis in range(inner.ndim):
        out = np.concatenate([out, out.sum(axis=axis, keepdims=True)], axis=axis)
    return out


def _codes(frame: pd.DataFrame, dimensions: Sequence[str], cats: list[list[str]]) -> list[IntArray]:
    return [
        np.asarray(
            pd.Categorical(frame[d].astype("string").fillna(""), categories=c).codes, np.int64
        )
        for d, c in zip(dimensions, cats, strict=True)
    ]


def _persons_with_margins(
    frame: pd.DataFrame, dimensions: Sequence[str], cats: list[list[str]]
) -> FloatArray | None:
    """Return the distinct persons of every cell, margins included, or None without the key.

    A person's records may fall in several inner cells of one margin, so a margin's persons are
    counted afresh, not summed.

    >>> frame = pd.DataFrame({"g": ["a", "a", "b"], PERSON_COLUMN: [1, 1, 1]})
    >>> _persons_with_margins(frame, ["g"], [["a", "b"]]).tolist()
    [1.0, 1.0, 1.0]
    """
    if PERSON_COLUMN not in frame.columns:
        return None
    codes = _codes(frame, dimensions, cats)
    shape = tuple(len(c) + 1 for c in cats)
    persons = person_keys(frame).to_numpy()
    out = np.zeros(math.prod(shape))
    for kept in itertools.product((True, False), repeat=len(cats)):
        index = tuple(
            code if keep else np.full(len(frame), len(c), np.int64)
            for code, keep, c in zip(codes, kept, cats, strict=True)
        )
        cells = pd.DataFrame({"cell": np.ravel_multi_index(index, shape), "person": persons})
        unique = cells.drop_duplicates()["cell"].to_numpy()
        out += np.bincount(unique, minlength=out.size)
    return out.reshape(shape)


def _inner_counts(
    frame: pd.DataFrame, dimensions: Sequence[str], cats: list[list[str]]
) -> FloatArray:
    """Return the counts of every combination of categories as a dense array."""
    codes = _codes(frame, dimensions, cats)
    shape = tuple(len(c) for c in cats)
    flat = np.ravel_multi_index(tuple(codes), shape) if codes else np.zeros(len(frame), np.int64)
    return np.bincount(flat, minlength=math.prod(shape)).reshape(shape).astype(np.float64)


def _hypercube_suppression(
    values: FloatArray,
    status: npt.NDArray[np.int8],
    need_up: FloatArray,
    need_down: FloatArray,
    max_candidates: int = 64,
    batch: int = 128,
) -> list[tuple[int, ...]]:
    """Suppress further cells so every primary cell can move by its needed amounts.

    For a primary cell ``p`` and one alternative index ``a_j`` per dimension, the 2^d corners of
    the hypercube can be changed by +e or -e each (the sign of a corner flips with every
    dimension in which it takes the alternative, except when the pair includes the total, which
    moves with its part) without changing any sum the table publishes. The primary cell can rise
    by the smallest value at a minus corner and fall by the smallest at another plus corner.
    Among hypercubes giving at least ``need_up`` and ``need_down``, the one whose newly
    suppressed corners hold the least (margins made very costly) is chosen.

    Primary cells are handled in batches, vectorised: the cells of one batch see the
    suppressions of the batches before it (and reuse them for free), not each other's.

    :return: the primary cells no hypercube could protect fully (they got the best one found).
    """
    shape = np.array(values.shape)
    ndim = values.ndim
    totals = shape - 1
    # Candidates per dimension: small dimensions offer every category, the large ones share
    # what is left of the budget.
    budget = float(max_candidates * 2 ** max(ndim - 2, 0))
    takes = [int(s) - 1 for s in shape]
    large = list(range(ndim))
    for j in sorted(range(ndim), key=lambda d: takes[d]):
        share = budget ** (1.0 / len(large))
        if takes[j] <= share:
            budget /= max(takes[j], 1)
            large.remove(j)
        else:
            break
    for j in large:
        takes[j] = max(2, min(takes[j], int(round(budget ** (1.0 / len(large))))))
    primaries = np.argwhere(status == _PRIMARY)
    # Margins first (their hypercubes involve other margins), then small cells first.
    level = (primaries == totals).sum(axis=1)
    primaries = primaries[np.lexsort((values[tuple(primaries.T)], -level))]
    big = float(values.max() + 1.0) * 1e3
    # Cells are read and hidden by flat index (one gather per array, not one per dimension);
    # the flat arrays are views, so hiding a cell in ``flat_status`` hides it in ``status``.
    flat_values, flat_status = values.reshape(-1), status.reshape(-1)
    if not np.shares_memory(flat_status, status):
        raise TableError("secondary suppression needs the status array contiguous")
    strides = np.array([math.prod(values.shape[j + 1 :]) for j in range(ndim)], np.int64)
    unprotected: list[tuple[int, ...]] = []
    for start in range(0, len(primaries), batch):
        ps = primaries[start : start + batch]  # primary x dimension
        at = ps @ strides
        choices = []
        for j in range(ndim):
            take = takes[j]
            # Every cell on the line through each primary along dimension j.
            line = (at - ps[:, j] * strides[j])[:, None] + np.arange(shape[j]) * strides[j]
            line_values = flat_values[line]
            line_status = flat_status[line]
            # Prefer the total (the only partner in a two-category dimension), then cells
            # already hidden (free), then the largest (most room); never the primary itself.
            # Half the slots go to hidden cells, half to the largest, hidden or not: hidden but
            # tiny partners alone could leave no hypercube with enough room.
            largest = line_values.copy()
            # In one dimension the total is the grand total, never hidden: no partner at all
            # (offered, it left a primary cell of a two-category table unprotected).
            largest[:, -1] = np.inf if ndim > 1 else -np.inf
            largest[np.arange(len(ps)), ps[:, j]] = -np.inf
            hidden = np.where(line_status == _PUBLISHED, -big, 0.0) + largest
            picks = [_top(largest, take - take // 2)]
            if take // 2:
                picks.append(_top(hidden, take // 2))
            choices.append(np.concatenate(picks, axis=1))
        cubes = _hypercubes(ps, choices, values.shape)
        room_up, room_down, cost = _rooms(cubes, values, status, big)
        up = need_up[tuple(ps.T)]
        down = need_down[tuple(ps.T)]
        feasible = (room_up >= up[:, None] - 1e-9) & (room_down >= down[:, None] - 1e-9)
        feasible &= np.isfinite(cost)
        best = np.argmin(np.where(feasible, cost, np.inf), axis=1)
        ok = feasible.any(axis=1)
        hit = cubes[0][:, np.arange(len(ps)), best][:, ok].ravel()
        flat_status[hit] = np.where(flat_status[hit] == _PUBLISHED, _SECONDARY, flat_status[hit])
        if not ok.all():
            short = ~ok
            met = _several_hypercubes(
                tuple(a[:, short] for a in cubes),  # type: ignore[arg-type]
                values,
                status,
                big,
                up[short],
                down[short],
            )
            unprotected.extend(tuple(int(x) for x in cell) for cell in ps[short][~met])
    return unprotected


def _top(keys: FloatArray, n: int) -> npt.NDArray[np.int64]:
    """Return, per row, the positions of the ``n`` largest keys, largest first, ties by position
    (what a stable sort of ``-keys`` puts first), without sorting whole rows.

    >>> _top(np.array([[1.0, 5.0, 5.0, 2.0, 7.0]]), 3).tolist()
    [[4, 1, 2]]
    """
    if n >= keys.shape[1]:
        return np.argsort(-keys, axis=1, kind="stable")
    # Take every key above the n-th largest, and of the keys equal to it the first ones, which
    # is the set a stable sort puts first; then order that set alone.
    nth = -np.partition(-keys, n - 1, axis=1)[:, n - 1 : n]
    above = keys > nth
    tied = keys == nth
    room = n - above.sum(axis=1, keepdims=True)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= room))
    rows = np.arange(len(keys))[:, None]
    positions = np.nonzero(chosen)[1].reshape(len(keys), n)
    order = np.argsort(-keys[rows, positions], axis=1, kind="stable")
    return positions[rows, order]


@functools.cache
def _corner_bits(ndim: int) -> npt.NDArray[np.int64]:
    """Return the 2^ndim corners of a hypercube as rows of 0 (the primary's index) and 1 (the
    alternative's), the primary's own corner first."""
    bits = np.array(list(itertools.product((0, 1), repeat=ndim)), dtype=np.int64)
    bits.flags.writeable = False
    return bits


def _hypercubes(
    ps: npt.NDArray[np.int64], choices: list[npt.NDArray[np.int64]], shape: tuple[int, ...]
) -> tuple[npt.NDArray[np.int64], BoolArray, npt.NDArray[np.int64]]:
    """Return every candidate hypercube of each primary cell, as flat indices of its corners,
    which corners move against the primary, and how many margin coordinates each corner has.

    Candidate ``c`` of a primary takes, in dimension ``j``, the alternative
    ``choices[j][i, c_j]``, the candidates running over the grid of the ``c_j`` in C order. The
    arrays are corner x primary x candidate, the corners in the order of :func:`_corner_bits`
    (the primary's own first), so reductions over the corners run along the leading axis.

    :param ps: the primary cells (primary x dimension).
    :param choices: per dimension, the alternative indices offered to each primary.
    :param shape: the table's shape, margins included.
    """
    ndim = len(choices)
    n = len(ps)
    totals = np.array(shape) - 1
    strides = [math.prod(shape[j + 1 :]) for j in range(ndim)]
    grid = tuple(c.shape[1] for c in choices)
    bits = _corner_bits(ndim)
    lead = (len(bits), n)
    flat = (ps @ np.array(strides, np.int64)).reshape(1, n, *([1] * ndim))
    sign = np.zeros((1, 1, *([1] * ndim)), np.bool_)
    margins = np.zeros((1, 1, *([1] * ndim)), np.int64)
    for j, choice in enumerate(choices):
        along = [1, n, *([1] * ndim)]
        along[2 + j] = grid[j]
        alternative = choice.reshape(along)
        own = ps[:, j].reshape(1, n, *([1] * ndim))
        bit = bits[:, j].reshape(-1, 1, *([1] * ndim)) == 1
        flat = flat + np.where(bit, (alternative - own) * strides[j], 0)
        # Moving value between a part and its total keeps the sign: no flip.
        sign = sign ^ (bit & (alternative != totals[j]) & (own != totals[j]))
        margins = margins + np.where(bit, alternative == totals[j], own == totals[j])
    full = (*lead, *grid)
    return (
        np.broadcast_to(flat, full).reshape(*lead, -1),
        np.broadcast_to(sign, full).reshape(*lead, -1),
        np.broadcast_to(margins, full).reshape(*lead, -1),
    )


def _rooms(
    cubes: tuple[npt.NDArray[np.int64], BoolArray, npt.NDArray[np.int64]],
    values: FloatArray,
    status: npt.NDArray[np.int8],
    big: float,
    used: tuple[FloatArray, FloatArray] | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Return, per primary and candidate hypercube, how far the primary can rise and fall within
    it, and the cost of hiding its corners.

    :param cubes: the candidates, as :func:`_hypercubes` returns them.
    :param values: the table's values (C-contiguous).
    :param status: the cells' status codes (C-contiguous).
    :param big: the cost of one margin coordinate of a newly hidden cell.
    :param used: what earlier hypercubes of the same primary already take off each corner's room
        to rise (first) and to fall (second), aligned with the corners, if any.
    """
    where, is_minus, margin_count = cubes
    at_corners = values.reshape(-1)[where]
    up_values, down_values = at_corners, at_corners
    if used is not None:
        up_values = at_corners - used[0]
        down_values = at_corners - used[1]
    # Corner 0 of every candidate is the primary itself.
    at_primary = down_values[0, :, :1]
    plus_others = ~is_minus
    plus_others[0] = False
    room_up = np.where(is_minus, up_values, np.inf).min(axis=0)
    room_down = np.minimum(np.where(plus_others, down_values, np.inf).min(axis=0), at_primary)
    new = status.reshape(-1)[where] == _PUBLISHED
    cost_at = np.where(new, up_values + big * margin_count, 0.0)
    # Hiding the grand total would hide the size of the whole table: never as secondary.
    cost_at[new & (margin_count == len(values.shape))] = np.inf
    return room_up, room_down, cost_at.sum(axis=0)


def _several_hypercubes(
    cubes: tuple[npt.NDArray[np.int64], BoolArray, npt.NDArray[np.int64]],
    values: FloatArray,
    status: npt.NDArray[np.int8],
    big: float,
    need_up: FloatArray,
    need_down: FloatArray,
    rounds: int = 4,
) -> BoolArray:
    """Protect primary cells with several hypercubes each, when no single one has room enough.

    Each round gives every cell still short the candidate that covers most of what it still
    needs (the cheapest among equals) and hides its corners. A cell's hypercubes add their
    rooms once what its earlier ones use is taken off their corners: a corner's use is kept
    for that cell's own candidates only, so the cells are handled together, round by round.

    :param cubes: the candidates of the cells, as :func:`_hypercubes` returns them.
    :param need_up: how far each cell must be able to rise ...
    :param need_down: ... and fall.
    :return: whether each cell's needs were met.
    """
    where, is_minus, _ = cubes
    n = where.shape[1]
    need_up, need_down = need_up.astype(np.float64), need_down.astype(np.float64)
    used_up, used_down = np.zeros(where.shape), np.zeros(where.shape)
    active = np.ones(n, np.bool_)
    flat_status = status.reshape(-1)
    for _ in range(rounds):
        active &= (need_up > 1e-9) | (need_down > 1e-9)
        if not active.any():
            break
        room_up, room_down, cost = _rooms(cubes, values, status, big, (used_up, used_down))
        gain = np.minimum(room_up, need_up[:, None]) / np.maximum(need_up, 1e-9)[:, None]
        gain += np.minimum(room_down, need_down[:, None]) / np.maximum(need_down, 1e-9)[:, None]
        gain = np.where(np.isfinite(cost), gain, -np.inf)
        best = np.lexsort((cost, -gain), axis=1)[:, 0]
        rows = np.arange(n)
        # A cell that no candidate helps any more stops here, short of its needs.
        active &= gain[rows, best] > 0
        rise = np.where(active, np.minimum(room_up[rows, best], need_up), 0.0)
        fall = np.where(active, np.minimum(room_down[rows, best], need_down), 0.0)
        cube = where[:, rows, best].T  # cell x corner
        rising = is_minus[:, rows, best].T
        # The primary falls with the corners that move with it (its own corner 0 included).
        falling = ~rising
        # Which of each cell's candidate corners is one of the chosen cube's corners.
        same = where[:, :, :, None] == cube[None, :, None, :]
        used_up += rise[None, :, None] * (same & rising[None, :, None, :]).any(axis=3)
        used_down += fall[None, :, None] * (same & falling[None, :, None, :]).any(axis=3)
        hit = cube[active].ravel()
        flat_status[hit] = np.where(flat_status[hit] == _PUBLISHED, _SECONDARY, flat_status[hit])
        need_up -= rise
        need_down -= fall
    return (need_up <= 1e-9) & (need_down <= 1e-9)


def _long_form(
    dimensions: Sequence[str],
    cats: list[list[str]],
    values: FloatArray,
    status: npt.NDArray[np.int8],
    published: FloatArray,
) -> pd.DataFrame:
    """Return one row per cell (margins included), suppressed values as ``<NA>``."""
    labels = [np.array([*c, TOTAL], dtype=object) for c in cats]
    index = np.indices(values.shape).reshape(values.ndim, -1)
    data: dict[str, object] = {
        d: pd.array(labels[j][index[j]], dtype="string") for j, d in enumerate(dimensions)
    }
    flat_status = status.ravel()
    integral = bool(np.array_equal(published, np.round(published)))
    shown = pd.Series(published.ravel(), dtype="Int64" if integral else "Float64")
    data["value"] = shown.mask(flat_status != _PUBLISHED)
    data["status"] = pd.Categorical.from_codes(
        flat_status.astype(np.int64), categories=pd.Index(list(_STATUS_NAMES))
    )
    cells = pd.DataFrame(data)
    # Totals that are not published are not cells of the release at all.
    kept: pd.DataFrame = cells.loc[flat_status != _UNPUBLISHED].reset_index(drop=True)
    return kept


def _max_flow(n_nodes: int, edges: list[tuple[int, int, int]], source: int, sink: int) -> list[int]:
    """Return the flow on every edge of a maximum flow from ``source`` to ``sink``.

    Solved by ``scipy.sparse.csgraph.maximum_flow`` (Dinic's algorithm). No two edges may join
    the same pair of nodes in the same direction (their capacities would merge).

    :param n_nodes: number of nodes.
    :param edges: (tail, head, capacity) triples.

    >>> _max_flow(4, [(0, 1, 2), (0, 2, 1), (1, 3, 1), (2, 3, 2), (1, 2, 1)], 0, 3)
    [2, 1, 1, 2, 1]
    """
    # Imported here, like the integer program's solver: only controlled rounding needs it.
    from scipy.sparse import csr_array
    from scipy.sparse.csgraph import maximum_flow

    if len({(tail, head) for tail, head, _ in edges}) != len(edges):
        raise TableError("a flow network has two edges between the same nodes")
    tails = np.array([e[0] for e in edges], dtype=np.int32)
    heads = np.array([e[1] for e in edges], dtype=np.int32)
    capacities = np.array([e[2] for e in edges], dtype=np.int32)
    graph = csr_array((capacities, (tails, heads)), shape=(n_nodes, n_nodes))
    flow = maximum_flow(graph, source, sink).flow
    # The flow matrix is antisymmetric (a reverse edge carries minus the flow); an edge's own
    # flow is its entry, never negative.
    return [max(int(flow[t, h]), 0) for t, h in zip(tails.tolist(), heads.tolist(), strict=True)]


def _controlled_round(inner: FloatArray, base: int) -> FloatArray:
    """Return the inner cells of a one- or two-dimensional table rounded to multiples of
    ``base`` so that the rounded cells add up to rounded totals (controlled rounding).

    Every cell and total moves to one of its two adjacent multiples (a multiple stays as it is).
    Whether cell (i, j) is rounded up is a 0/1 flow from row i to column j; each row and column
    must round up between the floor and the ceiling of its residuals over the base. The
    fractional flow residual/base meets those bounds, so an integral one exists (the bounds of
    a network flow are integral) and a maximum flow finds it.

    >>> _controlled_round(np.array([[3.0, 4.0], [2.0, 6.0]]), 5).tolist()
    [[5.0, 5.0], [0.0, 5.0]]
    """
    table = inner.reshape(1, -1) if inner.ndim == 1 else inner
    counts = np.rint(table).astype(np.int64)
    residual = counts % base
    n_rows, n_cols = residual.shape
    source, sink, super_source, super_sink = (
        0,
        n_rows + n_cols + 1,
        n_rows + n_cols + 2,
        n_rows + n_cols + 3,
    )
    bounded: list[tuple[int, int, int, int]] = []  # tail, head, lower, upper
    for i, total in enumerate(residual.sum(axis=1).tolist()):
        bounded.append((source, 1 + i, total // base, -(-total // base)))
    cells = np.argwhere(residual > 0)
    for i, j in cells.tolist():
        bounded.append((1 + i, 1 + n_rows + j, 0, 1))
    for j, total in enumerate(residual.sum(axis=0).tolist()):
        bounded.append((1 + n_rows + j, sink, total // base, -(-total // base)))
    grand = int(residual.sum())
    bounded.append((sink, source, grand // base, -(-grand // base)))
    # Lower bounds become demands served from a super source, the usual reduction.
    excess = [0] * (n_rows + n_cols + 4)
    edges = []
    for tail, to, lower, upper in bounded:
        edges.append((tail, to, upper - lower))
        excess[to] += lower
        excess[tail] -= lower
    for node, amount in enumerate(excess):
        if amount > 0:
            edges.append((super_source, node, amount))
        elif amount < 0:
            edges.append((node, super_sink, -amount))
    flow = _max_flow(n_rows + n_cols + 4, edges, super_source, super_sink)
    if sum(f for (tail, _, _), f in zip(edges, flow, strict=True) if tail == super_source) != sum(
        a for a in excess if a > 0
    ):
        raise TableError("controlled rounding found no solution (this should not happen)")
    up = np.zeros_like(counts)
    first_cell = n_rows
    for k, (i, j) in enumerate(cells.tolist()):
        up[i, j] = flow[first_cell + k]
    rounded = counts - residual + base * up
    return rounded.reshape(inner.shape).astype(np.float64)


def _round_by_integer_program(inner: FloatArray, base: int) -> FloatArray:
    """Return the inner cells of a table of any dimension rounded to multiples of ``base`` so
    that the rounded cells add up to rounded totals in every direction (controlled rounding).

    From three dimensions on, a controlled rounding need not exist (Causey, Cox & Ernst, 1985),
    so it is found, or shown not to exist, by a 0/1 integer program solved with HiGHS
    (``scipy.optimize.milp``), as tau-ARGUS does. Every cell, margin or inner, whose count is
    not a multiple of the base gets one binary: rounded down (0) or up (1); a multiple stays.
    One equality per line of the table (all cells that differ in one coordinate only, totals
    included) says that the rounded parts add up to their rounded total; together these make
    every margin the sum of its rounded inner cells.

    The program is a feasibility problem, with no objective, so the result is *a* controlled
    rounding, not the closest one: minimising the total absolute change as well took HiGHS 5 to
    200 s here on a 4-dimensional CTDC table (gender x age x year x sub-region) whose
    feasibility it settles in 0.05 s, for a total change 10-17 % smaller. As a tie-break, each
    binary says whether its cell goes *away* from its nearest multiple, which leans the search
    towards nearest multiples; on that table it cut the total change by 14 % at base 10, 1 % at
    base 5 and not at all at base 3, so it is a hint, not a promise. HiGHS is deterministic
    (checked across runs): the same table always gets the same rounding (two roundings of one
    table, published apart, could be averaged).

    :param inner: the inner cells (no margins), counts.
    :param base: the rounding base (at least 2).
    :raises TableError: when no controlled rounding exists, or HiGHS stops undecided.

    >>> _round_by_integer_program(np.array([[[3.0, 4.0], [2.0, 6.0]]]), 5).tolist()
    [[[5.0, 5.0], [0.0, 5.0]]]

    Three cells of 5 in a 2 x 2 x 2 table, base 10: each pair shares a plane whose sum (10) is a
    multiple and must stay, so of each pair one cell goes up and the other down, which three
    cells cannot all do.

    >>> cube = np.zeros((2, 2, 2))
    >>> cube[0, 0, 0] = cube[0, 1, 1] = cube[1, 1, 0] = 5
    >>> _round_by_integer_program(cube, 10)
    Traceback (most recent call last):
    ...
    disclosure_control.sdc.tables.TableError: no controlled rounding to base 10 exists ...
    """
    # Imported here: only tables of three or more dimensions need the solver.
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_array

    full = _with_margins(np.rint(inner)).astype(np.int64)
    residual = full % base
    free = residual > 0
    n_free = int(free.sum())
    variable = np.full(full.shape, -1, np.int64)
    variable[free] = np.arange(n_free)
    # x = 1 rounds up; y = 1 rounds away from the nearest multiple (up when the residual is
    # under half the base). x = y, or x = 1 - y for the cells whose nearest multiple is above.
    above = (2 * residual[free] > base).astype(np.int64)
    sign = 1 - 2 * above
    rows, columns, coefficients, targets = [], [], [], []
    n_rows = 0
    for axis in range(full.ndim):
        size = full.shape[axis]
        lines = np.moveaxis(variable, axis, -1).reshape(-1, size)
        line_residuals = np.moveaxis(residual, axis, -1).reshape(-1, size)
        # sum of parts - total, in steps of the base: the up-roundings of the parts less that
        # of the total must make up for the residuals the floors leave out.
        target = line_residuals[:, :-1].sum(axis=1) - line_residuals[:, -1]
        used = (lines >= 0).any(axis=1)
        lines, target = lines[used], target[used] // base
        line, position = np.nonzero(lines >= 0)
        cell = lines[line, position]
        coefficient = np.where(position == size - 1, -1, 1)
        rows.append(line + n_rows)
        columns.append(cell)
        coefficients.append(coefficient * sign[cell])
        # Substituting x = 1 - y moves the constant to the right-hand side.
        targets.append(target - np.bincount(line, coefficient * above[cell], len(lines)))
        n_rows += len(lines)
    shape_text = " x ".join(str(s) for s in inner.shape)
    where = f"{inner.ndim}-dimensional table ({shape_text} categories)"
    if n_free:
        matrix = csr_array(
            (
                np.concatenate(coefficients).astype(np.float64),
                (np.concatenate(rows), np.concatenate(columns)),
            ),
            shape=(n_rows, n_free),
        )
        rhs = np.concatenate(targets).astype(np.float64)
        result = milp(
            np.zeros(n_free),
            constraints=LinearConstraint(matrix, rhs, rhs),
            integrality=np.ones(n_free),
            bounds=Bounds(0.0, 1.0),
        )
        if result.status == 2:
            raise TableError(
                f"no controlled rounding to base {base} exists for this {where}: no choice of"
                " adjacent multiples makes the rounded cells add up to the rounded margins in"
                " every direction; publish it unrounded, round to another base, or drop a"
                " dimension"
            )
        if result.x is None:
            raise TableError(
                f"controlled rounding to base {base} of this {where} was not decided by the"
                f" solver: {result.message}"
            )
        away = np.rint(result.x).astype(np.int64)
        up = np.where(above == 1, 1 - away, away)
    else:
        up = np.zeros(0, np.int64)
    rounded = full - residual
    rounded[free] += base * up
    inner_index = tuple(slice(0, s) for s in inner.shape)
    # The solver works in floating point: check the one promise made before keeping it.
    result_inner = rounded[inner_index].astype(np.float64)
    if not np.array_equal(_with_margins(result_inner), rounded):
        raise TableError(f"controlled rounding to base {base} of this {where} failed to add up")
    return result_inner


def _rounded(values: FloatArray, base: int | None) -> FloatArray:
    """Return the table (margins included) with controlled rounding, or as it is.

    Tables of one or two dimensions always have a controlled rounding, found exactly by a
    maximum flow; larger ones need the integer program, which may prove there is none.

    :raises TableError: for a table of three or more dimensions with no controlled rounding.
    """
    if base is None:
        return values
    inner = values[tuple(slice(0, s - 1) for s in values.shape)]
    if values.ndim <= 2:
        return _with_margins(_controlled_round(inner, base))
    return _with_margins(_round_by_integer_program(inner, base))


def frequency_table(
    frame: pd.DataFrame,
    dimensions: Sequence[str],
    policy: TablePolicy | None = None,
    domains: Mapping[str, Sequence[str]] | None = None,
    margins: bool = True,
    secondary: bool = True,
) -> SafeTable:
    """Return the protected frequency table of the records over one to four dimensions.

    :param frame: the case records; with the hub-internal person key as a column, a cell's
        threshold counts its distinct persons (the published value stays its records).
    :param dimensions: the columns to cross (1 to 4).
    :param policy: threshold, zero rule and rounding (default: threshold 10, zeros published).
    :param domains: categories of some dimensions, so that empty categories appear (as zeros);
        a value outside its declared domain is an error.
    :param margins: publish the totals too (``False``: inner cells only; the totals are then
        marked ``unpublished`` and hidden like suppressed cells).
    :param secondary: apply secondary suppression; ``False`` gives primary suppression alone,
        which is NOT safe and exists to show (and test) what differencing recovers.
    :raises TableError: for a bad dimension, a value outside its domain, or a rounding base
        to which a table of three or four dimensions has no controlled rounding.
    """
    policy = policy if policy is not None else TablePolicy()
    if not 1 <= len(dimensions) <= 4:
        raise TableError(f"a table has 1 to 4 dimensions, got {len(dimensions)}")
    cats = _categories(frame, dimensions, domains)
    values = _with_margins(_inner_counts(frame, dimensions, cats))
    persons = _persons_with_margins(frame, dimensions, cats)
    # The threshold counts persons when the records carry the person key: eleven records of
    # three people are three people to tell apart.
    counted = values if persons is None else persons
    small = counted < policy.threshold
    primary = small & ((values > 0) | policy.suppress_zeros)
    totals = np.array(values.shape) - 1
    margin = (np.indices(values.shape) == totals.reshape(-1, *([1] * values.ndim))).any(axis=0)
    if not margins:
        primary &= ~margin
    status = np.where(primary, _PRIMARY, _PUBLISHED).astype(np.int8)
    if not margins:
        status[margin] = _UNPUBLISHED
    unprotected: list[tuple[int, ...]] = []
    if margins and counted.flat[-1] < policy.threshold and primary.flat[-1]:
        # The grand total itself is small: no arrangement of margins can hide it.
        status[status == _PUBLISHED] = _SECONDARY
        unprotected = [tuple(int(i) for i in np.unravel_index(values.size - 1, values.shape))]
    elif primary.any() and secondary:
        # A primary cell must be able to reach the threshold, so the margins never prove it
        # small; an inner cell must also be able to reach zero, so they never prove anyone is
        # there. A margin cell falls with its parts, which a hypercube moves one at a time, so
        # it must only be able to fall by one (its parts are primary cells themselves).
        need_up = np.maximum(policy.threshold - values, 1.0)
        need_down = np.where(margin, np.minimum(values, 1.0), values)
        unprotected = _hypercube_suppression(values, status, need_up, need_down)
    published = _rounded(values, policy.rounding_base)
    cells = _long_form(dimensions, cats, values, status, published)
    labels = [[*c, TOTAL] for c in cats]
    return SafeTable(
        tuple(dimensions),
        tuple(tuple(c) for c in cats),
        cells,
        values,
        status,
        tuple(tuple(labels[j][i] for j, i in enumerate(cell)) for cell in unprotected),
        policy.rounding_base,
    )


def magnitude_table(
    frame: pd.DataFrame,
    dimensions: Sequence[str],
    value: str,
    contributor: str | None = None,
    policy: TablePolicy | None = None,
    domains: Mapping[str, Sequence[str]] | None = None,
) -> SafeTable:
    """Return the protected table of sums of ``value``, with threshold and dominance rules.

    A cell is primary when it has fewer contributors than the threshold, when its ``n`` largest
    contributors hold more than ``k`` percent of it, or when the second largest contributor
    could estimate the largest within ``p`` percent (total - largest - second < p % of largest).
    Secondary suppression then hides each such cell within p % of its largest contribution.

    :param frame: the case records.
    :param dimensions: the columns to cross (1 to 4).
    :param value: the non-negative numeric column to sum.
    :param contributor: the column naming who contributed each record (a partner, say); each
        record is its own contributor when ``None``.
    :param policy: threshold and dominance parameters.
    :param domains: categories of some dimensions.
    :raises TableError: for negative or non-numeric values, or a rounding base to which a
        table of three or four dimensions has no controlled rounding.
    """
    policy = policy if policy is not None else TablePolicy()
    if not 1 <= len(dimensions) <= 4:
        raise TableError(f"a table has 1 to 4 dimensions, got {len(dimensions)}")
    amounts = pd.to_numeric(frame[value], errors="coerce")
    bad = amounts.isna() | (amounts < 0)
    if bad.any():
        row = frame.index[int(np.flatnonzero(bad.to_numpy())[0])]
        raise TableError(
            f"column {value!r}, row {row}: {frame[value].loc[row]!r} is not a non-negative number"
        )
    cats = _categories(frame, dimensions, domains)
    shape = tuple(len(c) + 1 for c in cats)
    codes = {
        d: np.asarray(
            pd.Categorical(frame[d].astype("string").fillna(""), categories=c).codes, np.int64
        )
        for d, c in zip(dimensions, cats, strict=True)
    }
    unit = np.arange(len(frame)) if contributor is None else pd.factorize(frame[contributor])[0]
    totals = np.zeros(shape)
    counts = np.zeros(shape)
    top = np.zeros((policy.dominance_n + 1, *shape))
    # Every margin is its own group-by: a contributor's share of a margin cell is the sum of
    # its contributions over all the cells the margin adds up.
    for mask in itertools.product((False, True), repeat=len(dimensions)):
        coords = {
            d: (np.full(len(frame), len(c)) if margin else codes[d])
            for d, c, margin in zip(dimensions, cats, mask, strict=True)
        }
        grouped = (
            pd.DataFrame({**coords, "__unit": unit, "__amount": amounts.to_numpy(float)})
            .groupby([*dimensions, "__unit"], sort=False)["__amount"]
            .sum()
            .reset_index()
            .sort_values("__amount", ascending=False, kind="stable")
        )
        keys = tuple(grouped[d].to_numpy(np.int64) for d in dimensions)
        flat = np.ravel_multi_index(keys, shape)
        np.add.at(totals.reshape(-1), flat, grouped["__amount"].to_numpy())
        np.add.at(counts.reshape(-1), flat, 1.0)
        rank = grouped.groupby(list(dimensions), sort=False).cumcount().to_numpy()
        for r in range(policy.dominance_n + 1):
            pick = rank == r
            top[r].reshape(-1)[flat[pick]] = grouped["__amount"].to_numpy()[pick]
    with np.errstate(divide="ignore", invalid="ignore"):
        dominated = top[: policy.dominance_n].sum(axis=0) > policy.dominance_k / 100 * totals
        p_rule = totals - top[0] - top[1] < policy.p_percent / 100 * top[0]
    primary = (totals > 0) & ((counts < policy.threshold) | dominated | p_rule)
    status = np.where(primary, _PRIMARY, _PUBLISHED).astype(np.int8)
    need = np.maximum(policy.p_percent / 100 * top[0], 1e-9)
    unprotected: list[tuple[int, ...]] = []
    if primary.flat[-1]:
        status[status == _PUBLISHED] = _SECONDARY
        unprotected = [tuple(s - 1 for s in shape)]
    elif primary.any():
        unprotected = _hypercube_suppression(totals, status, need, np.minimum(need, totals))
    published = _rounded(totals, policy.rounding_base)
    labels = [[*c, TOTAL] for c in cats]
    return SafeTable(
        tuple(dimensions),
        tuple(tuple(c) for c in cats),
        _long_form(dimensions, cats, totals, status, published),
        totals,
        status,
        tuple(tuple(labels[j][i] for j, i in enumerate(cell)) for cell in unprotected),
        policy.rounding_base,
    )
