"""Match a partner file's header cells to the record schema's fields by their declared spellings.

A header cell names a field when, folded by :func:`~contributors.schema.fold_header` (Unicode
normalised, case-folded, everything but letters and digits removed), it equals the folded form
of the field's name, its title (the schema's label), or one of its ``ctdhub:headerAliases``
(CTDC's older names such as ``yearRegister`` or ``CountryOfExploition``, and common variants).
So ``Country of Exploitation``, ``country_of_exploitation`` and ``CountryofExploitation`` all
name ``CountryOfExploitation``.

The hub reads every upload through :func:`match_headers`, and the partner toolkit shows its
answer (which header matched which field, which matched none) before anything leaves the
partner's machine. A header cell that names no field may be a value (a file without a header
row has a data row there), so anything that can leave the machine refers to such a column by
its position only: :attr:`HeaderMatch.label`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from contributors.schema import RecordSchema, fold_header, load_schema

__all__ = ["HeaderMapping", "HeaderMatch", "match_headers", "rename_columns"]


@dataclass(frozen=True)
class HeaderMatch:
    """One header cell and the schema field it names, if any.

    :param position: the column's position in the file, counted from 1.
    :param header: the header cell as written, stripped. It may hold personal data when it
        names no field: show it only on the partner's own machine, never send or log it.
    :param field: the schema field it names, or ``None``.
    :param spelling: how it named the field: ``name`` (the field's name, up to case, spaces
        and punctuation), ``title`` (the schema's label) or ``alias`` (a declared alias);
        ``None`` when it names no field.
    :param duplicate_of: the position of an earlier column naming the same field (this one
        is then not used for the field), else ``None``.
    """

    position: int
    header: str
    field: str | None
    spelling: str | None
    duplicate_of: int | None = None

    @property
    def label(self) -> str:
        """Return a way to refer to this column that never quotes an unknown header.

        >>> HeaderMatch(3, "Maria Lopez", None, None).label
        'column 3'
        >>> HeaderMatch(2, "Gender ", "gender", "name").label
        'gender'
        """
        if self.field is not None and self.duplicate_of is None:
            return self.field
        if self.field is not None:
            return f"column {self.position} (a second {self.field})"
        return f"column {self.position}"

    def as_dict(self) -> dict[str, object]:
        """Return the match as a JSON-ready mapping that quotes a header only if it names a field.

        A header that names a field folds to a declared spelling, so it cannot hold a value.
        """
        return {
            "position": self.position,
            "header": self.header if self.field is not None else None,
            "field": self.field,
            "spelling": self.spelling,
            "duplicate_of": self.duplicate_of,
        }


@dataclass(frozen=True)
class HeaderMapping:
    """How every header cell of one file matched the schema.

    :param matches: one :class:`HeaderMatch` per column, in file order.
    :param missing_fields: schema fields no column names, in schema order.
    """

    matches: tuple[HeaderMatch, ...]
    missing_fields: tuple[str, ...]

    @property
    def fields(self) -> dict[str, int]:
        """Return each named field with the position (from 1) of the column that supplies it."""
        return {
            match.field: match.position
            for match in self.matches
            if match.field is not None and match.duplicate_of is None
        }

    @property
    def renamed(self) -> tuple[HeaderMatch, ...]:
        """Return the columns that name a field with another spelling than its exact name."""
        return tuple(
            match
            for match in self.matches
            if match.field is not None
            and match.duplicate_of is None
            and match.header != match.field
        )

    @property
    def unmatched(self) -> tuple[HeaderMatch, ...]:
        """Return the columns that name no field."""
        return tuple(match for match in self.matches if match.field is None)

    @property
    def duplicates(self) -> tuple[HeaderMatch, ...]:
        """Return the columns that name a field an earlier column already names."""
        return tuple(match for match in self.matches if match.duplicate_of is not None)


def match_headers(headers: Iterable[object], schema: RecordSchema | None = None) -> HeaderMapping:
    """Match header cells to the schema's fields by their declared spellings.

    Each column names at most one field and each field is supplied by its first column; a later
    column naming the same field is marked ``duplicate_of`` that first one.

    :param headers: the header cells in file order (``None`` for an empty cell).
    :param schema: the record schema; defaults to :func:`~contributors.schema.load_schema`.

    >>> mapping = match_headers(["case_no", " Country of Exploitation", "Age band",
    ...                          "Gender", "yearRegister", "year of registration", "nom"])
    >>> [(m.position, m.field, m.spelling)
    ...  for m in mapping.matches]  # doctest: +NORMALIZE_WHITESPACE
    [(1, 'caseNo', 'name'), (2, 'CountryOfExploitation', 'name'), (3, 'ageBroad', 'title'),
     (4, 'gender', 'name'), (5, 'yearOfRegistration', 'alias'),
     (6, 'yearOfRegistration', 'name'), (7, None, None)]
    >>> [m.label for m in mapping.duplicates + mapping.unmatched]
    ['column 6 (a second yearOfRegistration)', 'column 7']
    """
    schema = schema or load_schema()
    spellings = schema.header_spellings
    first: dict[str, int] = {}
    matches: list[HeaderMatch] = []
    for position, cell in enumerate(headers, start=1):
        header = "" if cell is None else str(cell).strip()
        named = spellings.get(fold_header(header)) if header else None
        if named is None:
            matches.append(HeaderMatch(position, header, None, None))
            continue
        field, spelling = named
        earlier = first.setdefault(field, position)
        duplicate_of = earlier if earlier != position else None
        matches.append(HeaderMatch(position, header, field, spelling, duplicate_of))
    return HeaderMapping(
        matches=tuple(matches),
        missing_fields=tuple(name for name in schema.names if name not in first),
    )


def rename_columns(frame: pd.DataFrame, mapping: HeaderMapping) -> pd.DataFrame:
    """Return ``frame`` with each column that names a field renamed to that field's name.

    Columns that name no field, and later columns naming a field already supplied, keep their
    header; the frame's columns must be the headers ``mapping`` was made from, in order.

    :param frame: a partner table.
    :param mapping: :func:`match_headers` of the frame's columns.

    >>> frame = pd.DataFrame({"Gender ": ["Female"], "Year of registration": ["2019"]})
    >>> list(rename_columns(frame, match_headers(frame.columns)).columns)
    ['gender', 'yearOfRegistration']
    """
    if len(mapping.matches) != frame.shape[1]:
        raise ValueError(
            f"the mapping has {len(mapping.matches)} columns and the frame {frame.shape[1]}"
        )
    names = [
        match.field if match.field is not None and match.duplicate_of is None else frame.columns[i]
        for i, match in enumerate(mapping.matches)
    ]
    renamed = frame.copy(deep=False)
    renamed.columns = pd.Index(names, dtype=object)
    return renamed
