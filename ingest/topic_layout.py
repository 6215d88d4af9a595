"""The MQTT topic layout of neuron sensors, configurable.

A layout is a template of ``/``-separated levels; a level is either literal
text or exactly one of the placeholders ``{town}``, ``{type}`` and
``{device_id}``. ``{type}`` and ``{device_id}`` are required, ``{town}`` is
optional (the town is then empty). The default is
``neuron/{town}/{type}/{device_id}/up``, whose subscription filter is
``neuron/+/+/+/up``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.sensor_payload import BadReading, RejectReason

DEFAULT_TOPIC_TEMPLATE = "neuron/{town}/{type}/{device_id}/up"
PLACEHOLDERS = ("town", "type", "device_id")
MAX_TOPIC_CHARS = 1024


@dataclass(frozen=True, slots=True)
class TopicParts:
    town: str
    device_type: str
    device_id: str


class TopicLayout:
    """Parses topics of one template; ``ValueError`` if the template is not valid."""

    def __init__(self, template: str = DEFAULT_TOPIC_TEMPLATE) -> None:
        self.template = template
        levels = template.split("/")
        slots: dict[str, int] = {}
        literals: list[tuple[int, str]] = []
        for i, level in enumerate(levels):
            if level.startswith("{") and level.endswith("}"):
                name = level[1:-1]
                if name not in PLACEHOLDERS:
                    raise ValueError(
                        f"topic template {template!r}: unknown placeholder {level!r} "
                        f"(use {{town}}, {{type}}, {{device_id}})"
                    )
                if name in slots:
                    raise ValueError(f"topic template {template!r}: {level} appears twice")
                slots[name] = i
            elif not level or any(c in level for c in "{}+#\x00"):
                raise ValueError(
                    f"topic template {template!r}: level {i + 1} must be literal text or one "
                    "placeholder, without + # { } and not empty"
                )
            else:
                literals.append((i, level))
        if template.startswith("$"):
            raise ValueError(f"topic template {template!r}: topics starting with $ are reserved")
        for needed in ("type", "device_id"):
            if needed not in slots:
                raise ValueError(f"topic template {template!r} needs {{{needed}}}")
        self._levels = len(levels)
        self._literals = tuple(literals)
        self._town = slots.get("town")
        self._type = slots["type"]
        self._device_id = slots["device_id"]
        self.filter = "/".join("+" if i in slots.values() else lv for i, lv in enumerate(levels))

    def parse(self, topic: str) -> TopicParts:
        """The topic's parts, or :class:`BadReading` (``bad_topic``) if it does not fit."""
        parts = topic.split("/", self._levels) if len(topic) <= MAX_TOPIC_CHARS else ()
        if len(parts) != self._levels or "+" in topic or "#" in topic:
            raise BadReading(RejectReason.BAD_TOPIC, self._expected(topic))
        for i, literal in self._literals:
            if parts[i] != literal:
                raise BadReading(RejectReason.BAD_TOPIC, self._expected(topic))
        town = "" if self._town is None else parts[self._town]
        device_type, device_id = parts[self._type], parts[self._device_id]
        if not device_type or not device_id or (self._town is not None and not town):
            raise BadReading(RejectReason.BAD_TOPIC, self._expected(topic) + " (empty level)")
        return TopicParts(town, device_type, device_id)

    def topic(self, town: str, device_type: str, device_id: str) -> str:
        """The topic a device publishes on (for simulators and tests)."""
        return self.template.format(town=town, type=device_type, device_id=device_id)

    def _expected(self, topic: str) -> str:
        return f"expected {self.template}: {topic[:120]!r}"

    def __repr__(self) -> str:
        return f"TopicLayout({self.template!r})"
