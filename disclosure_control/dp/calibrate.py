"""Bounded calibration searches, shared by DP queries and DP synthesis.

Every search for a noise scale, a threshold or a spend runs through :func:`search`: OpenDP's
own ``binary_search`` between two bounds the caller must give. A float search ends after at
most about 1,100 halvings (the bits of a double) and an integer search after 32, so no
request can make a search spin; the bounds keep each step's work bounded too (OpenDP's
accuracy summary of a discrete Gaussian costs time in proportion to its scale).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import opendp.prelude as dp

__all__ = ["CalibrationError", "scale_for_loss", "search"]

N = TypeVar("N", int, float)


class CalibrationError(ValueError):
    """The value sought lies outside the bounds the search was allowed to explore."""


def search(predicate: Callable[[N], bool], low: N, high: N) -> N:
    """Return the boundary value of a monotone ``predicate`` between ``low`` and ``high``.

    The answer is on the side where ``predicate`` holds: the largest value that holds when it
    holds below the boundary, the smallest when it holds above.

    :param predicate: monotone in its argument (true then false, or false then true)
    :param low: the smallest value to try (int or float, like ``high``)
    :param high: the largest value to try; an int search needs ``high < 2**31``
    :raises CalibrationError: if the predicate does not change between ``low`` and ``high``

    >>> search(lambda x: x <= 0.25, 0.0, 1.0)
    0.25
    >>> search(lambda t: t >= 12, 2, 1000)
    12
    >>> search(lambda x: x <= 5.0, 0.0, 1.0)
    Traceback (most recent call last):
    ...
    disclosure_control.dp.calibrate.CalibrationError: the boundary is outside [0.0, 1.0]
    """
    if type(low) is not type(high) or not low < high:
        raise TypeError("search needs two bounds of one type, low < high")
    # OpenDP annotates the predicate as taking floats; it calls it with the bounds' type.
    untyped: Callable[[Any], bool] = predicate
    try:
        found: Any = dp.binary_search(untyped, bounds=(low, high), T=type(low))
    except ValueError as error:
        if "outside the bounds" in str(error) or "constant" in str(error):
            raise CalibrationError(f"the boundary is outside [{low}, {high}]") from None
        raise
    return cast(N, found)


#: How far above the inverse-square solution :func:`scale_for_loss` looks for OpenDP's agreement
#: (OpenDP rounds its privacy maps up by a few units in the last place, never by this much).
SCALE_SLACK = 2**-20


def scale_for_loss(loss: Callable[[float], float], target: float) -> float:
    """Return the smallest noise scale whose privacy loss, by OpenDP's own map, is within target.

    Every mechanism the hub calibrates (the Gaussian and discrete Gaussian mechanisms, noisy
    max under zCDP) loses ``loss(1) / scale**2``: the scale is solved from one probe. OpenDP
    rounds its maps up, so the solution can be a few units in the last place too small: it is
    nudged up twice (by 2**-44 and 2**-40 of itself), and failing that :func:`search` finds the
    boundary in ``[solution, solution * (1 + SCALE_SLACK)]``, so the
    calibration of any request ends after a bounded number of steps.

    :param loss: the privacy loss of the mechanism built with a given scale (decreasing)
    :param target: the loss the scale must stay within (> 0)
    :raises CalibrationError: if no scale in the searched range is within ``target``

    >>> scale_for_loss(lambda scale: 0.5 / scale**2, 0.125)
    2.0
    >>> scale = scale_for_loss(lambda scale: 0.3 / scale**2 + 1e-12, 0.1)
    >>> 0.3 / scale**2 + 1e-12 <= 0.1
    True
    """
    if not (math.isfinite(target) and target > 0):
        raise CalibrationError(
            f"the loss to calibrate to must be a finite number > 0, got {target}"
        )
    solved = math.sqrt(loss(1.0) / target)
    # Most often a nudge of a few units in the last place is all OpenDP's rounding needs.
    for nudge in (0.0, 2.0**-44, 2.0**-40):
        if loss(solved * (1 + nudge)) <= target:
            return solved * (1 + nudge)
    return search(lambda scale: loss(scale) <= target, solved, solved * (1 + SCALE_SLACK))
