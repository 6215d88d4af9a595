"""Cameras as threads of their own, watched, restarted, added and removed while the box runs.

Why threads, one per camera, and not processes or a shared pool:

- the heavy work of a camera (FFmpeg decode, onnxruntime inference, JPEG and
  H.264 encoding) runs in C and releases the GIL, so threads of one process
  use every core; the Python between (motion gate, tracker, rules) is small
  at 1-2 analysed frames per second;
- one process keeps one copy of the detector (one onnxruntime session shared
  by every camera: its ``run`` is thread-safe), which is what makes 8 cameras
  fit a small box's memory; a process per camera would load OpenCV,
  onnxruntime and the model 8 times;
- a camera owns its thread for life, outside asyncio's default executor
  (whose few workers the cameras used to take for good, so later cameras
  never started); a camera blocked on a dead stream blocks only itself (its
  reads have timeouts, its source reconnects with backoff);
- decode and inference must not starve each other: inference goes through a
  gate that lets only as many detector runs at once as the box has cores for
  (:class:`InferenceGate`), so decode threads always find a core, and the
  waiting cameras take turns.

The supervisor restarts a camera whose thread ended by failure (a bug, a
stream that cannot be decoded at all) with backoff, never one that finished
on purpose (a file played to its end, a stop); reports one that stops making
progress (a heartbeat older than ``stuck_s``); and applies a new camera list
by stopping removed and changed cameras and starting added and changed ones,
leaving every other camera running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from detectors.base import Detector, Frame
from detectors.detections import Detections
from ingest.backoff import BackoffPolicy

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    FINISHED = "finished"  # ended on purpose: the file is over, or it was stopped
    FAILED = "failed"  # ended by an error: restart it


class CameraLike(Protocol):
    @property
    def camera_id(self) -> str: ...


C = TypeVar("C", bound=CameraLike)

#: run(camera config, its stop event, beat) -> how it ended; ``beat()`` says it made progress
RunCamera = Callable[[C, threading.Event, Callable[[], None]], Outcome]


@dataclass
class Running(Generic[C]):
    """One camera's thread and what the supervisor knows of it."""

    cam: C
    stop: threading.Event
    thread: threading.Thread
    beat_at: float
    started_at: float
    restarts: int = 0
    outcome: Outcome | None = None
    restart_at: float | None = None  # when a failed camera starts again
    stuck_logged: bool = False


@dataclass(frozen=True)
class Reload:
    """What a new camera list changed."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()


@dataclass
class SupervisorStats:
    restarts: dict[str, int] = field(default_factory=dict)
    stuck: set[str] = field(default_factory=set)


class CameraSupervisor(Generic[C]):
    """Starts, watches, restarts and stops one thread per camera."""

    def __init__(
        self,
        run: RunCamera[C],
        *,
        restart: BackoffPolicy | None = None,
        stuck_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run = run
        self.restart = restart or BackoffPolicy(min_s=5.0, max_s=300.0)
        self.stuck_s = stuck_s
        self.clock = clock
        self.cameras: dict[str, Running[C]] = {}
        self.stats = SupervisorStats()
        self._lock = threading.Lock()
        self._closing = False

    # -- starting and stopping -------------------------------------------------

    def start(self, cam: C) -> None:
        with self._lock:
            if self._closing:
                return
            old = self.cameras.get(cam.camera_id)
            restarts = old.restarts if old is not None else 0
            self.cameras[cam.camera_id] = self._spawn(cam, restarts)

    def _spawn(self, cam: C, restarts: int) -> Running[C]:
        now = self.clock()
        stop = threading.Event()
        running: Running[C] = Running(
            cam, stop, threading.Thread(), beat_at=now, started_at=now, restarts=restarts
        )

        def beat() -> None:
            running.beat_at = self.clock()

        def body() -> None:
            try:
                running.outcome = self._run(cam, stop, beat)
            except Exception:  # the camera's own code reports what it can; this is the net
                log.exception("event=camera_thread_failed camera=%s", cam.camera_id)
                running.outcome = Outcome.FAILED
            if running.outcome is Outcome.FAILED and not stop.is_set():
                delay = self.restart.bounds(running.restarts)[1]
                running.restart_at = self.clock() + delay
                log.warning(
                    "event=camera_restart_planned camera=%s in_s=%.1f restarts=%d",
                    cam.camera_id,
                    delay,
                    running.restarts,
                )

        running.thread = threading.Thread(target=body, name=f"camera-{cam.camera_id}")
        running.thread.start()
        return running

    def stop(self, camera_id: str, timeout: float = 30.0) -> bool:
        """Stop one camera and wait for its thread; whether it ended in time."""
        with self._lock:
            running = self.cameras.pop(camera_id, None)
        if running is None:
            return True
        self.stats.stuck.discard(camera_id)
        running.stop.set()
        running.thread.join(timeout)
        ended = not running.thread.is_alive()
        if not ended:
            log.error("event=camera_not_stopped camera=%s timeout_s=%.0f", camera_id, timeout)
        return ended

    def stop_all(self, timeout: float = 60.0) -> None:
        with self._lock:
            self._closing = True
            running = list(self.cameras.values())
        for r in running:
            r.stop.set()
        deadline = self.clock() + timeout
        for r in running:
            r.thread.join(max(0.0, deadline - self.clock()))

    def wait_all(self) -> None:
        """Until every camera thread has ended (files played out, or stopped)."""
        while True:
            with self._lock:
                threads = [r.thread for r in self.cameras.values()]
                pending = [r for r in self.cameras.values() if r.restart_at is not None]
            alive = [t for t in threads if t.is_alive()]
            if not alive and not pending:
                return
            for t in alive:
                t.join(0.5)
            if not alive:
                time.sleep(0.5)

    # -- watching ----------------------------------------------------------------

    def watch(self) -> None:
        """Restart failed cameras whose backoff is over; report cameras that stopped
        making progress. Call it every second or so."""
        now = self.clock()
        with self._lock:
            if self._closing:
                return
            for camera_id, r in list(self.cameras.items()):
                if r.restart_at is not None and now >= r.restart_at and not r.thread.is_alive():
                    self.stats.restarts[camera_id] = r.restarts + 1
                    log.warning(
                        "event=camera_restarted camera=%s restarts=%d", camera_id, r.restarts + 1
                    )
                    self.cameras[camera_id] = self._spawn(r.cam, r.restarts + 1)
                    continue
                if not r.thread.is_alive():
                    continue
                if now - r.beat_at > self.stuck_s:
                    if not r.stuck_logged:
                        r.stuck_logged = True
                        self.stats.stuck.add(camera_id)
                        log.error(
                            "event=camera_stuck camera=%s no_progress_s=%.0f",
                            camera_id,
                            now - r.beat_at,
                        )
                elif r.stuck_logged:
                    r.stuck_logged = False
                    self.stats.stuck.discard(camera_id)
                    log.info("event=camera_progressing camera=%s", camera_id)
                if r.beat_at - r.started_at > self.stuck_s and r.restarts:
                    r.restarts = 0  # ran well for a while: the next failure backs off afresh

    # -- a new camera list ---------------------------------------------------------

    def reload(self, cams: Sequence[C], same: Callable[[C, C], bool]) -> Reload:
        """Apply a new camera list: stop the removed, restart the changed (``same`` says
        whether two configs of one camera are alike), start the added; keep the rest."""
        wanted = {c.camera_id: c for c in cams}
        with self._lock:
            current = {cid: r.cam for cid, r in self.cameras.items()}
        removed = sorted(current.keys() - wanted.keys())
        added = sorted(wanted.keys() - current.keys())
        changed = sorted(
            cid for cid in wanted.keys() & current.keys() if not same(current[cid], wanted[cid])
        )
        kept = sorted(wanted.keys() & current.keys() - set(changed))
        for cid in (*removed, *changed):
            self.stop(cid)
        for cid in (*changed, *added):
            self.start(wanted[cid])
        result = Reload(tuple(added), tuple(removed), tuple(changed), tuple(kept))
        log.info(
            "event=cameras_reloaded added=%s removed=%s changed=%s kept=%d",
            ",".join(result.added) or "-",
            ",".join(result.removed) or "-",
            ",".join(result.changed) or "-",
            len(result.kept),
        )
        return result


class InferenceGate:
    """At most ``slots`` detector runs at once, taken in turn by the cameras that wait.

    With every camera calling one shared onnxruntime session, unbounded
    concurrency would put N x intra-op threads on a few cores: inference
    slows for everyone and the decode threads starve. A slot is held only for
    the run itself.
    """

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"an inference gate needs at least 1 slot, got {slots}")
        self.slots = slots
        self._free = threading.Condition()
        self._busy = 0
        self._queue: list[object] = []
        self.waits = 0  # runs that had to wait for a slot
        self.wait_s = 0.0  # seconds waited in all

    def __enter__(self) -> InferenceGate:
        ticket = object()
        started = time.perf_counter()
        with self._free:
            self._queue.append(ticket)
            waited = False
            while self._busy >= self.slots or self._queue[0] is not ticket:
                waited = True
                self._free.wait()
            self._queue.pop(0)
            self._busy += 1
            if waited:
                self.waits += 1
                self.wait_s += time.perf_counter() - started
            self._free.notify_all()  # the next in line may find a slot too
        return self

    def __exit__(self, *exc: object) -> None:
        with self._free:
            self._busy -= 1
            self._free.notify_all()


class GatedDetector:
    """A detector whose runs go through an :class:`InferenceGate`."""

    def __init__(self, inner: Detector, gate: InferenceGate) -> None:
        self.inner = inner
        self.gate = gate

    @property
    def labels(self) -> tuple[str, ...]:
        return self.inner.labels

    def detect(self, frame: Frame) -> Detections:
        with self.gate:
            return self.inner.detect(frame)


def inference_slots(configured: int, detector_threads: int, cores: int | None) -> int:
    """``configured``, or the box's cores divided by each run's threads (at least 1)."""
    if configured:
        return configured
    return max(1, (cores or 1) // max(1, detector_threads))
