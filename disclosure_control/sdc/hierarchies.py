"""Generalisation hierarchies for quasi-identifiers, and their loader.

A hierarchy maps every original (leaf) value of a quasi-identifier to one label per level, from
the value itself (level 0) to ``"*"`` (the top level, which reveals nothing: "not published at
this level for anyone"), as ARX's hierarchy tables do: one row per value, one column per
level. A value withheld for one record only (local suppression) is written :data:`WITHHELD`
instead, so the two never look alike (:data:`MARKERS` states both). A level's classes are the
leaves sharing a label, computed from the leaves; levels need not nest. Year -> 2-year -> 5-year
periods is such a hierarchy: a 5-year period does not contain whole 2-year periods. What the
search in :mod:`disclosure_control.sdc.generalise` may rely on is the partial order
:meth:`Hierarchy.generalises` computes: level ``b`` generalises level ``a`` when every class of
``a`` lies inside one class of ``b``. Level 0 is generalised by every level, and every level by
the top.

A missing value (the empty string) is a value of its own: it stays missing at every level but
the top, so a record without an age band is never mixed into a band it may not belong to.

Hierarchies are declared as JSON files (one per hierarchy, possibly shared by several fields) in a
directory the caller names, so this package never depends on where the hub keeps its
configuration. Three declarations are understood:

``mapping``
    ``{"leaf": ["level 1 label", "level 2 label", ...], ...}`` (top ``"*"`` implied).
``table``
    ``{"path": "file.csv", "columns": ["leaf column", "level 1 column", ...]}``, a CSV read with
    every cell as a string and no NA guessing (``NA`` is Namibia).
``periods``
    ``{"first": 1990, "last": 2039, "origin": 2000, "widths": [2, 5]}``: integer values
    generalised to periods of the given widths counted from ``origin`` (widths need not divide
    one another).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

#: Label of the top level of every hierarchy: the field is not published at this level for
#: anyone (every released record carries it in that field).
TOP = "*"
#: Marker of a value withheld for this record only (local suppression): the field is published
#: for the other records of the release. Distinct from :data:`TOP` so a reader can tell the two
#: apart, and from :data:`MISSING`, which the partner sent.
WITHHELD = "[withheld]"
#: How a missing value is written in case records read as strings.
MISSING = ""
#: Every marker a released quasi-identifier can carry besides its own values, with the sentence
#: the data dictionary and the release's privacy notes state for it.
MARKERS: Mapping[str, str] = MappingProxyType(
    {
        TOP: "not published at this level for anyone: the field is generalised to its top level "
        "in every record of the release",
        WITHHELD: "withheld for this record (local suppression); the field is published for "
        "other records",
        MISSING: "not recorded by the partner",
    }
)
#: Values a hierarchy may not use as a leaf or a label below the top: they are markers.
RESERVED = (TOP, WITHHELD)


class HierarchyError(ValueError):
    """Raised when a hierarchy declaration is invalid or does not cover a value."""


@dataclass(frozen=True)
class Hierarchy:
    """A generalisation hierarchy: labels for every leaf value at every level.

    :param name: name of the hierarchy (usually the field it generalises).
    :param level_names: one name per level, from the original value to ``any``.
    :param leaves: the original values, in a fixed order; ``""`` (missing) is always one of them.
    :param labels: ``labels[i][level]`` is the label of ``leaves[i]`` at ``level``.
    """

    name: str
    level_names: tuple[str, ...]
    leaves: tuple[str, ...]
    labels: tuple[tuple[str, ...], ...]
    _codes: tuple[npt.NDArray[np.int32], ...] = field(init=False, repr=False, compare=False)
    _level_labels: tuple[tuple[str, ...], ...] = field(init=False, repr=False, compare=False)
    _order: npt.NDArray[np.bool_] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        height = len(self.level_names)
        if height < 2:
            raise HierarchyError(f"hierarchy {self.name!r}: needs at least two levels")
        if len(set(self.leaves)) != len(self.leaves):
            raise HierarchyError(f"hierarchy {self.name!r}: a leaf value is listed twice")
        if len(self.labels) != len(self.leaves):
            raise HierarchyError(f"hierarchy {self.name!r}: one label row per leaf is needed")
        for leaf, row in zip(self.leaves, self.labels, strict=True):
            if len(row) != height:
                raise HierarchyError(
                    f"hierarchy {self.name!r}: value {leaf!r} has {len(row)} labels, "
                    f"expected {height} (one per level)"
                )
            if row[0] != leaf or row[-1] != TOP:
                raise HierarchyError(
                    f"hierarchy {self.name!r}: value {leaf!r} must start with itself and end "
                    f"with {TOP!r}"
                )
            reserved = [label for label in row[:-1] if label in RESERVED]
            if reserved:
                raise HierarchyError(
                    f"hierarchy {self.name!r}: value {leaf!r} has the label {reserved[0]!r} "
                    f"below the top level; {TOP!r} and {WITHHELD!r} are reserved markers"
                )
        codes: list[npt.NDArray[np.int32]] = []
        level_labels: list[tuple[str, ...]] = []
        for level in range(height):
            column = [row[level] for row in self.labels]
            uniques = tuple(dict.fromkeys(column))
            position = {label: i for i, label in enumerate(uniques)}
            codes.append(np.array([position[label] for label in column], dtype=np.int32))
            level_labels.append(uniques)
        # Level b generalises level a when the label at a decides the label at b, i.e. there are
        # as many distinct (a, b) label pairs as labels at a. Levels need not nest, so this is a
        # partial order computed here rather than assumed from the level numbers.
        order = np.zeros((height, height), dtype=np.bool_)
        for a in range(height):
            for b in range(height):
                pairs = np.unique(codes[a].astype(np.int64) * len(self.leaves) + codes[b])
                order[a, b] = len(pairs) == len(level_labels[a])
        order.flags.writeable = False
        object.__setattr__(self, "_codes", tuple(codes))
        object.__setattr__(self, "_level_labels", tuple(level_labels))
        object.__setattr__(self, "_order", order)

    @property
    def height(self) -> int:
        """Return the index of the top level (number of levels minus one)."""
        return len(self.level_names) - 1

    def level_codes(self, level: int) -> npt.NDArray[np.int32]:
        """Return, for each leaf (in :attr:`leaves` order), the code of its label at ``level``."""
        return self._codes[level]

    def level_labels(self, level: int) -> tuple[str, ...]:
        """Return the distinct labels of ``level``, indexed by the codes of :meth:`level_codes`."""
        return self._level_labels[level]

    def generalises(self, a: int, b: int) -> bool:
        """Return whether level ``b`` generalises ``a``: every class of ``a`` is in one of ``b``.

        This is the partial order the lattice search prunes by; it holds for ``a == b``, for
        ``a == 0`` and for ``b`` the top, and otherwise only when the hierarchy's table says so.

        >>> h = Hierarchy.from_mapping("y", ["year", "2-year", "3-year", "any"], {
        ...     "1": ["1-2", "1-3"], "2": ["1-2", "1-3"], "3": ["3-4", "1-3"], "4": ["3-4", "4-6"]})
        >>> h.generalises(0, 2), h.generalises(1, 3), h.generalises(1, 2), h.generalises(2, 1)
        (True, True, False, False)
        """
        if not (0 <= a <= self.height and 0 <= b <= self.height):
            raise HierarchyError(f"hierarchy {self.name!r}: no level pair ({a}, {b})")
        return bool(self._order[a, b])

    def generalisation_order(self) -> npt.NDArray[np.bool_]:
        """Return the matrix of :meth:`generalises`: entry ``[a, b]`` for every pair of levels."""
        return self._order

    def level_map(self, a: int, b: int) -> npt.NDArray[np.int64]:
        """Return, for each label code at level ``a``, the code of its label at level ``b``.

        :raises HierarchyError: if level ``b`` does not generalise level ``a`` (then a label at
            ``a`` may lead to several labels at ``b``, and only the leaves decide).
        """
        if not self.generalises(a, b):
            raise HierarchyError(
                f"hierarchy {self.name!r}: level {self.level_names[b]!r} does not generalise "
                f"level {self.level_names[a]!r}; map from the leaves instead"
            )
        to = np.zeros(len(self._level_labels[a]), dtype=np.int64)
        to[self._codes[a]] = self._codes[b]
        return to

    def leaf_counts(self, level: int) -> npt.NDArray[np.int64]:
        """Return, for each leaf, how many leaves share its label at ``level``."""
        codes = self._codes[level]
        return np.bincount(codes)[codes].astype(np.int64)

    def encode(self, values: pd.Series, field_name: str | None = None) -> npt.NDArray[np.int32]:
        """Return the leaf code of every value, refusing values the hierarchy does not know.

        :param values: the column of case records, as strings (missing is ``""``).
        :param field_name: the field named in the error message (defaults to the series name).
        :raises HierarchyError: naming the first rows and values that have no leaf.
        """
        # Factorising first and looking up only the distinct values is several times faster
        # than a categorical over a million rows.
        dense, uniques = pd.factorize(values.astype("string").fillna(MISSING))
        position = {leaf: i for i, leaf in enumerate(self.leaves)}
        lookup = np.array([position.get(str(u), -1) for u in uniques] + [-1], dtype=np.int32)
        codes = lookup[np.asarray(dense, dtype=np.int64)]
        unknown = np.flatnonzero(codes < 0)
        if unknown.size:
            name = field_name if field_name is not None else values.name
            shown = ", ".join(
                f"row {values.index[i]}: {values.iloc[i]!r}" for i in unknown[:5].tolist()
            )
            raise HierarchyError(
                f"field {name!r}: {unknown.size} value(s) not in hierarchy {self.name!r} ({shown})"
            )
        return codes

    def generalise(self, values: pd.Series, level: int) -> pd.Series:
        """Return the values replaced by their labels at ``level``.

        :param values: original values (strings; missing is ``""``).
        :param level: 0 (unchanged) to :attr:`height` (everything ``"*"``).

        >>> h = Hierarchy.from_mapping("gender", ["gender", "any"], {"Female": [], "Male": []})
        >>> h.generalise(pd.Series(["Male", "", "Female"]), 1).tolist()
        ['*', '*', '*']
        >>> h.generalise(pd.Series(["Male", ""]), 0).tolist()
        ['Male', '']
        """
        if not 0 <= level <= self.height:
            raise HierarchyError(f"hierarchy {self.name!r}: no level {level}")
        codes = self.encode(values)
        labels = pd.Series(list(self._level_labels[level]), dtype="string")
        out = labels.take(self._codes[level][codes])
        out.index, out.name = values.index, values.name
        return out

    @classmethod
    def from_mapping(
        cls, name: str, level_names: Sequence[str], mapping: Mapping[str, Sequence[str]]
    ) -> Hierarchy:
        """Build a hierarchy from ``leaf -> [label at level 1, ...]`` (top ``"*"`` implied).

        :param name: name of the hierarchy.
        :param level_names: names of all levels, the top one included.
        :param mapping: labels of each leaf from level 1 to the level below the top.

        >>> h = Hierarchy.from_mapping("age", ["band", "majority", "any"],
        ...                            {"0--8": ["Minor"], "18--20": ["Adult"]})
        >>> h.height, h.level_labels(1)
        (2, ('Minor', 'Adult', ''))
        """
        height = len(level_names) - 1
        leaves: list[str] = []
        labels: list[tuple[str, ...]] = []
        for leaf, ancestors in mapping.items():
            if leaf == MISSING or leaf in RESERVED:
                raise HierarchyError(
                    f"hierarchy {name!r}: {leaf!r} is reserved and cannot be declared"
                )
            if len(ancestors) != height - 1:
                raise HierarchyError(
                    f"hierarchy {name!r}: value {leaf!r} lists {len(ancestors)} labels, expected "
                    f"{height - 1} (levels {list(level_names[1:-1])})"
                )
            leaves.append(str(leaf))
            labels.append((str(leaf), *(str(a) for a in ancestors), TOP))
        leaves.append(MISSING)
        labels.append((MISSING,) * height + (TOP,))
        return cls(name, tuple(level_names), tuple(leaves), tuple(labels))


def _periods(name: str, level_names: Sequence[str], spec: Mapping[str, Any]) -> Hierarchy:
    """Build an integer-period hierarchy from a ``periods`` declaration."""
    try:
        first, last, origin = int(spec["first"]), int(spec["last"]), int(spec["origin"])
        widths = [int(w) for w in spec["widths"]]
    except (KeyError, TypeError, ValueError) as error:
        raise HierarchyError(
            f"hierarchy {name!r}: 'periods' needs integer first, last, origin and widths"
        ) from error
    if len(widths) != len(level_names) - 2:
        raise HierarchyError(
            f"hierarchy {name!r}: {len(widths)} period widths for {len(level_names)} levels"
        )
    mapping: dict[str, list[str]] = {}
    for value in range(first, last + 1):
        row = []
        for width in widths:
            start = origin + ((value - origin) // width) * width
            row.append(f"{start}-{start + width - 1}")
        mapping[str(value)] = row
    return Hierarchy.from_mapping(name, level_names, mapping)


def _table(name: str, level_names: Sequence[str], spec: Mapping[str, Any], base: Path) -> Hierarchy:
    """Build a hierarchy from columns of a CSV file named in a ``table`` declaration."""
    path = base / str(spec.get("path", ""))
    columns = [str(c) for c in spec.get("columns", [])]
    if len(columns) != len(level_names) - 1:
        raise HierarchyError(
            f"hierarchy {name!r}: 'table' needs one column per level below the top, got {columns}"
        )
    try:
        frame = pd.read_csv(path, dtype="string", keep_default_na=False)
    except FileNotFoundError as error:
        raise HierarchyError(f"hierarchy {name!r}: table file {path} not found") from error
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise HierarchyError(f"hierarchy {name!r}: {path} has no column(s) {missing}")
    mapping: dict[str, list[str]] = {}
    for row_number, row in enumerate(frame[columns].itertuples(index=False), start=2):
        leaf, *ancestors = (str(v) for v in row)
        empty = [columns[i + 1] for i, a in enumerate(ancestors) if a == MISSING]
        if leaf == MISSING or empty:
            raise HierarchyError(
                f"hierarchy {name!r}: {path} line {row_number} has an empty "
                f"{columns[0] if leaf == MISSING else empty[0]!r}"
            )
        if leaf in mapping:
            raise HierarchyError(
                f"hierarchy {name!r}: {path} line {row_number} repeats value {leaf!r}"
            )
        mapping[leaf] = ancestors
    return Hierarchy.from_mapping(name, level_names, mapping)


def load_hierarchy_file(path: Path | str) -> dict[str, Hierarchy]:
    """Read one hierarchy declaration and return it under each field it applies to.

    :param path: a JSON file with ``fields``, ``levels`` and one of ``mapping``, ``table`` or
        ``periods``; a ``table`` path is relative to the JSON file.
    :raises HierarchyError: naming the file and what is wrong with it.
    """
    path = Path(path)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise HierarchyError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(spec, dict):
        raise HierarchyError(f"{path}: expected a JSON object")
    fields = spec.get("fields")
    levels = spec.get("levels")
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
        raise HierarchyError(f"{path}: 'fields' must be a non-empty list of field names")
    if not isinstance(levels, list) or not all(isinstance(lv, str) for lv in levels):
        raise HierarchyError(f"{path}: 'levels' must be a list of level names")
    kinds = [kind for kind in ("mapping", "table", "periods") if kind in spec]
    if len(kinds) != 1:
        raise HierarchyError(f"{path}: declare exactly one of mapping, table, periods")
    name = path.stem
    try:
        if kinds[0] == "mapping":
            if not isinstance(spec["mapping"], dict):
                raise HierarchyError(f"hierarchy {name!r}: 'mapping' must be an object")
            hierarchy = Hierarchy.from_mapping(name, levels, spec["mapping"])
        elif kinds[0] == "table":
            hierarchy = _table(name, levels, spec["table"], path.parent)
        else:
            hierarchy = _periods(name, levels, spec["periods"])
    except HierarchyError as error:
        raise HierarchyError(f"{path}: {error}") from error
    return dict.fromkeys(fields, hierarchy)


def load_hierarchies(directory: Path | str) -> dict[str, Hierarchy]:
    """Read every ``*.json`` hierarchy declaration in ``directory``, keyed by field name.

    :param directory: the folder of declarations (the hub passes ``config/hierarchies``).
    :raises HierarchyError: if the folder is missing or two files claim the same field.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise HierarchyError(f"hierarchy folder {directory} does not exist")
    hierarchies: dict[str, Hierarchy] = {}
    origin: dict[str, Path] = {}
    for path in sorted(directory.glob("*.json")):
        for field_name, hierarchy in load_hierarchy_file(path).items():
            if field_name in hierarchies:
                raise HierarchyError(
                    f"field {field_name!r} has hierarchies in both {origin[field_name]} and {path}"
                )
            hierarchies[field_name] = hierarchy
            origin[field_name] = path
    return hierarchies


def fields_with_role(schema: Mapping[str, Any], role: str) -> list[str]:
    """Return the fields of a Table Schema whose ``ctdhub:role`` is ``role``, in schema order.

    :param schema: the record schema as parsed JSON (Frictionless Table Schema).
    :param role: ``quasi_identifier``, ``sensitive``, ``attribute`` or ``pseudonym``.

    >>> fields_with_role({"fields": [{"name": "gender", "ctdhub:role": "quasi_identifier"},
    ...                              {"name": "caseNo", "ctdhub:role": "pseudonym"}]},
    ...                  "quasi_identifier")
    ['gender']
    """
    fields = schema.get("fields")
    if not isinstance(fields, list):
        raise HierarchyError("the record schema has no list of 'fields'")
    return [str(f["name"]) for f in fields if isinstance(f, dict) and f.get("ctdhub:role") == role]


#: The top-level key of the record schema that declares attributes computed from other fields.
DERIVED_KEY = "ctdhub:derivedAttributes"


@dataclass(frozen=True)
class DerivedAttribute:
    """An attribute the schema declares as computed from other fields, never uploaded.

    Only one kind exists: ``flagSet``, the set of a group's boolean flags that are set, written
    as their field names in schema order joined by ``separator`` (``none`` when no flag is set).

    :param name: the attribute's column name.
    :param role: its ``ctdhub:role`` (``sensitive`` for the exploitation type).
    :param flags: the fields it is computed from, in schema order.
    :param true_values: per flag, the spellings that mean "set" (the field's ``trueValues``).
    :param separator: what joins the names of the flags that are set.
    :param none: the value of a record with no flag set.
    """

    name: str
    role: str
    flags: tuple[str, ...]
    true_values: tuple[tuple[str, ...], ...]
    separator: str
    none: str

    def compute(self, frame: pd.DataFrame) -> pd.Series:
        """Return the attribute for every record (strings, never missing).

        A flag counts as set when it is a boolean ``True``, or text equal to one of the field's
        true values (case-insensitive); anything else, missing included, counts as not set.

        :raises KeyError: naming the flags the records lack.
        """
        absent = [f for f in self.flags if f not in frame.columns]
        if absent:
            raise KeyError(f"derived attribute {self.name!r} needs column(s) {absent}")
        joined = pd.Series("", index=frame.index, dtype="string")
        for flag, spellings in zip(self.flags, self.true_values, strict=True):
            column = frame[flag]
            if pd.api.types.is_bool_dtype(column.dtype):
                is_set = column.fillna(False).astype(bool)
            else:
                text = column.astype("string").str.strip().str.lower()
                is_set = text.isin([s.lower() for s in spellings]).fillna(False).astype(bool)
            part = pd.Series(np.where(is_set, flag, ""), index=frame.index, dtype="string")
            glue = pd.Series(
                np.where(joined.ne("") & is_set, self.separator, ""),
                index=frame.index,
                dtype="string",
            )
            joined = joined + glue + part
        return joined.mask(joined.eq(""), self.none).rename(self.name)


def derived_attributes(schema: Mapping[str, Any]) -> dict[str, DerivedAttribute]:
    """Return the attributes the record schema derives from its fields, by name.

    :param schema: the record schema as parsed JSON; derived attributes live under
        :data:`DERIVED_KEY`, outside ``fields`` (partners never upload them).
    :raises HierarchyError: naming the entry and what is wrong with it.
    """
    entries = schema.get(DERIVED_KEY, [])
    if not isinstance(entries, list):
        raise HierarchyError(f"the record schema's {DERIVED_KEY!r} must be a list")
    fields = schema.get("fields")
    if not isinstance(fields, list):
        raise HierarchyError("the record schema has no list of 'fields'")
    names = {str(f.get("name")) for f in fields if isinstance(f, dict)}
    out: dict[str, DerivedAttribute] = {}
    for index, entry in enumerate(entries):
        where = f"{DERIVED_KEY}[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise HierarchyError(f"{where}: needs an object with a 'name'")
        name = entry["name"]
        where = f"derived attribute {name!r}"
        if name in names or name in out:
            raise HierarchyError(f"{where}: the name is already taken by a field")
        rule = entry.get("ctdhub:derivation")
        if not isinstance(rule, dict) or rule.get("kind") != "flagSet":
            raise HierarchyError(f"{where}: 'ctdhub:derivation' must have kind 'flagSet'")
        group, separator, none = rule.get("group"), rule.get("separator"), rule.get("noneValue")
        if not all(isinstance(v, str) and v for v in (group, separator, none)):
            raise HierarchyError(f"{where}: needs a non-empty group, separator and noneValue")
        members = [
            f
            for f in fields
            if isinstance(f, dict) and f.get("ctdhub:group") == group and f.get("type") == "boolean"
        ]
        if not members:
            raise HierarchyError(f"{where}: the schema has no boolean field in group {group!r}")
        out[name] = DerivedAttribute(
            name=name,
            role=str(entry.get("ctdhub:role", "attribute")),
            flags=tuple(str(f["name"]) for f in members),
            true_values=tuple(
                tuple(str(v) for v in f.get("trueValues", ["1", "true"])) for f in members
            ),
            separator=str(separator),
            none=str(none),
        )
    return out


def with_derived_attributes(frame: pd.DataFrame, schema: Mapping[str, Any]) -> pd.DataFrame:
    """Return a copy of the records with every attribute the schema derives added as a column.

    >>> schema = {"fields": [
    ...     {"name": "a", "type": "boolean", "trueValues": ["1"], "ctdhub:group": "g"},
    ...     {"name": "b", "type": "boolean", "trueValues": ["1"], "ctdhub:group": "g"}],
    ...   DERIVED_KEY: [{"name": "ab", "ctdhub:role": "sensitive", "ctdhub:derivation": {
    ...     "kind": "flagSet", "group": "g", "separator": ";", "noneValue": "none"}}]}
    >>> frame = pd.DataFrame({"a": ["1", "", "1"], "b": ["1", "0", ""]})
    >>> with_derived_attributes(frame, schema)["ab"].tolist()
    ['a;b', 'none', 'a']
    """
    out = frame.copy()
    for name, attribute in derived_attributes(schema).items():
        out[name] = attribute.compute(frame)
    return out
