"""Enforcement hours: when a rule applies, in the camera's local time.

A night market may allow stalls from 17:30, so an illegal-stall rule there
is active ``["06:00-17:30"]``. Ranges may cross midnight (``"22:00-06:00"``).
An empty list means always. Times are local to the configured time zone
(Asia/Shanghai by default), never the box's system clock zone.
"""

from __future__ import annotations

import re
from datetime import datetime, time
from zoneinfo import ZoneInfo

_RANGE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


def parse_range(text: str) -> tuple[time, time]:
    """``"HH:MM-HH:MM"`` to two times; raises ValueError naming the text."""
    m = _RANGE.match(text.strip())
    if m is None:
        raise ValueError(f"'{text}' is not HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h2 == 24 and m2 != 0:
        raise ValueError(f"'{text}': 24 is only valid as 24:00")
    start = time(h1, m1)
    end = time(23, 59, 59, 999999) if h2 == 24 else time(h2, m2)
    if start == end:
        raise ValueError(f"'{text}' is empty")
    return start, end


class ActiveHours:
    def __init__(self, ranges: list[str], tz: str) -> None:
        self.ranges = [parse_range(r) for r in ranges]
        self.tz = ZoneInfo(tz)

    def active(self, at: datetime) -> bool:
        if not self.ranges:
            return True
        local = at.astimezone(self.tz).time()
        for start, end in self.ranges:
            if start < end:
                if start <= local < end:
                    return True
            elif local >= start or local < end:  # crosses midnight
                return True
        return False
