"""Edge-path benchmark: raw onnxruntime rate vs the whole edge path, same frames.

    python -m bench.edge_path [--video PATH] [--frames N] [--analysis-fps F]

1. decodes the sample frames once (the frames the edge would analyse at
   ``--analysis-fps``) and times ``session.run`` alone on their prepared
   tensors: the ceiling set by the model;
2. runs the whole edge path on the same video: file decode (grab/skip),
   pre-processing, inference on every analysed frame (motion gating off:
   bench/gating.py measures that), decoding + NMS, tracking, the parking
   rule, annotated snapshot JPEGs, the evidence clip and alert records
   serialised to JSON (the Kafka send is left out: alerts are rare, one per
   rule per ``repeat_every_s``).

Both are measured in this one run and printed side by side with their ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import onnxruntime as ort

from core.records import Alert
from detectors.nanodet import NanoDet
from edge.camera_worker import CameraWorker
from ingest.prefetch import prefetched
from ingest.video_file import VideoFileSource
from streetwatch.config import Config, parse_config

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def bench_config(video: Path, evidence: Path, analysis_fps: float) -> Config:
    return parse_config(
        {
            "edge": {"evidence_dir": str(evidence)},
            "places": [{"place_id": "bay"}],
            "cameras": [
                {
                    "camera_id": "cam-bench",
                    "url": str(video),
                    "analysis_fps": analysis_fps,
                    # the detector on every analysed frame, like the raw rate it is
                    # compared with (bench/gating.py measures motion gating)
                    "motion": {"enabled": False},
                    "zones": [
                        {
                            "zone_id": "bay",
                            "place": "bay",
                            "polygon": [[600, 55], [768, 55], [768, 130], [600, 130]],
                        }
                    ],
                    "rules": [
                        {
                            "type": "illegal_parking",
                            "rule_id": "bay",
                            "zone": "bay",
                            "dwell_s": 10.0,
                            "repeat_every_s": 10.0,
                        }
                    ],
                }
            ],
        }
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--video", type=Path, default=VTEST)
    p.add_argument(
        "--analysis-fps",
        type=float,
        default=10.0,
        help="frames analysed per second of video (10 = every frame of vtest.avi)",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=4, help="runs of each; the best is reported")
    args = p.parse_args()

    detector = NanoDet(threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = bench_config(args.video, Path(tmp), args.analysis_fps)
        source = VideoFileSource(
            "cam-bench", args.video, args.analysis_fps, pace="fast", start=datetime.now(UTC)
        )
        tensors = [detector.preprocess(f.image) for f in source.frames()]
        n = len(tensors)

        # raw and edge runs alternate, so both meet the same machine conditions
        raw_best, edge_best, alerts = 0.0, 0.0, 0
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for x in tensors:
                detector.infer(x)
            raw_best = max(raw_best, n / (time.perf_counter() - t0))

            sent: list[bytes] = []

            def emit(alert: Alert, sent: list[bytes] = sent) -> None:
                sent.append(alert.to_json_bytes())

            worker = CameraWorker(cfg.cameras[0], cfg, detector, Path(tmp), emit)
            source = VideoFileSource(
                "cam-bench", args.video, args.analysis_fps, pace="fast", start=datetime.now(UTC)
            )
            t0 = time.perf_counter()
            for frame in prefetched(source.frames()):
                worker.process(frame)
            worker.finish()
            elapsed = time.perf_counter() - t0
            assert worker.analysed == n, (worker.analysed, n)
            edge_best, alerts = max(edge_best, n / elapsed), len(sent)

    print(
        f"onnxruntime {ort.__version__}, {args.threads} intra-op threads, "
        f"{n} frames of {args.video.name} at {args.analysis_fps:g} analysed fps, "
        f"best of {args.repeat}"
    )
    print(f"raw session.run      {raw_best:8.1f} frames/s")
    print(f"whole edge path      {edge_best:8.1f} frames/s   ({alerts} alerts with snapshots)")
    print(f"edge path / raw      {edge_best / raw_best:8.3f}")
    print(f"real-time cameras at 2 analysed fps (edge path): {edge_best / 2:.1f}")


if __name__ == "__main__":
    main()
