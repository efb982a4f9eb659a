"""Snapshots: records typed once, bad records refused by row and field, nothing left on disk."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from disclosure_control.dp import (
    Field,
    Snapshot,
    SnapshotError,
    prepare_records,
    remove_stale_images,
)
from disclosure_control.dp.snapshot import _filesystem_type
from disclosure_control.person import DRAW_COLUMN, PERSON_COLUMN

SCHEMA = {
    "gender": Field("gender", "string", ("Female", "Male")),
    "citizenship": Field("citizenship", "string"),
    "year": Field("year", "integer", bounds=(2002, 2021)),
    "isAbduction": Field("isAbduction", "boolean"),
}


def partner_file(**columns: list[str]) -> pd.DataFrame:
    base = {
        "gender": ["Female", "Male", ""],
        "citizenship": ["NA", "UA", ""],  # NA is Namibia, not missing
        "year": ["2002", "", "2021"],
        "isAbduction": ["1", "", "0"],
        "caseNo": ["1", "2", "3"],
    }
    base.update(columns)
    return pd.DataFrame(base, dtype="string")


def test_strings_from_a_partner_file_are_typed() -> None:
    frame = prepare_records(partner_file(), SCHEMA)
    assert frame.columns == ["gender", "citizenship", "year", "isAbduction"]  # caseNo dropped
    assert frame.schema["gender"] == pl.Enum(["Female", "Male"])
    assert frame.rows() == [
        ("Female", "NA", 2002, True),
        ("Male", "UA", None, None),
        (None, None, 2021, False),
    ]


def test_typed_records_pass_through() -> None:
    typed = pl.DataFrame(
        {
            "gender": ["Male", None],
            "citizenship": ["UA", None],
            "year": pl.Series([2010, None], dtype=pl.Int32),
            "isAbduction": pl.Series([True, None], dtype=pl.Boolean),
        }
    )
    assert prepare_records(typed, SCHEMA).rows() == [("Male", "UA", 2010, True), (None,) * 4]


@pytest.mark.parametrize(
    ("columns", "field", "rows", "reason"),
    [
        ({"gender": ["Female", "Woman", "Man"]}, "gender", (1, 2), "not in the schema's domain"),
        ({"year": ["2002", "twenty", ""]}, "year", (1,), "not an integer"),
        ({"year": ["2001", "2002", "2022"]}, "year", (0, 2), "outside the declared bounds"),
        ({"isAbduction": ["1", "yes", ""]}, "isAbduction", (1,), "1/0 or true/false"),
    ],
)
def test_bad_records_are_refused_by_row_and_field(
    columns: dict[str, list[str]], field: str, rows: tuple[int, ...], reason: str
) -> None:
    with pytest.raises(SnapshotError, match=reason) as caught:
        prepare_records(partner_file(**columns), SCHEMA)
    assert caught.value.field == field
    assert caught.value.rows == rows
    # The message names rows and field, never the offending contents.
    for value in ("Woman", "twenty", "2022", "yes"):
        assert value not in str(caught.value)


def test_declared_missing_values_are_missing() -> None:
    frame = prepare_records(
        partner_file(year=["-99", "NULL", "2003"], gender=["NULL", "Male", ""]),
        SCHEMA,
        missing_values=("", "NULL", "-99"),
    )
    assert frame["year"].to_list() == [None, None, 2003]
    assert frame["gender"].to_list() == [None, "Male", None]


def test_a_missing_column_is_named() -> None:
    with pytest.raises(SnapshotError, match="absent") as caught:
        prepare_records(partner_file().drop(columns="year"), SCHEMA)
    assert caught.value.field == "year"


def test_many_bad_rows_are_summarised() -> None:
    with pytest.raises(SnapshotError, match=r"rows 0, 1, 2, 3, 4 and 3 more"):
        prepare_records(
            pd.DataFrame({"gender": ["x"] * 8}, dtype="string"), {"gender": SCHEMA["gender"]}
        )


def test_tmpfs_image_is_private_and_removed_on_close() -> None:
    snapshot = Snapshot(partner_file(), SCHEMA, spill="tmpfs")
    path = snapshot._path
    assert path is not None and os.path.exists(path)
    assert _filesystem_type(Path(path)) in {"tmpfs", "ramfs"}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert (
        snapshot.scan(["gender", "year"]).collect().equals(snapshot.frame.select("gender", "year"))
    )
    snapshot.close()
    assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path))
    snapshot.close()  # idempotent


def test_tmpfs_image_is_removed_when_the_snapshot_is_freed() -> None:
    snapshot = Snapshot(partner_file(), SCHEMA, spill="tmpfs")
    path = snapshot._path
    assert path is not None
    del snapshot
    assert not os.path.exists(path)


def test_spill_refuses_a_disk(tmp_path: Path) -> None:
    assert _filesystem_type(tmp_path) not in {"tmpfs", "ramfs"}, "this test needs a disk-backed tmp"
    with pytest.raises(ValueError, match="not tmpfs"):
        Snapshot(partner_file(), SCHEMA, spill="tmpfs", tmpfs_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unknown_spill_is_refused() -> None:
    with pytest.raises(ValueError, match="spill"):
        Snapshot(partner_file(), SCHEMA, spill="parquet")  # type: ignore[arg-type]


def test_stale_images_of_dead_processes_are_removed() -> None:
    directory = Path("/dev/shm")  # noqa: S108 -- the RAM-backed place Snapshot spills to
    # A child that has exited and been reaped is a pid that no longer runs.
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = int(child.stdout)
    stale = directory / f"ctdhub-snapshot-{dead}-test{os.getpid()}"
    stale.mkdir(mode=0o700)
    (stale / "records.arrow").write_bytes(b"x")
    with Snapshot(partner_file(), SCHEMA, spill="tmpfs") as live:
        assert remove_stale_images(directory) >= 1
        assert not stale.exists()
        assert live._path is not None and os.path.exists(live._path)  # the living one stays


def test_a_snapshot_scanned_part_by_part_holds_the_same_typed_records() -> None:
    parts = [partner_file(), partner_file(gender=["Male", "Male", "Female"]), partner_file()]
    whole = Snapshot(pd.concat(parts, ignore_index=True), SCHEMA)
    lazy = Snapshot.from_parts(iter(parts), SCHEMA)
    try:
        assert lazy.lazy and not whole.lazy
        assert lazy.height == whole.height == 9
        # The same records and person keys; the draw that bounds a person's records is random.
        assert lazy.frame.drop(DRAW_COLUMN).equals(whole.frame.drop(DRAW_COLUMN))
        assert lazy.frame[PERSON_COLUMN].n_unique() == 9
        columns = ["year", "gender"]
        assert lazy.scan(columns).collect().equals(whole.scan(columns).collect())
        assert lazy.scan(columns).collect_schema() == whole.scan(columns).collect_schema()
        paths = list(lazy._paths)
        assert len(paths) == 3
        for path in paths:
            assert _filesystem_type(Path(path)) in {"tmpfs", "ramfs"}
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(paths[0])).st_mode) == 0o700
    finally:
        lazy.close()
    assert not any(os.path.exists(path) for path in paths)
    assert not os.path.exists(os.path.dirname(paths[0]))


def test_a_bad_record_in_a_later_part_is_named_by_its_row_and_nothing_is_left() -> None:
    before = set(Path("/dev/shm").glob("ctdhub-snapshot-*"))  # noqa: S108 -- where images go
    parts = [partner_file(), partner_file(year=["2002", "1999", "2021"])]
    with pytest.raises(SnapshotError, match=r"field 'year', row 4 \(counting from 0\)"):
        Snapshot.from_parts(parts, SCHEMA)
    assert set(Path("/dev/shm").glob("ctdhub-snapshot-*")) == before  # noqa: S108


def test_parts_keep_their_linked_person_keys_and_refuse_incomplete_ones() -> None:
    linked = [partner_file(), partner_file()]
    linked[0][PERSON_COLUMN] = [4, 4, 9]
    linked[1][PERSON_COLUMN] = [9, 1, 4]
    with Snapshot.from_parts(iter(linked), SCHEMA) as lazy:
        assert lazy.frame[PERSON_COLUMN].to_list() == [4, 4, 9, 9, 1, 4]
        assert lazy.frame[DRAW_COLUMN].dtype == pl.UInt32
    before = set(Path("/dev/shm").glob("ctdhub-snapshot-*"))  # noqa: S108 -- where images go
    broken = [partner_file(), partner_file()]
    broken[0][PERSON_COLUMN] = [4, 4, 9]
    broken[1][PERSON_COLUMN] = pd.array([9, None, 4], dtype="Int64")
    with pytest.raises(ValueError, match="needs its person key"):
        Snapshot.from_parts(broken, SCHEMA)
    # A keyless part after a keyed one could be numbered onto a linked person's key.
    mixed = [linked[0], partner_file()]
    with pytest.raises(ValueError, match="every part .* has person keys or none"):
        Snapshot.from_parts(mixed, SCHEMA)
    assert set(Path("/dev/shm").glob("ctdhub-snapshot-*")) == before  # noqa: S108


def test_a_snapshot_of_no_parts_is_empty_and_typed() -> None:
    with Snapshot.from_parts([], SCHEMA) as empty:
        assert empty.height == 0
        assert (
            empty.scan(["gender"]).collect_schema()
            == Snapshot(partner_file(), SCHEMA).scan(["gender"]).collect_schema()
        )
