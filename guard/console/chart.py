"""Server-side SVG geometry for the denied-decisions chart (stacked bars per day by reason).

Only presentation attributes (fill, x, y...) are used: the console's Content-Security-Policy
allows no inline styles, and SVG `style` attributes would be blocked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from guard.console.service import DeniedSeries

# Colour-blind-safe palette (Okabe-Ito); reasons beyond it are drawn as "other".
PALETTE = ("#D55E00", "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
OTHER_COLOR = "#999999"
WIDTH, HEIGHT = 760, 230
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 40


@dataclass(frozen=True)
class Rect:
    """One bar segment."""

    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str


@dataclass(frozen=True)
class Label:
    """A text label."""

    x: float
    y: float
    text: str
    anchor: str = "middle"


@dataclass
class Chart:
    """Everything the template draws."""

    width: int = WIDTH
    height: int = HEIGHT
    rects: list[Rect] = field(default_factory=list)
    x_labels: list[Label] = field(default_factory=list)
    y_ticks: list[tuple[float, Label]] = field(default_factory=list)
    legend: list[tuple[str, str, int]] = field(default_factory=list)  # color, reason, total
    plot_left: float = LEFT
    plot_right: float = WIDTH - RIGHT
    plot_bottom: float = HEIGHT - BOTTOM
    total: int = 0


def _axis(n: int) -> tuple[int, int]:
    """(top, step): whole-number ticks of 1, 2 or 5 x 10^k, at most five steps up to >= n."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step * 5 >= n:
                s = m * step
                return max(-(-n // s), 1) * s, s
        step *= 10


def build(series: DeniedSeries) -> Chart:
    """Lay out stacked bars: one per day, one segment per reason, biggest reasons first."""
    totals = {r: sum(c.values()) for r, c in series.by_reason.items()}
    ranked = sorted(totals, key=lambda r: (-totals[r], r))
    shown = ranked[:len(PALETTE)] if len(ranked) <= len(PALETTE) else ranked[:len(PALETTE) - 1]
    colors = {r: PALETTE[i] for i, r in enumerate(shown)}
    chart = Chart(total=sum(totals.values()))
    chart.legend = [(colors[r], r, totals[r]) for r in shown]
    others = [r for r in ranked if r not in colors]
    if others:
        chart.legend.append((OTHER_COLOR, f"other ({len(others)} reasons)",
                             sum(totals[r] for r in others)))
    top, step = _axis(max((series.total(d) for d in series.days), default=0))
    plot_h = chart.plot_bottom - TOP
    slot = (chart.plot_right - chart.plot_left) / max(len(series.days), 1)
    bar_w = max(slot * 0.7, 2)
    for value in range(0, top + 1, step):
        y = chart.plot_bottom - plot_h * value / top
        chart.y_ticks.append((round(y, 1), Label(chart.plot_left - 6, round(y + 4, 1), str(value), "end")))
    every = max(1, len(series.days) // 14)
    for i, day in enumerate(series.days):
        x = chart.plot_left + slot * i + (slot - bar_w) / 2
        if i % every == 0:
            chart.x_labels.append(Label(x + bar_w / 2, chart.plot_bottom + 16, day.strftime("%m-%d")))
        y = chart.plot_bottom
        segments = [(r, series.by_reason[r].get(day, 0), colors[r]) for r in shown]
        if others:
            segments.append(("other", sum(series.by_reason[r].get(day, 0) for r in others), OTHER_COLOR))
        for reason, count, color in segments:
            if not count:
                continue
            h = plot_h * count / top
            y -= h
            chart.rects.append(Rect(round(x, 1), round(y, 1), round(bar_w, 1), round(h, 1), color,
                                    f"{day.isoformat()}: {reason} x {count}"))
    return chart
