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
import numpy.typing as npt
import pandas as pd

from disclosure_control.dp.accounting import PrivacySpend, check_charge, compose
from disclosure_control.sdc import SafeTable
from policies.document import Microdata, Policy, Privacy, Release, Tables

__all__ = [
    "CandidateReport",
    "CheckResult",
    "check_candidate",
    "check_microdata",
    "check_spend",
    "check_table",
    "linear_bounds",
    "protection_holds",
]

#: exp(entropy) of an exactly even split is l up to rounding; this much below l still passes.
_ENTROPY_TOLERANCE = 1e-9
# SafeTable status codes (disclosure_control.sdc.tables): published and primary cells.
_PUBLISHED, _PRIMARY = 0, 1
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    :param check: which rule (``columns``, ``k_anonymity``, ``l_diversity``, ``record_risk``,
        ``table_declared``, ``cell_threshold``, ``linear_bounds``, ``secondary_suppression``,
        ``rounding``, ``artefact_spend``, ``dataset_cap``).
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
    """Return the size of every equivalence class (a missing value is a value of its own)."""
    return frame.groupby(list(columns), dropna=False, sort=False, observed=True).size()


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
        removed); derived sensitive attributes must be columns of it.
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
    results = [_k_result(sizes, microdata.k)]
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


def _k_result(sizes: pd.Series, k: int) -> CheckResult:
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
            f"the smallest equivalence class has {smallest} records, under k = {k}"
            f" ({len(small)} of {len(sizes)} classes, {int(small.sum())} records)"
        )
        return CheckResult("k_anonymity", "microdata", False, reason, figures)
    reason = f"every one of {len(sizes)} classes has at least k = {k} records"
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
    true count; every suppressed cell must keep, under the linear bounds an attacker solves
    from the published cells (:func:`protection_holds`), room to be zero and to reach the
    threshold; a cell the hypercube method reports it could not protect fails the table too.

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


def _attacker_program(table: SafeTable) -> tuple[npt.NDArray[np.int64], Any, FloatArray]:
    """Return what an attacker solves: each cell's unknown number (-1 when published), and the
    equalities ``A x = b`` the published table puts on the unknowns.

    The unknowns are the hidden cells (suppressed, or totals the table does not publish); each
    line of the table (its parts and their total) gives one equality; the published cells are
    known exactly (their true counts: rounding would only widen the bounds).
    """
    from scipy.sparse import coo_array

    values, shape = table.values, table.values.shape
    hidden = table.status != _PUBLISHED
    unknown = np.full(shape, -1, np.int64)
    unknown[hidden] = np.arange(int(hidden.sum()))
    rows, columns, coefficients, rhs = [], [], [], []
    n_rows = 0
    for axis in range(values.ndim):
        size = shape[axis]
        lines = np.moveaxis(unknown, axis, -1).reshape(-1, size)
        line_values = np.moveaxis(values, axis, -1).reshape(-1, size)
        sign = np.ones(size)
        sign[-1] = -1.0  # the parts less their total
        used = (lines >= 0).any(axis=1)
        lines, line_values = lines[used], line_values[used]
        line, position = np.nonzero(lines >= 0)
        rows.append(line + n_rows)
        columns.append(lines[line, position])
        coefficients.append(sign[position])
        known = np.where(lines < 0, line_values, 0.0)
        rhs.append(-(known * sign).sum(axis=1))
        n_rows += len(lines)
    matrix = coo_array(
        (np.concatenate(coefficients), (np.concatenate(rows), np.concatenate(columns))),
        shape=(n_rows, int(hidden.sum())),
    ).tocsr()
    return unknown, matrix, np.concatenate(rhs)


def _solve(objective: FloatArray, matrix: Any, b: FloatArray, bounds: Any = None) -> Any:
    """Solve the attacker's program for one objective (non-negative unknowns by default)."""
    from scipy.optimize import linprog

    bounds = (0, None) if bounds is None else bounds
    solved = linprog(objective, A_eq=matrix, b_eq=b, bounds=bounds, method="highs")
    if solved.status != 0:
        raise ValueError(f"the linear bounds of a cell were not solved: {solved.message}")
    return solved


def linear_bounds(table: SafeTable, cells: npt.NDArray[np.int64]) -> FloatArray:
    """Return the least and greatest value each of ``cells`` can take, as an attacker solves it.

    Non-negative unknowns under every additivity relation of the table with its margins;
    solved by HiGHS through :func:`scipy.optimize.linprog`, two programs per cell.

    :param table: the protected table.
    :param cells: the hidden cells to bound, one index tuple per row.
    :return: one ``(low, high)`` row per cell.
    """
    unknown, matrix, b = _attacker_program(table)
    result = np.zeros((len(cells), 2))
    for i, cell in enumerate(cells):
        objective = np.zeros(matrix.shape[1])
        objective[unknown[tuple(cell)]] = 1.0
        result[i, 0] = _solve(objective, matrix, b).fun
        result[i, 1] = -_solve(-objective, matrix, b).fun
    return result


def protection_holds(
    table: SafeTable, cells: npt.NDArray[np.int64], floor: FloatArray, ceiling: float
) -> BoolArray:
    """Return, per cell, whether the published table lets it be as low as ``floor`` and as high
    as ``ceiling`` (the verdict :func:`linear_bounds` gives, with far fewer programs).

    Any solution of the attacker's equalities is a table they cannot rule out, so it settles
    every cell it shows at or below its floor, or at or above the ceiling. First all unsettled
    cells are pushed down together (minimise their sum), then up together (maximise their sum,
    each capped at the ceiling so one cell cannot take all the room), while a round settles
    any; a cell still unsettled then gets its own program, whose optimum is its exact bound.

    :param table: the protected table.
    :param cells: the hidden cells, one index tuple per row.
    :param floor: per cell, the value it must be able to fall to.
    :param ceiling: the value every cell must be able to rise to.
    """
    unknown, matrix, b = _attacker_program(table)
    index = unknown[tuple(cells.T)]
    n_unknown = matrix.shape[1]
    tolerance = 1e-6
    settled = {"low": np.zeros(len(cells), np.bool_), "high": np.zeros(len(cells), np.bool_)}

    def settle(objective: FloatArray, upper: FloatArray | None = None) -> None:
        bounds = None if upper is None else np.column_stack([np.zeros(n_unknown), upper])
        witness = _solve(objective, matrix, b, bounds).x[index]
        settled["low"] |= witness <= floor + tolerance
        settled["high"] |= witness >= ceiling - tolerance

    for side, direction in (("low", 1.0), ("high", -1.0)):
        while not settled[side].all():
            before = int(settled[side].sum())
            objective = np.zeros(n_unknown)
            objective[index[~settled[side]]] = direction
            upper = None
            if side == "high":
                upper = np.full(n_unknown, np.inf)
                upper[index[~settled[side]]] = ceiling
            settle(objective, upper)
            if int(settled[side].sum()) == before:
                break
        for i in np.flatnonzero(~settled[side]):
            if not settled[side][i]:
                objective = np.zeros(n_unknown)
                objective[index[i]] = direction
                settle(objective)
    return settled["low"] & settled["high"]


def _bounds_result(table: SafeTable, threshold: int, subject: str) -> CheckResult:
    """Check that every primary cell can still reach the threshold, and an inner one zero."""
    primary = np.argwhere(table.status == _PRIMARY)
    if len(primary) == 0:
        return CheckResult(
            "linear_bounds", subject, True, "no cell is suppressed", {"primary_cells": 0}
        )
    totals = np.array(table.values.shape) - 1
    margin = (primary == totals).any(axis=1)
    values = table.values[tuple(primary.T)]
    # A margin falls with its parts, one at a time: it must be able to fall by one.
    floor = np.where(margin, np.maximum(values - 1, 0), 0.0)
    narrowed = ~protection_holds(table, primary, floor, float(threshold))
    count = int(narrowed.sum())
    figures = {"primary_cells": len(primary), "cells_narrowed": count}
    if count:
        reason = (
            f"{count} of {len(primary)} suppressed cell(s) are narrowed by the published cells:"
            f" their linear bounds exclude zero or {threshold}"
        )
        return CheckResult("linear_bounds", subject, False, reason, figures)
    reason = (
        f"every one of {len(primary)} suppressed cell(s) can take any value from 0 to {threshold}"
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
) -> CandidateReport:
    """Run every check of a release candidate against its policy.

    A declared safe table that the candidate lacks, and a table the policy does not declare,
    fail as well: the board sees the release the policy describes, or none.

    :param policy: the policy version the candidate was built under.
    :param microdata: the k-anonymous microdata, or ``None`` when the candidate has none.
    :param tables: the safe tables by their policy name.
    :param charged: what was charged per DP artefact.
    :param spent_before: what the ledger had charged before this candidate.
    """
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
    results.extend(check_spend(charged, policy.release, policy.privacy, spent_before))
    return CandidateReport(tuple(results))
