"""The person as the privacy unit: the column that says which records belong to one person.

One survivor may be recorded several times, by one partner or by several. Inside the hub, record
linkage gives every record of the analysis snapshot a person key in :data:`PERSON_COLUMN`; two
records with the same key are taken to be the same person, and a record that was not linked has
a key of its own. The column is a hub-internal integer: it is never published, never returned by
an API and never written to a release file. A frame without the column means one person per
record (the privacy unit of a case record).

DP releases bound each person's contribution to ``c`` records (:func:`bound_contributions`, or
OpenDP's own truncation in :mod:`disclosure_control.dp.plan`): a person's records beyond ``c`` are
dropped by a seeded draw that is uniform among that person's records, so which ones are kept
depends neither on record values nor on their order. Each person's kept records depend on that
person's records and the draw only, so removing one whole person removes at most ``c`` records
and leaves everyone else's untouched: a mechanism that is rho-zCDP for ``c`` records is rho-zCDP
for one person.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl

__all__ = [
    "CASE_RECORD",
    "DRAW_COLUMN",
    "MAX_RECORDS_PER_PERSON",
    "PERSON_COLUMN",
    "PrivacyUnit",
    "bound_contributions",
    "draws",
    "kept_by_draw",
    "person_keys",
]

PERSON_COLUMN = "_person"
DRAW_COLUMN = "_draw"
"""A hub-internal column of seeded draws: a person's records are kept in the order of their draw."""
MAX_RECORDS_PER_PERSON = 100
"""The largest contribution bound a policy may set (the noise grows in proportion to it)."""


_PERSON_WORDS = re.compile(r"one person, up to (\d+) records?")


@dataclass(frozen=True, slots=True)
class PrivacyUnit:
    """What one DP guarantee protects: one case record, or one person with up to ``c`` records.

    :param records_per_person: ``c``, the most records of one person a release counts; None
        when the privacy unit is the case record (each record its own person, nothing dropped)

    >>> PrivacyUnit(3).description
    'one person, up to 3 records'
    >>> PrivacyUnit(1).description, PrivacyUnit(None).description
    ('one person, up to 1 record', 'one case record')
    """

    records_per_person: int | None = None

    def __post_init__(self) -> None:
        c = self.records_per_person
        if c is not None and (
            isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= MAX_RECORDS_PER_PERSON
        ):
            raise ValueError(
                f"records_per_person must be an integer from 1 to {MAX_RECORDS_PER_PERSON}"
            )

    @property
    def description(self) -> str:
        """Return the unit in words, as every answer, ledger entry and release note states it."""
        c = self.records_per_person
        if c is None:
            return "one case record"
        return f"one person, up to {c} record{'s' if c != 1 else ''}"

    @classmethod
    def from_description(cls, text: str) -> PrivacyUnit | None:
        """Return the unit a :attr:`description` (as answers and notes store it) names, or None.

        The transparency log's old name of the case record, "case record", is read too.

        >>> PrivacyUnit.from_description("one person, up to 3 records")
        PrivacyUnit(records_per_person=3)
        >>> PrivacyUnit.from_description("case record") == CASE_RECORD
        True
        >>> PrivacyUnit.from_description("one group") is None
        True
        """
        if text in (CASE_RECORD.description, "case record"):
            return CASE_RECORD
        person = _PERSON_WORDS.fullmatch(text)
        if person is None or not 1 <= int(person.group(1)) <= MAX_RECORDS_PER_PERSON:
            return None
        return cls(int(person.group(1)))

    @property
    def bounded(self) -> bool:
        """Return True when releases bound each person's records (the unit is a person)."""
        return self.records_per_person is not None


CASE_RECORD = PrivacyUnit(None)
"""The case record as the privacy unit: each record its own person, none dropped."""


def person_keys(frame: pl.DataFrame | pd.DataFrame) -> pl.Series:
    """Return each record's person key, a record without one (or without the column) its own.

    Unlinked records get keys above every linked one, so no two of them, and none of them and a
    linked person, share a key.

    :param frame: records, with or without :data:`PERSON_COLUMN`

    >>> person_keys(pl.DataFrame({PERSON_COLUMN: [7, None, 7, None]})).to_list()
    [7, 9, 7, 11]
    >>> person_keys(pl.DataFrame({"x": ["a", "b"]})).to_list()
    [0, 1]
    """
    height = frame.shape[0]
    row = pl.Series(PERSON_COLUMN, np.arange(height, dtype=np.int64))
    if PERSON_COLUMN not in frame.columns:
        return row
    column = frame[PERSON_COLUMN]
    polars_column = pl.from_pandas(column) if isinstance(column, pd.Series) else column
    keys = polars_column.cast(pl.Int64).alias(PERSON_COLUMN)
    if keys.null_count() == 0:
        return keys
    linked = keys.drop_nulls()
    start = int(linked.max()) + 1 if linked.len() else 0  # type: ignore[arg-type]  # Int64 max
    return keys.fill_null(row + start).alias(PERSON_COLUMN)


def draws(height: int, seed: int | None = None) -> pl.Series:
    """Return ``height`` distinct draws in random order (a seeded permutation of 0..height-1).

    :param height: how many records
    :param seed: the generator's seed; None draws one from the operating system (the default
        outside tests: a fresh, unrecorded seed per snapshot)

    >>> sorted(draws(4, seed=1).to_list())
    [0, 1, 2, 3]
    """
    rng = np.random.default_rng(secrets.randbits(128) if seed is None else seed)
    return pl.Series(DRAW_COLUMN, rng.permutation(height), dtype=pl.UInt32)


def kept_by_draw(records_per_person: int, person: str, draw: str) -> pl.Expr:
    """Return the rule that keeps ``records_per_person`` records of each person, by their draw.

    It is OpenDP's own truncation (``truncate_per_group(c, keep=SortBy(draw))``):
    ``int_range(len).sort_by(draw).over(person) < c``. Sorting positions by a random permutation
    gives a random permutation, so each person keeps a uniformly random c-subset (at most all)
    of their records. The DP query plan and :func:`bound_contributions` both use it, so a query
    and a synthesizer given the same seed keep the same records.

    :param records_per_person: ``c``
    :param person: the person key column
    :param draw: the draw column
    """
    return pl.int_range(pl.len()).sort_by(pl.col(draw)).over(person) < records_per_person


def bound_contributions(
    frame: pl.DataFrame, records_per_person: int | None, seed: int | None = None
) -> pl.DataFrame:
    """Return the records left when each person keeps at most ``records_per_person`` of theirs.

    Which of a person's records are kept is decided by :func:`draws`: a uniformly random subset,
    the same for every call with the same seed. The kept records stay in their input order,
    and :data:`PERSON_COLUMN` is dropped from the result only if it was absent from the input.

    :param frame: records, with or without :data:`PERSON_COLUMN`
    :param records_per_person: ``c``; None keeps every record (the case record as the unit)
    :param seed: the draw's seed (None: a fresh one)

    >>> frame = pl.DataFrame({PERSON_COLUMN: [1, 1, 1, 2, None, None], "x": range(6)})
    >>> bounded = bound_contributions(frame, 2, seed=3)
    >>> bounded[PERSON_COLUMN].value_counts(sort=True).rows()[0], bounded.height
    ((1, 2), 5)
    """
    if records_per_person is None or frame.height == 0:
        return frame
    PrivacyUnit(records_per_person)
    keys = person_keys(frame).alias("__person")
    ranked = frame.with_columns(keys, draws(frame.height, seed).alias("__draw"))
    kept = ranked.filter(kept_by_draw(records_per_person, "__person", "__draw"))
    return kept.drop("__person", "__draw")
