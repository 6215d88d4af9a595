"""Suppressions at the edge: what reviewers told a camera to stop reporting.

The review workbench publishes, per camera, the whole set of live
suppressions (:class:`~core.records.CameraSuppressions`) on the compacted
suppression topic (``[kafka] suppression_topic``), keyed by camera id.

- :class:`SuppressionFeed` (an asyncio task of the edge worker) reads that
  topic from its beginning, every partition, with no consumer group, for as
  long as the worker runs. It keeps the messages of this box's cameras and
  replaces what :class:`SuppressionBook` holds for the camera; a message
  whose ``revision`` is not above the one held changes nothing. A message
  that cannot be used (not JSON, not the record, hours that do not parse, a
  suppression of another camera) is logged with what was wrong and counted
  in :attr:`SuppressionFeed.rejects`, never fatal. With Kafka down the
  worker starts all the same: the feed retries in the background with
  backoff (0.5 s doubling to 30 s), and until a message arrives the cameras
  run with what the book holds (nothing, after a start). It reads the topic
  again from its beginning after every reconnect; revisions make that
  harmless.
- Camera threads read the book on every analysed frame
  (:meth:`SuppressionBook.live`) and drop, per place, the detections a
  suppression covers (:func:`suppress`) before the rules of the zones on
  that place see them. A detection is suppressed for place P when it stands
  in one of the camera's zones on P and a live suppression of P (``now``
  before its ``expires_at`` and, if it has ``hours``, within them in the
  camera's time zone) names its label (or no label: every class) and, for a
  mask, its foot point lies in the mask's polygon, scaled from fractions to
  the frame's pixels. "Stands in" is judged as zones judge it, by the foot
  point (bottom centre of the box). Rules of the same camera on another place still see
  the object. Each dropped detection is counted per suppression
  (:class:`Suppressed`), never dropped silently.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from core.kafka import KafkaConfig, client_kwargs
from core.records import CameraSuppressions, Suppression, SuppressionKind
from detectors.detections import Detections
from edge.schedule import ActiveHours
from edge.zones import Zone
from ingest.backoff import Backoff, BackoffPolicy

log = logging.getLogger("streetwatch.edge")

RETRY = BackoffPolicy(min_s=0.5, max_s=30.0)  # reconnecting to the suppression topic
LOG_EVERY_S = 60.0  # event=suppressed: at most one line per suppression this often


@dataclass(frozen=True)
class LiveSuppression:
    """A suppression ready to test detections against (its hours in the camera's zone)."""

    record: Suppression
    hours: ActiveHours
    labels: frozenset[str]

    @classmethod
    def of(cls, s: Suppression, timezone: str) -> LiveSuppression:
        """Raise ValueError when its hours do not parse (e.g. ``08:00-08:00``)."""
        return cls(s, ActiveHours(list(s.hours), timezone), frozenset(s.labels))

    def applies_at(self, now: datetime) -> bool:
        """Not expired, and within its hours if it has any."""
        return self.record.active(now) and self.hours.active(now)

    def covers(self, dets: Detections, size: tuple[int, int]) -> npt.NDArray[np.bool_]:
        """Which of ``dets`` it hides (time aside); ``size`` = the frame's (width, height)."""
        if self.labels:
            wanted = np.array([lbl in self.labels for lbl in dets.labels], dtype=bool)
            hit = wanted[dets.class_ids]
        else:
            hit = np.ones(len(dets), dtype=bool)
        if self.record.kind is SuppressionKind.MASK and hit.any():
            width, height = size
            polygon = [(x * width, y * height) for x, y in self.record.polygon]
            hit &= Zone(self.record.suppression_id, polygon).anchored_in(dets)
        return hit


@dataclass(frozen=True)
class Suppressed:
    """What :func:`suppress` kept per place, and what it dropped."""

    kept: dict[str, Detections]  # place id -> the detections its rules see
    dropped: Counter[tuple[str, SuppressionKind]]  # (suppression id, kind) -> detections
    labels: dict[str, str]  # suppression id -> the label of one detection it dropped


def suppress(
    live: Sequence[LiveSuppression],
    places: Mapping[str, Sequence[Zone]],
    now: datetime,
    dets: Detections,
    size: tuple[int, int],
) -> Suppressed:
    """The detections the rules of each place see at ``now``, and what was dropped.

    ``places``: place id -> the camera's rules' zones on it; ``size``: the
    analysed frame's (width, height). Only detections standing in a zone of
    the place are dropped (the rules there judge no other). A detection two
    suppressions of one place cover is counted under the first of them (in
    the message's order).
    """
    kept: dict[str, Detections] = {}
    dropped: Counter[tuple[str, SuppressionKind]] = Counter()
    labels: dict[str, str] = {}
    for place, zones in places.items():
        gone = np.zeros(len(dets), dtype=bool)
        inside: npt.NDArray[np.bool_] | None = None  # in a zone of the place, when needed
        for s in live:
            if s.record.place_id != place or not s.applies_at(now):
                continue
            hit = s.covers(dets, size) & ~gone
            if not hit.any():
                continue
            if inside is None:
                inside = np.zeros(len(dets), dtype=bool)
                for zone in zones:
                    inside |= zone.anchored_in(dets)
            hit &= inside
            n = int(hit.sum())
            if n:
                dropped[(s.record.suppression_id, s.record.kind)] += n
                labels.setdefault(s.record.suppression_id, dets.label(int(np.flatnonzero(hit)[0])))
                gone |= hit
        kept[place] = dets[~gone] if gone.any() else dets
    return Suppressed(kept, dropped, labels)


class BookUpdate(StrEnum):
    APPLIED = "applied"
    STALE = "stale"  # revision not above the one held
    NOT_HERE = "not_here"  # a camera of another box


class SuppressionBook:
    """The live suppressions of this box's cameras; read by camera threads, written by the
    feed on the asyncio loop."""

    def __init__(self, timezones: Mapping[str, str]) -> None:
        """``timezones``: camera id -> its time zone (of the suppressions' hours)."""
        self.timezones = dict(timezones)
        self._lock = threading.Lock()
        self._held: dict[str, tuple[int, tuple[LiveSuppression, ...]]] = {}

    @property
    def cameras(self) -> frozenset[str]:
        return frozenset(self.timezones)

    def set_cameras(self, timezones: Mapping[str, str]) -> None:
        """A new camera list (a reload): what was held for removed cameras goes."""
        with self._lock:
            self.timezones = dict(timezones)
            for camera_id in list(self._held):
                if camera_id not in self.timezones:
                    del self._held[camera_id]

    def revision(self, camera_id: str) -> int:
        """The revision held for the camera; 0 for none."""
        with self._lock:
            return self._held.get(camera_id, (0, ()))[0]

    def update(self, msg: CameraSuppressions) -> BookUpdate:
        """Replace the camera's suppressions with ``msg``'s if it is newer.

        Raise ValueError (nothing changes) when a suppression belongs to another
        camera or its hours do not parse.
        """
        tz = self.timezones.get(msg.camera_id)
        if tz is None:
            return BookUpdate.NOT_HERE
        for s in msg.suppressions:
            if s.camera_id != msg.camera_id:
                raise ValueError(f"suppression {s.suppression_id} is for camera {s.camera_id}")
        live = tuple(LiveSuppression.of(s, tz) for s in msg.suppressions)
        with self._lock:
            if msg.revision <= self._held.get(msg.camera_id, (0, ()))[0]:
                return BookUpdate.STALE
            self._held[msg.camera_id] = (msg.revision, live)
        return BookUpdate.APPLIED

    def live(self, camera_id: str, now: datetime) -> tuple[LiveSuppression, ...]:
        """The camera's suppressions not expired at ``now`` (hours are :func:`suppress`'s)."""
        with self._lock:
            held = self._held.get(camera_id, (0, ()))[1]
        return tuple(s for s in held if s.record.active(now))


class RateLimit:
    """At most one yes per key every ``every_s`` seconds, counting what came between."""

    def __init__(self, every_s: float = LOG_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.every_s = every_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._since: Counter[str] = Counter()

    def add(self, key: str, n: int) -> int | None:
        """Count ``n`` for ``key``; when it is time for a yes, the count since the last one
        (this ``n`` included), else None."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            self._since[key] += n
            return None
        pending = self._since.pop(key, 0) + n
        # forget keys with nothing pending, or quiet for ten periods (a suppression that
        # ended): the maps hold recent keys only
        for old, t in list(self._last.items()):
            if now - t >= self.every_s and (not self._since[old] or now - t >= 10 * self.every_s):
                del self._last[old]
                self._since.pop(old, None)
        self._last[key] = now
        return pending


class SuppressionFeed:
    """Follows the suppression topic into a :class:`SuppressionBook` (see the module doc)."""

    def __init__(self, kafka: KafkaConfig, book: SuppressionBook, client_id: str = "") -> None:
        self.kafka = kafka
        self.book = book
        self.client_id = client_id or "streetwatch-suppressions"
        self.rejects: Counter[str] = Counter()  # unusable messages, per reason
        self.applied = 0

    def handle(self, key: bytes | None, value: bytes | None, where: str = "") -> BookUpdate | None:
        """One message off the topic: into the book, or logged and counted; None if rejected."""
        if key is not None and key.decode("utf-8", "replace") not in self.book.cameras:
            return BookUpdate.NOT_HERE  # another box's camera: not even parsed
        if value is None:
            self._reject("tombstone", where, "no value (a deleted key)")
            return None
        try:
            msg = CameraSuppressions.model_validate_json(value)
        except ValidationError as exc:
            json_error = any(e["type"] == "json_invalid" for e in exc.errors())
            detail = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '-'}: {e['msg']}" for e in exc.errors()
            )
            self._reject("not_json" if json_error else "bad_record", where, detail)
            return None
        if key is not None and key.decode("utf-8", "replace") != msg.camera_id:
            self._reject("key_mismatch", where, f"key {key!r}, camera {msg.camera_id}")
            return None
        held = self.book.revision(msg.camera_id)
        try:
            outcome = self.book.update(msg)
        except ValueError as exc:
            self._reject("bad_suppression", where, str(exc))
            return None
        if outcome is BookUpdate.APPLIED:
            self.applied += 1
            log.info(
                "event=suppressions camera=%s revision=%d count=%d",
                msg.camera_id,
                msg.revision,
                len(msg.suppressions),
            )
        elif outcome is BookUpdate.STALE:
            log.debug(
                "event=suppressions_stale camera=%s revision=%d held=%d",
                msg.camera_id,
                msg.revision,
                held,
            )
        return outcome

    def _reject(self, reason: str, where: str, detail: str) -> None:
        self.rejects[reason] += 1
        log.warning(
            "event=suppressions_rejected reason=%s at=%s count=%d detail=%.300s",
            reason,
            where,
            self.rejects[reason],
            detail,
        )

    async def run(self) -> None:
        """Follow the topic until cancelled; reconnect with backoff whenever Kafka fails."""
        backoff = Backoff(RETRY)
        topic = self.kafka.suppression_topic
        while True:
            consumer = AIOKafkaConsumer(
                topic,
                **client_kwargs(self.kafka),
                client_id=self.client_id,
                group_id=None,  # no group: every partition, from the beginning, every time
                auto_offset_reset="earliest",
                enable_auto_commit=False,
            )
            try:
                await consumer.start()
                backoff.reset()
                log.info("event=suppressions_following topic=%s", topic)
                async for rec in consumer:
                    self.handle(rec.key, rec.value, f"{rec.topic}[{rec.partition}]@{rec.offset}")
            except KafkaError as exc:
                delay = backoff.next_delay()
                log.warning(
                    "event=suppressions_unavailable bootstrap=%s topic=%s error=%r "
                    "retry_in_s=%.1f: cameras keep the suppressions they have",
                    self.kafka.bootstrap,
                    topic,
                    exc,
                    delay,
                )
            else:
                delay = backoff.next_delay()  # the consumer stopped by itself: start again
            finally:
                await consumer.stop()
            await asyncio.sleep(delay)
