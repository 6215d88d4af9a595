"""The base of every configuration section, shared by the plugins that define their own."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Point = Annotated[list[float], Field(min_length=2, max_length=2, description="[x, y]")]


class Section(BaseModel):
    """Strict: unknown keys are errors and values are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Problem = tuple[str, str]  # (field path, what is wrong)


class ConfigError(Exception):
    """A configuration file that cannot be used; ``problems`` name each field."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = [f"  {path}: {msg}" if path else f"  {msg}" for path, msg in self.problems]
        super().__init__(f"invalid config {source}:\n" + "\n".join(lines))
