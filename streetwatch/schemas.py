"""JSON Schemas of the wire records, generated from the pydantic models."""

from __future__ import annotations

import json
import typing

from core.records import WIRE_RECORDS

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_documents() -> dict[str, str]:
    """File name -> JSON text, for every wire record."""
    docs = {}
    for name, model in WIRE_RECORDS.items():
        file = f"{name}.v{schema_version(name)}.json"
        schema = model.model_json_schema(mode="serialization")
        schema = {"$schema": SCHEMA_DIALECT, "$id": f"streetwatch/{file}", **schema}
        docs[file] = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    return docs


def schema_version(record: str) -> int:
    """The version a record is written at (the newest its ``schema_version`` allows).

    The schema of an older version stays in docs/schemas as it was."""
    field = WIRE_RECORDS[record].model_fields["schema_version"]
    return max(int(v) for v in typing.get_args(field.annotation))
