#!/usr/bin/env python3
"""Draws a benchmark's figures as an SVG chart, with nothing but the standard library.

Usage:
  chart.py bars FIGURES.json OUT.svg    grouped horizontal bars
  chart.py lines FIGURES.json OUT.svg   lines over x, with optional vertical markers

FIGURES.json for `bars`:
  {"title": "...", "unit": "req/s",
   "labels": ["(a) hello", ...],                 one group of bars per label
   "series": [{"name": "req/s", "values": [...]}, ...]}
FIGURES.json for `lines`:
  {"title": "...", "x_unit": "s", "y_unit": "req/s",
   "series": [{"name": "...", "points": [[x, y], ...]}],
   "markers": [{"x": 6.0, "label": "reshard 8 -> 64"}]}

The benchmark scripts write these files next to their raw outputs; docs/BENCHMARKS.md embeds
the SVGs of the run it quotes (copied under docs/bench/).
"""

import json
import sys
from html import escape

COLOURS = ["#3b82f6", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#64748b"]
WIDTH = 860
FONT = 'font-family="system-ui, sans-serif"'


def nice_ceiling(value):
    """The smallest 1, 2 or 5 times a power of ten at or above value."""
    if value <= 0:
        return 1.0
    power = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)


def fmt(value):
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:g}"


def bars(figures):
    labels, series = figures["labels"], figures["series"]
    row = 14 * len(series) + 10
    left, top = 220, 50
    height = top + row * len(labels) + 60
    plot = WIDTH - left - 90
    top_value = nice_ceiling(max(v for s in series for v in s["values"]))
    out = [header(figures["title"], height)]
    for i, label in enumerate(labels):
        y = top + i * row
        out.append(f'<text x="{left - 8}" y="{y + row / 2}" text-anchor="end" {FONT} font-size="12">{escape(label)}</text>')
        for j, s in enumerate(series):
            value = s["values"][i]
            w = plot * value / top_value
            out.append(f'<rect x="{left}" y="{y + j * 14}" width="{w:.1f}" height="12" fill="{COLOURS[j % len(COLOURS)]}"/>')
            out.append(f'<text x="{left + w + 4:.1f}" y="{y + j * 14 + 10}" {FONT} font-size="11">{fmt(value)}</text>')
    axis_y = top + row * len(labels)
    out.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + plot}" y2="{axis_y}" stroke="#999"/>')
    for k in range(5):
        x = left + plot * k / 4
        out.append(f'<text x="{x:.1f}" y="{axis_y + 14}" text-anchor="middle" {FONT} font-size="10">{fmt(top_value * k / 4)}</text>')
    out.append(legend([s["name"] for s in series], axis_y + 34, figures.get("unit", "")))
    out.append("</svg>")
    return "\n".join(out)


def lines(figures):
    series, markers = figures["series"], figures.get("markers", [])
    left, top, height = 70, 50, 360
    plot_w, plot_h = WIDTH - left - 30, height - top - 80
    xs = [x for s in series for x, _ in s["points"]] + [m["x"] for m in markers]
    x_min, x_max = min(xs), max(xs)
    y_max = nice_ceiling(max(y for s in series for _, y in s["points"]))
    sx = lambda x: left + plot_w * (x - x_min) / ((x_max - x_min) or 1)
    sy = lambda y: top + plot_h * (1 - y / y_max)
    out = [header(figures["title"], height)]
    for k in range(5):
        y = y_max * k / 4
        out.append(f'<line x1="{left}" y1="{sy(y):.1f}" x2="{left + plot_w}" y2="{sy(y):.1f}" stroke="#e5e7eb"/>')
        out.append(f'<text x="{left - 6}" y="{sy(y) + 4:.1f}" text-anchor="end" {FONT} font-size="10">{fmt(y)}</text>')
    for k in range(6):
        x = x_min + (x_max - x_min) * k / 5
        out.append(f'<text x="{sx(x):.1f}" y="{top + plot_h + 14}" text-anchor="middle" {FONT} font-size="10">{fmt(x)}</text>')
    for m in markers:
        x = sx(m["x"])
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#ef4444" stroke-dasharray="4 3"/>')
        out.append(f'<text x="{x + 4:.1f}" y="{top + 12}" {FONT} font-size="11" fill="#ef4444">{escape(m["label"])}</text>')
    for j, s in enumerate(series):
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s["points"])
        out.append(f'<polyline points="{path}" fill="none" stroke="{COLOURS[j % len(COLOURS)]}" stroke-width="1.5"/>')
    unit = f'{figures.get("y_unit", "")} over {figures.get("x_unit", "")}'
    out.append(legend([s["name"] for s in series], top + plot_h + 40, unit))
    out.append("</svg>")
    return "\n".join(out)


def header(title, height):
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}">\n'
        f'<rect width="{WIDTH}" height="{height}" fill="#fff"/>\n'
        f'<text x="20" y="28" {FONT} font-size="15" font-weight="600">{escape(title)}</text>'
    )


def legend(names, y, unit):
    items, x = [], 20
    for j, name in enumerate(names):
        items.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{COLOURS[j % len(COLOURS)]}"/>')
        items.append(f'<text x="{x + 14}" y="{y}" {FONT} font-size="11">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    items.append(f'<text x="{x + 10}" y="{y}" {FONT} font-size="11" fill="#666">{escape(unit)}</text>')
    return "\n".join(items)


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("bars", "lines"):
        sys.exit(__doc__)
    with open(sys.argv[2]) as f:
        figures = json.load(f)
    svg = bars(figures) if sys.argv[1] == "bars" else lines(figures)
    with open(sys.argv[3], "w") as f:
        f.write(svg)


if __name__ == "__main__":
    main()
