"""Motion-gating benchmark: cameras sustained in real time with gating vs without.

    python -m bench.gating [--seconds 120] [--walking 0.1] [--camera-fps 10 5] [--repeat 3]

Builds, for each ``--camera-fps``, a mostly static street scene from real
footage (tests/support/scenes.py: the vtest.avi background with its real walking
people spliced in for a share ``--walking`` of the time), encoded as H.264
like a camera stream, then runs the whole camera path (decode of every
frame, analysis at 2 fps, detector, rules, evidence) over it in this one
run: motion gating off, on (the default), and on with regions. A camera is sustained in real time if
its footage is processed at least as fast as it plays, so
``cameras = video seconds / processing seconds``. Decoding every frame is
the floor gating cannot lower, so a lower camera frame rate raises the ratio.
The three runs alternate ``--repeat`` times and the fastest of each
is reported, so a busy moment on a shared machine does not decide the ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from core.records import Alert
from detectors.nanodet import NanoDet
from edge.camera_worker import CameraWorker
from ingest.prefetch import prefetched
from ingest.video_file import VideoFileSource
from streetwatch.config import parse_config
from tests.support import scenes


@dataclass(frozen=True)
class Run:
    seconds: float
    analysed: int
    detector_runs: int
    region_runs: int
    alerts: int


MODES = {  # label: [cameras.motion] settings
    "without gating": {"enabled": False},
    "with gating": {"enabled": True},
    "gating+regions": {"enabled": True, "regions": True},
}


def run(video: Path, tmp: Path, detector: NanoDet, motion: dict[str, bool]) -> Run:
    cfg = parse_config({
        "edge": {"evidence_dir": str(tmp)},
        "places": [{"place_id": "bay"}],
        "cameras": [{
            "camera_id": "cam", "url": str(video), "analysis_fps": 2.0,
            "motion": motion, "clip": {"enabled": False},
            "zones": [{"zone_id": "bay", "place": "bay", "polygon": scenes.BAY}],
            "rules": [{"type": "illegal_parking", "rule_id": "bay", "zone": "bay",
                       "dwell_s": 10.0, "repeat_every_s": 60.0}],
        }],
    })  # fmt: skip
    alerts: list[Alert] = []
    worker = CameraWorker(cfg.cameras[0], cfg, detector, tmp, alerts.append)
    source = VideoFileSource("cam", video, 2.0, pace="fast", start=datetime.now(UTC))
    t0 = time.perf_counter()
    for frame in prefetched(source.frames()):
        worker.process(frame)
    worker.finish()
    return Run(
        time.perf_counter() - t0,
        worker.analysed,
        worker.detector_runs,
        worker.region_runs,
        len(alerts),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--seconds", type=int, default=120, help="length of the scene")
    p.add_argument("--walking", type=float, default=0.1, help="share of time people walk by")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3, help="runs of each; the fastest is reported")
    p.add_argument(
        "--camera-fps",
        type=float,
        nargs="+",
        default=[10.0, 5.0],
        help="frame rates of the camera stream to measure (decoding every frame is the floor)",
    )
    args = p.parse_args()
    detector = NanoDet(threads=args.threads)
    print(
        f"{args.seconds} s H.264 scene, analysis_fps 2, people walking "
        f"{args.walking:.0%} of the time; onnxruntime on {args.threads} threads; "
        f"fastest of {args.repeat}"
    )
    for fps in args.camera_fps:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            walk_start = args.seconds * 0.4
            video = scenes.static_scene(
                tmp / "static.mp4",
                args.seconds,
                (walk_start, walk_start + args.seconds * args.walking),
                fps=fps,
            )
            tries: dict[str, list[Run]] = {mode: [] for mode in MODES}
            for _ in range(args.repeat):
                for mode, motion in MODES.items():
                    tries[mode].append(run(video, tmp, detector, motion))
            runs = {m: min(rs, key=lambda r: r.seconds) for m, rs in tries.items()}
        for mode, r in runs.items():
            print(
                f"camera {fps:4.1f} fps {mode:14s}  analysed {r.analysed / args.seconds:.1f} fps, "
                f"detector on {r.detector_runs:4d}/{r.analysed} frames "
                f"({r.region_runs:3d} on a region), {r.seconds:6.2f} s, "
                "cameras in real time "
                f"{args.seconds / r.seconds:6.1f}, {r.alerts} alert(s)"
            )
        off = runs["without gating"].seconds
        ratio = off / runs["with gating"].seconds
        regions = off / runs["gating+regions"].seconds
        print(
            f"camera {fps:4.1f} fps: cameras with gating / without: {ratio:.2f}x "
            f"(with regions: {regions:.2f}x)"
        )


if __name__ == "__main__":
    main()
