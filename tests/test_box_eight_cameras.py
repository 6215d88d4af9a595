"""One box, 8 cameras and the sensor ingest: one camera's stream killed, the other 7 keep
their rate; a smoke alarm still becomes an alert; a reload adds a camera while the
others run on.

Real parts: two RTSP servers (tests/support/rtsp_server.py, Debian's GStreamer)
looping vtest.avi, four cameras on vtest.avi files, two on a still street made
from it, mosquitto with a smoke detector, the sensor intake and rules
processes. Alerts go to a memory sink (no Kafka: the suppression feed retries
in the background, as on a box whose uplink is down).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from core.kafka import KafkaConfig
from edge.config import EdgeServiceConfig, parse_edge_config
from edge.worker import EdgeWorker
from streetwatch.brokers import RunningBroker
from streetwatch.processes import free_port
from tests.support.box_runs import analysed, rates, smoke_alarm
from tests.support.fakes import MemoryAlertSink
from tests.support.polling import until
from tests.support.rtsp import RtspServer
from tests.support.scenes import static_scene

pytestmark = pytest.mark.integration

FPS = 1.0  # analysed frames per second per camera (two RTSP servers encode on this box too)
BAY = [[600, 55], [768, 55], [768, 130], [600, 130]]  # vtest's loading bay: the van


def camera(camera_id: str, url: str) -> dict[str, object]:
    return {
        "camera_id": camera_id,
        "url": url,
        "analysis_fps": FPS,
        "loop": not url.startswith("rtsp://"),
        "clip": {"enabled": False},
        "stream": {"open_timeout_s": 3.0, "read_timeout_s": 2.0, "retry_max_s": 2.0},
        "zones": [{"zone_id": "bay", "place": "bay", "polygon": BAY}],
        "rules": [{"type": "illegal_parking", "rule_id": f"{camera_id}-parking", "zone": "bay"}],
    }


def config(tmp: Path, mqtt_port: int, cameras: list[dict[str, object]]) -> EdgeServiceConfig:
    return parse_edge_config(
        {
            "edge": {"box_id": "ws-eight", "evidence_dir": str(tmp / "evidence"), "http": ""},
            "kafka": KafkaConfig(bootstrap=f"127.0.0.1:{free_port()}").model_dump(),
            "mqtt": {"port": mqtt_port, "client_id": f"edge-{uuid.uuid4().hex[:8]}"},
            "places": [{"place_id": "bay"}],
            "cameras": cameras,
            "devices": [{"device_id": "sm-01", "type": "smoke", "town": "t1", "name": "Hall"}],
        }
    )


async def test_eight_cameras_and_sensors_one_stream_killed_the_rest_at_rate_then_a_reload(
    rtsp_prerequisites: None,
    mosquitto: RunningBroker,
    tmp_path: Path,
    vtest_video: Path,
) -> None:
    servers = [RtspServer(tmp_path, vtest_video) for _ in range(2)]
    for server in servers:
        server.start()
    still = static_scene(tmp_path / "still.avi", seconds=20, walking=(99.0, 99.0))
    cams = [camera(f"cam-rtsp-{i}", s.url) for i, s in enumerate(servers, 1)]
    cams += [camera(f"cam-file-{i}", str(vtest_video)) for i in range(1, 5)]
    cams += [camera(f"cam-still-{i}", str(still)) for i in range(1, 3)]
    ids = [str(c["camera_id"]) for c in cams]
    cfg = config(tmp_path, mosquitto.port, cams)
    sink = MemoryAlertSink()
    edge = EdgeWorker(cfg, sink)
    stop = asyncio.Event()
    run = asyncio.create_task(edge.run(stop))
    try:
        await asyncio.wait_for(edge.ready.wait(), 60)
        await until(lambda: all(analysed(edge, c) > 2 for c in ids), "all 8 analysing", 90)
        assert len({edge.supervisor.cameras[c].thread.name for c in ids}) == 8
        steady = await rates(edge, ids, 8.0)
        assert all(r >= 0.7 * FPS for r in steady.values()), steady

        servers[0].kill()  # cam-rtsp-1's stream is gone: it reconnects, backing off
        others = ids[1:]
        await asyncio.sleep(2.0)
        during = await rates(edge, [*others, ids[0]], 8.0)
        assert during[ids[0]] == 0.0
        assert all(during[c] >= 0.7 * FPS for c in others), during

        await asyncio.to_thread(smoke_alarm, mosquitto.port, "sm-01")
        await until(
            lambda: any(a.category == "smoke_alarm" for a in sink.alerts),
            "the smoke alarm raised beside the 8 cameras",
            30,
        )

        threads = {c: edge.supervisor.cameras[c].thread for c in ids}
        added = config(tmp_path, mosquitto.port, [camera("cam-file-5", str(vtest_video))])
        result = await edge.reload(
            cfg.model_copy(update={"cameras": [*cfg.cameras, *added.cameras]})
        )
        assert result.added == ("cam-file-5",) and not result.removed and not result.changed
        await until(lambda: analysed(edge, "cam-file-5") > 2, "the added camera analysing", 60)
        assert all(edge.supervisor.cameras[c].thread is threads[c] for c in ids)
    finally:
        stop.set()
        await asyncio.wait_for(run, 90)
        for server in servers:
            server.stop()
