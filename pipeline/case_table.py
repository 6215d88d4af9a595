"""An in-process case table: the dispatch worker's folding without Kafka.

Used by ``streetwatch replay`` to turn recorded footage into cases on the
spot, with exactly the engine of the dispatch worker
(:class:`pipeline.case_engine.CaseEngine`) over an in-memory SQLite store.
"""

from __future__ import annotations

from core.records import Alert, Case, CaseEvent
from pipeline.case_engine import CaseEngine
from pipeline.config import DispatchServiceConfig
from pipeline.store import open_store


class CaseTable:
    def __init__(self, cfg: DispatchServiceConfig | None = None) -> None:
        self.engine = CaseEngine.from_config(
            cfg or DispatchServiceConfig(), open_store("sqlite://:memory:")
        )
        self.engine.coalesce_s = 0.0  # a replay shows every change at once
        self.cases: dict[str, Case] = {}  # case key -> newest case
        self.events: list[CaseEvent] = []

    def add(self, alert: Alert) -> CaseEvent | None:
        events = self.engine.on_alerts([alert])
        for event in events:
            self.cases[event.case.case_key] = event.case
        self.events.extend(events)
        return events[-1] if events else None
