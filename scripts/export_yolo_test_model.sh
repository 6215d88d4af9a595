#!/usr/bin/env bash
# Makes the YOLO test model for tests/test_yolo_onnx.py, offline:
#   .cache/models/yolov8n-random.onnx         YOLOv8n, random weights (seed 0), ONNX
#   .cache/models/yolov8n-random.onnx.sha256  its digest (sha256sum format; the test reads it)
#   .cache/models/yolov8n-random.names        the 80 COCO class names, one per line
#   .cache/models/yolov8n-random.stamp        recipe digest + model digest
# by running ultralytics' YOLO("yolov8n.yaml").export(format="onnx") (the
# architecture comes from a yaml inside the ultralytics wheel: no weights are
# downloaded) in an isolated venv, .cache/yolo-export-venv. Not the project's
# .venv: ultralytics wants opencv-python, which would overwrite the cv2 of
# opencv-python-headless there.
#
# Idempotent: does nothing (but print the digest) when the stamp matches this
# recipe and the model's digest. Fresh run on the 2-core dev machine: about
# 1 minute; the venv takes about 1.2 GB (torch is 750 MB of it).
#   PYTHON=python3.11 scripts/export_yolo_test_model.sh   to choose the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."

# Every package the export needs, exact, installed with --no-deps so pip adds
# nothing else (ultralytics' own requirement list would pull opencv-python,
# matplotlib, polars, a CUDA torch ...).
REQUIREMENTS=(
  # The CPU build that lies on this machine (pip's find-links); a plain
  # `torch` would download a multi-GB CUDA build.
  "torch==2.13.0"
  # torch's own requirements, at the versions pip resolved for it.
  "filelock==4.2.11"
  "typing-extensions==4.16.0"
  "sympy==1.14.0"
  "mpmath==1.3.0"
  "networkx==3.6.1"
  "jinja2==3.1.6"
  "markupsafe==3.0.4"
  "fsspec==2026.9.0"
  # The exporter; the release whose wheel also gives the tests bus.jpg.
  "ultralytics==8.4.190"
  # Only its metadata is read: ultralytics calls
  # importlib.metadata.version("torchvision") at import and checks that it
  # pairs with torch 2.13 (0.28). It is never imported by a detection ONNX
  # export; PyPI's build would not import beside the local CPU torch
  # ("operator torchvision::nms does not exist").
  "torchvision==0.28.0"
  # Imported by ultralytics at import; the versions the project's .venv uses.
  "numpy==2.4.6"
  "opencv-python-headless==5.0.0.93"
  "pillow==13.0.0"
  # Reads yolov8n.yaml.
  "pyyaml==6.0.3"
  # The ONNX writer (opset 18 is ultralytics' choice for torch 2.13) and its
  # requirements.
  "onnx==1.23.2"
  "protobuf==7.36.2"
  "ml-dtypes==0.6.0"
)

VENV=.cache/yolo-export-venv
OUT_DIR=.cache/models
MODEL=$OUT_DIR/yolov8n-random.onnx
STAMP=$OUT_DIR/yolov8n-random.stamp
HELPER=scripts/export_yolo_test_model.py
# The digest two fresh runs gave with the pins above (seeded weights, the
# export date stripped); a different one is reported, not fatal.
EXPECTED_SHA256=47944b549bae2addbd6669b189eed3598e3ed38a5640ac559830e7084610e194

recipe=$(cat "$0" "$HELPER" core/coco.py | sha256sum | cut -c1-64)
if [ -f "$STAMP" ] && [ -f "$MODEL.sha256" ] && [ -f "${MODEL%.onnx}.names" ] \
  && [ "$(sed -n 1p "$STAMP")" = "recipe $recipe" ] \
  && (cd "$OUT_DIR" && sha256sum -c --quiet "$(basename "$MODEL").sha256" 2>/dev/null); then
  echo "export_yolo_test_model: up to date: $MODEL sha256 $(cut -c1-64 "$MODEL.sha256")"
  exit 0
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "export_yolo_test_model: needs Python 3.11 (the local torch build is cp311);" \
    "$PYTHON is $("$PYTHON" --version 2>&1)" >&2
  exit 1
fi

start=$(date +%s)
req_digest=$(printf '%s\n' "${REQUIREMENTS[@]}" | sha256sum | cut -c1-16)
if [ ! -f "$VENV/.requirements-$req_digest" ]; then
  echo "export_yolo_test_model: creating $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --no-deps --only-binary=:all: "${REQUIREMENTS[@]}"
  touch "$VENV/.requirements-$req_digest"
fi

mkdir -p "$OUT_DIR"
# No network probe, no pip installs at run time, settings file inside the venv.
YOLO_OFFLINE=true YOLO_AUTOINSTALL=false YOLO_CONFIG_DIR="$PWD/$VENV/ultralytics-settings" \
  "$VENV/bin/python" "$HELPER" "$MODEL"
sha=$(sha256sum "$MODEL" | cut -c1-64)
printf '%s  %s\n' "$sha" "$(basename "$MODEL")" >"$MODEL.sha256"
printf 'recipe %s\nsha256 %s\n' "$recipe" "$sha" >"$STAMP"

echo "export_yolo_test_model: wrote $MODEL ($(stat -c %s "$MODEL") bytes) in $(($(date +%s) - start)) s"
echo "export_yolo_test_model: sha256 $sha"
if [ "$sha" != "$EXPECTED_SHA256" ]; then
  echo "export_yolo_test_model: note: differs from the digest recorded in this script" \
    "($EXPECTED_SHA256); the tests use the new one from $MODEL.sha256"
fi
echo "export_yolo_test_model: venv $VENV is $(du -sh "$VENV" | cut -f1)"
