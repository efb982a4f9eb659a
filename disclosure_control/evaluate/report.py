"""One synthetic release's utility and risk report, machine-readable and readable."""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from disclosure_control.evaluate.charts import grouped_bar_chart
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


def _measured(value: Any) -> float:
    """Read a stored measure: ``None`` (a NaN written to JSON) is NaN again."""
    return math.nan if value is None else float(value)


def report_figures(document: Mapping[str, Any]) -> dict[str, str]:
    """Return the charts of a report as standalone SVG elements, by figure id.

    :param document: the report as :meth:`EvaluationReport.to_dict` makes it, or as stored
        after :meth:`EvaluationReport.to_json` (NaN written as ``None``).

    ``tvd-by-order``: mean total-variation distance of marginals by order, for the synthetic
    table and each reference table. ``attacks`` (when privacy was measured): each attack's
    success on training records, on held-out records and the naive baseline's.
    """
    utility = document["utility"]
    tables = [("synthetic", utility), *document.get("references", {}).items()]
    orders = [s["order"] for s in utility["tvd"]]
    means = [
        [
            next((_measured(s["mean"]) for s in report["tvd"] if s["order"] == o), math.nan)
            for o in orders
        ]
        for _, report in tables
    ]
    figures = {
        "tvd-by-order": grouped_bar_chart(
            "Mean total-variation distance by marginal order (lower is better)",
            [f"{o}-way" for o in orders],
            [label for label, _ in tables],
            means,
            y_label="mean TVD",
            figure_id="tvd-by-order",
            digits=4,
        )
    }
    privacy = document.get("privacy")
    if privacy and privacy.get("attacks"):
        attacks = privacy["attacks"]
        figures["attacks"] = grouped_bar_chart(
            "Attack success on training records against the baselines",
            [a["name"] for a in attacks],
            ["on training records", "on held-out records", "naive baseline"],
            [
                [_measured(a["main_rate"]) for a in attacks],
                [_measured(a["control_rate"]) for a in attacks],
                [_measured(a["baseline_rate"]) for a in attacks],
            ],
            y_label="success rate",
            figure_id="attacks",
        )
    return figures


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

    def figures(self) -> dict[str, str]:
        """Return the report's charts as standalone SVG elements, by figure id.

        ``tvd-by-order``: mean total-variation distance of marginals by order, for the
        synthetic table and each reference table. ``attacks`` (when privacy was measured):
        each attack's success on training records, on held-out records and the naive
        baseline's.
        """
        return report_figures(self.to_dict())

    def _blocks(self) -> list[_Block]:
        """Return the report's content as blocks, rendered as Markdown or as HTML."""
        figures = self.figures()
        blocks: list[_Block] = [
            _Block("h1", "Synthetic release: utility and risk report"),
            _Block("list", items=[f"**{k}**: {v}" for k, v in self.metadata.items()]),
            _Block("h2", "Utility: total-variation distance of marginals (lower is better)"),
        ]
        rows: list[tuple[str, UtilityReport]] = [("synthetic", self.utility)]
        rows += list(self.references.items())
        blocks.append(
            _Block(
                "table",
                header=[
                    "table",
                    "order",
                    "marginals",
                    "mean",
                    "max",
                    "chart of mean (full = 0.25)",
                ],
                align="lrrrrl",
                rows=[
                    [
                        label,
                        str(s.order),
                        str(s.n_marginals),
                        _number(s.mean),
                        _number(s.max),
                        f"`{bar(s.mean, 0.25)}`",
                    ]
                    for label, report in rows
                    for s in report.tvd
                ],
            )
        )
        blocks.append(_Block("figure", figures["tvd-by-order"]))
        worst = self.utility.tvd[-1].worst if self.utility.tvd else ()
        if worst:
            blocks.append(_Block("p", f"Worst {len(worst)}-way marginal: {', '.join(worst)}."))
        blocks.append(_Block("h2", "Utility: attribute combinations by length (SDS-style)"))
        blocks.append(
            _Block(
                "table",
                header=[
                    "length",
                    "real combinations",
                    "synthetic",
                    "mean count error",
                    "mean relative error",
                    "preserved",
                    "fabricated",
                ],
                align="rrrrrrr",
                rows=[
                    [
                        str(c.length),
                        str(c.real_combinations),
                        str(c.synthetic_combinations),
                        f"{c.mean_count_error:.2f}",
                        f"{c.mean_relative_error:.3f}",
                        f"{c.preserved_share:.1%}",
                        f"{c.fabricated_share:.1%}",
                    ]
                    for c in self.utility.combinations
                ],
            )
        )
        blocks.append(_Block("h2", "Utility: analyst queries"))
        blocks.append(
            _Block(
                "table",
                header=["query", "status", "mean error", "max error", "chart (full = 0.1)"],
                align="llrrl",
                rows=[
                    [
                        q.name,
                        q.status,
                        _number(q.mean_error),
                        _number(q.max_error),
                        f"`{bar(q.mean_error, 0.1)}`",
                    ]
                    for q in self.utility.queries
                ],
            )
        )
        if self.privacy is not None:
            p = self.privacy
            d = p.distance
            blocks.append(_Block("h2", "Privacy"))
            blocks.append(
                _Block(
                    "list",
                    items=[
                        f"Synthetic records identical to a training record: "
                        f"{p.exact_match_share:.2%} (held-out real records: "
                        f"{p.control_exact_match_share:.2%}).",
                        f"Distance to closest training record (columns differing, {d.n_sampled} "
                        f"sampled): synthetic median {d.synthetic_median:g}, mean "
                        f"{d.synthetic_mean:.2f}; held-out median {d.control_median:g}, mean "
                        f"{d.control_mean:.2f}.",
                    ],
                )
            )
            blocks.append(
                _Block(
                    "table",
                    header=["attack", "attacks", "on training", "on held-out", "naive baseline"]
                    + ["risk"],
                    align="lrrrrl",
                    rows=[
                        [
                            a.name,
                            str(a.n_attacks),
                            f"{a.main_rate:.3f} [{a.main_interval[0]:.3f}, "
                            f"{a.main_interval[1]:.3f}]",
                            f"{a.control_rate:.3f}",
                            f"{a.baseline_rate:.3f}",
                            f"{a.risk:.3f} `{bar(a.risk, 1.0, 20)}`",
                        ]
                        for a in p.attacks
                    ],
                )
            )
            if "attacks" in figures:
                blocks.append(_Block("figure", figures["attacks"]))
            blocks.append(
                _Block(
                    "p",
                    "Risk is the success on training records beyond the success on held-out "
                    "records, (main - control) / (1 - control).",
                )
            )
        return blocks

    def to_markdown(self) -> str:
        """Return the report as Markdown, with text bars and inline SVG charts.

        The charts are raw HTML blocks (CommonMark allows them); viewers that strip SVG still
        show the tables and text bars, and :meth:`to_html` shows everything.
        """
        lines: list[str] = []
        for block in self._blocks():
            if lines:
                lines.append("")
            lines += block.markdown()
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        """Return the report as one self-contained HTML page with its SVG charts."""
        body = "\n".join(block.html() for block in self._blocks())
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            "<title>Synthetic release: utility and risk report</title>\n<style>\n"
            "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}\n"
            "table{border-collapse:collapse;margin:1em 0}\n"
            "th,td{border:1px solid #ccc;padding:.2em .5em}\n"
            "td.r,th.r{text-align:right}\nfigure{margin:1em 0}\n"
            "</style>\n</head>\n<body>\n" + body + "\n</body>\n</html>\n"
        )

    def write(self, directory: str | Path, stem: str = "report") -> dict[str, Path]:
        """Write the report as ``<stem>.json``, ``<stem>.md`` and ``<stem>.html``.

        :param directory: an existing directory.
        :param stem: the files' common name.
        :return: the written paths by format (``json``, ``markdown``, ``html``).
        """
        folder = Path(directory)
        if not folder.is_dir():
            raise ValueError(f"report directory {str(folder)!r} does not exist")
        paths = {
            "json": folder / f"{stem}.json",
            "markdown": folder / f"{stem}.md",
            "html": folder / f"{stem}.html",
        }
        paths["json"].write_text(self.to_json() + "\n", encoding="utf-8")
        paths["markdown"].write_text(self.to_markdown(), encoding="utf-8")
        paths["html"].write_text(self.to_html(), encoding="utf-8")
        return paths


@dataclass
class _Block:
    """One piece of the readable report: a heading, paragraph, list, table or figure.

    :param kind: ``h1``, ``h2``, ``p``, ``list``, ``table`` or ``figure``.
    :param text: the heading's or paragraph's text, or the figure's SVG.
    :param items: the list's items.
    :param header: the table's column names.
    :param align: per column, ``l`` or ``r``.
    :param rows: the table's rows.
    """

    kind: str
    text: str = ""
    items: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    align: str = ""
    rows: list[list[str]] = field(default_factory=list)

    def markdown(self) -> list[str]:
        """Render the block as Markdown lines."""
        if self.kind == "h1":
            return [f"# {self.text}"]
        if self.kind == "h2":
            return [f"## {self.text}"]
        if self.kind == "list":
            return [f"- {item}" for item in self.items]
        if self.kind == "table":
            rule = ["---:" if a == "r" else "---" for a in self.align]
            return [
                "| " + " | ".join(self.header) + " |",
                "|" + "|".join(rule) + "|",
                *("| " + " | ".join(row) + " |" for row in self.rows),
            ]
        return [self.text]

    def html(self) -> str:
        """Render the block as HTML."""
        if self.kind in ("h1", "h2", "p"):
            return f"<{self.kind}>{_inline_html(self.text)}</{self.kind}>"
        if self.kind == "list":
            return "<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in self.items) + "</ul>"
        if self.kind == "table":
            cls = [' class="r"' if a == "r" else "" for a in self.align]
            head = "".join(
                f"<th{c}>{_inline_html(h)}</th>" for c, h in zip(cls, self.header, strict=True)
            )
            body = "".join(
                "<tr>"
                + "".join(f"<td{c}>{_inline_html(v)}</td>" for c, v in zip(cls, row, strict=True))
                + "</tr>"
                for row in self.rows
            )
            return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        return f"<figure>{self.text}</figure>"


def _inline_html(text: str) -> str:
    """Escape text for HTML, turning Markdown's ``**bold**`` and ```code``` into tags."""
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


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
