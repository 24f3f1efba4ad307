#!/usr/bin/env python3
"""Draws the HTTP benchmark as an SVG: req/s and p99 latency against connections, one line per
endpoint. Standard library only.

    plot_bench.py ROWS OUT.svg     # ROWS: bench.sh's "name|conns|req/s|p50|p99|non2xx" lines,
                                   # or BENCHMARKS.md (its table is read)
"""
import math
import re
import sys


def millis(text):
    text = text.strip()
    for suffix, scale in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * scale
    return float(text)


def read_rows(path):
    rows = []
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
        elif line.count("|") == 5:
            cells = [c.strip() for c in line.split("|")]
        else:
            continue
        if len(cells) != 6 or not cells[1].isdigit():
            continue
        name, conns, rps, _p50, p99, _bad = cells
        rows.append((name, int(conns), float(rps), millis(p99)))
    return rows


COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf"]


def panel(series, x0, y0, w, h, title, unit, log_y):
    out = []
    xs = sorted({c for points in series.values() for c, _ in points})
    ys = [v for points in series.values() for _, v in points if v > 0]
    if not xs or not ys:
        return out
    lo, hi = (math.log10(min(ys)), math.log10(max(ys))) if log_y else (0.0, max(ys))
    if hi <= lo:
        hi = lo + 1
    xlo, xhi = math.log2(min(xs)), math.log2(max(xs))
    if xhi <= xlo:
        xhi = xlo + 1

    def px(c):
        return x0 + (math.log2(c) - xlo) / (xhi - xlo) * w

    def py(v):
        value = math.log10(v) if log_y else v
        return y0 + h - (value - lo) / (hi - lo) * h

    out.append(f'<text x="{x0 + w / 2}" y="{y0 - 12}" text-anchor="middle" font-weight="bold">{title}</text>')
    out.append(f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#999"/>')
    for c in xs:
        out.append(f'<text x="{px(c):.1f}" y="{y0 + h + 16}" text-anchor="middle" font-size="11">{c}</text>')
    out.append(f'<text x="{x0 + w / 2}" y="{y0 + h + 32}" text-anchor="middle" font-size="11">connections</text>')
    for k in range(5):
        value = lo + (hi - lo) * k / 4
        shown = 10 ** value if log_y else value
        y = y0 + h - h * k / 4
        out.append(f'<line x1="{x0}" x2="{x0 + w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{shown:,.3g} {unit}</text>')
    for i, (name, points) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        pts = " ".join(f"{px(c):.1f},{py(v):.1f}" for c, v in sorted(points) if v > 0)
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        for c, v in points:
            if v > 0:
                out.append(f'<circle cx="{px(c):.1f}" cy="{py(v):.1f}" r="3" fill="{color}"/>')
    return out


def main():
    rows = read_rows(sys.argv[1])
    names = list(dict.fromkeys(name for name, *_ in rows))
    rps = {n: [(c, r) for name, c, r, _ in rows if name == n] for n in names}
    p99 = {n: [(c, p) for name, c, _, p in rows if name == n] for n in names}
    width, height = 1100, 470 + 18 * len(names)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    svg += panel(rps, 90, 40, 430, 330, "throughput (req/s, log scale)", "", True)
    svg += panel(p99, 640, 40, 430, 330, "p99 latency (ms, log scale)", "ms", True)
    for i, name in enumerate(names):
        y = 430 + 18 * i
        color = COLORS[i % len(COLORS)]
        label = name.replace("&", "&amp;").replace("<", "&lt;").replace("`", "")
        svg.append(f'<rect x="90" y="{y - 10}" width="14" height="4" fill="{color}"/>')
        svg.append(f'<text x="112" y="{y - 4}">{label}</text>')
    svg.append("</svg>")
    with open(sys.argv[2], "w", encoding="utf-8") as out:
        out.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
