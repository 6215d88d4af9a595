"""One camera: frames in, detections (motion-gated), rules, annotated alerts out.

Evidence: every alert carries an annotated snapshot. The first alert of an
episode (a rule starting to hold) also carries a clip of ``clip.pre_s``
seconds before and ``clip.post_s`` after it; the clip is encoded off this
thread, so that alert waits in a queue until its clip is ready, and alerts
leave this camera in the order they fired. A clip that cannot be made is
logged and counted, and the alert goes without it.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detectors.base import Detector
from detectors.detections import Detections
from edge.clip_recorder import ClipRecorder
from edge.motion import MotionGate
from edge.rules.base import Firing, ZoneRule
from edge.rules.registry import build_rule
from edge.snapshot import annotate, local_time, write_snapshot
from edge.zones import Zone
from ingest.frames import Frame
from streetwatch.config import CameraConfig, Config
from streetwatch.records import Alert, Evidence, Place, SourceKind

CLIP_WAIT_S = 60.0  # longest wait for the last clips when a camera stops

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BoundRule:
    rule: ZoneRule
    place: Place


class CameraWorker:
    def __init__(
        self,
        cam: CameraConfig,
        cfg: Config,
        detector: Detector,
        evidence_dir: Path,
        emit: Callable[[Alert], None],
    ) -> None:
        self.cam = cam
        self.detector = detector
        self.evidence_dir = evidence_dir / cam.camera_id
        self.emit = emit
        zones = {z.zone_id: z for z in cam.zones}
        self.rules = [
            BoundRule(
                build_rule(r, Zone(r.zone, zones[r.zone].polygon), cam.timezone),
                cfg.place(zones[r.zone].place),
            )
            for r in cam.rules
        ]
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
            )
            if m.enabled
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
            )
            if c.enabled
            else None
        )
        self.pending: deque[tuple[Alert, Future[Evidence] | None]] = deque()
        self.clip_failures: Counter[str] = Counter()
        self.last: Detections | None = None
        self.analysed = 0
        self.detector_runs = 0
        self.alerts = 0

    def detections(self, frame: Frame) -> Detections:
        """Detections for this frame: a detector run, or the last run's if nothing moved."""
        if (
            self.last is None
            or self.gate is None
            or self.gate.should_detect(frame.image, frame.captured_at)
        ):
            dets = self.detector.detect(frame.image)
            self.detector_runs += 1
            for mask in self.masks:
                dets = dets[~mask.anchored_in(dets)]
            self.last = dets
        return self.last

    def process(self, frame: Frame) -> list[Alert]:
        """Analyse one frame; return the alerts it emitted (possibly from earlier frames)."""
        if self.clips is not None:
            self.clips.push(frame)
        dets = self.detections(frame)
        self.analysed += 1
        for bound in self.rules:
            firing = bound.rule.observe(frame.captured_at, dets)
            if firing is not None:
                alert = self._alert(frame, bound, firing)
                clip = None
                if self.clips is not None and firing.first_of_episode:
                    clip = self.clips.start(alert.alert_id, frame.captured_at)
                self.pending.append((alert, clip))
        return self._emit_ready()

    def finish(self) -> list[Alert]:
        """The stream ended: complete the clips under way and emit every pending alert."""
        if self.clips is not None:
            self.clips.flush()
        out = self._emit_ready(wait=CLIP_WAIT_S)
        if self.clips is not None:
            self.clips.close()
        return out

    def _emit_ready(self, wait: float | None = None) -> list[Alert]:
        emitted = []
        while self.pending:
            alert, clip = self.pending[0]
            if clip is not None:
                if wait is None and not clip.done():
                    break
                try:
                    evidence = clip.result(timeout=wait)
                    alert = alert.model_copy(update={"evidence": (*alert.evidence, evidence)})
                except FutureTimeout:
                    self.clip_failures["timeout"] += 1
                    log.error(
                        "event=clip_missing camera=%s alert=%s reason=timeout",
                        self.cam.camera_id,
                        alert.alert_id,
                    )
                except Exception as exc:
                    self.clip_failures[type(exc).__name__] += 1
                    log.error(
                        "event=clip_missing camera=%s alert=%s reason=%s",
                        self.cam.camera_id,
                        alert.alert_id,
                        exc,
                    )
            self.pending.popleft()
            self.emit(alert)
            self.alerts += 1
            emitted.append(alert)
        return emitted

    def _alert(self, frame: Frame, bound: BoundRule, firing: Firing) -> Alert:
        rule, place = bound.rule, bound.place
        category = rule.cfg.category
        alert_id = Alert.make_id(
            self.cam.camera_id, rule.cfg.rule_id, place.place_id, frame.captured_at
        )
        dwell = (frame.captured_at - firing.first_seen).total_seconds()
        image = annotate(
            frame.image,
            rule.zone,
            firing.detections,
            [
                f"{category}: {rule.text}",
                f"camera {self.cam.camera_id}  place {place.place_id}",
                f"{local_time(frame.captured_at)}  holding for {dwell:.0f}s",
            ],
        )
        snapshot = write_snapshot(image, self.evidence_dir, alert_id, frame.captured_at)
        scores = firing.detections.scores
        return Alert(
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
            evidence=(snapshot,),
            detections=firing.detections.to_records(),
        )
