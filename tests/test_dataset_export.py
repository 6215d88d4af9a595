"""Reviewed cases exported as a YOLO dataset: real JPEGs in a real evidence store.

Rejected ``wrong_object`` cases become images with empty labels (hard
negatives); confirmed cases, when asked for, become images with one
normalised box per detection; what cannot be used is skipped and counted; the
split does not move between runs; ``check_layout`` accepts the export and
names what is wrong with a broken copy.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from centre.evidence_store import FilesystemEvidenceStore
from centre.review.dataset import MARKER, check_layout, export_dataset
from core.coco import COCO_CLASSES
from core.records import (
    BoundingBox,
    Case,
    CaseStatus,
    DetectionRecord,
    Evidence,
    EvidenceKind,
)
from tests.support.cases import T0, make_case
from tests.support.paths import ROOT

W, H = 640, 480


def jpeg(seed: int, size: tuple[int, int] = (W, H)) -> bytes:
    """A real JPEG: a grey street with a coloured block where ``seed`` puts it."""
    image = Image.new("RGB", size, (90, 90, 90))
    draw = ImageDraw.Draw(image)
    x = 20 + (seed * 37) % (size[0] - 120)
    draw.rectangle((x, 100, x + 100, 160), fill=(200, 30 + seed % 200, 40))
    draw.line((0, size[1] - 40, size[0], size[1] - 40), fill=(250, 250, 250), width=4)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def stored(store: FilesystemEvidenceStore, data: bytes, kind: EvidenceKind, n: int) -> Evidence:
    sha = hashlib.sha256(data).hexdigest()
    store.put(sha, data, "image/jpeg")
    return Evidence(
        kind=kind,
        sha256=sha,
        media_type="image/jpeg",
        captured_at=T0 + timedelta(seconds=n),
        size=len(data),
    )


def det(
    label: str, box: tuple[float, float, float, float], class_id: int | None = None
) -> DetectionRecord:
    x1, y1, x2, y2 = box
    return DetectionRecord(
        label=label,
        class_id=COCO_CLASSES.index(label) if class_id is None else class_id,
        score=0.8,
        box=BoundingBox(x1=x1, y1=y1, x2=x2, y2=y2),
    )


def reviewed(
    site: str,
    status: CaseStatus,
    reason: str | None = None,
    *,
    evidence: tuple[Evidence, ...] = (),
    detections: tuple[DetectionRecord, ...] = (),
) -> Case:
    case = make_case(site, status=status)
    update = {"reason": reason, "evidence": evidence, "detections": detections, "version": 2}
    return Case.model_validate({**case.model_dump(), **update})


@pytest.fixture
def store(tmp_path: Path) -> FilesystemEvidenceStore:
    return FilesystemEvidenceStore(tmp_path / "store")


def framed(store: FilesystemEvidenceStore, seed: int) -> tuple[Evidence, ...]:
    """A snapshot (drawn on) and the frame, as an alert carries them."""
    return (
        stored(store, jpeg(seed + 10_000), EvidenceKind.SNAPSHOT, seed),
        stored(store, jpeg(seed), EvidenceKind.FRAME, seed),
    )


def where(out: Path) -> dict[str, str]:
    """Case id -> split, from the files an export wrote."""
    return {p.stem: p.parent.name for p in out.glob("images/*/*.jpg")}


def test_negatives_get_empty_labels_and_the_rest_is_counted(
    store: FilesystemEvidenceStore, tmp_path: Path
) -> None:
    car = (det("car", (10, 10, 200, 200)),)
    negatives = [
        reviewed(
            f"n{i}", CaseStatus.REJECTED, "wrong_object", evidence=framed(store, i), detections=car
        )
        for i in range(3)
    ]
    snapshot_only = framed(store, 50)[:1]
    not_in_store = Evidence(
        kind=EvidenceKind.FRAME,
        sha256=hashlib.sha256(b"never uploaded").hexdigest(),
        media_type="image/jpeg",
        captured_at=T0,
    )
    cases = [
        *negatives,
        reviewed("nf", CaseStatus.REJECTED, "wrong_object", evidence=snapshot_only),
        reviewed("mf", CaseStatus.REJECTED, "wrong_object", evidence=(not_in_store,)),
        reviewed("nv", CaseStatus.REJECTED, "not_a_violation", evidence=framed(store, 60)),
        reviewed("pm", CaseStatus.REJECTED, "permitted", evidence=framed(store, 61)),
        reviewed("ok", CaseStatus.CLOSED, evidence=framed(store, 62), detections=car),
        reviewed("op", CaseStatus.FILED, evidence=framed(store, 63), detections=car),
        negatives[0].model_copy(update={"version": 1}),  # an older version of a case: once
    ]
    out = tmp_path / "ds"

    summary = export_dataset(cases, store, out)

    assert summary.out == out.resolve()
    assert (summary.images, summary.negatives, summary.positives, summary.labels) == (3, 3, 0, 0)
    assert summary.train + summary.val == 3 and summary.val >= 1
    assert summary.skipped_no_frame == 1
    assert summary.skipped_missing_file == 1
    assert summary.skipped_other_reason == 2
    assert summary.skipped_unreviewed == 2  # closed without include_confirmed, and filed
    assert summary.skipped_unusable == 0
    assert set(where(out)) == {c.case_id for c in negatives}
    for case in negatives:
        split = where(out)[case.case_id]
        assert (out / "labels" / split / f"{case.case_id}.txt").read_bytes() == b""
        frame = next(e for e in case.evidence if e.kind is EvidenceKind.FRAME)
        image = (out / "images" / split / f"{case.case_id}.jpg").read_bytes()
        assert hashlib.sha256(image).hexdigest() == frame.sha256  # the frame, not the snapshot
    assert (out / MARKER).is_file()
    assert check_layout(out) == []


def test_more_reasons_make_more_negatives(store: FilesystemEvidenceStore, tmp_path: Path) -> None:
    cases = [
        reviewed("a", CaseStatus.REJECTED, "wrong_object", evidence=framed(store, 1)),
        reviewed("b", CaseStatus.REJECTED, "camera_fault", evidence=framed(store, 2)),
        reviewed("c", CaseStatus.REJECTED, None, evidence=framed(store, 3)),
    ]
    summary = export_dataset(
        cases, store, tmp_path / "ds", reasons=frozenset({"wrong_object", "camera_fault"})
    )
    assert (summary.negatives, summary.skipped_other_reason) == (2, 1)


def test_the_latest_frame_is_used(store: FilesystemEvidenceStore, tmp_path: Path) -> None:
    older, newer = (stored(store, jpeg(s), EvidenceKind.FRAME, s) for s in (1, 2))
    case = reviewed("a", CaseStatus.REJECTED, "wrong_object", evidence=(newer, older))
    export_dataset([case], store, tmp_path / "ds")
    (image,) = (tmp_path / "ds").glob("images/*/*.jpg")
    assert hashlib.sha256(image.read_bytes()).hexdigest() == newer.sha256


def test_confirmed_cases_are_positives_with_normalised_boxes(
    store: FilesystemEvidenceStore, tmp_path: Path
) -> None:
    width, height = 800, 600
    frame = stored(store, jpeg(7, (width, height)), EvidenceKind.FRAME, 7)
    detections = (
        det("car", (80, 60, 400, 300)),  # inside the frame
        det("person", (700, 500, 900, 700)),  # hangs over the bottom right corner
        det("truck", (100, 100, 100, 200)),  # no width: dropped
        det("bus", (850, 10, 950, 50)),  # wholly outside: no area once clipped, dropped
    )
    confirmed = reviewed("p", CaseStatus.DISPATCHED, evidence=(frame,), detections=detections)
    no_box = reviewed("q", CaseStatus.CLOSED, evidence=framed(store, 8), detections=detections[2:])
    other_model = reviewed(
        "r",
        CaseStatus.VERIFIED,
        evidence=framed(store, 9),
        detections=(det("car", (1, 1, 9, 9), 5),),
    )
    out = tmp_path / "ds"

    summary = export_dataset([confirmed, no_box, other_model], store, out, include_confirmed=True)

    assert (summary.positives, summary.labels, summary.skipped_unusable) == (1, 2, 2)
    (label,) = out.glob(f"labels/*/{confirmed.case_id}.txt")
    rows = [line.split() for line in label.read_text().splitlines()]
    expected = [
        # car: centre (240, 180), size 320 x 240
        (2, 240 / width, 180 / height, 320 / width, 240 / height),
        # person clipped to (700, 500, 800, 600): centre (750, 550), size 100 x 100
        (0, 750 / width, 550 / height, 100 / width, 100 / height),
    ]
    assert len(rows) == len(expected)
    for row, (class_id, *numbers) in zip(rows, expected, strict=True):
        assert int(row[0]) == class_id
        assert [float(v) for v in row[1:]] == pytest.approx(numbers, abs=1e-6)
    # one image cannot fill two splits: the only problem
    assert check_layout(out) in (["images/train: no images"], ["images/val: no images"])


@pytest.mark.parametrize("count", [2, 3, 25])
def test_the_split_is_stable_and_val_is_never_empty(
    store: FilesystemEvidenceStore, tmp_path: Path, count: int
) -> None:
    cases = [
        reviewed(f"s{i}", CaseStatus.REJECTED, "wrong_object", evidence=framed(store, i))
        for i in range(count)
    ]
    first = export_dataset(cases, store, tmp_path / "a", val_share=0.01)
    again = export_dataset(list(reversed(cases)), store, tmp_path / "a", val_share=0.01)
    elsewhere = export_dataset(cases, store, tmp_path / "b", val_share=0.01)

    assert first == again
    assert where(tmp_path / "a") == where(tmp_path / "b")
    assert len(where(tmp_path / "a")) == count
    assert first.val >= 1 and first.train >= 1
    assert elsewhere.val == first.val

    # a case keeps its split when more cases are exported beside it (20% of 25 fills val)
    if count == 25:
        base = export_dataset(cases[:20], store, tmp_path / "c")
        more = export_dataset(cases, store, tmp_path / "d")
        assert base.val >= 1
        before, after = where(tmp_path / "c"), where(tmp_path / "d")
        assert all(after[k] == v for k, v in before.items())
        assert more.val >= base.val


def test_a_rerun_rewrites_and_removes_what_is_no_longer_exported(
    store: FilesystemEvidenceStore, tmp_path: Path
) -> None:
    cases = [
        reviewed(f"r{i}", CaseStatus.REJECTED, "wrong_object", evidence=framed(store, i))
        for i in range(5)
    ]
    out = tmp_path / "ds"
    export_dataset(cases, store, out)
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (out / "labels" / "train.cache").write_bytes(b"ultralytics cache")

    export_dataset(cases, store, out)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files

    gone = cases[0].case_id
    summary = export_dataset(cases[1:], store, out)
    assert summary.images == 4
    assert gone not in where(out)
    assert not list(out.glob(f"labels/*/{gone}.txt"))
    assert check_layout(out) == []


def test_a_directory_that_is_not_an_export_is_refused(
    store: FilesystemEvidenceStore, tmp_path: Path
) -> None:
    case = reviewed("a", CaseStatus.REJECTED, "wrong_object", evidence=framed(store, 1))
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(jpeg(1))
    with pytest.raises(ValueError, match="not a dataset this exporter wrote"):
        export_dataset([case], store, foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["holiday.jpg"]

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        export_dataset([case], store, a_file)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_dataset([case], store, empty).images == 1

    with pytest.raises(ValueError, match="val_share"):
        export_dataset([case], store, tmp_path / "x", val_share=0.0)


def test_check_layout_names_what_is_broken(store: FilesystemEvidenceStore, tmp_path: Path) -> None:
    car = (det("car", (64, 48, 320, 240)),)
    cases = [
        reviewed(f"c{i}", CaseStatus.CLOSED, evidence=framed(store, i), detections=car)
        for i in range(4)
    ]
    out = tmp_path / "ds"
    export_dataset(cases, store, out, include_confirmed=True)
    assert check_layout(out) == []
    data = importlib.import_module("yaml").safe_load((out / "data.yaml").read_text())
    assert data["path"] == str(out.resolve())
    assert (data["train"], data["val"]) == ("images/train", "images/val")
    assert data["names"] == dict(enumerate(COCO_CLASSES))

    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    labels = sorted(broken.glob("labels/*/*.txt"))
    labels[0].write_text("2 0.5 1.5 0.2 0.2\n")
    labels[1].unlink()
    (broken / "labels" / labels[1].parent.name / "stray.txt").write_text("80 0.5 0.5 0.1\n")

    problems = check_layout(broken)

    def about(name: str) -> list[str]:
        return [p for p in problems if name in p]

    assert any("not all within [0, 1]" in p for p in about(labels[0].name))
    assert any(f"no labels/{labels[1].parent.name}/{labels[1].name}" in p for p in problems)
    assert any("no image of that name" in p for p in about("stray.txt"))
    assert any("4 fields" in p for p in about("stray.txt"))
    assert any("is not this directory" in p for p in about("data.yaml"))  # path still says out
    assert len(problems) == 5


#: the isolated venv ``scripts/export_yolo_test_model.sh`` makes (``make test`` runs it):
#: ultralytics 8.4.190 on a CPU torch, kept out of the project's venv
ULTRALYTICS_PYTHON = ROOT / ".cache" / "yolo-export-venv" / "bin" / "python"
READ_BACK = """
import json, sys
import ultralytics.data.utils as utils
from ultralytics.data.dataset import YOLODataset
# check_font fetches a font for plots (and needs matplotlib): no part of the dataset check
utils.check_font = lambda *args, **kwargs: None
data = utils.check_det_dataset(sys.argv[1])
seen = {}
for split in ("train", "val"):
    ds = YOLODataset(img_path=data[split], data=data, task="detect", augment=False)
    for lb in ds.labels:
        name = lb["im_file"].rsplit("/", 1)[-1]
        seen[name] = [split, lb["shape"], lb["cls"].ravel().astype(int).tolist()]
print(json.dumps({"nc": data["nc"], "images": seen}))
"""


def test_ultralytics_reads_the_export_as_a_detection_dataset(
    store: FilesystemEvidenceStore, tmp_path: Path
) -> None:
    """ultralytics' own dataset check and label loader, in its own venv."""
    if not ULTRALYTICS_PYTHON.is_file():
        pytest.fail(f"{ULTRALYTICS_PYTHON} is missing: run scripts/export_yolo_test_model.sh")
    negatives = [
        reviewed(f"n{i}", CaseStatus.REJECTED, "wrong_object", evidence=framed(store, i))
        for i in range(3)
    ]
    positives = [
        reviewed(
            f"p{i}",
            CaseStatus.DISPATCHED,
            evidence=framed(store, 10 + i),
            detections=(det("car", (100, 80, 300, 200)), det("person", (400, 50, 450, 220))),
        )
        for i in range(3)
    ]
    out = tmp_path / "ds"
    export_dataset([*negatives, *positives], store, out, include_confirmed=True)
    env = {
        **os.environ,
        "YOLO_OFFLINE": "true",
        "YOLO_AUTOINSTALL": "false",
        "YOLO_CONFIG_DIR": str(tmp_path / "ultralytics-settings"),
    }
    done = subprocess.run(
        [str(ULTRALYTICS_PYTHON), "-c", READ_BACK, str(out / "data.yaml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    read = json.loads(done.stdout.strip().splitlines()[-1])
    assert read["nc"] == 80
    images = read["images"]
    assert len(images) == 6 and {split for split, _, _ in images.values()} == {"train", "val"}
    for case in negatives:
        assert images[f"{case.case_id}.jpg"][2] == []  # a background image
    for case in positives:
        _, shape, classes = images[f"{case.case_id}.jpg"]
        assert shape == [H, W] and sorted(classes) == [0, 2]  # person, car
