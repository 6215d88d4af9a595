"""Device registry: CSV and YAML import, places and per-device overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError
from core.records import GridRef, Place
from edge.sensor_rules.config import SensorRegistry, default_device_types
from edge.sensor_rules.state import StateConfig
from edge.sensor_rules.threshold import ThresholdConfig
from ingest.device_config import DeviceConfig
from ingest.device_registry import load_devices, parse_overrides
from tests.support.paths import ROOT

EXAMPLES = ROOT / "docs" / "examples"
PLACES = [Place(place_id="bridge-3", name="Bridge 3"), Place(place_id="market-east")]
HEADER = (
    "device_id,type,town,place_id,name,lat,lon,"
    "grid_large,grid_medium,grid_small,grid_micro,overrides\n"
)


def load_registry(path: Path, places: list[Place]) -> SensorRegistry:
    return SensorRegistry(default_device_types(), load_devices(path), places, source=str(path))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(err: pytest.ExceptionInfo[ConfigError]) -> dict[str, str]:
    return dict(err.value.problems)


def test_example_csv_loads_and_resolves() -> None:
    reg = load_registry(EXAMPLES / "devices.csv", places=PLACES)
    assert [d.device.device_id for d in reg] == ["wl-1", "wl-2", "smoke-101", "door-7", "bin-12"]
    wl1 = reg["wl-1"]
    assert wl1.place == PLACES[0] and wl1.type.name == "water_level"
    level = next(r for r in wl1.rules if r.rule_id == "level")
    assert isinstance(level, ThresholdConfig) and (level.enter, level.exit) == (0.8, 0.6)
    wl2 = reg["wl-2"]
    assert wl2.place == Place(
        place_id="underpass-lake-rd",
        name="Underpass at Lake Rd",
        lat=30.2741,
        lon=120.1551,
        grids=GridRef(large="town-1", medium="district-2", small="nbhd-7", micro="micro-0033"),
    )
    level2 = next(r for r in wl2.rules if r.rule_id == "level")
    assert isinstance(level2, ThresholdConfig) and level2.enter == 0.5  # the type's default
    assert reg["smoke-101"].place.place_id == "smoke-101"  # inline place named after the device
    door = next(r for r in reg["door-7"].rules if r.rule_id == "open_too_long")
    assert isinstance(door, StateConfig) and door.for_s == 300
    assert "nope" not in reg and reg.get("nope") is None and len(reg) == 5


def test_example_yaml_matches_the_csv() -> None:
    pytest.importorskip("yaml")
    from_yaml = load_devices(EXAMPLES / "devices.yaml")
    from_csv = {d.device_id: d for d in load_devices(EXAMPLES / "devices.csv")}
    assert [d.device_id for d in from_yaml] == ["wl-1", "wl-2", "smoke-101", "door-7"]
    assert from_yaml[0] == from_csv["wl-1"] and from_yaml[1] == from_csv["wl-2"]
    assert from_yaml[2].overrides == {"battery.enter": 15.0}
    assert from_yaml[3].overrides == {"open_too_long.for_s": 300.0}
    load_registry(EXAMPLES / "devices.yaml", places=PLACES)


def test_csv_bad_rows_are_all_reported_with_line_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "devices.csv",
        HEADER
        + "wl-1,water_level,t,,A,north,120,,,,,\n"  # line 2: lat not a number
        + "wl-2,water_level,t,,A,30,999,,,,,\n"  # line 3: lon out of range
        + ",water_level,t,,A,30,120,,,,,\n"  # line 4: no device_id
        + "WL 4,water_level,t,,A,30,120,,,,,\n"  # line 5: not a slug
        + "wl-5,water_level,t,,A,30,120,,,,,level.enter:0.8\n"  # line 6: bad overrides
        + "wl-6,water_level,t,,A,30,120,,,,,level.enter=high\n"  # line 7: not a number
        + "wl-1,water_level,t,,A,30,120,,,,,\n"  # line 8: fine (line 2 did not parse)
        + "wl-7,water_level,t,,A,30,120,,,,,,extra\n"  # line 9: too many cells
        + "\n# a comment row\n"
        + "wl-7,water_level,t,,A,30,120,,,,,\n",  # line 12: fine
    )
    with pytest.raises(ConfigError) as err:
        load_devices(path)
    got = problems(err)
    assert str(path) in str(err.value)
    assert got["line 2, lat"] == "not a number: 'north'"
    assert "less than or equal to 180" in got["line 3, lon"]
    assert got["line 4, device_id"] == "missing"
    assert "pattern" in got["line 5, device_id"]
    assert "rule_id.field=number" in got["line 6, overrides"]
    assert "not a number: 'high'" in got["line 7, overrides"]
    assert "cells but 12 columns" in got["line 9"]
    assert len(got) == 7  # line 8 is the first wl-1 that parsed, line 12 fine


def test_csv_duplicate_device_names_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "device_id,type,name\na-1,smoke,X\na-1,smoke,Y\n")
    with pytest.raises(ConfigError) as err:
        load_devices(path)
    assert problems(err) == {"line 3, device_id": "duplicate 'a-1' (first at line 2)"}


def test_csv_header_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown columns \['colour'\]"):
        load_devices(write(tmp_path, "a.csv", "device_id,type,colour\nx,smoke,red\n"))
    with pytest.raises(ConfigError, match=r"missing columns \['type'\]"):
        load_devices(write(tmp_path, "b.csv", "device_id,name\nx,A\n"))
    with pytest.raises(ConfigError, match="no header row"):
        load_devices(write(tmp_path, "c.csv", "# nothing\n"))
    with pytest.raises(ConfigError, match=r"\.csv, \.yaml or \.yml"):
        load_devices(write(tmp_path, "d.txt", "device_id,type\n"))
    with pytest.raises(ConfigError, match="cannot read file"):
        load_devices(tmp_path / "missing.csv")


def test_csv_minimal_columns_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes("\ufeffdevice_id,type,place_id\r\nx-1,smoke,bridge-3\r\n".encode())
    (dev,) = load_devices(path)
    assert dev == DeviceConfig(device_id="x-1", type="smoke", place_id="bridge-3")


def test_yaml_bad_items_name_their_line(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    path = write(
        tmp_path,
        "d.yaml",
        "- device_id: a-1\n"  # line 1
        "  type: smoke\n"
        "  name: X\n"
        "  lat: far\n"
        "- device_id: a-2\n"  # line 5
        "  type: smoke\n"
        "  colour: red\n"
        "- just a string\n"  # line 8
        "- device_id: a-3\n"  # line 9
        "  type: smoke\n"
        "  grid_micro: 0012\n"
        "  overrides: {battery.enter: low}\n",
    )
    with pytest.raises(ConfigError) as err:
        load_devices(path)
    assert problems(err) == {
        "line 1 (devices[0]), lat": "not a number: 'far'",
        "line 5 (devices[1]), colour": "unknown key",
        "line 8 (devices[2])": "a device must be a mapping",
        "line 9 (devices[3]), overrides": "battery.enter: not a number: 'low'",
    }


def test_yaml_keeps_text_as_written(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    path = write(
        tmp_path,
        "d.yml",
        "devices:\n  - {device_id: '007', type: smoke, grid_micro: 0012, lat: 30, name: ~}\n",
    )
    (dev,) = load_devices(path)
    assert (dev.device_id, dev.grids, dev.lat, dev.name) == ("007", {"micro": "0012"}, 30.0, "")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_devices(write(tmp_path, "e.yaml", "- [unclosed\n"))
    with pytest.raises(ConfigError, match="expected a list of devices"):
        load_devices(write(tmp_path, "f.yaml", "cameras: []\n"))
    assert load_devices(write(tmp_path, "g.yaml", "# empty\n")) == []


def test_registry_resolution_problems() -> None:
    types = default_device_types()
    devices = [
        DeviceConfig(device_id="a", type="teapot", name="x"),
        DeviceConfig(device_id="b", type="smoke"),
        DeviceConfig(device_id="c", type="smoke", place_id="nowhere"),
        DeviceConfig(device_id="d", type="smoke", place_id="bridge-3", lat=30.0),
        DeviceConfig(device_id="e", type="water_level", name="x", overrides={"level.exit": 0.9}),
        DeviceConfig(device_id="f", type="water_level", name="x", overrides={"flood.enter": 1}),
        DeviceConfig(device_id="g", type="smoke", name="x"),
        DeviceConfig(device_id="g", type="smoke", name="x"),
    ]
    with pytest.raises(ConfigError) as err:
        SensorRegistry(types, devices, PLACES, source="devices.csv")
    got = problems(err)
    assert "devices.csv" in str(err.value)
    assert got["devices[0] 'a'.type"].startswith("no device type 'teapot' (types: bin_fill,")
    assert "no place" in got["devices[1] 'b'.place_id"]
    assert "no place 'nowhere'" in got["devices[2] 'c'.place_id"]
    assert "not both" in got["devices[3] 'd'.place_id"]
    assert "must be <= enter" in got["devices[4] 'e'.overrides.level.exit"]
    assert "no rule 'flood'" in got["devices[5] 'f'.overrides.flood.enter"]
    assert got["devices[7] 'g'.device_id"] == "duplicate device_id"
    assert len(got) == 7


def test_overrides_reach_only_their_device() -> None:
    types = default_device_types()
    devices = [
        DeviceConfig(device_id="n-1", type="noise", name="x", overrides={"loud.enter": 80}),
        DeviceConfig(device_id="n-2", type="noise", name="y"),
    ]
    reg = SensorRegistry(types, devices)
    loud = [next(r for r in reg[d].rules if r.rule_id == "loud") for d in ("n-1", "n-2")]
    assert [r.enter for r in loud if isinstance(r, ThresholdConfig)] == [80.0, 75.0]
    assert types["noise"].rules[0].enter == 75.0  # type: ignore[attr-defined]


def test_parse_overrides() -> None:
    assert parse_overrides(" a.enter = 1 ; b.exit=2.5;") == {"a.enter": 1.0, "b.exit": 2.5}
    assert parse_overrides("") == {}
    for bad in ("a.enter", "=1", "a.enter=1;a.enter=2", "a.enter=nan"):
        with pytest.raises(ValueError):
            parse_overrides(bad)


def test_override_keys_must_name_rule_and_field() -> None:
    with pytest.raises(ValueError, match=r"rule_id\.field"):
        DeviceConfig(device_id="x", type="smoke", overrides={"enter": 1.0})
