"""Detector plugins by config ``type``: the config union and the factory.

| ``type`` | config / detector | needs |
| --- | --- | --- |
| ``nanodet`` (default) | ``NanoDetConfig`` / ``NanoDet`` | the bundled model |
| ``yolo-onnx`` | ``YoloOnnxConfig`` / ``YoloOnnx`` | an ultralytics ONNX export |
| ``ultralytics`` | ``UltralyticsConfig`` / ``UltralyticsDetector`` | extra ``ultralytics`` |

:data:`DetectorConfig` is the union, discriminated on ``type``. A
``[detector]`` section without ``type`` is NanoDet (the default before there
were several plugins, so older configs keep working); an unknown ``type``
is an error listing the known ones.

Each config class is registered with its factory by :func:`register`,
explicitly, below; :func:`build_detector` looks the factory up by the
config's class. A new plugin adds its config to the union and registers a
factory here (a test checks that both lists agree).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import Discriminator, Tag

from detectors.base import Detector
from detectors.nanodet import NanoDet, NanoDetConfig
from detectors.options import DetectorOptions
from detectors.ultralytics_pt import UltralyticsConfig, UltralyticsDetector
from detectors.yolo_onnx import YoloOnnx, YoloOnnxConfig

DEFAULT_TYPE = "nanodet"


def _detector_type(value: Any) -> str:
    """The tag of a ``[detector]`` section: its ``type``, ``nanodet`` when absent."""
    if isinstance(value, dict):
        tag = value.get("type", DEFAULT_TYPE)
        return tag if isinstance(tag, str) else repr(tag)
    return str(getattr(value, "type", DEFAULT_TYPE))


DetectorConfig = Annotated[
    Annotated[NanoDetConfig, Tag("nanodet")]
    | Annotated[YoloOnnxConfig, Tag("yolo-onnx")]
    | Annotated[UltralyticsConfig, Tag("ultralytics")],
    Discriminator(
        _detector_type,
        custom_error_type="unknown_detector",
        custom_error_message="type must be one of: nanodet (default), yolo-onnx, ultralytics",
    ),
]

C = TypeVar("C", bound=DetectorOptions)
Factory = Callable[[C], Detector]

_FACTORIES: dict[type[DetectorOptions], Callable[[Any], Detector]] = {}


def register(config: type[C]) -> Callable[[Factory[C]], Factory[C]]:
    """Register the decorated function as the factory of detectors configured by ``config``."""

    def add(factory: Factory[C]) -> Factory[C]:
        if config in _FACTORIES:
            raise ValueError(f"a detector factory for {config.__name__} is already registered")
        _FACTORIES[config] = factory
        return factory

    return add


def registered() -> tuple[type[DetectorOptions], ...]:
    """The config classes that have a factory."""
    return tuple(_FACTORIES)


@register(NanoDetConfig)
def _nanodet(cfg: NanoDetConfig) -> Detector:
    return NanoDet.from_config(cfg)


@register(YoloOnnxConfig)
def _yolo_onnx(cfg: YoloOnnxConfig) -> Detector:
    return YoloOnnx(cfg)


@register(UltralyticsConfig)
def _ultralytics(cfg: UltralyticsConfig) -> Detector:
    return UltralyticsDetector(cfg)


def build_detector(cfg: DetectorOptions) -> Detector:
    """Build (load, check, warm up) the detector ``cfg`` configures."""
    try:
        factory = _FACTORIES[type(cfg)]
    except KeyError:
        raise TypeError(f"no detector factory registered for {type(cfg).__name__}") from None
    return factory(cfg)
