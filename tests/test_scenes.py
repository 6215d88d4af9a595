"""Rules and motion gating on real footage and real people composed into the scene
(see tests/support/scenes.py for how each video is made)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from core.records import EvidenceKind
from detectors.nanodet import NanoDet
from edge.snapshot import FIRING_COLOUR, ZONE_COLOUR
from edge.zones import Zone
from streetwatch.config import Config, parse_config
from streetwatch.replay import ReplayResult, replay
from tests.support import scenes
from tests.support.paths import VTEST

pytestmark = pytest.mark.integration
START = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def config(
    tmp: Path, rules: list[dict[str, Any]], motion: bool = True, regions: bool = False
) -> Config:
    return parse_config(
        {
            "edge": {"evidence_dir": str(tmp / "evidence")},
            "places": [{"place_id": "bay"}, {"place_id": "crossing"}],
            "cameras": [
                {
                    "camera_id": "cam-1",
                    "url": "unused",
                    "analysis_fps": 2.0,
                    "motion": {"enabled": motion, "regions": regions},
                    "zones": [
                        {"zone_id": "bay", "place": "bay", "polygon": scenes.BAY},
                        {"zone_id": "crossing", "place": "crossing", "polygon": scenes.CROSSING},
                    ],
                    "rules": rules,
                }
            ],
        }
    )


def run(
    tmp: Path,
    video: Path,
    rules: list[dict[str, Any]],
    motion: bool = True,
    regions: bool = False,
) -> ReplayResult:
    return replay(config(tmp, rules, motion, regions), video, tmp / "out", start=START)


PARKING = {
    "type": "illegal_parking",
    "rule_id": "bay",
    "zone": "bay",
    "dwell_s": 10.0,
    "repeat_every_s": 10.0,
}
CROWD = {
    "type": "crowd_gathering",
    "rule_id": "crowd",
    "zone": "crossing",
    "min_people": 6,
    "settle_s": 3.0,
    "dwell_s": 15.0,
    "repeat_every_s": 10.0,
}


def first_alert_after(result: ReplayResult) -> float:
    return (result.alerts[0].observed_at - START).total_seconds()


def test_parked_van_is_one_case_after_the_dwell(tmp_path: Path) -> None:
    result = run(tmp_path, VTEST, [PARKING])
    cases = list(result.table.cases.values())
    assert [c.category for c in cases] == ["illegal_parking"]
    assert cases[0].alert_count > 1
    assert cases[0].first_seen == START  # the van is there from the first frame
    assert 10.0 <= first_alert_after(result) <= 11.0
    # the tracker names the van (and car) in every alert
    for alert in result.alerts:
        assert alert.detections and all(d.track_id is not None for d in alert.detections)


def test_snapshot_shows_the_zone_and_the_boxes(tmp_path: Path) -> None:
    result = run(tmp_path, VTEST, [PARKING])
    alert = result.alerts[0]
    snap = next(e for e in alert.evidence if e.kind is EvidenceKind.SNAPSHOT)
    image = cv2.imread(snap.path)
    assert image is not None and image.shape == (576, 768, 3)

    def colour_near(x: float, y: float, bgr: tuple[int, int, int]) -> bool:
        patch = image[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2].reshape(-1, 3)
        return bool((np.abs(patch.astype(int) - bgr).max(axis=1) < 60).any())

    # the zone's outline: the middle of its bottom edge (600..768, y=130)
    assert colour_near(684, 130, ZONE_COLOUR)
    # each vehicle that fired: its box outline, in red, at the middle of its left edge
    assert alert.detections
    for d in alert.detections:
        assert colour_near(d.box.x1, (d.box.y1 + d.box.y2) / 2, FIRING_COLOUR), d
    # the clip of the episode's first alert
    assert any(e.kind is EvidenceKind.CLIP for e in alert.evidence)


def test_detections_blanked_every_third_frame_still_one_case(tmp_path: Path) -> None:
    # analysed every 5th frame (10 fps -> 2 fps); blanking every 15th frame of the
    # video blanks every third analysed frame
    video = scenes.blanked(tmp_path / "blanked.avi", lambda i: i % 15 == 14)
    result = run(tmp_path, video, [PARKING])
    assert result.analysed == 159
    cases = list(result.table.cases.values())
    assert len(cases) == 1 and cases[0].first_seen == START


def test_detections_gone_for_four_seconds_still_one_case(tmp_path: Path) -> None:
    # 4 s of black from t=15 s, within the rule's 5 s grace: the dwell survives
    video = scenes.blanked(tmp_path / "gap.avi", lambda i: 150 <= i < 190)
    result = run(tmp_path, video, [PARKING])
    cases = list(result.table.cases.values())
    assert len(cases) == 1 and cases[0].first_seen == START
    observed = [(a.observed_at - START).total_seconds() for a in result.alerts]
    assert observed[:2] == [10.0, 20.0]  # no new episode after the gap


@pytest.mark.parametrize("regions", [False, True], ids=["whole-frames", "regions"])
def test_motion_gating_finds_the_same_cases_on_a_fraction_of_frames(
    tmp_path: Path, regions: bool
) -> None:
    video = scenes.static_scene(tmp_path / "static.avi")
    gated = run(tmp_path / "gated", video, [PARKING, CROWD], regions=regions)
    full = run(tmp_path / "full", video, [PARKING, CROWD], motion=False)
    assert full.detector_runs == full.analysed == 120

    def summary(r: ReplayResult) -> list[tuple[str, datetime, int]]:
        return sorted((c.category, c.first_seen, c.alert_count) for c in r.table.cases.values())

    assert summary(gated) == summary(full) == [("illegal_parking", START, 5)]
    share = gated.detector_runs / gated.analysed
    print(
        f"motion gating: detector ran on {gated.detector_runs}/{gated.analysed} frames "
        f"({share:.0%}, {gated.region_runs} on a region)"
    )
    assert share < 0.4
    assert (gated.region_runs > 0) is regions


def test_standing_crowd_is_one_case_after_dwell_walkers_are_not(tmp_path: Path) -> None:
    video = scenes.crowd_scene(tmp_path / "crowd.avi")
    result = run(tmp_path, video, [CROWD])
    cases = list(result.table.cases.values())
    assert [c.category for c in cases] == ["crowd_gathering"]
    # the group stands from t=10 s; counted after settling 3 s, fires after a 15 s dwell
    assert 27.5 <= first_alert_after(result) <= 30.0
    assert cases[0].alert_count == 3  # t ~ 28, 38, 48; gone at 50


def test_real_walking_people_raise_no_crowd(tmp_path: Path) -> None:
    result = run(tmp_path, VTEST, [CROWD])
    assert result.alerts == []


def test_class_map_maps_a_class_to_a_category_on_real_footage(tmp_path: Path) -> None:
    rule = {
        "type": "class_map",
        "rule_id": "van",
        "zone": "bay",
        "category": "waste_truck",
        "classes": ["truck"],
        "dwell_s": 30.0,
        "repeat_every_s": 600.0,
    }
    result = run(tmp_path, VTEST, [rule])
    assert [(c.category, c.alert_count) for c in result.table.cases.values()] == [
        ("waste_truck", 1)
    ]


def test_bicycles_parked_on_a_real_street_are_one_non_motor_case(tmp_path: Path) -> None:
    # a walker passes the parked bicycles and a bicycle is ridden along the road
    video = scenes.bicycle_street_scene(tmp_path / "leuven.avi", 40)
    cap = cv2.VideoCapture(str(video))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 220)  # 22 s: the ridden bicycle mid-street
    ok, ridden = cap.read()
    cap.release()
    assert ok
    seen = NanoDet().detect(np.asarray(ridden, np.uint8)).of_classes({"bicycle"})
    street = Zone("street", scenes.LEUVEN_STREET)
    assert street.anchored_in(seen).any()  # the detector sees it in the street zone
    cfg = parse_config({
        "edge": {"evidence_dir": str(tmp_path / "evidence")},
        "places": [{"place_id": "wall"}, {"place_id": "street"}],
        "cameras": [{
            "camera_id": "cam-2", "url": "unused", "analysis_fps": 2.0,
            "zones": [
                {"zone_id": "wall", "place": "wall", "polygon": scenes.LEUVEN_WALL},
                {"zone_id": "street", "place": "street", "polygon": scenes.LEUVEN_STREET},
            ],
            "rules": [
                {"type": "disorderly_non_motor", "rule_id": "wall", "zone": "wall",
                 "max_parked": 1, "settle_s": 3.0, "dwell_s": 15.0, "repeat_every_s": 10.0},
                {"type": "disorderly_non_motor", "rule_id": "street", "zone": "street",
                 "max_parked": 0, "settle_s": 3.0, "dwell_s": 15.0, "repeat_every_s": 10.0},
            ],
        }],
    })  # fmt: skip
    result = replay(cfg, video, tmp_path / "out", start=START)
    cases = list(result.table.cases.values())
    # the bicycles against the wall; nothing on the open street, where one
    # was ridden through without stopping
    assert [(c.category, c.place.place_id) for c in cases] == [("disorderly_non_motor", "wall")]
    # counted after settling 3 s, the condition holds from t=3; fires after 15 s more
    assert 17.5 <= first_alert_after(result) <= 19.0
    assert all(d.label == "bicycle" for d in result.alerts[0].detections)


def leuven_config(tmp: Path, rules: list[dict[str, Any]]) -> Config:
    return parse_config({
        "edge": {"evidence_dir": str(tmp / "evidence")},
        "places": [{"place_id": "pavement"}, {"place_id": "road"}],
        "cameras": [{
            "camera_id": "cam-2", "url": "unused", "analysis_fps": 2.0,
            "zones": [
                {"zone_id": "pavement", "place": "pavement", "polygon": scenes.LEUVEN_PAVEMENT},
                {"zone_id": "road", "place": "road", "polygon": scenes.LEUVEN_ROAD},
            ],
            "rules": rules,
        }],
    })  # fmt: skip


def test_street_stall_is_one_case_after_the_dwell_passers_by_are_not(tmp_path: Path) -> None:
    video = scenes.stall_scene(tmp_path / "stall.avi", seconds=60, arrive=20.0, leave=55.0)
    rule = {"type": "illegal_stall", "rule_id": "stall", "zone": "pavement",
            "settle_s": 5.0, "dwell_s": 20.0, "repeat_every_s": 10.0}  # fmt: skip
    result = replay(leuven_config(tmp_path, [rule]), video, tmp_path / "out", start=START)
    cases = list(result.table.cases.values())
    # The bicycles stand there all along, and a walker passes right by them
    # at 2-16 s: no stall. The vendor arrives at 20 s; the stall holds from
    # then and is raised 20 s later, then repeats until it packs up at 55 s.
    assert [c.category for c in cases] == ["illegal_stall"]
    assert 40.0 <= first_alert_after(result) <= 41.5
    assert [round((a.observed_at - START).total_seconds()) for a in result.alerts] == [40, 50]
    # the case starts with the stall, when the vendor arrived (not when the
    # bicycles did, at 0 s)
    assert cases[0].first_seen == START + timedelta(seconds=20)
    labels = {d.label for d in result.alerts[0].detections}
    assert "person" in labels and labels & {"potted plant", "bicycle"}


def test_street_stall_needs_its_vendor(tmp_path: Path) -> None:
    # the same scene with the stall never set up (arrive after the end): the
    # parked bicycles and both walkers raise nothing
    video = scenes.stall_scene(tmp_path / "stall.avi", seconds=45, arrive=99.0, leave=99.0)
    rule = {"type": "illegal_stall", "rule_id": "stall", "zone": "pavement",
            "settle_s": 5.0, "dwell_s": 20.0, "repeat_every_s": 10.0}  # fmt: skip
    result = replay(leuven_config(tmp_path, [rule]), video, tmp_path / "out", start=START)
    assert result.alerts == []


def test_goods_left_on_the_road_are_one_case_after_the_dwell(tmp_path: Path) -> None:
    video = scenes.piled_goods_scene(tmp_path / "goods.avi", seconds=60, arrive=15.0)
    rule = {"type": "piled_goods", "rule_id": "goods", "zone": "road",
            "dwell_s": 20.0, "repeat_every_s": 15.0}  # fmt: skip
    result = replay(leuven_config(tmp_path, [rule]), video, tmp_path / "out", start=START)
    cases = list(result.table.cases.values())
    # walkers cross the road at 2-14 s (nothing there yet) and at 30-44 s, in
    # front of the pots; the pots arrive at 15 s and are raised 20 s later
    assert [c.category for c in cases] == ["piled_goods"]
    assert 35.0 <= first_alert_after(result) <= 36.0
    assert cases[0].first_seen == START + timedelta(seconds=15)
    assert cases[0].alert_count == 2  # 35, 50
    assert {d.label for d in result.alerts[0].detections} == {"potted plant"}
