"""Exponential backoff with jitter, for reconnecting to cameras.

The n-th consecutive failure waits ``min(max_s, min_s * factor**n)`` seconds
minus a random share of up to ``jitter`` of that (so a delay never exceeds
``max_s``). The jitter spreads reconnects out: after a network outage that
cut many cameras at once, they do not all knock on the recorder again in the
same instant. The random source is injectable, so a seeded
``random.Random`` makes the schedule reproducible in tests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    min_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2  # share of the delay that may be taken off at random, 0..1

    def __post_init__(self) -> None:
        if not 0 < self.min_s <= self.max_s:
            raise ValueError(f"backoff needs 0 < min_s <= max_s, got {self.min_s}, {self.max_s}")
        if self.factor < 1:
            raise ValueError(f"backoff factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff jitter must be within 0..1, got {self.jitter}")

    def bounds(self, failures: int) -> tuple[float, float]:
        """The range a delay after ``failures`` earlier consecutive failures falls in."""
        base = self.min_s
        for _ in range(failures):
            base = min(self.max_s, base * self.factor)
            if base == self.max_s:
                break
        return base * (1 - self.jitter), base


class Backoff:
    """The delays of one retry loop; ``reset()`` after a success."""

    def __init__(self, policy: BackoffPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.rng = rng or random.Random()
        self.failures = 0  # consecutive failures so far

    def next_delay(self) -> float:
        """Count one more failure and return how long to wait before retrying."""
        low, high = self.policy.bounds(self.failures)
        self.failures += 1
        return high - (high - low) * self.rng.random()

    def reset(self) -> None:
        self.failures = 0
