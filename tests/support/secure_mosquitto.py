"""A mosquitto for tests with a login, a TLS listener and persistence.

Started again with the same ``workdir`` and ``port`` it keeps what it
persisted (sessions, queued QoS 1 messages), so tests can restart the
broker under a running client.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from streetwatch.brokers import (
    PRODUCTION_MQTT,
    BrokerUnavailable,
    RunningBroker,
    mosquitto_binary,
)
from streetwatch.processes import Child, free_port, wait_for_port
from tests.support.mqtt_tls import TlsFiles


def write_password_file(path: Path, users: Mapping[str, str]) -> Path:
    """A mosquitto password file with hashed passwords (``mosquitto_passwd -b``)."""
    binary = shutil.which("mosquitto_passwd")
    if binary is None:
        raise BrokerUnavailable("mosquitto_passwd is missing (Debian package mosquitto)")
    path.write_text("")
    for user, password in users.items():
        subprocess.run(
            [binary, "-b", str(path), user, password], check=True, capture_output=True, timeout=30
        )
    return path


def start_secure_mosquitto(
    workdir: Path,
    tls: TlsFiles,
    users: Mapping[str, str],
    *,
    port: int | None = None,
    require_certificate: bool = False,
    max_queued_messages: int = 10000,
) -> RunningBroker:
    """Start mosquitto on 127.0.0.1:``port`` (TLS only, login required, persistence on).

    Its log (notices included: refused logins show there) goes to
    ``workdir/mosquitto.log``; persistence to ``workdir/persist/``.
    """
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    store = workdir / "persist"
    store.mkdir(exist_ok=True)
    passwords = write_password_file(workdir / "passwords", users)
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        "\n".join(
            [
                "per_listener_settings false",
                "allow_anonymous false",
                f"password_file {passwords}",
                *(s for s in PRODUCTION_MQTT if not s.startswith("max_queued_messages")),
                f"persistence_location {store}",
                f"max_queued_messages {max_queued_messages}",
                "user root",
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_type information",
                "connection_messages true",
                f"listener {port} 127.0.0.1",
                f"cafile {tls.ca_cert}",
                f"certfile {tls.server_cert}",
                f"keyfile {tls.server_key}",
                f"require_certificate {'true' if require_certificate else 'false'}",
                "",
            ]
        )
    )
    child = Child(
        "mosquitto", [str(mosquitto_binary()), "-c", str(conf)], log=workdir / "mosquitto.log"
    )
    wait_for_port(port, 10, child.proc)
    return RunningBroker(child, port)
