"""Camera health: a camera that is offline, frozen, covered or moved becomes a case.

Four checks per camera, each raised once when its condition has held for its
hold time and cleared (:attr:`~core.records.AlertPhase.CLEARED`) once the
camera has been well for ``clear_s``, like the box's ``edge_disk_low``:

=================  ==========================================================
category           raised when
=================  ==========================================================
``camera_offline`` no frame for ``offline_s`` (wall clock): the source keeps
                   failing to (re)connect, stalls, or its thread died; the
                   source's last status names why
``camera_frozen``  frames arrive but the picture does not change: the mean
                   absolute difference between consecutive checks' pictures
                   stays under ``frozen_max_diff`` for ``frozen_s``
``camera_covered`` the picture has no structure (lens covered, sprayed or
                   badly defocused) for ``covered_s``
``camera_moved``   the view no longer matches its reference view for
                   ``moved_s``: shifted or turned by more than
                   ``moved_max_shift`` of the width, or not recognisable
=================  ==========================================================

**Cheap by design.** The picture checks run every ``check_every_s`` of frame
time (5 s), not on every frame, on the frame converted once to grey and
shrunk (:class:`View`): 160 pixels wide for the frozen and covered measures,
320 for the features of the moved check. The cost is measured per check
(:attr:`CameraHealth.check_ms`); on a 768x576 frame, on this project's
2-core test machine: 1.5 ms to make the view, 0.3 ms for the frozen and
covered measures, 6 ms for the features and their match (ORB 3 ms, match
and RANSAC 3 ms): 4-8 ms a check, about 0.1 % of one core at one check
every 5 s. ``camera_offline`` is judged by :meth:`CameraHealth.tick`,
called every second by the edge worker from its loop, because a camera
with no frames has no frame to judge on.

**Measures** (all on the 160-pixel grey picture, levels 0-255):

- *frozen*: mean absolute difference to the previous check's picture. A
  stuck encoder repeats its picture: identical frames give 0, one picture
  kept in a 10 fps H.264 stream at most 0.02 between frames 2 s apart and
  0.005 5 s apart (its key frames refresh it a little). A still street is
  never that still: sensor noise stays in it, >= 0.48 between checks 5 s
  apart in every calibration video, and >= 0.065 even 2 s apart within
  one H.264 group of pictures. A single check that changed (a key frame)
  does not restart the hold; two do.
- *covered*: ``texture`` (variance of the Laplacian), ``spread`` (2nd to
  98th percentile of brightness) and ``sharpness`` = texture / spread²,
  which does not depend on light or contrast: night scales both alike, a
  defocused or sprayed lens drops the texture but keeps the spread. Covered
  when spread < ``covered_max_spread`` (uniform), texture <
  ``covered_max_texture`` (no edges at all) or sharpness <
  ``covered_max_sharpness`` (edges far too weak for the picture's contrast).
- *moved*: ORB features of the 320-pixel picture matched to those of the
  reference view, a similarity (shift, rotation, scale) fitted by RANSAC;
  the shift is how far the frame's corners move under it. Moving people
  and cars are outliers to the fit. At least ``moved_min_matches`` matches
  are needed; fewer means the view is not recognised.

Calibration (``tests/test_camera_health.py`` keeps it true, asserting a
margin on every check): on vtest.avi and the scene videos of
``tests/support/scenes.py`` (a still street with passers-by and sensor
noise as MJPG and H.264, leuvenB held still as H.264; the stall, piled
goods, bicycle and crowd scenes were measured once too) the checks stay
far from their thresholds: difference >= 0.48 (threshold 0.04), texture
>= 930 (8), spread >= 172 (12), sharpness >= 0.020 (0.004), matches >= 49
(20), shift <= 1.5 px (31 px on 768). Night made from vtest at once
after a daytime reference (gamma 2.2 and a quarter of the light, or 15 %
of it linearly, with noise): texture >= 40, spread >= 26, sharpness >=
0.05, >= 29 matches to the day reference, shift <= 1.2 px. The broken
cameras fall far over: Gaussian blur of sigma 6-15 px gives sharpness
<= 0.002, a haze of paint texture < 2, a dark cap spread < 5, a view
shifted 60 px or turned 10 degrees a shift of 60 or 71 px.

**The reference view** for the moved check is taken at the first healthy
check (not covered, not frozen, enough features) and kept on disk
(``<evidence_dir>/<camera>/health/reference-<fingerprint>.png``, the
320-pixel grey picture), so that a restart after a power cut does not take
a moved view as the new normal. The fingerprint covers the camera's
``url`` and its zones: re-drawing the zones (what an operator does for a
camera that was moved on purpose) takes a new reference at the next start;
so does deleting the file. It is never replaced automatically: a
``camera_moved`` case clears when the camera is put back. Between
references, the last view that matched (checked within three check
periods) stands in when the reference is not recognised, e.g. at night:
its own shift from the reference is kept, so a slow drift adds up. A view
that matches neither is *moved* if the last match is that fresh (the
view changed at once) or its brightness is within a factor two of the
reference's (the light cannot explain it); otherwise it is not judged.

A covered picture is neither judged frozen nor moved, a frozen one not
moved: one cause, one case.

**Across restarts.** What is raised is kept on disk
(``<evidence_dir>/<camera>/health/raised.json``: each raised check and when
its condition began), written once the alert is durable (the worker calls
:meth:`CameraHealth.settled` after the outbox took it; a raise lost in a
crash before that is raised again). A camera starts with the checks it had
raised: a camera that came back while the box was down is cleared after
``clear_s`` of frames, one still broken is not raised twice.

**Place.** Cases are keyed by (category, site), and the problem is the
camera's, so each camera's health alerts carry a place of its own,
``camera:<camera_id>``, named after the camera and the place it watches
(its ``place``, else its first zone's place) and in that place's grids,
for routing. It carries no coordinates: two cameras on one corner must not
share one ``camera_offline`` case (nor have one camera's recovery clear the
other's).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from pydantic import Field

from core.config import Section
from core.records import Alert, AlertPhase, Evidence, Place, SourceKind
from edge.snapshot import annotate_view, write_snapshot
from edge.zones import Zone
from ingest.frames import Frame, SourceStatus

log = logging.getLogger("streetwatch.edge.health")

OFFLINE = "camera_offline"
FROZEN = "camera_frozen"
COVERED = "camera_covered"
MOVED = "camera_moved"
CATEGORIES = (OFFLINE, FROZEN, COVERED, MOVED)

SMALL_WIDTH = 160  # the picture the frozen and covered measures look at
FEATURE_WIDTH = 320  # the picture the moved check takes features from
ORB_FEATURES = 500
RANSAC_PX = 2.0  # on the FEATURE_WIDTH picture
FRESH_CHECKS = 3  # the last matched view stands in for this many check periods
LIGHT_RATIO = 2.0  # brightness within this factor of the reference: comparable light
RAISED_FILE = "raised.json"  # under <camera>/health/: the raised checks, across restarts

Grey = npt.NDArray[np.float32]
Image = npt.NDArray[np.uint8]
Affine = npt.NDArray[np.float64]  # 3x3, reference pixels -> current pixels


class CameraHealthConfig(Section):
    """Camera health (docs/architecture.md): a case per camera and problem, at camera:<id>."""

    enabled: bool = Field(default=True, description="Run the camera's health checks")
    check_every_s: float = Field(
        default=5.0, gt=0, le=600, description="Seconds of video between two picture checks"
    )
    clear_s: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="A raised check is cleared after the camera has been well this long",
    )
    offline: bool = Field(default=True, description="Raise camera_offline")
    offline_s: float = Field(
        default=60.0, gt=0, le=86400, description="No frame for this long: camera_offline"
    )
    frozen: bool = Field(default=True, description="Raise camera_frozen")
    frozen_s: float = Field(
        default=120.0, gt=0, le=86400, description="Picture unchanged this long: camera_frozen"
    )
    frozen_max_diff: float = Field(
        default=0.04,
        ge=0,
        le=255,
        description="Unchanged: mean absolute difference (grey levels, 160 px wide) to the "
        "previous check under this",
    )
    covered: bool = Field(default=True, description="Raise camera_covered")
    covered_s: float = Field(
        default=60.0, gt=0, le=86400, description="No structure this long: camera_covered"
    )
    covered_max_texture: float = Field(
        default=8.0, ge=0, description="Covered: variance of the Laplacian under this"
    )
    covered_max_spread: float = Field(
        default=12.0,
        ge=0,
        le=255,
        description="Covered: brightness range (2nd to 98th percentile) under this",
    )
    covered_max_sharpness: float = Field(
        default=0.004,
        ge=0,
        description="Covered: texture / spread² under this (defocused, sprayed)",
    )
    moved: bool = Field(default=True, description="Raise camera_moved")
    moved_s: float = Field(
        default=300.0,
        gt=0,
        le=86400,
        description="View off its reference this long: camera_moved (long enough for a bus "
        "standing in front of the camera)",
    )
    moved_max_shift: float = Field(
        default=0.04,
        gt=0,
        le=1,
        description="Moved: the frame's corners shifted by more than this share of its width",
    )
    moved_min_matches: int = Field(
        default=20, ge=4, le=500, description="Features matched to recognise the view"
    )


# -- the state machine ----------------------------------------------------------------------


class Hold:
    """One condition, raised once and cleared once.

    :meth:`observe` takes one observation at a time: ``True`` the condition
    holds, ``False`` it does not, ``None`` it cannot be judged (changes
    nothing). It returns ``RAISED`` when the condition has held for
    ``hold_s`` since it began, ``CLEARED`` when a raised condition has been
    absent for ``clear_s``, else None. Before it is raised, an absence
    shorter than ``grace_s`` does not restart it (one check that changed in
    a frozen stream: a key frame).
    """

    def __init__(self, hold_s: float, clear_s: float, grace_s: float = 0.0) -> None:
        self.hold_s = hold_s
        self.clear_s = clear_s
        self.grace_s = grace_s
        self.raised = False
        self.since: datetime | None = None  # when the condition began
        self.well_since: datetime | None = None  # first observation without it since then

    def observe(
        self, at: datetime, bad: bool | None, began: datetime | None = None
    ) -> AlertPhase | None:
        """``began``: when the condition began, if earlier than ``at`` (default ``at``)."""
        if bad is None:
            return None
        if bad:
            self.well_since = None
            if self.since is None:
                self.since = began or at
            if not self.raised and (at - self.since).total_seconds() >= self.hold_s:
                self.raised = True
                return AlertPhase.RAISED
            return None
        if self.since is None:
            return None
        if self.well_since is None:
            self.well_since = at
        well = (at - self.well_since).total_seconds()
        if self.raised:
            if well >= self.clear_s:
                self.raised, self.since, self.well_since = False, None, None
                return AlertPhase.CLEARED
        elif well >= self.grace_s:
            self.since, self.well_since = None, None
        return None


# -- the measures -----------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """One frame as the checks see it: grey, shrunk."""

    small: Grey  # SMALL_WIDTH wide, float32 (averaging keeps what uint8 would round off)
    fine: Image  # FEATURE_WIDTH wide, uint8, for features
    width: int  # of the analysed frame


def view_of(image: Image) -> View:
    h, w = image.shape[:2]
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    fine = cv2.resize(
        grey.astype(np.float32),
        (FEATURE_WIDTH, max(1, round(h * FEATURE_WIDTH / w))),
        interpolation=cv2.INTER_AREA,
    )
    small = cv2.resize(
        fine, (SMALL_WIDTH, max(1, round(h * SMALL_WIDTH / w))), interpolation=cv2.INTER_AREA
    )
    return View(
        np.asarray(small, np.float32),
        np.asarray(np.clip(np.rint(fine), 0, 255), np.uint8),
        w,
    )


def mean_abs_diff(a: Grey, b: Grey) -> float:
    return float(np.mean(np.abs(a - b)))


@dataclass(frozen=True)
class Structure:
    """How much there is to see in a picture."""

    texture: float  # variance of the Laplacian
    spread: float  # 2nd to 98th percentile of brightness
    brightness: float  # mean

    @property
    def sharpness(self) -> float:
        return self.texture / max(self.spread, 1.0) ** 2


def structure_of(small: Grey) -> Structure:
    lap = cv2.Laplacian(small, cv2.CV_32F)
    lo, hi = np.percentile(small, [2, 98])
    return Structure(float(lap.var()), float(hi - lo), float(small.mean()))


def covered(s: Structure, cfg: CameraHealthConfig) -> bool:
    return (
        s.spread < cfg.covered_max_spread
        or s.texture < cfg.covered_max_texture
        or s.sharpness < cfg.covered_max_sharpness
    )


@dataclass(frozen=True)
class Features:
    points: npt.NDArray[np.float32]  # (N, 2) on the FEATURE_WIDTH picture
    descriptors: Image | None  # (N, 32)
    size: tuple[int, int]  # (w, h) of that picture

    def __len__(self) -> int:
        return len(self.points)


_orb = threading.local()  # an ORB detector per thread (cv2 objects are not shared)


def features_of(fine: Image) -> Features:
    orb = getattr(_orb, "detector", None)
    if orb is None:
        orb = _orb.detector = cv2.ORB.create(ORB_FEATURES, fastThreshold=10)
    keypoints, descriptors = orb.detectAndCompute(fine, None)
    points = np.array([k.pt for k in keypoints], np.float32).reshape(-1, 2)
    h, w = fine.shape[:2]
    found = None if descriptors is None else np.asarray(descriptors, np.uint8)
    return Features(points, found, (w, h))


@dataclass(frozen=True)
class Alignment:
    """Where a view's reference lies in it."""

    matches: int  # RANSAC inliers
    transform: Affine  # reference pixels -> current pixels (FEATURE_WIDTH picture)

    def shift(self, size: tuple[int, int]) -> float:
        """How far the picture's corners moved, as a share of its width."""
        w, h = size
        corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64)
        moved = corners @ self.transform.T
        return float(np.abs(moved[:, :2] - corners[:, :2]).max() / w)

    @property
    def rotation_deg(self) -> float:
        return float(np.degrees(np.arctan2(self.transform[1, 0], self.transform[0, 0])))

    def then(self, later: Alignment) -> Alignment:
        """This alignment followed by ``later`` (reference -> this view -> later view)."""
        return Alignment(later.matches, later.transform @ self.transform)


IDENTITY = Alignment(0, np.eye(3))


def align(reference: Features, current: Features, min_matches: int) -> Alignment | None:
    """The similarity taking ``reference`` onto ``current``; None if too few features agree."""
    if (
        reference.descriptors is None
        or current.descriptors is None
        or len(reference) < min_matches
        or len(current) < min_matches
    ):
        return None
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
    pairs = matcher.match(reference.descriptors, current.descriptors)
    if len(pairs) < min_matches:
        return None
    src = reference.points[[p.queryIdx for p in pairs]]
    dst = current.points[[p.trainIdx for p in pairs]]
    fitted, inliers = cv2.estimateAffinePartial2D(
        src, dst, ransacReprojThreshold=RANSAC_PX, maxIters=500
    )
    if fitted is None or inliers is None or int(inliers.sum()) < min_matches:
        return None
    transform = np.vstack([np.asarray(fitted, np.float64), [0.0, 0.0, 1.0]])
    return Alignment(int(inliers.sum()), transform)


def fingerprint(url: str, zones: Sequence[tuple[str, Sequence[Sequence[float]]]]) -> str:
    """What the reference view belongs to: the camera's url and its zones."""
    data = json.dumps([url, [[z, [list(p) for p in poly]] for z, poly in zones]])
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:16]


# -- one camera -----------------------------------------------------------------------------


@dataclass
class _Seen:
    """The last view that matched the reference, and how it lies on it."""

    features: Features
    alignment: Alignment
    at: datetime


class CameraHealth:
    """The four checks of one camera.

    Threads: :meth:`observe` runs on the camera thread, :meth:`status` on
    the source's, :meth:`tick` on the worker's loop (through a thread);
    one lock keeps them apart. Each returns the alerts to emit.
    """

    def __init__(
        self,
        camera_id: str,
        cfg: CameraHealthConfig,
        place: Place,
        evidence_dir: Path,
        *,
        zones: Sequence[Zone] = (),
        reference_key: str = "",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        redact: Callable[[Evidence], Evidence] | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.redact = redact  # faces blurred in the snapshots (edge/privacy.py), if set
        self.cfg = cfg
        self.place = place
        self.evidence_dir = evidence_dir
        self.zones = list(zones)
        self.clock = clock
        self._lock = threading.Lock()
        grace = cfg.check_every_s  # one check that says otherwise is not enough; two are
        self.holds = {
            OFFLINE: Hold(0.0, cfg.clear_s),
            FROZEN: Hold(cfg.frozen_s, cfg.clear_s, grace),
            COVERED: Hold(cfg.covered_s, cfg.clear_s, grace),
            MOVED: Hold(cfg.moved_s, cfg.clear_s, grace),
        }
        self.enabled = {
            OFFLINE: cfg.enabled and cfg.offline,
            FROZEN: cfg.enabled and cfg.frozen,
            COVERED: cfg.enabled and cfg.covered,
            MOVED: cfg.enabled and cfg.moved,
        }
        self.watching = cfg.enabled  # offline: False once the source ended on purpose
        self.last_frame_at = clock()  # wall clock; the start counts as a frame
        self.last_frame: Frame | None = None
        self.last_status: SourceStatus | None = None
        self.last_check: datetime | None = None
        self.previous: View | None = None
        self.texts: dict[str, str] = {}  # what was measured, per check, for the alert
        self.began: dict[str, datetime] = {}  # when each raised check's condition began
        self.reference_path = (
            evidence_dir / "health" / f"reference-{reference_key}.png" if reference_key else None
        )
        self.reference: Features | None = None
        self.reference_brightness = 0.0
        self.seen: _Seen | None = None
        self.checks = 0
        self.check_ms = 0.0  # mean cost of a picture check
        # the last picture check: its measures and what each check made of them
        self.measured: dict[str, float] = {}
        self.judged: dict[str, bool | None] = {}
        self.state_path = evidence_dir / "health" / RAISED_FILE
        self._durable: dict[str, datetime] = {}  # raised checks whose alert is on disk
        self._load_reference()
        self._restore()

    # -- inputs --------------------------------------------------------------------------

    def status(self, s: SourceStatus) -> None:
        with self._lock:
            self.last_status = s

    def stop(self) -> None:
        """The source ended on purpose (a file that ended, the worker stopping)."""
        with self._lock:
            self.watching = False

    def tick(self, now: datetime | None = None) -> list[Alert]:
        """Offline: no frame for ``offline_s``. Call it every second or so."""
        now = now or self.clock()
        with self._lock:
            if not (self.watching and self.enabled[OFFLINE]):
                return []
            gap = (now - self.last_frame_at).total_seconds()
            if gap < self.cfg.offline_s:
                return []
            why = self._why_offline()
            self.texts[OFFLINE] = f"no frame for {gap:.0f} s{why}"
            change = self.holds[OFFLINE].observe(now, True, began=self.last_frame_at)
            return self._alerts(OFFLINE, change, now, self.last_frame)

    def observe(self, frame: Frame) -> list[Alert]:
        """A frame arrived: offline ends; every ``check_every_s`` the picture checks."""
        if not self.cfg.enabled:
            return []
        with self._lock:
            now = self.clock()
            self.last_frame_at = now
            self.last_frame = frame
            out: list[Alert] = []
            if self.enabled[OFFLINE]:
                change = self.holds[OFFLINE].observe(now, False)
                out += self._alerts(OFFLINE, change, now, frame)
            at = frame.captured_at
            if (  # (a clock set back starts the checks afresh, it does not stop them)
                self.last_check is not None
                and 0 <= (at - self.last_check).total_seconds() < self.cfg.check_every_s
            ):
                return out
            self.last_check = at
            started = time.perf_counter()
            self.measured = {}
            judged = self.judged = self._judge(view_of(frame.image), at)
            cost_ms = (time.perf_counter() - started) * 1000
            self.checks += 1
            self.check_ms += (cost_ms - self.check_ms) / self.checks
            for check in (COVERED, FROZEN, MOVED):
                if self.enabled[check]:
                    change = self.holds[check].observe(at, judged[check])
                    out += self._alerts(check, change, at, frame)
            return out

    def settled(self, alerts: Sequence[Alert]) -> None:
        """``alerts`` (of this camera's health) are durable: keep what is raised on disk."""
        changed = False
        with self._lock:
            for alert in alerts:
                if alert.source_id != self.camera_id or alert.category not in CATEGORIES:
                    continue
                if alert.phase is AlertPhase.RAISED:
                    self._durable[alert.category] = alert.first_seen
                else:
                    self._durable.pop(alert.category, None)
                changed = True
            if changed:
                self._write_state()

    def _write_state(self) -> None:
        body = {check: began.isoformat() for check, began in sorted(self._durable.items())}
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            part = self.state_path.with_suffix(".json.part")
            part.write_text(json.dumps(body), encoding="utf-8")
            part.replace(self.state_path)
        except OSError as exc:  # the next restart raises again: said, not fatal
            log.error(
                "event=camera_health_state_unwritable camera=%s path=%s error=%s",
                self.camera_id,
                self.state_path,
                exc,
            )

    def _restore(self) -> None:
        """The checks raised before the restart, raised again without an alert."""
        if not self.state_path.is_file():
            return
        try:
            body = json.loads(self.state_path.read_text(encoding="utf-8"))
            raised = {str(k): datetime.fromisoformat(str(v)) for k, v in dict(body).items()}
        except (OSError, ValueError, TypeError) as exc:
            log.warning(
                "event=camera_health_state_unreadable camera=%s path=%s error=%s: starting afresh",
                self.camera_id,
                self.state_path,
                exc,
            )
            return
        for check, began in raised.items():
            if check not in self.holds or not self.enabled[check]:
                continue
            hold = self.holds[check]
            hold.raised, hold.since = True, began
            self.began[check] = began
            self._durable[check] = began
            self.texts[check] = f"raised before the restart, since {began.isoformat()}"
            log.info(
                "event=camera_health_restored camera=%s check=%s since=%s",
                self.camera_id,
                check,
                began.isoformat(),
            )

    # -- the picture checks ----------------------------------------------------------------

    def _judge(self, view: View, at: datetime) -> dict[str, bool | None]:
        s = structure_of(view.small)
        is_covered = covered(s, self.cfg)
        self.measured.update(texture=s.texture, spread=s.spread, sharpness=s.sharpness)
        self.texts[COVERED] = (
            f"no picture structure (texture {s.texture:.1f}, brightness range "
            f"{s.spread:.0f}, sharpness {s.sharpness:.4f})"
        )
        frozen: bool | None = None
        if self.previous is not None and not is_covered:
            diff = mean_abs_diff(self.previous.small, view.small)
            self.measured["diff"] = diff
            frozen = diff < self.cfg.frozen_max_diff
            if frozen:
                self.texts[FROZEN] = f"picture unchanged (mean abs diff {diff:.3f})"
        self.previous = view
        moved: bool | None = None
        if not is_covered and not frozen and self.enabled[MOVED]:
            moved = self._moved(view, s, at)
        return {COVERED: is_covered, FROZEN: frozen, MOVED: moved}

    def _moved(self, view: View, s: Structure, at: datetime) -> bool | None:
        cfg = self.cfg
        current = features_of(view.fine)
        if self.reference is None:
            if len(current) >= 2 * cfg.moved_min_matches:
                self._take_reference(view, current, s)
                self.seen = _Seen(current, IDENTITY, at)
            return None
        found = align(self.reference, current, cfg.moved_min_matches)
        seen = self.seen
        fresh = (
            seen is not None and (at - seen.at).total_seconds() <= FRESH_CHECKS * cfg.check_every_s
        )
        if found is None and seen is not None and fresh:
            step = align(seen.features, current, cfg.moved_min_matches)
            if step is not None:
                found = seen.alignment.then(step)
        if found is None:
            light = s.brightness / max(self.reference_brightness, 1.0)
            if fresh or 1 / LIGHT_RATIO <= light <= LIGHT_RATIO:
                self.texts[MOVED] = (
                    f"view not recognised: fewer than {cfg.moved_min_matches} features "
                    "match its reference"
                )
                return True
            return None
        shift = found.shift(current.size)
        self.measured.update(matches=found.matches, shift=shift)
        if shift > cfg.moved_max_shift:
            self.texts[MOVED] = (
                f"view shifted by {shift * view.width:.0f} px ({shift:.1%} of the width; "
                f"turned {abs(found.rotation_deg):.1f}°) from its reference"
            )
            return True
        self.seen = _Seen(current, found, at)
        return False

    def _load_reference(self) -> None:
        path = self.reference_path
        if path is None or not self.enabled[MOVED] or not path.is_file():
            return
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            log.warning("event=camera_reference_unreadable camera=%s path=%s", self.camera_id, path)
            return
        fine = np.asarray(image, np.uint8)
        self.reference = features_of(fine)
        small = cv2.resize(
            fine.astype(np.float32),
            (SMALL_WIDTH, max(1, round(fine.shape[0] * SMALL_WIDTH / fine.shape[1]))),
            interpolation=cv2.INTER_AREA,
        )
        self.reference_brightness = float(small.mean())
        log.info("event=camera_reference_loaded camera=%s path=%s", self.camera_id, path)

    def _take_reference(self, view: View, current: Features, s: Structure) -> None:
        self.reference = current
        self.reference_brightness = s.brightness
        path = self.reference_path
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        for old in path.parent.glob("reference-*.png"):  # other urls or zones: stale
            old.unlink(missing_ok=True)
        ok, png = cv2.imencode(".png", view.fine)
        if ok:
            part = path.with_suffix(".png.part")
            part.write_bytes(png.tobytes())
            part.replace(path)
        log.info("event=camera_reference_taken camera=%s path=%s", self.camera_id, path)

    # -- alerts ------------------------------------------------------------------------------

    def _why_offline(self) -> str:
        s = self.last_status
        if s is None:
            return ""
        detail = f": {s.detail}" if s.detail else ""
        failures = f", {s.failures} failed attempts" if s.failures else ""
        return f" (source {s.state}{detail}{failures})"

    def _alerts(
        self, check: str, change: AlertPhase | None, at: datetime, frame: Frame | None
    ) -> list[Alert]:
        if change is None:
            return []
        hold = self.holds[check]
        since = hold.since if change is AlertPhase.RAISED else None
        text = self.texts.get(check, check)
        if change is AlertPhase.CLEARED:
            text = f"well again for {self.cfg.clear_s:.0f} s; before: {text}"
        elif check != OFFLINE:
            held = (at - (since or at)).total_seconds()
            text = f"{text} for {held:.0f} s"
        if since is not None:
            self.began[check] = since
            first_seen = since
        else:
            first_seen = self.began.pop(check, at)
        alert_id = Alert.make_id(self.camera_id, check, self.place.place_id, at)
        evidence: tuple[Evidence, ...] = ()
        if change is AlertPhase.RAISED and frame is not None:
            evidence = (self._snapshot(check, text, frame, alert_id),)
        log.log(
            logging.ERROR if change is AlertPhase.RAISED else logging.WARNING,
            "event=camera_health camera=%s check=%s phase=%s since=%s detail=%r",
            self.camera_id,
            check,
            change.value,
            first_seen.isoformat(),
            text,
        )
        return [
            Alert(
                alert_id=alert_id,
                category=check,
                place=self.place,
                source_kind=SourceKind.CAMERA,
                source_id=self.camera_id,
                rule_id=check,
                rule_text=text,
                first_seen=first_seen,
                observed_at=at,
                confidence=1.0,
                phase=change,
                evidence=evidence,
            )
        ]

    def _snapshot(self, check: str, text: str, frame: Frame, alert_id: str) -> Evidence:
        image = annotate_view(
            frame.image,
            self.zones,
            [  # (OpenCV's fonts have ASCII only)
                f"{check}: {text}".replace("°", " deg"),
                f"camera {self.camera_id}  frame {frame.captured_at:%H:%M:%S}Z",
            ],
        )
        evidence = write_snapshot(image, self.evidence_dir, alert_id, frame.captured_at)
        return evidence if self.redact is None else self.redact(evidence)


def health_place(camera_id: str, watched: Place | None) -> Place:
    """The place of a camera's health alerts: its own (see the module's docstring)."""
    place_id = f"camera:{camera_id}"[:128]
    if watched is None:
        return Place(place_id=place_id, name=f"camera {camera_id}")
    name = watched.name or watched.place_id
    return Place(place_id=place_id, name=f"camera {camera_id} at {name}", grids=watched.grids)
