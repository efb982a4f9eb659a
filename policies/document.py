"""The release policy: a versioned YAML document, its model and its validation.

A policy says what the hub may release and at what privacy cost: the quasi-identifiers and
sensitive attributes of k-anonymous microdata with k, l and the record-risk threshold; the
cell threshold, zero rule, secondary suppression and rounding of safe tables; the dataset's
privacy cap and each researcher's allowance (zero-concentrated DP, rho); the spend of every DP
release artefact; the synthesizer's settings; the fields researchers may group and filter by;
and the licence and citation of what is published.

The document is read with PyYAML's safe loader, made stricter (YAML 1.2 booleans and floats,
so ``no`` stays a string and ``1e-6`` is a number; a repeated key is an error, not a silent
overwrite), and validated by a pydantic model. Every problem is collected, each with the key
path, the line of the document and the reason, and raised together as one :class:`PolicyError`.

The record schema is not read here (``policies`` imports nothing of ``contributors``): the
caller passes the schema's field names, types and roles as :class:`RecordFields`, with the
names of the derived attributes it declares.
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from disclosure_control.dp.accounting import PrivacySpend, compose, to_epsilon_delta
from disclosure_control.person import MAX_RECORDS_PER_PERSON, PrivacyUnit
from disclosure_control.sdc import PrivacyModel, TablePolicy

__all__ = [
    "CITATION_FIELDS",
    "FORMAT",
    "Budget",
    "DPTable",
    "FrequencyTable",
    "LDiversity",
    "Licence",
    "Microdata",
    "Policy",
    "PolicyError",
    "Privacy",
    "Problem",
    "Publication",
    "RecordFields",
    "RecordRisk",
    "Release",
    "Researchers",
    "SecondarySuppression",
    "SynthesizerShares",
    "Synthetic",
    "Tables",
    "load_policy",
    "policy_json_schema",
    "validate_policy",
]

#: The version of the policy document format this module reads.
FORMAT = 1
#: The most dimensions a table (safe or DP) may cross, as ``disclosure_control.sdc`` builds them.
MAX_DIMENSIONS = 4
MAX_SHEET_RECORDS = 1_048_575
"""The most records one file may hold: every file is also published as XLSX, whose worksheet
holds 1,048,576 rows with the header."""
_ROLE_PSEUDONYM = "pseudonym"
#: What a citation text may name in braces; the hub fills them in when it publishes.
CITATION_FIELDS = ("release_id", "release_version", "policy_version", "published")


# --- errors ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy document.

    :param path: the key path, dotted, with list positions in brackets
        (``microdata.quasi_identifiers[2]``); empty for the document as a whole.
    :param reason: why it is wrong.
    :param line: the line of the YAML document it is on (1-based), when known.
    """

    path: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.path or "(document)"
        if self.line is not None:
            where += f" (line {self.line})"
        return f"{where}: {self.reason}"


class PolicyError(ValueError):
    """A policy document is invalid; :attr:`problems` lists every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = "\n".join(f"- {problem}" for problem in self.problems)
        super().__init__(
            f"the release policy is invalid ({count} problem{'s' if count != 1 else ''}):\n" + lines
        )


# --- the record fields a policy is checked against ------------------------------------------


@dataclass(frozen=True)
class RecordFields:
    """What a policy may name: the record schema's fields and the derived attributes.

    :param types: each schema field's type (``string``, ``integer``, ``boolean``), in order.
    :param roles: each schema field's role; a ``pseudonym`` field may never be named.
    :param derived: the derived attributes the schema declares (computed from several fields,
        such as one exploitation type from the ``is*`` indicators), by name.

    >>> fields = RecordFields({"gender": "string", "caseNo": "string"}, {"caseNo": "pseudonym"})
    >>> fields.is_attribute("gender"), fields.is_attribute("caseNo")
    (True, False)
    """

    types: Mapping[str, str]
    roles: Mapping[str, str] = field(default_factory=dict)
    derived: frozenset[str] = frozenset()

    @classmethod
    def from_table_schema(
        cls, document: Mapping[str, Any], derived: Collection[str] = ()
    ) -> RecordFields:
        """Read the fields of a Frictionless Table Schema document (the record schema).

        :param document: the record schema as a mapping (``RecordSchema.as_dict()``); the
            derived attributes it declares (``ctdhub:derivedAttributes``) are read from it.
        :param derived: the names of further derived attributes, beside those it declares.

        >>> doc = {"fields": [{"name": "gender", "type": "string",
        ...                    "ctdhub:role": "quasi_identifier"}]}
        >>> RecordFields.from_table_schema(doc, ["exploitationType"]).known("exploitationType")
        True
        """
        fields = document.get("fields")
        if not isinstance(fields, list):
            raise ValueError("the record schema document has no list of fields")
        types: dict[str, str] = {}
        roles: dict[str, str] = {}
        for position, spec in enumerate(fields):
            if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
                raise ValueError(f"field {position} of the record schema has no name")
            types[spec["name"]] = str(spec.get("type", "string"))
            roles[spec["name"]] = str(spec.get("ctdhub:role", "attribute"))
        declared = document.get("ctdhub:derivedAttributes", [])
        if not isinstance(declared, list) or not all(
            isinstance(spec, Mapping) and isinstance(spec.get("name"), str) for spec in declared
        ):
            raise ValueError("the record schema's ctdhub:derivedAttributes is not a list of named")
        derived = {*derived, *(spec["name"] for spec in declared)}
        clash = sorted(set(derived) & set(types))
        if clash:
            raise ValueError(f"derived attribute(s) {clash} share a name with a schema field")
        return cls(types, roles, frozenset(derived))

    def known(self, name: str) -> bool:
        """Return whether ``name`` is a schema field or a derived attribute."""
        return name in self.types or name in self.derived

    def is_attribute(self, name: str) -> bool:
        """Return whether ``name`` may appear in a policy (known, and not a pseudonym)."""
        return self.known(name) and self.roles.get(name) != _ROLE_PSEUDONYM

    def refuse(self, name: str, *, derived_ok: bool) -> str | None:
        """Return why ``name`` may not be named here, or ``None`` when it may."""
        if self.roles.get(name) == _ROLE_PSEUDONYM:
            return f"{name!r} is the pseudonymous case number, which is never released"
        if name in self.types or (derived_ok and name in self.derived):
            return None
        if name in self.derived:
            return f"{name!r} is a derived attribute; only record schema fields are allowed here"
        candidates = [*self.types, *(self.derived if derived_ok else ())]
        close = difflib.get_close_matches(name, candidates, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        kind = "record schema field or derived attribute" if derived_ok else "record schema field"
        return f"{name!r} is not a {kind}{hint}"


def _fields(info: ValidationInfo) -> RecordFields:
    context = info.context
    fields = context.get("fields") if isinstance(context, Mapping) else None
    if not isinstance(fields, RecordFields):
        # A programming error, not a document error: validation always goes through
        # validate_policy, which supplies the record fields.
        raise TypeError("validate a policy with validate_policy(), which passes the record fields")
    return fields


def _schema_field(name: str, info: ValidationInfo) -> str:
    reason = _fields(info).refuse(name, derived_ok=False)
    if reason is not None:
        raise PydanticCustomError("unknown_field", reason)
    return name


def _attribute(name: str, info: ValidationInfo) -> str:
    reason = _fields(info).refuse(name, derived_ok=True)
    if reason is not None:
        raise PydanticCustomError("unknown_field", reason)
    return name


def _distinct(names: tuple[str, ...]) -> tuple[str, ...]:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise PydanticCustomError("repeated", "names {names} more than once", {"names": repeated})
    return names


# --- scalar types ---------------------------------------------------------------------------

_Strict = Field(strict=True)
Text = Annotated[str, Field(strict=True, min_length=1)]
Count = Annotated[int, Field(strict=True, ge=1)]
Share = Annotated[float, Field(strict=True, ge=0, le=1, allow_inf_nan=False)]
Rho = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
PositiveRho = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
Delta = Annotated[float, Field(strict=True, ge=0, lt=1, allow_inf_nan=False)]
SchemaField = Annotated[str, Field(strict=True), AfterValidator(_schema_field)]
Attribute = Annotated[str, Field(strict=True), AfterValidator(_attribute)]
Name = Annotated[str, Field(strict=True, pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]


SchemaFields = Annotated[tuple[SchemaField, ...], Field(min_length=1), AfterValidator(_distinct)]
OptionalSchemaFields = Annotated[tuple[SchemaField, ...], AfterValidator(_distinct)]
Attributes = Annotated[tuple[Attribute, ...], Field(min_length=1), AfterValidator(_distinct)]
Dimensions = Annotated[
    tuple[Attribute, ...],
    Field(min_length=1, max_length=MAX_DIMENSIONS),
    AfterValidator(_distinct),
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- sections -------------------------------------------------------------------------------


class LDiversity(_Section):
    """l-diversity of the sensitive attributes within every equivalence class.

    :param attributes: the sensitive attributes (schema fields or derived attributes); every
        class must meet l on each of them separately.
    :param l: the least diversity every class must have, for each attribute.
    :param kind: ``distinct`` (number of values), ``entropy`` (exp of the entropy) or
        ``recursive`` ((c, l)-diversity: the most common value is fewer than ``c`` times the
        records outside the l - 1 most common values; l is then a whole number).
    :param c: the c of recursive (c, l)-diversity (only with ``kind: recursive``).
    """

    attributes: Attributes
    l: Annotated[float, Field(strict=True, ge=1, allow_inf_nan=False)]  # noqa: E741 - l-diversity
    kind: Literal["distinct", "entropy", "recursive"] = "distinct"
    c: Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _c_with_recursive(self) -> LDiversity:
        if (self.kind == "recursive") != (self.c is not None):
            raise PydanticCustomError(
                "recursive_c", "c is given with kind recursive, and only with it"
            )
        if self.kind == "recursive" and self.l != int(self.l):
            raise PydanticCustomError(
                "recursive_l", "recursive (c, l)-diversity needs a whole l, got {l}", {"l": self.l}
            )
        return self


class RecordRisk(_Section):
    """The prosecutor's re-identification risk of a released record (1 / its class size).

    :param threshold: a record whose risk exceeds this is at risk.
    :param max_share_above: the largest share of released records allowed at risk.
    :param max_average: the largest average record risk (HDX's global-risk rule), if any.
    """

    threshold: Annotated[float, Field(strict=True, gt=0, le=1, allow_inf_nan=False)]
    max_share_above: Share = 0.0
    max_average: Annotated[float, Field(strict=True, gt=0, le=1, allow_inf_nan=False)] | None = None


class Microdata(_Section):
    """The rules of k-anonymous microdata.

    :param quasi_identifiers: the schema fields an attacker may know.
    :param k: the smallest equivalence class allowed.
    :param l_diversity: the sensitive attributes and their l, if required.
    :param record_risk: the record-risk threshold.
    :param max_suppression: the share of records the anonymisation may withhold.
    """

    quasi_identifiers: SchemaFields
    k: Annotated[int, Field(strict=True, ge=2)]
    l_diversity: LDiversity | None = None
    record_risk: RecordRisk
    max_suppression: Share = 0.05

    @model_validator(mode="after")
    def _sensitive_apart(self) -> Microdata:
        if self.l_diversity is not None:
            both = [a for a in self.l_diversity.attributes if a in self.quasi_identifiers]
            if both:
                raise PydanticCustomError(
                    "sensitive_is_quasi_identifier",
                    "{names} cannot be both a quasi-identifier and a sensitive attribute",
                    {"names": both},
                )
        return self

    def privacy_model(self) -> PrivacyModel:
        """Return the model :func:`disclosure_control.sdc.anonymise` must satisfy."""
        rule = self.l_diversity
        return PrivacyModel(
            k=self.k,
            max_suppression=self.max_suppression,
            sensitive=None if rule is None else rule.attributes,
            l=None if rule is None else rule.l,
            l_kind="distinct" if rule is None else rule.kind,
            c=None if rule is None else rule.c,
            max_average_risk=self.record_risk.max_average,
        )


class SecondarySuppression(_Section):
    """How small cells are protected beyond their own suppression.

    :param method: ``hypercube`` (tau-ARGUS's GHMITER, as ``disclosure_control.sdc`` does it).
    :param margins: publish the margins (totals) too.
    """

    method: Literal["hypercube"] = "hypercube"
    margins: Annotated[bool, _Strict] = True


class FrequencyTable(_Section):
    """A safe frequency table of the release.

    :param name: its name (lower case, digits, ``_``).
    :param dimensions: the fields it crosses (1 to 4).
    """

    name: Name
    dimensions: Dimensions


class Tables(_Section):
    """The rules of safe (suppressed, optionally rounded) frequency tables.

    :param cell_threshold: a count below this is suppressed.
    :param zero_rule: ``publish`` zeros, or ``suppress`` them as small cells.
    :param secondary_suppression: how suppressed cells are protected from the margins.
    :param rounding_base: controlled rounding to this base, or ``None`` for none.
    :param frequency_tables: the safe tables a release holds.
    """

    cell_threshold: Count
    zero_rule: Literal["publish", "suppress"] = "publish"
    secondary_suppression: SecondarySuppression = SecondarySuppression()
    rounding_base: Annotated[int, Field(strict=True, ge=2)] | None = None
    frequency_tables: tuple[FrequencyTable, ...] = ()

    @model_validator(mode="after")
    def _names_distinct(self) -> Tables:
        _distinct_names("frequency table", [t.name for t in self.frequency_tables])
        return self

    def table_policy(self) -> TablePolicy:
        """Return the :class:`~disclosure_control.sdc.TablePolicy` these rules make."""
        return TablePolicy(
            threshold=self.cell_threshold,
            suppress_zeros=self.zero_rule == "suppress",
            rounding_base=self.rounding_base,
        )


def _distinct_names(what: str, names: Sequence[str]) -> None:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise PydanticCustomError(
            "repeated", "{what} name(s) {names} used twice", {"what": what, "names": repeated}
        )


class Budget(_Section):
    """A privacy budget in zero-concentrated DP: rho, and the key-selection delta.

    :param rho: the zCDP budget.
    :param delta: the additive delta DP key selection may spend (0 when every grouping field
        has a public domain).
    """

    rho: Rho
    delta: Delta = 0.0

    @property
    def spend(self) -> PrivacySpend:
        """Return the budget as a :class:`~disclosure_control.dp.PrivacySpend`."""
        return PrivacySpend(self.rho, self.delta)

    def epsilon_delta(self, display_delta: float) -> tuple[float, float]:
        """Return the budget as (epsilon, delta), epsilon read at ``display_delta``.

        >>> eps, delta = Budget(rho=0.5).epsilon_delta(1e-6)
        >>> round(eps, 4), delta
        (5.2215, 1e-06)
        """
        return to_epsilon_delta(self.spend, display_delta)


class Privacy(_Section):
    """The dataset's privacy ledger: unit, cap and allowances.

    :param unit: the privacy unit: ``person`` (one survivor, however many records of theirs
        the partners hold, as record linkage finds them) or ``case record`` (each record its
        own person: a person with k records is then protected only by group privacy).
    :param records_per_person: ``c``, with the unit ``person`` (and only with it): DP queries
        and releases count at most c records of one person, dropping the rest by a seeded
        draw, and every noise scale is sized for one person with up to c records (the noise's
        standard deviation grows c-fold at the same rho). At c = 1 the scales are the case
        record's.
    :param display_delta: the delta at which rho is shown as epsilon (display only).
    :param dataset_cap: what every release and query together may spend.
    :param researcher_allowance: what each researcher may spend, inside the cap.
    """

    unit: Literal["person", "case record"] = "case record"
    records_per_person: (
        Annotated[int, Field(strict=True, ge=1, le=MAX_RECORDS_PER_PERSON)] | None
    ) = None
    display_delta: Annotated[float, Field(strict=True, gt=0, lt=1, allow_inf_nan=False)]
    dataset_cap: Budget
    researcher_allowance: Budget

    @model_validator(mode="after")
    def _bound_with_person(self) -> Privacy:
        if (self.unit == "person") != (self.records_per_person is not None):
            raise PydanticCustomError(
                "records_per_person",
                "privacy.records_per_person is set with unit person, and only with it "
                "(unit: {unit})",
                {"unit": self.unit},
            )
        return self

    @property
    def privacy_unit(self) -> PrivacyUnit:
        """Return the unit as the DP code takes it (with its description in words)."""
        return PrivacyUnit(self.records_per_person)

    @model_validator(mode="after")
    def _allowance_within_cap(self) -> Privacy:
        over = [
            f"{what} {getattr(self.researcher_allowance, what)!r} > cap "
            f"{getattr(self.dataset_cap, what)!r}"
            for what in ("rho", "delta")
            if Fraction(getattr(self.researcher_allowance, what))
            > Fraction(getattr(self.dataset_cap, what))
        ]
        if over:
            raise PydanticCustomError(
                "allowance_over_cap",
                "a researcher's allowance must lie within the dataset's cap: {over}",
                {"over": "; ".join(over)},
            )
        return self


class DPTable(_Section):
    """A DP aggregate table of the release (counts with 95% intervals).

    :param name: its name.
    :param group_by: the fields it counts by (1 to 4; derived attributes allowed).
    :param rho: what it spends.
    """

    name: Name
    group_by: Dimensions
    rho: PositiveRho


class SynthesizerShares(_Section):
    """How the synthesizer splits its rho (``disclosure_control.synth.BudgetShares``)."""

    one_way: PositiveRho = 0.15
    tree: PositiveRho = 0.1
    parent_sets: PositiveRho = 0.1
    model: PositiveRho = 0.65

    @model_validator(mode="after")
    def _sum_to_one(self) -> SynthesizerShares:
        total = self.one_way + self.tree + self.parent_sets + self.model
        if abs(total - 1.0) > 1e-9:
            raise PydanticCustomError(
                "shares_sum",
                "the shares must add up to 1, they add up to {total}",
                {"total": total},
            )
        return self


class Synthetic(_Section):
    """DP synthetic microdata: its spend and the synthesizer's settings.

    :param rho: what the synthesizer spends.
    :param records: how many synthetic records to draw (a round number: drawing as many as
        the snapshot holds would publish its size).
    :param columns: the schema fields to synthesise; every field with a public domain if empty.
    :param holdout: share of records held out as the attacks' control set.
    :param max_cells: the largest marginal the model measures.
    :param max_parents: the most parents a column may have.
    :param shares: how rho is split between the kinds of measurement.
    """

    rho: PositiveRho
    records: Annotated[int, Field(strict=True, ge=1, le=MAX_SHEET_RECORDS)]
    columns: OptionalSchemaFields = ()
    holdout: Annotated[float, Field(strict=True, ge=0, lt=0.5, allow_inf_nan=False)] = 0.1
    max_cells: Annotated[int, Field(strict=True, ge=2)] = 20_000
    max_parents: Count = 3
    shares: SynthesizerShares = SynthesizerShares()

    @model_validator(mode="after")
    def _two_columns(self) -> Synthetic:
        if len(self.columns) == 1:
            raise PydanticCustomError(
                "one_column", "a marginal synthesizer needs at least two columns (or none: all)"
            )
        return self


class LinkageCount(_Section):
    """The DP count of people recorded by more than one partner (record linkage, issue 16).

    Its privacy unit is one person (all their records, as the hub links them), whatever the
    ledger's unit: adding or removing one person changes the count by at most one.

    :param rho: what the count spends.
    """

    rho: PositiveRho


class Release(_Section):
    """The DP artefacts of a release and what each spends.

    :param dp_tables: the DP aggregate tables.
    :param synthetic: the DP synthetic microdata, if released.
    :param linkage_count: the DP count of people in more than one partner's records, if
        released.
    """

    dp_tables: tuple[DPTable, ...] = ()
    synthetic: Synthetic | None = None
    linkage_count: LinkageCount | None = None

    @model_validator(mode="after")
    def _names_distinct(self) -> Release:
        _distinct_names("DP table", [t.name for t in self.dp_tables])
        return self

    def spends(self) -> dict[str, PrivacySpend]:
        """Return the spend of each DP artefact, by name (``synthetic`` for the synthesizer)."""
        result = {f"dp_tables.{t.name}": PrivacySpend(t.rho) for t in self.dp_tables}
        if self.synthetic is not None:
            result["synthetic"] = PrivacySpend(self.synthetic.rho)
        if self.linkage_count is not None:
            result["linkage_count"] = PrivacySpend(self.linkage_count.rho)
        return result

    def total(self) -> PrivacySpend:
        """Return what one release spends in all (rounded up, never under-reported)."""
        return compose(self.spends().values())


class Researchers(_Section):
    """What researchers may ask of the DP query service.

    :param group_by: the fields a query may group by.
    :param filter_by: the fields a query may filter on.
    """

    group_by: Attributes
    filter_by: Annotated[tuple[Attribute, ...], AfterValidator(_distinct)] = ()


class Licence(_Section):
    """The licence of published releases, as a Frictionless licence object.

    :param name: its SPDX identifier (``CC-BY-4.0``).
    :param title: its title.
    :param path: where its text is.
    """

    name: Annotated[str, Field(strict=True, pattern=r"^[A-Za-z0-9.+-]+$")]
    title: Text
    path: Annotated[str, Field(strict=True, pattern=r"^https://\S+$")]


class Publication(_Section):
    """What every published release says about its use.

    :param licence: the licence.
    :param citation: how to cite a release; the placeholders of :data:`CITATION_FIELDS` in
        braces are filled in when a release is published.
    :param terms: the terms of use beside the licence, if any.
    """

    licence: Licence
    citation: Text
    terms: Annotated[str, _Strict] = ""

    @model_validator(mode="after")
    def _known_placeholders(self) -> Publication:
        try:
            named = {name for _, name, _, _ in string.Formatter().parse(self.citation) if name}
        except ValueError as error:
            raise PydanticCustomError(
                "citation_format",
                "the citation's braces do not pair up: {error}",
                {"error": str(error)},
            ) from None
        unknown = sorted(named - set(CITATION_FIELDS))
        if unknown:
            raise PydanticCustomError(
                "citation_placeholder",
                "the citation names {unknown}; it may name only {known}",
                {"unknown": unknown, "known": list(CITATION_FIELDS)},
            )
        return self


def _release_over_cap(release: Release, privacy: Privacy) -> str | None:
    """Return why one release's artefacts spend more than the dataset's cap, or ``None``."""
    spends = release.spends()
    total = sum((Fraction(s.rho) for s in spends.values()), Fraction(0))
    cap = Fraction(privacy.dataset_cap.rho)
    if total <= cap:
        return None
    listed = ", ".join(f"{name} {s.rho!r}" for name, s in spends.items())
    return (
        f"the release artefacts spend rho {float(total)!r} in all ({listed}), over the"
        f" dataset's cap privacy.dataset_cap.rho = {float(cap)!r}"
    )


class Policy(_Section):
    """A release policy, as validated by :func:`validate_policy`.

    :param format: the document format (:data:`FORMAT`).
    :param version: the policy's version number (each proposal takes the next one).
    :param title: a one-line name.
    """

    format: Literal[1]
    version: Count
    title: Text
    microdata: Microdata
    tables: Tables
    privacy: Privacy
    release: Release
    researchers: Researchers
    publication: Publication

    @model_validator(mode="after")
    def _release_within_cap(self) -> Policy:
        reason = _release_over_cap(self.release, self.privacy)
        if reason is not None:
            raise PydanticCustomError("release_over_cap", reason)
        return self

    def to_json(self) -> dict[str, Any]:
        """Return the policy as plain JSON data (the document, defaults filled in)."""
        return self.model_dump(mode="json")


# --- reading --------------------------------------------------------------------------------


class _PolicyLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans and floats, refusing repeated keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.repeated: list[tuple[yaml.Node, str]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                self.repeated.append((key_node, str(key)))
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_BOOL = "tag:yaml.org,2002:bool"
_FLOAT = "tag:yaml.org,2002:float"
# YAML 1.1's yes/no/on/off booleans turn a country code (NO) or a word into True/False, and its
# float pattern needs a dot, so 1e-6 would be read as a string: use YAML 1.2's core schema.
_PolicyLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_PolicyLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_PolicyLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*|[0-9]+(?:\.[0-9]*)?[eE][-+]?[0-9]+)"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _path(loc: Iterable[int | str]) -> str:
    """Return a pydantic location as a key path.

    >>> _path(("microdata", "quasi_identifiers", 2))
    'microdata.quasi_identifiers[2]'
    """
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _line(root: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """Return the line of the deepest node of ``loc`` in the YAML tree (1-based)."""
    node = root
    best = None if node is None else node.start_mark.line + 1
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == part), None)
            if child is None:  # an unknown key: point at the key itself
                child = next((k for k, _ in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            child = node.value[part] if 0 <= part < len(node.value) else None
        if child is None:
            break
        node = child
        best = node.start_mark.line + 1
    return best


def _model_at(loc: Sequence[int | str]) -> type[BaseModel] | None:
    """Return the section model at a location of the document (list positions skipped)."""
    model: type[BaseModel] | None = Policy
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        model = next(iter(_annotation_models(info.annotation)), None)
    return model


def _annotation_models(annotation: Any) -> Iterable[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for argument in getattr(annotation, "__args__", ()):
        yield from _annotation_models(argument)


def _reason(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        model = _model_at(error["loc"][:-1])
        expected = sorted(model.model_fields) if model is not None else []
        close = difflib.get_close_matches(str(error["loc"][-1]), expected, n=1)
        if close:
            return f"unknown key (did you mean {close[0]!r}?)"
        return "unknown key (expected one of: " + ", ".join(expected) + ")"
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"])
    # pydantic prefixes the messages of validators; the reason reads better without.
    return message.removeprefix("Value error, ")


def _loc(error: Mapping[str, Any]) -> tuple[int | str, ...]:
    """Return where an error is: the release's spend over the cap belongs to ``release``."""
    return ("release",) if error["type"] == "release_over_cap" else tuple(error["loc"])


def _reported(errors: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Drop a list's "too short" error caused only by its own items failing (pydantic counts
    the items that passed), so the document's author sees each real problem once."""
    failing_items = {
        tuple(e["loc"][:-1]) for e in errors if e["loc"] and isinstance(e["loc"][-1], int)
    }
    return [
        e for e in errors if not (e["type"] == "too_short" and tuple(e["loc"]) in failing_items)
    ]


def validate_policy(
    document: Any, fields: RecordFields, *, tree: yaml.Node | None = None
) -> Policy:
    """Return the policy in ``document`` (parsed YAML or JSON), or raise every problem found.

    :param document: the policy as plain data.
    :param fields: the record schema's fields and derived attributes.
    :param tree: the YAML node tree it was read from, for line numbers.
    :raises PolicyError: listing each problem with its key path and reason.
    """
    if not isinstance(document, Mapping):
        raise PolicyError([Problem("", "a policy must be a mapping of sections to settings")])
    if document.get("format", FORMAT) != FORMAT:
        # A later format is not checked against this one's rules: say so rather than guess.
        raise PolicyError(
            [
                Problem(
                    "format", f"this hub reads policy format {FORMAT}, not {document['format']!r}"
                )
            ]
        )
    try:
        return Policy.model_validate(document, context={"fields": fields})
    except ValidationError as error:
        errors = _reported(list(error.errors(include_url=False, include_input=False)))
        problems = [Problem(_path(_loc(e)), _reason(e), _line(tree, _loc(e))) for e in errors]
        # The check across sections runs in the model only once every section is valid; run it
        # here too when the two sections it reads are, so no problem waits for another's fix.
        failed = {e["loc"][0] for e in errors if e["loc"]}
        if failed and not failed & {"privacy", "release"}:
            context = {"fields": fields}
            try:
                release = Release.model_validate(document.get("release"), context=context)
                privacy = Privacy.model_validate(document.get("privacy"), context=context)
            except ValidationError:
                pass  # reported above, under the section's own name
            else:
                reason = _release_over_cap(release, privacy)
                if reason is not None:
                    problems.append(Problem("release", reason, _line(tree, ["release"])))
        raise PolicyError(problems) from None


def load_policy(text: str, fields: RecordFields) -> Policy:
    """Read a policy from its YAML text and validate it.

    :param text: the YAML document.
    :param fields: the record schema's fields and derived attributes.
    :raises PolicyError: listing each problem with its key path, line and reason.
    """
    loader = _PolicyLoader(text)
    try:
        tree = loader.get_single_node()
        document = None if tree is None else loader.construct_document(tree)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        line = None if mark is None else mark.line + 1
        raise PolicyError([Problem("", f"not valid YAML: {error.problem}", line)]) from None
    except yaml.YAMLError as error:
        raise PolicyError([Problem("", f"not valid YAML: {error}")]) from None
    finally:
        loader.dispose()
    problems = [
        Problem(_path(_key_path(tree, node)), f"key {key!r} is repeated", node.start_mark.line + 1)
        for node, key in loader.repeated
    ]
    try:
        policy = validate_policy(document, fields, tree=tree)
    except PolicyError as error:
        problems.extend(error.problems)
    if problems:
        raise PolicyError(problems)
    return policy


def _key_path(root: yaml.Node | None, target: yaml.Node) -> list[int | str]:
    """Return the key path of a mapping key node in the tree (for repeated-key problems)."""

    def walk(node: yaml.Node, path: list[int | str]) -> list[int | str] | None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key is target:
                    return [*path, key.value]
                found = walk(value, [*path, key.value])
                if found is not None:
                    return found
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                found = walk(item, [*path, index])
                if found is not None:
                    return found
        return None

    return (walk(root, []) if root is not None else None) or []


def policy_json_schema() -> dict[str, Any]:
    """Return the JSON Schema of a policy document (for editors and the API's docs)."""
    return Policy.model_json_schema()
