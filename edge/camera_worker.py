"""One camera: frames in, detections, rules, annotated alerts out."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from detectors.base import Detector
from detectors.detections import Detections
from edge.rules.parking import Firing, ParkingRule
from edge.snapshot import annotate, local_time, write_snapshot
from edge.zones import Zone
from ingest.frames import Frame
from streetwatch.config import CameraConfig, Config
from streetwatch.records import Alert, Place, SourceKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BoundRule:
    rule: ParkingRule
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
                ParkingRule(r, Zone(r.zone, zones[r.zone].polygon)),
                cfg.place(zones[r.zone].place),
            )
            for r in cam.rules
        ]
        self.analysed = 0
        self.alerts = 0

    def process(self, frame: Frame) -> list[Alert]:
        """Analyse one frame; return the alerts it raised (already emitted)."""
        dets = self.detector.detect(frame.image)
        self.analysed += 1
        raised = []
        for bound in self.rules:
            firing = bound.rule.observe(frame.captured_at, dets)
            if firing is not None:
                alert = self._alert(frame, bound, firing, dets)
                self.emit(alert)
                self.alerts += 1
                raised.append(alert)
        return raised

    def _alert(self, frame: Frame, bound: BoundRule, firing: Firing, dets: Detections) -> Alert:
        rule, place = bound.rule, bound.place
        alert_id = Alert.make_id(
            self.cam.camera_id, rule.cfg.rule_id, place.place_id, frame.captured_at
        )
        others = rule.candidates(dets)  # the other vehicles in the zone
        dwell = (frame.captured_at - firing.first_seen).total_seconds()
        image = annotate(
            frame.image,
            rule.zone,
            firing.detections,
            others,
            [
                f"{rule.cfg.category}: {rule.text}",
                f"camera {self.cam.camera_id}  place {place.place_id}",
                f"{local_time(frame.captured_at)}  still for {dwell:.0f}s",
            ],
        )
        snapshot = write_snapshot(image, self.evidence_dir, alert_id, frame.captured_at)
        scores = firing.detections.scores
        return Alert(
            alert_id=alert_id,
            category=rule.cfg.category,
            place=place,
            source_kind=SourceKind.CAMERA,
            source_id=self.cam.camera_id,
            rule_id=rule.cfg.rule_id,
            rule_text=rule.text,
            first_seen=firing.first_seen,
            observed_at=frame.captured_at,
            confidence=round(float(scores.max()), 4) if len(scores) else rule.cfg.min_score,
            evidence=(snapshot,),
            detections=firing.detections.to_records(),
        )
