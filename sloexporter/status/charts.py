"""Line charts as inline SVG, drawn on the server.

Why SVG from the server rather than a JS chart library: the pages then work without
JavaScript, ship no third-party asset to vendor, pin and rebuild, cannot break on a CDN
or a browser update, and are tested by reading the markup. A detail page has three
charts of at most a few hundred points each, which SVG draws instantly.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from html import escape

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 12, 28


def _fmt(value: float, percent: bool) -> str:
    if percent:
        return f"{value * 100:.3g}%"
    return f"{value:.3g}"


def line_chart(points: list[list[float]], title: str, *, percent: bool = True,
               lines: tuple[tuple[float, str], ...] = (), css: str = "series") -> str:
    """An SVG chart of (unix time, value) points with labelled axes and reference lines.

    With no points it draws the frame and says "no data", so a missing series shows.
    """
    label = escape(title)
    parts = [f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {WIDTH} '
             f'{HEIGHT}" width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{label}</title>",
             f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" '
             f'height="{HEIGHT - TOP - BOTTOM}"/>']
    pts = [(t, v) for t, v in points if math.isfinite(v)]
    if not pts:
        parts.append(f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" '
                     'text-anchor="middle">no data</text></svg>')
        return "".join(parts)
    values = [v for _, v in pts] + [v for v, _ in lines]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5 * (abs(lo) or 1) * 0.01, hi + 0.5 * (abs(hi) or 1) * 0.01
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad
    t0, t1 = pts[0][0], pts[-1][0]
    span = (t1 - t0) or 1.0
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + (t - t0) / span * w

    def y(v: float) -> float:
        return TOP + (hi - v) / (hi - lo) * h

    for value, name in lines:
        parts.append(f'<line class="ref" x1="{LEFT}" x2="{LEFT + w}" y1="{y(value):.1f}" '
                     f'y2="{y(value):.1f}"/><text class="ref-label" x="{LEFT + w - 4}" '
                     f'y="{y(value) - 3:.1f}" text-anchor="end">{escape(name)}</text>')
    path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
    parts.append(f'<polyline class="{escape(css)}" fill="none" points="{path}"/>')
    for value in (hi - pad, lo + pad):
        parts.append(f'<text class="axis" x="{LEFT - 4}" y="{y(value) + 4:.1f}" '
                     f'text-anchor="end">{escape(_fmt(value, percent))}</text>')
    for t, anchor in ((t0, "start"), (t1, "end")):
        stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")
        parts.append(f'<text class="axis" x="{x(t):.1f}" y="{HEIGHT - 8}" '
                     f'text-anchor="{anchor}">{stamp} UTC</text>')
    parts.append("</svg>")
    return "".join(parts)


def budget_bar(remaining: float | None) -> str:
    """A small horizontal bar of the budget left (red below zero)."""
    if remaining is None or not math.isfinite(remaining):
        return '<svg class="bar" width="80" height="10" aria-hidden="true"></svg>'
    share = min(max(remaining, 0.0), 1.0)
    css = "bar-bad" if remaining <= 0 else "bar-warn" if remaining < 0.25 else "bar-ok"
    return (f'<svg class="bar" width="80" height="10" aria-hidden="true">'
            f'<rect class="bar-bg" width="80" height="10"/>'
            f'<rect class="{css}" width="{80 * share:.1f}" height="10"/></svg>')
