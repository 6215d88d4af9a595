"""JSON Schemas of the wire records, generated from the pydantic models."""

from __future__ import annotations

import json

from core.records import WIRE_RECORDS

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_documents() -> dict[str, str]:
    """File name -> JSON text, for every wire record."""
    docs = {}
    for name, model in WIRE_RECORDS.items():
        schema = model.model_json_schema(mode="serialization")
        schema = {"$schema": SCHEMA_DIALECT, "$id": f"streetwatch/{name}.v1.json", **schema}
        docs[f"{name}.v1.json"] = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    return docs
