"""Encode several case-record tables over one shared integer code book per column."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

#: The value an empty (not recorded) field takes once encoded; partner files are read as strings
#: with ``keep_default_na=False``, so "not recorded" arrives as the empty string.
MISSING = ""

IntMatrix = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SharedEncoding:
    """Integer codes for several tables that share one code book per column.

    :param columns: the column names, in matrix order.
    :param categories: for each column, the values in code order.
    :param matrices: one ``(rows, columns)`` code matrix per encoded table.
    """

    columns: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]
    matrices: tuple[IntMatrix, ...]

    @property
    def cardinalities(self) -> tuple[int, ...]:
        """Return the number of distinct values of each column over all tables."""
        return tuple(len(c) for c in self.categories)

    def missing_code(self, column_index: int) -> int:
        """Return the code of the empty value in a column, or -1 if no table has one."""
        values = self.categories[column_index]
        return values.index(MISSING) if MISSING in values else -1


def check_columns(frames: Sequence[tuple[str, pd.DataFrame]], columns: Sequence[str]) -> None:
    """Raise a ``ValueError`` naming the table and columns absent from any of the frames.

    :param frames: pairs of (table label, frame).
    :param columns: the columns every frame must hold.
    """
    for label, frame in frames:
        absent = [c for c in columns if c not in frame.columns]
        if absent:
            raise ValueError(f"{label} table lacks column(s) {absent}")


def encode_tables(frames: Sequence[pd.DataFrame], columns: Sequence[str]) -> SharedEncoding:
    """Encode the named columns of every frame over a shared code book.

    Values are compared as strings; a missing value (``pd.NA``) is the empty string, as in a
    partner file read with ``keep_default_na=False``.

    :param frames: tables of case records with the given columns.
    :param columns: the columns to encode.
    :return: the shared encoding, one matrix per frame in the same order.

    >>> a = pd.DataFrame({"gender": ["Female", "Male"]}, dtype="string")
    >>> b = pd.DataFrame({"gender": ["Male", ""]}, dtype="string")
    >>> enc = encode_tables([a, b], ["gender"])
    >>> enc.categories
    (('Female', 'Male', ''),)
    >>> enc.matrices[1].ravel().tolist()
    [1, 2]
    """
    check_columns([(f"#{i}", f) for i, f in enumerate(frames)], columns)
    sizes = [len(f) for f in frames]
    offsets = np.cumsum([0, *sizes])
    total = int(offsets[-1])
    codes = np.empty((total, len(columns)), dtype=np.int64)
    categories: list[tuple[str, ...]] = []
    for j, column in enumerate(columns):
        stacked = pd.concat(
            [f[column].astype("string").fillna(MISSING) for f in frames], ignore_index=True
        )
        column_codes, uniques = pd.factorize(stacked, sort=False)
        codes[:, j] = column_codes
        categories.append(tuple(str(u) for u in uniques))
    matrices = tuple(codes[offsets[i] : offsets[i + 1]] for i in range(len(frames)))
    return SharedEncoding(tuple(columns), tuple(categories), matrices)


def cell_index(matrix: IntMatrix, column_indices: Sequence[int], sizes: Sequence[int]) -> IntMatrix:
    """Return one mixed-radix cell number per row for a marginal over some columns.

    :param matrix: an encoded table.
    :param column_indices: which columns of the matrix form the marginal.
    :param sizes: the cardinality of every column of the matrix.

    >>> m = np.array([[0, 1], [1, 2]])
    >>> cell_index(m, [0, 1], [2, 3]).tolist()
    [1, 5]
    """
    cells = np.zeros(matrix.shape[0], dtype=np.int64)
    for j in column_indices:
        cells = cells * sizes[j] + matrix[:, j]
    return cells


def marginal_counts(
    matrix: IntMatrix, column_indices: Sequence[int], sizes: Sequence[int]
) -> npt.NDArray[np.float64]:
    """Count the rows in every cell of a marginal over some columns.

    :param matrix: an encoded table.
    :param column_indices: which columns form the marginal.
    :param sizes: the cardinality of every column of the matrix.

    >>> marginal_counts(np.array([[0], [0], [1]]), [0], [3]).tolist()
    [2.0, 1.0, 0.0]
    """
    n_cells = int(np.prod([sizes[j] for j in column_indices], dtype=np.int64))
    cells = cell_index(matrix, column_indices, sizes)
    return np.bincount(cells, minlength=n_cells).astype(np.float64)
