"""Configuration of the central web services: ``[evidence]``, ``[review]``.

The evidence service and the review workbench validate these sections and
nothing else; a file may hold other services' sections too (the app shell,
``streetwatch.config``, checks a whole file).
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from centre.review.config import ReviewConfig
from core.config import BaseUrl, ConfigError, Section, validate_sections
from core.kafka import KafkaConfig
from core.records import Sha256Hex, Slug
from pipeline.config import StoreConfig

#: what the edge uploads: snapshots, clips, the SVG charts of sensor readings
MEDIA_TYPES = ("image/jpeg", "video/mp4", "image/svg+xml")


class EvidenceBoxConfig(Section):
    """An edge box allowed to upload evidence."""

    box_id: Slug
    token_sha256: Sha256Hex = Field(
        description="sha256 (hex) of the box's upload token; the token itself stays on the "
        "box (`streetwatch evidence token` makes a pair)"
    )


class EvidenceConfig(Section):
    """The evidence service: content-addressed storage, uploads from the boxes, links."""

    host: str = Field(default="127.0.0.1", description="Address to listen on")
    port: int = Field(default=8070, ge=1, le=65535, description="Port to listen on")
    public_url: BaseUrl = Field(
        default="",
        description="Base URL of links given out (behind a proxy); empty: http://host:port",
    )
    store_dir: str = Field(
        default="var/evidence-store", description="Where the files are kept, by sha256"
    )
    secret_file: str = Field(
        default="",
        description="File holding the key that signs links; empty: one is made and kept in "
        "store_dir (keep it when moving the store)",
    )
    link_ttl_s: float = Field(
        default=7 * 86400.0, gt=0, le=366 * 86400.0, description="How long a link is good"
    )
    max_mb: dict[str, float] = Field(
        default_factory=lambda: {"image/jpeg": 10.0, "video/mp4": 64.0, "image/svg+xml": 1.0},
        description="Largest upload per media type, in MB; a type not listed is refused",
    )
    boxes: list[EvidenceBoxConfig] = Field(default_factory=list)

    @field_validator("max_mb")
    @classmethod
    def _known_types(cls, v: dict[str, float]) -> dict[str, float]:
        for media_type, mb in v.items():
            if media_type not in MEDIA_TYPES:
                raise ValueError(f"'{media_type}' is not one of {', '.join(MEDIA_TYPES)}")
            if not 0 < mb <= 1024:
                raise ValueError(f"{media_type}: {mb} MB is not in (0, 1024]")
        return v

    @model_validator(mode="after")
    def _unique_boxes(self) -> EvidenceConfig:
        ids = [b.box_id for b in self.boxes]
        if len(ids) != len(set(ids)):
            raise ValueError("a box_id is listed twice")
        return self

    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"


class CentreServiceConfig(Section):
    """Everything the central web services read from a config file.

    The review workbench reads the case store (``[store]``) and the dispatch
    topic, and writes status updates and suppressions (``[kafka]``).
    """

    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)


CENTRE_SECTIONS: frozenset[str] = frozenset(CentreServiceConfig.model_fields)


def parse_centre_config(data: object, source: str = "<config>") -> CentreServiceConfig:
    """The central services' sections validated from parsed TOML; raise :class:`ConfigError`."""
    return validate_sections(CentreServiceConfig, data, source)


__all__ = [
    "CENTRE_SECTIONS",
    "MEDIA_TYPES",
    "CentreServiceConfig",
    "ConfigError",
    "EvidenceBoxConfig",
    "EvidenceConfig",
    "parse_centre_config",
]
