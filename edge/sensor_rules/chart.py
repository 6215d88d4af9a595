"""A small PNG chart of the readings behind an alert, with its threshold lines."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from streetwatch.records import SensorReading

WIDTH, HEIGHT = 480, 200
_MARGIN_L, _MARGIN_R, _MARGIN_T, _MARGIN_B = 56, 12, 14, 26
_BG = (255, 255, 255)
_AXIS = (120, 120, 120)
_LINE = (160, 80, 20)  # BGR: blue-ish
_ENTER = (40, 40, 220)  # red
_EXIT = (30, 150, 240)  # orange
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _values(readings: Sequence[SensorReading], field: str) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for r in readings:
        v = r.battery_pct if field == "battery_pct" else r.value
        if v is not None:
            out.append(((r.device_time or r.received_at).timestamp(), v))
    return out


def _dashed(img: np.ndarray, y: int, x0: int, x1: int, color: tuple[int, int, int]) -> None:
    for x in range(x0, x1, 10):
        cv2.line(img, (x, y), (min(x + 5, x1), y), color, 1, cv2.LINE_AA)


def readings_chart(
    readings: Sequence[SensorReading],
    enter: float | None = None,
    exit: float | None = None,
    *,
    field: str = "value",
    width: int = WIDTH,
    height: int = HEIGHT,
) -> bytes:
    """PNG of ``field`` over time, ``enter`` as a solid and ``exit`` as a dashed line."""
    img = np.empty((height, width, 3), np.uint8)
    img[:] = _BG  # (np.full with a colour tuple is a hundred times slower)
    pts = _values(readings, field)
    levels = [v for v in (enter, exit) if v is not None]
    ys = [v for _, v in pts] + levels
    x0, x1 = _MARGIN_L, width - _MARGIN_R
    y0, y1 = _MARGIN_T, height - _MARGIN_B
    cv2.rectangle(img, (x0, y0), (x1, y1), _AXIS, 1)
    if ys:
        lo, hi = min(ys), max(ys)
        pad = (hi - lo) * 0.1 or max(abs(hi) * 0.1, 1.0)
        lo, hi = lo - pad, hi + pad

        def py(v: float) -> int:
            return round(y1 - (v - lo) / (hi - lo) * (y1 - y0))

        for v in (lo, hi):
            cv2.putText(img, f"{v:.3g}", (4, py(v) + 4), _FONT, 0.38, _AXIS, 1, cv2.LINE_AA)
        if enter is not None:
            cv2.line(img, (x0, py(enter)), (x1, py(enter)), _ENTER, 1, cv2.LINE_AA)
            cv2.putText(img, f"{enter:g}", (4, py(enter) + 4), _FONT, 0.38, _ENTER, 1, cv2.LINE_AA)
        if exit is not None and exit != enter:
            _dashed(img, py(exit), x0, x1, _EXIT)
            cv2.putText(img, f"{exit:g}", (4, py(exit) + 4), _FONT, 0.38, _EXIT, 1, cv2.LINE_AA)
        if pts:
            t_lo, t_hi = min(t for t, _ in pts), max(t for t, _ in pts)
            span = t_hi - t_lo
            if span > 0:
                xs = [x0 + 6 + (t - t_lo) / span * (x1 - x0 - 12) for t, _ in pts]
            else:
                xs = [x0 + (i + 1) * (x1 - x0) / (len(pts) + 1) for i in range(len(pts))]
            poly = np.array([[round(x), py(v)] for x, (_, v) in zip(xs, pts, strict=True)])
            if len(poly) > 1:
                cv2.polylines(img, [poly.astype(np.int32)], False, _LINE, 2, cv2.LINE_AA)
            for x, y in poly:
                cv2.circle(img, (int(x), int(y)), 3, _LINE, -1, cv2.LINE_AA)
            label = f"{len(pts)} readings, {span:.0f}s"
            cv2.putText(img, label, (x0, height - 8), _FONT, 0.4, _AXIS, 1, cv2.LINE_AA)
    else:
        cv2.putText(img, "no readings", (x0 + 8, (y0 + y1) // 2), _FONT, 0.5, _AXIS, 1)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return bytes(buf.tobytes())
