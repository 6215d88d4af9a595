"""``streetwatch replay VIDEO --config FILE``: analyse recorded footage offline.

Runs one configured camera's zones and rules over a video file as fast as
the machine allows, folds the alerts into cases exactly as the dispatch
worker would, and writes into ``--out``: ``alerts.jsonl``,
``case_events.jsonl``, ``cases.json`` and the evidence. Video time is
mapped to wall-clock time from ``--start`` (default: now), so dwell times
and active hours apply as on a live camera.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TextIO

import cv2

from core.records import Alert
from core.timefmt import local_time
from detectors.registry import build_detector
from edge.camera_worker import CameraWorker
from edge.config import CameraConfig
from ingest.frames import SourceError
from ingest.prefetch import prefetched
from ingest.video_file import VideoFileSource
from pipeline.case_table import CaseTable
from streetwatch.config import Config


class ReplayError(Exception):
    """The replay cannot run; the message says why."""


@dataclass(frozen=True)
class ReplayResult:
    frames_decoded: int
    analysed: int
    detector_runs: int
    alerts: list[Alert]
    table: CaseTable
    region_runs: int = 0  # detector runs on a region around the motion (of detector_runs)


def pick_camera(cfg: Config, camera_id: str | None) -> CameraConfig:
    if camera_id is None:
        if len(cfg.cameras) != 1:
            names = ", ".join(c.camera_id for c in cfg.cameras) or "none"
            raise ReplayError(
                f"the config has {len(cfg.cameras)} cameras ({names}): name one with --camera"
            )
        return cfg.cameras[0]
    for cam in cfg.cameras:
        if cam.camera_id == camera_id:
            return cam
    raise ReplayError(f"no camera '{camera_id}' in the config")


class Progress:
    """A one-line progress bar on a terminal, a line per 10% otherwise."""

    def __init__(self, total: int, out: TextIO) -> None:
        self.total = max(total, 1)
        self.out = out
        self.tty = out.isatty()
        self.started = time.monotonic()
        self.next_line = 0.1

    def update(self, done: int, cases: int) -> None:
        share = min(done / self.total, 1.0)
        rate = done / max(time.monotonic() - self.started, 1e-6)
        text = f"{share:6.1%} {done}/{self.total} frames {rate:6.1f} frames/s, {cases} case(s)"
        if self.tty:
            bar = "#" * int(share * 30)
            print(f"\r[{bar:<30}] {text}", end="", file=self.out, flush=True)
        elif share >= self.next_line:
            print(text, file=self.out, flush=True)
            self.next_line += 0.1

    def close(self) -> None:
        if self.tty:
            print(file=self.out)


def frame_count(video: Path) -> int:
    cap = cv2.VideoCapture(str(video))
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()


def replay(
    cfg: Config,
    video: Path,
    out: Path,
    *,
    camera_id: str | None = None,
    start: datetime,
    progress: TextIO | None = None,
) -> ReplayResult:
    cam = pick_camera(cfg, camera_id)
    cam = cam.model_copy(update={"url": str(video), "loop": False})
    out.mkdir(parents=True, exist_ok=True)
    table = CaseTable(cfg)
    alerts: list[Alert] = []

    def emit(alert: Alert) -> None:
        alerts.append(alert)
        table.add(alert)

    detector = build_detector(cfg.detector)
    worker = CameraWorker(cam, cfg, detector, out / "evidence", emit)
    try:
        source = VideoFileSource(cam.camera_id, video, cam.analysis_fps, pace="fast", start=start)
    except SourceError as exc:
        raise ReplayError(str(exc)) from None
    bar = Progress(frame_count(video), progress) if progress is not None else None
    for frame in prefetched(source.frames()):
        worker.process(frame)
        if bar is not None:
            bar.update(source.frames_decoded, len(table.cases))
    worker.finish()
    if bar is not None:
        bar.close()
    with (out / "alerts.jsonl").open("w", encoding="utf-8") as f:
        for a in alerts:
            f.write(a.model_dump_json() + "\n")
    with (out / "case_events.jsonl").open("w", encoding="utf-8") as f:
        for e in table.events:
            f.write(e.model_dump_json() + "\n")
    (out / "cases.json").write_text(
        json.dumps(
            [c.model_dump(mode="json") for c in table.cases.values()], indent=2, ensure_ascii=False
        )
    )
    return ReplayResult(
        source.frames_decoded,
        worker.analysed,
        worker.detector_runs,
        alerts,
        table,
        region_runs=worker.region_runs,
    )


def print_summary(result: ReplayResult, out: Path, tz: tzinfo, stream: TextIO = sys.stdout) -> None:
    """What the replay found; times in ``tz``."""
    print(
        f"{result.frames_decoded} frames, {result.analysed} analysed, detector on "
        f"{result.detector_runs} ({result.detector_runs / max(result.analysed, 1):.0%}, "
        f"{result.region_runs} on a moving region); "
        f"{len(result.alerts)} alert(s) -> {len(result.table.cases)} case(s); written to {out}",
        file=stream,
    )
    for c in result.table.cases.values():
        print(
            f"  {c.case_id} {c.category} @ {c.place.place_id}: "
            f"first {local_time(c.first_seen, tz)}, "
            f"last {local_time(c.last_seen, tz)}, {c.alert_count} alert(s)",
            file=stream,
        )
