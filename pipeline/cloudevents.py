"""Case events on the dispatch stream, in a CloudEvents 1.0 JSON envelope.

Structured content mode: the message value is one JSON object with the
CloudEvents attributes and the :class:`CaseEvent` as ``data``. ``id`` is the
case event's id (case id and version), so a consumer that dedupes on the
CloudEvents ``id`` sees every change once however often it is delivered.
``dataschema`` names the JSON Schema (``docs/schemas/``) of the event's own
``schema_version``.
"""

from __future__ import annotations

import json
from collections import OrderedDict

from pydantic import ValidationError

from core.records import CaseEvent

SPEC_VERSION = "1.0"
TYPE_PREFIX = "cn.streetwatch.case."
#: ``dataschema`` per ``schema_version``: the ``$id`` of that version's JSON Schema
DATA_SCHEMA = "streetwatch/case_event.v{version}.json"


_JSON_MEMO: OrderedDict[int, tuple[CaseEvent, str]] = OrderedDict()
_JSON_MEMO_SIZE = 8192


def event_json(event: CaseEvent) -> str:
    """The event as JSON, serialised once for both the case store and the envelope.

    Keyed by object identity (the memo holds the event, so the identity cannot
    be reused while the entry lives): a different event with the same id,
    folded again after a conflict, is serialised afresh.
    """
    hit = _JSON_MEMO.get(id(event))
    if hit is not None and hit[0] is event:
        return hit[1]
    text = event.model_dump_json()
    _JSON_MEMO[id(event)] = (event, text)
    if len(_JSON_MEMO) > _JSON_MEMO_SIZE:
        _JSON_MEMO.popitem(last=False)
    return text


class EnvelopeError(ValueError):
    """A dispatch-stream message that is not a streetwatch case event."""


def attributes(event: CaseEvent, source: str) -> dict[str, object]:
    """The CloudEvents attributes of a case event (all but ``data``)."""
    return {
        "specversion": SPEC_VERSION,
        "id": event.event_id,
        "source": source,
        "type": TYPE_PREFIX + event.type.value,
        "subject": event.case_id,
        "time": event.emitted_at.isoformat(),
        "datacontenttype": "application/json",
        "dataschema": DATA_SCHEMA.format(version=event.schema_version),
    }


def case_event_bytes(event: CaseEvent, source: str) -> bytes:
    """The CloudEvent as JSON: the attributes, and the event (serialised once, see
    :func:`event_json`) as ``data``."""
    head = json.dumps(attributes(event, source), ensure_ascii=False)
    return f'{head[:-1]}, "data": {event_json(event)}}}'.encode()


def parse_case_event(raw: bytes) -> CaseEvent:
    """The case event inside a CloudEvent; :class:`EnvelopeError` says what is wrong."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EnvelopeError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise EnvelopeError("not a JSON object")
    if doc.get("specversion") != SPEC_VERSION:
        raise EnvelopeError(f"specversion {doc.get('specversion')!r}, expected {SPEC_VERSION}")
    kind = doc.get("type")
    if not isinstance(kind, str) or not kind.startswith(TYPE_PREFIX):
        raise EnvelopeError(f"type {kind!r} is not a streetwatch case event")
    try:
        event = CaseEvent.model_validate(doc.get("data"))
    except ValidationError as exc:
        err = exc.errors()[0]
        raise EnvelopeError(f"data: {err['loc']}: {err['msg']}") from None
    if doc.get("id") != event.event_id:
        raise EnvelopeError(f"id {doc.get('id')!r} differs from the event's {event.event_id!r}")
    return event
