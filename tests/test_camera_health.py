"""Camera health (edge/camera_health.py): offline, frozen, covered and moved cameras.

Frames are fed straight to a camera's :class:`CameraHealth` at the analysis
rate (2 fps, vtest.avi's every fifth frame), with hold times shortened to
20 s so that each scene fits in a minute or two of video; the thresholds
are the defaults. Healthy footage is real (vtest.avi) and composed
(tests/support/scenes.py: a still street with real passers-by and sensor
noise, as MJPG and as H.264; leuvenB held still, as H.264). Broken cameras
are made from the same footage:

- *frozen*: one vtest frame repeated, either bit-identical (a source that
  repeats its last picture) or through an H.264 encoder at 10 fps (a stuck
  camera encoding one picture: key frames every 5 s refresh it slightly);
  not with fresh noise per frame, which is what a live sensor gives;
- *covered*: a dark cap with sensor noise, the live picture blurred
  (sigma 15 px, defocused), a haze of paint over it;
- *moved*: the live picture shifted 60 px sideways or turned 10 degrees;
- *offline*: no frames while the clock runs (a fake clock), then the worker
  with a camera whose source cannot be opened, and (integration) the real
  RTSP server killed and started again.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from core.config import ConfigError
from core.records import Alert, AlertPhase, EvidenceKind, Place, SourceKind
from detectors.detections import Detections
from edge.camera_health import (
    COVERED,
    FROZEN,
    MOVED,
    OFFLINE,
    CameraHealth,
    CameraHealthConfig,
    Hold,
    health_place,
    view_of,
)
from edge.camera_worker import CameraWorker
from edge.config import parse_edge_config
from edge.worker import EdgeWorker
from edge.zones import Zone
from ingest.frames import Frame, SourceState, SourceStatus
from streetwatch.config import parse_config
from tests.support import scenes
from tests.support.fakes import MemoryAlertSink
from tests.support.rtsp import RtspServer

Image = npt.NDArray[np.uint8]
START = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
FPS = 2.0  # analysis rate
STEP = 5  # vtest is 10 fps
HOLD_S = 20.0
CHECK_S = 5.0  # the default
CLEAR_S = 10.0  # the default
FAST = CameraHealthConfig(
    offline_s=5.0, frozen_s=HOLD_S, covered_s=HOLD_S, moved_s=HOLD_S, clear_s=CLEAR_S
)
DEFAULT = CameraHealthConfig()


@cache
def vtest() -> tuple[Image, ...]:
    """vtest.avi at the analysis rate: 159 frames, 79.5 s."""
    return tuple(scenes.vtest_frames())[::STEP]


def live(seconds: float, offset: int = 0) -> list[Image]:
    frames = vtest()
    return [frames[(offset + i) % len(frames)] for i in range(round(seconds * FPS))]


def read(path: Path, step: int = 1) -> list[Image]:
    cap = cv2.VideoCapture(str(path))
    out: list[Image] = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return out[::step]
            out.append(np.asarray(frame, np.uint8))
    finally:
        cap.release()


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def monitor(
    tmp: Path, cfg: CameraHealthConfig = FAST, key: str = "k", clock: Clock | None = None
) -> CameraHealth:
    watched = Place(place_id="bay", name="Loading bay")
    return CameraHealth(
        "cam-1",
        cfg,
        health_place("cam-1", watched),
        tmp,
        zones=[Zone("bay", scenes.BAY)],
        reference_key=key,
        clock=clock or Clock(),
    )


class Run:
    """Frames fed at the analysis rate on the video's clock; what came out and when."""

    def __init__(self, health: CameraHealth, clock: Clock) -> None:
        self.health = health
        self.clock = clock
        self.t = 0.0
        self.alerts: list[tuple[float, Alert]] = []
        self.measured: list[dict[str, float]] = []
        self.judged: list[dict[str, bool | None]] = []

    def feed(self, images: Iterable[Image]) -> Run:
        for image in images:
            at = START + timedelta(seconds=self.t)
            self.clock.now = at
            checks = self.health.checks
            out = self.health.observe(Frame("cam-1", round(self.t * FPS), self.t, at, image))
            if self.health.checks != checks:
                self.measured.append(self.health.measured)
                self.judged.append(self.health.judged)
            self.alerts += [(self.t, a) for a in out]
            self.t += 1 / FPS
        return self

    def phases(self) -> list[tuple[str, AlertPhase]]:
        return [(a.category, a.phase) for _, a in self.alerts]


def run(tmp: Path, *parts: Iterable[Image], cfg: CameraHealthConfig = FAST) -> Run:
    clock = Clock()
    r = Run(monitor(tmp, cfg, clock=clock), clock)
    for part in parts:
        r.feed(part)
    return r


def assert_one_episode(r: Run, category: str, broke_at: float, back_at: float) -> Alert:
    """Raised once after the hold time, cleared once after clear_s of recovery."""
    assert r.phases() == [(category, AlertPhase.RAISED), (category, AlertPhase.CLEARED)], (
        r.phases(),
        [a.rule_text for _, a in r.alerts],
    )
    (t_raised, raised), (t_cleared, cleared) = r.alerts
    began = (raised.first_seen - START).total_seconds()
    assert broke_at <= began <= broke_at + 2 * CHECK_S, began
    assert began + HOLD_S <= t_raised <= began + HOLD_S + 2 * CHECK_S, t_raised
    assert back_at + CLEAR_S <= t_cleared <= back_at + CLEAR_S + 2 * CHECK_S, t_cleared
    assert cleared.first_seen == raised.first_seen
    for alert in (raised, cleared):
        assert alert.source_kind is SourceKind.CAMERA and alert.source_id == "cam-1"
        assert alert.rule_id == category
        assert alert.place.place_id == "camera:cam-1"
        assert alert.place.name == "camera cam-1 at Loading bay"
    (snapshot,) = raised.evidence
    assert snapshot.kind is EvidenceKind.SNAPSHOT and Path(snapshot.path).is_file()
    assert cleared.evidence == ()
    return raised


# -- the state machine ----------------------------------------------------------------------


def at(s: float) -> datetime:
    return START + timedelta(seconds=s)


def observe(hold: Hold, seq: Iterable[tuple[float, bool | None]]) -> list[tuple[float, str]]:
    out = []
    for t, bad in seq:
        change = hold.observe(at(t), bad)
        if change is not None:
            out.append((t, change.value))
    return out


def test_hold_raises_once_after_the_hold_time_and_clears_once_after_clear_s() -> None:
    hold = Hold(hold_s=10, clear_s=4)
    seq = [(t, True) for t in range(0, 30, 2)] + [(t, False) for t in range(30, 40, 2)]
    assert observe(hold, seq) == [(10, "raised"), (34, "cleared")]
    assert not hold.raised and hold.since is None


def test_hold_does_not_raise_a_condition_that_ends_before_the_hold_time() -> None:
    hold = Hold(hold_s=10, clear_s=4)
    assert observe(hold, [(0, True), (8, True), (9, False), (12, True), (20, True)]) == []
    assert hold.since == at(12)  # it began again at 12


def test_a_short_recovery_does_not_clear_and_unknown_changes_nothing() -> None:
    hold = Hold(hold_s=0, clear_s=5)
    seq = [(0, True), (1, False), (3, None), (4, True), (5, False), (9, None), (10, False)]
    assert observe(hold, seq) == [(0, "raised"), (10, "cleared")]


def test_grace_lets_one_check_that_changed_pass_before_the_raise() -> None:
    once = [(0, True), (5, True), (10, False), (15, True), (20, True)]
    assert observe(Hold(hold_s=20, clear_s=0, grace_s=5), once) == [(20, "raised")]
    twice = [(0, True), (5, True), (10, False), (15, False), (20, True), (40, True)]
    assert observe(Hold(hold_s=20, clear_s=0, grace_s=5), twice) == [(40, "raised")]


def test_a_condition_may_have_begun_before_it_was_observed() -> None:
    hold = Hold(hold_s=0, clear_s=0)
    assert hold.observe(at(60), True, began=at(0)) is AlertPhase.RAISED
    assert hold.since == at(0)


# -- healthy footage --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Image]]:
    """Healthy footage at the analysis rate: real, and composed (MJPG and H.264)."""
    d = tmp_path_factory.mktemp("footage")
    ten = round(10 / FPS)  # H.264 at a camera's 10 fps, every fifth frame analysed
    return {
        "vtest.avi": list(vtest()),
        "still street (MJPG)": read(scenes.static_scene(d / "static.avi", 40, fps=FPS)),
        "still street (H.264)": read(scenes.static_scene(d / "static.mp4", 24, fps=10), ten),
        "leuvenB held still (H.264)": read(
            scenes.still_photo(d / "leuven.mp4", scenes.LEUVEN, 24, fps=10), ten
        ),
    }


@pytest.mark.parametrize(
    "name",
    [
        "vtest.avi",
        "still street (MJPG)",
        "still street (H.264)",
        "leuvenB held still (H.264)",
    ],
)
def test_healthy_footage_raises_nothing_and_no_check_comes_near_its_threshold(
    tmp_path: Path, footage: dict[str, list[Image]], name: str
) -> None:
    frames = footage[name]
    r = run(tmp_path, frames, frames)  # twice: the loop's jump back is a change too
    assert r.alerts == []
    assert all(not any(j.values()) for j in r.judged), r.judged
    m = r.measured
    assert min(x["diff"] for x in m if "diff" in x) >= 1.5 * DEFAULT.frozen_max_diff
    assert min(x["texture"] for x in m) >= 50 * DEFAULT.covered_max_texture
    assert min(x["spread"] for x in m) >= 10 * DEFAULT.covered_max_spread
    assert min(x["sharpness"] for x in m) >= 4 * DEFAULT.covered_max_sharpness
    assert min(x["matches"] for x in m if "matches" in x) >= 2 * DEFAULT.moved_min_matches
    assert max(x["shift"] for x in m if "shift" in x) <= DEFAULT.moved_max_shift / 10


def night(image: Image, rng: np.random.Generator, gain: float, gamma: float) -> Image:
    dark = 255 * (image / 255.0) ** gamma * gain + rng.normal(0, 3, image.shape)
    return np.asarray(np.clip(dark, 0, 255), np.uint8)


@pytest.mark.parametrize(("gain", "gamma"), [(0.25, 2.2), (0.15, 1.0)])
def test_night_with_structure_is_neither_covered_nor_moved(
    tmp_path: Path, gain: float, gamma: float
) -> None:
    """Dusk falls at once (the reference was taken by day): a quarter of the light
    through a camera's gamma, or 15 % of it, with sensor noise."""
    rng = np.random.default_rng(7)
    r = run(tmp_path, live(10), [night(f, rng, gain, gamma) for f in live(60, 20)])
    assert r.alerts == []
    assert all(not any(j.values()) for j in r.judged), r.judged


# -- frozen -----------------------------------------------------------------------------------


def frozen_h264(tmp: Path, seconds: float) -> list[Image]:
    """One vtest frame encoded as a 10 fps H.264 stream (a stuck encoder), decoded."""
    still = vtest()[60]
    path = scenes.write(tmp / "frozen.mp4", (still for _ in range(round(seconds * 10))), 10.0)
    return read(path, step=round(10 / FPS))


@pytest.mark.parametrize("kind", ["identical", "h264"])
def test_a_frozen_picture_raises_once_and_clears_when_it_moves_again(
    tmp_path: Path, kind: str
) -> None:
    stuck = [vtest()[60]] * 80 if kind == "identical" else frozen_h264(tmp_path, 40)
    assert len(stuck) == 80
    r = run(tmp_path, live(20), stuck, live(30, 60))
    raised = assert_one_episode(r, FROZEN, broke_at=20, back_at=60)
    assert "picture unchanged (mean abs diff 0.0" in raised.rule_text
    assert raised.rule_text.endswith("for 20 s")


# -- covered ----------------------------------------------------------------------------------


def cap(image: Image, rng: np.random.Generator) -> Image:
    return np.asarray(np.clip(12 + rng.normal(0, 3, image.shape), 0, 255), np.uint8)


def blurred(image: Image, rng: np.random.Generator) -> Image:
    return np.asarray(cv2.GaussianBlur(image, (0, 0), 15), np.uint8)


def painted(image: Image, rng: np.random.Generator) -> Image:
    haze = 0.8 * 200 + 0.2 * cv2.GaussianBlur(image, (0, 0), 10) + rng.normal(0, 2, image.shape)
    return np.asarray(np.clip(haze, 0, 255), np.uint8)


@pytest.mark.parametrize("cover", [cap, blurred, painted], ids=["cap", "defocus", "paint"])
def test_a_covered_lens_raises_once_and_clears_when_uncovered(
    tmp_path: Path, cover: Callable[[Image, np.random.Generator], Image]
) -> None:
    rng = np.random.default_rng(3)
    r = run(tmp_path, live(20), [cover(f, rng) for f in live(40, 40)], live(30, 120))
    raised = assert_one_episode(r, COVERED, broke_at=20, back_at=60)
    assert raised.rule_text.startswith("no picture structure (texture ")


# -- moved ------------------------------------------------------------------------------------


def shifted(image: Image) -> Image:
    m = np.array([[1, 0, 60], [0, 1, 0]], np.float32)
    return np.asarray(cv2.warpAffine(image, m, (768, 576), borderMode=cv2.BORDER_REPLICATE))


def turned(image: Image) -> Image:
    m = cv2.getRotationMatrix2D((384, 288), 10, 1.0)
    return np.asarray(cv2.warpAffine(image, m, (768, 576), borderMode=cv2.BORDER_REPLICATE))


@pytest.mark.parametrize(
    ("move", "said"),
    [
        (shifted, r"view shifted by 6[01] px \(7\.[89]% of the width; turned 0\.0°\)"),
        (turned, r"view shifted by 7\d px \(9\.\d% of the width; turned (9\.9|10\.\d)°\)"),
    ],
    ids=["shift-60px", "turn-10deg"],
)
def test_a_moved_view_raises_once_and_clears_when_put_back(
    tmp_path: Path, move: Callable[[Image], Image], said: str
) -> None:
    r = run(tmp_path, live(20), [move(f) for f in live(40, 40)], live(30, 120))
    raised = assert_one_episode(r, MOVED, broke_at=20, back_at=60)
    assert re.match(said, raised.rule_text), raised.rule_text


def test_the_reference_view_is_kept_across_restarts_until_the_zones_change(
    tmp_path: Path,
) -> None:
    first = Run(monitor(tmp_path, key="zones-a"), Clock()).feed(live(10))
    assert first.alerts == [] and first.health.reference is not None
    (path,) = (tmp_path / "health").glob("reference-*.png")
    assert path.name == "reference-zones-a.png"
    # restarted while the camera was off its mark: the kept reference says so
    again = Run(monitor(tmp_path, key="zones-a"), Clock()).feed([shifted(f) for f in live(40)])
    assert again.phases() == [(MOVED, AlertPhase.RAISED)]
    # the zones were re-drawn for the new view: a new reference, nothing to say
    redrawn = Run(monitor(tmp_path, key="zones-b"), Clock()).feed([shifted(f) for f in live(40)])
    assert redrawn.alerts == []
    assert [p.name for p in (tmp_path / "health").glob("reference-*.png")] == [
        "reference-zones-b.png"
    ]


# -- offline ----------------------------------------------------------------------------------


def test_offline_is_raised_once_after_offline_s_without_frames_and_cleared_by_frames(
    tmp_path: Path,
) -> None:
    clock = Clock()
    health = monitor(tmp_path, clock=clock)
    r = Run(health, clock).feed(live(10))
    last_frame = clock.now
    health.status(
        SourceStatus("cam-1", SourceState.RECONNECTING, clock.now, "cannot open stream", 4.0, 3)
    )
    raised = []
    for s in range(1, 31):  # the worker's tick, every second, no frames
        clock.now = last_frame + timedelta(seconds=s)
        raised += [(s, a) for a in health.tick()]
    ((after, alert),) = raised
    assert after == FAST.offline_s
    assert alert.category == OFFLINE and alert.phase is AlertPhase.RAISED
    assert alert.first_seen == last_frame
    assert alert.rule_text == (
        "no frame for 5 s (source reconnecting: cannot open stream, 3 failed attempts)"
    )
    assert [e.kind for e in alert.evidence] == [EvidenceKind.SNAPSHOT]  # the last frame
    r.t += 30
    r.feed(live(20))  # frames again; ticks find nothing to say
    assert [a.phase for _, a in r.alerts] == [AlertPhase.CLEARED]
    (t_cleared, cleared) = r.alerts[0]
    assert t_cleared == pytest.approx(r.t - 20 + CLEAR_S)
    assert cleared.first_seen == last_frame and cleared.category == OFFLINE
    assert cleared.rule_text == (
        "well again for 10 s; before: no frame for 30 s "
        "(source reconnecting: cannot open stream, 3 failed attempts)"
    )
    assert health.tick() == []


def offline_raised(tmp: Path, clock: Clock) -> tuple[CameraHealth, Alert]:
    health = monitor(tmp, clock=clock)
    Run(health, clock).feed(live(4))
    clock.now += timedelta(seconds=FAST.offline_s)
    (alert,) = health.tick()
    assert alert.category == OFFLINE and alert.phase is AlertPhase.RAISED
    return health, alert


def test_a_camera_back_while_the_box_was_down_is_cleared_after_the_restart(
    tmp_path: Path,
) -> None:
    clock = Clock()
    health, raised = offline_raised(tmp_path, clock)
    health.settled([raised])  # the worker: the alert is in the outbox
    clock.now += timedelta(hours=2)  # the box was down; the camera came back meanwhile
    again = monitor(tmp_path, clock=clock)
    r = Run(again, clock)
    r.t = (clock.now - START).total_seconds()
    r.feed(live(20))
    assert r.phases() == [(OFFLINE, AlertPhase.CLEARED)]
    cleared = r.alerts[0][1]
    assert cleared.first_seen == raised.first_seen  # the same episode, at the same case
    again.settled([cleared])
    assert json.loads((tmp_path / "health" / "raised.json").read_text()) == {}
    restarted = monitor(tmp_path, clock=clock)
    clock.now += timedelta(seconds=3 * FAST.offline_s)
    (fresh,) = restarted.tick()  # cleared before: a new episode is raised
    assert fresh.phase is AlertPhase.RAISED


def test_a_camera_still_offline_after_a_restart_is_not_raised_twice(tmp_path: Path) -> None:
    clock = Clock()
    health, raised = offline_raised(tmp_path, clock)
    health.settled([raised])
    again = monitor(tmp_path, clock=clock)
    for _ in range(3 * int(FAST.offline_s)):
        clock.now += timedelta(seconds=1)
        assert again.tick() == []


def test_a_raise_that_never_became_durable_is_raised_again(tmp_path: Path) -> None:
    clock = Clock()
    offline_raised(tmp_path, clock)  # (no settled: the box died before the outbox took it)
    again = monitor(tmp_path, clock=clock)
    clock.now += timedelta(seconds=FAST.offline_s)
    (alert,) = again.tick()
    assert alert.phase is AlertPhase.RAISED


def test_an_unreadable_health_state_starts_afresh(tmp_path: Path) -> None:
    (tmp_path / "health").mkdir()
    (tmp_path / "health" / "raised.json").write_text("{not json")
    clock = Clock()
    health = monitor(tmp_path, clock=clock)
    assert not any(h.raised for h in health.holds.values())


def test_a_source_that_ended_on_purpose_is_not_offline(tmp_path: Path) -> None:
    clock = Clock()
    health = monitor(tmp_path, clock=clock)
    Run(health, clock).feed(live(5))
    health.stop()
    clock.now += timedelta(hours=1)
    assert health.tick() == []


def test_a_camera_that_never_sent_a_frame_is_offline_without_a_snapshot(tmp_path: Path) -> None:
    clock = Clock()
    health = monitor(tmp_path, clock=clock)
    clock.now += timedelta(seconds=FAST.offline_s)
    (alert,) = health.tick()
    assert alert.category == OFFLINE and alert.evidence == ()
    assert alert.first_seen == START


def test_disabled_checks_raise_nothing(tmp_path: Path) -> None:
    off = FAST.model_copy(update={"enabled": False})
    r = run(tmp_path, live(10), [vtest()[0]] * 80, cfg=off)
    r.clock.now += timedelta(hours=1)
    assert r.alerts == [] and r.health.tick() == []
    only_covered = FAST.model_copy(update={"frozen": False})
    r = run(tmp_path, live(10), [vtest()[0]] * 80, cfg=only_covered)
    assert r.alerts == []


# -- the camera's place ----------------------------------------------------------------------


class NoDetector:
    labels = ("person",)

    def detect(self, frame: Image) -> Detections:
        return Detections.empty(self.labels)


def camera_worker(tmp: Path, camera: dict[str, object]) -> CameraWorker:
    data = edge_config(tmp, [{"camera_id": "cam-1", "url": "unused", **camera}])
    corner = {"place_id": "corner", "name": "Corner", "lat": 31.25, "lon": 121.42}
    data["places"] = [
        {"place_id": "bay", "name": "Loading bay"},
        {**corner, "grids": {"micro": "g-7"}},
    ]
    cfg = parse_edge_config(data)
    return CameraWorker(cfg.cameras[0], cfg, NoDetector(), tmp, lambda a: None)


def test_health_cases_are_at_the_camera_s_own_place_named_after_what_it_watches(
    tmp_path: Path,
) -> None:
    by_zone = camera_worker(tmp_path, {}).health.place
    assert (by_zone.place_id, by_zone.name) == ("camera:cam-1", "camera cam-1 at Loading bay")
    placed = camera_worker(tmp_path, {"place": "corner"}).health.place
    assert (placed.name, placed.grids.micro) == ("camera cam-1 at Corner", "g-7")
    assert placed.lat is None and placed.lon is None  # its own site, whatever is near
    alone = camera_worker(tmp_path, {"zones": []}).health.place
    assert (alone.place_id, alone.name) == ("camera:cam-1", "camera cam-1")
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.place: no place 'nowhere'"):
        camera_worker(tmp_path, {"place": "nowhere"})


# -- the worker -------------------------------------------------------------------------------


def edge_config(tmp: Path, cameras: list[dict[str, object]]) -> dict[str, object]:
    return {
        "edge": {"evidence_dir": str(tmp / "evidence")},
        "places": [{"place_id": "bay", "name": "Loading bay"}],
        "cameras": [
            {
                "analysis_fps": FPS,
                "clip": {"enabled": False},
                "zones": [{"zone_id": "bay", "place": "bay", "polygon": scenes.BAY}],
                **cam,
            }
            for cam in cameras
        ],
    }


def run_worker(
    cfg: dict[str, object], until: Callable[[list[Alert]], bool], limit: float
) -> list[Alert]:
    sink = MemoryAlertSink()
    edge = EdgeWorker(parse_config(cfg), sink, pace="realtime", drain_s=5)

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(edge.run(stop))
        deadline = time.monotonic() + limit
        while not until(sink.alerts) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        stop.set()
        await task

    asyncio.run(go())
    return sink.alerts


def test_the_worker_raises_offline_for_a_camera_whose_source_fails_not_one_that_ended(
    tmp_path: Path,
) -> None:
    short = scenes.write(tmp_path / "short.avi", iter(list(vtest())[:6]), FPS)  # 3 s
    health = {"offline_s": 2.0}
    cfg = edge_config(
        tmp_path,
        [
            {"camera_id": "cam-gone", "url": str(tmp_path / "missing.avi"), "health": health},
            {"camera_id": "cam-file", "url": str(short), "health": health},
        ],
    )
    started = time.monotonic()
    # the file ends after 3 s, the other camera is offline after 2: give both 8 s
    alerts = run_worker(cfg, lambda a: bool(a) and time.monotonic() - started > 8, limit=30)
    health_alerts = [(a.source_id, a.category, a.phase) for a in alerts]
    assert health_alerts == [("cam-gone", OFFLINE, AlertPhase.RAISED)], health_alerts
    (alert,) = alerts
    assert alert.place.place_id == "camera:cam-gone" and alert.evidence == ()
    # in the outbox, so kept as raised for the next start
    state = tmp_path / "evidence" / "cam-gone" / "health" / "raised.json"
    assert json.loads(state.read_text()) == {OFFLINE: alert.first_seen.isoformat()}


@pytest.mark.integration
def test_rtsp_camera_offline_then_back(tmp_path: Path, rtsp_server: RtspServer) -> None:
    """The real RTSP server (tests/support/rtsp_server.py) killed, then started again."""
    cfg = edge_config(
        tmp_path,
        [
            {
                "camera_id": "cam-rtsp",
                "url": rtsp_server.url,
                "stream": {
                    "open_timeout_s": 3.0,
                    "read_timeout_s": 2.0,
                    "retry_min_s": 0.2,
                    "retry_max_s": 1.0,
                },
                "health": {"offline_s": 4.0, "clear_s": 2.0},
            }
        ],
    )
    sink = MemoryAlertSink()
    edge = EdgeWorker(parse_config(cfg), sink, pace="realtime", drain_s=5)

    def health_alerts() -> list[tuple[str, AlertPhase]]:
        return [(a.category, a.phase) for a in sink.alerts if a.category in (OFFLINE, FROZEN)]

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(edge.run(stop))
        try:
            await wait_async(lambda: edge.camera_health.get("cam-rtsp") is not None, 30)
            health = edge.camera_health["cam-rtsp"]
            await wait_async(lambda: health.checks >= 2, 30)  # frames flow
            rtsp_server.kill()
            await wait_async(lambda: health_alerts() == [(OFFLINE, AlertPhase.RAISED)], 30)
            rtsp_server.start()
            await wait_async(lambda: len(health_alerts()) == 2, 60)
        finally:
            stop.set()
            await task

    asyncio.run(go())
    assert health_alerts() == [(OFFLINE, AlertPhase.RAISED), (OFFLINE, AlertPhase.CLEARED)]
    raised = next(a for a in sink.alerts if a.category == OFFLINE)
    assert re.match(r"no frame for [45] s \(source (connecting|reconnecting)", raised.rule_text)
    assert [e.kind for e in raised.evidence] == [EvidenceKind.SNAPSHOT]


async def wait_async(done: Callable[[], bool], limit: float) -> None:
    deadline = time.monotonic() + limit
    while not done():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


def test_health_checks_are_cheap(tmp_path: Path) -> None:
    """One picture check on a 768x576 frame: a few milliseconds (the cost is measured
    by the monitor itself; the figure is printed for the record)."""
    health = monitor(tmp_path, DEFAULT)
    frames = vtest()
    started = time.perf_counter()
    views = [view_of(f) for f in frames[:40]]
    view_ms = (time.perf_counter() - started) * 1000 / len(views)
    Run(health, Clock()).feed(f for f in frames for _ in range(10))  # a check every 5 s
    print(f"view {view_ms:.2f} ms, whole check {health.check_ms:.2f} ms ({health.checks} checks)")
    assert health.checks >= 150
    assert health.check_ms < 50  # generous: a loaded 2-core test machine
