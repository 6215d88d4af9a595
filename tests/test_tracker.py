"""The IoU tracker on scripted detections, and dwell surviving a tracker id switch."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from detectors.detections import Detections, box_iou
from edge.rules.registry import RuleConfig, build_rule
from edge.tracker import IouTracker, TrackerConfig, Tracks
from edge.zones import Zone
from tests.support.factories import at, dets

Box = tuple[float, float, float, float]
Item = tuple[str, Box, float]


def tracker(**kw: object) -> IouTracker:
    return IouTracker(TrackerConfig.model_validate({"min_hits": 1, "max_age_s": 2.0, **kw}))


def person(x: float, y: float = 300, score: float = 0.8) -> Item:
    return ("person", (x, y, x + 40, y + 100), score)


def ids_by_x(tracks: Tracks) -> list[int]:
    """Track ids ordered by box left edge."""
    order = np.argsort(tracks.detections.xyxy[:, 0])
    return [int(i) for i in tracks.track_ids[order]]


def test_moving_object_keeps_one_id() -> None:
    trk = tracker()
    seen = set()
    for s in range(20):
        tracks = trk.update(at(s * 0.5), dets(person(10 + 15 * s)))
        assert len(tracks) == 1
        seen.add(int(tracks.track_ids[0]))
    assert seen == {1}
    assert trk.ids_issued == 1


def test_crossing_objects_keep_their_ids() -> None:
    def a(s: int) -> float:  # walks right
        return 15.0 * s

    def b(s: int) -> float:  # walks left, passes a between s=13 and s=14
        return 402.0 - 15.0 * s

    # the trap: at s=14 b's detection is nearer a's last box than a's own is,
    # so matching against last boxes would swap them
    last_a = np.array([person(a(13))[1]], np.float32)
    near = box_iou(last_a, np.array([person(a(14))[1], person(b(14))[1]], np.float32))[0]
    assert near[1] > near[0]

    trk = tracker()
    history = []
    for s in range(28):
        tracks = trk.update(at(s * 0.5), dets(person(a(s)), person(b(s))))
        assert len(tracks) == 2
        ida = int(tracks.track_ids[np.argmin(np.abs(tracks.detections.xyxy[:, 0] - a(s)))])
        idb = int(tracks.track_ids[np.argmin(np.abs(tracks.detections.xyxy[:, 0] - b(s)))])
        history.append((ida, idb))
    assert set(history) == {(1, 2)}


def test_low_score_detection_continues_its_track() -> None:
    trk = tracker()
    ids = []
    for s in range(12):
        occluded = 5 <= s <= 8
        tracks = trk.update(at(s), dets(person(10 + 10 * s, score=0.2 if occluded else 0.8)))
        assert len(tracks) == 1  # reported while occluded too
        ids.append(int(tracks.track_ids[0]))
    assert set(ids) == {1}
    # but a weak detection never starts a track, and one below low_thresh is ignored
    fresh = tracker()
    assert len(fresh.update(at(0), dets(person(500, score=0.2)))) == 0
    assert fresh.tracks == []
    assert len(trk.update(at(12), dets(person(130, score=0.05)))) == 0


def test_track_lost_longer_than_max_age_is_dropped_and_returns_with_a_new_id() -> None:
    trk = tracker(max_age_s=2.0)
    car = ("car", (100.0, 400.0, 220.0, 480.0), 0.9)
    for s in range(5):
        assert list(trk.update(at(s), dets(car)).track_ids) == [1]
    # unseen for 2 s (= max_age_s): kept, same id on return
    assert len(trk.update(at(5), dets())) == 0
    assert len(trk.tracks) == 1
    assert list(trk.update(at(6), dets(car)).track_ids) == [1]
    # unseen for 3 s: dropped, and the same object in the same place is a new track
    for s in (7, 8, 9):
        trk.update(at(s), dets())
    assert trk.tracks == []
    assert list(trk.update(at(10), dets(car)).track_ids) == [2]


def test_tentative_tracks_are_not_reported_before_min_hits() -> None:
    trk = tracker(min_hits=3)
    reported = [len(trk.update(at(s * 0.5), dets(person(10 + 10 * s)))) for s in range(5)]
    assert reported == [0, 0, 1, 1, 1]
    # a detection that flickers (seen twice, then missed) never gets an id
    flicker = tracker(min_hits=3)
    for s, d in enumerate([dets(person(500)), dets(person(500)), dets(), dets(person(500))]):
        assert len(flicker.update(at(s), d)) == 0
    assert flicker.ids_issued == 0


def test_labels_never_mix() -> None:
    trk = tracker()
    box = (100.0, 300.0, 160.0, 420.0)
    first = trk.update(at(0), dets(("person", box, 0.9)))
    second = trk.update(at(1), dets(("bicycle", box, 0.9)))  # same place, other class
    assert list(first.track_ids) == [1]
    assert list(second.track_ids) == [2]
    both = trk.update(at(1.5), dets(("person", box, 0.9), ("bicycle", box, 0.9)))
    by_label = {both.detections.label(i): int(both.track_ids[i]) for i in range(len(both))}
    assert by_label == {"person": 1, "bicycle": 2}
    assert {t.label for t in trk.tracks if t.track_id == 1} == {"person"}


def test_state_stays_bounded_and_the_stalest_go_first() -> None:
    trk = tracker(max_tracks=5, max_age_s=600.0)
    for s in range(50):
        x = 50.0 * (s % 20)
        y = 200.0 * (s // 20)
        trk.update(at(s), dets(person(x, y)))
        assert len(trk.tracks) <= 5
    assert sorted(t.last_seen for t in trk.tracks) == [at(s) for s in range(45, 50)]
    crowd = dets(*[person(50.0 * i, 200.0 * j) for i in range(20) for j in range(3)])
    assert len(trk.update(at(50), crowd)) == 5
    assert len(trk.tracks) == 5


def test_callers_detections_are_not_mutated() -> None:
    trk = tracker()
    for s in range(6):
        d = dets(person(10 + 15 * s), person(400 - 15 * s, score=0.3))
        for arr in (d.xyxy, d.scores, d.class_ids):
            arr.setflags(write=False)  # any in-place write would raise
        before = d.xyxy.copy()
        tracks = trk.update(at(s), d)
        assert np.array_equal(d.xyxy, before)
        assert not np.shares_memory(tracks.detections.xyxy, d.xyxy)


def test_tracks_validates_alignment_and_maps_rule_outputs_to_ids() -> None:
    d = dets(person(10), person(300))
    with pytest.raises(ValueError, match="track_ids"):
        Tracks(detections=d, track_ids=np.array([1], np.int32))
    with pytest.raises(ValueError, match="track_ids"):
        Tracks(detections=d, track_ids=np.array([1, 2], np.int64))
    tracks = Tracks(detections=d, track_ids=np.array([7, 9], np.int32))
    subset = d[np.array([False, True])]  # what a rule hands back: a copy of a subset
    assert list(tracks.ids_for(subset)) == [9]
    assert list(tracks.ids_for(dets(("car", (300, 300, 340, 400), 0.8)))) == [-1]
    assert list(Tracks(Detections.empty(d.labels), np.zeros(0, np.int32)).ids_for(d)) == [-1, -1]


def test_config_limits() -> None:
    assert TrackerConfig() == TrackerConfig(
        high_thresh=0.4, low_thresh=0.1, match_iou=0.2, min_hits=2, max_age_s=2.0, max_tracks=256
    )
    for bad in ({"low_thresh": 0.6}, {"match_iou": 0.0}, {"max_tracks": 0}, {"extra": 1}):
        with pytest.raises(ValidationError):
            TrackerConfig.model_validate(bad)


def test_parked_car_keeps_its_dwell_across_a_tracker_id_switch() -> None:
    # tracker forgets after 2 s; the parking rule bridges gaps of up to 5 s
    trk = IouTracker(TrackerConfig(min_hits=2, max_age_s=2.0))
    cfg = TypeAdapter(RuleConfig).validate_python(
        {
            "type": "illegal_parking",
            "rule_id": "r",
            "zone": "z",
            "dwell_s": 20.0,
            "repeat_every_s": 1000.0,
            "grace_s": 5.0,
        }
    )
    rule = build_rule(cfg, Zone("z", [[0, 0], [1000, 0], [1000, 600], [0, 600]]), "Asia/Shanghai")
    assert trk.cfg.max_age_s < cfg.grace_s

    def car(s: int) -> Item:
        j = (s % 3) - 1.0  # a pixel of detector jitter
        return ("car", (100 + j, 400 - j, 220 + j, 480), 0.9)

    gap = range(10, 14)  # unseen for 4 s: last sighting at 9, back at 14
    firings: list[tuple[int, datetime]] = []
    ids: dict[int, list[int]] = {}
    for s in range(40):
        frame = dets() if s in gap else dets(car(s))
        tracks = trk.update(at(s), frame)
        ids[s] = [int(i) for i in tracks.track_ids]
        firing = rule.observe(at(s), frame)
        if firing is not None:
            firings.append((s, firing.first_seen))

    assert ids[0] == []  # tentative on its first frame
    assert ids[9] == [1]
    assert ids[14] == []  # the tracker lost it: a new tentative track...
    assert ids[15] == [2]  # ...confirmed under a new id
    assert all(ids[s] == [2] for s in range(15, 40))
    # the rule, which remembers the car by where it stands, never noticed
    assert firings == [(20, at(0))]
