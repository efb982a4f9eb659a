"""Integer encoding of columns and grouping into equivalence classes (internal helpers)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from disclosure_control.person import PERSON_COLUMN, person_keys

IntArray = npt.NDArray[np.int64]


def column_codes(column: pd.Series) -> tuple[IntArray, int]:
    """Return dense integer codes for a column (missing values get a code of their own).

    :param column: any column; categorical columns reuse their codes.
    :return: the codes and the number of distinct codes.
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = np.asarray(column.cat.codes, dtype=np.int64)
        size = len(column.cat.categories)
        # Categorical NA has code -1; give it the next free code so it is a value of its own.
        codes = np.where(codes < 0, size, codes)
        return codes, size + 1
    codes, uniques = pd.factorize(column, use_na_sentinel=False)
    return np.asarray(codes, dtype=np.int64), max(len(uniques), 1)


def combine(codes: Sequence[IntArray], sizes: Sequence[int]) -> tuple[IntArray, int]:
    """Return one dense code per row for the tuple of codes, and the number of distinct tuples.

    Codes are packed into one int64 key in mixed radix while the product of the sizes fits, and
    re-densified with a hash factorisation when it would not (so any number of columns works).

    >>> ids, n = combine([np.array([0, 1, 0]), np.array([2, 2, 2])], [2, 3])
    >>> ids.tolist(), n
    ([0, 1, 0], 2)
    """
    n_rows = len(codes[0]) if codes else 0
    if not codes:
        return np.zeros(n_rows, dtype=np.int64), 1 if n_rows else 0
    key = np.zeros(n_rows, dtype=np.int64)
    span = 1
    limit = 2**62
    for column, size in zip(codes, sizes, strict=True):
        if span * size >= limit:
            dense, uniques = pd.factorize(key)
            key = np.asarray(dense, dtype=np.int64)
            span = max(len(uniques), 1)
        key = key * size + column
        span *= size
    return densify(key, span)


def densify(key: IntArray, span: int) -> tuple[IntArray, int]:
    """Return dense codes (0 to n - 1) for keys in ``range(span)``, and n.

    >>> ids, n = densify(np.array([7, 2, 7]), 10)
    >>> ids.tolist(), n
    ([1, 0, 1], 2)
    """
    n_rows = len(key)
    if n_rows == 0:
        return key, 0
    if span <= 4 * n_rows + 1024:
        # Small key space: a bincount is cheaper than hashing.
        present = np.bincount(key, minlength=span) > 0
        remap = np.cumsum(present, dtype=np.int64) - 1
        return remap[key], int(remap[-1]) + 1
    dense, uniques = pd.factorize(key)
    return np.asarray(dense, dtype=np.int64), len(uniques)


def class_ids(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[IntArray, IntArray]:
    """Return each row's equivalence-class id and the size of every class.

    A class's size is the number of distinct persons in it when the frame carries the
    hub-internal person key (:data:`~disclosure_control.person.PERSON_COLUMN`; a record without
    a key is its own person), and its number of records otherwise: eleven records of three
    people are three people an intruder must tell apart, not eleven.

    :param frame: the case records.
    :param columns: the quasi-identifiers.
    :raises KeyError: naming the columns the frame lacks.

    >>> frame = pd.DataFrame({"g": ["a"] * 4 + ["b"], PERSON_COLUMN: [1, 1, 2, None, 3]})
    >>> class_ids(frame, ["g"])[1].tolist()
    [3, 1]
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"quasi-identifier(s) {missing} not among the columns of the data")
    encoded = [column_codes(frame[c]) for c in columns]
    ids, n_classes = combine([c for c, _ in encoded], [s for _, s in encoded])
    if PERSON_COLUMN not in frame.columns:
        return ids, np.bincount(ids, minlength=n_classes).astype(np.int64)
    return ids, distinct_per_class(ids, n_classes, person_keys(frame).to_numpy())


def distinct_per_class(ids: IntArray, n_classes: int, persons: IntArray) -> IntArray:
    """Return how many distinct persons each class holds.

    :param ids: each record's class id (dense, ``0 .. n_classes - 1``).
    :param n_classes: the number of classes.
    :param persons: each record's person key (every record has one).

    >>> distinct_per_class(np.array([0, 0, 1, 0]), 2, np.array([5, 5, 5, 6])).tolist()
    [2, 1]
    """
    pairs = pd.DataFrame({"c": ids, "p": persons}).drop_duplicates()
    return np.bincount(pairs["c"].to_numpy(), minlength=n_classes).astype(np.int64)
