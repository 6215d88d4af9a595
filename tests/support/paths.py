"""Where the tests find the repository and the real media they run on."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")  # Debian's opencv-doc
VTEST = OPENCV_DATA / "vtest.avi"  # 768x576, 10 fps: a fixed camera over a pedestrian street
BUS_JPG = ROOT / ".cache" / "media" / "bus.jpg"  # fetched by scripts/setup.sh test
ZIDANE_JPG = ROOT / ".cache" / "media" / "zidane.jpg"  # two faces; scripts/setup.sh test
PLATE_PNG = ROOT / ".cache" / "media" / "plate.png"  # a parked car's plate; scripts/setup.sh test
