"""A bar chart drawn on the server as SVG: no JavaScript and no charting library to serve.

`bar_chart` is pure (series in, markup out), so it is tested without a browser.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 12, 28


@dataclass(frozen=True)
class Series:
    """One named series of values, one per label, drawn in the CSS class `css`."""

    name: str
    values: Sequence[int]
    css: str


def _nice_max(value: int) -> int:
    """The smallest 4 x round step at or above `value`: gridlines at quarters read as round numbers."""
    magnitude = 1
    while True:
        for mult in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8):
            step = mult * magnitude
            if step == int(step) and 4 * step >= value:
                return int(4 * step)
        magnitude *= 10


def bar_chart(labels: Sequence[str], series: Sequence[Series], title: str) -> Markup:
    """Grouped bars per label, with a y axis, sparse x labels and a text alternative."""
    top = _nice_max(max((v for s in series for v in s.values), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(labels))
    bar = max(1.0, slot * 0.8 / max(1, len(series)))
    totals = ", ".join(f"{s.name}: {sum(s.values):,}" for s in series)
    out = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)} ({escape(totals)})" preserveAspectRatio="none">',
        f"<title>{escape(title)}</title>",
    ]
    for i in range(5):
        value = top * i // 4
        y = TOP + plot_h - plot_h * i / 4
        out.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        out.append(
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value:,}</text>'
        )
    every = max(1, len(labels) // 8)
    for i, label in enumerate(labels):
        x0 = LEFT + slot * i + slot * 0.1
        for j, s in enumerate(series):
            value = s.values[i]
            h = plot_h * value / top
            x = x0 + bar * j
            out.append(
                f'<rect class="{escape(s.css)}" x="{x:.1f}" y="{TOP + plot_h - h:.1f}" '
                f'width="{bar:.1f}" height="{h:.1f}"><title>{escape(label)}: {value:,} '
                f"{escape(s.name.lower())}</title></rect>"
            )
        if i % every == 0:
            out.append(
                f'<text class="axis" x="{LEFT + slot * i + slot / 2:.1f}" y="{HEIGHT - 8}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    out.append("</svg>")
    return Markup("".join(out))
