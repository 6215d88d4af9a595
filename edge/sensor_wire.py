"""What crosses the pipes between the edge worker and its two sensor processes.

These records are the only things sent down the pipes of
:mod:`edge.sensor_process`, one record per message (a batch of MQTT
messages is one message: a :class:`MqttBatch`). Both ends are the
same code version (the children are spawned from the worker, never
installed apart), so the records are pickled as they are: no schema
version, no JSON, no validation on receipt. A receiver still dispatches on
the record's type and logs one it does not expect.

The pipes and what goes down each:

- worker -> intake (control): :data:`IntakeCommand`;
- intake -> worker (control): :data:`IntakeReply`;
- intake -> rules: :data:`IntakeToRules` (batches, then :class:`EndOfStream`);
- rules -> intake: :data:`RulesToIntake` (a batch's outputs are in the outbox:
  acknowledge its messages to the broker);
- rules -> worker: :data:`RulesReply`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from core.records import Alert, DeadLetter


@dataclass(frozen=True, slots=True)
class MqttBatch:
    """MQTT messages as taken off the socket, in arrival order: message ``i`` is
    ``topics[i]``, ``payloads[i]``, ``received_at[i]`` (epoch seconds).

    Columns of plain tuples, not a record per message: a batch of 512 pickles
    about ten times faster so, and the intake process is short of CPU.
    """

    seq: int  # the intake's count of batches: Durable(seq) acknowledges this one
    topics: tuple[str, ...]
    payloads: tuple[bytes, ...]
    received_at: tuple[float, ...]

    def __post_init__(self) -> None:
        if not len(self.topics) == len(self.payloads) == len(self.received_at):
            raise ValueError("an MqttBatch needs as many topics, payloads and times")

    def __len__(self) -> int:
        return len(self.topics)


@dataclass(frozen=True, slots=True)
class Durable:
    """Rules to intake: what batch ``seq`` caused (alerts, dead letters) is committed to
    the outbox, so its messages may be acknowledged to the broker."""

    seq: int


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """The intake stopped: no batch follows."""


@dataclass(frozen=True, slots=True)
class Started:
    """The intake's MQTT client is running (it may not be subscribed yet)."""


@dataclass(frozen=True, slots=True)
class Ready:
    """The rules process loaded its devices and waits for batches."""

    devices: int


@dataclass(frozen=True, slots=True)
class Failed:
    """A process could not start; it exits after sending this."""

    traceback: str


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The intake's MQTT client holds its subscriptions."""


@dataclass(frozen=True, slots=True)
class MqttState:
    """The intake's MQTT client now (sent when it changes, at most once a second),
    for the worker's metrics and readiness."""

    connected: bool
    messages: int
    connects: int
    disconnects: int
    connect_failures: int
    refusals: int
    redelivered: int


@dataclass(frozen=True, slots=True)
class Output:
    """What the rules made of one batch, or of passing time."""

    readings: int  # messages taken in as readings (0 for a tick)
    alerts: tuple[Alert, ...]  # in the outbox already; raised ones carry their chart
    dead: tuple[DeadLetter, ...]  # in the outbox already


@dataclass(frozen=True, slots=True)
class IntakeLost:
    """The rules process saw the intake's pipe close without an end of stream."""


@dataclass(frozen=True, slots=True)
class Stopped:
    """A process stopped cleanly after this many MQTT messages."""

    messages: int


@dataclass(frozen=True, slots=True)
class Stop:
    """Worker to intake: stop reading, send what you hold, then end the stream."""


IntakeCommand: TypeAlias = Stop
IntakeReply: TypeAlias = Started | Failed | Subscribed | MqttState | Stopped
IntakeToRules: TypeAlias = MqttBatch | EndOfStream
RulesToIntake: TypeAlias = Durable
RulesReply: TypeAlias = Ready | Failed | Output | IntakeLost | Stopped
