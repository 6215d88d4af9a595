"""A video file read as if it were a live camera.

At ``pace="realtime"`` frames are released no faster than the video's own
frame rate, so rules see the same timing as on a live stream; ``"fast"``
goes as fast as decoding and analysis allow while keeping each frame's
timestamp on the video's clock (``start + position``), so dwell times mean
the same in both modes. Only every n-th frame is decoded into an image
(``grab`` for the rest) to meet ``analysis_fps``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from ingest.frames import Frame, SourceError

Pace = Literal["realtime", "fast"]


class VideoFileSource:
    def __init__(
        self,
        camera_id: str,
        path: Path,
        analysis_fps: float,
        *,
        pace: Pace = "realtime",
        start: datetime,
        loop: bool = False,
        stop: threading.Event | None = None,
    ) -> None:
        if not path.is_file():
            raise SourceError(f"camera {camera_id}: video file not found: {path}")
        self.camera_id = camera_id
        self.path = path
        self.analysis_fps = analysis_fps
        self.pace = pace
        self.start = start
        self.loop = loop
        self.stop = stop or threading.Event()
        self.frames_decoded = 0
        self.frames_yielded = 0
        self.reconnects = 0  # FrameSource counters; a file never reconnects or stalls
        self.stalls = 0

    def _open(self) -> tuple[cv2.VideoCapture, float]:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise SourceError(f"camera {self.camera_id}: cannot decode video {self.path}")
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        if not 0 < fps < 1000:
            fps = 25.0
        return cap, fps

    def frames(self) -> Iterator[Frame]:
        offset_s = 0.0  # position carried over loops
        wall_start = time.monotonic()
        while not self.stop.is_set():
            cap, fps = self._open()
            step = max(1, round(fps / self.analysis_fps))
            index = 0
            try:
                while not self.stop.is_set():
                    if not cap.grab():
                        break
                    position = offset_s + index / fps
                    index += 1
                    self.frames_decoded += 1
                    if (index - 1) % step:
                        continue
                    if self.pace == "realtime":
                        delay = wall_start + position - time.monotonic()
                        if delay > 0 and self.stop.wait(delay):
                            return
                    ok, image = cap.retrieve()
                    if not ok or image is None:
                        continue
                    self.frames_yielded += 1
                    yield Frame(
                        camera_id=self.camera_id,
                        index=self.frames_decoded - 1,
                        position_s=position,
                        captured_at=self.start + timedelta(seconds=position),
                        image=np.asarray(image, dtype=np.uint8),
                    )
            finally:
                cap.release()
            offset_s += index / fps
            if not self.loop or index == 0:
                return
