"""Evidence JPEGs: the annotated snapshot (the frame, the zone, the boxes and the
rule) and the analysed frame as the detector saw it (no drawing)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from core.records import Evidence, EvidenceKind
from detectors.base import Frame
from detectors.detections import Detections
from edge.zones import Zone

ZONE_COLOUR = (0, 200, 255)  # amber, BGR
FIRING_COLOUR = (0, 0, 255)  # red
JPEG_QUALITY = 88
FRAME_JPEG_QUALITY = 95  # the detector's view, for training data: fewer artefacts


def _label(image: Frame, text: str, x: int, y: int, colour: tuple[int, int, int]) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    (w, h), base = cv2.getTextSize(text, font, 0.5, 1)
    y = max(y, h + base + 2)
    cv2.rectangle(image, (x, y - h - base - 2), (x + w + 4, y), colour, -1)
    cv2.putText(image, text, (x + 2, y - base), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)


def annotate(
    image: Frame,
    zone: Zone,
    firing: Detections,
    header: list[str],
    *,
    scale: tuple[float, float] = (1.0, 1.0),
) -> Frame:
    """Return a copy of ``image`` with the zone, boxes and header drawn on it.

    The zone and the boxes are in the analysed stream's pixel coordinates;
    ``scale`` = (sx, sy) maps them onto ``image`` when that is a larger
    picture of the same view (a camera's main stream: sx = W_main / W_sub,
    sy = H_main / H_sub).
    """
    sx, sy = scale
    out = image.copy()
    poly = (zone.contour * np.array([sx, sy], np.float32)).astype(np.int32)
    shade = out.copy()
    cv2.fillPoly(shade, [poly], ZONE_COLOUR)
    cv2.addWeighted(shade, 0.25, out, 0.75, 0, dst=out)
    cv2.polylines(out, [poly], True, ZONE_COLOUR, 2, cv2.LINE_AA)
    x0, y0 = (int(v) for v in poly.reshape(-1, 2).min(axis=0))
    _label(out, f"zone {zone.zone_id}", x0, y0 - 2, ZONE_COLOUR)
    boxes = firing.xyxy * np.array([sx, sy, sx, sy], np.float32)
    for i in range(len(firing)):
        x1, y1, x2, y2 = (round(float(v)) for v in boxes[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), FIRING_COLOUR, 2)
        _label(out, f"{firing.label(i)} {float(firing.scores[i]):.2f}", x1, y1 - 2, FIRING_COLOUR)
    y = 18
    for line in header:
        _label(out, line, 4, y, (255, 255, 255))
        y += 20
    return out


def annotate_view(image: Frame, zones: Sequence[Zone], header: list[str]) -> Frame:
    """A copy of ``image`` with every zone's outline and a header: the camera's view as
    configured, for a camera-health alert (a moved camera's zones no longer fit)."""
    out = image.copy()
    for zone in zones:
        poly = zone.contour.astype(np.int32)
        cv2.polylines(out, [poly], True, ZONE_COLOUR, 2, cv2.LINE_AA)
        x0, y0 = (int(v) for v in poly.reshape(-1, 2).min(axis=0))
        _label(out, f"zone {zone.zone_id}", x0, y0 - 2, ZONE_COLOUR)
    y = 18
    for line in header:
        _label(out, line, 4, y, (255, 255, 255))
        y += 20
    return out


def write_snapshot(image: Frame, directory: Path, name: str, captured_at: datetime) -> Evidence:
    """Encode the annotated ``image`` as ``<name>.jpg`` under ``directory``; return it as
    snapshot evidence."""
    return write_jpeg(image, directory, name, captured_at, EvidenceKind.SNAPSHOT, JPEG_QUALITY)


def write_frame(image: Frame, directory: Path, name: str, captured_at: datetime) -> Evidence:
    """The analysed frame, undrawn (the pixels an alert's detection boxes refer to), as
    ``<name>.frame.jpg`` under ``directory``; returned as frame evidence."""
    return write_jpeg(
        image, directory, f"{name}.frame", captured_at, EvidenceKind.FRAME, FRAME_JPEG_QUALITY
    )


def write_jpeg(
    image: Frame,
    directory: Path,
    name: str,
    captured_at: datetime,
    kind: EvidenceKind,
    quality: int = JPEG_QUALITY,
) -> Evidence:
    """Encode ``image`` as JPEG, written atomically as ``<name>.jpg`` under ``directory``."""
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"JPEG encoding failed for {name}")
    data = jpeg.tobytes()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.jpg"
    tmp = path.with_suffix(".jpg.part")
    tmp.write_bytes(data)
    tmp.replace(path)
    return Evidence(
        kind=kind,
        path=str(path),
        sha256=hashlib.sha256(data).hexdigest(),
        media_type="image/jpeg",
        captured_at=captured_at,
        size=len(data),
    )
