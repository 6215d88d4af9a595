"""Fetchable evidence on the dispatch stream: links to the centre's evidence service.

With ``[evidence_links] base_url`` set, every piece of evidence in a case event
published on the dispatch topic gets a ``url``: an HMAC-signed link to the
evidence service (``streetwatch evidence serve``), signed with the key the
service checks (``secret_file``, the same file). The link expires
``ttl_days`` after the evidence was captured, so an event republished later
carries the same bytes (consumers dedupe on the event id) and a replay of the
alerts gives the same events. The edge box's local ``path`` is left off the
wire: a consumer fetches ``url`` and checks ``sha256`` and ``size``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from core.config import BaseUrl, Section
from core.records import Case, CaseEvent, Evidence
from core.signed_urls import signed_query


class EvidenceLinksConfig(Section):
    """Links to the evidence service in the case events on the dispatch topic."""

    base_url: BaseUrl = Field(
        default="",
        description="The evidence service's public URL ([evidence] public_url); empty: "
        "events carry evidence without links",
    )
    secret_file: str = Field(
        default="", description="The evidence service's link key ([evidence] secret_file)"
    )
    ttl_days: float = Field(
        default=30.0, gt=0, le=3650, description="A link is good this long after capture"
    )

    @model_validator(mode="after")
    def _secret_with_url(self) -> EvidenceLinksConfig:
        if self.base_url and not self.secret_file:
            raise ValueError("base_url needs secret_file")
        return self


class EvidenceLinks:
    def __init__(self, base_url: str, secret: bytes, ttl_s: float) -> None:
        self.base_url, self.secret, self.ttl_s = base_url, secret, ttl_s

    @classmethod
    def from_config(cls, cfg: EvidenceLinksConfig) -> EvidenceLinks | None:
        if not cfg.base_url:
            return None
        secret = Path(cfg.secret_file).read_text(encoding="utf-8").strip().encode()
        return cls(cfg.base_url, secret, cfg.ttl_days * 86400.0)

    def evidence(self, ev: Evidence) -> Evidence:
        query = signed_query(self.secret, ev.sha256, self.ttl_s, now=ev.captured_at.timestamp())
        url = f"{self.base_url}/v1/evidence/{ev.sha256}?{query}"
        return ev.model_copy(update={"url": url, "path": ""})

    def case(self, case: Case) -> Case:
        return case.model_copy(update={"evidence": tuple(self.evidence(e) for e in case.evidence)})

    def event(self, event: CaseEvent) -> CaseEvent:
        return event.model_copy(update={"case": self.case(event.case)})
