"""Settings of the MQTT connection to the neuron sensors' broker."""

from __future__ import annotations

from pydantic import Field

from streetwatch.config_base import Section


class MqttConfig(Section):
    """The MQTT broker of the neuron sensors."""

    host: str = Field(default="127.0.0.1", description="Broker host")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port")
    subscribe: str = Field(
        default="neuron/+/+/+/up", description="Topic filter: neuron/{town}/{type}/{device_id}/up"
    )
    username: str | None = Field(default=None, description="Login, if the broker needs one")
    password: str | None = Field(default=None, description="Password for username")
    max_payload_bytes: int = Field(
        default=65536, ge=64, description="Larger messages are rejected as oversized"
    )
