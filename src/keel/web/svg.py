"""Server-side SVG charts: no JavaScript, readable without hovering (every bar and slice carries its value),
and safe to inline under a CSP without inline styles (presentation attributes only, every label escaped)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

PALETTE = ("#1f5fa8", "#d9822b", "#2e8b57", "#b03a48", "#6a4c93", "#3b8ea5", "#8a6d1d", "#555555")


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:,.2f}"


def _clip(label: str, room: int) -> str:
    return label if len(label) <= room else label[:room - 1] + "…"


def bar(title: str, data: Sequence[tuple[str, float]], *, width: int = 560) -> Markup:
    row, left, pad = 26, 170, 8
    height = pad * 2 + 28 + row * max(1, len(data))
    top = max((v for _, v in data), default=0) or 1
    span = width - left - 80
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<text x="{pad}" y="20" font-size="14" font-weight="bold" fill="#222">{escape(title)}</text>']
    for i, (label, v) in enumerate(data):
        y = 32 + pad + i * row
        w = max(1.0, span * (v / top)) if v > 0 else 0
        parts.append(f'<text x="{left - 6}" y="{y + 15}" font-size="12" text-anchor="end" fill="#222">'
                     f'{escape(label[:28])}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{row - 6}" fill="{PALETTE[0]}"/>')
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 15}" font-size="12" fill="#222">{_fmt(v)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def pie(title: str, data: Sequence[tuple[str, float]], *, donut: bool = True) -> Markup:
    size, r = 220, 90
    cx = cy = size / 2
    total = sum(v for _, v in data if v > 0) or 1
    legend_h = 24 + 20 * len(data)
    height = max(size + 30, legend_h + 30)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" viewBox="0 0 520 {height}" '
             f'width="520" height="{height}" aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<text x="8" y="20" font-size="14" font-weight="bold" fill="#222">{escape(title)}</text>',
             '<g transform="translate(0,30)">']
    angle = -math.pi / 2
    for i, (_label, v) in enumerate(data):
        if v <= 0:
            continue
        frac = v / total
        end = angle + frac * 2 * math.pi
        color = PALETTE[i % len(PALETTE)]
        if frac >= 0.9999:
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="{r}" fill="{color}"/>')
        else:
            x1, y1 = cx + r * math.cos(angle), cy + r * math.sin(angle)
            x2, y2 = cx + r * math.cos(end), cy + r * math.sin(end)
            large = 1 if frac > 0.5 else 0
            parts.append(f'<path d="M{cx},{cy} L{x1:.2f},{y1:.2f} A{r},{r} 0 {large} 1 {x2:.2f},{y2:.2f} Z" '
                         f'fill="{color}" stroke="#fff" stroke-width="1"/>')
        angle = end
    if donut:
        parts.append(f'<circle cx="{cx}" cy="{cy}" r="{r * 0.55}" fill="#fff"/>')
        parts.append(f'<text x="{cx}" y="{cy + 5}" font-size="14" text-anchor="middle" fill="#222">'
                     f'{_fmt(total)}</text>')
    for i, (label, v) in enumerate(data):
        y = 14 + 20 * i
        parts.append(f'<rect x="{size + 10}" y="{y}" width="12" height="12" fill="{PALETTE[i % len(PALETTE)]}"/>')
        parts.append(f'<text x="{size + 28}" y="{y + 11}" font-size="12" fill="#222">{escape(label[:24])}: '
                     f'{_fmt(v)} ({100 * v / total:.0f}%)</text>')
    parts.append("</g></svg>")
    return Markup("".join(parts))


def line(title: str, data: Sequence[tuple[str, float]], *, width: int = 560) -> Markup:
    height, left, bottom = 240, 50, 40
    top_v = max((v for _, v in data), default=0) or 1
    n = max(1, len(data) - 1)
    pts = [(left + (width - left - 20) * i / n, 30 + (height - bottom - 30) * (1 - v / top_v))
           for i, (_, v) in enumerate(data)]
    # Each label gets the width between two points (about 6 px a character at 11 px), not a fixed 12 characters:
    # "Investigations" under one of three points was cut to "Investigatio".
    room = max(8, int((width - left - 20) / n / 6.2)) if len(data) > 1 else 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<text x="8" y="20" font-size="14" font-weight="bold" fill="#222">{escape(title)}</text>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="#888"/>']
    if pts:
        parts.append('<polyline fill="none" stroke="' + PALETTE[0] + '" stroke-width="2" points="'
                     + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
    for (label, v), (x, y) in zip(data, pts, strict=True):
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{PALETTE[0]}"/>')
        parts.append(f'<text x="{x:.1f}" y="{y - 7:.1f}" font-size="11" text-anchor="middle" fill="#222">'
                     f'{_fmt(v)}</text>')
        parts.append(f'<text x="{x:.1f}" y="{height - bottom + 16}" font-size="11" text-anchor="middle" '
                     f'fill="#222">{escape(_clip(label, room))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def funnel(title: str, data: Sequence[tuple[str, float]], *, width: int = 560) -> Markup:
    row = 30
    height = 36 + row * max(1, len(data))
    top = max((v for _, v in data), default=0) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<text x="8" y="20" font-size="14" font-weight="bold" fill="#222">{escape(title)}</text>']
    mid = width / 2
    for i, (label, v) in enumerate(data):
        w = max(40.0, (width - 40) * v / top)
        y = 30 + i * row
        parts.append(f'<rect x="{mid - w / 2:.1f}" y="{y}" width="{w:.1f}" height="{row - 4}" '
                     f'fill="{PALETTE[i % len(PALETTE)]}"/>')
        parts.append(f'<text x="{mid}" y="{y + 18}" font-size="12" text-anchor="middle" fill="#fff" '
                     f'font-weight="bold">{escape(label[:24])}: {_fmt(v)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def chart(kind: str, title: str, data: Sequence[tuple[str, float]]) -> Markup:
    if kind in ("pie", "donut"):
        return pie(title, data, donut=kind == "donut")
    if kind == "line":
        return line(title, data)
    if kind == "funnel":
        return funnel(title, data)
    return bar(title, data)


def stacked_bar(title: str, rows: Sequence[str], series: Sequence[str], values: dict[str, dict[str, float]],
                *, width: int = 640) -> Markup:
    """One horizontal bar per row, split by series, each segment labelled with its value when it fits and the
    row total at the end, with a legend: the numbers are readable without hovering."""
    row, left, pad = 28, 170, 8
    legend_h = 22 * ((len(series) + 3) // 4)
    height = pad * 2 + 28 + legend_h + row * max(1, len(rows))
    totals = {r: sum(values.get(r, {}).values()) for r in rows}
    top = max(totals.values(), default=0) or 1
    span = width - left - 80
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<text x="{pad}" y="20" font-size="14" font-weight="bold" fill="#222">{escape(title)}</text>']
    for i, s in enumerate(series):
        lx, ly = pad + (i % 4) * 150, 30 + 22 * (i // 4)
        parts.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{PALETTE[i % len(PALETTE)]}"/>')
        parts.append(f'<text x="{lx + 16}" y="{ly + 11}" font-size="12" fill="#222">{escape(s[:18])}</text>')
    for i, r in enumerate(rows):
        y = 32 + legend_h + pad + i * row
        parts.append(f'<text x="{left - 6}" y="{y + 15}" font-size="12" text-anchor="end" fill="#222">'
                     f'{escape(r[:28])}</text>')
        x = float(left)
        for j, s in enumerate(series):
            v = values.get(r, {}).get(s, 0.0)
            if v <= 0:
                continue
            w = span * v / top
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 6}" '
                         f'fill="{PALETTE[j % len(PALETTE)]}"/>')
            if w >= 8 * len(_fmt(v)) + 4:
                parts.append(f'<text x="{x + w / 2:.1f}" y="{y + 15}" font-size="11" text-anchor="middle" '
                             f'fill="#fff">{_fmt(v)}</text>')
            x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 15}" font-size="12" fill="#222">{_fmt(totals[r])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
