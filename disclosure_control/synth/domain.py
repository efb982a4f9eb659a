"""Column domains of the record schema, and the encoding of case records over them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

#: A field left empty ("not recorded"): partner files are read with ``keep_default_na=False``.
MISSING = ""

IntMatrix = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Domain:
    """The public domain of every synthesised column, taken from the record schema.

    Every column's codes come from the schema, never from the data, so the shape of the model
    reveals nothing. Each column also takes the empty value (not recorded), encoded last.

    :param columns: column names, in order.
    :param codes: for each column, its codes (the empty value excluded).
    """

    columns: tuple[str, ...]
    codes: tuple[tuple[str, ...], ...]

    @classmethod
    def from_schema(
        cls, domains: Mapping[str, Sequence[str] | None], columns: Sequence[str] | None = None
    ) -> Domain:
        """Build a domain from the schema's mapping of column name to codes.

        :param domains: column name -> tuple of codes, or ``None`` for a column without an
            enumerated domain (such as a case number), which cannot be synthesised.
        :param columns: which columns to take, in order; all by default.

        >>> d = Domain.from_schema({"gender": ("Female", "Male"), "isAbduction": ("1",)})
        >>> d.cardinalities
        (3, 2)
        >>> Domain.from_schema({"caseNo": None})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: column 'caseNo' has no enumerated domain in the record schema; ...
        """
        chosen = list(domains) if columns is None else list(columns)
        if not chosen:
            raise ValueError("a synthetic domain needs at least one column")
        codes = []
        for column in chosen:
            if column not in domains:
                raise ValueError(f"column {column!r} is not in the record schema")
            values = domains[column]
            if values is None:
                raise ValueError(
                    f"column {column!r} has no enumerated domain in the record schema; "
                    "leave it out of the synthetic release"
                )
            as_text = tuple(str(v) for v in values)
            if MISSING in as_text or len(set(as_text)) != len(as_text):
                raise ValueError(
                    f"column {column!r}: codes must be distinct and non-empty "
                    "(the empty value is added for 'not recorded')"
                )
            codes.append(as_text)
        return cls(tuple(chosen), tuple(codes))

    @property
    def cardinalities(self) -> tuple[int, ...]:
        """Return each column's number of values, the empty value included."""
        return tuple(len(c) + 1 for c in self.codes)

    def encode(self, records: pd.DataFrame) -> IntMatrix:
        """Encode case records as one integer code per field, refusing values off the domain.

        :param records: case records as strings, holding every domain column.
        :raises ValueError: naming the first row and column whose value is not in the domain.

        >>> d = Domain.from_schema({"gender": ("Female", "Male")})
        >>> d.encode(pd.DataFrame({"gender": ["Male", "", "Female"]}, dtype="string")).ravel()
        array([1, 2, 0])
        """
        absent = [c for c in self.columns if c not in records.columns]
        if absent:
            raise ValueError(f"the case records lack schema column(s) {absent}")
        matrix = np.empty((len(records), len(self.columns)), dtype=np.int64)
        for j, (column, codes) in enumerate(zip(self.columns, self.codes, strict=True)):
            values = records[column].astype("string").fillna(MISSING)
            lookup = pd.Index([*codes, MISSING])
            encoded = lookup.get_indexer(pd.Index(values))
            bad = np.flatnonzero(encoded < 0)
            if bad.size:
                # The offending value is not echoed: error messages must never carry raw data.
                raise ValueError(
                    f"row {int(bad[0])}, column {column!r}: value is not in the schema's domain "
                    f"({bad.size} row(s) affected)"
                )
            matrix[:, j] = encoded
        return matrix

    def decode(self, matrix: IntMatrix) -> pd.DataFrame:
        """Turn an integer code matrix back into case records as strings.

        :param matrix: one row per record, one code per domain column.

        >>> d = Domain.from_schema({"gender": ("Female", "Male")})
        >>> d.decode(np.array([[1], [2]]))["gender"].tolist()
        ['Male', '']
        """
        data = {
            column: pd.array(
                np.array([*codes, MISSING], dtype=object)[matrix[:, j]], dtype="string"
            )
            for j, (column, codes) in enumerate(zip(self.columns, self.codes, strict=True))
        }
        return pd.DataFrame(data)
