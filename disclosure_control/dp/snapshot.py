"""An analysis snapshot held in memory, typed and checked once, scanned by every release.

Decrypted case records never touch the disk. OpenDP runs its own copy of Polars behind a C
interface, so a release must hand it a serialisable LazyFrame: an in-memory frame is copied
across on every release, while a scan of an Arrow IPC file is only a path. The default keeps the
records in process memory and projects each release to the few columns it reads (coded fields
travel as small Enum integers, not strings); ``spill="tmpfs"`` instead writes one Arrow IPC
image to a RAM-backed tmpfs (refused anywhere else), readable only by this user and unlinked on
:meth:`Snapshot.close`, which makes a release several times faster on large snapshots.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

import pandas as pd
import polars as pl

from disclosure_control.dp.plan import polars_dtype
from disclosure_control.dp.spec import Field
from disclosure_control.person import draws, person_keys

__all__ = ["Snapshot", "SnapshotError", "prepare_records", "remove_stale_images"]

_TRUE = ("1", "true", "True", "TRUE")
_FALSE = ("0", "false", "False", "FALSE")
_RAM_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
_SHOWN_ROWS = 5
_IMAGE_PREFIX = "ctdhub-snapshot-"


class SnapshotError(ValueError):
    """A case record does not fit the schema; names the field, the rows and why.

    The offending values are deliberately left out: error messages reach logs, and raw record
    contents must not.

    :param field: the schema field at fault
    :param rows: 0-based row positions of the offending records (all of them)
    :param reason: why they are refused
    """

    def __init__(self, field: str, rows: Sequence[int], reason: str) -> None:
        shown = ", ".join(str(row) for row in rows[:_SHOWN_ROWS])
        more = f" and {len(rows) - _SHOWN_ROWS} more" if len(rows) > _SHOWN_ROWS else ""
        where = f"row {shown}" if len(rows) == 1 else f"rows {shown}{more}"
        super().__init__(f"field {field!r}, {where} (counting from 0): {reason}")
        self.field = field
        self.rows = tuple(rows)
        self.reason = reason


def _offending_rows(frame: pl.DataFrame, bad: pl.Expr) -> list[int]:
    return frame.with_row_index("__row").filter(bad)["__row"].to_list()


def _as_text(name: str, dtype: pl.DataType, missing: Sequence[str]) -> pl.Expr:
    text = pl.col(name).cast(pl.String) if dtype != pl.String else pl.col(name)
    return pl.when(text.is_in(list(missing))).then(None).otherwise(text).alias(name)


def _prepare_column(frame: pl.DataFrame, item: Field, missing: Sequence[str]) -> pl.Series:
    source = frame.get_column(item.name)
    dtype = source.dtype
    column = pl.col(item.name)
    if item.kind == "string":
        if dtype not in (pl.String, pl.Categorical) and not isinstance(dtype, pl.Enum):
            raise SnapshotError(item.name, [], f"holds {dtype}, expected codes (strings)")
        text = frame.select(_as_text(item.name, dtype, missing)).to_series()
        if item.domain:
            codes = [str(code) for code in item.domain]
            bad = _offending_rows(
                frame.with_columns(text), column.is_not_null() & ~column.is_in(codes)
            )
            if bad:
                raise SnapshotError(item.name, bad, "code not in the schema's domain")
        return text.cast(polars_dtype(item))
    if item.kind == "integer":
        if dtype.is_integer():
            values = source.cast(pl.Int64)
        elif dtype == pl.String:
            text = frame.select(_as_text(item.name, dtype, missing)).to_series()
            values = text.cast(pl.Int64, strict=False)
            bad = _offending_rows(
                pl.DataFrame({"text": text, "value": values}),
                pl.col("text").is_not_null() & pl.col("value").is_null(),
            )
            if bad:
                raise SnapshotError(item.name, bad, "not an integer")
        else:
            raise SnapshotError(item.name, [], f"holds {dtype}, expected integers")
        bounds = item.value_bounds
        if bounds is not None:
            checked = pl.DataFrame({"value": values})
            bad = _offending_rows(checked, ~pl.col("value").is_between(*bounds))
            if bad:
                raise SnapshotError(item.name, bad, f"outside the declared bounds {bounds}")
        return values
    if dtype == pl.Boolean:
        return source
    if dtype.is_integer():
        bad = _offending_rows(frame, column.is_not_null() & ~column.is_in([0, 1]))
        if bad:
            raise SnapshotError(item.name, bad, "an indicator holds 0 or 1")
        return source.cast(pl.Boolean)
    if dtype == pl.String:
        text = frame.select(_as_text(item.name, dtype, missing)).to_series()
        bad = _offending_rows(
            pl.DataFrame({"text": text}),
            pl.col("text").is_not_null() & ~pl.col("text").is_in([*_TRUE, *_FALSE]),
        )
        if bad:
            raise SnapshotError(item.name, bad, "an indicator holds 1/0 or true/false")
        return (
            pl.DataFrame({"text": text})
            .select(
                pl.when(pl.col("text").is_in(_TRUE))
                .then(True)
                .otherwise(pl.when(pl.col("text").is_null()).then(None).otherwise(False))
            )
            .to_series()
        )
    raise SnapshotError(item.name, [], f"holds {dtype}, expected an indicator")


def prepare_records(
    records: pl.DataFrame | pd.DataFrame,
    schema: Mapping[str, Field],
    missing_values: Sequence[str] = ("",),
) -> pl.DataFrame:
    """Return the schema's columns of ``records``, typed for OpenDP and checked against domains.

    Columns outside the schema are dropped (they cannot be queried).

    :param records: accepted case records (strings as read from partner files, or typed)
    :param schema: the record schema, by field name
    :param missing_values: the strings that mean "missing" in text columns (the schema's
        ``missingValues``; partner files mark missing with an empty field)

    >>> records = pd.DataFrame({"gender": ["Male", ""], "year": ["2020", "2021"]}, dtype="string")
    >>> schema = {"gender": Field("gender", "string", ("Female", "Male")),
    ...           "year": Field("year", "integer", bounds=(2002, 2021))}
    >>> prepare_records(records, schema).rows()
    [('Male', 2020), (None, 2021)]
    """
    frame = pl.from_pandas(records) if isinstance(records, pd.DataFrame) else records
    missing = [name for name in schema if name not in frame.columns]
    if missing:
        raise SnapshotError(missing[0], [], "the column is absent from the records")
    return pl.DataFrame(
        [_prepare_column(frame, item, missing_values).alias(name) for name, item in schema.items()]
    )


def _filesystem_type(directory: Path) -> str:
    """Return the type of the filesystem holding ``directory``, from /proc/mounts (Linux)."""
    target = directory.resolve()
    best, kind = Path("/"), "unknown"
    with open("/proc/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            parts = line.split()
            mount_point = Path(parts[1].replace("\\040", " "))
            if target.is_relative_to(mount_point) and len(mount_point.parts) >= len(best.parts):
                best, kind = mount_point, parts[2]
    return kind


def _remove(directory: str, path: str) -> None:
    for leftover in (path,):
        if os.path.exists(leftover):
            os.remove(leftover)
    if os.path.isdir(directory):
        os.rmdir(directory)


def remove_stale_images(
    tmpfs_dir: str | os.PathLike[str] = "/dev/shm",  # noqa: S108 -- where Snapshot writes
) -> int:
    """Remove tmpfs images left by processes that died before closing their snapshot.

    A finaliser cannot run on SIGKILL or power loss of the process (tmpfs itself empties on
    reboot); the hub calls this at start. Returns how many images it removed.

    :param tmpfs_dir: the directory snapshots spill to
    """
    removed = 0
    for directory in Path(tmpfs_dir).glob(f"{_IMAGE_PREFIX}*"):
        owner = directory.name.removeprefix(_IMAGE_PREFIX).split("-", 1)[0]
        if not owner.isdigit() or _alive(int(owner)):
            continue
        for leftover in directory.iterdir():
            leftover.unlink()
        directory.rmdir()
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class Snapshot:
    """Accepted case records, typed once and scanned by every release.

    :param records: accepted case records (pandas or polars), converted once
    :param schema: the record schema, by field name
    :param missing_values: the strings that mean "missing" in text columns
    :param spill: ``"memory"`` (default) or ``"tmpfs"`` (an Arrow IPC image in RAM-backed
        tmpfs; refused if ``tmpfs_dir`` is on any other filesystem)
    :param tmpfs_dir: where the tmpfs image goes
    :param seed: seeds the draw that decides which of a person's records a release bounded to
        ``c`` records per person keeps (:mod:`disclosure_control.person`); None, the default,
        draws a fresh seed that is kept nowhere. Every release on this snapshot keeps the
        same records.

    The records carry two hub-internal columns besides the schema's: each record's person key
    (:data:`~disclosure_control.person.PERSON_COLUMN`; a record without one is its own person)
    and its draw. Only a plan for the person as the privacy unit reads them.

    >>> schema = {"gender": Field("gender", "string", ("Female", "Male"))}
    >>> with Snapshot(pl.DataFrame({"gender": ["Male", "Female", None]}), schema) as snapshot:
    ...     snapshot.height, snapshot.scan(["gender"]).collect_schema()["gender"]
    (3, Enum(categories=['Female', 'Male']))
    """

    def __init__(
        self,
        records: pl.DataFrame | pd.DataFrame,
        schema: Mapping[str, Field],
        *,
        missing_values: Sequence[str] = ("",),
        spill: Literal["memory", "tmpfs"] = "memory",
        tmpfs_dir: str | os.PathLike[str] = "/dev/shm",  # noqa: S108 -- RAM-backed, checked below
        seed: int | None = None,
    ) -> None:
        self.schema = dict(schema)
        prepared = prepare_records(records, schema, missing_values)
        self._frame = prepared.with_columns(
            person_keys(records), draws(prepared.height, seed)
        ).rechunk()
        self._path: str | None = None
        if spill == "tmpfs":
            kind = _filesystem_type(Path(tmpfs_dir))
            if kind not in _RAM_FILESYSTEMS:
                raise ValueError(f"{tmpfs_dir} is on {kind}, not tmpfs: records would hit a disk")
            # The pid in the name lets remove_stale_images() find images of crashed processes.
            directory = tempfile.mkdtemp(  # mode 0700
                prefix=f"{_IMAGE_PREFIX}{os.getpid()}-", dir=tmpfs_dir
            )
            path = os.path.join(directory, "records.arrow")
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            self._finalizer = weakref.finalize(self, _remove, directory, path)
            with os.fdopen(descriptor, "wb") as image:
                # Uncompressed, so OpenDP's scan maps it instead of decoding it.
                self._frame.write_ipc(image, compression="uncompressed")
            self._path = path
        elif spill != "memory":
            raise ValueError(f"spill must be 'memory' or 'tmpfs', not {spill!r}")

    @property
    def height(self) -> int:
        """Return the number of case records."""
        return self._frame.height

    @property
    def frame(self) -> pl.DataFrame:
        """Return the typed records (in memory; never serialise them anywhere)."""
        return self._frame

    def scan(self, columns: Sequence[str]) -> pl.LazyFrame:
        """Return a LazyFrame of ``columns`` for OpenDP to read.

        :param columns: the columns a measurement reads, in its input-domain order
        """
        if self._path is not None:
            return pl.scan_ipc(self._path, memory_map=True).select(columns)
        return self._frame.select(columns).lazy()

    def close(self) -> None:
        """Remove the tmpfs image, if any (idempotent; also runs when the snapshot is freed)."""
        if self._path is not None:
            self._finalizer()
            self._path = None

    def __enter__(self) -> Snapshot:
        """Return the snapshot itself."""
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        """Close the snapshot."""
        self.close()
