"""One camera: frames in, detections (motion-gated), suppressions, rules, annotated alerts out.

Suppressions (:mod:`edge.suppressions`): on every analysed frame, each place
of the camera's rules gets the detections that no live suppression of that
place covers in its zones, and its rules see only those; a rule on another
place still sees everything. Dropped detections are counted by kind
(:attr:`CameraWorker.suppressed`) and logged ``event=suppressed`` at most
once a minute per suppression, with the count since its last line.

Evidence: every alert carries an annotated snapshot and the analysed frame
undrawn (kind ``frame``: what the detector saw, the pixels of the alert's
detection boxes, for training data). The first alert of an
episode (a rule starting to hold) also carries a clip of ``clip.pre_s``
seconds before and ``clip.post_s`` after it; the clip is encoded off this
thread, so that alert waits in a queue until its clip is ready, and alerts
leave this camera in the order they fired. A clip that cannot be made is
logged and counted, and the alert goes without it.

Evidence pool: the box shares one small pool of evidence threads
(``[edge] evidence_workers``) among its cameras, given as ``evidence_pool``.
Clips are encoded there, and so are the face-blurred snapshot and frame of a
camera with ``[cameras.privacy] blur_faces``: finding faces costs 0.2-0.3 s
a picture on an edge CPU, which the camera thread would otherwise spend not
analysing. The pool's size bounds the memory of evidence work: one x264
encoder holds about 40 MB at 768x576, and eight cameras raising at once
would hold eight. Without a pool (replays, tests) each camera encodes its
clips on a thread of its own and blurs on the camera thread. A snapshot that
cannot be made is logged and counted (``snapshot_failures``) like a clip, and
the alert goes without it.

Main stream for evidence: when the camera has an ``evidence_url``,
:meth:`CameraWorker.open_evidence` builds an
:class:`~ingest.evidence_stream.EvidenceStream` for it (the caller starts
and stops it). Detection still runs on ``url`` (the sub-stream), but

- clips are fed from the evidence thread with every main-stream frame
  (full resolution, full frame rate) instead of the analysed frames
  (``ClipRecorder`` serialises ``push`` and ``start`` under its lock); if
  the main stream cannot be read at all (``EvidenceStream.failed``), clips
  fall back to the analysed frames;
- the snapshot is drawn on the main-stream frame closest to the analysed
  frame's ``captured_at`` (within :data:`EVIDENCE_MAX_SKEW_S`), with the zone
  and the boxes scaled from sub-stream pixels to the main stream's size
  (x by W_main / W_sub, y by H_main / H_sub); when there is no such frame,
  the sub-stream frame is used (logged once, counted in
  ``evidence_fallbacks``);
- the alert's detection boxes (``Alert.detections``) stay in **sub-stream**
  pixel coordinates, those of the zones in the config.

Without ``evidence_url`` nothing changes.

Camera health: every frame also goes to the camera's
:class:`~edge.camera_health.CameraHealth` (:attr:`CameraWorker.health`),
whose frozen, covered and moved alerts leave with the rules' alerts, in order.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from core.records import Alert, Evidence, Place, SourceKind, SuppressionKind
from core.timefmt import local_time
from detectors.base import Detector
from detectors.detections import Detections, box_iou
from edge.camera_health import CATEGORIES as HEALTH_CATEGORIES
from edge.camera_health import CameraHealth, fingerprint, health_place
from edge.clip_recorder import ClipRecorder
from edge.config import CameraConfig, EdgeServiceConfig
from edge.motion import WHOLE, Box, MotionGate
from edge.privacy import Image, Redactor
from edge.rules.base import Firing, ZoneRule
from edge.rules.registry import build_rule
from edge.snapshot import annotate, write_frame, write_snapshot
from edge.suppressions import LiveSuppression, RateLimit, SuppressionBook, suppress
from edge.tracker import IouTracker, Tracks
from edge.zones import Zone
from ingest.evidence_stream import EvidenceStream
from ingest.frames import Frame
from ingest.stream_source import StreamOptions
from ingest.video_file import Pace

REGION_EDGE_PX = 2  # a box this close to a region's inner edge may be a cut object
CLIP_WAIT_S = 60.0  # longest wait for the last clips when a camera stops
EVIDENCE_MAX_SKEW_S = 0.5  # farthest main-stream frame (in time) a snapshot may use

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BoundRule:
    rule: ZoneRule
    place: Place


@dataclass(frozen=True)
class Pending:
    """An alert waiting for evidence made off the camera thread."""

    alert: Alert
    pictures: Future[tuple[Evidence, ...]] | None = None  # snapshot and frame, blurred
    clip: Future[Evidence] | None = None

    def ready(self) -> bool:
        return all(f is None or f.done() for f in (self.pictures, self.clip))


class CameraWorker:
    def __init__(
        self,
        cam: CameraConfig,
        cfg: EdgeServiceConfig,
        detector: Detector,
        evidence_dir: Path,
        emit: Callable[[Alert], None],
        suppressions: SuppressionBook | None = None,
        evidence_pool: Executor | None = None,
    ) -> None:
        self.cam = cam
        self.evidence_pool = evidence_pool
        self.detector = detector
        self.evidence_dir = evidence_dir / cam.camera_id
        self.emit = emit
        self.tz = ZoneInfo(cam.timezone)
        zones = {z.zone_id: z for z in cam.zones}
        self.rules = [
            BoundRule(
                build_rule(r, Zone(r.zone, zones[r.zone].polygon), cam.timezone),
                cfg.place(zones[r.zone].place),
            )
            for r in cam.rules
        ]
        self.place_zones: dict[str, list[Zone]] = {}  # place -> its zones with rules
        for b in self.rules:
            on_place = self.place_zones.setdefault(b.place.place_id, [])
            if all(z.zone_id != b.rule.zone.zone_id for z in on_place):
                on_place.append(b.rule.zone)
        self.suppressions = suppressions
        # detections dropped by suppressions, per kind; every kind present from the start,
        # so that another thread may read it while this one counts
        self.suppressed: Counter[str] = Counter({k.value: 0 for k in SuppressionKind})
        self._suppressed_log = RateLimit()
        self._live_ids: set[str] = set()  # the suppressions in force at the last frame
        self.masks = [Zone(f"mask-{i}", m) for i, m in enumerate(cam.ignore_masks)]
        m = cam.motion
        self.gate = (
            MotionGate(
                m.width,
                m.threshold,
                m.min_area,
                m.full_check_every_s,
                masks=cam.ignore_masks,
                zones=[zones[r.zone].polygon for r in cam.rules],
                regions=m.regions,
            )
            if m.enabled
            else None
        )
        self.privacy = (  # faces blurred in the evidence that leaves the box (edge/privacy.py)
            Redactor(cam.privacy, self.evidence_dir, keep_originals=cfg.edge.originals_keep_h > 0)
            if cam.privacy.blur_faces or cam.privacy.blur_plates
            else None
        )
        c = cam.clip
        self.clips = (
            ClipRecorder(
                cam.camera_id,
                self.evidence_dir,
                pre_s=c.pre_s,
                post_s=c.post_s,
                budget_bytes=int(c.budget_mb * 1024 * 1024),
                executor=evidence_pool,
                redact=self.privacy.clip_frames if self.privacy else None,
                originals=self.privacy.originals
                if self.privacy and self.privacy.keep_originals
                else None,
            )
            if c.enabled
            else None
        )
        # alerts in the order they fired, each waiting for its pictures and clip (if any)
        self.pending: deque[Pending] = deque()
        self.clip_failures: Counter[str] = Counter()
        self.snapshot_failures: Counter[str] = Counter()
        self.evidence: EvidenceStream | None = None
        self.evidence_fallbacks = 0  # snapshots drawn on the sub-stream for want of a main frame
        self._clips_fallback_logged = False
        self.last: Detections | None = None
        watched = cam.place or (cam.zones[0].place if cam.zones else None)
        self.health = CameraHealth(  # offline, frozen, covered, moved (edge/camera_health.py)
            cam.camera_id,
            cam.health,
            health_place(cam.camera_id, cfg.place(watched) if watched else None),
            self.evidence_dir,
            zones=[Zone(z.zone_id, z.polygon) for z in cam.zones],
            reference_key=fingerprint(cam.url, [(z.zone_id, z.polygon) for z in cam.zones]),
            redact=self.privacy.scrub if self.privacy else None,
        )
        self.tracker = IouTracker(cam.tracker)
        self.tracks = Tracks(Detections.empty(detector.labels), np.zeros((0,), np.int32))
        self.analysed = 0
        self.detector_runs = 0
        self.region_runs = 0  # detector runs on a region around the motion
        self.region_fallbacks = 0  # region runs redone on the whole frame (object cut)
        self.alerts = 0

    def open_evidence(
        self,
        *,
        start: datetime,
        pace: Pace = "realtime",
        options: StreamOptions | None = None,
    ) -> EvidenceStream | None:
        """The reader of this camera's main stream (None without ``evidence_url``).

        It feeds the clips; the caller starts it before the first frame and
        stops it before :meth:`finish`. ``start`` must be the one given to
        the sub-stream's source, so that two files share one clock.
        """
        if self.cam.evidence_url is None:
            return None
        self.evidence = EvidenceStream(
            self.cam.camera_id,
            self.cam.evidence_url,
            start=start,
            pace=pace,
            loop=self.cam.loop,
            options=options,
            on_frame=self.clips.push if self.clips is not None else None,
        )
        return self.evidence

    def detections(self, frame: Frame) -> Detections:
        """Detections for this frame: a detector run (whole frame or the region
        that moved), or the last run's if nothing moved."""
        decision = WHOLE
        if self.gate is not None:
            # fed every frame, so that its background is ready for the second
            decision = self.gate.decide(frame.image, frame.captured_at)
        if self.last is None:
            decision = WHOLE
        elif not decision.run:
            return self.last
        dets = None
        if decision.region is not None and self.last is not None:
            dets = self._region_detections(frame, decision.region, self.last)
        if dets is None:
            dets = self.detector.detect(frame.image)
            self.detector_runs += 1
            if self.gate is not None:
                self.gate.last_full = frame.captured_at
        for mask in self.masks:
            dets = dets[~mask.anchored_in(dets)]
        self.last = dets
        return dets

    def _region_detections(self, frame: Frame, region: Box, last: Detections) -> Detections | None:
        """Run the detector on ``region`` and merge with ``last``; None if an
        object touches the crop's inner edge (the whole frame must be run).

        Cached detections wholly inside the region are replaced by what the
        crop found; those reaching outside it were not seen whole, so they
        stay, unless the crop found the same object (same class, IoU >= 0.5).
        """
        x1, y1, x2, y2 = region
        found = self.detector.detect(frame.image[y1:y2, x1:x2])
        self.detector_runs += 1
        self.region_runs += 1
        h, w = frame.image.shape[:2]
        b = found.xyxy
        edge = REGION_EDGE_PX
        cut = (
            ((b[:, 0] <= edge) & (x1 > 0))
            | ((b[:, 1] <= edge) & (y1 > 0))
            | ((b[:, 2] >= x2 - x1 - edge) & (x2 < w))
            | ((b[:, 3] >= y2 - y1 - edge) & (y2 < h))
        )
        if bool(cut.any()):
            self.region_fallbacks += 1
            return None
        shifted = Detections(
            xyxy=found.xyxy + np.array([x1, y1, x1, y1], np.float32),
            scores=found.scores,
            class_ids=found.class_ids,
            labels=found.labels,
        )
        # The crop saw whole only what lies wholly inside it; the rest is kept.
        c = last.xyxy
        inside = (c[:, 0] >= x1) & (c[:, 1] >= y1) & (c[:, 2] <= x2) & (c[:, 3] <= y2)
        kept = last[~inside]
        if len(kept) and len(shifted):
            same = (box_iou(kept.xyxy, shifted.xyxy) >= 0.5) & (
                kept.class_ids[:, None] == shifted.class_ids[None, :]
            )
            again = np.asarray(same.any(axis=1), dtype=bool)
            kept = kept[~again]  # seen again (and moved) in the crop
        return Detections(
            xyxy=np.concatenate([kept.xyxy, shifted.xyxy]).astype(np.float32),
            scores=np.concatenate([kept.scores, shifted.scores]).astype(np.float32),
            class_ids=np.concatenate([kept.class_ids, shifted.class_ids]).astype(np.int32),
            labels=last.labels,
        )

    def process(self, frame: Frame) -> list[Alert]:
        """Analyse one frame; return the alerts it emitted (possibly from earlier frames)."""
        if self.evidence is not None:
            self.evidence.advance(frame.captured_at)
        if self.clips is not None and self._clips_from_analysed_frames():
            self.clips.push(frame)
        dets = self.detections(frame)
        self.analysed += 1
        # every analysed frame, gated ones too, so max_age_s counts real time;
        # ids are for reviewers and counting, dwell never depends on them
        self.tracks = self.tracker.update(frame.captured_at, dets)
        seen = self._unsuppressed(frame, dets)
        for bound in self.rules:
            firing = bound.rule.observe(frame.captured_at, seen.get(bound.place.place_id, dets))
            if firing is not None:
                alert, pictures = self._alert(frame, bound, firing)
                clip = None
                if self.clips is not None and firing.first_of_episode:
                    clip = self.clips.start(
                        alert.alert_id,
                        frame.captured_at,
                        hide_plates=self.cam.privacy.blurs_plates(alert.category),
                    )
                self.pending.append(Pending(alert, pictures, clip))
        self.pending.extend(Pending(alert) for alert in self.health.observe(frame))
        return self._emit_ready()

    def _unsuppressed(self, frame: Frame, dets: Detections) -> dict[str, Detections]:
        """Per place of this camera's rules, the detections no live suppression hides
        (places with nothing hidden may be missing: their rules see ``dets``)."""
        if self.suppressions is None:
            return {}
        live = self.suppressions.live(self.cam.camera_id, frame.captured_at)
        self._forget_newly_suppressed(live)
        if not live or not len(dets):
            return {}
        h, w = frame.image.shape[:2]
        result = suppress(live, self.place_zones, frame.captured_at, dets, (w, h))
        for (suppression_id, kind), n in result.dropped.items():
            self.suppressed[kind.value] += n
            since = self._suppressed_log.add(suppression_id, n)
            if since is not None:
                log.info(
                    "event=suppressed camera=%s suppression=%s kind=%s label=%s count=%d "
                    "(detections dropped since its last line; one line a minute at most)",
                    self.cam.camera_id,
                    suppression_id,
                    kind.value,
                    result.labels[suppression_id],
                    since,
                )
        return result.kept

    def _forget_newly_suppressed(self, live: Sequence[LiveSuppression]) -> None:
        """A place that gained a suppression starts afresh: its rules forget what they
        held (a van standing for minutes would otherwise keep its dwell through the
        rules' grace and raise once more after the suppression arrived)."""
        ids = {s.record.suppression_id for s in live}
        added = {s.record.place_id for s in live if s.record.suppression_id not in self._live_ids}
        self._live_ids = ids
        for bound in self.rules:
            if bound.place.place_id in added:
                bound.rule.reset()

    def _clips_from_analysed_frames(self) -> bool:
        if self.evidence is None:
            return True
        if not self.evidence.failed:
            return False
        if not self._clips_fallback_logged:
            self._clips_fallback_logged = True
            log.warning(
                "event=evidence_clips_from_substream camera=%s reason=%s",
                self.cam.camera_id,
                self.evidence.error,
            )
        return True

    def _evidence_image(self, frame: Frame) -> tuple[Frame, tuple[float, float]]:
        """The frame to draw the snapshot on, and the scale from ``frame``'s pixels to it."""
        if self.evidence is None:
            return frame, (1.0, 1.0)
        main = self.evidence.latest(frame.captured_at, EVIDENCE_MAX_SKEW_S)
        if main is None:
            self.evidence_fallbacks += 1
            if self.evidence_fallbacks == 1:
                log.warning(
                    "event=evidence_frame_missing camera=%s at=%s max_skew_s=%s: snapshot "
                    "drawn on the sub-stream (logged once)",
                    self.cam.camera_id,
                    frame.captured_at.isoformat(),
                    EVIDENCE_MAX_SKEW_S,
                )
            return frame, (1.0, 1.0)
        sub_h, sub_w = frame.image.shape[:2]
        main_h, main_w = main.image.shape[:2]
        return main, (main_w / sub_w, main_h / sub_h)

    def finish(self) -> list[Alert]:
        """The stream ended: complete the clips under way and emit every pending alert."""
        if self.evidence is not None:
            self.evidence.stop()  # no-op if the caller stopped it already
        if self.clips is not None:
            self.clips.flush()
        out = self._emit_ready(wait=CLIP_WAIT_S)
        if self.clips is not None:
            self.clips.close()
        return out

    def _emit_ready(self, wait: float | None = None) -> list[Alert]:
        emitted = []
        while self.pending:
            head = self.pending[0]
            if wait is None and not head.ready():
                break
            alert = head.alert
            if head.pictures is not None:
                pictures = self._evidence(alert, head.pictures, "snapshot", wait)
                alert = alert.model_copy(update={"evidence": (*pictures, *alert.evidence)})
            if head.clip is not None:
                clip = self._evidence(alert, head.clip, "clip", wait)
                alert = alert.model_copy(update={"evidence": (*alert.evidence, *clip)})
            self.pending.popleft()
            self.emit(alert)  # on disk when this returns
            if alert.category in HEALTH_CATEGORIES:
                self.health.settled([alert])
            self.alerts += 1
            emitted.append(alert)
        return emitted

    def _evidence(
        self,
        alert: Alert,
        made: Future[tuple[Evidence, ...]] | Future[Evidence],
        kind: str,
        wait: float | None,
    ) -> tuple[Evidence, ...]:
        """What ``made`` resolved to; nothing (logged and counted) if it failed."""
        failures = self.clip_failures if kind == "clip" else self.snapshot_failures
        try:
            result = made.result(timeout=wait)
        except FutureTimeout:
            failures["timeout"] += 1
            reason: object = "timeout"
        except Exception as exc:
            failures[type(exc).__name__] += 1
            reason = exc
        else:
            return result if isinstance(result, tuple) else (result,)
        log.error(
            "event=%s_missing camera=%s alert=%s reason=%s",
            kind,
            self.cam.camera_id,
            alert.alert_id,
            reason,
        )
        return ()

    def _alert(
        self, frame: Frame, bound: BoundRule, firing: Firing
    ) -> tuple[Alert, Future[tuple[Evidence, ...]] | None]:
        """The alert, and its pictures still being blurred on the evidence pool (if so,
        the alert has no pictures yet)."""
        rule, place = bound.rule, bound.place
        category = rule.cfg.category
        alert_id = Alert.make_id(
            self.cam.camera_id, rule.cfg.rule_id, place.place_id, frame.captured_at
        )
        dwell = (frame.captured_at - firing.first_seen).total_seconds()
        picture, scale = self._evidence_image(frame)
        header = [
            f"{category}: {rule.text}",
            f"camera {self.cam.camera_id}  place {place.place_id}",
            f"{local_time(frame.captured_at, self.tz)}  holding for {dwell:.0f}s",
        ]

        def draw(image: Image) -> Image:
            return annotate(image, rule.zone, firing.detections, header, scale=scale)

        pictures: Future[tuple[Evidence, ...]] | None = None
        evidence: tuple[Evidence, ...] = ()
        plates = self.cam.privacy.blurs_plates(category)
        if self.privacy is not None and self.evidence_pool is not None:
            try:
                pictures = self.evidence_pool.submit(
                    partial(self.privacy.write_alert_evidence, plates=plates),
                    alert_id,
                    picture,
                    frame,
                    draw,
                )
            except RuntimeError:  # the pool is shut down (a camera stopping late): here
                evidence = self.privacy.write_alert_evidence(
                    alert_id, picture, frame, draw, plates=plates
                )
        elif self.privacy is not None:  # faces (plates) blurred; the originals kept aside
            evidence = self.privacy.write_alert_evidence(
                alert_id, picture, frame, draw, plates=plates
            )
        else:
            evidence = (
                write_snapshot(
                    draw(picture.image), self.evidence_dir, alert_id, picture.captured_at
                ),
                write_frame(frame.image, self.evidence_dir, alert_id, frame.captured_at),
            )
        scores = firing.detections.scores
        alert = Alert(
            alert_id=alert_id,
            category=category,
            place=place,
            source_kind=SourceKind.CAMERA,
            source_id=self.cam.camera_id,
            rule_id=rule.cfg.rule_id,
            rule_text=rule.text,
            first_seen=firing.first_seen,
            observed_at=frame.captured_at,
            confidence=round(float(np.max(scores)), 4) if len(scores) else rule.cfg.min_score,
            evidence=evidence,
            detections=firing.detections.to_records(self.tracks.ids_for(firing.detections)),
        )
        return alert, pictures
