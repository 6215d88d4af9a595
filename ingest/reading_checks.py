"""Checks on a parsed reading that need a device's history or the receive time.

In order, a reading is rejected (:class:`~ingest.sensor_payload.BadReading`) as

1. ``unknown_device``: ``known_devices`` was given and does not hold its id;
2. ``clock_skew``: its device time is more than ``max_skew_s`` ahead of the
   time it was received, or more than ``max_age_s`` behind it;
3. ``duplicate``: the device sent this reading already -- a recent reading
   had the same ``seq`` (and the same device time, or either had none: a
   counter that restarted after a reboot is not a duplicate), or the same
   device time, value and state;
4. ``out_of_order``: its device time is older than the device's newest
   accepted reading by more than ``reorder_tolerance_s``.

Readings without a device time skip 2, the time part of 3, and 4. Memory is
bounded: ``recent`` readings remembered per device, ``max_devices`` devices
(the least recently seen is forgotten first). Time is never read from the
clock: only the reading's own ``received_at`` and ``device_time`` are used.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container

from pydantic import Field

from core.config import Section
from core.records import SensorReading
from ingest.sensor_payload import BadReading, RejectReason


class ReadingChecksConfig(Section):
    """Limits for duplicate, out-of-order and clock-skew checks."""

    max_skew_s: float = Field(
        default=300.0, ge=0, description="Device time may run this far ahead of receive time"
    )
    max_age_s: float = Field(
        default=86400.0, ge=0, description="Device time may lag this far behind receive time"
    )
    reorder_tolerance_s: float = Field(
        default=0.0, ge=0, description="A reading this much older than the newest one still passes"
    )
    recent: int = Field(
        default=32, ge=1, le=4096, description="Readings remembered per device for duplicates"
    )
    max_devices: int = Field(
        default=100_000, ge=1, description="Devices remembered; the least recently seen go first"
    )


class _Device:
    __slots__ = ("fingerprints", "newest", "seqs")

    def __init__(self) -> None:
        self.newest = float("-inf")  # newest accepted device time, epoch s
        self.seqs: dict[int, float | None] = {}  # seq -> device time; insertion ordered
        self.fingerprints: dict[tuple[float, float | None, str | None], None] = {}


class ReadingChecks:
    def __init__(
        self,
        cfg: ReadingChecksConfig | None = None,
        known_devices: Container[str] | None = None,
    ) -> None:
        self.cfg = cfg or ReadingChecksConfig()
        self.known_devices = known_devices
        self._devices: OrderedDict[str, _Device] = OrderedDict()

    def __len__(self) -> int:
        """Devices currently remembered."""
        return len(self._devices)

    def check(self, reading: SensorReading) -> None:
        """Accept the reading (and remember it) or raise :class:`BadReading`."""
        device_id = reading.device_id
        if self.known_devices is not None and device_id not in self.known_devices:
            raise BadReading(RejectReason.UNKNOWN_DEVICE, f"no device {device_id!r} registered")
        cfg = self.cfg
        t: float | None = None
        if reading.device_time is not None:
            t = reading.device_time.timestamp()
            lag = reading.received_at.timestamp() - t
            if lag < -cfg.max_skew_s:
                raise BadReading(
                    RejectReason.CLOCK_SKEW,
                    f"device time {reading.device_time.isoformat()} is {-lag:.0f} s ahead of "
                    f"the receive time (max {cfg.max_skew_s:g} s)",
                )
            if lag > cfg.max_age_s:
                raise BadReading(
                    RejectReason.CLOCK_SKEW,
                    f"device time {reading.device_time.isoformat()} is {lag:.0f} s behind "
                    f"the receive time (max {cfg.max_age_s:g} s)",
                )
        device = self._devices.get(device_id)
        if device is None:
            device = self._remember(device_id)
        else:
            self._devices.move_to_end(device_id)
        seq = reading.seq
        if seq is not None and seq in device.seqs:
            before = device.seqs[seq]
            if t is None or before is None or before == t:
                raise BadReading(RejectReason.DUPLICATE, f"seq {seq} seen already")
        if t is not None:
            fingerprint = (t, reading.value, reading.state)
            if fingerprint in device.fingerprints:
                raise BadReading(
                    RejectReason.DUPLICATE,
                    f"same device time, value and state seen already ({reading.device_time})",
                )
            if t < device.newest - cfg.reorder_tolerance_s:
                raise BadReading(
                    RejectReason.OUT_OF_ORDER,
                    f"device time {reading.device_time} is {device.newest - t:.3f} s older than "
                    f"the newest accepted reading (tolerance {cfg.reorder_tolerance_s:g} s)",
                )
        if seq is not None:
            device.seqs.pop(seq, None)
            device.seqs[seq] = t
            if len(device.seqs) > cfg.recent:
                del device.seqs[next(iter(device.seqs))]
        if t is not None:
            device.newest = max(device.newest, t)
            device.fingerprints[(t, reading.value, reading.state)] = None
            if len(device.fingerprints) > cfg.recent:
                del device.fingerprints[next(iter(device.fingerprints))]

    def forget(self, device_id: str) -> None:
        """Drop a device's history (e.g. when it is removed from the registry)."""
        self._devices.pop(device_id, None)

    def _remember(self, device_id: str) -> _Device:
        device = _Device()
        self._devices[device_id] = device
        if len(self._devices) > self.cfg.max_devices:
            self._devices.popitem(last=False)
        return device
