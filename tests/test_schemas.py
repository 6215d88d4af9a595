from __future__ import annotations

from datetime import UTC, datetime

import jsonschema

from core.records import (
    Alert,
    Evidence,
    EvidenceKind,
    Place,
    SensorReading,
    SourceKind,
)
from streetwatch.generated_docs import stale_docs
from streetwatch.schemas import schema_documents
from tests.support.paths import ROOT
from tests.support.wire import validator_for


def test_committed_schemas_and_config_reference_match_the_code() -> None:
    assert stale_docs(ROOT / "docs") == []


def test_every_wire_record_has_a_valid_draft_2020_12_schema() -> None:
    import json

    for text in schema_documents().values():
        jsonschema.Draft202012Validator.check_schema(json.loads(text))


def test_schema_rejects_what_the_model_rejects() -> None:
    now = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    alert = Alert(
        alert_id="alert-1",
        category="illegal_parking",
        place=Place(place_id="bay-1"),
        source_kind=SourceKind.CAMERA,
        source_id="cam-1",
        rule_id="r1",
        rule_text="car still",
        first_seen=now,
        observed_at=now,
        confidence=0.5,
        evidence=(
            Evidence(
                kind=EvidenceKind.SNAPSHOT,
                path="/x.jpg",
                sha256="0" * 64,
                media_type="image/jpeg",
                captured_at=now,
            ),
        ),
    )
    validator = validator_for("alert")
    good = alert.model_dump(mode="json")
    assert list(validator.iter_errors(good)) == []
    bad = {**good, "confidence": 2.0}
    assert list(validator.iter_errors(bad)), "confidence above 1 must be rejected"
    extra = {**good, "surprise": 1}
    assert list(validator.iter_errors(extra)), "unknown fields must be rejected"
    reading = SensorReading(device_id="wl-1", device_type="water_level", value=1.0, received_at=now)
    assert list(validator_for("sensor_reading").iter_errors(reading.model_dump(mode="json"))) == []
