#!/usr/bin/env bash
# Sets up everything streetwatch needs on this machine; safe to run again.
#   scripts/setup.sh demo   system packages + .venv with the embedded broker
#   scripts/setup.sh test   the same + dev tools + test media
# System packages (Debian), installed with apt-get when run as root;
# otherwise the script names what is missing and stops:
#   demo: mosquitto (MQTT broker), opencv-doc (the demo video vtest.avi)
#   test: + a GStreamer RTSP server (python3-gi, gst-rtsp-server and plugins)
#         for the camera-stream tests, chromium to prove evidence clips play,
#         openssl to make the MQTT TLS tests' throw-away certificates,
#         postgresql for the case store tests (a throw-away server per session)
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-demo}
case "$mode" in demo | test) ;; *) echo "usage: $0 demo|test" >&2; exit 2 ;; esac

APT_PACKAGES=(mosquitto opencv-doc)
if [ "$mode" = test ]; then
  APT_PACKAGES+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
    gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-libav chromium openssl
    postgresql)
fi
# The test photos bus.jpg and zidane.jpg (two faces, for the privacy blur)
# ship inside the ultralytics wheel; only the images are taken from it
# (ultralytics itself is not installed).
ULTRALYTICS_WHEEL_VERSION=8.4.190
BUS_JPG_SHA256=c02019c4979c191eb739ddd944445ef408dad5679acab6fd520ef9d434bfbc63
ZIDANE_JPG_SHA256=16d73869e3267a7d4ed00de8e860833bd1657c1b252e94c0c348277adc7b6edb
# A parked car with a readable plate (518x331, MIT), for the plate blur: the
# test photo in the fast-alpr source distribution; only the photo is taken.
FAST_ALPR_SDIST_VERSION=0.4.0
FAST_ALPR_SDIST_SHA256=02e3011598c5c83c260e215f7bec8cae9f67a1e9b903db1079a14bdb15d4eb0d
PLATE_PNG_SHA256=c154c3e0873fa35076ecf4f611d345c092450217fe75737b2a77183018218255

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: run as root, or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: streetwatch needs Python 3.11 or newer ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi

extra=embedded
[ "$mode" = test ] && extra=dev
stamp=.venv/.streetwatch-$extra-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "setup: installing streetwatch[$extra] into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$extra]"
  rm -f .venv/.streetwatch-"$extra"-*
  touch "$stamp"
fi

if [ "$mode" = test ]; then
  media=.cache/media
  photos="$BUS_JPG_SHA256  $media/bus.jpg
$ZIDANE_JPG_SHA256  $media/zidane.jpg"
  if ! echo "$photos" | sha256sum -c --quiet >/dev/null 2>&1; then
    echo "setup: fetching test photos bus.jpg, zidane.jpg from the ultralytics $ULTRALYTICS_WHEEL_VERSION wheel"
    mkdir -p .cache/wheels "$media"
    .venv/bin/python -m pip download -q --no-deps -d .cache/wheels \
      "ultralytics==$ULTRALYTICS_WHEEL_VERSION"
    .venv/bin/python - "$ULTRALYTICS_WHEEL_VERSION" "$media" <<'PY'
import sys, zipfile, pathlib
version, out = sys.argv[1], pathlib.Path(sys.argv[2])
wheel = next(pathlib.Path(".cache/wheels").glob(f"ultralytics-{version}-*.whl"))
with zipfile.ZipFile(wheel) as z:
    for name in ("bus.jpg", "zidane.jpg"):
        (out / name).write_bytes(z.read(f"ultralytics/assets/{name}"))
PY
    echo "$photos" | sha256sum -c --quiet
  fi
  plate="$PLATE_PNG_SHA256  $media/plate.png"
  if ! echo "$plate" | sha256sum -c --quiet >/dev/null 2>&1; then
    echo "setup: fetching the test photo plate.png from the fast-alpr $FAST_ALPR_SDIST_VERSION sdist"
    mkdir -p .cache/sdists "$media"
    # (pip reads the sdist's metadata with its build backend, hatchling, from PyPI)
    .venv/bin/python -m pip download -q --no-deps --no-binary :all: -d .cache/sdists \
      "fast-alpr==$FAST_ALPR_SDIST_VERSION"
    sdist=".cache/sdists/fast_alpr-$FAST_ALPR_SDIST_VERSION.tar.gz"
    echo "$FAST_ALPR_SDIST_SHA256  $sdist" | sha256sum -c --quiet
    tar -xzOf "$sdist" "fast_alpr-$FAST_ALPR_SDIST_VERSION/assets/test_image.png" >"$media/plate.png"
    echo "$plate" | sha256sum -c --quiet
  fi
  # A YOLOv8n ONNX (random weights, exported offline in its own venv) for
  # the yolo-onnx decoder tests; a no-op when it is up to date.
  scripts/export_yolo_test_model.sh
fi
echo "setup: ok ($mode)"
