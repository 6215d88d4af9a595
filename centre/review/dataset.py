"""Reviewed cases as an Ultralytics (YOLO) detection dataset, to retrain the detector.

:func:`export_dataset` writes::

    out/.streetwatch-dataset          marker: this directory is an export of ours
    out/data.yaml                     path (absolute), train, val, the 80 COCO names
    out/images/{train,val}/<case_id>.jpg
    out/labels/{train,val}/<case_id>.txt

**The image** is the case's ``frame`` evidence (the latest one): the analysed
frame without drawing, the pixels ``Case.detections`` refer to. The annotated
``snapshot`` is never used: the boxes and text drawn on it would be learnt as
part of the object. A case without a frame is skipped and counted.

**Hard negatives** are rejected cases whose ``reason`` is in ``reasons``
(default ``wrong_object``): the detector saw something that was not there,
so the image gets an *empty* label file. Other reasons are not negatives by
default: ``not_a_violation``, ``permitted``, ``duplicate``, ``camera_fault``
mean the object was real and only the rule, the permit or the situation was
wrong; an empty label would teach the detector that a real car is no car.
Caveat: an empty label says *nothing* in the frame is an object of the 80
classes, and a street frame may also show real people or cars the rule did
not care about; a reviewer should pick ``wrong_object`` frames where that is
not so, or pass a narrower ``reasons``.

**Positives** (``include_confirmed``, off by default) are cases a person
confirmed (dispatched, on site, handled, verified, closed, self-handled):
one line ``class_id cx cy w h`` per detection, normalised by the frame's
width and height, clipped to the frame; boxes of zero area are dropped, and
a case left with no box (or with a detection whose label is not the COCO
name of its class id, i.e. another model's classes) is skipped. Caveat: a
case carries only the detections its rule fired on, so other objects in the
frame go unlabelled and are learnt as background.

**Split**: a case goes to val when a hash of its case id falls below
``val_share``, so every export puts it in the same split whatever else is
exported. Only when that leaves val (or train) empty with two or more images
is the case nearest the threshold moved over, because Ultralytics needs both.

**Re-running** into the same directory rewrites the same files and removes
images and labels of cases no longer exported (and Ultralytics' label caches),
so the directory always equals the latest export. A directory that is not
empty and has no marker is refused (:class:`ValueError`): it is not ours to
overwrite. Files are written whole (temporary file, rename); an export that
is interrupted is finished by running it again.

``data.yaml`` names the 80 COCO classes (``core.coco``, the list the bundled
detectors use), so class ids mean the same in the labels as in the alerts.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from centre.evidence_store import EvidenceStore
from core.coco import COCO_CLASSES
from core.records import Case, CaseStatus, DetectionRecord, Evidence, EvidenceKind

MARKER = ".streetwatch-dataset"
SPLITS = ("train", "val")
_KINDS = (("images", ".jpg"), ("labels", ".txt"))
#: What a person confirmed: the problem was real, and so were its objects.
CONFIRMED = frozenset(
    {
        CaseStatus.DISPATCHED,
        CaseStatus.ON_SITE,
        CaseStatus.HANDLED,
        CaseStatus.VERIFIED,
        CaseStatus.CLOSED,
        CaseStatus.SELF_HANDLED,
    }
)
_SAFE_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
_DIGITS = 6  # decimals of a normalised coordinate (a millionth of the frame)

COCO_NAMES = COCO_CLASSES  # the names by class id, as the bundled detectors use them


@dataclass(frozen=True)
class DatasetSummary:
    """What one export wrote, and what it left out and why."""

    out: Path
    images: int  # negatives + positives
    negatives: int  # empty label files
    positives: int  # label files with boxes
    labels: int  # boxes over all label files
    train: int
    val: int
    skipped_no_frame: int  # selected, but the case has no frame evidence
    skipped_missing_file: int  # its frame is not in the evidence store
    skipped_other_reason: int  # rejected for a reason not in ``reasons``
    skipped_unreviewed: int  # open, merged, or confirmed without include_confirmed
    skipped_unusable: int  # frame unreadable, or a positive with no box to label


@dataclass(frozen=True)
class _Item:
    stem: str
    image: bytes  # JPEG
    lines: tuple[str, ...]


def export_dataset(
    cases: Iterable[Case],
    evidence: EvidenceStore,
    out: Path,
    *,
    reasons: frozenset[str] = frozenset({"wrong_object"}),
    include_confirmed: bool = False,
    val_share: float = 0.2,
) -> DatasetSummary:
    """Write the reviewed ``cases`` as a YOLO dataset under ``out`` (see the module).

    A case that appears more than once (several versions) counts once, at its
    highest version. Raises :class:`ValueError` if ``out`` holds something
    that is not an export of ours, if ``val_share`` is not within (0, 1), or
    if a case id cannot name a file (ids made by ``Case.make_id`` always can).
    """
    if not 0.0 < val_share < 1.0:
        raise ValueError(f"val_share must be between 0 and 1 (exclusive), not {val_share}")
    out = out.resolve()
    _claim(out)
    skipped: Counter[str] = Counter()
    lines: dict[str, tuple[str, ...]] = {}  # per exported case id (images are on disk)
    for case in _latest_versions(cases):
        role = _role(case, reasons, include_confirmed)
        if role not in ("negative", "positive"):
            skipped[role] += 1
            continue
        item, why = _item(case, evidence, positive=role == "positive")
        if item is None:
            skipped[why] += 1
            continue
        first = _split([item.stem], val_share)[item.stem]  # by hash alone, written at once
        _write(out / "images" / first / f"{item.stem}.jpg", item.image)
        _write(out / "labels" / first / f"{item.stem}.txt", _label_text(item.lines))
        lines[item.stem] = item.lines
    split = _split(sorted(lines), val_share)
    written: set[Path] = set()
    for stem, final in split.items():
        paths = [out / kind / final / f"{stem}{ext}" for kind, ext in _KINDS]
        if final != _split([stem], val_share)[stem]:  # moved so that no split is empty
            for (kind, ext), path in zip(_KINDS, paths, strict=True):
                (out / kind / _other(final) / f"{stem}{ext}").replace(path)
        written.update(paths)
    _remove_stale(out, written)
    _write(out / "data.yaml", _data_yaml(out).encode("utf-8"))
    positives = sum(1 for boxes in lines.values() if boxes)
    val = sum(1 for s in split.values() if s == "val")
    return DatasetSummary(
        out=out,
        images=len(lines),
        negatives=len(lines) - positives,
        positives=positives,
        labels=sum(len(boxes) for boxes in lines.values()),
        train=len(lines) - val,
        val=val,
        skipped_no_frame=skipped["no_frame"],
        skipped_missing_file=skipped["missing_file"],
        skipped_other_reason=skipped["other_reason"],
        skipped_unreviewed=skipped["unreviewed"],
        skipped_unusable=skipped["unusable"],
    )


def _claim(out: Path) -> None:
    """Make ``out`` ours, or refuse if it holds something else."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a dataset directory")
    if out.is_dir() and not (out / MARKER).is_file() and any(out.iterdir()):
        raise ValueError(
            f"{out} is not empty and is not a dataset this exporter wrote (no {MARKER}); "
            "export into a new or empty directory"
        )
    for kind, _ in _KINDS:
        for split in SPLITS:
            (out / kind / split).mkdir(parents=True, exist_ok=True)  # both, even if empty
    marker = {"format": 1, "written_by": "streetwatch centre.review.dataset"}
    _write(out / MARKER, (json.dumps(marker) + "\n").encode("utf-8"))


def _latest_versions(cases: Iterable[Case]) -> list[Case]:
    latest: dict[str, Case] = {}
    for case in cases:
        held = latest.get(case.case_id)
        if held is None or case.version > held.version:
            latest[case.case_id] = case
    return [latest[k] for k in sorted(latest)]


def _role(case: Case, reasons: frozenset[str], include_confirmed: bool) -> str:
    """``negative``, ``positive``, or the counter of why the case is left out."""
    if case.status is CaseStatus.REJECTED:
        return "negative" if case.reason in reasons else "other_reason"
    if include_confirmed and case.status in CONFIRMED:
        return "positive"
    return "unreviewed"


def _item(case: Case, store: EvidenceStore, *, positive: bool) -> tuple[_Item | None, str]:
    """The case's image and label lines, or None and the counter of why not."""
    if not _SAFE_STEM.fullmatch(case.case_id):
        raise ValueError(f"case id {case.case_id!r} cannot name a file")
    frame = _latest_frame(case.evidence)
    if frame is None:
        return None, "no_frame"
    found = store.find(frame.sha256)
    if found is None:
        return None, "missing_file"
    data = found[0].read_bytes()
    if hashlib.sha256(data).hexdigest() != frame.sha256:
        return None, "unusable"
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            size = im.size
            if im.format != "JPEG":
                buffer = io.BytesIO()
                im.convert("RGB").save(buffer, "JPEG", quality=95)
                data = buffer.getvalue()
    except (OSError, ValueError):  # not an image, truncated, or an unknown format
        return None, "unusable"
    lines: tuple[str, ...] = ()
    if positive:
        if any(_coco_name(d.class_id) != d.label for d in case.detections):
            return None, "unusable"  # another model's classes: the names would lie
        lines = tuple(dict.fromkeys(filter(None, (_yolo_line(d, *size) for d in case.detections))))
        if not lines:
            return None, "unusable"  # an empty file would make a confirmed case a negative
    return _Item(case.case_id, data, lines), ""


def _latest_frame(evidence: tuple[Evidence, ...]) -> Evidence | None:
    frames = [(e.captured_at, n, e) for n, e in enumerate(evidence) if e.kind is EvidenceKind.FRAME]
    return max(frames, key=lambda f: (f[0], f[1]))[2] if frames else None


def _coco_name(class_id: int) -> str | None:
    return COCO_NAMES[class_id] if 0 <= class_id < len(COCO_NAMES) else None


def _yolo_line(det: DetectionRecord, width: int, height: int) -> str | None:
    """``class cx cy w h`` normalised to the frame and clipped to it; None if no area."""
    x1, x2 = (min(max(v, 0.0), float(width)) for v in (det.box.x1, det.box.x2))
    y1, y2 = (min(max(v, 0.0), float(height)) for v in (det.box.y1, det.box.y2))
    w, h = round((x2 - x1) / width, _DIGITS), round((y2 - y1) / height, _DIGITS)
    if w <= 0 or h <= 0:
        return None
    cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
    return f"{det.class_id} {cx:.{_DIGITS}f} {cy:.{_DIGITS}f} {w:.{_DIGITS}f} {h:.{_DIGITS}f}"


def split_fraction(case_id: str) -> float:
    """Where ``case_id`` falls in [0, 1): below ``val_share`` it goes to val."""
    digest = hashlib.sha256(f"split\x1f{case_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _split(stems: list[str], val_share: float) -> dict[str, str]:
    where = {s: "val" if split_fraction(s) < val_share else "train" for s in stems}
    if len(stems) >= 2:
        for empty, other, pick in (("val", "train", min), ("train", "val", max)):
            if empty not in where.values():  # move the case nearest the threshold
                where[pick((s for s in stems if where[s] == other), key=split_fraction)] = empty
    return where


def _other(split: str) -> str:
    return "train" if split == "val" else "val"


def _label_text(lines: tuple[str, ...]) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode("ascii")


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` whole: a temporary file beside ``path``, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _remove_stale(out: Path, written: set[Path]) -> None:
    """Remove images and labels this export did not write, and Ultralytics' caches."""
    for split in SPLITS:
        (out / "labels" / f"{split}.cache").unlink(missing_ok=True)
        for kind, suffix in _KINDS:
            for path in (out / kind / split).iterdir():
                stale = path.suffix == suffix or path.name.startswith(".part-")
                if path.is_file() and stale and path not in written:
                    path.unlink()


def _data_yaml(out: Path) -> str:
    """data.yaml by hand (a fixed format); strings JSON-quoted, which YAML reads."""
    names = "".join(f"  {i}: {json.dumps(n)}\n" for i, n in enumerate(COCO_NAMES))
    return (
        "# Written by streetwatch (centre.review.dataset); a new export rewrites it.\n"
        f"path: {json.dumps(str(out))}\n"
        "train: images/train\n"
        "val: images/val\n"
        f"names:\n{names}"
    )


def check_layout(out: Path) -> list[str]:
    """Problems that would stop Ultralytics from training on ``out``; [] if none.

    data.yaml has path (this directory), train, val and names; every image has
    a label file of the same stem and vice versa, and both splits have images;
    every label line is ``class cx cy w h`` with a class id in names and four
    numbers in [0, 1]; every image opens with Pillow.
    """
    problems: list[str] = []
    class_ids = _check_data_yaml(out, problems)
    for split in SPLITS:
        images_dir, labels_dir = out / "images" / split, out / "labels" / split
        images = {p.stem: p for p in _files(images_dir)}
        labels = {p.stem: p for p in _files(labels_dir) if p.suffix == ".txt"}
        if not images:
            problems.append(f"images/{split}: no images")
        for stem in sorted(images.keys() - labels.keys()):
            problems.append(f"images/{split}/{images[stem].name}: no labels/{split}/{stem}.txt")
        for stem in sorted(labels.keys() - images.keys()):
            problems.append(f"labels/{split}/{stem}.txt: no image of that name")
        for path in sorted(labels.values()):
            problems += _check_label(path, f"labels/{split}/{path.name}", class_ids)
        for path in sorted(images.values()):
            try:
                with Image.open(path) as im:
                    im.load()
            except (OSError, ValueError) as exc:
                problems.append(f"images/{split}/{path.name}: does not open ({exc})")
    return problems


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]


def _yaml() -> Any:
    return importlib.import_module("yaml")  # pyyaml: a dependency, but without type stubs


def _check_data_yaml(out: Path, problems: list[str]) -> frozenset[int]:
    """Check data.yaml; the class ids its names define (none if it is unusable)."""
    yaml = _yaml()
    try:
        data = yaml.safe_load((out / "data.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        problems.append(f"data.yaml: cannot be read ({exc})")
        return frozenset()
    if not isinstance(data, dict):
        problems.append("data.yaml: not a mapping")
        return frozenset()
    for key in ("path", "train", "val", "names"):
        if key not in data:
            problems.append(f"data.yaml: no {key}")
    path = data.get("path")
    if "path" in data and (not isinstance(path, str) or Path(path) != out.resolve()):
        problems.append(f"data.yaml: path {path!r} is not this directory ({out.resolve()})")
    for key in SPLITS:
        if key in data and data[key] != f"images/{key}":
            problems.append(f"data.yaml: {key} is {data[key]!r}, not 'images/{key}'")
    names = data.get("names")
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return frozenset(range(len(names)))
    if isinstance(names, dict) and all(
        isinstance(k, int) and isinstance(v, str) for k, v in names.items()
    ):
        return frozenset(names)
    if "names" in data:
        problems.append("data.yaml: names is neither a list nor a mapping of id to name")
    return frozenset()


def _check_label(path: Path, shown: str, class_ids: frozenset[int]) -> list[str]:
    problems: list[str] = []
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        return [f"{shown}: cannot be read ({exc})"]
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{shown} line {n}"
        if len(fields) != 5:
            problems.append(f"{where}: {len(fields)} fields, not 5 (class cx cy w h)")
            continue
        try:
            class_id = int(fields[0])
        except ValueError:
            problems.append(f"{where}: class {fields[0]!r} is not an integer")
        else:
            if class_id not in class_ids:
                problems.append(f"{where}: class {class_id} is not in data.yaml's names")
        try:
            numbers = [float(f) for f in fields[1:]]
        except ValueError:
            problems.append(f"{where}: cx cy w h are not all numbers")
            continue
        if not all(0.0 <= v <= 1.0 for v in numbers):  # also false for nan
            problems.append(f"{where}: cx cy w h {fields[1:]} are not all within [0, 1]")
    return problems
