"""Evidence on the wire: version 2 records carry size and a link, version 1 ones are
still read, and the dispatch service's links are the evidence service's own."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from pathlib import Path

from core.records import Alert, Case, CaseEvent, CaseEventType, Evidence, EvidenceKind
from core.signed_urls import verify
from pipeline.case_table import CaseTable
from pipeline.evidence_links import EvidenceLinks, EvidenceLinksConfig
from tests.support.factories import alert, at

SHA = "ab" * 32
SECRET = secrets.token_hex(32).encode()


def snapshot(seconds: float = 10) -> Evidence:
    return Evidence(
        kind=EvidenceKind.SNAPSHOT,
        path="/var/evidence/cam-1/alert-1.jpg",
        sha256=SHA,
        media_type="image/jpeg",
        captured_at=at(seconds),
        size=12345,
    )


def opened() -> CaseEvent:
    raised = alert(10).model_copy(update={"evidence": (snapshot(),)})
    event = CaseTable().add(raised)
    assert event is not None and event.type is CaseEventType.OPENED
    return event


def test_a_version_1_alert_and_case_event_are_still_read() -> None:
    event = opened()
    doc = json.loads(event.model_dump_json())
    doc["schema_version"] = 1
    doc["case"]["schema_version"] = 1
    for ev in doc["case"]["evidence"]:
        del ev["size"], ev["url"]  # what version 1 wrote
    old = CaseEvent.model_validate(doc)
    assert old.case.evidence[0].path == snapshot().path and old.case.evidence[0].url is None
    v1_alert = json.loads(
        alert(10).model_copy(update={"evidence": (snapshot(),)}).model_dump_json()
    )
    v1_alert["schema_version"] = 1
    for ev in v1_alert["evidence"]:
        del ev["size"], ev["url"]
    assert Alert.model_validate(v1_alert).evidence[0].sha256 == SHA
    assert opened().schema_version == 3 and opened().case.schema_version == 3


def test_links_are_signed_for_the_evidence_service_and_the_same_on_every_publish(
    tmp_path: Path,
) -> None:
    (tmp_path / "key").write_bytes(SECRET)
    cfg = EvidenceLinksConfig(
        base_url="https://centre.example/ev/", secret_file=str(tmp_path / "key")
    )
    links = EvidenceLinks.from_config(cfg)
    assert links is not None
    event = opened()
    on_wire = links.event(event)
    (ev,) = on_wire.case.evidence
    assert ev.path == "" and ev.size == 12345 and ev.sha256 == SHA
    assert ev.url is not None and ev.url.startswith(f"https://centre.example/ev/v1/evidence/{SHA}?")
    assert links.event(event) == on_wire  # republished later: the same bytes
    query = dict(p.split("=", 1) for p in ev.url.split("?", 1)[1].split("&"))
    captured = ev.captured_at.timestamp()
    assert verify(SECRET, SHA, query["exp"], query["sig"], now=captured + 29 * 86400) is None
    assert verify(SECRET, SHA, query["exp"], query["sig"], now=captured + 31 * 86400) == "expired"
    assert verify(SECRET, "cd" * 32, query["exp"], query["sig"], now=captured) == "bad signature"
    assert event.case.evidence[0].path  # the stored event keeps the edge path


def test_no_base_url_no_links() -> None:
    assert EvidenceLinks.from_config(EvidenceLinksConfig()) is None
    assert Case.model_fields["schema_version"].default == 3
    assert timedelta(days=EvidenceLinksConfig().ttl_days) == timedelta(days=30)
