"""H.264 MP4 evidence clips that play in a browser.

OpenCV's ``VideoWriter`` cannot write H.264 on our edge boxes (it writes
mp4v, which browsers do not play), so clips are encoded with PyAV, whose
wheel bundles FFmpeg with libx264: H.264 (High profile), ``yuv420p``,
``movflags=+faststart`` (the index comes first, so a browser starts playing
before the whole file is loaded), CRF 26 at preset ``veryfast`` by default:
cheap enough for an edge CPU, sharp enough to judge a scene.

Timing: frames keep their **real timestamps** (variable frame rate). Each
frame's PTS is its ``captured_at`` minus the first frame's, in a 1/90000 s
time base; each frame lasts until the next one, and the last one lasts the
median frame interval. A 10 s span therefore lasts 10 s in the player
whether it was fed at 2 fps, 25 fps or with gaps (a stalled camera shows a
frozen frame for as long as it stalled).

Size: yuv420p needs even dimensions; an odd width or height is padded by
one pixel (the edge row/column repeated), so nothing of the picture is
lost. Frames whose size differs from the first frame's are resized to it.

The file is written to a hidden temporary name beside the target, flushed
to disk and renamed, so a clip path either does not exist or holds a
complete clip; its sha256 is computed from those final bytes. Any failure
raises :class:`ClipWriteError` and leaves no file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import statistics
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt

TIME_BASE = Fraction(1, 90_000)
DEFAULT_LAST_FRAME_S = 0.2  # last frame's duration when a clip has a single frame
MEDIA_TYPE = "video/mp4"

Image = npt.NDArray[np.uint8]


class ClipWriteError(Exception):
    """A clip could not be encoded or written; no file was left behind."""


@dataclass(frozen=True)
class ClipSettings:
    """Encoder settings; the defaults suit a 2-4 core edge CPU."""

    crf: int = 26  # x264 constant rate factor: 18 near-lossless .. 30 soft
    preset: str = "veryfast"
    threads: int = 1  # x264 threads; 1 leaves the other cores to inference
    max_keyframe_interval: int = 50  # frames; bounds seek cost in the player

    def x264_options(self) -> dict[str, str]:
        return {
            "crf": str(self.crf),
            "preset": self.preset,
            "profile": "high",
            "g": str(self.max_keyframe_interval),
        }


@dataclass(frozen=True)
class ClipInfo:
    """What :func:`write_clip` wrote."""

    path: Path
    sha256: str
    size_bytes: int
    frames: int
    width: int  # of the encoded video (even)
    height: int
    first_at: datetime  # captured_at of the first frame (clip time 0)
    last_at: datetime  # captured_at of the last frame
    duration_s: float  # playing time, including the last frame's duration
    encode_s: float  # wall time spent in write_clip


def even_size(width: int, height: int) -> tuple[int, int]:
    """The size a ``width`` x ``height`` frame has in a clip (padded to even)."""
    return width + width % 2, height + height % 2


def _fit(image: Image, width: int, height: int) -> Image:
    """``image`` as (height, width) BGR: resized to the clip's size, padded to even."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ClipWriteError(
            f"expected a BGR uint8 (H, W, 3) image, got {image.dtype} {image.shape}"
        )
    if image.shape[1] != width or image.shape[0] != height:
        image = np.asarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))
    out_w, out_h = even_size(width, height)
    if (out_w, out_h) != (width, height):
        image = np.asarray(
            cv2.copyMakeBorder(image, 0, out_h - height, 0, out_w - width, cv2.BORDER_REPLICATE)
        )
    return image


def _last_duration(pts: list[int]) -> int:
    """The last frame lasts the clip's median frame interval."""
    gaps = [b - a for a, b in itertools.pairwise(pts)]
    last = round(statistics.median(gaps)) if gaps else round(DEFAULT_LAST_FRAME_S / TIME_BASE)
    return max(1, last)


def _timed(frames: Iterable[tuple[datetime, Image]]) -> Iterator[tuple[datetime, int, Image]]:
    """Frames with strictly increasing PTS (in TIME_BASE units from the first frame)."""
    first: datetime | None = None
    previous = -1
    for at, image in frames:
        if first is None:
            first = at
        pts = round((at - first).total_seconds() / TIME_BASE)
        if pts < previous:
            raise ClipWriteError(f"frame times go backwards at {at.isoformat()}")
        if pts == previous:
            pts = previous + 1  # two frames within one tick: keep both, in order
        previous = pts
        yield at, pts, image


def write_clip(
    frames: Iterable[tuple[datetime, Image]],
    path: Path,
    settings: ClipSettings | None = None,
    *,
    metadata: Mapping[str, str] | None = None,
) -> ClipInfo:
    """Encode ``frames`` (captured_at, BGR image), oldest first, as an MP4 at ``path``.

    ``frames`` may be a generator: images are encoded as they come, so only
    one decoded frame (plus x264's lookahead) is in memory at a time.
    """
    settings = settings or ClipSettings()
    started = time.perf_counter()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        info = _encode(frames, tmp, settings, metadata or {})
        digest, size = _sync_and_hash(tmp)
        tmp.replace(path)
    except ClipWriteError as exc:
        _remove(tmp)
        raise ClipWriteError(f"cannot write clip {path}: {exc}") from exc
    except (av.FFmpegError, OSError, ValueError, TypeError, cv2.error) as exc:
        _remove(tmp)
        raise ClipWriteError(f"cannot write clip {path}: {type(exc).__name__}: {exc}") from exc
    except BaseException:
        _remove(tmp)
        raise
    first_at, last_at, count, width, height, duration_s = info
    return ClipInfo(
        path=path,
        sha256=digest,
        size_bytes=size,
        frames=count,
        width=width,
        height=height,
        first_at=first_at,
        last_at=last_at,
        duration_s=duration_s,
        encode_s=time.perf_counter() - started,
    )


_EncodeResult = tuple[datetime, datetime, int, int, int, float]


def _encode(
    frames: Iterable[tuple[datetime, Image]],
    tmp: Path,
    settings: ClipSettings,
    metadata: Mapping[str, str],
) -> _EncodeResult:
    timed = _timed(frames)
    try:
        first_at, first_pts, first_image = next(timed)
    except StopIteration:
        raise ClipWriteError("no frames") from None
    src_h, src_w = first_image.shape[:2]
    width, height = even_size(src_w, src_h)
    # Durations are only known once the next frame has arrived, so frames are
    # encoded one behind: the pending frame is sent when its successor is seen.
    with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
        for key, value in metadata.items():
            out.metadata[key] = value
        stream = out.add_stream("libx264")
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.time_base = TIME_BASE
        stream.codec_context.time_base = TIME_BASE
        stream.codec_context.thread_count = settings.threads
        options: dict[str, object] = {**settings.x264_options()}
        stream.options = options

        durations: dict[int, int] = {}

        def send(pts: int, image: Image | None) -> None:
            """Encode one frame, or flush the encoder when ``image`` is None."""
            frame: av.VideoFrame | None = None
            if image is not None:
                frame = av.VideoFrame.from_ndarray(_fit(image, src_w, src_h), format="bgr24")
                frame = frame.reformat(format="yuv420p")
                frame.pts = pts
                frame.time_base = TIME_BASE
            for packet in stream.encode(frame):
                # The MP4 muxer takes each sample's duration from its packet;
                # without this the last frame would last ~0 s.
                if packet.pts is not None and packet.pts in durations:
                    packet.duration = durations[packet.pts]
                out.mux(packet)

        pending: tuple[int, Image] = (first_pts, first_image)
        all_pts = [first_pts]
        last_at = first_at
        for at, pts, image in timed:
            durations[pending[0]] = pts - pending[0]
            send(*pending)
            pending = (pts, image)
            all_pts.append(pts)
            last_at = at
        durations[pending[0]] = _last_duration(all_pts)
        send(*pending)
        send(-1, None)
    duration_s = float((pending[0] + durations[pending[0]] - first_pts) * TIME_BASE)
    return first_at, last_at, len(all_pts), width, height, duration_s


def _sync_and_hash(tmp: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with tmp.open("rb+") as fh:
        os.fsync(fh.fileno())
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _remove(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink()
