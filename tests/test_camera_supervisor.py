"""The camera supervisor and the inference gate, with plain threads standing in for cameras."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from edge.camera_supervisor import CameraSupervisor, InferenceGate, Outcome
from ingest.backoff import BackoffPolicy
from tests.support.polling import wait_until

QUICK = BackoffPolicy(min_s=0.05, max_s=0.2, jitter=0.0)


@dataclass(frozen=True)
class Cam:
    camera_id: str
    url: str = "file.mp4"


class Cameras:
    """A fake camera body per id: how often it started, and what it does when run."""

    def __init__(self) -> None:
        self.starts: Counter[str] = Counter()
        self.behaviour: dict[str, str] = {}  # id -> "run" | "fail" | "finish" | "hang"
        self.beats: Counter[str] = Counter()

    def __call__(self, cam: Cam, stop: threading.Event, beat: Callable[[], None]) -> Outcome:
        self.starts[cam.camera_id] += 1
        what = self.behaviour.get(cam.camera_id, "run")
        if what == "fail":
            raise RuntimeError("garbage in the stream")
        if what == "finish":
            return Outcome.FINISHED
        while not stop.wait(0.01):
            if self.behaviour.get(cam.camera_id, "run") == "run":  # read anew: it may change
                beat()
                self.beats[cam.camera_id] += 1
        return Outcome.FINISHED


def test_a_failing_camera_is_restarted_with_backoff_and_the_others_go_on() -> None:
    bodies = Cameras()
    bodies.behaviour["bad"] = "fail"
    sup = CameraSupervisor(bodies, restart=QUICK, stuck_s=5)
    for cid in ("a", "bad", "b"):
        sup.start(Cam(cid))
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            sup.watch()
            time.sleep(0.02)
        assert bodies.starts["bad"] >= 3  # restarted again and again, backing off
        assert bodies.starts["a"] == 1 and bodies.starts["b"] == 1  # never touched
        before = dict(bodies.beats)
        time.sleep(0.2)
        assert bodies.beats["a"] > before["a"] and bodies.beats["b"] > before["b"]
        assert sup.stats.restarts["bad"] >= 2
    finally:
        sup.stop_all(5)


def test_a_camera_that_finished_on_purpose_is_not_restarted() -> None:
    bodies = Cameras()
    bodies.behaviour["file"] = "finish"
    sup = CameraSupervisor(bodies, restart=QUICK)
    sup.start(Cam("file"))
    sup.wait_all()
    for _ in range(10):
        sup.watch()
        time.sleep(0.02)
    assert bodies.starts["file"] == 1


def test_a_camera_without_progress_is_reported_stuck_and_then_progressing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="edge.camera_supervisor")
    bodies = Cameras()
    bodies.behaviour["slow"] = "hang"
    sup = CameraSupervisor(bodies, restart=QUICK, stuck_s=0.1)
    sup.start(Cam("slow"))
    try:

        def stuck() -> bool:
            sup.watch()
            return "slow" in sup.stats.stuck

        wait_until(stuck, "stuck reported", 3)
        assert "event=camera_stuck camera=slow" in caplog.text
        thread = sup.cameras["slow"].thread
        bodies.behaviour["slow"] = "run"  # the same thread makes progress again
        wait_until(lambda: not stuck(), "progressing", 3)
        assert sup.cameras["slow"].thread is thread and bodies.starts["slow"] == 1
        assert "event=camera_progressing camera=slow" in caplog.text
    finally:
        sup.stop_all(5)


def test_a_reload_adds_removes_and_restarts_only_what_changed() -> None:
    bodies = Cameras()
    sup = CameraSupervisor(bodies, restart=QUICK)
    for cam in (Cam("a"), Cam("b"), Cam("c")):
        sup.start(cam)
    try:
        threads = {cid: r.thread for cid, r in sup.cameras.items()}
        result = sup.reload(
            [Cam("a"), Cam("b", url="moved.mp4"), Cam("d")], same=lambda x, y: x == y
        )
        assert (result.added, result.removed, result.changed, result.kept) == (
            ("d",),
            ("c",),
            ("b",),
            ("a",),
        )
        assert sup.cameras["a"].thread is threads["a"] and threads["a"].is_alive()
        assert not threads["c"].is_alive() and not threads["b"].is_alive()
        assert sup.cameras["b"].cam.url == "moved.mp4" and sup.cameras["b"].thread.is_alive()
        assert bodies.starts == Counter({"a": 1, "b": 2, "c": 1, "d": 1})
    finally:
        sup.stop_all(5)


def test_the_gate_lets_so_many_runs_at_once_and_the_waiting_take_turns() -> None:
    gate = InferenceGate(2)
    inside = 0
    most = 0
    order: list[int] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        nonlocal inside, most
        with gate:
            with lock:
                inside += 1
                most = max(most, inside)
                order.append(n)
            time.sleep(0.02)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
        time.sleep(0.002)  # arrive in order
    for t in threads:
        t.join()
    assert most == 2
    assert order == sorted(order)  # first come, first served
    assert gate.waits >= 5
    with pytest.raises(ValueError):
        InferenceGate(0)
