"""The screen and validation do work linear in a file's size, whatever its cells hold (issue 11
item 1: a 150 KB cell used to hold every thread for 21 s in the e-mail pattern).

Two proofs, neither timed: every pattern the screen, validation and readers use has a finite
width (each quantifier bounded, so one match attempt reads a bounded number of characters and a
search is linear in its input); and no pattern is ever handed more than a cell limit derived from
the schema, counted by wrapping the real patterns: megabyte cells cost the patterns exactly what
short ones do.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterator
from re import _constants as sre_constants  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import pandas as pd
import pytest

import contributors.formats
import contributors.headers
import contributors.identifiers
import contributors.normalise
import contributors.schema
from contributors.formats import read_table
from contributors.identifiers import cell_limit, screen_identifiers
from contributors.normalise import validate_records
from contributors.schema import RecordSchema

MODULES = [
    contributors.identifiers,
    contributors.normalise,
    contributors.formats,
    contributors.headers,
    contributors.schema,
]


def _module_patterns() -> Iterator[tuple[str, re.Pattern[str]]]:
    for module in MODULES:
        for name, value in vars(module).items():
            if isinstance(value, re.Pattern):
                yield f"{module.__name__}.{name}", value


def test_every_pattern_has_a_finite_width(schema: RecordSchema) -> None:
    patterns = dict(_module_patterns())
    for spec in schema.fields:
        if spec.pattern is not None:
            patterns[f"schema {spec.name}"] = re.compile(spec.pattern)
    assert len(patterns) >= 15  # the walk found the screen's patterns
    for name, pattern in patterns.items():
        _, widest = sre_parse.parse(pattern.pattern, pattern.flags).getwidth()
        assert widest < sre_constants.MAXREPEAT, f"{name} has an unbounded quantifier"


def test_an_unbounded_pattern_would_be_caught() -> None:
    # the check above can fail: the old e-mail pattern had an unbounded local part
    old_email = r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
    _, widest = sre_parse.parse(old_email).getwidth()
    assert widest >= sre_constants.MAXREPEAT


class _Counted:
    """A real compiled pattern that records the length of every string it is handed."""

    def __init__(self, pattern: re.Pattern[str], seen: list[int]) -> None:
        self._pattern = pattern
        self._seen = seen

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._pattern, name)
        if not callable(method):
            return method

        def counted(*args: Any, **kwargs: Any) -> Any:
            for argument in args:
                if isinstance(argument, str):
                    self._seen.append(len(argument))
            return method(*args, **kwargs)

        return counted


@pytest.fixture
def pattern_work(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the characters handed to every module pattern (the patterns still do the work)."""
    seen: list[int] = []
    for module in MODULES:
        assert isinstance(module, types.ModuleType)
        for name, value in list(vars(module).items()):
            if isinstance(value, re.Pattern):
                monkeypatch.setattr(module, name, _Counted(value, seen))
    return seen


def _file(cell: str) -> bytes:
    """A small upload whose every kind of column holds one huge cell among ordinary ones."""
    case = f"{7:064x}"
    frame = pd.DataFrame(
        {
            "caseNo": [cell, case],
            "Year of registration": [cell, "2019"],
            "gender": [cell, "Female"],
            "citizenship": [cell, "NA"],
            "isAbduction": [cell, "1"],
            "Notes": [cell, "ok"],
            "column of anything": [cell + "@example.org", "x"],
        }
    )
    return frame.to_csv(index=False).encode("utf-8")


@pytest.mark.parametrize("size", [1_000_000, 2_000_000])
def test_megabyte_cells_never_reach_a_pattern(
    pattern_work: list[int], schema: RecordSchema, size: int
) -> None:
    cell = "a" * (size // 2) + " " + "b.c-" * (size // 8)  # the e-mail pattern's worst case
    frame = read_table(_file(cell))
    report = validate_records(frame, schema).report
    widest = max(cell_limit(schema, spec.name) for spec in schema.fields)
    assert pattern_work and max(pattern_work) <= widest
    # the huge cells are refused naming row and field, and flagged where no field takes them
    too_long = {(e.row, e.field, e.value_class) for e in report.errors if e.row == 1}
    assert {
        (1, name, "too-long")
        for name in ("caseNo", "yearOfRegistration", "gender", "citizenship", "isAbduction")
    } <= too_long
    reasons = {e.field: e.reason for e in report.errors if e.row == 1}
    assert reasons["gender"] == (
        f"longer than {cell_limit(schema, 'gender')} characters, more than any value gender "
        "takes; the cell was not read"
    )
    long_values = {(f.label, f.kind) for f in report.identifier_findings}
    assert {("column 6", "long-value"), ("column 7", "long-value")} <= long_values
    assert report.rows_rejected == 1 and report.rows_accepted == 1


def test_pattern_work_does_not_grow_with_the_cells(
    pattern_work: list[int], schema: RecordSchema
) -> None:
    totals = []
    for size in (10_000, 1_000_000, 4_000_000):
        pattern_work.clear()
        frame = read_table(_file("x" * size + " @ " + "y." * 8))
        validate_records(frame, schema)
        screen_identifiers(frame, schema)
        totals.append(sum(pattern_work))
    assert totals[0] == totals[1] == totals[2] > 0


def test_each_field_limit_comes_from_its_longest_legal_value(schema: RecordSchema) -> None:
    slack = contributors.schema.INPUT_SLACK
    assert cell_limit(schema, "caseNo") == 128 + slack  # constraints.maxLength
    assert cell_limit(schema, "gender") == len("Transgender/NonConforming") + slack
    assert cell_limit(schema, "isAbduction") == len("false") + slack
    assert cell_limit(schema, "yearOfRegistration") == 20 + slack  # any 64-bit integer
    assert cell_limit(schema, None) == max(spec.longest_input for spec in schema.fields)
    # every legal spelling of a value fits its field's limit
    for spec in schema.fields:
        for code in spec.codes or ():
            assert len(f"  {code.lower()}  ") <= spec.longest_input
