"""``streetwatch demo``: the whole path on one machine, on embedded defaults.

Starts a Tansu (Kafka API) broker and mosquitto on free 127.0.0.1 ports,
the evidence service, the dispatch worker (faust) and the review workbench
as child processes, the edge worker in this process on the demo camera, and a
simulated water-level gauge; prints the workbench's address and a demo
user's password, and every case event published on the dispatch topic;
stops after ``duration`` seconds, on Ctrl-C, or once every camera has ended
and every alert has reached the dispatch topic. With ``keep_open`` the
services then keep running until Ctrl-C, so the cases can be reviewed in the
workbench (they stay filed until someone judges them). Every child is
stopped on the way out.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from centre.config import CENTRE_SECTIONS, EvidenceBoxConfig
from centre.evidence_service import new_token, token_digest
from centre.review.db import Role, WorkbenchDb
from core.kafka import ensure_topics
from core.records import Alert, CaseEvent
from edge.alert_sink import KafkaAlertSink, RecordingSink
from edge.dead_letters import KafkaDeadLetterSink
from edge.worker import EdgeWorker
from ingest.topic_layout import TopicLayout
from ingest.video_file import Pace
from pipeline.config import DISPATCH_SECTIONS
from pipeline.dedup import shows
from pipeline.dispatch_tail import case_events, describe
from streetwatch.brokers import start_mosquitto, start_tansu
from streetwatch.config import Config
from streetwatch.processes import Child, free_port, wait_for_port
from streetwatch.sensor_simulator import simulate

log = logging.getLogger("streetwatch.demo")


class DemoError(Exception):
    """The demo could not run; the message says why."""


def _with_evidence_service(cfg: Config, run_dir: Path) -> Config:
    """The evidence service on a free port, this box allowed to upload to it, and the
    dispatch service linking case events to it (one link key, made for this run)."""
    port = free_port()
    key = run_dir / "evidence-link.key"
    key.write_text(secrets.token_hex(32))
    token = run_dir / "box.token"
    token.write_text(new_token())
    url = f"http://127.0.0.1:{port}"
    box = EvidenceBoxConfig(box_id=cfg.edge.box_id, token_sha256=token_digest(token.read_text()))
    return cfg.model_copy(
        update={
            "evidence": cfg.evidence.model_copy(
                update={
                    "port": port,
                    "store_dir": str(run_dir / "evidence-store"),
                    "secret_file": str(key),
                    "boxes": [box],
                }
            ),
            "evidence_links": cfg.evidence_links.model_copy(
                update={"base_url": url, "secret_file": str(key)}
            ),
            "edge": cfg.edge.model_copy(
                update={"evidence_url": url, "evidence_token_file": str(token)}
            ),
        }
    )


DEMO_USER = "demo"


def _with_workbench(cfg: Config, run_dir: Path) -> tuple[Config, str]:
    """The review workbench on a free port, its database in ``run_dir`` with one demo
    user (a supervisor, every grid); the config and that user's password."""
    cfg = cfg.model_copy(
        update={
            "review": cfg.review.model_copy(
                update={"port": free_port(), "db": str(run_dir / "review.db")}
            )
        }
    )
    password = secrets.token_urlsafe(9)
    db = WorkbenchDb(cfg.review.db)
    try:
        db.add_user(DEMO_USER, password, Role.SUPERVISOR, display_name="演示用户", replace=True)
    finally:
        db.close()
    return cfg, password


def _with_brokers(cfg: Config, kafka: str, mqtt_port: int, run_dir: Path) -> Config:
    return cfg.model_copy(
        update={
            "kafka": cfg.kafka.model_copy(update={"bootstrap": kafka}),
            "mqtt": cfg.mqtt.model_copy(update={"host": "127.0.0.1", "port": mqtt_port}),
            "dispatch": cfg.dispatch.model_copy(
                update={"datadir": str(run_dir / "dispatch"), "session_timeout_s": 6.0}
            ),
            "store": cfg.store.model_copy(update={"url": f"sqlite:///{run_dir / 'cases.db'}"}),
            # a fresh outbox: what an earlier run left belongs to brokers that are gone
            "edge": cfg.edge.model_copy(update={"outbox": str(run_dir / "outbox.db")}),
        }
    )


def _check_inputs(cfg: Config) -> None:
    for cam in cfg.cameras:
        if not Path(cam.url).is_file():
            raise DemoError(
                f"camera {cam.camera_id}: video {cam.url} not found. The demo video comes "
                "from Debian's opencv-doc package: run `make setup` as root, or "
                "`apt-get install opencv-doc`."
            )


async def run_demo(
    cfg: Config,
    *,
    pace: Pace,
    duration: float,
    run_dir: Path,
    out: TextIO = sys.stdout,
    keep_open: bool = False,
) -> int:
    _check_inputs(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    children: list[Child] = []
    brokers = []
    try:
        tansu = start_tansu(run_dir)
        brokers.append(tansu)
        mosquitto = start_mosquitto(run_dir)
        brokers.append(mosquitto)
        cfg = _with_brokers(cfg, tansu.address, mosquitto.port, run_dir)
        cfg = _with_evidence_service(cfg, run_dir)
        cfg, password = _with_workbench(cfg, run_dir)
        # each central service gets its own sections only, as on a central machine
        config_path = run_dir / "dispatch.json"
        config_path.write_text(cfg.model_dump_json(include=set(DISPATCH_SECTIONS), indent=2))
        centre_path = run_dir / "centre.json"
        centre_path.write_text(cfg.model_dump_json(include=set(CENTRE_SECTIONS), indent=2))

        def start(name: str, *args: str) -> Child:
            started = Child(
                name, [sys.executable, "-m", "streetwatch.cli", *args], log=run_dir / f"{name}.log"
            )
            children.append(started)
            return started

        evidence = start("evidence", "evidence", "serve", "--config", str(centre_path))
        wait_for_port(cfg.evidence.port, 30, evidence.proc)
        print(
            f"brokers: kafka {tansu.address}, mqtt 127.0.0.1:{mosquitto.port}; evidence "
            f"service {cfg.evidence.base_url()}; logs in {run_dir}",
            file=out,
            flush=True,
        )
        await ensure_topics(cfg.kafka)
        dispatch = start("dispatch", "dispatch", "--config", str(config_path))
        workbench = start("review", "review", "serve", "--config", str(centre_path))
        wait_for_port(cfg.review.port, 30, workbench.proc)
        print(
            f"review workbench: http://{cfg.review.host}:{cfg.review.port}/ "
            f"(user {DEMO_USER}, password {password})",
            file=out,
            flush=True,
        )
        status = await _run(cfg, pace, duration, stop, dispatch, out)
        if keep_open and not stop.is_set():
            print(
                f"\nthe demo's services keep running: review the cases at "
                f"http://{cfg.review.host}:{cfg.review.port}/ (user {DEMO_USER}, password "
                f"{password}); Ctrl-C stops them",
                file=out,
                flush=True,
            )
            await stop.wait()
        return status
    finally:
        for child in reversed(children):
            child.stop()
        for broker in reversed(brokers):
            broker.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _run(
    cfg: Config, pace: Pace, duration: float, stop: asyncio.Event, dispatch: Child, out: TextIO
) -> int:
    run_stop = asyncio.Event()  # this run's inputs and tail; ``stop`` is Ctrl-C
    sink = RecordingSink(KafkaAlertSink(cfg.kafka, cfg.site_map()))
    k = cfg.kafka
    dead = KafkaDeadLetterSink(k, k.sensor_dead_letter_topic, k.partitions)
    edge = EdgeWorker(cfg, sink, pace=pace, dead_letters=dead)
    stop_edge = asyncio.Event()
    edge_task = asyncio.create_task(edge.run(stop_edge))
    cases: dict[str, CaseEvent] = {}
    last_event = time.monotonic()
    tz = ZoneInfo(cfg.sla.timezone)

    async def tail() -> None:
        nonlocal last_event
        async for _raw, event in case_events(cfg.kafka, run_stop):
            if event.case_id not in cases or event.version > cases[event.case_id].version:
                cases[event.case_id] = event
            last_event = time.monotonic()
            print(describe(event, tz), file=out, flush=True)

    tail_task = asyncio.create_task(tail())
    await edge.ready.wait()
    sims_done = threading.Event()
    stop_sims = threading.Event()
    sim_readings, sim_interval = (60, 0.05) if pace == "fast" else (60, 1.0)

    def run_sims() -> None:
        try:
            layout = TopicLayout(cfg.neuron.topic)
            for device in edge.registry:
                simulate(
                    cfg.mqtt.host,
                    cfg.mqtt.port,
                    device,
                    layout,
                    readings=sim_readings,
                    interval=sim_interval,
                    stop=stop_sims,
                )
        finally:
            sims_done.set()

    sim_thread = threading.Thread(target=run_sims, name="sensor-simulator", daemon=True)
    sim_thread.start()
    deadline = time.monotonic() + duration
    status = 0
    while not stop.is_set() and time.monotonic() < deadline:
        if not dispatch.running():
            print(
                f"dispatch worker exited with {dispatch.proc.returncode}; see its log",
                file=out,
                flush=True,
            )
            status = 1
            break
        inputs_done = edge.cameras_finished.is_set() and sims_done.is_set()
        if inputs_done and not undelivered(sink, cases) and time.monotonic() - last_event > 2.0:
            break
        await asyncio.sleep(0.2)
    stop_sims.set()
    stop_edge.set()
    stats = await edge_task
    await asyncio.sleep(0.5)
    run_stop.set()
    await tail_task
    sim_thread.join(5)
    missing = undelivered(sink, cases)
    by_category = Counter(e.case.category for e in cases.values())
    print(
        f"\n{len(cases)} case(s) from {stats.alerts} alert(s): "
        + ", ".join(f"{n} {c}" for c, n in sorted(by_category.items())),
        file=out,
    )
    for e in sorted(cases.values(), key=lambda e: e.case.first_seen):
        c = e.case
        owner = f"{c.route.owner}, urgency {c.route.urgency}" if c.route else "no route"
        print(
            f"  {c.case_id} {c.category} @ {c.site_id}: {c.alert_count} alert(s), "
            f"v{c.version}, {len(c.evidence)} evidence file(s); {c.status} ({owner})",
            file=out,
        )
    if stats.rejects:
        print(
            f"rejected sensor messages: {dict(stats.rejects)} "
            f"(dead letters on {cfg.kafka.sensor_dead_letter_topic})",
            file=out,
        )
    if missing:
        print(
            f"{len(missing)} alert(s) not yet on the dispatch topic when the demo stopped", file=out
        )
    out.flush()
    return status


def undelivered(sink: RecordingSink, cases: dict[str, CaseEvent]) -> list[Alert]:
    """The alerts sent that no case on the dispatch topic shows yet (held ones come
    out with the next change or after ``[dedup] coalesce_s``)."""
    return [a for a in sink.published.values() if not any(shows(e.case, a) for e in cases.values())]


def default_run_dir() -> Path:
    return Path("var/demo") / datetime.now(UTC).strftime("run-%Y%m%dT%H%M%S")
