"""Many cameras in one box: a thread each, a broken one leaves the others at their rate,
and a reload adds a camera while the others run on.

The edge worker runs in this process on real footage (vtest.avi, looped, in
real time at 2 analysed frames per second) with a camera whose "video" is
garbage bytes. No Kafka: alerts go to a memory sink, and the suppression
feed retries in the background, as on a box whose uplink is down.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from core.kafka import KafkaConfig
from edge.config import CameraConfig, EdgeServiceConfig, parse_edge_config
from edge.worker import EdgeWorker
from streetwatch.processes import free_port
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


def analysed(edge: EdgeWorker, camera_id: str) -> int:
    run = edge.cameras.get(camera_id)
    return run.worker.analysed if run is not None and run.worker is not None else 0


async def rates(edge: EdgeWorker, cameras: list[str], seconds: float) -> dict[str, float]:
    before = {c: analysed(edge, c) for c in cameras}
    await asyncio.sleep(seconds)
    return {c: (analysed(edge, c) - before[c]) / seconds for c in cameras}


async def test_a_garbage_camera_leaves_the_others_at_their_rate_and_a_reload_adds_one(
    tmp_path: Path, vtest_video: Path
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
        result = edge.reload(new)
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
    finally:
        stop.set()
        stats = await asyncio.wait_for(run, 60)
    assert stats.camera_errors["cam-bad"] == 1 and sum(stats.camera_errors.values()) == 1


def parse_camera(tmp: Path, camera_id: str, video: Path) -> CameraConfig:
    return config(tmp, [camera(camera_id, video)]).cameras[0]
