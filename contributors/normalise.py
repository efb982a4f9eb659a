"""Validate partner case records against the record schema and normalise them, vectorised.

Rules, all driven by the record schema (``contributors/resources/record_schema.json``):

- whitespace around a cell is ignored; an empty cell, ``NULL`` or ``-99`` is missing;
- codes match case-insensitively (and with any dash spelling in age bands) and are stored in their
  canonical spelling; country fields take ISO 3166-1 alpha-2 or alpha-3 and store alpha-2 (``NA``
  is Namibia);
- the age-band field also takes an exact age in whole years, which is turned into its band and
  never stored; the majority status must agree with the age and is filled in from it when missing;
- booleans are ``1/0``, ``true/false`` or ``yes/no`` in any case; integers must lie in their range;
- a required field must be present and a unique field unique within the upload; the pseudonym
  field must not hold an e-mail address, phone number or date.

A row with any bad cell is rejected whole. Error reports never echo a value: they give the row,
the field, a coarse class of what was found and a specific reason.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from contributors.headers import HeaderMatch, match_headers
from contributors.identifiers import (
    IdentifierFinding,
    classify_value,
    factorize_cells,
    identifier_kinds,
    missing_mask,
    screen_column,
)
from contributors.schema import RecordSchema, SchemaField, load_schema

__all__ = [
    "ERROR_LIMIT",
    "MAX_EXACT_AGE",
    "ErrorTally",
    "RowError",
    "ValidationReport",
    "ValidationResult",
    "format_records",
    "row_numbers",
    "validate_records",
    "value_class",
]

#: At most this many row errors are listed per upload; the rest are only counted, so a huge bad
#: file cannot produce a huge response.
ERROR_LIMIT = 1000
#: Exact ages above this many years are rejected as implausible rather than banded as 48+.
MAX_EXACT_AGE = 120

#: How normalised booleans are written back (CTDC's spelling): false, true.
BOOLEAN_SPELLING = ("0", "1")
# a spreadsheet or a JSON writer may write a flag as the number 1.0 or 0.0
_TRUE = ("1", "1.0", "true", "yes")
_FALSE = ("0", "0.0", "false", "no")
# Every pattern here is bounded (linear-time); cells are capped before any of them runs.
_DASHES = re.compile(r"\s{0,8}[-\u2010-\u2015\u2212]{1,8}\s{0,8}")
_SPACES = re.compile(r"\s{1,64}")
_WHOLE = re.compile(r"^[+-]?\d{1,64}$")
# a whole number as a spreadsheet or JSON float writes it: 2019.0
_WHOLE_FLOAT = re.compile(r"^([+-]?\d{1,64})\.0{1,16}$")
_ISO_DATE = re.compile(r"^(\d{4})-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?$")
_DECIMAL = re.compile(r"^[+-]?(\d{1,64}[.,]\d{0,64}|[.,]\d{1,64})$")
_ALPHABETIC = re.compile(r"^[^\W\d_]{1,1024}$")
_ALPHANUMERIC = re.compile(r"^[\w./+-]{1,1024}$")

# outcome of one distinct cell value: missing, normalised, or invalid
_MISSING, _VALID, _INVALID = 0, 1, 2


@dataclass(frozen=True)
class RowError:
    """One rejected cell.

    :param row: the 1-based data row number (the header is not counted; empty rows the reader
        left out are).
    :param field: the schema field.
    :param value_class: a coarse class of what the cell held (never the value itself).
    :param reason: what is wrong, specifically.
    """

    row: int
    field: str
    value_class: str
    reason: str

    def as_dict(self) -> dict[str, object]:
        """Return the error as a JSON-ready mapping."""
        return {
            "row": self.row,
            "field": self.field,
            "value_class": self.value_class,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class ErrorTally:
    """How many bad cells of one field share one reason (never a value).

    :param field: the schema field.
    :param reason: what is wrong, as :attr:`RowError.reason` says it.
    :param cells: the bad cells of ``field`` with this reason, in the whole upload.
    """

    field: str
    reason: str
    cells: int

    def as_dict(self) -> dict[str, object]:
        """Return the tally as a JSON-ready mapping."""
        return {"field": self.field, "reason": self.reason, "cells": self.cells}


@dataclass
class ValidationReport:
    """What validation found in one upload.

    :param rows_total: data rows received.
    :param rows_accepted: rows with no bad cell.
    :param rows_rejected: rows with at least one bad cell.
    :param errors: the first :data:`ERROR_LIMIT` bad cells, by row then schema order.
    :param unknown_columns: uploaded columns that name no schema field, or a field an earlier
        column already supplies (the upload is refused), each named by position (``column 7``)
        since its header may be a value.
    :param missing_columns: schema columns the upload lacks (treated as all missing).
    :param errors_not_listed: bad cells beyond those listed.
    :param identifier_findings: columns that look like they carry direct identifiers.
    :param schema_version: the schema version the upload was checked against.
    :param columns: how each header matched the schema (:func:`contributors.headers.match_headers`).
    :param error_tally: every bad cell (listed or not) counted by field and reason, the most
        frequent first; the cells add up to :attr:`error_count`.
    """

    rows_total: int
    rows_accepted: int
    rows_rejected: int
    errors: list[RowError]
    unknown_columns: list[str]
    missing_columns: list[str]
    errors_not_listed: int = 0
    identifier_findings: list[IdentifierFinding] = field(default_factory=list)
    schema_version: str = ""
    columns: list[HeaderMatch] = field(default_factory=list)
    error_tally: list[ErrorTally] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.rows_total != self.rows_accepted + self.rows_rejected:
            raise ValueError(
                f"inconsistent report: {self.rows_total} rows is not {self.rows_accepted} "
                f"accepted + {self.rows_rejected} rejected"
            )
        tallied = sum(tally.cells for tally in self.error_tally)
        if tallied != self.error_count:
            raise ValueError(
                f"inconsistent report: the tally counts {tallied} bad cells, not {self.error_count}"
            )

    @property
    def ok(self) -> bool:
        """Tell whether the upload can be taken as it is: no bad row, column or identifier."""
        return not (self.rows_rejected or self.unknown_columns or self.identifier_findings)

    @property
    def error_count(self) -> int:
        """Return the number of bad cells, listed or not."""
        return len(self.errors) + self.errors_not_listed

    def as_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready mapping."""
        return {
            "ok": self.ok,
            "schema_version": self.schema_version,
            "rows_total": self.rows_total,
            "rows_accepted": self.rows_accepted,
            "rows_rejected": self.rows_rejected,
            "unknown_columns": list(self.unknown_columns),
            "missing_columns": list(self.missing_columns),
            "identifier_findings": [finding.as_dict() for finding in self.identifier_findings],
            "error_count": self.error_count,
            "errors_not_listed": self.errors_not_listed,
            "errors": [error.as_dict() for error in self.errors],
            "error_tally": [tally.as_dict() for tally in self.error_tally],
            "columns": [match.as_dict() for match in self.columns],
        }


@dataclass
class ValidationResult:
    """The normalised accepted rows, the report, and which input rows were accepted.

    :param records: accepted rows, one column per schema field in schema order; strings have
        dtype ``string``, integers ``Int64``, booleans ``boolean``; missing is ``<NA>``.
    :param report: the validation report.
    :param accepted_mask: one boolean per input row, ``True`` where the row was accepted.
    """

    records: pd.DataFrame
    report: ValidationReport
    accepted_mask: npt.NDArray[np.bool_]


def value_class(text: str, *, coded: bool = False) -> str:
    """Return a coarse class for a cell, safe to report where the value itself is not.

    :param text: the cell, stripped.
    :param coded: the cell belongs to a coded field, so a short word is reported as a code that
        is not in the domain.

    >>> [value_class(v) for v in ("a.b@example.org", "1990-02-03", "+44 20 7946 0000")]
    ['email-like', 'date', 'phone-like']
    >>> [value_class(v) for v in ("17", "17.5", "Femal", "AB12", "two words")]
    ['integer', 'decimal', 'alphabetic', 'alphanumeric', 'text']
    >>> value_class("Femal", coded=True)
    'code-not-in-domain'
    """
    kind = classify_value(text, pseudonym=True)
    if kind == "email":
        return "email-like"
    if kind == "date":
        return "date"
    if kind == "phone":
        return "phone-like"
    if _WHOLE.match(text):
        return "integer"
    if _DECIMAL.match(text):
        return "decimal"
    if coded and len(text) <= 40 and _ALPHANUMERIC.match(text):
        return "code-not-in-domain"
    if _ALPHABETIC.match(text):
        return "alphabetic"
    if _ALPHANUMERIC.match(text):
        return "alphanumeric"
    return "text"


def _code_key(text: str) -> str:
    """Return the matching key of a code: case-folded, dashes unified, spaces dropped.

    >>> [_code_key(v) for v in ("18--20", " 18 - 20", "18\u201420", "Case management")]
    ['18--20', '18--20', '18--20', 'casemanagement']
    """
    return _SPACES.sub("", _DASHES.sub("--", text.strip())).casefold()


@dataclass
class _Outcomes:
    """Per distinct value of one column: its state, normalised value, reason and class."""

    state: list[int] = field(default_factory=list)
    value: list[object] = field(default_factory=list)
    reason: list[str] = field(default_factory=list)
    value_class: list[str] = field(default_factory=list)
    exact_age: list[bool] = field(default_factory=list)
    # entries whose class is worked out only if their error is listed: the text to classify
    unclassified: dict[int, str] = field(default_factory=dict)

    def klass(self, entry: int) -> str:
        """Return an entry's value class, classifying it now if it was left for later."""
        text = self.unclassified.pop(entry, None)
        if text is not None:
            self.value_class[entry] = value_class(text)
        return self.value_class[entry]

    def add(
        self,
        state: int,
        value: object = None,
        reason: str = "",
        klass: str = "",
        exact_age: bool = False,
    ) -> None:
        self.state.append(state)
        self.value.append(value)
        self.reason.append(reason)
        self.value_class.append(klass)
        self.exact_age.append(exact_age)


def _not_in_domain(spec: SchemaField) -> str:
    codes = spec.codes or ()
    if spec.band_bounds is not None:
        return f"not one of the {len(codes)} CTDC age bands, nor an exact age in whole years"
    if spec.aliases:
        return "not an ISO 3166-1 alpha-2 or alpha-3 country code listed in countries.csv"
    if len(codes) <= 10:
        return f"not one of the {len(codes)} codes of {spec.name}: {', '.join(codes)}"
    return f"not one of the {len(codes)} codes of {spec.name}"


def _band_of(age: int, spec: SchemaField) -> str | None:
    for code, low, high in spec.band_bounds or ():
        if age >= low and (high is None or age <= high):
            return code
    return None


def _judge_coded(text: str, spec: SchemaField, lookup: dict[str, str], out: _Outcomes) -> None:
    code = lookup.get(_code_key(text))
    if code is not None:
        out.add(_VALID, code)
        return
    age = _whole_number(text) if spec.band_bounds is not None else None
    if age is not None:
        band = _band_of(age, spec) if 0 <= age <= MAX_EXACT_AGE else None
        if band is not None:
            out.add(_VALID, band, exact_age=True)
            return
        reason = f"an exact age must be between 0 and {MAX_EXACT_AGE} years"
        out.add(_INVALID, reason=reason, klass="integer")
        return
    out.add(_INVALID, reason=_not_in_domain(spec), klass=value_class(text, coded=True))


def _whole_number(text: str) -> int | None:
    """Return the whole number ``text`` writes (``2019`` or ``2019.0``), else ``None``.

    >>> [_whole_number(v) for v in ("2019", "2019.0", "+7", "2019.5", "x")]
    [2019, 2019, 7, None, None]
    """
    if _WHOLE.match(text):
        return int(text)
    whole = _WHOLE_FLOAT.match(text)
    return int(whole.group(1)) if whole else None


def _year_of_date(text: str) -> int | None:
    """Return the year of an ISO date (or date and time), if ``text`` is a real one.

    >>> _year_of_date("2019-03-15"), _year_of_date("2019-02-30"), _year_of_date("2019")
    (2019, None, None)
    """
    if not _ISO_DATE.match(text):
        return None
    try:
        return dt.datetime.fromisoformat(text).year
    except ValueError:
        return None


def _judge_integer(text: str, spec: SchemaField, out: _Outcomes) -> None:
    number = _whole_number(text)
    if number is None and spec.date_as_year:
        # a documented normalisation: the year of a date, and nothing else of it, is kept
        number = _year_of_date(text)
    if number is None:
        out.add(_INVALID, reason="not a whole number", klass=value_class(text))
        return
    if spec.minimum is not None and number < spec.minimum:
        out.add(_INVALID, reason=f"below the minimum of {spec.minimum}", klass="integer")
    elif spec.maximum is not None and number > spec.maximum:
        out.add(_INVALID, reason=f"above the maximum of {spec.maximum}", klass="integer")
    else:
        out.add(_VALID, number)


def _judge_boolean(text: str, out: _Outcomes) -> None:
    folded = text.casefold()
    if folded in _TRUE:
        out.add(_VALID, True)
    elif folded in _FALSE:
        out.add(_VALID, False)
    else:
        out.add(
            _INVALID,
            reason="not a yes/no value (1/0, true/false or yes/no)",
            klass=value_class(text),
        )


@dataclass
class _Column:
    """One schema field: the verdict table of its distinct values and each row's entry in it.

    Rows point into the table through ``codes``; a check that changes a row's verdict (a missing
    required value, a duplicate, a contradiction, a derived value) adds a table entry and points
    the row at it, so no per-row object arrays are ever built. The row codes are 32-bit (the
    readers cap a table far below 2**31 rows): 54 columns of 100,000 rows take 21 MB, not 42.
    """

    spec: SchemaField
    codes: npt.NDArray[np.int32]
    table: _Outcomes

    def state(self) -> npt.NDArray[np.int8]:
        """Return each row's state."""
        return np.asarray(self.table.state, dtype=np.int8)[self.codes]

    def values(self) -> npt.NDArray[np.object_]:
        """Return each row's normalised value (``None`` unless valid)."""
        return np.asarray(self.table.value, dtype=object)[self.codes]

    def exact_age(self) -> npt.NDArray[np.bool_]:
        """Return, per row, whether the value was given as an exact age."""
        return np.asarray(self.table.exact_age, dtype=bool)[self.codes]

    def repoint(
        self,
        rows: npt.NDArray[np.bool_] | npt.NDArray[np.intp],
        state: int,
        value: object = None,
        reason: str = "",
        klass: str = "",
    ) -> None:
        """Give ``rows`` a new verdict."""
        self.table.add(state, value, reason, klass)
        self.codes[rows] = len(self.table.state) - 1


def _too_long(spec: SchemaField) -> str:
    return (
        f"longer than {spec.longest_input} characters, more than any value {spec.name} takes; "
        "the cell was not read"
    )


def _normalise_strings(
    uniques: pd.Series, spec: SchemaField, missing: frozenset[str], fits: npt.NDArray[np.bool_]
) -> _Outcomes:
    """Judge the distinct values of a free string field (the pseudonym) without a Python loop
    over every value: there may be one distinct value per row."""
    size = len(uniques)
    absent = missing_mask(uniques, missing)
    state = np.where(absent, _MISSING, _VALID).astype(np.int8)
    reason = [""] * size
    klass = [""] * size
    for position in np.flatnonzero(~absent & ~fits):
        state[position] = _INVALID
        reason[position] = _too_long(spec)
        klass[position] = "too-long"
    if spec.max_length is not None:
        too_long = (state == _VALID) & (
            uniques.str.len().to_numpy(dtype=np.int64) > spec.max_length
        )
        state[too_long] = _INVALID
        for position in np.flatnonzero(too_long):
            reason[position] = f"longer than {spec.max_length} characters"
    if spec.pattern is not None:
        candidates = np.flatnonzero(state == _VALID)
        matched = (
            uniques.iloc[candidates]
            .str.fullmatch(spec.pattern)
            .to_numpy(dtype=bool, na_value=False)
        )
        mismatched = candidates[~matched]
        state[mismatched] = _INVALID
        kinds = identifier_kinds(uniques.iloc[mismatched], pseudonym=True)
        for position, kind in zip(mismatched, kinds, strict=True):
            reason[position] = spec.pattern_reason or "does not have the field's form"
            if kind is not None and spec.role == "pseudonym":
                # a raw contact detail or date here means the partner skipped pseudonymisation
                article = "an e-mail address" if kind == "email" else f"a {kind}"
                reason[position] = (
                    f"looks like {article}, not a case pseudonym; pseudonymise case ids before "
                    "upload (ctdhub-contribute prepare)"
                )
    # one distinct value per row is common here: classify only those whose error is listed
    texts = uniques.astype(object).tolist()
    unclassified = {
        int(position): str(texts[position])
        for position in np.flatnonzero((state == _INVALID) & fits)
    }
    values = np.asarray(texts, dtype=object)
    values[state != _VALID] = None
    return _Outcomes(
        state=state.tolist(),
        value=values.tolist(),
        reason=reason,
        value_class=klass,
        exact_age=[False] * size,
        unclassified=unclassified,
    )


def _normalise_column(
    factorized: tuple[npt.NDArray[np.intp], pd.Series] | None,
    spec: SchemaField,
    rows: int,
    missing: frozenset[str],
) -> _Column:
    if factorized is None:
        codes = np.full(rows, -1, dtype=np.int32)
        uniques = pd.Series(pd.array([], dtype="string"))
    else:
        # judge each distinct value once, then spread the verdicts over the rows: the CTDC
        # columns have at most a few hundred distinct values among ~100,000 rows
        codes = factorized[0].astype(np.int32)
        uniques = factorized[1]
    # no check below reads a cell longer than the field could ever take
    fits = uniques.str.len().to_numpy(dtype=np.int64, na_value=0) <= spec.longest_input
    if spec.codes is None and spec.type == "string":
        out = _normalise_strings(uniques, spec, missing, fits)
    else:
        out = _Outcomes()
        lookup: dict[str, str] = {}
        if spec.codes is not None:
            lookup = {_code_key(code): code for code in spec.codes}
            for alias, code in spec.aliases:
                lookup.setdefault(_code_key(alias), code)
        for text, fit in zip(uniques.tolist(), fits.tolist(), strict=True):
            if not fit:
                out.add(_INVALID, reason=_too_long(spec), klass="too-long")
            elif text.casefold() in missing:
                out.add(_MISSING)
            elif spec.codes is not None:
                _judge_coded(text, spec, lookup, out)
            elif spec.type == "integer":
                _judge_integer(text, spec, out)
            else:
                _judge_boolean(text, out)
    # a true NA cell (factorize's -1) is simply missing
    out.add(_MISSING)
    codes[codes < 0] = len(out.state) - 1
    return _Column(spec=spec, codes=codes, table=out)


def _check_required_and_unique(column: _Column) -> None:
    spec = column.spec
    if spec.required:
        absent = column.state() == _MISSING
        if absent.any():
            column.repoint(absent, _INVALID, reason="a value is required", klass="missing")
    if spec.unique:
        valid = np.flatnonzero(column.state() == _VALID)
        repeated = pd.Series(column.values()[valid]).duplicated(keep=False).to_numpy()
        if repeated.any():
            reason = "occurs in more than one row of this upload"
            column.repoint(valid[repeated], _INVALID, reason=reason, klass="duplicate")


def _reconcile_derived(derived: _Column, source: _Column) -> None:
    """Check a derived field (majority status) against its age source, and fill it where missing."""
    rule = derived.spec.derived_from
    if rule is None:
        return
    _, threshold, below, above = rule
    minor_bands = [
        code
        for code, _, high in source.spec.band_bounds or ()
        if high is not None and high < threshold
    ]
    age_known = source.state() == _VALID
    age_below = age_known & np.isin(source.values(), minor_bands)
    state = derived.state()
    values = derived.values()
    exact = source.exact_age()
    for code, wrong_side in ((above, age_below), (below, age_known & ~age_below)):
        clash = (state == _VALID) & (values == code) & wrong_side
        if not clash.any():
            continue
        side = f"under {threshold}" if code == above else f"of {threshold} or over"
        band_side = "a minor" if code == above else "an adult"
        for rows, reason in (
            (clash & exact, f"an exact age {side} contradicts {derived.spec.name} {code}"),
            (clash & ~exact, f"{band_side} age band contradicts {derived.spec.name} {code}"),
        ):
            if rows.any():
                derived.repoint(rows, _INVALID, reason=reason, klass="contradiction")
    for code, side in ((below, age_below), (above, age_known & ~age_below)):
        fill = (state == _MISSING) & side
        if fill.any():
            derived.repoint(fill, _VALID, value=code)


def _typed_array(column: _Column, keep: npt.NDArray[np.bool_]) -> Any:
    spec = column.spec
    table = column.table
    valid = np.asarray(table.state, dtype=np.int8) == _VALID
    codes = column.codes[keep]
    # build each distinct value's typed form once, then take it for every row
    entries = [value if ok else None for value, ok in zip(table.value, valid, strict=True)]
    if spec.type == "boolean":
        flags = np.array([value is True for value in entries], dtype=bool)
        return pd.arrays.BooleanArray(flags[codes], ~valid[codes])
    if spec.type == "integer":
        numbers = np.array([value if isinstance(value, int) else 0 for value in entries], np.int64)
        return pd.arrays.IntegerArray(numbers[codes], ~valid[codes])
    strings = pd.array(np.asarray(entries, dtype=object), dtype="string")
    return strings.take(codes)


def row_numbers(frame: pd.DataFrame) -> npt.NDArray[np.int64]:
    """Return each row's number: its index + 1 where the index counts rows from 0 (as
    :func:`contributors.formats.read_table` leaves it when empty rows were left out), else its
    position + 1.

    >>> frame = pd.DataFrame({"gender": ["Female", "Male"]}, index=[0, 3])
    >>> row_numbers(frame).tolist(), row_numbers(frame.reset_index(drop=True)).tolist()
    ([1, 4], [1, 2])
    """
    index = frame.index
    if (
        pd.api.types.is_integer_dtype(index.dtype)
        and index.is_unique
        and index.is_monotonic_increasing
        and (len(index) == 0 or int(index[0]) >= 0)
    ):
        return np.asarray(index, dtype=np.int64) + 1
    return np.arange(1, len(frame) + 1, dtype=np.int64)


def _tally_errors(column: _Column, rows: npt.NDArray[np.intp]) -> list[ErrorTally]:
    """Count a column's bad cells by reason, without a Python loop over cells or entries."""
    if not len(rows):
        return []
    # cells per verdict-table entry, then entries summed per reason (several entries share one)
    per_entry = np.bincount(column.codes[rows], minlength=len(column.table.state))
    entries = np.flatnonzero(per_entry)
    reasons = np.asarray(column.table.reason, dtype=object)[entries]
    labels, distinct = pd.factorize(reasons)
    cells = np.bincount(labels, weights=per_entry[entries]).astype(np.int64)
    return [
        ErrorTally(field=column.spec.name, reason=str(reason), cells=int(count))
        for reason, count in zip(distinct.tolist(), cells.tolist(), strict=True)
    ]


def _collect_errors(
    columns: list[_Column], bad: list[npt.NDArray[np.bool_]], numbers: npt.NDArray[np.int64]
) -> tuple[list[RowError], int, list[ErrorTally]]:
    total = 0
    tally: list[ErrorTally] = []
    candidates: list[tuple[int, int, RowError]] = []
    for position, (column, mask) in enumerate(zip(columns, bad, strict=True)):
        rows = np.flatnonzero(mask)
        total += len(rows)
        tally.extend(_tally_errors(column, rows))
        # only the earliest rows of each field can make the listed (first ERROR_LIMIT) errors
        for row in rows[:ERROR_LIMIT]:
            entry = column.codes[row]
            error = RowError(
                row=int(numbers[row]),
                field=column.spec.name,
                value_class=column.table.klass(int(entry)),
                reason=column.table.reason[entry],
            )
            candidates.append((int(row), position, error))
    candidates.sort(key=lambda item: (item[0], item[1]))
    listed = [error for _, _, error in candidates[:ERROR_LIMIT]]
    # the most frequent first; a stable sort keeps schema order among equals
    tally.sort(key=lambda item: -item.cells)
    return listed, total - len(listed), tally


def validate_records(frame: pd.DataFrame, schema: RecordSchema | None = None) -> ValidationResult:
    """Validate a partner table and return its accepted rows, normalised and typed.

    The identifier screen runs first; its findings, unknown columns and row errors all go into
    the report, and :attr:`ValidationReport.ok` tells whether the upload can be taken as it is.

    :param frame: a partner table as read by :func:`contributors.formats.read_table` (strings).
    :param schema: the record schema; defaults to :func:`~contributors.schema.load_schema`.

    >>> cases = [f"{n:064x}" for n in (1, 2)]  # case pseudonyms, as the toolkit writes them
    >>> frame = pd.DataFrame(
    ...     {"caseNo": cases, "ageBroad": ["17", "30"], "majorityStatus": ["", "Minor"],
    ...      "citizenship": ["nam", "NA"], "isForcedLabour": ["Yes", "0"]}, dtype="string")
    >>> result = validate_records(frame)
    >>> result.report.rows_accepted, result.report.rows_rejected
    (1, 1)
    >>> record = result.records.iloc[0]
    >>> [record[name] for name in ("ageBroad", "majorityStatus", "citizenship")]
    ['9--17', 'Minor', 'NA']
    >>> result.records["isForcedLabour"].tolist()
    [True]
    >>> result.report.errors[0].as_dict()  # doctest: +NORMALIZE_WHITESPACE
    {'row': 2, 'field': 'majorityStatus', 'value_class': 'contradiction',
     'reason': 'an exact age of 18 or over contradicts majorityStatus Minor'}
    """
    schema = schema or load_schema()
    rows = len(frame)
    findings: list[IdentifierFinding] = []
    missing = frozenset(value.casefold() for value in schema.missing_values)
    mapping = match_headers(frame.columns, schema)
    normalised: dict[str, _Column] = {}
    for position, match in enumerate(mapping.matches):
        # factorize once: the identifier screen and the normalisation share the distinct
        # values; a column is done with before the next is factorized, to keep memory low
        factorized = factorize_cells(frame.iloc[:, position])
        findings.extend(screen_column(match, *factorized, schema))
        if match.field is not None and match.duplicate_of is None:
            spec = schema.field(match.field)
            normalised[match.field] = _normalise_column(factorized, spec, rows, missing)
        del factorized
    # a column that names no field, or a field already supplied, is refused, by position
    unknown = [match.label for match in mapping.unmatched + mapping.duplicates]
    missing_columns = [name for name in schema.names if name not in normalised]

    # in schema order: a derived field is reconciled after its source's own checks
    columns: dict[str, _Column] = {}
    for spec in schema.fields:
        given = normalised.pop(spec.name, None)
        columns[spec.name] = (
            given if given is not None else _normalise_column(None, spec, rows, missing)
        )
    for column in columns.values():
        _check_required_and_unique(column)
        if column.spec.derived_from is not None:
            _reconcile_derived(column, columns[column.spec.derived_from[0]])

    ordered = [columns[name] for name in schema.names]
    bad = [column.state() == _INVALID for column in ordered]
    rejected = np.logical_or.reduce(bad) if bad else np.zeros(rows, dtype=bool)
    accepted = ~np.asarray(rejected, dtype=bool)
    errors, not_listed, tally = _collect_errors(ordered, bad, row_numbers(frame))
    records = pd.DataFrame(
        {column.spec.name: _typed_array(column, accepted) for column in ordered},
        index=pd.RangeIndex(int(accepted.sum())),
    )
    report = ValidationReport(
        rows_total=rows,
        rows_accepted=int(accepted.sum()),
        rows_rejected=rows - int(accepted.sum()),
        errors=errors,
        unknown_columns=unknown,
        missing_columns=missing_columns,
        errors_not_listed=not_listed,
        identifier_findings=findings,
        schema_version=schema.version,
        columns=list(mapping.matches),
        error_tally=tally,
    )
    return ValidationResult(records=records, report=report, accepted_mask=accepted)


def format_records(records: pd.DataFrame, schema: RecordSchema | None = None) -> pd.DataFrame:
    """Write normalised records back as strings in CTDC's spelling (booleans ``1``/``0``).

    Validating the result gives back ``records``: normalisation is idempotent.

    :param records: the ``records`` of a :class:`ValidationResult`.
    :param schema: the record schema; defaults to :func:`~contributors.schema.load_schema`.

    >>> frame = pd.DataFrame({"caseNo": ["7" * 64], "isAbduction": ["yes"]})
    >>> format_records(validate_records(frame).records)[["isAbduction", "gender"]].iloc[0].tolist()
    ['1', '']
    """
    schema = schema or load_schema()
    text: dict[str, Any] = {}
    for spec in schema.fields:
        cells = records[spec.name]
        present = cells.notna().to_numpy(dtype=bool)
        if spec.type == "boolean":
            flags = cells.fillna(False).to_numpy(dtype=bool)
            strings = np.where(
                present, np.where(flags, BOOLEAN_SPELLING[1], BOOLEAN_SPELLING[0]), ""
            )
        else:
            strings = np.where(
                present, cells.astype("string").fillna("").to_numpy(dtype=object), ""
            )
        text[spec.name] = pd.array(strings.astype(object), dtype="string")
    return pd.DataFrame(text, index=records.index)
