"""Charts as inline SVG strings: no scripts, no network, they work offline in any browser.
Pure functions of their data; every chart has a title, labelled axes and a legend."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from html import escape

PALETTE = {
    "realtime": "#d95f02",
    "batch": "#1b9e77",
    "split": "#7570b3",
    "review": "#e7a33e",
    "saved": "#1b9e77",
    "cost": "#555f6d",
    "cache": "#66a61e",
    "meets every deadline": "#1b9e77",
    "misses deadlines": "#d95f02",
}
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _money(value: float | None) -> str:
    if value is None:
        return "unknown"
    sign = "−" if value < 0 else ""
    amount = abs(value)
    return f"{sign}${amount:,.0f}" if amount >= 100 else f"{sign}${amount:,.2f}"


def count(value: float | None) -> str:
    """A whole number for a bar's label ("unknown" for None)."""
    return "unknown" if value is None else f"{value:,.0f}"


def _length(value: float, scale: float) -> float:
    """A bar's drawn length: proportional, and at least one pixel for any non-zero value so
    that it stays visible. Zero draws nothing (no bar pretends to hold a value)."""
    return 0.0 if value == 0 else max(1.0, abs(value) * scale)


def _svg(width: int, height: int, title: str, body: list[str], chart: str) -> str:
    return (
        f'<svg class="chart" data-chart="{chart}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}" {FONT}>'
        f'<text x="10" y="20" font-size="15" font-weight="600">{escape(title)}</text>'
        + "".join(body)
        + "</svg>"
    )


def stacked_bars(
    title: str,
    rows: Sequence[tuple[str, str, float | None]],
    *,
    width: int = 760,
    axis: str = "monthly spend (USD) →",
    label: Callable[[float | None], str] = _money,
) -> str:
    """Horizontal bars, one per label, coloured by category: (label, category, value). A value
    of None is unknown: no bar, and the label says so. `label` writes a value (dollars by
    default) and `axis` names what the bars measure."""
    bar_h, top, left = 22, 52, 220
    height = top + bar_h * len(rows) + 40
    peak = max((abs(v) for _, _, v in rows if v is not None), default=0.0) or 1.0
    scale = (width - left - 90) / peak
    body: list[str] = []
    categories = list(dict.fromkeys(c for _, c, _ in rows))
    x = 10
    for category in categories:  # each entry as wide as its words (about 7 px a character)
        body.append(
            f'<rect x="{x}" y="30" width="12" height="12" fill="{PALETTE.get(category, "#888")}"/>'
        )
        body.append(f'<text x="{x + 16}" y="40">{escape(category)}</text>')
        x += max(110, 16 + 7 * len(category) + 24)
    for i, (name, category, value) in enumerate(rows):
        y = top + i * bar_h
        w = 0.0 if value is None else _length(value, scale)
        body.append(
            f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">{escape(name[:32])}</text>'
        )
        if w > 0:
            body.append(
                f'<rect class="bar" data-label="{escape(name)}" x="{left}" y="{y + 3}" '
                f'width="{w:.1f}" height="{bar_h - 6}" fill="{PALETTE.get(category, "#888")}">'
                f"<title>{escape(name)}: {label(value)}</title></rect>"
            )
        body.append(
            f'<text class="value" data-label="{escape(name)}" x="{left + w + 6:.1f}" '
            f'y="{y + 15}">{label(value)}</text>'
        )
    axis_y = top + bar_h * len(rows) + 14
    body.extend(_scale(left, axis_y - 12, scale, peak, label))
    body.append(f'<text x="{left}" y="{axis_y + 22}" fill="#555">{escape(axis)}</text>')
    return _svg(width, height + 12, title, body, "bars")


def _scale(
    left: float, y: float, scale: float, peak: float, label: Callable[[float | None], str]
) -> list[str]:
    """A scale under horizontal bars: a baseline with ticks at 0, half and the peak value."""
    end = left + peak * scale
    parts = [f'<line class="scale" x1="{left}" y1="{y}" x2="{end:.1f}" y2="{y}" stroke="#999"/>']
    for value in (0.0, peak / 2, peak):
        x = left + value * scale
        parts.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 4}" stroke="#999"/>')
        parts.append(
            f'<text class="scale" x="{x:.1f}" y="{y + 14}" text-anchor="middle" fill="#555"'
            f' font-size="10">{label(value)}</text>'
        )
    return parts


def waterfall(title: str, steps: Sequence[tuple[str, float | None]], *, width: int = 760) -> str:
    """A start value, signed changes, and the end value: [(label, value)], first and last
    absolute, the middle ones the (negative) changes between them. A value of None is
    unknown: no bar, and the label says so."""
    height, top, bottom = 320, 50, 270
    peak = max((abs(v) for _, v in steps if v is not None), default=0.0) or 1.0
    scale = (bottom - top) / peak
    slot = (width - 80) / max(1, len(steps))
    body = [f'<line x1="60" y1="{bottom}" x2="{width - 10}" y2="{bottom}" stroke="#999"/>']
    body.append(
        f'<text x="12" y="{top + 10}" fill="#555" transform="rotate(-90 20 {top + 60})">USD / month</text>'
    )
    level = 0.0
    for i, (label, value) in enumerate(steps):
        x = 70 + i * slot
        absolute = i in (0, len(steps) - 1)
        if value is None:
            y = float(bottom)
        else:
            low, high = (0.0, value) if absolute else (level + value, level)
            level = value if absolute else level + value
            h = _length(high - low, scale)
            y = bottom - max(low, high) * scale
            colour = PALETTE["cost"] if absolute else PALETTE["saved"]
            if h > 0:
                body.append(
                    f'<rect class="bar" data-label="{escape(label)}" x="{x:.1f}" y="{y:.1f}" '
                    f'width="{slot * 0.6:.1f}" height="{h:.1f}" fill="{colour}">'
                    f"<title>{escape(label)}: {_money(value)}</title></rect>"
                )
        body.append(
            f'<text class="value" data-label="{escape(label)}" x="{x + slot * 0.3:.1f}" '
            f'y="{y - 6:.1f}" text-anchor="middle">{_money(value)}</text>'
        )
        body.append(
            f'<text x="{x + slot * 0.3:.1f}" y="{bottom + 18}" text-anchor="middle">{escape(label)}</text>'
        )
    return _svg(width, height, title, body, "waterfall")


def hour_histogram(title: str, series: Mapping[str, Sequence[int]], *, width: int = 760) -> str:
    """Requests by hour of day (UTC), one small row of 24 bars per series, each row scaled to
    its busiest hour: a dashed line at that height, labelled with its count an hour."""
    row_h, top, left = 46, 40, 220
    height = top + row_h * len(series) + 30
    cell = (width - left - 70) / 24  # room on the right for each row's scale
    body: list[str] = []
    for i, (name, counts) in enumerate(series.items()):
        y0 = top + i * row_h
        peak = max(counts) or 1
        body.append(
            f'<text x="{left - 6}" y="{y0 + row_h - 14}" text-anchor="end">{escape(name[:32])}</text>'
        )
        base = y0 + row_h - 8  # each row's count scale: its baseline and its peak
        body.append(
            f'<line x1="{left - 2}" y1="{base}" x2="{left - 2}" y2="{base - (row_h - 12)}"'
            ' stroke="#999"/>'
            f'<text class="scale" x="{left + 24 * cell + 4:.1f}" y="{base - (row_h - 12) + 8}"'
            f' fill="#555" font-size="10">{peak:,}/h</text>'
            f'<line x1="{left}" y1="{base - (row_h - 12)}" x2="{left + 24 * cell:.1f}"'
            f' y2="{base - (row_h - 12)}" stroke="#ddd" stroke-dasharray="2 2"/>'
        )
        for hour, n in enumerate(counts):
            h = (row_h - 12) * n / peak
            if n == 0:
                continue
            body.append(
                f'<rect class="bar" data-label="{escape(name)}" data-hour="{hour}" '
                f'x="{left + hour * cell:.1f}" y="{y0 + row_h - 8 - h:.1f}" '
                f'width="{cell * 0.8:.1f}" height="{h:.1f}" fill="{PALETTE["cost"]}">'
                f"<title>{escape(name)} {hour:02d}:00 UTC: {n}</title></rect>"
            )
    axis = top + row_h * len(series) + 4
    for hour in range(0, 24, 3):
        body.append(f'<text x="{left + hour * cell:.1f}" y="{axis + 12}">{hour:02d}h</text>')
    body.append(f'<text x="{width - 160}" y="{axis + 26}" fill="#555">hour of day (UTC) →</text>')
    return _svg(width, height, title, body, "hours")
