"""Pick the frame source for a camera URL.

=====================================  ======================================
``url``                                source
=====================================  ======================================
a path, or ``file:///abs/path``        :class:`~ingest.video_file.VideoFileSource`
``rtsp://``, ``rtsps://``,             :class:`~ingest.stream_source.StreamSource`
``http://``, ``https://``              (RTSP, HTTP MJPEG or anything FFmpeg reads)
any other ``scheme://``                :class:`~ingest.frames.SourceError`
=====================================  ======================================

``pace``, ``start`` and ``loop`` only apply to files: a live stream is paced
by the camera, stamped with the wall clock and never ends. ``on_status`` and
``options`` only apply to streams.
"""

from __future__ import annotations

import re
import threading
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ingest.frames import FrameSource, SourceError, StatusCallback
from ingest.stream_source import STREAM_SCHEMES, StreamOptions, StreamSource, redact_url
from ingest.video_file import Pace, VideoFileSource

_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")


def local_path(url: str) -> Path | None:
    """The file a camera URL names (a plain path or a local ``file:`` URL), else None."""
    if url.lower().startswith("file:"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            return None
        return Path(unquote(parts.path))
    if _URL.match(url):
        return None
    return Path(url)


def open_source(
    camera_id: str,
    url: str,
    analysis_fps: float,
    *,
    pace: Pace,
    start: datetime,
    loop: bool,
    stop: threading.Event,
    on_status: StatusCallback | None = None,
    options: StreamOptions | None = None,
) -> FrameSource:
    """The frame source for ``url``; raises SourceError for a URL it cannot serve."""
    path = local_path(url)
    if path is not None:
        return VideoFileSource(
            camera_id, path, analysis_fps, pace=pace, start=start, loop=loop, stop=stop
        )
    match = _URL.match(url)
    scheme = match["scheme"].lower() if match else ""
    if scheme in STREAM_SCHEMES:
        return StreamSource(
            camera_id, url, analysis_fps, stop=stop, on_status=on_status, options=options
        )
    if scheme == "file":
        why = "only local file: URLs are supported"
    else:
        why = f"unsupported URL scheme {scheme!r}"
    raise SourceError(
        f"camera {camera_id}: {why} in {redact_url(url)!r}; use a file path, file:///path, "
        f"{', '.join(f'{s}://' for s in sorted(STREAM_SCHEMES))}"
    )
