"""Detector plugins by config ``type``: the config union and the factory."""

from __future__ import annotations

from pathlib import Path

from detectors.base import Detector
from detectors.nanodet import NanoDet, NanoDetConfig

DetectorConfig = NanoDetConfig


def build_detector(cfg: DetectorConfig) -> Detector:
    if cfg.model is not None and cfg.sha256 is not None:
        return NanoDet(
            Path(cfg.model),
            cfg.sha256,
            threads=cfg.threads,
            score_threshold=cfg.score_threshold,
            nms_iou=cfg.nms_iou,
        )
    return NanoDet(threads=cfg.threads, score_threshold=cfg.score_threshold, nms_iou=cfg.nms_iou)
