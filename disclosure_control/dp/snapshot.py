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
import secrets
import tempfile
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np
import pandas as pd
import polars as pl

from disclosure_control.dp.plan import polars_dtype
from disclosure_control.dp.spec import Field
from disclosure_control.person import DRAW_COLUMN, PERSON_COLUMN, draws, person_keys

__all__ = ["Snapshot", "SnapshotError", "on_tmpfs", "prepare_records", "remove_stale_images"]

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


def _part_person_keys(
    part: pl.DataFrame | pd.DataFrame, start: int, keyed: bool | None
) -> tuple[pl.Series, bool]:
    """Return a part's person keys, and whether it carried them.

    Parts without keys number each record as its own person across all parts; parts with
    keys keep them. Mixing the two could give a keyless record a linked person's key, so every
    part must be like the first (``keyed``, None for the first part).
    """
    has_keys = PERSON_COLUMN in part.columns
    if keyed is not None and has_keys != keyed:
        raise ValueError("either every part of a part-by-part snapshot has person keys or none")
    if not has_keys:
        return (person_keys(part) + start).alias(PERSON_COLUMN), False
    column = part[PERSON_COLUMN]
    missing = column.isna().any() if isinstance(column, pd.Series) else column.null_count() > 0
    if missing:
        raise ValueError("every record of a part-by-part snapshot needs its person key")
    return person_keys(part), True


def _part_draws(height: int, rng: np.random.Generator) -> pl.Series:
    # Independent uniform draws: across parts no permutation of the whole is known in advance,
    # and a tie between two records of one person (odds about c^2 / 2^33) only decides which
    # of the two is kept by position, never by a record's value.
    return pl.Series(DRAW_COLUMN, rng.integers(0, 2**32, size=height, dtype=np.uint32))


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


def on_tmpfs(directory: str | os.PathLike[str]) -> bool:
    """Return whether ``directory`` exists and is on a RAM-backed filesystem (tmpfs, ramfs).

    False where that cannot be told (no ``/proc/mounts``, as off Linux): a snapshot image must
    never go where it might reach a disk.
    """
    path = Path(directory)
    try:
        return path.is_dir() and _filesystem_type(path) in _RAM_FILESYSTEMS
    except OSError:
        return False


def _remove_all(directory: str) -> None:
    if os.path.isdir(directory):
        for leftover in os.listdir(directory):
            os.remove(os.path.join(directory, leftover))
        os.rmdir(directory)


def _image_directory(tmpfs_dir: str | os.PathLike[str]) -> str:
    """Make a private (0700) directory for snapshot images in ``tmpfs_dir``, refused unless it
    is RAM-backed."""
    kind = _filesystem_type(Path(tmpfs_dir))
    if kind not in _RAM_FILESYSTEMS:
        raise ValueError(f"{tmpfs_dir} is on {kind}, not tmpfs: records would hit a disk")
    # The pid in the name lets remove_stale_images() find images of crashed processes.
    return tempfile.mkdtemp(prefix=f"{_IMAGE_PREFIX}{os.getpid()}-", dir=tmpfs_dir)


def _write_image(
    frame: pl.DataFrame, path: str, compression: Literal["uncompressed", "lz4"]
) -> None:
    """Write ``frame`` as an Arrow IPC file only this user can read (created, never reused)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as image:
        frame.write_ipc(image, compression=compression)


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
        self._frame: pl.DataFrame | None = prepared.with_columns(
            person_keys(records), draws(prepared.height, seed)
        ).rechunk()
        self._path: str | None = None
        self._paths: list[str] = []
        self._height = prepared.height
        if spill == "tmpfs":
            directory = _image_directory(tmpfs_dir)
            path = os.path.join(directory, "records.arrow")
            self._finalizer = weakref.finalize(self, _remove_all, directory)
            # Uncompressed, so OpenDP's scan maps it instead of decoding it.
            _write_image(self._frame, path, "uncompressed")
            self._path = path
        elif spill != "memory":
            raise ValueError(f"spill must be 'memory' or 'tmpfs', not {spill!r}")

    @classmethod
    def from_parts(
        cls,
        parts: Iterable[pl.DataFrame | pd.DataFrame],
        schema: Mapping[str, Field],
        *,
        missing_values: Sequence[str] = ("",),
        tmpfs_dir: str | os.PathLike[str] = "/dev/shm",  # noqa: S108 -- RAM-backed, checked
        seed: int | None = None,
    ) -> Snapshot:
        """Return a snapshot too large to hold typed in memory, scanned lazily part by part.

        Each part (a decrypted record batch) is typed and checked as :func:`prepare_records`
        does, written to tmpfs as one compressed Arrow IPC image (LZ4: the bytes held are the
        compressed ones) and dropped before the next part is read, so the process never holds
        more than one part; a release scans the images as one lazy frame, reading only its own
        columns. Rows in a :class:`SnapshotError` count from the first record of the first part.

        :param parts: the records, part by part (read once, in order)
        :param schema: the record schema, by field name
        :param missing_values: the strings that mean "missing" in text columns
        :param tmpfs_dir: where the images go (refused unless RAM-backed)
        :param seed: seeds the draw that bounds a person's records, as for the constructor
        :raises SnapshotError: for a record that does not fit the schema; nothing is left behind
        :raises ValueError: for a part whose person keys are incomplete: across parts, a record
            without a key cannot be given one that is sure to be its own, so the caller (the
            hub, which links the whole snapshot first) must give every record its key
        """
        snapshot = cls.__new__(cls)
        snapshot.schema = dict(schema)
        snapshot._frame = None
        snapshot._path = None
        snapshot._paths = []
        directory = _image_directory(tmpfs_dir)
        snapshot._finalizer = weakref.finalize(snapshot, _remove_all, directory)
        height = 0
        rng = np.random.default_rng(secrets.randbits(128) if seed is None else seed)
        keyed: bool | None = None
        try:
            for number, part in enumerate(parts):
                try:
                    typed = prepare_records(part, schema, missing_values)
                except SnapshotError as error:
                    rows = [height + row for row in error.rows]
                    raise SnapshotError(error.field, rows, error.reason) from None
                keys, keyed = _part_person_keys(part, height, keyed)
                typed = typed.with_columns(keys, _part_draws(typed.height, rng))
                path = os.path.join(directory, f"part-{number:06d}.arrow")
                _write_image(typed, path, "lz4")
                snapshot._paths.append(path)
                height += typed.height
        except BaseException:
            snapshot._finalizer()
            raise
        snapshot._height = height
        return snapshot

    @property
    def height(self) -> int:
        """Return the number of case records."""
        return self._frame.height if self._frame is not None else self._height

    @property
    def lazy(self) -> bool:
        """Return whether the records are scanned part by part rather than held typed."""
        return self._frame is None

    @property
    def frame(self) -> pl.DataFrame:
        """Return the typed records (in memory; never serialise them anywhere).

        A lazy snapshot (:meth:`from_parts`) reads every part into one frame for this: avoid.
        """
        if self._frame is None:
            return self._scan_parts().collect()
        return self._frame

    def _scan_parts(self) -> pl.LazyFrame:
        if not self._paths:
            empty = {name: polars_dtype(item) for name, item in self.schema.items()}
            return pl.LazyFrame(schema=empty)
        return pl.scan_ipc(self._paths)

    def scan(self, columns: Sequence[str]) -> pl.LazyFrame:
        """Return a LazyFrame of ``columns`` for OpenDP to read.

        :param columns: the columns a measurement reads, in its input-domain order
        """
        if self._frame is None:
            return self._scan_parts().select(columns)
        if self._path is not None:
            return pl.scan_ipc(self._path, memory_map=True).select(columns)
        return self._frame.select(columns).lazy()

    def close(self) -> None:
        """Remove the tmpfs images, if any (idempotent; also runs when the snapshot is freed)."""
        if self._path is not None or self._paths:
            self._finalizer()
            self._path = None
            self._paths = []

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
