"""Options every detector plugin shares, and the one filter that applies them.

Every plugin config subclasses :class:`DetectorOptions`:

- ``threads``: intra-op threads of the inference library;
- ``score_threshold``: a detection scoring lower is dropped;
- ``nms_iou``: overlap above which the weaker of two boxes *of the same class*
  is suppressed (class-aware NMS);
- ``classes``: optional allow-list of class names kept (``None``: all);
- ``class_thresholds``: class name -> minimum score, overriding
  ``score_threshold`` for that class (lower or higher).

Configs are pure (they do not open model files), so class names are checked
against the model's own class list when the detector is built:
:meth:`DetectorOptions.class_filter` (or :func:`build_class_filter`) turns the
options plus the model's labels into a :class:`ClassFilter`, and an unknown
name is a :class:`UnknownClassError` that names it.

A plugin decodes its raw outputs into candidate boxes, then calls
:func:`finish_detections` (filter + class-aware NMS + cap), the one place the
options take effect. Decoders of dense score matrices (one row per anchor,
one column per class) pick each row's class with :meth:`ClassFilter.best`,
which already honours the allow-list and per-class thresholds, so that a
row whose top class is excluded still yields its best *allowed* class.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from core.config import Section
from detectors.detections import Detections, FloatArray, IntArray, nms
from detectors.model_file import ModelFileError

#: At most this many candidates (best scores first) go into NMS: a model with
#: random or badly tuned weights can pass thousands of boxes over a low
#: threshold, and greedy NMS is quadratic in their number.
MAX_CANDIDATES = 3000
#: At most this many detections are returned per frame (best first).
MAX_DETECTIONS = 300

Score = Annotated[float, Field(gt=0, lt=1)]


class DetectorSetupError(ModelFileError):
    """The detector cannot start with this configuration.

    A subclass of :class:`~detectors.model_file.ModelFileError`, so that the
    CLI reports it as one line like a wrong model file: class names the model
    does not have, an input size it cannot take, a class list that does not
    match its outputs, a missing optional dependency.
    """


class UnknownClassError(DetectorSetupError):
    """``classes`` or ``class_thresholds`` name a class the model does not have."""


class DetectorOptions(Section):
    """Options shared by every detector plugin (see the module docstring)."""

    threads: int = Field(default=2, ge=1, le=64, description="Inference intra-op threads")
    score_threshold: float = Field(
        default=0.3, gt=0, lt=1, description="Detections scoring lower are dropped"
    )
    nms_iou: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="Overlap above which the weaker box of the same class is suppressed",
    )
    classes: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Class names kept (checked against the model's classes at start); default: all",
    )
    class_thresholds: dict[str, Score] = Field(
        default_factory=dict,
        description="Class name -> minimum score, overriding score_threshold for that class",
    )

    @model_validator(mode="after")
    def _consistent_classes(self) -> DetectorOptions:
        if self.classes is not None:
            seen: set[str] = set()
            for name in self.classes:
                if name in seen:
                    raise ValueError(f"classes: '{name}' is listed twice")
                seen.add(name)
            for name in self.class_thresholds:
                if name not in seen:
                    raise ValueError(
                        f"class_thresholds: '{name}' is not in classes, so it is never kept"
                    )
        return self

    def class_filter(self, labels: Sequence[str]) -> ClassFilter:
        """Resolve these options against the model's class list ``labels``."""
        return build_class_filter(
            labels,
            score_threshold=self.score_threshold,
            nms_iou=self.nms_iou,
            classes=self.classes,
            class_thresholds=self.class_thresholds,
        )


@dataclass(frozen=True)
class ClassFilter:
    """The options resolved against one model's labels.

    ``thresholds[c]`` is the minimum score of class id ``c``; ``+inf`` for a
    class outside the allow-list, so it never passes.
    """

    labels: tuple[str, ...]
    thresholds: FloatArray  # (num_classes,)
    nms_iou: float

    @property
    def min_score(self) -> float:
        """The lowest score any kept class can pass with (1.0 if none is kept)."""
        finite = self.thresholds[np.isfinite(self.thresholds)]
        return float(finite.min()) if len(finite) else 1.0

    @property
    def kept_class_ids(self) -> tuple[int, ...] | None:
        """Ids of the allowed classes, or ``None`` when every class is allowed."""
        finite = np.isfinite(self.thresholds)
        if finite.all():
            return None
        return tuple(int(i) for i in np.flatnonzero(finite))

    def passes(self, scores: FloatArray, class_ids: IntArray) -> npt.NDArray[np.bool_]:
        """Mask of the detections whose score reaches their class's threshold."""
        result: npt.NDArray[np.bool_] = scores >= self.thresholds[class_ids]
        return result

    def best(self, scores: FloatArray) -> tuple[IntArray, IntArray, FloatArray]:
        """Per row of a dense ``(N, num_classes)`` score matrix, its best passing class.

        Returns ``(rows, class_ids, scores)`` of the rows that have one: the
        row indices into ``scores``, the chosen class ids and their scores.
        """
        if scores.ndim != 2 or scores.shape[1] != len(self.labels):
            raise ValueError(
                f"score matrix of shape {scores.shape} does not fit {len(self.labels)} classes"
            )
        rows = np.flatnonzero(scores.max(axis=1) >= self.min_score).astype(np.int32)
        if len(rows) == 0:
            return rows, np.zeros((0,), np.int32), np.zeros((0,), np.float32)
        sub = scores[rows]
        masked = np.where(sub >= self.thresholds[None, :], sub, -1.0)
        cls = masked.argmax(axis=1).astype(np.int32)
        best = masked[np.arange(len(rows)), cls].astype(np.float32)
        ok = best >= 0
        return rows[ok], cls[ok], best[ok]


def _unknown(name: str, field: str, labels: Sequence[str]) -> UnknownClassError:
    close = difflib.get_close_matches(name, labels, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    shown = ", ".join(labels[:12]) + (", ..." if len(labels) > 12 else "")
    return UnknownClassError(
        f"detector.{field}: unknown class '{name}'{hint}; "
        f"the model's {len(labels)} classes are: {shown}"
    )


def build_class_filter(
    labels: Sequence[str],
    *,
    score_threshold: float,
    nms_iou: float,
    classes: Sequence[str] | None = None,
    class_thresholds: dict[str, float] | None = None,
) -> ClassFilter:
    """Check class names against ``labels`` and build the filter.

    Raises :class:`UnknownClassError` naming the first unknown name.
    """
    labels = tuple(labels)
    index = {name: i for i, name in enumerate(labels)}
    for name in classes or ():
        if name not in index:
            raise _unknown(name, "classes", labels)
    for name in class_thresholds or {}:
        if name not in index:
            raise _unknown(name, "class_thresholds", labels)
    thresholds = np.full(len(labels), score_threshold, np.float32)
    if classes is not None:
        allowed = np.zeros(len(labels), bool)
        allowed[[index[n] for n in classes]] = True
        thresholds[~allowed] = np.inf
    for name, value in (class_thresholds or {}).items():
        thresholds[index[name]] = value
    return ClassFilter(labels=labels, thresholds=thresholds, nms_iou=nms_iou)


def finish_detections(
    xyxy: FloatArray, scores: FloatArray, class_ids: IntArray, flt: ClassFilter
) -> Detections:
    """Apply the shared options to decoded candidates and return the detections.

    ``xyxy`` (N, 4) in frame pixels, ``scores`` (N,), ``class_ids`` (N,).
    Drops candidates outside the allow-list or under their class threshold,
    keeps the best :data:`MAX_CANDIDATES`, runs class-aware NMS at
    ``flt.nms_iou`` and returns at most :data:`MAX_DETECTIONS`, best first.
    Filtering before NMS gives the same result as after it: NMS is greedy by
    score within a class, and a class's threshold is the same for all its
    boxes, so a dropped box could only have suppressed lower-scoring ones,
    which are dropped too.
    """
    xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    class_ids = np.asarray(class_ids, np.int32).reshape(-1)
    if not (len(xyxy) == len(scores) == len(class_ids)):
        raise ValueError("xyxy, scores and class_ids must have the same length")
    if len(class_ids) and (class_ids.min() < 0 or class_ids.max() >= len(flt.labels)):
        raise ValueError("class id outside the label list")
    ok = flt.passes(scores, class_ids)
    xyxy, scores, class_ids = xyxy[ok], scores[ok], class_ids[ok]
    if len(scores) > MAX_CANDIDATES:
        top = np.argsort(-scores, kind="stable")[:MAX_CANDIDATES]
        xyxy, scores, class_ids = xyxy[top], scores[top], class_ids[top]
    kept = nms(xyxy, scores, class_ids, flt.nms_iou)[:MAX_DETECTIONS]
    return Detections(xyxy[kept], scores[kept], class_ids[kept], flt.labels)
