"""Settings of the MQTT connection to the neuron sensors' broker.

The defaults give a persistent session: a fixed client id, QoS 1 and
``clean_start = false`` (MQTT 5, with ``session_expiry_s``) or
``clean_session = false`` (MQTT 3.1.1), so readings published while the
ingest is down wait in the broker and arrive after it reconnects.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from core.config import Section


class MqttTlsConfig(Section):
    """TLS to the broker; present means the connection is encrypted."""

    ca_file: str | None = Field(
        default=None,
        description="CA certificate(s) (PEM) that signed the broker's; none: system CAs",
    )
    cert_file: str | None = Field(
        default=None, description="Client certificate (PEM), if the broker asks for one"
    )
    key_file: str | None = Field(default=None, description="Private key (PEM) of cert_file")
    insecure: bool = Field(
        default=False,
        description="Skip the host name check of the broker's certificate (the chain is still "
        "verified); only for brokers reached by an address their certificate does not name",
    )

    @model_validator(mode="after")
    def _cert_and_key(self) -> MqttTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both or neither")
        return self


class MqttConfig(Section):
    """The MQTT broker of the neuron sensors."""

    host: str = Field(default="127.0.0.1", description="Broker host")
    port: int = Field(
        default=1883, ge=1, le=65535, description="Broker port (TLS listeners are usually 8883)"
    )
    protocol: Literal["5", "3.1.1"] = Field(default="5", description="MQTT protocol version")
    client_id: str = Field(
        default="",
        max_length=128,
        description="Fixed client id, the key of the persistent session; empty: "
        "streetwatch-{edge.box_id}",
    )
    subscribe: str = Field(
        default="neuron/+/+/+/up",
        min_length=1,
        description="Topic filter: neuron/{town}/{type}/{device_id}/up",
    )
    shared_group: str | None = Field(
        default=None,
        pattern=r"^[^/+#$]+$",
        description="MQTT 5 shared subscription group: boxes in one group split the messages "
        "($share/{group}/{subscribe})",
    )
    username: str | None = Field(default=None, description="Login, if the broker needs one")
    password: str | None = Field(default=None, description="Password for username")
    password_file: str | None = Field(
        default=None,
        description="File holding the password (first line), instead of password; read at start",
    )
    tls: MqttTlsConfig | None = Field(default=None, description="TLS settings; absent: plain TCP")
    keepalive_s: int = Field(default=30, ge=5, le=65535, description="MQTT keep-alive interval")
    session_expiry_s: int = Field(
        default=86400,
        ge=0,
        le=0xFFFFFFFF,
        description="MQTT 5: how long the broker keeps the session (and queues QoS 1 readings) "
        "while the ingest is away; 4294967295 = never expires. 0 = no persistent session",
    )
    reconnect_min_s: int = Field(
        default=1, ge=1, le=3600, description="First wait before reconnecting; doubles each try"
    )
    reconnect_max_s: int = Field(default=30, ge=1, le=3600, description="Longest reconnect wait")
    receive_maximum: int = Field(
        default=1000,
        ge=1,
        le=65535,
        description="MQTT 5: unacknowledged QoS 1 messages the broker may have in flight to us",
    )
    max_payload_bytes: int = Field(
        default=65536, ge=64, description="Larger messages are rejected as oversized"
    )

    @model_validator(mode="after")
    def _consistent(self) -> MqttConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password or password_file, not both")
        if (self.password is not None or self.password_file is not None) and not self.username:
            raise ValueError("a password needs a username")
        if self.shared_group is not None and self.protocol != "5":
            raise ValueError('shared_group needs protocol = "5" (MQTT 5 shared subscriptions)')
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        return self

    @property
    def topic_filter(self) -> str:
        """The filter actually subscribed: shared if a group is set."""
        if self.shared_group is not None:
            return f"$share/{self.shared_group}/{self.subscribe}"
        return self.subscribe
