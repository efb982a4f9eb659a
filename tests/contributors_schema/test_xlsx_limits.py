"""XLSX bombs are refused before they are unpacked (issue 11 item 2): a 200 MB cell in a 200 KB
workbook took 1.4 GB and no answer; 2 million rows in 629 KB took 132 s and 1.6 GB.

Each bomb is built in the test by streaming its one huge part into the archive. The proof that
the work is bounded is the memory the read allocates (tracemalloc's peak, not a clock): a small
fraction of what the bomb unpacks to.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import pytest

from contributors.formats import LimitExceeded, ReadLimits, read_table

from .xlsx_bombs import many_rows, one_huge_cell

MIB = 1 << 20


def _refusal(data: bytes, limits: ReadLimits | None = None) -> tuple[LimitExceeded, int]:
    """Read ``data`` expecting a refusal; return it and the read's peak allocation in bytes."""
    tracemalloc.start()
    try:
        with pytest.raises(LimitExceeded) as caught:
            read_table(data, limits=limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return caught.value, peak


@pytest.fixture(scope="module")
def huge_cell() -> bytes:
    data = one_huge_cell(200_000_000)
    assert len(data) < 300_000  # a 200 KB file ...
    return data


def test_a_200_mb_cell_is_refused_by_the_compression_ratio(huge_cell: bytes) -> None:
    error, peak = _refusal(huge_cell)
    assert error.limit == "XLSX_MAX_COMPRESSION_RATIO"
    assert "expands 1,028 times" in str(error) or "times when unpacked" in str(error)
    assert peak < 5 * MIB  # ... that unpacks to 200 MB was never unpacked


def test_a_200_mb_cell_is_refused_by_the_declared_size(huge_cell: bytes) -> None:
    limits = ReadLimits(max_compression_ratio=10_000, max_uncompressed_bytes=100 * MIB)
    error, peak = _refusal(huge_cell, limits)
    assert error.limit == "XLSX_MAX_UNCOMPRESSED_BYTES"
    assert f"more than the {100 * MIB:,} the hub unpacks" in str(error)
    assert peak < 5 * MIB


@pytest.fixture(scope="module")
def two_million_rows() -> Callable[[bool], bytes]:
    made: dict[bool, bytes] = {}

    def make(declare: bool) -> bytes:
        if declare not in made:
            made[declare] = many_rows(2_000_000, declare=declare)
        return made[declare]

    return make


def test_two_million_rows_are_refused_by_default(
    two_million_rows: Callable[[bool], bytes],
) -> None:
    data = two_million_rows(True)
    assert len(data) < 1 * MIB
    error, peak = _refusal(data)
    assert error.limit in ("XLSX_MAX_COMPRESSION_RATIO", "READ_MAX_ROWS")
    assert peak < 5 * MIB


def test_a_declared_dimension_over_the_row_cap_is_refused_before_reading(
    two_million_rows: Callable[[bool], bytes],
) -> None:
    error, peak = _refusal(two_million_rows(True), ReadLimits(max_compression_ratio=10_000))
    assert error.limit == "READ_MAX_ROWS"
    assert "more than 1,000,000 data rows" in str(error)
    assert peak < 5 * MIB  # no row was read: the sheet's dimension said enough


def test_rows_are_counted_as_they_stream_when_no_dimension_is_declared(
    two_million_rows: Callable[[bool], bytes],
) -> None:
    limits = ReadLimits(max_compression_ratio=10_000, max_rows=10_000)
    error, peak = _refusal(two_million_rows(False), limits)
    assert error.limit == "READ_MAX_ROWS"
    assert "more than 10,000 data rows" in str(error)
    # stopped after the cap: what 2 million rows of strings would take is far more
    assert peak < 20 * MIB


def test_the_cell_cap_counts_rows_times_columns() -> None:
    data = many_rows(5_000, declare=False)
    error, _ = _refusal(data, ReadLimits(max_cells=1_000))
    assert error.limit == "READ_MAX_CELLS"


def test_under_the_limits_the_same_workbooks_read() -> None:
    assert read_table(many_rows(1_000)).shape == (1_000, 1)
    frame = read_table(one_huge_cell(1_000), limits=ReadLimits())
    assert frame.shape == (1, 2) and len(frame["Notes"].iloc[0]) == 1_000
