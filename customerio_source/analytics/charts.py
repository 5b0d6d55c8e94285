"""Hand-written inline SVG charts for the report: lines with markers and bands, bars, a funnel.

Every style is a presentation attribute on the element (no CSS classes), so a chart serialized on its
own (the page's PNG export draws the SVG on a canvas) looks the same as on the page.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d")
FONT = 'font-family="Helvetica, Arial, sans-serif"'
WIDTH, HEIGHT = 860, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 150, 34, 36


@dataclass
class Line:
    name: str
    points: list[tuple[dt.date, float]]
    color: str | None = None
    dashed: bool = False
    markers: list[tuple[dt.date, float, str]] = field(default_factory=list)
    """(day, value, tooltip) drawn as red rings (spike days)."""


@dataclass
class Band:
    name: str
    points: list[tuple[dt.date, float, float]]
    color: str
    opacity: float


def nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exponent = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exponent:
            return step * exponent
    return 10 * exponent


def fmt(value: float) -> str:
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if abs(value) >= 10_000:
        return f"{value / 1000:.0f}k"
    if abs(value) >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}" if abs(value) >= 1 else f"{value:.2f}"


def _frame(chart_id: str, title: str, width: int, height: int) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{escape(chart_id)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="20" {FONT} font-size="14" font-weight="bold" fill="#111827">{escape(title)}</text>',
    ]


def line_chart(
    chart_id: str,
    title: str,
    lines: Sequence[Line],
    bands: Sequence[Band] = (),
    marker_label: str = "spike day",
    y_label: str = "",
) -> str:
    """A time-series chart: bands first, then lines, then markers, with a legend on the right."""
    days = [d for line in lines for d, _ in line.points] + [d for band in bands for d, _, _ in band.points]
    if not days:
        raise ValueError(f"chart {chart_id} has no data")
    first, last = min(days), max(days)
    span = max(1, (last - first).days)
    top = max([v for line in lines for _, v in line.points] + [hi for band in bands for _, _, hi in band.points] + [0])
    ymax = nice_max(top)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(day: dt.date) -> float:
        return LEFT + plot_w * (day - first).days / span

    def y(value: float) -> float:
        return TOP + plot_h * (1 - min(value, ymax) / ymax)

    out = _frame(chart_id, title, WIDTH, HEIGHT)
    for i in range(5):  # grid and y ticks
        value = ymax * i / 4
        out.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            'stroke="#e5e7eb" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" {FONT} font-size="11" fill="#6b7280" '
            f'text-anchor="end">{fmt(value)}</text>'
        )
    if y_label:
        out.append(
            f'<text x="14" y="{TOP + plot_h / 2:.0f}" {FONT} font-size="11" fill="#6b7280" '
            f'transform="rotate(-90 14 {TOP + plot_h / 2:.0f})" text-anchor="middle">{escape(y_label)}</text>'
        )
    ticks = 6
    for i in range(ticks + 1):  # x ticks
        day = first + dt.timedelta(days=round(span * i / ticks))
        out.append(
            f'<text x="{x(day):.1f}" y="{HEIGHT - 14}" {FONT} font-size="11" fill="#6b7280" '
            f'text-anchor="middle">{day.isoformat()}</text>'
        )
    legend = []
    for band in bands:
        upper = " ".join(f"{x(d):.1f},{y(hi):.1f}" for d, _, hi in band.points)
        lower = " ".join(f"{x(d):.1f},{y(lo):.1f}" for d, lo, _ in reversed(band.points))
        out.append(
            f'<polygon data-series="{escape(band.name)}" points="{upper} {lower}" fill="{band.color}" '
            f'fill-opacity="{band.opacity}" '
            'stroke="none"><title>' + escape(band.name) + "</title></polygon>"
        )
        legend.append((band.name, band.color, "band"))
    for i, line in enumerate(lines):
        color = line.color or PALETTE[i % len(PALETTE)]
        if line.points:
            path = " ".join(f"{'M' if j == 0 else 'L'}{x(d):.1f},{y(v):.1f}" for j, (d, v) in enumerate(line.points))
            dash = ' stroke-dasharray="5,4"' if line.dashed else ""
            out.append(
                f'<path data-series="{escape(line.name)}" d="{path}" fill="none" stroke="{color}" '
                f'stroke-width="1.8"{dash}>'
                f"<title>{escape(line.name)}</title></path>"
            )
        legend.append((line.name, color, "dashed" if line.dashed else "line"))
    has_markers = False
    for line in lines:
        for day, value, tip in line.markers:
            has_markers = True
            out.append(
                f'<circle cx="{x(day):.1f}" cy="{y(value):.1f}" r="5" fill="none" stroke="#dc2626" '
                f'stroke-width="2"><title>{escape(tip)}</title></circle>'
            )
    if has_markers:
        legend.append((marker_label, "#dc2626", "marker"))
    for i, (name, color, kind) in enumerate(legend):
        ly = TOP + 8 + i * 18
        lx = WIDTH - RIGHT + 14
        if kind == "band":
            out.append(f'<rect x="{lx}" y="{ly - 6}" width="18" height="10" fill="{color}" fill-opacity="0.35"/>')
        elif kind == "marker":
            out.append(f'<circle cx="{lx + 9}" cy="{ly - 1}" r="5" fill="none" stroke="{color}" stroke-width="2"/>')
        else:
            dash = ' stroke-dasharray="5,4"' if kind == "dashed" else ""
            out.append(
                f'<line x1="{lx}" x2="{lx + 18}" y1="{ly - 1}" y2="{ly - 1}" stroke="{color}" stroke-width="2"{dash}/>'
            )
        out.append(f'<text x="{lx + 24}" y="{ly + 3}" {FONT} font-size="11" fill="#374151">{escape(name[:22])}</text>')
    out.append("</svg>")
    return "\n".join(out)


def bar_chart(chart_id: str, title: str, bars: Sequence[tuple[str, float, str]], percent_of_first: bool = False) -> str:
    """Horizontal bars (label, value, tooltip); with ``percent_of_first`` each bar also shows its share of
    the first (a funnel)."""
    if not bars:
        raise ValueError(f"chart {chart_id} has no data")
    row = 30
    height = TOP + row * len(bars) + 16
    label_w = 170
    plot_w = WIDTH - label_w - 120
    top = max(value for _, value, _ in bars) or 1
    first = bars[0][1] or 1
    out = _frame(chart_id, title, WIDTH, height)
    for i, (label, value, tip) in enumerate(bars):
        y = TOP + i * row
        w = max(1.0, plot_w * value / top) if value > 0 else 0.0
        out.append(
            f'<text x="{label_w - 8}" y="{y + 17}" {FONT} font-size="12" fill="#374151" '
            f'text-anchor="end">{escape(label[:26])}</text>'
        )
        out.append(
            f'<rect data-series="{escape(label)}" x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row - 10}" '
            f'fill="{PALETTE[i % len(PALETTE)] if percent_of_first else PALETTE[0]}">'
            f"<title>{escape(tip)}</title></rect>"
        )
        text = fmt(value) + (f" ({100 * value / first:.1f}%)" if percent_of_first else "")
        out.append(
            f'<text x="{label_w + w + 6:.1f}" y="{y + 17}" {FONT} font-size="12" fill="#111827">{escape(text)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)
