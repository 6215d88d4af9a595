"""One camera: frames in, detections (motion-gated), rules, annotated alerts out."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detectors.base import Detector
from detectors.detections import Detections
from edge.motion import MotionGate
from edge.rules.base import Firing, ZoneRule
from edge.rules.registry import build_rule
from edge.snapshot import annotate, local_time, write_snapshot
from edge.zones import Zone
from ingest.frames import Frame
from streetwatch.config import CameraConfig, Config
from streetwatch.records import Alert, Place, SourceKind

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
            MotionGate(m.width, m.threshold, m.min_area, m.full_check_every_s, cam.ignore_masks)
            if m.enabled
            else None
        )
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
        """Analyse one frame; return the alerts it raised (already emitted)."""
        dets = self.detections(frame)
        self.analysed += 1
        raised = []
        for bound in self.rules:
            firing = bound.rule.observe(frame.captured_at, dets)
            if firing is not None:
                alert = self._alert(frame, bound, firing)
                self.emit(alert)
                self.alerts += 1
                raised.append(alert)
        return raised

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
