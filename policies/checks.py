"""The checks a release candidate must pass before the board sees it.

Each check reads the candidate as it would be published and the policy it was built under,
and says whether it passes and, if not, which rule fails and why, with the figures (never a
record value: no class is named by its values, no cell by its count). k, l and the record risk
are recomputed by a plain pandas group-by that shares no code with ``disclosure_control.sdc``,
so a bug in the anonymiser cannot pass its own check.

>>> from policies.checks import CheckResult
>>> CheckResult("k_anonymity", "microdata", False, "the smallest class has 3 records").failed
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd

from disclosure_control.dp.accounting import PrivacySpend, check_charge, compose
from disclosure_control.person import PERSON_COLUMN, person_keys
from disclosure_control.sdc import SafeTable, TableError, Tabulation, check_differencing
from disclosure_control.sdc.differencing import check_suppression
from policies.document import Microdata, Policy, Privacy, Release, Tables

__all__ = [
    "CandidateReport",
    "CheckResult",
    "check_candidate",
    "check_microdata",
    "check_spend",
    "check_table",
]

#: exp(entropy) of an exactly even split is l up to rounding; this much below l still passes.
_ENTROPY_TOLERANCE = 1e-9
# SafeTable status code (disclosure_control.sdc.tables) of a published cell.
_PUBLISHED = 0


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    :param check: which rule (``columns``, ``k_anonymity``, ``l_diversity``, ``record_risk``,
        ``table_declared``, ``cell_threshold``, ``linear_bounds``, ``secondary_suppression``,
        ``rounding``, ``differencing``, ``artefact_spend``, ``dataset_cap``).
    :param subject: what was checked (``microdata``, ``tables.<name>``, ``release``, ...).
    :param passed: whether it holds.
    :param reason: what was found, in words.
    :param figures: the numbers behind the verdict.
    """

    check: str
    subject: str
    passed: bool
    reason: str
    figures: Mapping[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Return whether the check failed."""
        return not self.passed

    def to_json(self) -> dict[str, Any]:
        """Return the result as JSON data."""
        return {
            "check": self.check,
            "subject": self.subject,
            "passed": self.passed,
            "reason": self.reason,
            "figures": dict(self.figures),
        }


@dataclass(frozen=True)
class CandidateReport:
    """Every check of a candidate; it may go to the board only when all passed.

    :param results: the results, in the order the checks ran.
    """

    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        """Return whether every check passed (and at least one ran)."""
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        """Return the failed checks."""
        return tuple(r for r in self.results if r.failed)

    def to_json(self) -> dict[str, Any]:
        """Return the report as JSON data."""
        return {"passed": self.passed, "results": [r.to_json() for r in self.results]}


# --- microdata ------------------------------------------------------------------------------


def _class_sizes(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """Return the size of every equivalence class (a missing value is a value of its own).

    With the hub-internal person key among the columns, a class's size is its number of
    distinct persons (a record without a key is its own person), as ``disclosure_control.sdc``
    counts them.
    """
    if PERSON_COLUMN not in frame.columns:
        return frame.groupby(list(columns), dropna=False, sort=False, observed=True).size()
    keyed = frame[list(columns)].assign(**{PERSON_COLUMN: person_keys(frame).to_numpy()})
    grouped = keyed.groupby(list(columns), dropna=False, sort=False, observed=True)
    return grouped[PERSON_COLUMN].nunique()


def _diversity(frame: pd.DataFrame, columns: Sequence[str], sensitive: str, kind: str) -> pd.Series:
    """Return every class's diversity of ``sensitive``: distinct values, or exp(entropy)."""
    pairs = frame.groupby([*columns, sensitive], dropna=False, sort=False, observed=True).size()
    levels = list(range(len(columns)))
    if kind == "distinct":
        return pairs.groupby(level=levels, dropna=False, sort=False).size().astype(float)
    share = pairs / pairs.groupby(level=levels, dropna=False, sort=False).transform("sum")
    entropy = (-share * np.log(share)).groupby(level=levels, dropna=False, sort=False).sum()
    return pd.Series(np.exp(entropy.to_numpy()), index=entropy.index)


def check_microdata(frame: pd.DataFrame, microdata: Microdata) -> list[CheckResult]:
    """Check k-anonymous microdata against the policy's k, l and record-risk rules.

    :param frame: the microdata as it would be published (generalised, suppressed records
        removed); derived sensitive attributes must be columns of it. With the hub-internal
        person key as a column too, k and the record risk count distinct persons per class.
    :param microdata: the policy's microdata rules.

    >>> from policies.document import Microdata, RecordFields
    >>> rules = Microdata.model_validate(
    ...     {"quasi_identifiers": ["g"], "k": 2, "record_risk": {"threshold": 0.5}},
    ...     context={"fields": RecordFields({"g": "string"})})
    >>> [(r.check, r.passed) for r in check_microdata(pd.DataFrame({"g": list("aabbb")}), rules)]
    [('k_anonymity', True), ('record_risk', True)]
    >>> check_microdata(pd.DataFrame({"g": list("aab")}), rules)[0].reason
    'the smallest equivalence class has 1 records, under k = 2 (1 of 2 classes, 1 records)'
    """
    subject = "microdata"
    qis = list(microdata.quasi_identifiers)
    sensitive = [] if microdata.l_diversity is None else list(microdata.l_diversity.attributes)
    missing = [c for c in [*qis, *sensitive] if c not in frame.columns]
    if missing:
        return [
            CheckResult(
                "columns", subject, False, f"the microdata lacks the policy's column(s) {missing}"
            )
        ]
    if len(frame) == 0:
        return [CheckResult("k_anonymity", subject, False, "the microdata holds no records")]
    sizes = _class_sizes(frame, qis)
    results = [_k_result(sizes, microdata.k, "persons" if PERSON_COLUMN in frame else "records")]
    if microdata.l_diversity is not None:
        rule = microdata.l_diversity
        for attribute in rule.attributes:
            if rule.kind == "recursive" and rule.c is not None:
                results.append(_recursive_result(frame, qis, attribute, int(rule.l), rule.c))
                continue
            diversity = _diversity(frame, qis, attribute, rule.kind)
            required = rule.l * (1 - _ENTROPY_TOLERANCE) if rule.kind == "entropy" else rule.l
            low = diversity < required
            least = float(diversity.min())
            figures = {
                "attribute": attribute,
                "kind": rule.kind,
                "l": rule.l,
                "least": least,
                "classes_below": int(low.sum()),
            }
            if low.any():
                reason = (
                    f"{attribute}: {int(low.sum())} of {len(diversity)} classes have {rule.kind}"
                    f" l-diversity under {rule.l:g} (least {least:.4g})"
                )
            else:
                reason = f"{attribute}: every class has {rule.kind} l-diversity >= {rule.l:g}"
            results.append(CheckResult("l_diversity", subject, not low.any(), reason, figures))
    results.append(_risk_result(sizes, microdata))
    return results


def _recursive_result(
    frame: pd.DataFrame,
    columns: Sequence[str],
    sensitive: str,
    l: int,  # noqa: E741 - the l of (c, l)-diversity
    c: float,
) -> CheckResult:
    """Check recursive (c, l)-diversity: in every class, the most common value's count is under
    ``c`` times the count of the records outside its l - 1 most common values."""
    pairs = frame.groupby([*columns, sensitive], dropna=False, sort=False, observed=True).size()
    classes = pairs.groupby(level=list(range(len(columns))), dropna=False, sort=False)
    ranked = classes.rank(method="first", ascending=False)
    top = classes.max()
    tail = (
        pairs[ranked >= l].groupby(level=list(range(len(columns))), dropna=False, sort=False).sum()
    )
    tail = tail.reindex(top.index, fill_value=0)
    failing = ~(top < c * tail)
    count = int(failing.sum())
    figures = {"attribute": sensitive, "kind": "recursive", "l": l, "c": c, "classes_below": count}
    if count:
        reason = (
            f"{sensitive}: {count} of {len(top)} classes are not recursive ({c:g}, {l})-diverse"
        )
        return CheckResult("l_diversity", "microdata", False, reason, figures)
    reason = f"{sensitive}: every class is recursive ({c:g}, {l})-diverse"
    return CheckResult("l_diversity", "microdata", True, reason, figures)


def _k_result(sizes: pd.Series, k: int, members: str = "records") -> CheckResult:
    small = sizes[sizes < k]
    smallest = int(sizes.min())
    figures = {
        "k": k,
        "smallest_class": smallest,
        "classes": len(sizes),
        "classes_below_k": len(small),
        "records_below_k": int(small.sum()),
    }
    if len(small):
        reason = (
            f"the smallest equivalence class has {smallest} {members}, under k = {k}"
            f" ({len(small)} of {len(sizes)} classes, {int(small.sum())} {members})"
        )
        return CheckResult("k_anonymity", "microdata", False, reason, figures)
    reason = f"every one of {len(sizes)} classes has at least k = {k} {members}"
    return CheckResult("k_anonymity", "microdata", True, reason, figures)


def _risk_result(sizes: pd.Series, microdata: Microdata) -> CheckResult:
    rule = microdata.record_risk
    records = int(sizes.sum())
    # A record's prosecutor risk is 1 / the size of its class; compare exactly, in rationals.
    threshold = Fraction(rule.threshold)
    above = int(sum(int(n) for n in sizes if Fraction(1, int(n)) > threshold))
    share = above / records
    average = len(sizes) / records
    figures = {
        "threshold": rule.threshold,
        "records_above": above,
        "share_above": share,
        "max_share_above": rule.max_share_above,
        "average_risk": average,
        "max_average": rule.max_average,
    }
    problems = []
    if share > rule.max_share_above:
        problems.append(
            f"{above} of {records} records ({share:.2%}) have a re-identification risk above"
            f" {rule.threshold:g}, more than the {rule.max_share_above:.2%} allowed"
        )
    if rule.max_average is not None and average > rule.max_average:
        problems.append(
            f"the average record risk is {average:.4g}, above the {rule.max_average:g} allowed"
        )
    if problems:
        return CheckResult("record_risk", "microdata", False, "; ".join(problems), figures)
    reason = f"{share:.2%} of records above risk {rule.threshold:g}; average risk {average:.4g}"
    return CheckResult("record_risk", "microdata", True, reason, figures)


# --- safe tables ----------------------------------------------------------------------------


def check_table(table: SafeTable, tables: Tables, name: str) -> list[CheckResult]:
    """Check one safe table against the policy's threshold, zero rule and rounding.

    Every cell the table publishes, margins included, is compared with the threshold on its
    true count; every primary suppressed cell must keep, under the linear bounds an attacker
    solves from the published cells
    (:func:`~disclosure_control.sdc.differencing.check_suppression`), room to be zero and to
    reach the threshold; a cell the hypercube method reports it could not protect fails the
    table too.

    :param table: the protected table (:func:`disclosure_control.sdc.frequency_table`).
    :param tables: the policy's table rules.
    :param name: the table's name in the policy's ``tables.frequency_tables``.
    """
    subject = f"tables.{name}"
    declared = {t.name: t.dimensions for t in tables.frequency_tables}
    if name not in declared:
        return [CheckResult("table_declared", subject, False, "the policy declares no such table")]
    if tuple(table.dimensions) != tuple(declared[name]):
        reason = (
            f"the table crosses {list(table.dimensions)}, the policy declares"
            f" {list(declared[name])}"
        )
        return [CheckResult("table_declared", subject, False, reason)]
    threshold = tables.cell_threshold
    published = table.status == _PUBLISHED
    small = published & (table.values < threshold)
    if tables.zero_rule == "publish":
        small &= table.values > 0
    count = int(small.sum())
    zeros = "" if tables.zero_rule == "publish" else " or zero"
    results = [
        CheckResult(
            "cell_threshold",
            subject,
            count == 0,
            f"{count} published cell(s) count fewer than {threshold}{zeros}"
            if count
            else f"no published cell counts fewer than {threshold}{zeros}",
            {"threshold": threshold, "zero_rule": tables.zero_rule, "cells_below": count},
        )
    ]
    results.append(_bounds_result(table, threshold, subject))
    unprotected = len(table.unprotected)
    results.append(
        CheckResult(
            "secondary_suppression",
            subject,
            unprotected == 0,
            f"{unprotected} suppressed cell(s) could not be protected from the margins"
            if unprotected
            else "every suppressed cell is protected by secondary suppression",
            {"primary": table.primary, "secondary": table.secondary, "unprotected": unprotected},
        )
    )
    if tables.rounding_base is not None:
        base = tables.rounding_base
        values = pd.to_numeric(table.cells["value"], errors="coerce").dropna()
        off = int((values % base != 0).sum())
        results.append(
            CheckResult(
                "rounding",
                subject,
                off == 0,
                f"{off} published value(s) are not multiples of {base}"
                if off
                else f"every published value is a multiple of {base}",
                {"base": base, "cells_off_base": off},
            )
        )
    return results


def _bounds_result(table: SafeTable, threshold: int, subject: str) -> CheckResult:
    """Check that every primary cell can still reach the threshold, and an inner one zero (a
    margin one less than its count), by :func:`~disclosure_control.sdc.check_suppression`."""
    if table.primary == 0:
        return CheckResult(
            "linear_bounds", subject, True, "no cell is suppressed", {"primary_cells": 0}
        )
    try:
        report = check_suppression(table, threshold)
    except TableError as error:
        figures = {"primary_cells": table.primary}
        return CheckResult("linear_bounds", subject, False, str(error), figures)
    count = len(report.narrowed)
    figures = {"primary_cells": report.primary, "cells_narrowed": count}
    if count:
        reason = (
            f"{count} of {report.primary} suppressed cell(s) are narrowed by the published cells:"
            f" their linear bounds exclude zero or {threshold}"
        )
        return CheckResult("linear_bounds", subject, False, reason, figures)
    reason = (
        f"every one of {report.primary} suppressed cell(s) can take any value from 0 to {threshold}"
    )
    return CheckResult("linear_bounds", subject, True, reason, figures)


# --- privacy spend --------------------------------------------------------------------------


def check_spend(
    charged: Mapping[str, PrivacySpend],
    release: Release,
    privacy: Privacy,
    spent_before: PrivacySpend,
) -> list[CheckResult]:
    """Check what a candidate charged against each artefact's spend and the dataset's cap.

    :param charged: what was charged per artefact (names as :meth:`Release.spends` gives them).
    :param release: the policy's release artefacts.
    :param privacy: the policy's privacy ledger rules.
    :param spent_before: what the dataset's ledger had charged before this candidate.
    """
    declared = release.spends()
    results = []
    for name, spend in charged.items():
        allowed = declared.get(name)
        if allowed is None:
            results.append(
                CheckResult(
                    "artefact_spend",
                    f"release.{name}",
                    False,
                    "the policy declares no such DP artefact",
                    {"rho": spend.rho},
                )
            )
            continue
        ok = Fraction(spend.rho) <= Fraction(allowed.rho) and Fraction(spend.delta) <= Fraction(
            allowed.delta
        )
        results.append(
            CheckResult(
                "artefact_spend",
                f"release.{name}",
                ok,
                f"charged rho {spend.rho!r}, the policy allows {allowed.rho!r}",
                {"rho": spend.rho, "allowed_rho": allowed.rho, "delta": spend.delta},
            )
        )
    total = compose(charged.values())
    cap = privacy.dataset_cap.spend
    verdict = check_charge(total, spent_before, cap)
    figures = {
        "charged_rho": total.rho,
        "charged_delta": total.delta,
        "spent_before_rho": spent_before.rho,
        "spent_before_delta": spent_before.delta,
        "cap_rho": cap.rho,
        "cap_delta": cap.delta,
        "remaining_rho": verdict.remaining.rho,
    }
    if verdict.fits:
        reason = (
            f"charged rho {total.rho!r}; {verdict.remaining.rho!r} was left of the cap {cap.rho!r}"
        )
    else:
        reason = (
            f"charged rho {total.rho!r} (delta {total.delta!r}) with rho {spent_before.rho!r}"
            f" (delta {spent_before.delta!r}) already spent exceeds the cap rho {cap.rho!r}"
            f" (delta {cap.delta!r})"
        )
    results.append(CheckResult("dataset_cap", "release", verdict.fits, reason, figures))
    return results


# --- the whole candidate --------------------------------------------------------------------


def check_candidate(
    policy: Policy,
    *,
    microdata: pd.DataFrame | None,
    tables: Mapping[str, SafeTable],
    charged: Mapping[str, PrivacySpend],
    spent_before: PrivacySpend,
    records: pd.DataFrame | None = None,
    published: Sequence[SafeTable | Tabulation] = (),
) -> CandidateReport:
    """Run every check of a release candidate against its policy.

    A declared safe table that the candidate lacks, and a table the policy does not declare,
    fail as well: the board sees the release the policy describes, or none.

    :param policy: the policy version the candidate was built under.
    :param microdata: the k-anonymous microdata, or ``None`` when the candidate has none.
    :param tables: the safe tables by their policy name.
    :param charged: what was charged per DP artefact.
    :param spent_before: what the ledger had charged before this candidate.
    :param records: the records the tables count; with them, the candidate's tables and the
        ones already published are checked together against differencing
        (:func:`check_differencing`: no count of a group proven to be from 1 to the threshold
        less one).
    :param published: the tables already published from the same records, with their
        populations.
    :raises ValueError: for tables already published without the records they count.
    """
    if published and records is None:
        raise ValueError("checking against the tables already published needs their records")
    results: list[CheckResult] = []
    if microdata is not None:
        results.extend(check_microdata(microdata, policy.microdata))
    declared = [t.name for t in policy.tables.frequency_tables]
    for name in declared:
        if name not in tables:
            results.append(
                CheckResult(
                    "table_declared", f"tables.{name}", False, "the candidate lacks this table"
                )
            )
    for name, table in tables.items():
        results.extend(check_table(table, policy.tables, name))
    if records is not None and tables:
        results.append(_differencing_result(tables, published, records, policy.tables))
    results.extend(check_spend(charged, policy.release, policy.privacy, spent_before))
    return CandidateReport(tuple(results))


def _fields_of(table: SafeTable | Tabulation) -> set[str]:
    """Return every field a table names: its dimensions and its population's filter fields."""
    if isinstance(table, Tabulation):
        return {*table.table.dimensions, *table.keep, *table.drop}
    return set(table.dimensions)


def _components(tables: Sequence[SafeTable | Tabulation]) -> list[list[int]]:
    """Group the tables (by position) into sets connected by the fields they share.

    Tables of two groups share no field: what one group publishes bounds a count of the
    other's only through the number of records both count, which each group publishes itself,
    so every joint table is consistent with any two completions of the groups (a transport
    problem between their margins) and each group is checked on its own. This keeps the
    fine cross-classification of a group, not of every table, within the check's reach.

    >>> from disclosure_control.sdc import frequency_table
    >>> frame = pd.DataFrame({"a": ["x"] * 12, "b": ["y"] * 12, "c": ["z"] * 12})
    >>> tables = [frequency_table(frame, d) for d in (["a"], ["b"], ["a", "c"])]
    >>> _components(tables)
    [[0, 2], [1]]
    """
    fields = [_fields_of(t) for t in tables]
    groups: list[list[int]] = []
    seen: set[int] = set()
    for first in range(len(tables)):
        if first in seen:
            continue
        group, reach, changed = [first], set(fields[first]), True
        seen.add(first)
        while changed:
            changed = False
            for other in range(len(tables)):
                if other not in seen and fields[other] & reach:
                    group.append(other)
                    reach |= fields[other]
                    seen.add(other)
                    changed = True
        groups.append(sorted(group))
    return groups


def _differencing_result(
    tables: Mapping[str, SafeTable],
    published: Sequence[SafeTable | Tabulation],
    records: pd.DataFrame,
    rules: Tables,
) -> CheckResult:
    """Check the candidate's tables together with those already published against
    differencing: the tables sharing fields are checked together (:func:`_components`), the
    candidate's last table of each group as the new one."""
    names = [*(f"published[{i}]" for i in range(len(published))), *tables]
    every: list[SafeTable | Tabulation] = [*published, *tables.values()]
    figures: dict[str, Any] = {"tables": len(names), "published": len(published)}
    recovered: list[tuple[str, bool]] = []
    fine_cells = programs = groups = 0
    for group in _components(every):
        if all(i < len(published) for i in group):
            continue  # only tables published before: checked when they were published
        groups += 1
        ordered = [i for i in group if i < len(published)] + [
            i for i in group if i >= len(published)
        ]
        try:
            report = check_differencing(
                every[ordered[-1]],
                [every[i] for i in ordered[:-1]],
                records,
                rules.cell_threshold,
            )
        except TableError as error:
            return CheckResult("differencing", "release", False, str(error), figures)
        fine_cells = max(fine_cells, report.fine_cells)
        programs += report.programs
        recovered += [
            ("a cross-classification" if r.table is None else names[ordered[r.table]], r.exact)
            for r in report.recovered
        ]
    exact = sum(1 for _, is_exact in recovered if is_exact)
    where = sorted({name for name, _ in recovered})
    figures |= {
        "groups": groups,
        "counts_disclosed": len(recovered),
        "recovered_exactly": exact,
        "fine_cells": fine_cells,
        "programs": programs,
    }
    if recovered:
        reason = (
            f"the {len(names)} tables together prove {len(recovered)} count(s) to be from"
            f" 1 to {rules.cell_threshold - 1} ({exact} exactly), in {', '.join(where)}"
        )
        return CheckResult("differencing", "release", False, reason, figures)
    reason = (
        f"the {len(names)} tables together prove no count to be from 1 to"
        f" {rules.cell_threshold - 1}"
    )
    return CheckResult("differencing", "release", True, reason, figures)
