"""The query spec model: what a researcher may ask, validated against the record schema.

The schema arrives as data (one :class:`Field` per column, with its domain); nothing here reads
a file or names a column, so the same code serves whatever schema the hub loads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "Code",
    "Field",
    "FieldKind",
    "Filter",
    "Measure",
    "QuerySpec",
    "QuerySpecError",
    "SpendOutOfRange",
    "SpendRequest",
    "canonical_json",
    "parse_spec",
    "schema_of",
    "validate_spec",
]

FieldKind = Literal["string", "integer", "boolean"]
MeasureKind = Literal["count", "sum", "mean", "quantile"]
Code = str | int | bool | None
"""One value of a field: a code, an integer, a boolean, or None for "missing"."""

MAX_GROUP_FIELDS = 4
MAX_CANDIDATES = 10_000
"""Most integer values a bounded field may span and still serve as public keys or candidates."""


class QuerySpecError(ValueError):
    """A query spec does not fit the schema; ``field`` names the offending part of the spec.

    :param field: the spec path at fault, e.g. ``"group_by[1]"`` or ``"filters[0].values"``
    :param reason: why it is refused, in words a researcher can act on
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class SpendOutOfRange(QuerySpecError):
    """A spend, once converted to rho, is outside the range the hub declares for one query.

    Refused before any calibration runs: a tiny spend buys nothing but noise, and OpenDP's
    accuracy summary costs time in proportion to the noise scale.
    """


@dataclass(frozen=True, slots=True)
class Field:
    """One column of the record schema, as the hub passes it in.

    :param name: the column name
    :param kind: ``"string"`` (codes), ``"integer"`` or ``"boolean"``; every kind may be missing
    :param domain: the allowed codes, when the schema declares them (public group keys)
    :param bounds: inclusive (lower, upper) bounds of an integer field, when declared; derived
        from the domain when only the domain is given

    >>> Field("ageBroad", "string", ("0--8", "9--17")).public_keys()
    ('0--8', '9--17', None)
    >>> Field("yearOfRegistration", "integer", bounds=(2019, 2021)).public_keys()
    (2019, 2020, 2021, None)
    >>> Field("isAbduction", "boolean").public_keys()
    (False, True, None)
    >>> Field("citizenship", "string").public_keys() is None
    True
    """

    name: str
    kind: FieldKind
    domain: tuple[Code, ...] | None = None
    bounds: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("string", "integer", "boolean"):
            raise QuerySpecError(self.name, f"unknown field kind {self.kind!r}")
        if self.domain is not None:
            if len(set(self.domain)) != len(self.domain) or None in self.domain:
                raise QuerySpecError(
                    self.name, "a domain lists distinct codes; missing is implied, not listed"
                )
            wanted: type = {"string": str, "integer": int, "boolean": bool}[self.kind]
            wrong = [code for code in self.domain if type(code) is not wanted]
            if wrong:
                raise QuerySpecError(
                    self.name, f"domain code {wrong[0]!r} is not of kind {self.kind}"
                )
        if self.bounds is not None:
            if self.kind != "integer":
                raise QuerySpecError(self.name, "only integer fields carry bounds")
            low, high = self.bounds
            if not (type(low) is int and type(high) is int and low <= high):
                raise QuerySpecError(self.name, f"bounds {self.bounds!r} are not integers lo<=hi")

    @property
    def value_bounds(self) -> tuple[int, int] | None:
        """Return the inclusive value bounds a sum, mean or quantile may rely on."""
        if self.kind == "boolean":
            return (0, 1)
        if self.kind != "integer":
            return None
        if self.bounds is not None:
            return self.bounds
        if self.domain:
            codes = [int(code) for code in self.domain if code is not None]
            return (min(codes), max(codes))
        return None

    def public_keys(self) -> tuple[Code, ...] | None:
        """Return every key a grouped release answers (missing last), or None if not public."""
        if self.kind == "boolean":
            return (False, True, None)
        if self.domain is not None:
            return (*self.domain, None)
        if self.kind == "integer" and self.bounds is not None:
            low, high = self.bounds
            if high - low < MAX_CANDIDATES:
                return (*range(low, high + 1), None)
        return None


def schema_of(fields: Iterable[Field]) -> dict[str, Field]:
    """Index fields by name, refusing duplicates.

    :param fields: the schema's fields

    >>> sorted(schema_of([Field("a", "string"), Field("b", "boolean")]))
    ['a', 'b']
    """
    schema: dict[str, Field] = {}
    for item in fields:
        if item.name in schema:
            raise QuerySpecError(item.name, "the schema lists this field twice")
        schema[item.name] = item
    return schema


@dataclass(frozen=True, slots=True)
class Measure:
    """What each cell releases.

    :param kind: ``count`` (records), ``sum``, ``mean`` or ``quantile`` of ``field``
    :param field: the numeric field measured (None for a count)
    :param quantile: for ``quantile``, the level in (0, 1), e.g. 0.5 for the median
    """

    kind: MeasureKind
    field: str | None = None
    quantile: float | None = None


@dataclass(frozen=True, slots=True)
class Filter:
    """Keep the case records whose ``field`` equals one of ``values`` (None matches missing).

    :param field: the field tested
    :param values: the accepted values (one value is an equality, several a membership)
    """

    field: str
    values: tuple[Code, ...]

    def __post_init__(self) -> None:
        # Plans are cached by spec, so a spec built with lists must still hash.
        if isinstance(self.values, list):
            object.__setattr__(self, "values", tuple(self.values))


@dataclass(frozen=True, slots=True)
class SpendRequest:
    """The privacy spend a query asks for: exactly one of three forms.

    - ``rho``: a zCDP spend;
    - ``epsilon`` with ``delta``: converted to the largest rho that OpenDP's conversion keeps
      within them;
    - ``half_width``: the 95% half-width wanted on each cell's count (or sum), turned into the
      smallest spend that achieves it.

    :param rho: zero-concentrated DP spend
    :param epsilon: epsilon of an (epsilon, delta) spend
    :param delta: delta of an (epsilon, delta) spend
    :param half_width: target 95% half-width of each cell's noise
    """

    rho: float | None = None
    epsilon: float | None = None
    delta: float | None = None
    half_width: float | None = None


@dataclass(frozen=True, slots=True)
class QuerySpec:
    """A researcher's aggregate query: measure, grouping, filters, spend.

    :param measure: what each cell releases
    :param spend: the privacy spend requested
    :param group_by: 0 to 4 field names; every combination of their keys is a cell
    :param filters: equality / membership conditions, all of which a record must meet
    :param key_selection_delta: the delta DP key selection may spend when a grouping field has no
        public domain (ignored otherwise)
    """

    measure: Measure
    spend: SpendRequest
    group_by: tuple[str, ...] = ()
    filters: tuple[Filter, ...] = field(default_factory=tuple)
    key_selection_delta: float = 1e-9

    def __post_init__(self) -> None:
        # Plans are cached by spec, so a spec built with lists must still hash.
        if isinstance(self.group_by, list):
            object.__setattr__(self, "group_by", tuple(self.group_by))
        if isinstance(self.filters, list):
            object.__setattr__(self, "filters", tuple(self.filters))


def _check_number(path: str, value: float | None, *, low: float, high: float) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise QuerySpecError(path, f"must be a finite number, got {value!r}")
    if not low < value < high:
        raise QuerySpecError(path, f"must lie strictly between {low} and {high}, got {value!r}")


def _field(schema: Mapping[str, Field], path: str, name: object) -> Field:
    if not isinstance(name, str) or name not in schema:
        raise QuerySpecError(path, f"{name!r} is not a field of the record schema")
    return schema[name]


def _check_value(path: str, item: Field, value: object) -> None:
    if value is None:
        return
    wanted: type = {"string": str, "integer": int, "boolean": bool}[item.kind]
    if type(value) is not wanted:
        raise QuerySpecError(path, f"{value!r} is not a {item.kind} value of {item.name}")
    if item.domain is not None and value not in item.domain:
        raise QuerySpecError(path, f"{value!r} is not in the domain of {item.name}")
    bounds = item.value_bounds
    if item.kind == "integer" and bounds is not None:
        assert isinstance(value, int)  # noqa: S101 -- narrowed by the type check above
        if not bounds[0] <= value <= bounds[1]:
            raise QuerySpecError(path, f"{value!r} is outside the bounds {bounds} of {item.name}")


def validate_spec(spec: QuerySpec, schema: Mapping[str, Field]) -> None:
    """Check ``spec`` against ``schema``; raise :class:`QuerySpecError` naming the first fault.

    :param spec: the query spec
    :param schema: the record schema, by field name

    >>> schema = schema_of([Field("gender", "string", ("Female", "Male"))])
    >>> validate_spec(QuerySpec(Measure("count"), SpendRequest(rho=0.1), ("gender",)), schema)
    >>> try:
    ...     validate_spec(QuerySpec(Measure("count"), SpendRequest(rho=0.1), ("sex",)), schema)
    ... except QuerySpecError as error:
    ...     print(error)
    group_by[0]: 'sex' is not a field of the record schema
    """
    measure = spec.measure
    if measure.kind not in ("count", "sum", "mean", "quantile"):
        raise QuerySpecError("measure.kind", f"unknown measure {measure.kind!r}")
    if measure.kind == "count":
        if measure.field is not None:
            raise QuerySpecError("measure.field", "a count counts case records: give no field")
    else:
        item = _field(schema, "measure.field", measure.field)
        if item.kind == "string":
            raise QuerySpecError("measure.field", f"{item.name} holds codes, not numbers")
        if item.value_bounds is None:
            raise QuerySpecError(
                "measure.field", f"{item.name} has no declared bounds, so its sensitivity is open"
            )
        if measure.kind == "quantile" and item.kind != "integer":
            raise QuerySpecError("measure.field", "a quantile needs an integer field")
    if measure.kind == "quantile":
        if measure.quantile is None:
            raise QuerySpecError("measure.quantile", "a quantile measure needs its level")
        _check_number("measure.quantile", measure.quantile, low=0.0, high=1.0)
        low, high = schema[str(measure.field)].value_bounds or (0, 0)
        if high - low >= MAX_CANDIDATES:
            raise QuerySpecError(
                "measure.field", f"the bounds span more than {MAX_CANDIDATES} candidate values"
            )
    elif measure.quantile is not None:
        raise QuerySpecError(
            "measure.quantile", f"only a quantile takes a level, not a {measure.kind}"
        )

    if len(spec.group_by) > MAX_GROUP_FIELDS:
        raise QuerySpecError(
            "group_by", f"at most {MAX_GROUP_FIELDS} fields, got {len(spec.group_by)}"
        )
    if len(set(spec.group_by)) != len(spec.group_by):
        raise QuerySpecError("group_by", "a field appears twice")
    for index, name in enumerate(spec.group_by):
        _field(schema, f"group_by[{index}]", name)
    if measure.kind == "quantile" and any(
        schema[name].public_keys() is None for name in spec.group_by
    ):
        raise QuerySpecError("group_by", "a grouped quantile needs public keys on every field")

    for index, condition in enumerate(spec.filters):
        item = _field(schema, f"filters[{index}].field", condition.field)
        if not isinstance(condition.values, Sequence) or isinstance(condition.values, str):
            raise QuerySpecError(f"filters[{index}].values", "must be a list of values")
        if not condition.values:
            raise QuerySpecError(f"filters[{index}].values", "an empty list matches no record")
        for position, value in enumerate(condition.values):
            _check_value(f"filters[{index}].values[{position}]", item, value)

    _check_number("key_selection_delta", spec.key_selection_delta, low=0.0, high=1.0)
    _validate_spend(spec)


def _validate_spend(spec: QuerySpec) -> None:
    spend = spec.spend
    forms = [
        spend.rho is not None,
        spend.epsilon is not None or spend.delta is not None,
        spend.half_width is not None,
    ]
    if sum(forms) != 1:
        raise QuerySpecError("spend", "give exactly one of rho, epsilon with delta, half_width")
    _check_number("spend.rho", spend.rho, low=0.0, high=math.inf)
    if forms[1]:
        if spend.epsilon is None or spend.delta is None:
            raise QuerySpecError("spend", "an epsilon spend needs both epsilon and delta")
        _check_number("spend.epsilon", spend.epsilon, low=0.0, high=math.inf)
        _check_number("spend.delta", spend.delta, low=0.0, high=1.0)
    if spend.half_width is not None:
        _check_number("spend.half_width", spend.half_width, low=0.0, high=math.inf)
        if spec.measure.kind not in ("count", "sum"):
            raise QuerySpecError(
                "spend.half_width",
                f"a target accuracy is defined for counts and sums, not a {spec.measure.kind}",
            )


_SPEC_KEYS = frozenset({"measure", "group_by", "filters", "spend", "key_selection_delta"})
_MEASURE_KEYS = frozenset({"kind", "field", "quantile"})
_FILTER_KEYS = frozenset({"field", "values"})
_SPEND_KEYS = frozenset({"rho", "epsilon", "delta", "half_width"})


def _object(path: str, value: object, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise QuerySpecError(path, "must be an object")
    unknown = sorted(str(key) for key in value if key not in allowed)
    if unknown:
        raise QuerySpecError(f"{path}.{unknown[0]}" if path else unknown[0], "unknown member")
    return value


def _number(path: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise QuerySpecError(path, f"must be a number, got {type(value).__name__}")
    return float(value)


def _list(path: str, value: object) -> list[Any]:
    if not isinstance(value, list):
        raise QuerySpecError(path, "must be a list")
    return value


def parse_spec(document: object) -> QuerySpec:
    """Build a :class:`QuerySpec` from a decoded JSON query spec, refusing unknown members.

    Only the shape is checked here; :func:`validate_spec` checks it against the schema.

    :param document: the decoded JSON object

    >>> parse_spec({"measure": {"kind": "count"}, "group_by": ["gender"],
    ...             "filters": [{"field": "isAbduction", "values": [True, None]}],
    ...             "spend": {"epsilon": 1, "delta": 1e-6}})  # doctest: +NORMALIZE_WHITESPACE
    QuerySpec(measure=Measure(kind='count', field=None, quantile=None),
              spend=SpendRequest(rho=None, epsilon=1.0, delta=1e-06, half_width=None),
              group_by=('gender',),
              filters=(Filter(field='isAbduction', values=(True, None)),),
              key_selection_delta=1e-09)
    """
    root = _object("", document, _SPEC_KEYS)
    for required in ("measure", "spend"):
        if required not in root:
            raise QuerySpecError(required, "is required")
    measure = _object("measure", root["measure"], _MEASURE_KEYS)
    kind = measure.get("kind")
    if not isinstance(kind, str):
        raise QuerySpecError("measure.kind", "must be a string")
    field_name = measure.get("field")
    if field_name is not None and not isinstance(field_name, str):
        raise QuerySpecError("measure.field", "must be a string")
    spend = _object("spend", root["spend"], _SPEND_KEYS)
    group_by = _list("group_by", root.get("group_by", []))
    for index, name in enumerate(group_by):
        if not isinstance(name, str):
            raise QuerySpecError(f"group_by[{index}]", "must be a string")
    filters = []
    for index, raw in enumerate(_list("filters", root.get("filters", []))):
        condition = _object(f"filters[{index}]", raw, _FILTER_KEYS)
        name = condition.get("field")
        if not isinstance(name, str):
            raise QuerySpecError(f"filters[{index}].field", "must be a string")
        values = _list(f"filters[{index}].values", condition.get("values"))
        filters.append(Filter(name, tuple(values)))
    key_delta = _number("key_selection_delta", root.get("key_selection_delta", 1e-9))
    return QuerySpec(
        measure=Measure(kind, field_name, _number("measure.quantile", measure.get("quantile"))),  # type: ignore[arg-type]  # validate_spec checks the kind
        spend=SpendRequest(
            rho=_number("spend.rho", spend.get("rho")),
            epsilon=_number("spend.epsilon", spend.get("epsilon")),
            delta=_number("spend.delta", spend.get("delta")),
            half_width=_number("spend.half_width", spend.get("half_width")),
        ),
        group_by=tuple(group_by),
        filters=tuple(filters),
        key_selection_delta=1e-9 if key_delta is None else key_delta,
    )


def canonical_json(spec: QuerySpec) -> str:
    """Return one JSON text per distinct query: the key under which an answer is re-served.

    Filter values are sorted (membership is a set) and members appear in a fixed order, so two
    requests asking the same question map to the same text.

    :param spec: the query spec

    >>> one = parse_spec({"measure": {"kind": "count"}, "spend": {"rho": 0.1},
    ...                   "filters": [{"field": "gender", "values": ["Male", "Female"]}]})
    >>> two = parse_spec({"spend": {"rho": 0.1}, "measure": {"kind": "count"},
    ...                   "filters": [{"field": "gender", "values": ["Female", "Male"]}]})
    >>> canonical_json(one) == canonical_json(two)
    True
    """
    document = {
        "measure": asdict(spec.measure),
        "spend": asdict(spec.spend),
        "group_by": list(spec.group_by),
        "filters": [
            {"field": condition.field, "values": sorted(condition.values, key=_value_order)}
            for condition in spec.filters
        ],
        "key_selection_delta": spec.key_selection_delta,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def _value_order(value: Code) -> tuple[int, str]:
    return (0, "") if value is None else (1, f"{type(value).__name__}:{value}")
