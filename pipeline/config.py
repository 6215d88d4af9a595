"""Configuration of the dispatch service: alerts in, cases out, their store,
routing, time limits and the Open311 bridge.

The dispatch service validates these sections (:data:`DISPATCH_SECTIONS`) and
nothing else: it starts from a file that holds only them, without the edge
box's cameras, devices or detector. One file may also hold the edge's
sections (the demo's does); the app shell (``streetwatch.config``) checks a
whole file.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from core.config import (
    BaseUrl,
    ConfigError,
    PlaceConfig,
    Section,
    duplicate_places,
    validate_sections,
)
from core.kafka import KafkaConfig
from core.observability import ListenAddress
from core.records import Slug
from core.sites import DedupConfig, PlaceGroupConfig, SiteMap
from core.timefmt import known_zone
from pipeline.evidence_links import EvidenceLinksConfig

Urgency = Annotated[int, Field(ge=1, le=4)]


class DispatchConfig(Section):
    """The dispatch worker (a faust app) that folds alerts into cases."""

    app_id: Slug = Field(
        default="streetwatch-dispatch",
        description="Also the consumer groups: `<app_id>` (status updates), `<app_id>-alerts`",
    )
    datadir: str = Field(default="var/dispatch", description="faust's working folder")
    session_timeout_s: float = Field(default=10.0, ge=2, le=300)
    http: ListenAddress = Field(
        default="127.0.0.1:9109",
        description="host:port of the worker's /metrics (Prometheus), /healthz and /readyz "
        '(README, "Operating a box"); empty or port 0: not served',
    )


class RoutingRuleConfig(Section):
    """One line of the responsibility list (履职清单)."""

    category: Slug
    grid: str | None = Field(
        default=None, description="Only cases in this grid (any level); none: everywhere"
    )
    owner: str = Field(description="Owning department (主管/牵头)")
    assisting: list[str] = Field(default_factory=list, description="Assisting departments")
    urgency: int | None = Field(
        default=None, ge=1, le=4, description="Overrides the category's urgency here"
    )


class RoutingConfig(Section):
    """Responsibility list: category x grid -> owning and assisting departments."""

    default_owner: str = Field(
        default="联勤联动中心",
        description="Who gets a case no line matches (首接责任制: the centre designates one)",
    )
    default_urgency: int = Field(default=3, ge=1, le=4)
    urgency: dict[Slug, Urgency] = Field(
        default_factory=dict,
        description="Urgency 1 (most urgent) .. 4 per category, over the built-in levels",
    )
    rules: list[RoutingRuleConfig] = Field(
        default_factory=list,
        description="Added before the built-in list; the most specific match wins "
        "(micro grid, then small, medium, large, then category only)",
    )


class SlaConfig(Section):
    """The "三个一" time limits and the colour warnings."""

    dispatch_min: float = Field(default=10.0, gt=0, description="Filed -> dispatched")
    on_site_min: float = Field(default=60.0, gt=0, description="Filed -> someone on site")
    feedback_working_days: float = Field(
        default=1.0, gt=0, description="Filed -> first feedback, in Chinese working days"
    )
    yellow_share: float = Field(
        default=0.8, gt=0, lt=1, description="Yellow once this share of the allowance is used"
    )
    timezone: str = Field(
        default="Asia/Shanghai",
        description="The town's time zone: where working days are counted, times are shown",
    )
    extra_holidays: list[date] = Field(
        default_factory=list,
        description="Public holidays the calendar package does not know yet (next year's)",
    )
    extra_workdays: list[date] = Field(
        default_factory=list, description="Make-up working days (调休) it does not know yet"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        return known_zone(v)

    @model_validator(mode="after")
    def _one_kind_a_day(self) -> SlaConfig:
        both = sorted(set(self.extra_holidays) & set(self.extra_workdays))
        if both:
            raise ValueError(
                f"{', '.join(map(str, both))}: both in extra_holidays and extra_workdays"
            )
        return self


class StoreConfig(Section):
    """The case store: the state of every case, and the read model for reports."""

    url: str = Field(
        default="sqlite:///var/cases.db",
        description="sqlite:///relative/path, sqlite:////absolute/path or "
        "postgresql://user@host:port/db",
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if not url.startswith(("sqlite:", "postgresql://", "postgres://")):
            scheme = url.split(":", 1)[0]
            raise ValueError(f"store url scheme {scheme!r}: use sqlite:///path or postgresql://")
        return url


class Open311Config(Section):
    """Bridge to a dispatch system that speaks GeoReport v2 instead of Kafka."""

    endpoint: BaseUrl = Field(default="", description="Base URL, e.g. https://host/open311/v2")
    api_key: str = Field(default="")
    jurisdiction_id: str = Field(default="")
    service_codes: dict[Slug, str] = Field(
        default_factory=dict, description="category -> service_code"
    )
    media_base_url: BaseUrl = Field(
        default="", description="Evidence paths are published under this URL as media_url"
    )
    evidence_root: str = Field(
        default="var/evidence",
        description="The edge boxes' evidence_dir: evidence paths under it are published "
        "relative to it",
    )
    group_id: Slug = Field(default="streetwatch-open311", description="Kafka consumer group")
    retries: int = Field(default=8, ge=0, description="Attempts per request after the first")
    backoff_s: float = Field(default=1.0, gt=0, description="First retry delay, doubling")
    poll_interval_s: float = Field(default=60.0, gt=0, description="Status polling period")
    timeout_s: float = Field(default=10.0, gt=0)


class DispatchServiceConfig(Section):
    """Everything the dispatch service (``streetwatch dispatch``) reads from a config file."""

    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    dispatch: DispatchConfig = Field(default_factory=DispatchConfig)
    places: list[PlaceConfig] = Field(default_factory=list)
    place_groups: list[PlaceGroupConfig] = Field(default_factory=list)
    store: StoreConfig = Field(default_factory=StoreConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    sla: SlaConfig = Field(default_factory=SlaConfig)
    open311: Open311Config = Field(default_factory=Open311Config)
    evidence_links: EvidenceLinksConfig = Field(default_factory=EvidenceLinksConfig)

    def site_map(self) -> SiteMap:
        """The sites cases are keyed by: ``[[places]]`` joined by groups and distance.

        A place no entry names (a sensor's inline place on some edge box) joins
        the nearest known place within ``[dedup] merge_within_m``, or is a
        site of its own: list every place here for them to join each other.
        """
        places = [p.to_place() for p in self.places]
        return SiteMap(places, self.place_groups, self.dedup.merge_within_m)


DISPATCH_SECTIONS: frozenset[str] = frozenset(DispatchServiceConfig.model_fields)


def parse_dispatch_config(data: object, source: str = "<config>") -> DispatchServiceConfig:
    """The dispatch service's sections validated from parsed TOML; raise :class:`ConfigError`."""
    cfg = validate_sections(DispatchServiceConfig, data, source)
    problems = duplicate_places(cfg.places)
    if problems:
        raise ConfigError(source, problems)
    return cfg
