"""The latency chart: plain SVG, one panel per scenario and response size,
one group of bars (p50 … max) per target, on a shared log-scale µs axis."""

from __future__ import annotations

import math
from html import escape

from .measure import PERCENTILES, Scenario
from .report import PERCENTILE_LABELS, Column
from .targets import SIZES

COLORS = {"p50": "#c6dbef", "p90": "#6baed6", "p99": "#2171b5", "p999": "#08306b",
          "max": "#f16913"}
PANEL_W, PANEL_H = 440, 230
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 64, 16, 30, 34
TOP = 70  # title and legend
FONT = 'font-family="Helvetica, Arial, sans-serif"'


def _axis_range(values: list[float]) -> tuple[float, float]:
    """Whole decades around every value, in log10 µs."""
    positive = [v for v in values if v > 0] or [1.0]
    low = math.floor(math.log10(max(min(positive), 1.0)))
    high = math.ceil(math.log10(max(positive) * 1.05))
    return low, max(high, low + 1)


def _us_label(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:g} s"
    if us >= 1e3:
        return f"{us / 1e3:g} ms"
    return f"{us:g} µs"


class _Svg:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def text(self, x: float, y: float, s: str, size: int = 11, anchor: str = "middle",
             weight: str = "normal", fill: str = "#222") -> None:
        self.parts.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" '
                          f'text-anchor="{anchor}" font-weight="{weight}" fill="{fill}">'
                          f"{escape(s)}</text>")

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str,
             width: float = 1) -> None:
        self.parts.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                          f'stroke="{stroke}" stroke-width="{width}"/>')

    def rect(self, x: float, y: float, w: float, h: float, fill: str, tip: str = "") -> None:
        title = f"<title>{escape(tip)}</title>" if tip else ""
        self.parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
                          f'fill="{fill}">{title}</rect>')


def _panel(svg: _Svg, x0: float, y0: float, title: str, latencies: dict[str, dict],
           columns: list[Column], low: float, high: float) -> None:
    plot_x, plot_y = x0 + MARGIN_L, y0 + MARGIN_T
    plot_w = PANEL_W - MARGIN_L - MARGIN_R
    plot_h = PANEL_H - MARGIN_T - MARGIN_B

    def y_of(us: float) -> float:
        frac = (math.log10(max(us, 10 ** low)) - low) / (high - low)
        return plot_y + plot_h * (1 - frac)

    svg.text(x0 + PANEL_W / 2, y0 + 18, title, size=12, weight="bold")
    for decade in range(int(low), int(high) + 1):
        for step in (1, 2, 5):
            us = step * 10 ** decade
            if not (10 ** low <= us <= 10 ** high):
                continue
            y = y_of(us)
            major = step == 1
            svg.line(plot_x, y, plot_x + plot_w, y, "#d0d0d0" if major else "#eeeeee")
            if major or high - low <= 2:
                svg.text(plot_x - 6, y + 4, _us_label(us), size=10, anchor="end",
                         fill="#444" if major else "#888")
    svg.line(plot_x, plot_y + plot_h, plot_x + plot_w, plot_y + plot_h, "#444")
    svg.line(plot_x, plot_y, plot_x, plot_y + plot_h, "#444")

    group_w = plot_w / max(len(columns), 1)
    bar_w = group_w * 0.8 / len(PERCENTILES)
    for i, column in enumerate(columns):
        gx = plot_x + i * group_w + group_w * 0.1
        values = latencies.get(column.key)
        for j, p in enumerate(PERCENTILES):
            if not values:
                continue
            us = values[p]
            top = y_of(us)
            svg.rect(gx + j * bar_w, top, bar_w - 1, plot_y + plot_h - top, COLORS[p],
                     f"{column.label} {PERCENTILE_LABELS[p]}: {us:,.0f} µs")
        svg.text(plot_x + (i + 0.5) * group_w, plot_y + plot_h + 15, column.label, size=11)


def latency_svg(summary: dict, columns: list[Column], scenarios: list[Scenario],
                subtitle: str = "") -> str:
    sizes = list(summary)
    values = [v for size in sizes for c in columns
              for lat in summary[size][c.key]["latency_us"].values() for v in lat.values()]
    low, high = _axis_range(values)
    width = PANEL_W * len(sizes)
    height = TOP + PANEL_H * len(scenarios)
    svg = _Svg()
    svg.parts.append(f'<rect width="{width}" height="{height}" fill="white"/>')
    svg.text(width / 2, 22, "Latency percentiles by target (µs, log scale)", size=15, weight="bold")
    if subtitle:
        svg.text(width / 2, 40, subtitle, size=11, fill="#555")
    legend_x = width / 2 - len(PERCENTILES) * 70 / 2
    for k, p in enumerate(PERCENTILES):
        x = legend_x + k * 70
        svg.rect(x, 50, 12, 12, COLORS[p])
        svg.text(x + 16, 60, PERCENTILE_LABELS[p], size=11, anchor="start")
    for row, sc in enumerate(scenarios):
        for col, size in enumerate(sizes):
            latencies = {c.key: summary[size][c.key]["latency_us"].get(sc.key) for c in columns}
            _panel(svg, col * PANEL_W, TOP + row * PANEL_H,
                   f"{SIZES[size].label} responses, {sc.label}", latencies, columns, low, high)
    body = "\n".join(svg.parts)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" {FONT}>\n{body}\n</svg>\n')
