"""The one-line description of a case event printed by `streetwatch tail` and the demo."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from core.records import AlertPhase, SensorReading, SourceKind
from pipeline.case_table import CaseTable
from pipeline.dispatch_tail import describe
from tests.support.factories import alert, at

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_a_state_only_reading_and_a_clear_are_described() -> None:
    table = CaseTable()
    smoke = SensorReading(device_id="sm-1", device_type="smoke", state="alarm", received_at=at(10))
    raised = alert(10, source="sm-1", category="smoke_alarm", kind=SourceKind.SENSOR)
    raised = raised.model_copy(update={"readings": (smoke,)})
    opened = table.add(raised)
    assert opened is not None
    line = describe(opened, SHANGHAI)
    assert "smoke_alarm" in line and "reading alarm from sm-1" in line
    assert "派出所 (urgency 1)" in line  # routed to the owner
    assert "cleared" not in line
    clear = raised.model_copy(
        update={"phase": AlertPhase.CLEARED, "alert_id": "c", "observed_at": at(20)}
    )
    cleared = table.add(clear)
    assert cleared is not None and "cleared " in describe(cleared, SHANGHAI)
