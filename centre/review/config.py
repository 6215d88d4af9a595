"""Configuration of the review workbench: ``[review]``."""

from __future__ import annotations

from pydantic import Field, field_validator

from core.config import Section

LANGUAGES = ("zh-CN", "en")


class ReviewConfig(Section):
    """The review workbench for video-patrol staff (``streetwatch review serve``)."""

    host: str = Field(default="127.0.0.1", description="Address to listen on")
    port: int = Field(default=8090, ge=1, le=65535, description="Port to listen on")
    db: str = Field(
        default="var/review.db",
        description="The workbench's own SQLite file: users, claims, suppressions (case "
        "state stays in [store], written only by the dispatch worker)",
    )
    session_secret_file: str = Field(
        default="",
        description="File holding the key that signs session cookies; empty: one is made beside db",
    )
    secure_cookies: bool = Field(
        default=False, description="Send cookies over HTTPS only (set behind a TLS proxy)"
    )
    session_hours: float = Field(
        default=12.0, gt=0, le=24 * 7, description="A sign-in lasts this long (one shift)"
    )
    claim_s: float = Field(
        default=300.0, ge=10, le=3600, description="Opening a case claims it for this long"
    )
    page_size: int = Field(default=100, ge=10, le=1000, description="Cards per queue page")
    login_attempts_per_minute: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Wrong passwords allowed per minute for one user name; one address "
        "(a workstation's NAT) may have five times as many",
    )
    suppression_days: float = Field(
        default=7.0, gt=0, le=90, description="Default life of a suppression made on rejection"
    )
    escalate_urgency: int = Field(
        default=1,
        ge=1,
        le=4,
        description="A case at a suppressed place with this urgency or more urgent lifts "
        "the suppression early (so does a sensor corroborating it)",
    )
    language: str = Field(default="zh-CN", description="Default language: zh-CN or en")

    @field_validator("language")
    @classmethod
    def _known_language(cls, v: str) -> str:
        if v not in LANGUAGES:
            raise ValueError(f"'{v}' is not one of {', '.join(LANGUAGES)}")
        return v
