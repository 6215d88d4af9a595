"""Privacy (PIPL): faces and licence plates are blurred in the evidence that leaves the box.

Per camera, ``[cameras.privacy] blur_faces = true`` and ``blur_plates = true``
turn it on. Then every picture an alert of that camera references (the
annotated snapshot, the analysed frame, a camera-health snapshot, the clip)
is written with the faces found by :class:`~detectors.faces.FaceDetector`
and the plates found by :class:`~detectors.plates.PlateDetector` obscured,
and only those files
are referenced by the alert, so only they reach the outbox's evidence lane and
the centre. The unblurred originals are written beside them under
``<evidence_dir>/<camera>/originals/`` (same names), referenced by nothing,
never uploaded, and deleted by the disk guard once older than ``[edge]
originals_keep_h`` hours (``edge/disk_guard.py``; 0 keeps none at all).

Obscuring (:func:`obscure`): each face box, enlarged by :data:`FACE_MARGIN` of
its size on every side, is shrunk to at most :data:`CELLS` x :data:`CELLS`
pixels and blown up again smoothly (Gaussian-blurred on the way). What is left
of a face is a 6x6 colour average: nothing to recognise (the information is
gone, not hidden: no deblurring brings it back), and no sharp block edges
that a viewer would take for content. Detection runs on the picture before
the zone and boxes are drawn, and the drawing is made on the blurred picture,
so labels stay legible.

Clips (:meth:`Redactor.clip_frames`): detecting faces in every frame of a
main-stream clip (10 s at 25 fps: 250 searches of ~200 ms) costs far more
than encoding it, so faces are detected on *key frames* at least
``clip_detect_every_s`` apart (and on the last frame); a frame between two
key frames gets the boxes of both, plus, for each face of the first matched
to one of the second (nearest centre within two face widths), the box
interpolated at the frame's time, all enlarged by :data:`CLIP_MARGIN`. A
face walking across is therefore covered along its path. At the default
analysis rate (2 fps, clips fed with analysed frames) every frame is a key
frame. It runs on the clip encoder thread, never on the camera thread.

Plates kept for enforcement: the alerts of the categories in
``keep_plates_for`` (say ``illegal_parking``, where the plate is the case)
keep their plates sharp in the snapshot, frame and clip they upload; their
faces are still blurred. A clip shared by several alerts keeps plates only
when every one of them may. Camera-health snapshots always have theirs
blurred.

The detectors are shared by every camera of the process (one onnxruntime
session each, made on first use), so eight privacy cameras hold one copy of
each model.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from core.config import Section
from core.records import Evidence, Slug
from detectors.detections import FloatArray
from detectors.faces import FaceDetector
from detectors.plates import PlateDetector
from edge.clip_buffer import ClipFrame
from edge.snapshot import write_frame, write_snapshot
from ingest.frames import Frame

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]
Found = tuple[FloatArray, FloatArray]  # (faces, plates) boxes xyxy in a picture's pixels

ORIGINALS = "originals"  # the folder, under a camera's evidence folder, of the unblurred files
FACE_MARGIN = 0.25  # each side of a face box grows by this share of the box
PLATE_MARGIN = 0.15  # each side of a plate box grows by this share of the box
CLIP_MARGIN = 0.4  # in clips between key frames: faces move
CELLS = 6  # what is left of a face: at most CELLS x CELLS colours
MATCH_WIDTHS = 2.0  # a face of one key frame is the same as one of the next within this


class PrivacyConfig(Section):
    """Privacy (PIPL): faces blurred in the evidence that leaves the box (edge/privacy.py)."""

    blur_faces: bool = Field(
        default=False,
        description="Blur faces in the snapshot, frame and clip the alerts reference (and "
        "upload); the unblurred originals stay on the box for [edge] originals_keep_h",
    )
    min_face: float = Field(
        default=0.015,
        gt=0,
        le=0.5,
        description="Smallest face searched for, as a share of the picture height (0.015: "
        "9 px on 576 lines, 16 on 1080); smaller costs more (detectors/faces.py)",
    )
    score_threshold: float = Field(
        default=0.45, ge=0.05, le=0.99, description="Face score from which a box is blurred"
    )
    clip_detect_every_s: float = Field(
        default=0.5,
        gt=0,
        le=10,
        description="In clips, faces are detected on frames this far apart and "
        "interpolated between them",
    )
    blur_plates: bool = Field(
        default=False,
        description="Blur licence plates the same way (models/plates-retina.onnx), except in "
        "the alerts of keep_plates_for",
    )
    plate_score_threshold: float = Field(
        default=0.2, ge=0.05, le=0.99, description="Plate score from which a box is blurred"
    )
    keep_plates_for: list[Slug] = Field(
        default_factory=list,
        description="Alert categories whose evidence keeps plates sharp for enforcement "
        "(e.g. illegal_parking); their faces are still blurred",
    )

    @model_validator(mode="after")
    def _plates_kept_from_blurring(self) -> PrivacyConfig:
        if self.keep_plates_for and not self.blur_plates:
            raise ValueError("keep_plates_for needs blur_plates = true (plates are kept anyway)")
        return self

    def blurs_plates(self, category: str) -> bool:
        """Whether the evidence of an alert of ``category`` has its plates blurred."""
        return self.blur_plates and category not in self.keep_plates_for


@cache
def shared_face_detector(score_threshold: float, min_face: float) -> FaceDetector:
    """One face detector per setting for the whole process (``detect`` is thread-safe)."""
    return FaceDetector(score_threshold=score_threshold, min_face=min_face)


@cache
def shared_plate_detector(score_threshold: float) -> PlateDetector:
    """One plate detector per threshold for the whole process."""
    return PlateDetector(score_threshold=score_threshold)


def enlarge(xyxy: FloatArray, margin: float, width: int, height: int) -> npt.NDArray[np.int32]:
    """Boxes grown by ``margin`` of their size on every side, as whole pixels in the image."""
    if not len(xyxy):
        return np.zeros((0, 4), np.int32)
    size = xyxy[:, 2:] - xyxy[:, :2]
    grown = np.concatenate([xyxy[:, :2] - size * margin, xyxy[:, 2:] + size * margin], axis=1)
    grown = np.round(grown).astype(np.int32)
    grown[:, [0, 2]] = grown[:, [0, 2]].clip(0, width)
    grown[:, [1, 3]] = grown[:, [1, 3]].clip(0, height)
    return grown


def obscure(image: Image, boxes: npt.NDArray[np.int32]) -> Image:
    """A copy of ``image`` with every box (whole pixels, xyxy) reduced to a smooth
    blur of at most :data:`CELLS` x :data:`CELLS` colours."""
    out = image.copy()
    for x1, y1, x2, y2 in boxes.tolist():
        w, h = x2 - x1, y2 - y1
        if w < 2 or h < 2:
            continue
        cw, ch = min(CELLS, w), min(CELLS, h)
        small = cv2.resize(out[y1:y2, x1:x2], (cw, ch), interpolation=cv2.INTER_AREA)
        # smoothed at 8 px a cell, then stretched: a Gaussian at full size would cost
        # ~100 ms a face (its kernel grows with the face); this costs ~0.5 ms
        mw, mh = min(w, 8 * cw), min(h, 8 * ch)
        mid = cv2.resize(small, (mw, mh), interpolation=cv2.INTER_LINEAR)
        mid = cv2.GaussianBlur(
            mid, (0, 0), sigmaX=mw / cw / 2, sigmaY=mh / ch / 2, borderType=cv2.BORDER_REPLICATE
        )
        out[y1:y2, x1:x2] = cv2.resize(mid, (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def originals_dir(camera_dir: Path) -> Path:
    return camera_dir / ORIGINALS


class Redactor:
    """One privacy camera's face and plate blurring (detectors shared between cameras)."""

    def __init__(
        self,
        cfg: PrivacyConfig,
        camera_dir: Path,
        *,
        keep_originals: bool,
        detector: FaceDetector | None = None,
        plate_detector: PlateDetector | None = None,
    ) -> None:
        self.cfg = cfg
        self.camera_dir = camera_dir
        self.keep_originals = keep_originals
        self.detector = (
            detector or shared_face_detector(cfg.score_threshold, cfg.min_face)
            if cfg.blur_faces
            else None
        )
        self.plate_detector = (
            plate_detector or shared_plate_detector(cfg.plate_score_threshold)
            if cfg.blur_plates
            else None
        )
        self.faces_blurred = 0  # face boxes obscured in snapshots and frames
        self.plates_blurred = 0  # plate boxes obscured in snapshots and frames
        self.clip_detections = 0  # key frames searched in clips

    @property
    def originals(self) -> Path:
        return originals_dir(self.camera_dir)

    def faces(self, image: Image) -> FloatArray:
        """Face boxes (N, 4) xyxy in ``image``'s pixels (none when faces are not blurred)."""
        if self.detector is None:
            return np.zeros((0, 4), np.float32)
        return self.detector.detect(image).xyxy

    def plates(self, image: Image) -> FloatArray:
        """Plate boxes (N, 4) xyxy in ``image``'s pixels (none when plates are not blurred)."""
        if self.plate_detector is None:
            return np.zeros((0, 4), np.float32)
        return self.plate_detector.detect(image).xyxy

    def blur(self, image: Image, faces: FloatArray, margin: float = FACE_MARGIN) -> Image:
        h, w = image.shape[:2]
        return obscure(image, enlarge(faces, margin, w, h))

    def hide(self, image: Image, found: Found, *, clip: bool = False) -> Image:
        """``image`` with the faces and plates of ``found`` obscured."""
        faces, plates = found
        if len(faces):
            image = self.blur(image, faces, CLIP_MARGIN if clip else FACE_MARGIN)
        if len(plates):
            image = self.blur(image, plates, CLIP_MARGIN if clip else PLATE_MARGIN)
        return image

    def find(self, image: Image, plates: bool = True) -> Found:
        """The faces, and (if ``plates``) the plates, in ``image``."""
        empty = np.zeros((0, 4), np.float32)
        return self.faces(image), self.plates(image) if plates else empty

    # -- pictures -----------------------------------------------------------------------------

    def write_alert_evidence(
        self,
        alert_id: str,
        picture: Frame,
        analysed: Frame,
        draw: Callable[[Image], Image],
        *,
        plates: bool = True,
    ) -> tuple[Evidence, Evidence]:
        """The snapshot (``draw`` applied to the blurred ``picture``) and the analysed
        frame, blurred, as the evidence to reference; their originals under ``originals/``.
        ``plates`` false keeps the plates (an alert of ``keep_plates_for``)."""
        on_picture = self.find(picture.image, plates)
        on_frame = on_picture if analysed is picture else self.find(analysed.image, plates)
        for found in (on_picture,) if analysed is picture else (on_picture, on_frame):
            self.faces_blurred += len(found[0])
            self.plates_blurred += len(found[1])
        snapshot = write_snapshot(
            draw(self.hide(picture.image, on_picture)),
            self.camera_dir,
            alert_id,
            picture.captured_at,
        )
        frame = write_frame(
            self.hide(analysed.image, on_frame), self.camera_dir, alert_id, analysed.captured_at
        )
        if self.keep_originals:
            write_snapshot(draw(picture.image), self.originals, alert_id, picture.captured_at)
            write_frame(analysed.image, self.originals, alert_id, analysed.captured_at)
        return snapshot, frame

    def scrub(self, evidence: Evidence) -> Evidence:
        """A JPEG already written (a camera-health snapshot): blurred in place, the file
        as it was moved to ``originals/``; other evidence is returned as it is."""
        if evidence.media_type != "image/jpeg":
            return evidence
        path = Path(evidence.path)
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"cannot read {path} to blur its faces")
        picture = np.asarray(image, np.uint8)
        found = self.find(picture)
        self.faces_blurred += len(found[0])
        self.plates_blurred += len(found[1])
        ok, jpeg = cv2.imencode(".jpg", self.hide(picture, found), [cv2.IMWRITE_JPEG_QUALITY, 88])
        if not ok:
            raise OSError(f"JPEG encoding failed for {path}")
        data = jpeg.tobytes()
        if self.keep_originals:
            self.originals.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, self.originals / path.name)
        tmp = path.with_suffix(".jpg.part")
        tmp.write_bytes(data)
        tmp.replace(path)
        return evidence.model_copy(
            update={"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        )

    # -- clips --------------------------------------------------------------------------------

    def clip_frames(
        self, frames: Sequence[ClipFrame], plates: bool = True
    ) -> Iterator[tuple[datetime, Image]]:
        """``frames`` decoded with their faces (and, if ``plates``, plates) blurred (see
        the module's docstring)."""
        keys = key_frames([f.captured_at for f in frames], self.cfg.clip_detect_every_s)
        found: dict[int, Found] = {}
        for k in keys:
            found[k] = self.find(frames[k].decode(), plates)
            self.clip_detections += 1
        ki = 0
        for i, f in enumerate(frames):
            while ki + 1 < len(keys) and keys[ki + 1] <= i:
                ki += 1
            k0 = keys[ki]
            k1 = keys[min(ki + 1, len(keys) - 1)] if i > k0 else k0
            at = _fraction(frames[k0].captured_at, frames[k1].captured_at, f.captured_at)
            between = (
                faces_between(found[k0][0], found[k1][0], at),
                faces_between(found[k0][1], found[k1][1], at),
            )
            yield f.captured_at, self.hide(f.decode(), between, clip=True)


def key_frames(times: Sequence[datetime], every_s: float) -> list[int]:
    """Indices of the frames faces are searched in: the first, each one at least
    ``every_s`` after the previous key frame, and the last."""
    if not times:
        return []
    keys = [0]
    for i in range(1, len(times)):
        if (times[i] - times[keys[-1]]).total_seconds() >= every_s:
            keys.append(i)
    if keys[-1] != len(times) - 1:
        keys.append(len(times) - 1)
    return keys


def _fraction(t0: datetime, t1: datetime, t: datetime) -> float:
    span = (t1 - t0).total_seconds()
    return 0.0 if span <= 0 else min(1.0, max(0.0, (t - t0).total_seconds() / span))


def faces_between(a: FloatArray, b: FloatArray, fraction: float) -> FloatArray:
    """The boxes to blur at ``fraction`` of the way from key frame boxes ``a`` to ``b``:
    both sets, plus each matched pair's box interpolated."""
    if fraction <= 0.0:
        return a
    boxes = [a, b]
    if len(a) and len(b):
        ca = (a[:, :2] + a[:, 2:]) / 2
        cb = (b[:, :2] + b[:, 2:]) / 2
        dist = np.linalg.norm(ca[:, None, :] - cb[None, :, :], axis=2)
        width = np.maximum((a[:, 2] - a[:, 0])[:, None], (b[:, 2] - b[:, 0])[None, :])
        for i in range(len(a)):
            j = int(np.argmin(dist[i]))
            if dist[i, j] <= MATCH_WIDTHS * width[i, j]:
                boxes.append((a[i] + (b[j] - a[i]) * fraction)[None, :])
    return np.concatenate(boxes).astype(np.float32)
