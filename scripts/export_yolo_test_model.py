"""Export YOLOv8n with random weights to ONNX; run by export_yolo_test_model.sh.

    python scripts/export_yolo_test_model.py OUT.onnx

Runs inside the isolated export venv (torch + ultralytics), not the project's
.venv. Writes ``OUT.onnx`` and, beside it, ``OUT.names`` (the 80 COCO class
names of ``core/coco.py``, one per line, the model's class order).

``YOLO("yolov8n.yaml")`` builds the architecture from the yaml inside the
ultralytics wheel: nothing is downloaded. The weights are torch's random
initialisation, seeded so that two runs give the same numbers. ultralytics
stores the export time in the file's metadata (``date``); it is removed so the
file's sha256 is the same on every run with the same pinned packages. The
graph: input ``images`` ``[1, 3, 640, 640]`` float32, output ``output0``
``[1, 84, 8400]`` (cx, cy, w, h + 80 sigmoid class scores per anchor).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = 0
OPSET = 18


def main(out: Path) -> None:
    sys.path.insert(0, str(ROOT))
    import onnx
    import torch
    from ultralytics import YOLO

    from core.coco import COCO_CLASSES  # plain data module, no dependencies

    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # ultralytics writes yolov8n.onnx into the working directory
        exported = Path(YOLO("yolov8n.yaml").export(format="onnx", simplify=False, opset=OPSET))
        model = onnx.load(str(exported))
        keep = [p for p in model.metadata_props if p.key != "date"]
        del model.metadata_props[:]
        model.metadata_props.extend(keep)
        onnx.checker.check_model(model)
        shapes = [[d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output]
        if shapes != [[1, 4 + len(COCO_CLASSES), 8400]]:
            raise SystemExit(f"unexpected output shapes {shapes}")
        tmp_out = out.with_suffix(".onnx.tmp")
        onnx.save(model, str(tmp_out))
        tmp_out.replace(out)
    names = out.with_suffix(".names")
    names.write_text("".join(f"{n}\n" for n in COCO_CLASSES), encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
