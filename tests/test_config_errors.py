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


def config_refused(*args: str) -> str:
    """Run the CLI with ``args``; it must refuse the config (exit 2, no traceback):
    its stderr."""
    run = subprocess.run(
        [sys.executable, "-m", "streetwatch.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    return run.stderr


@pytest.mark.parametrize("name", sorted(CASES))
def test_cli_names_the_bad_field(name: str, tmp_path: Path) -> None:
    text, field, words = CASES[name]
    path = tmp_path / "edge.toml"
    path.write_text(text)
    stderr = config_refused("edge", "--config", str(path))
    assert field in stderr, stderr
    assert words in stderr, stderr


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


DISPATCH_ONLY = """
[kafka]
bootstrap = "127.0.0.1:9092"

[dispatch]
app_id = "centre"

[store]
url = "sqlite:///var/cases.db"

[routing]
default_owner = "城运中心"

[sla]
timezone = "Asia/Shanghai"
"""

DISPATCH_CASES = {
    "unknown time zone": (
        DISPATCH_ONLY.replace('"Asia/Shanghai"', '"Mars/Olympus"'),
        "sla.timezone",
        "unknown time zone 'Mars/Olympus'",
    ),
    "urgency out of range": (
        DISPATCH_ONLY.replace(
            'default_owner = "城运中心"',
            'default_owner = "城运中心"\nurgency = { illegal_stall = 7 }',
        ),
        "routing.urgency.illegal_stall",
        "less than or equal to 4",
    ),
    "kafka address": (
        DISPATCH_ONLY.replace('"127.0.0.1:9092"', '"localhost"'),
        "kafka.bootstrap",
        "'localhost' is not host:port",
    ),
    "a day both holiday and workday": (
        DISPATCH_ONLY.replace(
            'timezone = "Asia/Shanghai"',
            'timezone = "Asia/Shanghai"\nextra_holidays = [2027-01-01]\n'
            "extra_workdays = [2027-01-01]",
        ),
        "sla",
        "2027-01-01: both in extra_holidays and extra_workdays",
    ),
    "open311 endpoint": (
        DISPATCH_ONLY + '\n[open311]\nendpoint = "ftp://host/open311"\n',
        "open311.endpoint",
        "is not an http(s):// URL",
    ),
    "a typo in a section name": (
        DISPATCH_ONLY.replace("[routing]", "[routng]"),
        "routng",
        "unknown key",
    ),
}


@pytest.mark.parametrize("name", sorted(DISPATCH_CASES))
def test_the_dispatch_service_checks_every_field(name: str, tmp_path: Path) -> None:
    text, field, words = DISPATCH_CASES[name]
    path = tmp_path / "dispatch.toml"
    path.write_text(text)
    stderr = config_refused("dispatch", "--config", str(path))
    assert f"  {field}: " in stderr and words in stderr, stderr


def test_check_config_names_an_unknown_sla_time_zone(tmp_path: Path) -> None:
    path = tmp_path / "all.toml"
    path.write_text(GOOD + '\n[sla]\ntimezone = "Mars/Olympus"\n')
    stderr = config_refused("check-config", str(path))
    assert "sla.timezone: Value error, unknown time zone 'Mars/Olympus'" in stderr


def test_the_example_dispatch_file_is_the_dispatch_service_alone() -> None:
    from pipeline.config import DispatchServiceConfig
    from streetwatch.service_config import load_dispatch_config

    path = Path(__file__).resolve().parent.parent / "docs" / "examples" / "dispatch.toml"
    cfg = load_dispatch_config(path)
    assert type(cfg) is DispatchServiceConfig
    assert cfg.site_map().site_of(cfg.places[0].to_place()) == "loading-bay-b"
