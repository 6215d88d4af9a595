"""Configuration of the case pipeline: dedup places, routing, SLA, store, Open311."""

from __future__ import annotations

from datetime import date

from pydantic import Field, field_validator

from streetwatch.config_base import Section
from streetwatch.records import Slug


class PlaceGroupConfig(Section):
    """Places that are one place for dedup (e.g. both ends of a market street)."""

    group_id: Slug = Field(description="The site id of the group's cases")
    places: list[Slug] = Field(min_length=1, description="place_ids in the group")


class DedupConfig(Section):
    """How alerts become cases: which places are the same, when a case comes back."""

    merge_within_m: float = Field(
        default=25.0,
        ge=0,
        le=1000,
        description="Places closer than this (metres, by lat/lon) are one site; 0 turns it off",
    )
    reopen_within_s: float = Field(
        default=86400.0,
        ge=0,
        description="A problem back within this long after its case closed reopens the case; "
        "later it opens a new case linked to the old ones",
    )
    coalesce_s: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="An alert that only adds to what a case already shows (count, last seen, "
        "evidence, readings of a source already in it) is published with the next change, "
        "or at most this many seconds later; 0 publishes every change at once",
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
    urgency: dict[str, int] = Field(
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
    timezone: str = Field(default="Asia/Shanghai", description="Where working days are counted")
    extra_holidays: list[date] = Field(
        default_factory=list,
        description="Public holidays the calendar package does not know yet (next year's)",
    )
    extra_workdays: list[date] = Field(
        default_factory=list, description="Make-up working days (调休) it does not know yet"
    )


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

    endpoint: str = Field(default="", description="Base URL, e.g. https://host/open311/v2")
    api_key: str = Field(default="")
    jurisdiction_id: str = Field(default="")
    service_codes: dict[str, str] = Field(
        default_factory=dict, description="category -> service_code"
    )
    media_base_url: str = Field(
        default="", description="Evidence paths are published under this URL as media_url"
    )
    group_id: Slug = Field(default="streetwatch-open311", description="Kafka consumer group")
    retries: int = Field(default=8, ge=0, description="Attempts per request after the first")
    backoff_s: float = Field(default=1.0, gt=0, description="First retry delay, doubling")
    poll_interval_s: float = Field(default=60.0, gt=0, description="Status polling period")
    timeout_s: float = Field(default=10.0, gt=0)
