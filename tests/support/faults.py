"""The fault table: each fault test adds one row; pytest prints the table at the end.

A row says what was done to which real process, how many alerts were raised,
how many cases reached the dispatch topic, how many alerts were lost or
folded twice, and how long the system took to deliver everything once the
fault ended.
"""

from __future__ import annotations

from dataclasses import dataclass

HEADER = ("fault", "alerts raised", "cases delivered", "lost", "duplicated", "recovery s")


@dataclass(frozen=True)
class FaultRow:
    fault: str
    alerts_raised: int
    cases_delivered: int
    lost: int
    duplicated: int
    recovery_s: float

    def cells(self) -> tuple[str, ...]:
        return (
            self.fault,
            str(self.alerts_raised),
            str(self.cases_delivered),
            str(self.lost),
            str(self.duplicated),
            f"{self.recovery_s:.1f}",
        )


ROWS: list[FaultRow] = []


def record(row: FaultRow) -> FaultRow:
    """Add ``row`` to the table printed after the run, and return it."""
    ROWS.append(row)
    return row


def table(rows: list[FaultRow]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join("---" for _ in HEADER) + "|",
    ]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)
