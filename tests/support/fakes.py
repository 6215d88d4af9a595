"""Stand-ins for the parts of the edge a test is not about."""

from __future__ import annotations

from collections.abc import Sequence

from core.records import Alert


class MemoryAlertSink:
    """An ``edge.alert_sink.AlertSink`` that keeps every alert in ``alerts``, in order.

    For tests about something else than publishing (the detections, the evidence,
    what was rejected). To keep alerts while still sending them on, wrap the real
    sink in ``edge.alert_sink.RecordingSink`` instead.
    """

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def start(self) -> None:
        return None

    async def publish(self, alerts: Sequence[Alert]) -> None:
        self.alerts.extend(alerts)

    async def stop(self) -> None:
        return None
