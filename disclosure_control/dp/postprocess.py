"""Post-processing of released counts: non-negative integers whose total stays consistent.

Post-processing touches only released values, so it costs no privacy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["nonnegative_integer_counts"]


def nonnegative_integer_counts(noisy: Sequence[float], total: int | None = None) -> list[int]:
    """Return the non-negative integers closest to ``noisy`` that add up to ``total``.

    The cells are projected (least squares) onto the counts that are >= 0 and sum to ``total``,
    then rounded by largest remainder so the sum survives rounding. Without ``total``, the
    total is the noisy cells' own sum, rounded and floored at zero: a table and its margins
    then agree, and the total is no further from the truth than the sum of the cells.

    :param noisy: the released counts of the cells of one table
    :param total: the total the cells must add up to (e.g. a separately released total)

    >>> nonnegative_integer_counts([5, -2, 3])
    [4, 0, 2]
    >>> nonnegative_integer_counts([10, 0, 0], total=12)
    [10, 1, 1]
    >>> nonnegative_integer_counts([-3, -1])
    [0, 0]
    >>> sum(nonnegative_integer_counts([0.4, 0.4, 0.4, 0.4, 0.4]))
    2
    """
    if total is None:
        total = max(0, round(math.fsum(noisy)))
    if total < 0:
        raise ValueError(f"a total of counts is >= 0, got {total}")
    if not noisy:
        if total:
            raise ValueError(f"no cells can add up to {total}")
        return []
    if total == 0:
        return [0] * len(noisy)
    # Euclidean projection onto {x >= 0, sum x = total}: x_i = max(v_i - theta, 0), with theta
    # found from the values sorted in decreasing order (Held, Wolfe and Crowder, 1974).
    ordered = sorted(noisy, reverse=True)
    running = 0.0
    theta = 0.0
    for index, value in enumerate(ordered, start=1):
        running += value
        candidate = (running - total) / index
        if value - candidate > 0:
            theta = candidate
    projected = [max(value - theta, 0.0) for value in noisy]
    floors = [math.floor(value) for value in projected]
    short = total - sum(floors)
    # Largest remainder; ties go to the earlier cell so the result is deterministic.
    by_remainder = sorted(range(len(noisy)), key=lambda i: (floors[i] - projected[i], i))
    for index in by_remainder[: max(short, 0)]:
        floors[index] += 1
    # Rounding error in theta can only overshoot by a unit; take it from the smallest remainder.
    for index in reversed(by_remainder if short < 0 else []):
        if short == 0:
            break
        if floors[index] > 0:
            floors[index] -= 1
            short += 1
    return floors
