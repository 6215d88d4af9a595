"""A bad config stops the CLI with a message naming the field, exit != 0, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streetwatch.config import ConfigError, load_config

GOOD = """
[[places]]
place_id = "bay"

[[cameras]]
camera_id = "cam-1"
url = "video.mp4"

[[cameras.zones]]
zone_id = "z1"
place = "bay"
polygon = [[0, 0], [10, 0], [10, 10]]

[[cameras.rules]]
type = "illegal_parking"
rule_id = "r1"
zone = "z1"
"""

CASES = {
    "wrong type": (
        GOOD.replace('url = "video.mp4"', 'url = "video.mp4"\nanalysis_fps = "fast"'),
        "cameras[0].analysis_fps",
        "valid number",
    ),
    "unknown key": (
        GOOD.replace('rule_id = "r1"', 'rule_id = "r1"\ndwell_seconds = 5'),
        "cameras[0].rules[0].dwell_seconds",
        "unknown key",
    ),
    "missing zone (dangling)": (
        GOOD.replace('zone = "z1"', 'zone = "z9"'),
        "cameras[0].rules[0].zone",
        "no zone 'z9'",
    ),
    "missing zone (absent)": (
        GOOD.replace('zone = "z1"\n', ""),
        "cameras[0].rules[0].zone",
        "Field required",
    ),
    "unknown place": (
        GOOD.replace('place = "bay"', 'place = "gate"'),
        "cameras[0].zones[0].place",
        "no place 'gate'",
    ),
    "not toml": ("[[cameras]\n", "", "not valid TOML"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_cli_names_the_bad_field(name: str, tmp_path: Path) -> None:
    text, field, words = CASES[name]
    path = tmp_path / "edge.toml"
    path.write_text(text)
    run = subprocess.run(
        [sys.executable, "-m", "streetwatch.cli", "edge", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert field in run.stderr, run.stderr
    assert words in run.stderr, run.stderr


def test_good_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(GOOD)
    cfg = load_config(path)
    assert cfg.cameras[0].rules[0].zone == "z1"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(
        GOOD.replace('zone = "z1"', 'zone = "z9"').replace(
            'place = "bay"\npoly', 'place = "x"\npoly'
        )
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    paths = [p for p, _ in err.value.problems]
    assert paths == ["cameras[0].zones[0].place", "cameras[0].rules[0].zone"]


def test_model_needs_its_digest(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text('[detector]\nmodel = "other.onnx"\n')
    with pytest.raises(ConfigError, match="sha256"):
        load_config(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(tmp_path / "nope.toml")
