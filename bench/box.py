"""Box benchmark: one edge box running 8 cameras at 2 analysed frames per second.

    python -m bench.box [--cameras 8] [--seconds 60] [--fps 2]

Starts its own Tansu and a real ``streetwatch edge`` process whose cameras
loop real footage in real time: vtest.avi (people walking: the detector runs
often) and a still scene made from it (the street without the people: motion
gating keeps the detector idle), half each. After a warm-up, over
``--seconds`` it samples the process's resident memory (VmRSS, every thread
included) and its CPU time (utime + stime from /proc), and reads each
camera's analysed frames from the worker's own ``/metrics``.

Prints RSS (max and mean; target <= 600 MB for 8 cameras), CPU as a share of
one core and of the whole box, and per camera the analysed rate against its
target; the same for the still cameras alone (a second run with only the
still scene: the box's idle share); and for the first mix again with every
camera blurring faces and plates in its evidence (a third run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from core.kafka import KafkaConfig, ensure_topics
from streetwatch.brokers import start_tansu
from streetwatch.processes import Child, free_port
from tests.support.box_runs import scraped_analysed
from tests.support.kafka_helpers import fresh_kafka
from tests.support.paths import VTEST
from tests.support.scenes import static_scene

TICKS = os.sysconf("SC_CLK_TCK")
BAY = [[600, 55], [768, 55], [768, 130], [600, 130]]  # vtest's loading bay
PARKING = {"type": "illegal_parking", "dwell_s": 30.0, "repeat_every_s": 60.0}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def box_config(
    tmp: Path,
    kafka: KafkaConfig,
    videos: list[Path],
    fps: float,
    port: int,
    privacy: bool = False,
) -> Path:
    cameras = [
        {
            "camera_id": f"cam-{i}",
            "url": str(video),
            "analysis_fps": fps,
            "loop": True,
            "privacy": {"blur_faces": privacy, "blur_plates": privacy},
            "zones": [{"zone_id": "bay", "place": "bay", "polygon": BAY}],
            "rules": [{**PARKING, "rule_id": f"park-{i}", "zone": "bay"}],
        }
        for i, video in enumerate(videos)
    ]
    body = {
        "edge": {
            "box_id": "bench-box",
            "evidence_dir": str(tmp / "evidence"),
            "outbox": str(tmp / f"outbox-{port}.db"),
            "http": f"127.0.0.1:{port}",
        },
        "kafka": kafka.model_dump(),
        "places": [{"place_id": "bay"}],
        "cameras": cameras,
    }
    path = tmp / f"edge-{port}.json"
    path.write_text(json.dumps(body))
    return path


def measure(config: Path, port: int, seconds: float, warmup: float) -> dict[str, object]:
    child = Child(
        "edge",
        [sys.executable, "-m", "streetwatch.cli", "edge", "--config", str(config)],
        log=config.with_suffix(".log"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                scraped_analysed(url)
                break
            except OSError:
                assert time.monotonic() < deadline and child.running(), "the box did not start"
                time.sleep(0.5)
        time.sleep(warmup)
        first, cpu0, t0 = scraped_analysed(url), cpu_seconds(child.pid), time.monotonic()
        rss = []
        while time.monotonic() - t0 < seconds:
            rss.append(rss_mb(child.pid))
            time.sleep(1.0)
        last, cpu1, t1 = scraped_analysed(url), cpu_seconds(child.pid), time.monotonic()
    finally:
        child.stop()
    span = t1 - t0
    return {
        "rss_max": max(rss),
        "rss_mean": statistics.mean(rss),
        "cpu_core_share": (cpu1 - cpu0) / span,
        "rates": {cam: (last[cam] - first.get(cam, 0.0)) / span for cam in sorted(last)},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--cameras", type=int, default=8)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=15.0)
    p.add_argument("--fps", type=float, default=2.0)
    args = p.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "tansu").mkdir()
        broker = start_tansu(tmp / "tansu")
        try:
            kafka = fresh_kafka(broker.address)
            asyncio.run(ensure_topics(kafka))
            still = static_scene(tmp / "still.avi", seconds=30, walking=(99.0, 99.0))
            busy = [VTEST if i % 2 == 0 else still for i in range(args.cameras)]
            idle = [still] * args.cameras
            print(
                f"{args.cameras} cameras at {args.fps:g} analysed fps, {cores} cores; "
                f"{args.warmup:.0f} s warm-up, {args.seconds:.0f} s measured"
            )
            runs = (
                ("half walking, half still", busy, False),
                ("all still (idle)", idle, False),
                ("half walking, half still, faces and plates blurred", busy, True),
            )
            for label, videos, privacy in runs:
                port = free_port()
                result = measure(
                    box_config(tmp, kafka, videos, args.fps, port, privacy),
                    port,
                    args.seconds,
                    args.warmup,
                )
                rates = result["rates"]
                assert isinstance(rates, dict)
                share = float(result["cpu_core_share"])  # type: ignore[arg-type]
                print(f"\n{label}:")
                print(
                    f"  RSS max {result['rss_max']:.0f} MB, mean {result['rss_mean']:.0f} MB "
                    "(target <= 600 MB)"
                )
                print(f"  CPU {share:.2f} of one core = {100 * share / cores:.0f}% of the box")
                low = {c: r for c, r in rates.items() if r < 0.9 * args.fps}
                print(
                    f"  analysed fps per camera: min {min(rates.values()):.2f}, "
                    f"max {max(rates.values()):.2f} (target {args.fps:g}); below 90%: "
                    f"{low or 'none'}"
                )
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
