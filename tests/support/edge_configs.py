"""Config sections shared by the tests that run `streetwatch edge` as a process."""

from __future__ import annotations

from pathlib import Path

#: the loading bay of vtest.avi, where a van stands the whole video
BAY_PLACE = {"place_id": "loading-bay-b", "name": "Loading bay B"}
BAY_POLYGON = [[600, 55], [768, 55], [768, 130], [600, 130]]


def parking_camera(
    video: Path, *, repeat_s: float, clips: bool = True, loop: bool = False
) -> dict[str, object]:
    """A ``[[cameras]]`` entry on vtest.avi raising illegal parking for the van in the bay
    after 4 s, then every ``repeat_s``; clips of 2 s before and after."""
    return {
        "camera_id": "cam-vtest",
        "url": str(video),
        "analysis_fps": 2.0,
        "loop": loop,
        "clip": {"enabled": clips, "pre_s": 2.0, "post_s": 2.0},
        "zones": [{"zone_id": "bay", "place": BAY_PLACE["place_id"], "polygon": BAY_POLYGON}],
        "rules": [
            {
                "type": "illegal_parking",
                "rule_id": "bay-parking",
                "zone": "bay",
                "dwell_s": 4.0,
                "repeat_every_s": repeat_s,
            }
        ],
    }
