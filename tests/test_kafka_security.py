"""``[kafka]`` security: which settings are accepted, and the client settings made from them.

Unit tests, no broker: the config checks, :func:`core.kafka.client_kwargs` (what every
aiokafka producer, consumer and admin client is made with), the dispatch worker's faust
credentials (which faust turns into the same aiokafka settings), topic creation with the
replication factor, and the errors for files that cannot be used. The tests whose TLS
contexts load throw-away certificates run the ``openssl`` command to make them (as the MQTT
TLS tests do), so they are marked ``integration``.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka.admin import NewTopic
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

import core.kafka
from core.config import ConfigError
from core.kafka import (
    KafkaConfig,
    KafkaSecurityError,
    client_kwargs,
    create_topics,
    reliable_producer,
)
from pipeline.alert_intake import AlertIntake
from pipeline.app import broker_credentials, create_app, faust_settings
from pipeline.config import parse_dispatch_config
from tests.support.mqtt_tls import TlsFiles, make_certs

SCRAM = {"sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "streetwatch"}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_certs(tmp_path_factory.mktemp("kafka-tls"))


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "kafka_password"
    path.write_text("s3cret-pass\nsecond line is ignored\n")
    return path


def kafka(**section: object) -> KafkaConfig:
    return KafkaConfig.model_validate(section)


def kafka_problems(section: dict[str, object]) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as err:
        parse_dispatch_config({"kafka": section}, "dispatch.toml")
    return err.value.problems


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"security_protocol": "TLS"}, "'PLAINTEXT', 'SSL', 'SASL_PLAINTEXT' or 'SASL_SSL'"),
        ({"ssl_cafile": "ca.crt"}, "need security_protocol SSL or SASL_SSL (it is PLAINTEXT)"),
        (
            {"security_protocol": "SASL_PLAINTEXT", "ssl_cafile": "ca.crt", **SCRAM},
            "need security_protocol SSL or SASL_SSL (it is SASL_PLAINTEXT)",
        ),
        ({"security_protocol": "SSL", "ssl_certfile": "c.crt"}, "go together"),
        ({"security_protocol": "SSL", "ssl_keyfile": "c.key"}, "go together"),
        (
            {"security_protocol": "SASL_SSL"},
            "SASL_SSL needs sasl_mechanism, sasl_username, sasl_password_file",
        ),
        ({"security_protocol": "SASL_SSL", **SCRAM}, "SASL_SSL needs sasl_password_file"),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_password_file": "p"},
            "SASL_PLAINTEXT needs sasl_mechanism, sasl_username",
        ),
        (
            {"security_protocol": "SSL", **SCRAM, "sasl_password_file": "p"},
            "need security_protocol SASL_PLAINTEXT or SASL_SSL (it is SSL)",
        ),
        ({"sasl_username": "u"}, "(it is PLAINTEXT)"),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI", "sasl_username": "u"},
            "'PLAIN', 'SCRAM-SHA-256' or 'SCRAM-SHA-512'",
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_username": "", "sasl_password_file": "p"},
            "at least 1 character",
        ),
        # the password itself never goes into a config file
        ({"security_protocol": "SASL_SSL", **SCRAM, "sasl_password": "x"}, "unknown key"),
        ({"replication_factor": 0}, "greater than or equal to 1"),
    ],
)
def test_inconsistent_security_settings_are_refused_naming_the_section(
    section: dict[str, object], message: str
) -> None:
    problems = kafka_problems(section)
    assert any(path.startswith("kafka") and message in msg for path, msg in problems), problems


@pytest.mark.parametrize(
    "section",
    [
        {},
        {"security_protocol": "SSL"},  # the system's CAs
        {"security_protocol": "SSL", "ssl_cafile": "ca.crt"},
        {"security_protocol": "SSL", "ssl_certfile": "c.crt", "ssl_keyfile": "c.key"},
        {"security_protocol": "SASL_PLAINTEXT", **SCRAM, "sasl_password_file": "p"},
        {"security_protocol": "SASL_SSL", **SCRAM, "sasl_password_file": "p", "ssl_cafile": "c"},
        {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_username": "u",
         "sasl_password_file": "p"},
        {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256", "sasl_username": "u",
         "sasl_password_file": "p", "replication_factor": 3},
    ],
)  # fmt: skip
def test_consistent_security_settings_are_accepted_without_reading_any_file(
    section: dict[str, object],
) -> None:
    cfg = parse_dispatch_config({"kafka": section}, "dispatch.toml")  # the files do not exist
    assert cfg.kafka.security_protocol == section.get("security_protocol", "PLAINTEXT")


def test_plaintext_gives_servers_and_protocol_only() -> None:
    cfg = KafkaConfig(bootstrap="k1:9092,k2:9092")
    assert client_kwargs(cfg) == {
        "bootstrap_servers": "k1:9092,k2:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert broker_credentials(cfg) is None


@pytest.mark.integration  # openssl makes the certificates
def test_ssl_verifies_the_brokers_against_the_ca_file_and_presents_the_client_certificate(
    certs: TlsFiles,
) -> None:
    assert certs.client_cert is not None and certs.client_key is not None
    cfg = KafkaConfig(
        security_protocol="SSL",
        ssl_cafile=str(certs.ca_cert),
        ssl_certfile=str(certs.client_cert),
        ssl_keyfile=str(certs.client_key),
    )
    kwargs = client_kwargs(cfg)
    assert set(kwargs) == {"bootstrap_servers", "security_protocol", "ssl_context"}
    assert kwargs["security_protocol"] == "SSL"
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    subjects = [ca["subject"] for ca in context.get_ca_certs()]
    assert ((("commonName", "streetwatch-test-ca"),),) in subjects


def test_ssl_without_a_ca_file_uses_the_system_cas() -> None:
    context = client_kwargs(KafkaConfig(security_protocol="SSL"))["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


@pytest.mark.integration  # openssl makes the certificates
def test_sasl_ssl_logs_in_with_the_first_line_of_the_password_file(
    certs: TlsFiles, password_file: Path
) -> None:
    cfg = kafka(
        security_protocol="SASL_SSL",
        ssl_cafile=str(certs.ca_cert),
        sasl_password_file=str(password_file),
        **SCRAM,
    )
    kwargs = client_kwargs(cfg)
    assert isinstance(kwargs.pop("ssl_context"), ssl.SSLContext)
    assert kwargs == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "streetwatch",
        "sasl_plain_password": "s3cret-pass",
    }


def test_sasl_plaintext_has_no_tls_context(password_file: Path) -> None:
    cfg = KafkaConfig(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password_file=str(password_file),
    )
    kwargs = client_kwargs(cfg)
    assert "ssl_context" not in kwargs
    assert kwargs["security_protocol"] == "SASL_PLAINTEXT" and kwargs["sasl_mechanism"] == "PLAIN"


@pytest.mark.integration  # openssl makes the certificates
@pytest.mark.parametrize("protocol", ["SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_faust_gets_the_same_security_settings_as_the_aiokafka_clients(
    protocol: str, certs: TlsFiles, password_file: Path
) -> None:
    """faust turns ``broker_credentials`` into aiokafka settings itself: they must match."""
    section: dict[str, Any] = {"security_protocol": protocol}
    if protocol != "SASL_PLAINTEXT":
        section["ssl_cafile"] = str(certs.ca_cert)
    if protocol.startswith("SASL"):
        section |= {**SCRAM, "sasl_password_file": str(password_file)}
    cfg = kafka(**section)
    credentials = broker_credentials(cfg)
    expected = {k: v for k, v in client_kwargs(cfg).items() if k != "bootstrap_servers"}
    faust_side = dict(credentials_to_aiokafka_auth(credentials))
    assert faust_side.keys() >= expected.keys()
    assert isinstance(faust_side.pop("ssl_context", None), ssl.SSLContext | None)
    assert faust_side.get("security_protocol") == protocol
    for key, value in expected.items():
        if key != "ssl_context":
            assert faust_side[key] == value, key
    if protocol == "SSL":
        assert isinstance(credentials, faust.SSLCredentials)
    else:
        assert isinstance(credentials, faust.SASLCredentials)
        assert (credentials.ssl_context is None) == (protocol == "SASL_PLAINTEXT")


@pytest.mark.integration  # openssl makes the certificates
def test_the_dispatch_worker_and_its_alert_intake_use_the_security_settings(
    tmp_path: Path, certs: TlsFiles, password_file: Path
) -> None:
    cfg = parse_dispatch_config(
        {
            "kafka": {
                "bootstrap": "kafka-1:9092,kafka-2:9092,kafka-3:9092",
                "replication_factor": 3,
                "security_protocol": "SASL_SSL",
                "ssl_cafile": str(certs.ca_cert),
                "sasl_password_file": str(password_file),
                **SCRAM,
            },
            "dispatch": {"datadir": str(tmp_path / "dispatch")},
            "store": {"url": f"sqlite:///{tmp_path / 'cases.db'}"},
        }
    )
    settings = faust_settings(cfg.kafka, 10.0)
    assert settings["topic_replication_factor"] == 3
    assert isinstance(settings["broker_credentials"], faust.SASLCredentials)
    app = create_app(cfg)
    credentials = app.conf.broker_credentials
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.username == "streetwatch"
    assert [str(url) for url in app.conf.broker] == [
        "kafka://kafka-1:9092",
        "kafka://kafka-2:9092",
        "kafka://kafka-3:9092",
    ]
    intake = AlertIntake(
        kafka=cfg.kafka,
        topic="alerts",
        group="g",
        session_timeout_s=10.0,
        max_records=10,
        handle=None,  # type: ignore[arg-type]
        lock=None,  # type: ignore[arg-type]
        on_revoked=lambda: None,
        retryable=lambda exc: False,
        on_poison=None,  # type: ignore[arg-type]
    )
    assert intake._settings["security_protocol"] == "SASL_SSL"
    assert intake._settings["sasl_plain_password"] == "s3cret-pass"


async def test_producers_are_made_with_the_security_settings(password_file: Path) -> None:
    cfg = kafka(security_protocol="SASL_PLAINTEXT", sasl_password_file=str(password_file), **SCRAM)
    producer = reliable_producer(cfg)  # not started: nothing connects
    assert producer.client._security_protocol == "SASL_PLAINTEXT"
    assert producer.client._sasl_mechanism == "SCRAM-SHA-512"
    assert producer.client._sasl_plain_username == "streetwatch"


async def test_topics_are_created_with_the_security_settings_and_replication_factor(
    monkeypatch: pytest.MonkeyPatch, password_file: Path
) -> None:
    made: list[dict[str, Any]] = []
    created: list[NewTopic] = []

    class Admin:
        def __init__(self, **kwargs: Any) -> None:
            made.append(kwargs)

        async def start(self) -> None:
            pass

        async def list_topics(self) -> list[str]:
            return ["there-already"]

        async def create_topics(self, topics: list[NewTopic]) -> None:
            created.extend(topics)

        async def close(self) -> None:
            pass

    monkeypatch.setattr(core.kafka, "AIOKafkaAdminClient", Admin)
    cfg = kafka(
        security_protocol="SASL_PLAINTEXT",
        sasl_password_file=str(password_file),
        replication_factor=3,
        **SCRAM,
    )
    await create_topics(cfg, ["there-already", "new-one"], 6)
    assert made[0]["sasl_plain_username"] == "streetwatch"
    assert [(t.name, t.num_partitions, t.replication_factor) for t in created] == [
        ("new-one", 6, 3)
    ]


def test_unusable_files_fail_with_one_line_naming_the_field(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    empty = tmp_path / "empty"
    empty.write_text("")
    for password, wanted in ((missing, "cannot read"), (empty, "the first line is empty")):
        cfg = kafka(security_protocol="SASL_PLAINTEXT", sasl_password_file=str(password), **SCRAM)
        with pytest.raises(KafkaSecurityError, match=f"kafka.sasl_password_file .*{wanted}"):
            client_kwargs(cfg)
    with pytest.raises(OSError, match=r"kafka TLS \(ssl_cafile .*nope\)"):
        client_kwargs(KafkaConfig(security_protocol="SSL", ssl_cafile=str(missing)))
    not_a_cert = tmp_path / "ca.crt"
    not_a_cert.write_text("placeholder\n")
    with pytest.raises(KafkaSecurityError, match="ssl_cafile"):
        client_kwargs(KafkaConfig(security_protocol="SSL", ssl_cafile=str(not_a_cert)))
