"""An in-process case table: the dispatch worker's folding without Kafka.

Used by ``streetwatch replay`` to turn recorded footage into cases on the
spot, with exactly the logic of the dispatch worker (:func:`pipeline.dedup.fold`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.dedup import case_key, fold
from streetwatch.records import Alert, Case, CaseEvent


class CaseTable:
    def __init__(self) -> None:
        self.cases: dict[str, Case] = {}
        self.events: list[CaseEvent] = []

    def add(self, alert: Alert) -> CaseEvent | None:
        key = case_key(alert.category, alert.place.place_id)
        event = fold(self.cases.get(key), alert, datetime.now(UTC))
        if event is not None:
            self.cases[key] = event.case
            self.events.append(event)
        return event
