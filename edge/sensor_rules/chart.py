"""A small SVG chart of the readings behind an alert, with its threshold lines.

SVG rather than a bitmap: it is text made in tens of microseconds (a PNG
of the same chart costs milliseconds to draw and encode, on the thread
that takes readings in), a few kilobytes, and sharp at any size in the
reviewer's browser.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

from core.records import SensorReading

WIDTH, HEIGHT = 480, 200
MEDIA_TYPE = "image/svg+xml"
_MARGIN_L, _MARGIN_R, _MARGIN_T, _MARGIN_B = 56, 12, 14, 26
_AXIS = "#787878"
_LINE = "#1450a0"
_ENTER = "#dc2828"  # red: the level that raises
_EXIT = "#f0961e"  # orange, dashed: the level that clears
_FONT = 'font-family="sans-serif" font-size="11"'


def _values(readings: Sequence[SensorReading], field: str) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for r in readings:
        v = r.battery_pct if field == "battery_pct" else r.value
        if v is not None:
            out.append(((r.device_time or r.received_at).timestamp(), v))
    return out


def readings_chart(
    readings: Sequence[SensorReading],
    enter: float | None = None,
    exit: float | None = None,
    *,
    field: str = "value",
    width: int = WIDTH,
    height: int = HEIGHT,
) -> bytes:
    """SVG of ``field`` over time, ``enter`` as a solid and ``exit`` as a dashed line."""
    pts = _values(readings, field)
    levels = [v for v in (enter, exit) if v is not None]
    ys = [v for _, v in pts] + levels
    x0, x1 = _MARGIN_L, width - _MARGIN_R
    y0, y1 = _MARGIN_T, height - _MARGIN_B
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" fill="none" '
        f'stroke="{_AXIS}"/>',
    ]
    if not ys:
        parts.append(
            f'<text x="{x0 + 8}" y="{(y0 + y1) // 2}" fill="{_AXIS}" {_FONT}>no readings</text>'
        )
        return ("".join(parts) + "</svg>").encode()
    lo, hi = min(ys), max(ys)
    pad = (hi - lo) * 0.1 or max(abs(hi) * 0.1, 1.0)
    lo, hi = lo - pad, hi + pad

    def py(v: float) -> float:
        return round(y1 - (v - lo) / (hi - lo) * (y1 - y0), 1)

    def label(v: float, colour: str) -> str:
        return f'<text x="4" y="{py(v) + 4}" fill="{colour}" {_FONT}>{v:.3g}</text>'

    parts += [label(lo, _AXIS), label(hi, _AXIS)]
    if enter is not None:
        parts.append(
            f'<line x1="{x0}" y1="{py(enter)}" x2="{x1}" y2="{py(enter)}" stroke="{_ENTER}"/>'
        )
        parts.append(label(enter, _ENTER))
    if exit is not None and exit != enter:
        parts.append(
            f'<line x1="{x0}" y1="{py(exit)}" x2="{x1}" y2="{py(exit)}" stroke="{_EXIT}" '
            'stroke-dasharray="5 5"/>'
        )
        parts.append(label(exit, _EXIT))
    if pts:
        t_lo, t_hi = min(t for t, _ in pts), max(t for t, _ in pts)
        span = t_hi - t_lo
        if span > 0:
            xs = [x0 + 6 + (t - t_lo) / span * (x1 - x0 - 12) for t, _ in pts]
        else:
            xs = [x0 + (i + 1) * (x1 - x0) / (len(pts) + 1) for i in range(len(pts))]
        coords = " ".join(f"{x:.1f},{py(v)}" for x, (_, v) in zip(xs, pts, strict=True))
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{_LINE}" stroke-width="2"/>')
        parts += [
            f'<circle cx="{x:.1f}" cy="{py(v)}" r="3" fill="{_LINE}"/>'
            for x, (_, v) in zip(xs, pts, strict=True)
        ]
        text = escape(f"{len(pts)} readings, {span:.0f}s")
        parts.append(f'<text x="{x0}" y="{height - 8}" fill="{_AXIS}" {_FONT}>{text}</text>')
    return ("".join(parts) + "</svg>").encode()
