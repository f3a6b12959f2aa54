"""Small bar charts as inline SVG, rendered on the server (no script, no image files).

``bar_chart`` turns one value per minute into an SVG element string: bars scaled to the
largest value (or a fixed ``top``), a baseline, the top value and the time span as labels.
Presentation attributes only (no ``style``): the page's Content-Security-Policy allows no
inline styles.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT, PAD_TOP, PAD_BOTTOM = 360, 110, 16, 16  # one unit per minute of 6 h


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.2g}"


def bar_chart(values: Sequence[float | None], *, title: str, unit: str,
              top: float | None = None, span: str = "") -> str:
    """An ``<svg>`` with one bar per value (None: no bar, a gap in the data); ``top`` fixes
    the scale (e.g. 60 s, 100 %), else the largest value sets it."""
    known = [v for v in values if v is not None]
    scale = top if top is not None else max(known, default=0.0)
    plot = HEIGHT - PAD_TOP - PAD_BOTTOM
    step = WIDTH / max(len(values), 1)
    bars = []
    for i, value in enumerate(values):
        if not value or scale <= 0:
            continue
        h = max(1.0, plot * min(value, scale) / scale)
        bars.append(f'<rect x="{i * step:.2f}" y="{PAD_TOP + plot - h:.2f}" '
                    f'width="{max(step - 0.3, 0.5):.2f}" height="{h:.2f}"/>')
    label = escape(f"{title}, up to {_number(scale)} {unit}" if scale > 0
                   else f"{title}: nothing yet")
    baseline = PAD_TOP + plot
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f'<line x1="0" y1="{baseline}" x2="{WIDTH}" y2="{baseline}" stroke="#999" '
        f'stroke-width="1"/>'
        f'<line x1="0" y1="{PAD_TOP}" x2="{WIDTH}" y2="{PAD_TOP}" stroke="#ddd" '
        f'stroke-width="1" stroke-dasharray="4 4"/>'
        f'<g fill="#3b6ea8">{"".join(bars)}</g>'
        f'<text x="2" y="12" font-size="10" fill="#444">{escape(_number(scale))} {escape(unit)}'
        f'</text>'
        f'<text x="2" y="{HEIGHT - 3}" font-size="10" fill="#444">{escape(span)}</text>'
        f'<text x="{WIDTH - 2}" y="{HEIGHT - 3}" font-size="10" fill="#444" '
        f'text-anchor="end">now</text>'
        f"</svg>")
