"""Suppressions at the edge (edge/suppressions.py): which detections a suppression hides
from which rules, the book the camera threads read, the feed's handling of each message,
a camera worker whose rules on one place are suppressed while another place's fire, and
the frame evidence beside the snapshot.

All unit tests but the last, which runs an edge worker on vtest.avi against Tansu and
publishes a mask to the suppression topic while it runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from aiokafka import AIOKafkaProducer

from core.kafka import KafkaConfig, ensure_topics
from core.records import (
    Alert,
    CameraSuppressions,
    EvidenceKind,
    Suppression,
    SuppressionKind,
)
from detectors.detections import Detections
from edge.alert_sink import KafkaAlertSink
from edge.camera_worker import CameraWorker
from edge.config import parse_edge_config
from edge.suppressions import (
    BookUpdate,
    LiveSuppression,
    RateLimit,
    SuppressionBook,
    SuppressionFeed,
    suppress,
)
from edge.worker import EdgeWorker
from edge.zones import Zone
from ingest.frames import Frame
from streetwatch.brokers import RunningBroker
from streetwatch.processes import free_port
from tests.support.factories import dets
from tests.support.fakes import MemoryAlertSink
from tests.support.kafka_helpers import Topic, fresh_kafka
from tests.support.polling import until

CAM = "cam-1"
TZ = "Asia/Shanghai"  # UTC+8, no daylight saving
SIZE = (1000, 500)  # frame width, height
NOON = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai


def local(hh: int, mm: int = 0) -> datetime:
    """That time of 2026-11-20 in Shanghai."""
    return datetime(2026, 11, 20, hh, mm, tzinfo=UTC) - timedelta(hours=8)


def sup(
    sid: str = "s1",
    kind: SuppressionKind = SuppressionKind.MASK,
    *,
    place: str = "a",
    camera: str = CAM,
    labels: Sequence[str] = (),
    polygon: Sequence[tuple[float, float]] = ((0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)),
    hours: Sequence[str] = (),
    expires: datetime = NOON + timedelta(days=7),
) -> Suppression:
    """A suppression; the default mask is the right half of the frame."""
    return Suppression(
        suppression_id=sid,
        kind=kind,
        camera_id=camera,
        place_id=place,
        labels=tuple(labels),
        polygon=tuple(polygon) if kind is SuppressionKind.MASK else (),
        hours=tuple(hours),
        case_id="case-1",
        reason="wrong_object",
        created_by="reviewer-7",
        created_at=NOON - timedelta(days=1),
        expires_at=expires,
    )


WHOLE = [[0, 0], [SIZE[0], 0], [SIZE[0], SIZE[1]], [0, SIZE[1]]]
A = {"a": [Zone("za", WHOLE)]}  # place a, its zone the whole frame
AB = {"a": [Zone("za", WHOLE)], "b": [Zone("zb", WHOLE)]}


def live(*items: Suppression) -> list[LiveSuppression]:
    return [LiveSuppression.of(s, TZ) for s in items]


def message(revision: int, *items: Suppression, camera: str = CAM) -> CameraSuppressions:
    return CameraSuppressions(
        camera_id=camera, revision=revision, published_at=NOON, suppressions=items
    )


def labels_of(d: Detections) -> list[str]:
    return [d.label(i) for i in range(len(d))]


# a car whose foot (bottom centre, 800,300) is in the right half; a truck whose box
# reaches into the right half but whose foot (450,300) is not; a person in the right half
SCENE = dets(
    ("car", (700, 200, 900, 300), 0.9),
    ("truck", (300, 100, 600, 300), 0.8),
    ("person", (850, 100, 900, 250), 0.7),
)


def test_a_mask_hides_what_stands_in_it_by_the_foot_point_scaled_to_the_frame() -> None:
    out = suppress(live(sup()), A, NOON, SCENE, SIZE)
    assert labels_of(out.kept["a"]) == ["truck"]  # box overlaps the mask, foot outside
    assert out.dropped == {("s1", SuppressionKind.MASK): 2}
    assert out.labels["s1"] == "car"
    # the same fractions on a frame twice as large hide the same objects scaled up
    big = Detections(SCENE.xyxy * 2, SCENE.scores, SCENE.class_ids, SCENE.labels)
    big_zone = {"a": [Zone("za", [[0, 0], [2000, 0], [2000, 1000], [0, 1000]])]}
    out = suppress(live(sup()), big_zone, NOON, big, (2000, 1000))
    assert labels_of(out.kept["a"]) == ["truck"]
    # ... while on a frame twice as wide the mask starts at x=1000: everything is outside
    assert len(suppress(live(sup()), A, NOON, SCENE, (2000, 500)).kept["a"]) == 3


def test_a_mask_with_labels_hides_only_those_classes() -> None:
    out = suppress(live(sup(labels=["person"])), A, NOON, SCENE, SIZE)
    assert labels_of(out.kept["a"]) == ["car", "truck"]
    assert out.dropped == {("s1", SuppressionKind.MASK): 1}


def test_a_muted_class_is_hidden_anywhere_in_the_place() -> None:
    mute = sup("m1", SuppressionKind.MUTE_CLASS, labels=["truck", "bus"])
    out = suppress(live(mute), A, NOON, SCENE, SIZE)
    assert labels_of(out.kept["a"]) == ["car", "person"]  # no polygon: the truck goes anyway
    assert out.dropped == {("m1", SuppressionKind.MUTE_CLASS): 1}


def test_another_place_of_the_same_camera_is_untouched() -> None:
    out = suppress(live(sup(place="a")), AB, NOON, SCENE, SIZE)
    assert list(out.kept) == ["a", "b"]
    assert labels_of(out.kept["a"]) == ["truck"]
    assert out.kept["b"] is SCENE  # the rules of place b see every detection
    assert out.dropped == {("s1", SuppressionKind.MASK): 2}  # counted once, for a


def test_only_what_stands_in_a_zone_of_the_place_is_dropped_and_counted() -> None:
    # zone a: the top right quarter, where only the person stands (foot 875,250)
    top_right = {"a": [Zone("za", [[500, 0], [1000, 0], [1000, 250], [500, 250]])]}
    out = suppress(live(sup()), top_right, NOON, SCENE, SIZE)
    assert labels_of(out.kept["a"]) == ["car", "truck"]  # the car is in the mask, not the zone
    assert out.dropped == {("s1", SuppressionKind.MASK): 1}
    assert out.labels == {"s1": "person"}


@pytest.mark.parametrize(
    ("hours", "at", "hidden"),
    [
        (["08:00-18:00"], local(12), True),
        (["08:00-18:00"], local(7, 59), False),
        (["08:00-18:00"], local(18), False),  # the end is not in the window
        (["22:00-06:00"], local(23), True),  # across midnight
        (["22:00-06:00"], local(5, 59), True),
        (["22:00-06:00"], local(6), False),
        (["22:00-06:00"], local(12), False),
        (["06:00-07:00", "20:00-24:00"], local(23, 59), True),
        (["06:00-07:00", "20:00-24:00"], local(19), False),
    ],
)
def test_a_time_window_hides_everything_in_the_place_within_its_hours_local_time(
    hours: list[str], at: datetime, hidden: bool
) -> None:
    window = sup("w1", SuppressionKind.TIME_WINDOW, hours=hours)
    out = suppress(live(window), A, at, SCENE, SIZE)
    assert len(out.kept["a"]) == (0 if hidden else 3)
    assert out.dropped == ({("w1", SuppressionKind.TIME_WINDOW): 3} if hidden else {})


def test_hours_are_in_the_cameras_time_zone() -> None:
    window = sup("w1", SuppressionKind.TIME_WINDOW, hours=["08:00-09:00"])
    at = datetime(2026, 11, 20, 8, 30, tzinfo=UTC)  # 08:30 UTC = 16:30 in Shanghai
    assert len(suppress(live(window), A, at, SCENE, SIZE).kept["a"]) == 3
    in_utc = [LiveSuppression.of(window, "UTC")]
    assert len(suppress(in_utc, A, at, SCENE, SIZE).kept["a"]) == 0


def test_a_suppression_ends_at_its_expiry_judged_by_the_frame_time() -> None:
    ends = NOON + timedelta(hours=1)
    s = live(sup(expires=ends))
    assert len(suppress(s, A, ends - timedelta(seconds=1), SCENE, SIZE).kept["a"]) == 1
    assert len(suppress(s, A, ends, SCENE, SIZE).kept["a"]) == 3
    book = SuppressionBook({CAM: TZ})
    assert book.update(message(1, sup(expires=ends))) is BookUpdate.APPLIED
    assert len(book.live(CAM, ends - timedelta(seconds=1))) == 1
    assert book.live(CAM, ends) == ()  # checked every time, not only on arrival


def test_a_detection_two_suppressions_cover_is_counted_once_under_the_first() -> None:
    both = live(sup("s1"), sup("m1", SuppressionKind.MUTE_CLASS, labels=["car", "truck"]))
    out = suppress(both, A, NOON, SCENE, SIZE)
    assert len(out.kept["a"]) == 0
    assert out.dropped == {
        ("s1", SuppressionKind.MASK): 2,  # car and person
        ("m1", SuppressionKind.MUTE_CLASS): 1,  # the truck only: the car was s1's
    }


def test_the_book_keeps_the_newest_revision_per_camera() -> None:
    book = SuppressionBook({CAM: TZ, "cam-2": TZ})
    assert book.revision(CAM) == 0 and book.live(CAM, NOON) == ()
    assert book.update(message(2, sup("s2"))) is BookUpdate.APPLIED
    assert book.update(message(1, sup("s1"))) is BookUpdate.STALE  # older
    assert book.update(message(2, sup("s1"))) is BookUpdate.STALE  # same revision
    assert [s.record.suppression_id for s in book.live(CAM, NOON)] == ["s2"]
    assert book.update(message(1, sup("x", camera="cam-2"), camera="cam-2")) is BookUpdate.APPLIED
    assert book.update(message(3)) is BookUpdate.APPLIED  # the whole set: now empty
    assert book.revision(CAM) == 3 and book.live(CAM, NOON) == ()
    assert len(book.live("cam-2", NOON)) == 1  # per camera
    assert book.update(message(9, sup(camera="cam-9"), camera="cam-9")) is BookUpdate.NOT_HERE
    with pytest.raises(ValueError, match="for camera cam-2"):
        book.update(message(4, sup(camera="cam-2")))
    with pytest.raises(ValueError, match="is empty"):
        book.update(message(4, sup("w", SuppressionKind.TIME_WINDOW, hours=["08:00-08:00"])))
    assert book.revision(CAM) == 3  # a refused message changes nothing


def test_the_feed_applies_this_boxs_messages_and_counts_what_it_cannot_use(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    book = SuppressionBook({CAM: TZ})
    feed = SuppressionFeed(KafkaConfig(), book)
    key = CAM.encode()
    good = message(5, sup("s1"), sup("m1", SuppressionKind.MUTE_CLASS, labels=["car"]))
    assert feed.handle(key, good.to_json_bytes(), "t[0]@1") is BookUpdate.APPLIED
    assert "event=suppressions camera=cam-1 revision=5 count=2" in caplog.text
    assert feed.handle(key, message(4).to_json_bytes()) is BookUpdate.STALE
    # another box's camera: skipped by its key, not even parsed
    assert feed.handle(b"cam-elsewhere", b"{not json") is BookUpdate.NOT_HERE
    bad_hours = message(6, sup("w", SuppressionKind.TIME_WINDOW, hours=["09:00-09:00"]))
    for value in [
        b"{not json",
        b"\xff" * 10,
        b'{"camera_id": "cam-1", "revision": 0}',
        bad_hours.to_json_bytes(),
        message(7, camera="cam-2").to_json_bytes(),  # under this camera's key
        None,
    ]:
        assert feed.handle(key, value, "t[1]@9") is None
    no_key = message(7).to_json_bytes()
    assert feed.handle(None, no_key) is BookUpdate.APPLIED  # no key: judged by the record
    assert feed.rejects == {
        "not_json": 2,
        "bad_record": 1,
        "bad_suppression": 1,
        "key_mismatch": 1,
        "tombstone": 1,
    }
    assert feed.applied == 2 and book.revision(CAM) == 7
    rejected = [r.getMessage() for r in caplog.records if "suppressions_rejected" in r.getMessage()]
    assert len(rejected) == 6 and all("at=t[1]@9" in line for line in rejected)
    assert any("reason=bad_record" in line and "revision" in line for line in rejected)
    assert any("reason=bad_suppression" in line and "is empty" in line for line in rejected)


def test_a_rate_limit_says_yes_once_a_period_with_the_count_between() -> None:
    now = [0.0]
    limit = RateLimit(60.0, clock=lambda: now[0])
    assert limit.add("s1", 2) == 2
    now[0] = 30.0
    assert limit.add("s1", 3) is None
    assert limit.add("s2", 1) == 1  # per key
    now[0] = 60.0
    assert limit.add("s1", 1) == 4  # 3 held back + this one
    now[0] = 200.0
    assert limit.add("s3", 1) == 1
    assert set(limit._last) == {"s3"}  # quiet keys with nothing pending are forgotten


# -- a camera worker with two places ------------------------------------------------

LABELS = ("person", "car", "truck")
A_TRUCK = (60.0, 20.0, 90.0, 50.0)  # foot (75, 50): zone a (the left half)
B_CAR = (130.0, 30.0, 170.0, 50.0)  # foot (150, 50): zone b (the right half)


class Fixed:
    """A detector finding a truck in zone a and a car in zone b on every frame."""

    labels = LABELS

    def detect(self, frame: npt.NDArray[np.uint8]) -> Detections:
        return Detections(
            xyxy=np.array([A_TRUCK, B_CAR], np.float32),
            scores=np.array([0.9, 0.8], np.float32),
            class_ids=np.array([2, 1], np.int32),
            labels=LABELS,
        )


def two_place_worker(tmp: Path, book: SuppressionBook, alerts: list[Alert]) -> CameraWorker:
    rule = {"type": "illegal_parking", "dwell_s": 2.0, "repeat_every_s": 2.0}
    cfg = parse_edge_config({
        "edge": {"evidence_dir": str(tmp)},
        "places": [{"place_id": "a"}, {"place_id": "b"}],
        "cameras": [{
            "camera_id": CAM, "url": "unused", "timezone": TZ,
            "motion": {"enabled": False}, "clip": {"enabled": False},
            "zones": [
                {"zone_id": "za", "place": "a", "polygon": [[0, 0], [100, 0], [100, 60], [0, 60]]},
                {"zone_id": "zb", "place": "b", "polygon": [[100, 0], [200, 0], [200, 60],
                                                            [100, 60]]},
            ],
            "rules": [{**rule, "rule_id": "ra", "zone": "za"},
                      {**rule, "rule_id": "rb", "zone": "zb"}],
        }],
    })  # fmt: skip
    return CameraWorker(cfg.cameras[0], cfg, Fixed(), tmp, alerts.append, suppressions=book)


def frames(n: int, start: int = 0) -> list[Frame]:
    # a smooth picture (JPEG keeps it close): a gradient, darker to the right
    ramp = np.linspace(200, 60, 200, dtype=np.float32)[None, :, None]
    img = np.broadcast_to(ramp, (60, 200, 3)).astype(np.uint8)
    return [Frame(CAM, i, i / 2, NOON + timedelta(seconds=i / 2), img) for i in range(start, n)]


def test_a_camera_stops_alerting_for_the_masked_place_and_goes_on_for_the_other(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge.camera_worker")
    book = SuppressionBook({CAM: TZ})
    alerts: list[Alert] = []
    worker = two_place_worker(tmp_path, book, alerts)
    for f in frames(10):  # 5 s: both places raise
        worker.process(f)
    assert {a.place.place_id for a in alerts} == {"a", "b"}
    # a mask over the whole frame, for place a: the car of zone b stands in it too
    whole = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))
    book.update(message(1, sup("mask-a", place="a", polygon=whole)))
    before = len(alerts)
    for f in frames(40, start=10):  # 15 s more
        worker.process(f)
    after = alerts[before:]
    assert after and {a.place.place_id for a in after} == {"b"}
    assert all(d.label == "car" for a in after for d in a.detections)
    assert worker.suppressed == {"mask": 30, "mute_class": 0, "time_window": 0}  # 1 a frame
    lines = [r.getMessage() for r in caplog.records if "event=suppressed " in r.getMessage()]
    assert lines == [
        "event=suppressed camera=cam-1 suppression=mask-a kind=mask label=truck count=1 "
        "(detections dropped since its last line; one line a minute at most)"
    ]


def test_a_place_that_gains_a_suppression_forgets_what_its_rules_held(tmp_path: Path) -> None:
    """Without this, a van standing for minutes keeps its dwell through the rules' grace
    and raises once more after the mask arrived."""
    book = SuppressionBook({CAM: TZ})
    alerts: list[Alert] = []
    worker = two_place_worker(tmp_path, book, alerts)
    for f in frames(10):
        worker.process(f)
    held = [b.rule for b in worker.rules if b.place.place_id == "a"]
    assert held and all(r.last_fired is not None for r in held)
    whole = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))
    book.update(message(1, sup("mask-a", place="a", polygon=whole)))
    worker.process(frames(11, start=10)[0])
    assert all(r.last_fired is None for r in held)  # reset: the episode ended
    assert all(b.rule.last_fired is not None for b in worker.rules if b.place.place_id == "b")


def test_every_camera_alert_carries_the_analysed_frame_undrawn(tmp_path: Path) -> None:
    alerts: list[Alert] = []
    worker = two_place_worker(tmp_path, SuppressionBook({CAM: TZ}), alerts)
    shown = frames(6)
    for f in shown:
        worker.process(f)
    assert alerts
    for alert in alerts:
        kinds = [e.kind for e in alert.evidence]
        assert kinds == [EvidenceKind.SNAPSHOT, EvidenceKind.FRAME]
        snap, raw = alert.evidence
        assert raw.media_type == "image/jpeg" and raw.captured_at == alert.observed_at
        assert Path(raw.path).name == f"{alert.alert_id}.frame.jpg"
        picture = cv2.imread(raw.path)
        original = shown[0].image
        assert picture is not None and picture.shape == original.shape
        # the frame itself (JPEG noise aside), not the snapshot with its drawing
        assert np.abs(picture.astype(int) - original).max() <= 8
        drawn = cv2.imread(snap.path)  # the zone shaded, boxes and header drawn
        assert drawn is not None and np.abs(drawn.astype(int) - original).max() > 100


# -- live: an edge worker on vtest.avi, a mask published while it runs ----------------

VAN_ZONE = [[600, 55], [728, 55], [728, 130], [600, 130]]  # the van's foot: (688, 98)
CAR_ZONE = [[729, 55], [768, 55], [768, 130], [729, 130]]  # the car's foot: (750, 95)
# the whole top right corner (van and car), but for the van's place only
TOP_RIGHT = ((0.75, 0.05), (1.0, 0.05), (1.0, 0.3), (0.75, 0.3))


def vtest_two_places(tmp: Path, video: Path, kafka: KafkaConfig) -> dict[str, object]:
    rule = {"type": "illegal_parking", "dwell_s": 2.0, "repeat_every_s": 2.0}
    return {
        "edge": {"box_id": "ws-sup", "evidence_dir": str(tmp / "evidence")},
        "kafka": kafka.model_dump(),
        "places": [{"place_id": "bay-van"}, {"place_id": "bay-car"}],
        "cameras": [{
            "camera_id": "cam-vtest", "url": str(video), "analysis_fps": 2.0, "loop": True,
            "clip": {"enabled": False},
            "zones": [{"zone_id": "van", "place": "bay-van", "polygon": VAN_ZONE},
                      {"zone_id": "car", "place": "bay-car", "polygon": CAR_ZONE}],
            "rules": [{**rule, "rule_id": "van-parking", "zone": "van"},
                      {**rule, "rule_id": "car-parking", "zone": "car"}],
        }],
    }  # fmt: skip


async def test_the_edge_starts_and_stops_while_kafka_is_down(
    tmp_path: Path, vtest_video: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    nobody = KafkaConfig(bootstrap=f"127.0.0.1:{free_port()}")  # nothing listens there
    cfg = parse_edge_config(vtest_two_places(tmp_path, vtest_video, nobody))
    edge = EdgeWorker(cfg, MemoryAlertSink())
    stop = asyncio.Event()
    run = asyncio.create_task(edge.run(stop))
    await asyncio.wait_for(edge.ready.wait(), 10)  # not held back by the feed
    await until(
        lambda: "event=suppressions_unavailable" in caplog.text, "the feed's retry notice", 10
    )
    stop.set()
    stats = await asyncio.wait_for(run, 30)  # the retrying feed does not hold the stop back
    assert not stats.camera_errors and edge.suppressions.revision("cam-vtest") == 0


@pytest.mark.integration
async def test_a_mask_published_while_the_edge_runs_silences_its_place_only(
    tmp_path: Path, vtest_video: Path, tansu: RunningBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    kafka = fresh_kafka(tansu.address)
    await ensure_topics(kafka)
    cfg = parse_edge_config(vtest_two_places(tmp_path, vtest_video, kafka))
    edge = EdgeWorker(cfg, KafkaAlertSink(cfg.kafka, cfg.site_map()), pace="realtime")
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()
    stop = asyncio.Event()
    run = asyncio.create_task(edge.run(stop))
    try:
        async with Topic(kafka, kafka.alerts_topic) as topic:

            def raised(place: str, after: datetime) -> list[Alert]:
                alerts = [Alert.model_validate_json(m) for m in topic.messages]
                return [a for a in alerts if a.place.place_id == place and a.observed_at > after]

            start = datetime.now(UTC)
            await until(
                lambda: bool(raised("bay-van", start) and raised("bay-car", start)),
                "parking alerts for both places",
                30,
            )
            mask = Suppression(
                suppression_id="mask-van",
                kind=SuppressionKind.MASK,
                camera_id="cam-vtest",
                place_id="bay-van",
                polygon=TOP_RIGHT,
                case_id="case-van",
                reason="wrong_object",
                created_by="reviewer-7",
                created_at=start - timedelta(minutes=1),
                expires_at=start + timedelta(days=1),
            )
            msg = CameraSuppressions(
                camera_id="cam-vtest", revision=1, published_at=start, suppressions=(mask,)
            )
            key = b"cam-vtest"
            await producer.send_and_wait(kafka.suppression_topic, b"{not json", key=key)
            await producer.send_and_wait(kafka.suppression_topic, msg.to_json_bytes(), key=key)
            await until(lambda: edge.suppressions.revision("cam-vtest") == 1, "the mask", 20)
            # frames stamped later than this were analysed after the mask was in the book
            applied = datetime.now(UTC) + timedelta(seconds=1)
            await until(lambda: len(raised("bay-car", applied)) >= 3, "3 more car alerts", 30)
            assert raised("bay-van", applied) == []
            assert edge.stats.suppressed["cam-vtest"]["mask"] > 0
            assert edge.stats.suppression_rejects == {"not_json": 1}
    finally:
        stop.set()
        stats = await run
        await producer.stop()
    assert not stats.camera_errors
    assert "event=suppressions camera=cam-vtest revision=1 count=1" in caplog.text
    assert "event=suppressed camera=cam-vtest suppression=mask-van kind=mask label=" in caplog.text
    assert "reason=not_json" in caplog.text
    assert f"suppressed={stats.suppressed_counts()}" in caplog.text  # in the final stats line
