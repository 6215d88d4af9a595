from __future__ import annotations

import json
from datetime import UTC, datetime

import jsonschema

from core.records import (
    Alert,
    CaseEventType,
    Evidence,
    EvidenceKind,
    Place,
    SensorReading,
    SourceKind,
)
from pipeline.cloudevents import case_event_bytes, parse_case_event
from streetwatch.config import ALL_SECTIONS
from streetwatch.config_docs import SECTIONS
from streetwatch.generated_docs import stale_docs
from streetwatch.schemas import schema_documents, schema_version
from tests.support.cases import event, make_case
from tests.support.paths import ROOT
from tests.support.wire import validator_for


def test_committed_schemas_and_config_reference_match_the_code() -> None:
    assert stale_docs(ROOT / "docs") == []


def test_the_config_reference_has_every_section_of_a_config_file() -> None:
    # "[[cameras.rules]] type = ..." documents a part of [[cameras]]
    documented = {title.lstrip("[").split("]")[0].split(".")[0] for title, _ in SECTIONS}
    assert documented == ALL_SECTIONS


def test_a_case_events_dataschema_is_the_schema_of_its_version() -> None:
    new = event(make_case(), "a1", CaseEventType.OPENED)
    assert new.schema_version == schema_version("case_event") == 3
    for version in (1, 2, 3):
        ev = new.model_copy(update={"schema_version": version})  # an older one republished
        message = case_event_bytes(ev, "test")
        cloud = json.loads(message)
        assert cloud["dataschema"] == f"streetwatch/case_event.v{version}.json"
        path = ROOT / "docs" / "schemas" / cloud["dataschema"].removeprefix("streetwatch/")
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert schema["$id"] == cloud["dataschema"]
        assert parse_case_event(message) == ev
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(cloud["data"]))
    assert errors == []  # the newest event fits the schema it names


def test_every_wire_record_has_a_valid_draft_2020_12_schema() -> None:
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
