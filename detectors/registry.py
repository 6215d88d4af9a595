"""Detector plugins by config ``type``: every plugin module, the config union, the factory.

| ``type`` | config / detector | needs |
| --- | --- | --- |
| ``nanodet`` (default) | ``NanoDetConfig`` / ``NanoDet`` | the bundled model |
| ``yolo-onnx`` | ``YoloOnnxConfig`` / ``YoloOnnx`` | an ultralytics ONNX export |
| ``ultralytics`` | ``UltralyticsConfig`` / ``UltralyticsDetector`` | extra ``ultralytics`` |

Each plugin module registers its config class with its factory
(``@DETECTORS.register``, :mod:`core.plugins`); importing them here is the
list of plugins. :data:`DetectorConfig` is the union derived from those
registrations, discriminated on ``type``. A ``[detector]`` section without
``type`` is NanoDet (the default before there were several plugins, so
older configs keep working); an unknown ``type`` is an error listing the
known ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from detectors import nanodet, ultralytics_pt, yolo_onnx
from detectors.base import DETECTORS, Detector
from detectors.options import DetectorOptions

PLUGIN_MODULES = (nanodet, yolo_onnx, ultralytics_pt)

if TYPE_CHECKING:
    DetectorConfig = DetectorOptions
else:
    DetectorConfig = DETECTORS.config_union()


def build_detector(cfg: DetectorOptions) -> Detector:
    """Build (load, check, warm up) the detector ``cfg`` configures."""
    return DETECTORS.build(cfg)
