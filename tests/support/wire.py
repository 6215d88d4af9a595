"""Validating messages against the committed JSON Schemas (docs/schemas)."""

from __future__ import annotations

import json
from functools import cache

import jsonschema

from streetwatch.schemas import schema_version
from tests.support.paths import ROOT


@cache
def validator_for(record: str) -> jsonschema.Draft202012Validator:
    path = ROOT / "docs" / "schemas" / f"{record}.v{schema_version(record)}.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def assert_valid(record: str, message: bytes) -> None:
    errors = list(validator_for(record).iter_errors(json.loads(message)))
    assert not errors, f"{record} message violates its schema: {errors[0].message}"
