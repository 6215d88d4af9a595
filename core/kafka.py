"""Kafka plumbing shared by every producer and consumer: the ``[kafka]`` section,
the client settings every aiokafka client is made with (:func:`client_kwargs`:
servers, TLS, SASL), topic creation (in this one place) and producer start.

Security: ``security_protocol`` is PLAINTEXT (default), SSL, SASL_PLAINTEXT or
SASL_SSL. With SSL or SASL_SSL the brokers' certificates are verified against
``ssl_cafile``, or against the system's CAs when it is not set (a public CA);
the host name is always checked. SASL needs a mechanism, a user name and a
file holding the password: the password itself is never in a config file.
The files are read when a client is made, not when the config is checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from pydantic import Field, field_validator, model_validator

from core.config import Section

log = logging.getLogger(__name__)

TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
TLS_PROTOCOLS = ("SSL", "SASL_SSL")
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")


class KafkaConfig(Section):
    """The Kafka-API broker that carries alerts and case events."""

    bootstrap: str = Field(
        default="127.0.0.1:9092", description="host:port of a broker (several: comma-separated)"
    )
    alerts_topic: str = Field(
        default="streetwatch.alerts", description="Edge -> dispatch worker, keyed by place"
    )
    dispatch_topic: str = Field(
        default="streetwatch.dispatch",
        description="Case events for the dispatch system, keyed by case id",
    )
    dead_letter_topic: str = Field(
        default="streetwatch.alerts.dead", description="Alerts the dispatch worker cannot read"
    )
    status_topic: str = Field(
        default="streetwatch.case-status",
        description="Status updates from the dispatch system (StatusUpdate JSON)",
    )
    sensor_dead_letter_topic: str = Field(
        default="streetwatch.sensors.dead",
        description="Sensor messages the edge cannot use, with the reason, keyed by reason",
    )
    suppression_topic: str = Field(
        default="streetwatch.suppressions",
        description="Suppressions for edge cameras from the review workbench "
        "(CameraSuppressions JSON, keyed by camera id, compacted)",
    )
    partitions: int = Field(
        default=4, ge=1, le=1024, description="Partitions of the topics streetwatch creates"
    )
    replication_factor: int = Field(
        default=1,
        ge=1,
        le=32,
        description="Replicas of each topic streetwatch creates (the dispatch worker's faust "
        "topics too): 3 on a cluster of three brokers with min.insync.replicas = 2",
    )
    security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT",
        description="PLAINTEXT, SSL (TLS), SASL_PLAINTEXT (a login, no TLS: a PLAIN "
        "password crosses the network readable) or SASL_SSL (a login over TLS)",
    )
    ssl_cafile: str | None = Field(
        default=None,
        description="SSL, SASL_SSL: CA certificate(s) (PEM) that signed the brokers' "
        "certificates; none: the system's CAs. The host name is always checked",
    )
    ssl_certfile: str | None = Field(
        default=None,
        description="SSL, SASL_SSL: client certificate (PEM), for brokers that ask for one",
    )
    ssl_keyfile: str | None = Field(
        default=None, description="Private key (PEM, unencrypted) of ssl_certfile"
    )
    sasl_mechanism: SaslMechanism | None = Field(
        default=None,
        description="SASL_PLAINTEXT, SASL_SSL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
    )
    sasl_username: str | None = Field(
        default=None, min_length=1, description="SASL_PLAINTEXT, SASL_SSL: the login"
    )
    sasl_password_file: str | None = Field(
        default=None,
        min_length=1,
        description="SASL_PLAINTEXT, SASL_SSL: file holding the password (first line), read "
        "when a client starts; the password itself is never in the config",
    )

    @field_validator("bootstrap")
    @classmethod
    def _host_ports(cls, v: str) -> str:
        for server in v.split(","):
            host, colon, port = server.strip().rpartition(":")
            if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"'{server.strip()}' is not host:port")
        return v

    @field_validator(
        "alerts_topic",
        "dispatch_topic",
        "dead_letter_topic",
        "status_topic",
        "sensor_dead_letter_topic",
        "suppression_topic",
    )
    @classmethod
    def _topic_name(cls, v: str) -> str:
        if not TOPIC_NAME.fullmatch(v):
            raise ValueError(f"'{v}' is not a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)")
        return v

    @model_validator(mode="after")
    def _security(self) -> KafkaConfig:
        tls = self.security_protocol in TLS_PROTOCOLS
        sasl = self.security_protocol in SASL_PROTOCOLS
        tls_files = (self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile)
        if not tls and any(f is not None for f in tls_files):
            raise ValueError(
                "ssl_cafile, ssl_certfile and ssl_keyfile need security_protocol "
                f"SSL or SASL_SSL (it is {self.security_protocol})"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together: set both or neither")
        login = {
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_username": self.sasl_username,
            "sasl_password_file": self.sasl_password_file,
        }
        if sasl:
            missing = [name for name, value in login.items() if value is None]
            if missing:
                raise ValueError(
                    f"security_protocol {self.security_protocol} needs {', '.join(missing)}"
                )
        elif any(value is not None for value in login.values()):
            raise ValueError(
                "sasl_mechanism, sasl_username and sasl_password_file need security_protocol "
                f"SASL_PLAINTEXT or SASL_SSL (it is {self.security_protocol})"
            )
        return self


class KafkaSecurityError(OSError):
    """A certificate, key or password file of ``[kafka]`` that cannot be used."""


def _read_password(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise KafkaSecurityError(
            f"kafka.sasl_password_file {path}: cannot read: {exc.strerror}"
        ) from None
    password = text.splitlines()[0] if text else ""
    if not password:
        raise KafkaSecurityError(f"kafka.sasl_password_file {path}: the first line is empty")
    return password


def ssl_context(cfg: KafkaConfig) -> ssl.SSLContext | None:
    """The TLS context of ``cfg`` (SSL, SASL_SSL), or None; reads the certificate files."""
    if cfg.security_protocol not in TLS_PROTOCOLS:
        return None
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=cfg.ssl_cafile, certfile=cfg.ssl_certfile, keyfile=cfg.ssl_keyfile
        )
    except OSError as exc:  # ssl.SSLError is one
        files = ", ".join(
            f"{name} {value}"
            for name, value in (
                ("ssl_cafile", cfg.ssl_cafile),
                ("ssl_certfile", cfg.ssl_certfile),
                ("ssl_keyfile", cfg.ssl_keyfile),
            )
            if value is not None
        )
        raise KafkaSecurityError(
            f"kafka TLS ({files or 'system CAs'}): {exc.strerror or exc}"
        ) from None
    return context


def sasl_login(cfg: KafkaConfig) -> tuple[str, str, str] | None:
    """(mechanism, user name, password) of ``cfg`` (SASL_*), or None; reads the password."""
    if cfg.security_protocol not in SASL_PROTOCOLS:
        return None
    assert cfg.sasl_mechanism and cfg.sasl_username and cfg.sasl_password_file  # validated
    return cfg.sasl_mechanism, cfg.sasl_username, _read_password(cfg.sasl_password_file)


def client_kwargs(cfg: KafkaConfig) -> dict[str, Any]:
    """The keyword arguments every aiokafka client (producer, consumer, admin) is made with:
    ``bootstrap_servers``, ``security_protocol``, and with them the TLS context and the SASL
    login. Reads the certificate and password files now; raise :class:`KafkaSecurityError`
    (an ``OSError``) naming the field when one cannot be used."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": cfg.bootstrap,
        "security_protocol": cfg.security_protocol,
    }
    context = ssl_context(cfg)
    if context is not None:
        kwargs["ssl_context"] = context
    login = sasl_login(cfg)
    if login is not None:
        mechanism, username, password = login
        kwargs["sasl_mechanism"] = mechanism
        kwargs["sasl_plain_username"] = username
        kwargs["sasl_plain_password"] = password
    return kwargs


def reliable_producer(cfg: KafkaConfig) -> AIOKafkaProducer:
    """A producer that waits for every in-sync replica (``acks="all"``)."""
    return AIOKafkaProducer(**client_kwargs(cfg), acks="all", linger_ms=5, request_timeout_ms=15000)


async def create_topics(
    cfg: KafkaConfig,
    names: Iterable[str],
    partitions: int,
    attempts: int = 30,
    configs: dict[str, str] | None = None,
) -> None:
    """Create those of ``names`` that do not exist yet, retrying while the broker starts.

    Each new topic has ``cfg.replication_factor`` replicas; ``configs`` are topic settings
    given to each (e.g. ``cleanup.policy``).
    """
    bootstrap, settings = cfg.bootstrap, client_kwargs(cfg)
    for attempt in range(1, attempts + 1):
        admin = AIOKafkaAdminClient(**settings)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            wanted = [
                NewTopic(
                    name,
                    num_partitions=partitions,
                    replication_factor=cfg.replication_factor,
                    topic_configs=dict(configs or {}),
                )
                for name in names
                if name not in existing
            ]
            if wanted:
                with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile
                    await admin.create_topics(wanted)
            return
        except KafkaError as exc:
            if attempt == attempts:
                raise
            log.warning("kafka %s not ready (%s), retrying", bootstrap, exc)
            await asyncio.sleep(min(5.0, 0.2 * attempt))
        finally:
            await admin.close()


async def start_producer(producer: AIOKafkaProducer, bootstrap: str) -> None:
    """Start ``producer``, retrying with backoff (up to 30 s apart) until the broker answers."""
    delay = 0.5
    while True:
        try:
            await producer.start()
            return
        except KafkaError as exc:
            log.warning("kafka %s unreachable (%s); retrying in %.1fs", bootstrap, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def ensure_topics(cfg: KafkaConfig, attempts: int = 30) -> None:
    """Create the alerts, dispatch, status and suppression topics if they do not exist yet.

    The suppression topic is compacted: the latest message per camera is what counts.
    """
    await create_topics(
        cfg, (cfg.alerts_topic, cfg.dispatch_topic, cfg.status_topic), cfg.partitions, attempts
    )
    await create_topics(
        cfg,
        (cfg.suppression_topic,),
        cfg.partitions,
        attempts,
        configs={"cleanup.policy": "compact"},
    )
