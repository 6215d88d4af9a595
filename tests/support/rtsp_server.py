#!/usr/bin/python3
"""A real RTSP server for the stream-source tests: one video file, looped forever.

Run it with Debian's ``/usr/bin/python3`` (the venv cannot import ``gi``)::

    /usr/bin/python3 tests/support/rtsp_server.py --port 8554 [--video FILE]

and read ``rtsp://127.0.0.1:8554/cam`` over RTSP/TCP (interleaved). It prints
``READY rtsp://127.0.0.1:PORT/cam`` once it listens, and exits cleanly on
SIGTERM or SIGINT.

How the loop works: a looping file is awkward inside an RTSP media pipeline
(end-of-stream ends the session, and seeking a pipeline that the server owns
fights with its own seeks). So each client session gets two pipelines:

* a private *decoder* ``filesrc ! decodebin ! videoconvert ! appsink`` that
  we own; at end of file it is simply seeked back to 0;
* the RTSP *media* ``appsrc ! x264enc ! rtph264pay``, fed from the decoder
  with timestamps that keep growing by one frame duration per frame, so the
  server's clock-synchronised sink paces it at the file's frame rate and the
  client sees one endless stream.

Needs the Debian packages in ``PACKAGES``; ``--check`` only verifies them
(exit status 3 and a ``MISSING ...`` line on stderr when something lacks).
"""

from __future__ import annotations

import argparse
import signal
import sys

# Debian packages this script needs; the test fixture names them when missing.
PACKAGES = (
    "python3-gi",
    "gir1.2-gst-rtsp-server-1.0",
    "gstreamer1.0-plugins-base",
    "gstreamer1.0-plugins-good",
    "gstreamer1.0-plugins-ugly",
    "gstreamer1.0-libav",
)
MISSING_EXIT = 3  # exit status when a prerequisite is missing

try:
    import gi  # type: ignore[import-not-found]

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtsp", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # type: ignore[import-not-found]
except (ImportError, ValueError) as exc:
    print(
        f"MISSING {exc}: install the Debian packages {' '.join(PACKAGES)}",
        file=sys.stderr,
        flush=True,
    )
    sys.exit(MISSING_EXIT)

# GStreamer elements used, and the Debian package that ships each.
ELEMENTS = {
    "filesrc": "libgstreamer1.0-0",
    "decodebin": "gstreamer1.0-plugins-base",
    "videoconvert": "gstreamer1.0-plugins-base",
    "appsrc": "gstreamer1.0-plugins-base",
    "appsink": "gstreamer1.0-plugins-base",
    "x264enc": "gstreamer1.0-plugins-ugly",
    "rtph264pay": "gstreamer1.0-plugins-good",
    "avidemux": "gstreamer1.0-plugins-good",
    "avdec_msmpeg4": "gstreamer1.0-libav",  # vtest.avi is MS-MPEG4 v3
}


def missing_elements() -> list[str]:
    return [
        f"{name} ({package})"
        for name, package in ELEMENTS.items()
        if Gst.ElementFactory.find(name) is None
    ]


DEFAULT_VIDEO = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"

MEDIA = (
    "( appsrc name=src format=time ! queue max-size-buffers=4 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 "
    "! rtph264pay name=pay0 pt=96 config-interval=1 )"
)


class LoopingFeed:
    """Decodes the file on demand and pushes endless, re-timestamped frames."""

    def __init__(self, video: str, appsrc: Gst.Element) -> None:
        self.appsrc = appsrc
        self.decoder = Gst.parse_launch(
            f'filesrc location="{video}" ! decodebin ! videoconvert '
            "! video/x-raw,format=I420 ! appsink name=sink sync=false max-buffers=4"
        )
        self.sink = self.decoder.get_by_name("sink")
        self.pts = 0
        self.caps: Gst.Caps | None = None
        self.decoder.set_state(Gst.State.PLAYING)
        appsrc.connect("need-data", self.need_data)

    def _next_sample(self) -> Gst.Sample | None:
        for _ in range(2):  # at most one rewind per frame
            sample = self.sink.emit("try-pull-sample", 5 * Gst.SECOND)
            if sample is not None:
                return sample
            if not self.sink.get_property("eos"):
                return None
            self.decoder.seek_simple(
                Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0
            )
        return None

    def need_data(self, appsrc: Gst.Element, _length: int) -> None:
        sample = self._next_sample()
        if sample is None:
            appsrc.emit("end-of-stream")
            return
        caps = sample.get_caps()
        if self.caps is None or not caps.is_equal(self.caps):
            self.caps = caps
            appsrc.set_property("caps", caps)
        ok, num, den = caps.get_structure(0).get_fraction("framerate")
        duration = Gst.util_uint64_scale(Gst.SECOND, den, num) if ok and num else Gst.SECOND // 10
        buffer = sample.get_buffer().copy()
        buffer.pts = buffer.dts = self.pts
        buffer.duration = duration
        self.pts += duration
        appsrc.emit("push-buffer", buffer)

    def close(self) -> None:
        self.decoder.set_state(Gst.State.NULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--video", default=DEFAULT_VIDEO)
    parser.add_argument("--path", default="/cam")
    parser.add_argument("--check", action="store_true", help="only check the prerequisites")
    args = parser.parse_args()

    Gst.init(None)
    missing = missing_elements()
    if missing:
        print(
            f"MISSING GStreamer elements {', '.join(missing)}: install the Debian packages"
            f" {' '.join(PACKAGES)}",
            file=sys.stderr,
            flush=True,
        )
        return MISSING_EXIT
    if args.check:
        return 0
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(MEDIA)
    factory.set_shared(False)  # one decoder per client: each starts at frame 0
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)

    def configure(_factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        appsrc = media.get_element().get_by_name_recurse_up("src")
        feed = LoopingFeed(args.video, appsrc)
        media.connect("unprepared", lambda _media: feed.close())

    factory.connect("media-configure", configure)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1

    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    print(f"READY rtsp://127.0.0.1:{args.port}{args.path}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
