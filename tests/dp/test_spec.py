"""The query spec model: every refusal names the part of the spec at fault."""

from __future__ import annotations

import json

import pytest

from disclosure_control.dp import (
    Field,
    Filter,
    Measure,
    QuerySpec,
    QuerySpecError,
    SpendRequest,
    canonical_json,
    parse_spec,
    validate_spec,
)

RHO = SpendRequest(rho=0.1)


def spec(**changes: object) -> QuerySpec:
    base: dict[str, object] = {"measure": Measure("count"), "spend": RHO, "group_by": ("gender",)}
    base.update(changes)
    return QuerySpec(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("query", "field", "reason"),
    [
        (spec(group_by=("sex",)), "group_by[0]", "not a field"),
        (spec(group_by=("gender", "gender")), "group_by", "twice"),
        (
            spec(group_by=("gender", "ageBroad", "Datasource", "isAbduction", "citizenship")),
            "group_by",
            "at most 4",
        ),
        (spec(measure=Measure("median")), "measure.kind", "unknown measure"),  # type: ignore[arg-type]
        (spec(measure=Measure("count", "gender")), "measure.field", "give no field"),
        (spec(measure=Measure("sum", "gender")), "measure.field", "codes, not numbers"),
        (spec(measure=Measure("mean", "caseCount")), "measure.field", "no declared bounds"),
        (spec(measure=Measure("sum", "nope")), "measure.field", "not a field"),
        (spec(measure=Measure("quantile", "isAbduction", 0.5)), "measure.field", "integer field"),
        (
            spec(measure=Measure("quantile", "yearOfRegistration")),
            "measure.quantile",
            "needs its level",
        ),
        (
            spec(measure=Measure("quantile", "yearOfRegistration", 1.0)),
            "measure.quantile",
            "strictly between",
        ),
        (
            spec(measure=Measure("sum", "yearOfRegistration", 0.5)),
            "measure.quantile",
            "only a quantile",
        ),
        (
            spec(measure=Measure("quantile", "yearOfRegistration", 0.5), group_by=("citizenship",)),
            "group_by",
            "public keys",
        ),
        (
            spec(filters=(Filter("gender", ("Woman",)),)),
            "filters[0].values[0]",
            "not in the domain",
        ),
        (spec(filters=(Filter("gender", ()),)), "filters[0].values", "matches no record"),
        (spec(filters=(Filter("gender", "Male"),)), "filters[0].values", "list of values"),  # type: ignore[arg-type]
        (
            spec(filters=(Filter("gender", ("Male",)), Filter("yearOfRegistration", (1999,)))),
            "filters[1].values[0]",
            "outside the bounds",
        ),
        (spec(filters=(Filter("isAbduction", (1,)),)), "filters[0].values[0]", "not a boolean"),
        (spec(filters=(Filter("yearOfRegistration", (True,)),)), "filters[0].values[0]", "integer"),
        (spec(spend=SpendRequest()), "spend", "exactly one"),
        (spec(spend=SpendRequest(rho=0.1, epsilon=1.0, delta=1e-6)), "spend", "exactly one"),
        (spec(spend=SpendRequest(epsilon=1.0)), "spend", "both epsilon and delta"),
        (spec(spend=SpendRequest(rho=-1.0)), "spend.rho", "strictly between"),
        (spec(spend=SpendRequest(rho=float("nan"))), "spend.rho", "finite"),
        (spec(spend=SpendRequest(epsilon=1.0, delta=1.0)), "spend.delta", "strictly between"),
        (
            spec(measure=Measure("mean", "yearOfRegistration"), spend=SpendRequest(half_width=5)),
            "spend.half_width",
            "counts and sums",
        ),
        (spec(key_selection_delta=0.0), "key_selection_delta", "strictly between"),
    ],
)
def test_refusals_name_the_field(
    query: QuerySpec, field: str, reason: str, ctdc_schema: dict[str, Field]
) -> None:
    schema = {**ctdc_schema, "caseCount": Field("caseCount", "integer")}
    with pytest.raises(QuerySpecError, match=reason) as caught:
        validate_spec(query, schema)
    assert caught.value.field == field


@pytest.mark.parametrize(
    "query",
    [
        spec(),
        spec(group_by=()),
        spec(group_by=("gender", "ageBroad", "Datasource", "isAbduction")),
        spec(filters=(Filter("gender", ("Male", None)), Filter("isAbduction", (True,)))),
        spec(measure=Measure("mean", "yearOfRegistration"), group_by=("citizenship",)),
        spec(measure=Measure("sum", "isAbduction"), spend=SpendRequest(half_width=10)),
        spec(measure=Measure("quantile", "yearOfRegistration", 0.9)),
        spec(spend=SpendRequest(epsilon=1.0, delta=1e-6)),
    ],
)
def test_valid_specs_pass(query: QuerySpec, ctdc_schema: dict[str, Field]) -> None:
    validate_spec(query, ctdc_schema)


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        (("a", "text"), "unknown field kind"),
        (("a", "string", ("x", "x")), "distinct codes"),
        (("a", "string", ("x", None)), "missing is implied"),
        (("a", "integer", ("1",)), "not of kind integer"),
        (("a", "string", None, (0, 1)), "only integer fields"),
        (("a", "integer", None, (3, 1)), "lo<=hi"),
    ],
)
def test_bad_fields_are_refused(arguments: tuple[object, ...], reason: str) -> None:
    with pytest.raises(QuerySpecError, match=reason):
        Field(*arguments)  # type: ignore[arg-type]


def test_integer_domain_gives_bounds_and_keys() -> None:
    year = Field("year", "integer", (2020, 2018, 2019))
    assert year.value_bounds == (2018, 2020)
    assert year.public_keys() == (2020, 2018, 2019, None)
    wide = Field("count", "integer", bounds=(0, 10**6))
    assert wide.public_keys() is None  # too many values to answer every one


def test_parse_spec_reads_the_json_shape(ctdc_schema: dict[str, Field]) -> None:
    document = json.loads(
        """{"measure": {"kind": "mean", "field": "yearOfRegistration"},
            "group_by": ["gender", "Datasource"],
            "filters": [{"field": "ageBroad", "values": ["0--8", "9--17", null]}],
            "spend": {"rho": 0.05}, "key_selection_delta": 1e-10}"""
    )
    parsed = parse_spec(document)
    assert parsed == QuerySpec(
        Measure("mean", "yearOfRegistration"),
        SpendRequest(rho=0.05),
        ("gender", "Datasource"),
        (Filter("ageBroad", ("0--8", "9--17", None)),),
        1e-10,
    )
    validate_spec(parsed, ctdc_schema)
    hash(parsed)  # plans are cached by spec


@pytest.mark.parametrize(
    ("document", "field", "reason"),
    [
        ([], "", "must be an object"),
        ({"spend": {"rho": 1}}, "measure", "is required"),
        ({"measure": {"kind": "count"}}, "spend", "is required"),
        ({"measure": {"kind": "count"}, "spend": {"rho": 1}, "sql": "x"}, "sql", "unknown"),
        ({"measure": {"kind": 3}, "spend": {"rho": 1}}, "measure.kind", "string"),
        ({"measure": {"kind": "sum", "field": 3}, "spend": {}}, "measure.field", "string"),
        ({"measure": {"kind": "count"}, "spend": {"rho": "1"}}, "spend.rho", "number"),
        ({"measure": {"kind": "count"}, "spend": {"rho": True}}, "spend.rho", "number"),
        ({"measure": {"kind": "count"}, "spend": {"pi": 1}}, "spend.pi", "unknown"),
        ({"measure": {"kind": "count"}, "spend": {}, "group_by": "a"}, "group_by", "list"),
        ({"measure": {"kind": "count"}, "spend": {}, "group_by": [1]}, "group_by[0]", "string"),
        (
            {"measure": {"kind": "count"}, "spend": {}, "filters": [{"field": "a"}]},
            "filters[0].values",
            "list",
        ),
        (
            {"measure": {"kind": "count"}, "spend": {}, "filters": [{"values": []}]},
            "filters[0].field",
            "string",
        ),
    ],
)
def test_parse_spec_refusals_name_the_member(document: object, field: str, reason: str) -> None:
    with pytest.raises(QuerySpecError, match=reason) as caught:
        parse_spec(document)
    assert caught.value.field == field


def test_canonical_json_ignores_order_of_members_and_values() -> None:
    one = QuerySpec(
        Measure("count"), SpendRequest(rho=0.1), ("gender",), (Filter("g", ("b", None, "a")),)
    )
    two = QuerySpec(
        Measure("count"), SpendRequest(rho=0.1), ("gender",), (Filter("g", ("a", "b", None)),)
    )
    assert canonical_json(one) == canonical_json(two)
    assert canonical_json(one) != canonical_json(QuerySpec(Measure("count"), SpendRequest(rho=0.2)))
    (round_trip,) = parse_spec(json.loads(canonical_json(one))).filters
    assert round_trip.field == "g" and set(round_trip.values) == {"a", "b", None}
