"""Track ids for a camera's detections: an IoU tracker with ByteTrack's two stages.

What it is for here: a stable id per moving object, so that a reviewer can
follow "person 17" across an alert's snapshots and so that distinct people
(or vehicles) can be counted rather than detections. It is *not* what dwell
rests on: :mod:`edge.stationary` remembers still objects by where they stand
and does not read ids, so an id switch (occlusion, a missed detection longer
than ``max_age_s``) never resets a parking or stall dwell. Tracking and dwell
are separate on purpose; tests/test_tracker.py proves it.

Design (ByteTrack, Zhang et al. 2022, without its Kalman filter):

1. Detections scoring below ``low_thresh`` are ignored; the rest split into
   high (``>= high_thresh``) and low.
2. Stage one matches high detections to every live track by IoU against the
   track's *predicted* box. Stage two matches the confirmed tracks still
   unmatched to the low detections: an occluded person the detector is
   unsure of continues its track instead of breaking it. Low detections
   never start a track.
3. High detections left over start tentative tracks. A tentative track is
   confirmed (and given an id) on its ``min_hits``-th matched frame; missed
   once before that, it is dropped (as in ByteTrack), so flickering false
   detections never get an id.
4. A track unmatched for more than ``max_age_s`` is removed; an object that
   comes back later gets a new id. Time-based rather than frame-based,
   because frames arrive at ``analysis_fps`` with motion gating in between.
5. At most ``max_tracks`` tracks are kept; the stalest (oldest last match)
   go first.

Prediction is constant velocity from a track's last two boxes: the box
centre moves on at the velocity between them (pixels per *second*, so an
irregular frame rate or a gap extrapolates correctly) and the box keeps its
last size. At the edge's 1-5 analysed frames per second people move a large
part of their width between frames; prediction is what keeps two people who
cross each other from swapping ids. A Kalman filter would smooth noisy
boxes, but needs tuned noise models for little gain at these rates.

Association is class-aware (a track keeps the label it started with; a
detection only matches a track of the same label) and greedy: all
(track, detection) pairs with IoU >= ``match_iou``, best first, each track
and detection used once. ByteTrack solves the same gated problem optimally
(``lap.lapjv`` with a cost limit, or ``scipy``'s ``linear_sum_assignment``
where lap is missing); neither is a dependency here. Greedy
highest-IoU-first (close to the original IOU tracker of Bochinski et al.
2017, and how :mod:`edge.stationary` matches) gives the same answer unless
a detection is nearly as close to two tracks, which prediction makes rare.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from core.config import Section
from detectors.detections import Detections, FloatArray, IntArray, box_iou

ID_SPAN = 2**31 - 1


class TrackerConfig(Section):
    """Multi-object tracker (IoU, ByteTrack's two-stage association)."""

    high_thresh: float = Field(
        default=0.4,  # NanoDet scores run lower than YOLO's: 0.5 left real cars untracked
        gt=0,
        le=1,
        description="Detections scoring at least this are matched first and may start tracks",
    )
    low_thresh: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Weaker detections are ignored; those between low and high only continue "
        "tracks (needs the detector's score_threshold at or below it)",
    )
    match_iou: float = Field(
        default=0.2, gt=0, lt=1, description="Least IoU with a track's predicted box to continue it"
    )
    min_hits: int = Field(
        default=2, ge=1, le=100, description="Matched frames before a track is confirmed"
    )
    max_age_s: float = Field(
        default=2.0, gt=0, le=600, description="A track unmatched for longer is removed"
    )
    max_tracks: int = Field(default=256, ge=1, le=10_000, description="Most tracks kept")

    @model_validator(mode="after")
    def _ordered(self) -> TrackerConfig:
        if self.low_thresh > self.high_thresh:
            raise ValueError("low_thresh must not exceed high_thresh")
        return self


@dataclass(frozen=True)
class Tracks:
    """This frame's detections that belong to confirmed tracks, and their ids."""

    detections: Detections
    track_ids: IntArray

    def __post_init__(self) -> None:
        n = len(self.detections)
        if self.track_ids.shape != (n,) or self.track_ids.dtype != np.int32:
            raise ValueError(f"track_ids must be int32 of shape ({n},), got {self.track_ids.shape}")

    def __len__(self) -> int:
        return len(self.track_ids)

    def ids_for(self, dets: Detections, min_iou: float = 0.99) -> IntArray:
        """The track id of each of ``dets`` (a subset of this frame's), -1 where none.

        For rules' outputs, which are new arrays cut from the same frame: a
        detection is identified by label and (near-)identical box.
        """
        iou = box_iou(dets.xyxy, self.detections.xyxy)
        mine = np.array(self.detections.labels, dtype=object)[self.detections.class_ids]
        theirs = np.array(dets.labels, dtype=object)[dets.class_ids]
        iou = np.where(theirs[:, None] == mine[None, :], iou, 0.0)
        out = np.full(len(dets), -1, np.int32)
        if len(self):
            best = iou.argmax(axis=1)
            hit = iou[np.arange(len(dets)), best] >= min_iou
            out[hit] = self.track_ids[best[hit]]
        return out


@dataclass
class Track:
    label: str
    box: FloatArray  # (4,) last matched box
    last_seen: datetime
    velocity: FloatArray  # (2,) centre pixels per second
    hits: int = 1
    track_id: int = 0  # 0 while tentative

    @property
    def confirmed(self) -> bool:
        return self.track_id > 0

    def predict(self, now: datetime) -> FloatArray:
        dt = (now - self.last_seen).total_seconds()
        shift = np.tile(self.velocity * dt, 2)
        predicted: FloatArray = (self.box + shift).astype(np.float32)
        return predicted

    def hit(self, now: datetime, box: FloatArray) -> None:
        dt = (now - self.last_seen).total_seconds()
        if dt > 0:
            centre = (box[:2] + box[2:]) / 2 - (self.box[:2] + self.box[2:]) / 2
            self.velocity = (centre / dt).astype(np.float32)
        self.box = box.copy()
        self.last_seen = now
        self.hits += 1


class IouTracker:
    """Per-camera tracker; call :meth:`update` once per analysed frame, in time order."""

    def __init__(self, cfg: TrackerConfig | None = None) -> None:
        self.cfg = cfg if cfg is not None else TrackerConfig()
        self.tracks: list[Track] = []
        self.next_id = 1

    @property
    def ids_issued(self) -> int:
        """Tracks confirmed so far: distinct objects seen, up to id switches."""
        return self.next_id - 1

    def update(self, now: datetime, dets: Detections) -> Tracks:
        cfg = self.cfg
        labels = np.array(dets.labels, dtype=object)[dets.class_ids]
        high = np.flatnonzero(dets.scores >= cfg.high_thresh)
        low = np.flatnonzero((dets.scores >= cfg.low_thresh) & (dets.scores < cfg.high_thresh))
        owner: dict[int, Track] = {}  # detection index -> track

        free = list(self.tracks)
        for t, d in self._match(now, free, dets, labels, high):
            owner[int(d)] = free[t]
        matched = {id(tr) for tr in owner.values()}
        rest = [tr for tr in self.tracks if id(tr) not in matched and tr.confirmed]
        for t, d in self._match(now, rest, dets, labels, low):
            owner[int(d)] = rest[t]

        for d, tr in owner.items():
            tr.hit(now, dets.xyxy[d])
            if not tr.confirmed and tr.hits >= cfg.min_hits:
                tr.track_id = self._new_id()
        matched = {id(tr) for tr in owner.values()}
        self.tracks = [
            tr
            for tr in self.tracks
            if id(tr) in matched
            or (tr.confirmed and (now - tr.last_seen).total_seconds() <= cfg.max_age_s)
        ]
        for d in map(int, high):
            if d not in owner:
                tr = Track(str(labels[d]), dets.xyxy[d].copy(), now, np.zeros(2, np.float32))
                if cfg.min_hits <= 1:
                    tr.track_id = self._new_id()
                self.tracks.append(tr)
                owner[d] = tr
        if len(self.tracks) > cfg.max_tracks:
            self.tracks.sort(key=lambda tr: (tr.last_seen, tr.confirmed, tr.hits), reverse=True)
            del self.tracks[cfg.max_tracks :]

        kept = {id(tr) for tr in self.tracks}
        shown = sorted(d for d, tr in owner.items() if tr.confirmed and id(tr) in kept)
        index: npt.NDArray[np.intp] = np.array(shown, dtype=np.intp)
        ids = np.array([owner[d].track_id for d in shown], dtype=np.int32)
        return Tracks(detections=dets[index], track_ids=ids)

    def clear(self) -> None:
        """Forget every track (ids keep counting up)."""
        self.tracks.clear()

    def _new_id(self) -> int:
        new = self.next_id
        self.next_id += 1
        return (new - 1) % ID_SPAN + 1  # int32 ids wrap after 2**31 - 1

    def _match(
        self,
        now: datetime,
        tracks: list[Track],
        dets: Detections,
        labels: npt.NDArray[np.object_],
        candidates: npt.NDArray[np.intp],
    ) -> list[tuple[int, int]]:
        """Greedy highest-IoU-first pairs (track index, detection index), same label only."""
        if not tracks or not len(candidates):
            return []
        predicted = np.stack([tr.predict(now) for tr in tracks])
        iou = box_iou(predicted, dets.xyxy[candidates])
        same = np.array([tr.label for tr in tracks], dtype=object)[:, None] == labels[candidates]
        iou = np.where(same, iou, 0.0)
        pairs: list[tuple[int, int]] = []
        used_t: set[int] = set()
        used_d: set[int] = set()
        width = len(candidates)
        for flat in np.argsort(-iou, axis=None, kind="stable"):
            t, c = divmod(int(flat), width)
            if iou[t, c] < self.cfg.match_iou:
                break
            if t not in used_t and c not in used_d:
                pairs.append((t, int(candidates[c])))
                used_t.add(t)
                used_d.add(c)
        return pairs
