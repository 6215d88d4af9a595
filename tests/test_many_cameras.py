"""Many cameras in one box: a thread each, a broken one leaves the others at their rate,
and a reload adds a camera while the others run on.

The edge worker runs in this process on real footage (vtest.avi, looped, in
real time at 2 analysed frames per second) with a camera whose "video" is
garbage bytes. No Kafka: alerts go to a memory sink, and the suppression
feed retries in the background, as on a box whose uplink is down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

import pytest

from core.config import PlaceConfig
from core.kafka import KafkaConfig
from edge.config import CameraConfig, EdgeServiceConfig, parse_edge_config
from edge.worker import EdgeWorker
from streetwatch.processes import Child, free_port
from tests.support.box_runs import analysed, rates, scraped_analysed
from tests.support.fakes import MemoryAlertSink
from tests.support.polling import until

FPS = 2.0
BAY = [[600, 55], [768, 55], [768, 130], [600, 130]]  # vtest's loading bay: the van


def camera(camera_id: str, url: Path) -> dict[str, object]:
    return {
        "camera_id": camera_id,
        "url": str(url),
        "analysis_fps": FPS,
        "loop": True,
        "clip": {"enabled": False},
        "zones": [{"zone_id": "bay", "place": "bay", "polygon": BAY}],
        "rules": [{"type": "illegal_parking", "rule_id": f"{camera_id}-parking", "zone": "bay"}],
    }  # fmt: skip


def config(tmp: Path, cameras: list[dict[str, object]]) -> EdgeServiceConfig:
    return parse_edge_config(
        {
            "edge": {"box_id": "ws-many", "evidence_dir": str(tmp / "evidence"), "http": ""},
            "kafka": KafkaConfig(bootstrap=f"127.0.0.1:{free_port()}").model_dump(),
            "places": [{"place_id": "bay"}],
            "cameras": cameras,
        }
    )


async def test_a_garbage_camera_leaves_the_others_at_their_rate_and_a_reload_adds_one(
    tmp_path: Path, vtest_video: Path, caplog: pytest.LogCaptureFixture
) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(200_000))
    good = ["cam-a", "cam-b", "cam-c"]
    cams = [camera(c, vtest_video) for c in good] + [camera("cam-bad", garbage)]
    cfg = config(tmp_path, cams)
    edge = EdgeWorker(cfg, MemoryAlertSink())
    stop = asyncio.Event()
    run = asyncio.create_task(edge.run(stop))
    try:
        await asyncio.wait_for(edge.ready.wait(), 30)
        await until(lambda: all(analysed(edge, c) > 2 for c in good), "every camera going", 30)
        await until(lambda: edge.cameras["cam-bad"].state == "failed", "the garbage refused", 30)
        steady = await rates(edge, good, 6.0)
        assert all(r >= 0.75 * FPS for r in steady.values()), steady  # each at its rate
        threads = {c: edge.supervisor.cameras[c].thread for c in good}
        assert all(t.name == f"camera-{c}" and t.is_alive() for c, t in threads.items())

        # a reload: cam-d added, the garbage camera removed, the others untouched
        added = parse_camera(tmp_path, "cam-d", vtest_video)
        new = cfg.model_copy(update={"cameras": [*cfg.cameras[:3], added]})
        result = await edge.reload(new)
        assert (result.added, result.removed, result.kept) == (
            ("cam-d",),
            ("cam-bad",),
            tuple(good),
        )
        await until(lambda: analysed(edge, "cam-d") > 2, "the added camera going", 30)
        after = await rates(edge, [*good, "cam-d"], 6.0)
        assert all(r >= 0.75 * FPS for r in after.values()), after
        assert all(edge.supervisor.cameras[c].thread is threads[c] for c in good)  # not restarted
        assert "cam-bad" not in edge.cameras and "cam-bad" not in edge.supervisor.cameras

        # a place the zones name changed (its name, shown to reviewers): every camera
        # watching it starts again with it; a section a reload cannot apply is named
        # in the log and left as it was
        renamed = new.model_copy(
            update={
                "places": [PlaceConfig(place_id="bay", name="Loading bay, north gate")],
                "dedup": new.dedup.model_copy(update={"merge_within_m": 40.0}),
            }
        )
        old = edge.cameras["cam-a"].worker
        with caplog.at_level(logging.WARNING, logger="streetwatch.edge"):
            again = await edge.reload(renamed)
        assert again.changed == ("cam-a", "cam-b", "cam-c", "cam-d") and not again.kept
        assert "event=reload_needs_restart section=dedup" in caplog.text
        assert edge.cfg.dedup == new.dedup and edge.cfg.places == renamed.places
        await until(
            lambda: edge.cameras["cam-a"].worker is not old and analysed(edge, "cam-a") > 2,
            "cam-a going again",
            30,
        )
        assert edge.supervisor.cameras["cam-a"].thread is not threads["cam-a"]
        worker = edge.cameras["cam-a"].worker
        assert worker is not None and worker.rules[0].place.name == "Loading bay, north gate"
    finally:
        stop.set()
        stats = await asyncio.wait_for(run, 60)
    assert stats.camera_errors["cam-bad"] == 1 and sum(stats.camera_errors.values()) == 1


def parse_camera(tmp: Path, camera_id: str, video: Path) -> CameraConfig:
    return config(tmp, [camera(camera_id, video)]).cameras[0]


async def test_sighup_adds_a_camera_to_a_running_box_process(
    tmp_path: Path, vtest_video: Path
) -> None:
    """The operator's way (``kill -HUP``): the file is read again, the new camera starts,
    and the endpoints answer throughout. No Kafka: it is reached in the background."""
    port = free_port()
    first = [camera("cam-a", vtest_video)]
    body = {
        "edge": {
            "box_id": "ws-hup",
            "evidence_dir": str(tmp_path / "evidence"),
            "http": f"127.0.0.1:{port}",
        },
        "kafka": KafkaConfig(bootstrap=f"127.0.0.1:{free_port()}").model_dump(),
        "places": [{"place_id": "bay"}],
        "cameras": first,
    }
    path = tmp_path / "edge.json"
    path.write_text(json.dumps(body))
    log = tmp_path / "edge.log"
    edge = Child(
        "edge",
        [sys.executable, "-m", "streetwatch.cli", "edge", "--config", str(path)],
        log=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await until(lambda: "event=ready" in log.read_text(), "the box ready", 60)
        path.write_text(json.dumps({**body, "cameras": [*first, camera("cam-b", vtest_video)]}))
        os.kill(edge.pid, signal.SIGHUP)
        await until(
            lambda: "event=cameras_reloaded added=cam-b" in log.read_text(), "the reload", 30
        )
        await until(lambda: scraped_analysed(url).get("cam-b", 0) > 2, "cam-b analysing", 30)
        assert scraped_analysed(url).get("cam-a", 0) > 2
        path.write_text("{not json")  # a broken file: refused, the cameras stay
        os.kill(edge.pid, signal.SIGHUP)
        await until(lambda: "event=reload_refused" in log.read_text(), "the refusal", 30)
        before = scraped_analysed(url).get("cam-b", 0)
        await until(
            lambda: scraped_analysed(url).get("cam-b", 0) > before, "cam-b still analysing", 30
        )
        assert edge.stop(timeout=60) == 0
    finally:
        edge.stop()
