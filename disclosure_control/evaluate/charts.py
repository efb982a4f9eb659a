"""Small, dependency-free SVG bar charts for the readable evaluation report."""

from __future__ import annotations

import math
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

#: Colours of the series, in order (colour-blind safe, Okabe-Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")

_WIDTH = 640
_HEIGHT = 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 36, 64


def nice_ceiling(value: float) -> float:
    """Return the smallest of 1, 2, 2.5 or 5 times a power of ten at or above ``value``.

    :param value: the largest value the axis must show.

    >>> nice_ceiling(0.137), nice_ceiling(0.25), nice_ceiling(7.0), nice_ceiling(0.0)
    (0.2, 0.25, 10.0, 1.0)
    """
    if not value > 0 or math.isinf(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * power >= value * (1 - 1e-12):
            return step * power
    return 10.0 * power  # unreachable: 10 x power always covers value


def _label(value: float, digits: int) -> str:
    """Format a bar's value label."""
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def grouped_bar_chart(
    title: str,
    groups: Sequence[str],
    series: Sequence[str],
    values: Sequence[Sequence[float]],
    *,
    y_label: str,
    figure_id: str,
    digits: int = 3,
) -> str:
    """Draw a grouped bar chart as a standalone SVG element.

    Every bar is a ``rect`` of class ``bar`` carrying ``data-series``, ``data-group`` and
    ``data-value`` (the value's ``repr``, ``nan`` for a missing one, drawn as no bar), so the
    figure's numbers can be read back from the document.

    :param title: the chart's title.
    :param groups: the labels along the x axis.
    :param series: one label per bar in each group (the legend).
    :param values: ``values[s][g]`` is series ``s`` in group ``g``; NaN means not measured.
    :param y_label: the y axis's label.
    :param figure_id: the SVG element's ``id``.
    :param digits: decimals of the value labels.

    >>> svg = grouped_bar_chart("T", ["a"], ["s"], [[0.5]], y_label="y", figure_id="f")
    >>> svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"'), 'data-value="0.5"' in svg
    (True, True)
    """
    if len(values) != len(series) or any(len(row) != len(groups) for row in values):
        raise ValueError("values must hold one row per series and one value per group")
    finite = [v for row in values for v in row if not math.isnan(v)]
    top = nice_ceiling(max(finite, default=0.0))
    plot_w = _WIDTH - _LEFT - _RIGHT
    plot_h = _HEIGHT - _TOP - _BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id={quoteattr(figure_id)} '
        f'width="{_WIDTH}" height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
        f'role="img" aria-label={quoteattr(title)} font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<text x="{_WIDTH / 2:g}" y="18" text-anchor="middle" font-size="14" '
        f'font-weight="bold">{escape(title)}</text>',
    ]
    for tick in range(6):
        value = top * tick / 5
        y = _TOP + plot_h * (1 - tick / 5)
        parts.append(
            f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#ddd" stroke-width="1"/>'
        )
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value:g}</text>')
    parts.append(
        f'<text transform="translate(14 {_TOP + plot_h / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    group_w = plot_w / max(len(groups), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    for g, group in enumerate(groups):
        x0 = _LEFT + g * group_w + group_w * 0.1
        for s, name in enumerate(series):
            value = float(values[s][g])
            x = x0 + s * bar_w
            height = 0.0 if math.isnan(value) else plot_h * min(max(value / top, 0.0), 1.0)
            y = _TOP + plot_h - height
            parts.append(
                f'<rect class="bar" data-series={quoteattr(name)} data-group={quoteattr(group)} '
                f'data-value="{value!r}" x="{x:.1f}" y="{y:.1f}" width="{bar_w * 0.92:.1f}" '
                f'height="{height:.1f}" fill="{PALETTE[s % len(PALETTE)]}">'
                f"<title>{escape(f'{name}, {group}: {_label(value, digits)}')}</title></rect>"
            )
            parts.append(
                f'<text x="{x + bar_w * 0.46:.1f}" y="{y - 3:.1f}" text-anchor="middle" '
                f'font-size="9">{_label(value, digits)}</text>'
            )
        parts.append(
            f'<text x="{x0 + group_w * 0.4:.1f}" y="{_TOP + plot_h + 16}" '
            f'text-anchor="middle">{escape(group)}</text>'
        )
    parts.append(
        f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{_TOP + plot_h}" y2="{_TOP + plot_h}" '
        'stroke="#333" stroke-width="1"/>'
    )
    legend_x = float(_LEFT)
    legend_y = _HEIGHT - 18
    for s, name in enumerate(series):
        parts.append(
            f'<rect x="{legend_x:.1f}" y="{legend_y - 9}" width="10" height="10" '
            f'fill="{PALETTE[s % len(PALETTE)]}"/>'
        )
        parts.append(f'<text x="{legend_x + 14:.1f}" y="{legend_y}">{escape(name)}</text>')
        legend_x += 24 + 6.5 * len(name)
    parts.append("</svg>")
    return "\n".join(parts)
