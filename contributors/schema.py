"""Load the one machine-readable case record schema (``contributors/resources/record_schema.json``).

The schema is a Frictionless Table Schema with ctdhub's own keys (prefixed ``ctdhub:``). It drives
upload validation, the published data dictionary, the quasi-identifier domains of k-anonymity and
the public key sets of differentially private tables, so no other module restates a column list:
they ask :func:`load_schema` instead.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

import pandas as pd

__all__ = [
    "COUNTRIES_PATH",
    "FIELD_TYPES",
    "INPUT_SLACK",
    "ROLES",
    "SCHEMA_PATH",
    "RecordSchema",
    "SchemaError",
    "SchemaField",
    "fold_header",
    "load_countries",
    "load_schema",
]

# Package data, so an installed toolkit has the one schema the hub uses (a directory on disk in
# any installation that is not a zip file).
CONFIG_DIR = Path(str(resources.files("contributors") / "resources"))
#: Where the schema lives; :func:`load_schema` reads it when given no path.
SCHEMA_PATH = CONFIG_DIR / "record_schema.json"
#: ISO 3166-1 countries with their UN M49 sub-region and region.
COUNTRIES_PATH = CONFIG_DIR / "countries.csv"

FieldType = Literal["string", "integer", "boolean"]
Role = Literal["quasi_identifier", "sensitive", "attribute", "pseudonym"]
FIELD_TYPES: tuple[str, ...] = ("string", "integer", "boolean")
ROLES: tuple[str, ...] = ("quasi_identifier", "sensitive", "attribute", "pseudonym")
COUNTRY_COLUMNS: tuple[str, ...] = ("alpha2", "alpha3", "numeric", "name", "subregion", "region")


#: Characters a cell may run over its field's longest legal value (see
#: :attr:`SchemaField.longest_input`).
INPUT_SLACK = 32


class SchemaError(ValueError):
    """The schema document (or a file it references) is malformed."""


@dataclass(frozen=True)
class SchemaField:
    """One variable of the case record, as the schema declares it.

    :param name: the column name partners use and releases carry.
    :param type: ``"string"``, ``"integer"`` or ``"boolean"``.
    :param title: a short human-readable label.
    :param description: what the variable means, for the data dictionary.
    :param role: ``quasi_identifier``, ``sensitive``, ``attribute`` or ``pseudonym``.
    :param group: the thematic group the data dictionary lists the field under.
    :param codes: the canonical codes of a coded field, in schema order; ``None`` if not coded.
    :param aliases: other accepted spellings, each paired with its canonical code (for countries,
        the ISO alpha-3 code).
    :param band_bounds: for an age-band field, each band with its lowest and highest age in years
        (``None`` for an open upper end).
    :param minimum: smallest accepted integer.
    :param maximum: largest accepted integer.
    :param required: a missing value rejects the row.
    :param unique: the value may occur once per upload.
    :param max_length: longest accepted string.
    :param derived_from: for a field that follows from an age-band field, the rule
        ``(source field, threshold age, code below the threshold, code at or above it)``.
    :param header_aliases: other header spellings that name this field (``ctdhub:headerAliases``:
        CTDC's older names and common variants); see :mod:`contributors.headers`.
    :param pattern: a regular expression every (stripped) value must match in full
        (``constraints.pattern`` of a free string field; a coded field's pattern describes its
        stored codes and is already implied by them).
    :param pattern_reason: what a value that does not match ``pattern`` is told
        (``ctdhub:patternReason``).
    :param date_as_year: an integer year field that also takes an ISO date (``2019-03-15``) and
        keeps only its year (``ctdhub:dateAsYear``).
    """

    name: str
    type: FieldType
    title: str
    description: str
    role: Role
    group: str
    codes: tuple[str, ...] | None = None
    aliases: tuple[tuple[str, str], ...] = ()
    band_bounds: tuple[tuple[str, int, int | None], ...] | None = None
    minimum: int | None = None
    maximum: int | None = None
    required: bool = False
    unique: bool = False
    max_length: int | None = None
    derived_from: tuple[str, int, str, str] | None = None
    header_aliases: tuple[str, ...] = ()
    pattern: str | None = None
    pattern_reason: str | None = None
    date_as_year: bool = False

    @property
    def longest_input(self) -> int:
        """Return the length of the longest cell this field can accept, before any pattern runs.

        It is the longest legal value the schema allows (a code or its alias, an exact age, the
        widest integer of the range, an ISO date for a year field, ``false``, the declared
        ``maxLength``) plus :data:`INPUT_SLACK` characters for harmless spelling variants
        (padding, spaced dashes, a trailing ``.0``). A longer cell is refused unread, so no
        check ever spends time on a megabyte cell.

        >>> load_schema().field("gender").longest_input
        57
        """
        widths = [len("false")]
        if self.codes is not None:
            widths.extend(len(code) for code in self.codes)
            widths.extend(len(alias) for alias, _ in self.aliases)
        if self.band_bounds is not None:
            widths.append(3)  # an exact age in whole years
        if self.type == "integer":
            widths.extend(len(str(bound)) for bound in (self.minimum, self.maximum) if bound)
            widths.append(20)  # an unbounded integer: the width of a 64-bit number
        if self.date_as_year:
            widths.append(len("2019-03-15"))
        if self.max_length is not None:
            widths.append(self.max_length)
        return max(widths) + INPUT_SLACK


def fold_header(text: str) -> str:
    """Fold a header cell for matching: Unicode-normalised, case-folded, letters and digits only.

    >>> [fold_header(h) for h in (" Country of Exploitation ", "country_of_exploitation")]
    ['countryofexploitation', 'countryofexploitation']
    >>> fold_header("Means of control: debt bondage") == fold_header("meansOfControlDebtBondage")
    True
    """
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if ch.isalnum())


def _header_spellings(fields: Iterable[SchemaField]) -> dict[str, tuple[str, str]]:
    spellings: dict[str, tuple[str, str]] = {}
    for spec in fields:
        candidates = [(spec.name, "name"), (spec.title, "title")]
        candidates.extend((alias, "alias") for alias in spec.header_aliases)
        for spelling, how in candidates:
            key = fold_header(spelling)
            taken = spellings.get(key)
            if taken is not None and taken[0] != spec.name:
                raise SchemaError(
                    f"{spec.name}: the header spelling {spelling!r} also names {taken[0]}"
                )
            if taken is None:
                spellings[key] = (spec.name, how)
    return spellings


@dataclass(frozen=True)
class RecordSchema:
    """The case record schema: its fields in order, and the document they came from.

    :param fields: the fields, in schema (and column) order.
    :param missing_values: the spellings that mean "missing" in a partner file.
    :param version: the schema's version string.
    :param document: the Table Schema document as JSON text (kept as text so it stays immutable).
    """

    fields: tuple[SchemaField, ...]
    missing_values: tuple[str, ...]
    version: str
    document: str

    @functools.cached_property
    def header_spellings(self) -> dict[str, tuple[str, str]]:
        """Return every declared header spelling, folded, with the field it names and how.

        ``how`` is ``name``, ``title`` or ``alias``; :func:`parse_schema` has checked that no
        folded spelling names two fields.

        >>> load_schema().header_spellings[fold_header("Country of Exploitation")]
        ('CountryOfExploitation', 'name')
        >>> load_schema().header_spellings[fold_header("Age band")]
        ('ageBroad', 'title')
        """
        return _header_spellings(self.fields)

    def field(self, name: str) -> SchemaField:
        """Return the field called ``name``.

        :param name: a column name.
        :raises KeyError: if the schema has no such field.
        """
        for candidate in self.fields:
            if candidate.name == name:
                return candidate
        raise KeyError(f"the record schema has no field named {name!r}")

    def __contains__(self, name: object) -> bool:
        return any(candidate.name == name for candidate in self.fields)

    @property
    def names(self) -> tuple[str, ...]:
        """Return every field name, in schema order."""
        return tuple(candidate.name for candidate in self.fields)

    def by_role(self, role: str) -> tuple[str, ...]:
        """Return the names of the fields with ``role``, in schema order.

        :param role: one of :data:`ROLES`.
        :raises ValueError: for an unknown role.
        """
        if role not in ROLES:
            raise ValueError(f"unknown field role {role!r}; expected one of {', '.join(ROLES)}")
        return tuple(candidate.name for candidate in self.fields if candidate.role == role)

    @property
    def quasi_identifiers(self) -> tuple[str, ...]:
        """Return the quasi-identifier field names, in schema order."""
        return self.by_role("quasi_identifier")

    @property
    def sensitive(self) -> tuple[str, ...]:
        """Return the sensitive field names, in schema order."""
        return self.by_role("sensitive")

    def domain(self, name: str) -> tuple[str, ...] | None:
        """Return the public set of values a field can take, as canonical strings.

        Coded fields give their codes; a bounded integer field gives every integer in its range
        as a decimal string. Booleans and free strings (the pseudonym) give ``None``: a boolean's
        domain is simply ``{False, True}`` and a pseudonym has no public domain.

        :param name: a field name.
        :raises KeyError: if the schema has no such field.
        """
        spec = self.field(name)
        if spec.codes is not None:
            return spec.codes
        if spec.type == "integer" and spec.minimum is not None and spec.maximum is not None:
            return tuple(str(value) for value in range(spec.minimum, spec.maximum + 1))
        return None

    def as_dict(self) -> dict[str, Any]:
        """Return the Table Schema document, a fresh copy each call."""
        return cast(dict[str, Any], json.loads(self.document))


def _current_year() -> int:
    return dt.datetime.now(dt.UTC).year


def _require(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise SchemaError(f"{where}: {message}")


def _as_int(value: object, where: str, key: str) -> int | None:
    if value is None:
        return None
    # bool is an int subclass; a schema saying "minimum": true is a mistake, not the number 1
    _require(
        isinstance(value, int) and not isinstance(value, bool), where, f"{key} must be an integer"
    )
    return cast(int, value)


def _band_bounds(
    raw: object, codes: tuple[str, ...], where: str
) -> tuple[tuple[str, int, int | None], ...]:
    _require(isinstance(raw, dict), where, "ctdhub:bandBounds must be an object")
    bounds = cast(dict[str, Any], raw)
    _require(set(bounds) == set(codes), where, "ctdhub:bandBounds must cover exactly the codes")
    result: list[tuple[str, int, int | None]] = []
    for code in codes:
        pair = bounds[code]
        _require(
            isinstance(pair, list) and len(pair) == 2, where, f"bounds of {code!r} need 2 items"
        )
        low = _as_int(pair[0], where, f"lower bound of {code!r}")
        high = _as_int(pair[1], where, f"upper bound of {code!r}")
        _require(low is not None, where, f"band {code!r} needs a lower bound")
        result.append((code, cast(int, low), high))
    result.sort(key=lambda band: band[1])
    for (code, _, high), (next_code, next_low, _) in zip(result, result[1:], strict=False):
        # bands must tile the ages with no gap or overlap, or an exact age could fall nowhere
        _require(
            high is not None and high + 1 == next_low,
            where,
            f"bands {code!r} and {next_code!r} leave a gap or overlap",
        )
    return tuple(result)


def _parse_field(raw: Mapping[str, Any], index: int, countries_dir: Path) -> SchemaField:
    name = raw.get("name")
    where = f"field {index + 1} ({name!r})"
    _require(isinstance(name, str) and bool(name), where, "needs a non-empty name")
    field_type = raw.get("type")
    _require(field_type in FIELD_TYPES, where, f"type must be one of {', '.join(FIELD_TYPES)}")
    role = raw.get("ctdhub:role")
    _require(role in ROLES, where, f"ctdhub:role must be one of {', '.join(ROLES)}")
    for key in ("title", "description", "ctdhub:group"):
        _require(isinstance(raw.get(key), str) and bool(raw.get(key)), where, f"needs a {key}")
    constraints = raw.get("constraints", {})
    _require(isinstance(constraints, dict), where, "constraints must be an object")

    codes: tuple[str, ...] | None = None
    aliases: tuple[tuple[str, str], ...] = ()
    if "enum" in constraints:
        enum = constraints["enum"]
        _require(
            isinstance(enum, list) and bool(enum) and all(isinstance(c, str) for c in enum),
            where,
            "constraints.enum must be a non-empty list of strings",
        )
        codes = tuple(enum)
    code_list = raw.get("ctdhub:codeList")
    if code_list is not None:
        _require(codes is None, where, "has both constraints.enum and ctdhub:codeList")
        _require(
            isinstance(code_list, dict)
            and code_list.get("resource") == COUNTRIES_PATH.name
            and code_list.get("field") == "alpha2",
            where,
            "ctdhub:codeList must reference countries.csv field alpha2",
        )
        countries = load_countries(countries_dir / COUNTRIES_PATH.name)
        codes = tuple(countries["alpha2"].tolist())
        aliases = tuple(zip(countries["alpha3"].tolist(), codes, strict=True))
    if codes is not None:
        _require(len(set(codes)) == len(codes), where, "codes must be distinct")

    band_bounds = None
    if "ctdhub:bandBounds" in raw:
        _require(codes is not None, where, "ctdhub:bandBounds needs coded values")
        band_bounds = _band_bounds(raw["ctdhub:bandBounds"], cast(tuple[str, ...], codes), where)

    maximum = _as_int(constraints.get("maximum"), where, "constraints.maximum")
    if raw.get("ctdhub:maximum") == "current-year":
        # Frictionless has no moving bound, so the schema names it and the loader resolves it
        maximum = _current_year()
    elif "ctdhub:maximum" in raw:
        raise SchemaError(f"{where}: ctdhub:maximum only supports 'current-year'")
    max_length = _as_int(constraints.get("maxLength"), where, "constraints.maxLength")
    derived_from = None
    if "ctdhub:derivedFrom" in raw:
        rule = raw["ctdhub:derivedFrom"]
        _require(isinstance(rule, dict), where, "ctdhub:derivedFrom must be an object")
        source, threshold = rule.get("field"), rule.get("thresholdAge")
        below, above = rule.get("below"), rule.get("atOrAbove")
        _require(
            isinstance(source, str)
            and isinstance(threshold, int)
            and codes is not None
            and below in codes
            and above in codes,
            where,
            "ctdhub:derivedFrom needs field, thresholdAge and two of the field's codes",
        )
        derived_from = (cast(str, source), cast(int, threshold), cast(str, below), str(above))
    header_aliases = raw.get("ctdhub:headerAliases", [])
    _require(
        isinstance(header_aliases, list)
        and all(isinstance(alias, str) and alias.strip() for alias in header_aliases),
        where,
        "ctdhub:headerAliases must be a list of non-empty strings",
    )
    pattern, pattern_reason = _parse_pattern(raw, constraints, codes, where)
    date_as_year = raw.get("ctdhub:dateAsYear", False)
    _require(
        date_as_year is False or (date_as_year is True and field_type == "integer"),
        where,
        "ctdhub:dateAsYear must be true or false, and only on an integer field",
    )
    return SchemaField(
        name=cast(str, name),
        type=cast(FieldType, field_type),
        title=cast(str, raw["title"]),
        description=cast(str, raw["description"]),
        role=cast(Role, role),
        group=cast(str, raw["ctdhub:group"]),
        codes=codes,
        aliases=aliases,
        band_bounds=band_bounds,
        minimum=_as_int(constraints.get("minimum"), where, "constraints.minimum"),
        maximum=maximum,
        required=bool(constraints.get("required", False)),
        unique=bool(constraints.get("unique", False)),
        max_length=max_length,
        derived_from=derived_from,
        header_aliases=tuple(header_aliases),
        pattern=pattern,
        pattern_reason=pattern_reason,
        date_as_year=bool(date_as_year),
    )


def _parse_pattern(
    raw: Mapping[str, Any],
    constraints: Mapping[str, Any],
    codes: tuple[str, ...] | None,
    where: str,
) -> tuple[str | None, str | None]:
    """Return a free string field's pattern and the reason its mismatches are given."""
    pattern = constraints.get("pattern")
    reason = raw.get("ctdhub:patternReason")
    if pattern is None or codes is not None:
        _require(reason is None, where, "ctdhub:patternReason needs a constraints.pattern")
        return None, None
    _require(isinstance(pattern, str) and bool(pattern), where, "constraints.pattern is empty")
    try:
        re.compile(pattern)
    except re.error as error:
        raise SchemaError(
            f"{where}: constraints.pattern is not a regular expression: {error}"
        ) from None
    _require(
        isinstance(reason, str) and bool(reason),
        where,
        "a free string field's constraints.pattern needs a ctdhub:patternReason",
    )
    _require(
        constraints.get("maxLength") is not None,
        where,
        "a free string field with a pattern needs a constraints.maxLength",
    )
    return cast(str, pattern), cast(str, reason)


def parse_schema(document: Mapping[str, Any], countries_dir: Path = CONFIG_DIR) -> RecordSchema:
    """Check a Table Schema document and turn it into a :class:`RecordSchema`.

    :param document: the parsed JSON document.
    :param countries_dir: where the ``countries.csv`` a country field references lives.
    :raises SchemaError: naming the field and the problem.
    """
    raw_fields = document.get("fields")
    _require(isinstance(raw_fields, list) and bool(raw_fields), "schema", "needs a fields list")
    fields = tuple(
        _parse_field(raw, index, countries_dir)
        for index, raw in enumerate(cast(list[Mapping[str, Any]], raw_fields))
    )
    names = [spec.name for spec in fields]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    _require(not duplicates, "schema", f"duplicate field names: {', '.join(duplicates)}")
    _header_spellings(fields)  # two fields must never share a header spelling
    for spec in fields:
        if spec.derived_from is None:
            continue
        source, threshold = spec.derived_from[:2]
        _require(source in names, spec.name, f"derives from unknown field {source!r}")
        bands = fields[names.index(source)].band_bounds
        _require(bands is not None, spec.name, f"derives from {source!r}, which has no age bands")
        for code, low, high in cast(tuple[tuple[str, int, int | None], ...], bands):
            # a band across the threshold would make the derived value ambiguous
            _require(
                (high is not None and high < threshold) or low >= threshold,
                spec.name,
                f"age band {code!r} straddles the threshold age {threshold}",
            )
    missing_values = document.get("missingValues", [""])
    _require(
        isinstance(missing_values, list) and all(isinstance(v, str) for v in missing_values),
        "schema",
        "missingValues must be a list of strings",
    )
    version = document.get("ctdhub:version", "")
    _require(isinstance(version, str) and bool(version), "schema", "needs a ctdhub:version")
    return RecordSchema(
        fields=fields,
        missing_values=tuple(missing_values),
        version=cast(str, version),
        document=json.dumps(document, ensure_ascii=False),
    )


@functools.lru_cache(maxsize=8)
def _load_schema_cached(path: Path) -> RecordSchema:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SchemaError(f"cannot read the record schema at {path}: {error.strerror}") from error
    except json.JSONDecodeError as error:
        raise SchemaError(f"{path} is not valid JSON: {error}") from error
    _require(isinstance(document, dict), str(path), "the schema must be a JSON object")
    return parse_schema(document, countries_dir=path.parent)


def load_schema(path: Path | None = None) -> RecordSchema:
    """Load the record schema, once per path (later calls return the same object).

    :param path: a schema file; defaults to the package's ``resources/record_schema.json``.
    :raises SchemaError: if the file is missing or malformed.

    >>> schema = load_schema()
    >>> schema.quasi_identifiers[:3]
    ('yearOfRegistration', 'gender', 'ageBroad')
    >>> schema.domain("gender")
    ('Female', 'Male', 'Transgender/NonConforming')
    >>> schema.field("citizenship").aliases[0]
    ('AND', 'AD')
    """
    return _load_schema_cached((path or SCHEMA_PATH).resolve())


@functools.lru_cache(maxsize=8)
def _read_countries(path: Path) -> pd.DataFrame:
    try:
        # NA is Namibia: pandas' default NA spellings must not turn it into a missing value
        countries = pd.read_csv(path, dtype="string", keep_default_na=False, na_filter=False)
    except OSError as error:
        raise SchemaError(f"cannot read the country list at {path}: {error.strerror}") from error
    _require(
        tuple(countries.columns) == COUNTRY_COLUMNS,
        str(path),
        f"columns must be {','.join(COUNTRY_COLUMNS)}",
    )
    for column in ("alpha2", "alpha3"):
        _require(countries[column].is_unique, str(path), f"{column} codes must be unique")
    return countries


def load_countries(path: Path | None = None) -> pd.DataFrame:
    """Return the country list (``resources/countries.csv``) with every column as strings.

    :param path: a countries file; defaults to the one beside the schema.
    :raises SchemaError: if the file is missing or malformed.

    >>> countries = load_countries()
    >>> countries.loc[countries["alpha2"] == "NA", ["alpha3", "name", "region"]].iloc[0].tolist()
    ['NAM', 'Namibia', 'Africa']
    """
    # a copy, so a caller editing its frame cannot change what the next caller gets
    return _read_countries((path or COUNTRIES_PATH).resolve()).copy()
