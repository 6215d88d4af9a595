"""The edge worker: runs every camera and the sensor feed until stopped.

Each camera runs in its own thread (decode and inference release the GIL);
the MQTT client runs on paho's thread; alerts from all of them go through
one asyncio loop to the alert sink. A camera whose file ends logs
``event=camera_finished`` and the worker keeps serving sensors.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detectors.base import Detector
from detectors.registry import build_detector
from edge.alert_sink import AlertSink
from edge.camera_worker import CameraWorker
from edge.sensor_alerts import SensorAlerts
from ingest.backoff import BackoffPolicy
from ingest.frames import FrameSource, SourceError, SourceStatus, log_status
from ingest.mqtt_source import MqttReadings
from ingest.open_source import open_source
from ingest.prefetch import prefetched
from ingest.sensor_payload import BadReading
from ingest.stream_source import StreamOptions
from ingest.video_file import Pace
from streetwatch.config import CameraConfig, Config
from streetwatch.records import Alert, SensorReading

log = logging.getLogger("streetwatch.edge")


@dataclass
class EdgeStats:
    alerts: int = 0
    readings: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    camera_errors: Counter[str] = field(default_factory=Counter)


class EdgeWorker:
    def __init__(self, cfg: Config, sink: AlertSink, *, pace: Pace = "realtime") -> None:
        self.cfg = cfg
        self.sink = sink
        self.pace = pace
        self.stats = EdgeStats()
        self.stop_threads = threading.Event()
        self.evidence_dir = Path(cfg.edge.evidence_dir).resolve()
        self.sensor_alerts = SensorAlerts(cfg)
        self.ready = asyncio.Event()
        self.cameras_finished = asyncio.Event()  # every camera source has ended

    async def run(self, stop: asyncio.Event) -> EdgeStats:
        loop = asyncio.get_running_loop()
        await self.sink.start()
        detector = build_detector(self.cfg.detector) if self.cfg.cameras else None
        readings: asyncio.Queue[SensorReading] = asyncio.Queue()
        mqtt = None
        if self.cfg.sensors:
            mqtt = MqttReadings(
                self.cfg.mqtt,
                client_id=f"streetwatch-{self.cfg.edge.box_id}",
                on_reading=lambda r: self._enqueue(loop, readings, r),
                on_reject=self._reject,
            )
            mqtt.start()
        start = datetime.now(UTC)
        cameras = [
            asyncio.to_thread(self._camera, cam, detector, loop, start)
            for cam in self.cfg.cameras
            if detector is not None
        ]
        tasks = [
            asyncio.create_task(self._sensors(readings)),
            asyncio.create_task(self._all_cameras(cameras)),
        ]
        if mqtt is not None and not await asyncio.to_thread(mqtt.subscribed.wait, 30):
            log.error(
                "event=mqtt_not_subscribed host=%s port=%d: still trying in the background",
                self.cfg.mqtt.host,
                self.cfg.mqtt.port,
            )
        self.ready.set()
        log.info(
            "event=ready box=%s cameras=%d sensors=%d",
            self.cfg.edge.box_id,
            len(self.cfg.cameras),
            len(self.cfg.sensors),
        )
        await stop.wait()
        self.stop_threads.set()
        if mqtt is not None:
            mqtt.stop()
        tasks[0].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        while not readings.empty():  # readings that arrived before the stop
            await self._handle(readings.get_nowait())
        await self.sink.stop()
        log.info(
            "event=stopped alerts=%d readings=%d rejects=%s camera_errors=%s",
            self.stats.alerts,
            self.stats.readings,
            dict(self.stats.rejects),
            dict(self.stats.camera_errors),
        )
        return self.stats

    async def _all_cameras(self, cameras: list[Coroutine[Any, Any, None]]) -> None:
        await asyncio.gather(*cameras)
        self.cameras_finished.set()

    @staticmethod
    def _enqueue(
        loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[SensorReading], r: SensorReading
    ) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, r)

    def _reject(self, bad: BadReading, topic: str) -> None:
        self.stats.rejects[bad.reason.value] += 1
        log.warning(
            "event=reading_rejected reason=%s topic=%s detail=%s", bad.reason, topic, bad.detail
        )

    async def _publish(self, alert: Alert) -> None:
        await self.sink.publish(alert)
        self.stats.alerts += 1
        log.info(
            "event=alert category=%s place=%s source=%s id=%s",
            alert.category,
            alert.place.place_id,
            alert.source_id,
            alert.alert_id,
        )

    async def _handle(self, reading: SensorReading) -> None:
        self.stats.readings += 1
        try:
            alert = self.sensor_alerts.observe(reading)
        except BadReading as bad:
            self._reject(bad, f"neuron/{reading.town}/{reading.device_type}/{reading.device_id}/up")
            return
        if alert is not None:
            await self._publish(alert)

    async def _sensors(self, readings: asyncio.Queue[SensorReading]) -> None:
        while True:
            await self._handle(await readings.get())

    def _camera(
        self,
        cam: CameraConfig,
        detector: Detector,
        loop: asyncio.AbstractEventLoop,
        start: datetime,
    ) -> None:
        def emit(alert: Alert) -> None:
            asyncio.run_coroutine_threadsafe(self._publish(alert), loop).result()

        def status(s: SourceStatus) -> None:
            log_status(log, "camera", s)

        worker = CameraWorker(cam, self.cfg, detector, self.evidence_dir, emit)
        options = StreamOptions(
            open_timeout_s=cam.stream.open_timeout_s,
            read_timeout_s=cam.stream.read_timeout_s,
            backoff=BackoffPolicy(min_s=cam.stream.retry_min_s, max_s=cam.stream.retry_max_s),
        )
        source: FrameSource | None = None
        # the main stream for evidence, if any: same start, so two files share one clock
        evidence = worker.open_evidence(start=start, pace=self.pace, options=options)
        if evidence is not None:
            evidence.start()
        try:
            source = open_source(
                cam.camera_id,
                cam.url,
                cam.analysis_fps,
                pace=self.pace,
                start=start,
                loop=cam.loop,
                stop=self.stop_threads,
                on_status=status,
                options=options,
            )
            for frame in prefetched(source.frames(), name=f"decode-{cam.camera_id}"):
                worker.process(frame)
        except SourceError as exc:
            self.stats.camera_errors[cam.camera_id] += 1
            log.error("event=camera_error camera=%s error=%s", cam.camera_id, exc)
        except Exception:
            self.stats.camera_errors[cam.camera_id] += 1
            log.exception("event=camera_error camera=%s: unexpected failure", cam.camera_id)
        finally:
            if evidence is not None:
                evidence.stop()  # before finish: clips end with the frames they have
            worker.finish()  # alerts already raised still go out, with their clips
        log.info(
            "event=camera_finished camera=%s decoded=%d analysed=%d detector_runs=%d alerts=%d "
            "reconnects=%d stalls=%d evidence_frames=%s evidence_fallbacks=%d",
            cam.camera_id,
            source.frames_decoded if source else 0,
            worker.analysed,
            worker.detector_runs,
            worker.alerts,
            source.reconnects if source else 0,
            source.stalls if source else 0,
            evidence.frames if evidence else "-",
            worker.evidence_fallbacks,
        )
