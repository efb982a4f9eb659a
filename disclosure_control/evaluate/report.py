"""One synthetic release's utility and risk report, machine-readable and readable."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from disclosure_control.evaluate.privacy import PrivacyReport, evaluate_privacy
from disclosure_control.evaluate.utility import (
    CTDC_ANALYST_QUERIES,
    AnalystQuery,
    UtilityReport,
    evaluate_utility,
)

_BAR_WIDTH = 30


def bar(value: float, scale: float = 1.0, width: int = _BAR_WIDTH) -> str:
    """Draw a value as a text bar, full width at ``scale``.

    :param value: the value drawn (clipped to ``[0, scale]``).
    :param scale: the value that fills the bar.
    :param width: the bar's width in characters.

    >>> bar(0.5, 1.0, 10)
    '█████·····'
    """
    if scale <= 0 or math.isnan(value):
        return "·" * width
    filled = round(width * min(max(value / scale, 0.0), 1.0))
    return "█" * filled + "·" * (width - filled)


def _number(value: float) -> str:
    """Format a measure for a Markdown table."""
    return "n/a" if math.isnan(value) else f"{value:.4f}"


@dataclass
class EvaluationReport:
    """Utility and risk of one synthetic table, with the run's metadata and reference rows.

    :param metadata: what produced the table (synthesizer, privacy spend, seed, sizes).
    :param utility: the synthetic table's utility against the training records.
    :param privacy: the synthetic table's privacy measures, if a control set was given.
    :param references: utility of reference tables (e.g. the held-out floor, the
        independent-marginals baseline), by label, scored the same way.
    """

    metadata: dict[str, Any]
    utility: UtilityReport
    privacy: PrivacyReport | None = None
    references: dict[str, UtilityReport] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the whole report as JSON-ready data."""
        return {
            "metadata": self.metadata,
            "utility": self.utility.to_dict(),
            "privacy": None if self.privacy is None else self.privacy.to_dict(),
            "references": {k: v.to_dict() for k, v in self.references.items()},
        }

    def to_json(self) -> str:
        """Return the report as JSON text (NaN written as ``null``)."""
        return json.dumps(_nan_to_none(self.to_dict()), indent=2, sort_keys=True)

    def to_markdown(self) -> str:
        """Return the report as Markdown, with text bar charts."""
        lines = ["# Synthetic release: utility and risk report", ""]
        lines += [f"- **{k}**: {v}" for k, v in self.metadata.items()]
        lines += ["", "## Utility: total-variation distance of marginals (lower is better)", ""]
        rows: list[tuple[str, UtilityReport]] = [("synthetic", self.utility)]
        rows += list(self.references.items())
        lines += ["| table | order | marginals | mean | max | chart of mean (full = 0.25) |"]
        lines += ["|---|---:|---:|---:|---:|---|"]
        for label, report in rows:
            for s in report.tvd:
                lines.append(
                    f"| {label} | {s.order} | {s.n_marginals} | {_number(s.mean)} | "
                    f"{_number(s.max)} | `{bar(s.mean, 0.25)}` |"
                )
        worst = self.utility.tvd[-1].worst if self.utility.tvd else ()
        if worst:
            lines += ["", f"Worst {len(worst)}-way marginal: {', '.join(worst)}."]
        lines += ["", "## Utility: attribute combinations by length (SDS-style)", ""]
        lines += [
            "| length | real combinations | synthetic | mean count error | mean relative error "
            "| preserved | fabricated |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for c in self.utility.combinations:
            lines.append(
                f"| {c.length} | {c.real_combinations} | {c.synthetic_combinations} | "
                f"{c.mean_count_error:.2f} | {c.mean_relative_error:.3f} | "
                f"{c.preserved_share:.1%} | {c.fabricated_share:.1%} |"
            )
        lines += ["", "## Utility: analyst queries", ""]
        lines += ["| query | status | mean error | max error | chart (full = 0.1) |"]
        lines += ["|---|---|---:|---:|---|"]
        for q in self.utility.queries:
            lines.append(
                f"| {q.name} | {q.status} | {_number(q.mean_error)} | {_number(q.max_error)} | "
                f"`{bar(q.mean_error, 0.1)}` |"
            )
        if self.privacy is not None:
            p = self.privacy
            d = p.distance
            lines += ["", "## Privacy", ""]
            lines += [
                f"- Synthetic records identical to a training record: "
                f"{p.exact_match_share:.2%} (held-out real records: "
                f"{p.control_exact_match_share:.2%}).",
                f"- Distance to closest training record (columns differing, {d.n_sampled} "
                f"sampled): synthetic median {d.synthetic_median:g}, mean "
                f"{d.synthetic_mean:.2f}; held-out median {d.control_median:g}, mean "
                f"{d.control_mean:.2f}.",
                "",
                "| attack | attacks | on training | on held-out | naive baseline | risk |",
                "|---|---:|---:|---:|---:|---|",
            ]
            for a in p.attacks:
                lines.append(
                    f"| {a.name} | {a.n_attacks} | {a.main_rate:.3f} "
                    f"[{a.main_interval[0]:.3f}, {a.main_interval[1]:.3f}] | "
                    f"{a.control_rate:.3f} | {a.baseline_rate:.3f} | "
                    f"{a.risk:.3f} `{bar(a.risk, 1.0, 20)}` |"
                )
            lines += [
                "",
                "Risk is the success on training records beyond the success on held-out "
                "records, (main - control) / (1 - control).",
            ]
        return "\n".join(lines) + "\n"


def _nan_to_none(value: Any) -> Any:
    """Replace NaN floats by ``None`` throughout nested data, so the JSON stays standard."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v) for v in value]
    return value


def evaluate_release(
    training: pd.DataFrame,
    synthetic: pd.DataFrame,
    control: pd.DataFrame | None = None,
    *,
    metadata: Mapping[str, Any] | None = None,
    references: Mapping[str, pd.DataFrame] | None = None,
    columns: Sequence[str] | None = None,
    queries: Sequence[AnalystQuery] = CTDC_ANALYST_QUERIES,
    secrets: Sequence[str] = (),
    n_three_way: int = 300,
    n_attacks: int = 500,
    seed: int = 0,
) -> EvaluationReport:
    """Score a synthetic table's utility and risk against the records it was made from.

    :param training: the real records the synthesizer saw.
    :param synthetic: the synthetic records.
    :param control: held-out real records; privacy measures need them and are skipped
        (``privacy`` is ``None``) without them.
    :param metadata: what produced the table, copied into the report.
    :param references: other tables to score the same way, such as the held-out floor.
    :param columns: columns compared; by default the training table's.
    :param queries: the analyst query set.
    :param secrets: columns the inference attack tries to infer.
    :param n_three_way: 3-way marginals sampled.
    :param n_attacks: attacks per attack type.
    :param seed: seed of every sample, so reports of different tables are comparable.
    """
    chosen = list(training.columns if columns is None else columns)
    utility = evaluate_utility(
        training, synthetic, chosen, n_three_way=n_three_way, queries=queries, seed=seed
    )
    privacy = None
    if control is not None:
        privacy = evaluate_privacy(
            training, synthetic, control, chosen, n_attacks=n_attacks, secrets=secrets, seed=seed
        )
    reference_reports = {
        label: evaluate_utility(
            training, frame, chosen, n_three_way=n_three_way, queries=queries, seed=seed
        )
        for label, frame in (references or {}).items()
    }
    meta = dict(metadata or {})
    meta.setdefault("training records", len(training))
    meta.setdefault("synthetic records", len(synthetic))
    meta.setdefault("columns", len(chosen))
    return EvaluationReport(meta, utility, privacy, reference_reports)
