"""The edge box's disk: what may go when it fills, and a health alert when it cannot.

Policy (``[edge] min_free_mb``):

- alerts and dead letters in the outbox are never deleted;
- evidence files (snapshots, clips, charts under ``evidence_dir``) may be,
  oldest first, but only once the centre has them: with an evidence service
  configured, a file no longer waiting in the outbox's evidence lane;
  without one, never (the box holds the only copy);
- when deleting what may go does not bring the free space back over the
  floor, the box raises a health alert, category ``edge_disk_low``, from
  source kind ``box``; it is cleared once the space is back. A full disk
  slows the box down (the outbox waits for room) and never crashes it;
- the unblurred originals of privacy cameras (``<camera>/originals/``,
  ``edge/privacy.py``), never uploaded, are deleted once older than
  ``[edge] originals_keep_h`` hours, at every check, whatever the free space.
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from core.records import Alert, AlertPhase, Place, SourceKind
from edge.outbox import Outbox
from edge.privacy import ORIGINALS

log = logging.getLogger("streetwatch.edge")

EVIDENCE_SUFFIXES = {".jpg", ".mp4", ".svg"}
CATEGORY = "edge_disk_low"
RULE = "disk"


class DiskGuard:
    def __init__(
        self,
        box_id: str,
        evidence_dir: Path,
        outbox: Outbox,
        min_free_mb: float,
        uploads: bool,
        originals_keep_h: float = 24.0,
    ) -> None:
        self.box_id = box_id
        self.originals_keep = timedelta(hours=originals_keep_h)
        self.originals_deleted = 0
        self.evidence_dir = evidence_dir
        self.outbox = outbox
        self.min_free = int(min_free_mb * 1024 * 1024)
        self.uploads = uploads
        self.place = Place(place_id=box_id, name=f"edge box {box_id}")
        self.low_since: datetime | None = None
        self.evicted = 0

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.evidence_dir).free

    def _waiting(self) -> set[str]:
        """Files the centre does not have yet (in the evidence lane)."""
        entries = self.outbox.peek("evidence", 1_000_000)
        return {str(json.loads(e.value)["path"]) for e in entries}

    def _evictable(self) -> list[Path]:
        if not self.uploads:
            return []
        waiting = self._waiting()
        files = [
            p
            for p in self.evidence_dir.rglob("*")
            if p.suffix in EVIDENCE_SUFFIXES and p.is_file() and str(p) not in waiting
        ]
        return sorted(files, key=lambda p: p.stat().st_mtime)

    def sweep_originals(self, now: datetime) -> int:
        """Delete the unblurred originals older than ``originals_keep_h``; how many."""
        oldest = (now - self.originals_keep).timestamp()
        deleted = 0
        for path in self.evidence_dir.glob(f"*/{ORIGINALS}/*"):
            try:
                if path.is_file() and path.stat().st_mtime < oldest:
                    path.unlink()
                    deleted += 1
            except FileNotFoundError:
                continue
        if deleted:
            self.originals_deleted += deleted
            log.info("event=originals_deleted count=%d (older than originals_keep_h)", deleted)
        return deleted

    def check(self, now: datetime) -> list[Alert]:
        """Free space if it is short; the health alert to raise or clear, if any."""
        self.sweep_originals(now)
        if self.free_bytes() < self.min_free:
            for path in self._evictable():
                if self.free_bytes() >= self.min_free:
                    break
                path.unlink(missing_ok=True)
                self.evicted += 1
                log.info("event=evidence_evicted path=%s (uploaded; disk low)", path)
        low = self.free_bytes() < self.min_free
        if low and self.low_since is None:
            self.low_since = now
            return [self._alert(now, AlertPhase.RAISED)]
        if not low and self.low_since is not None:
            alert = self._alert(now, AlertPhase.CLEARED)
            self.low_since = None
            return [alert]
        return []

    def _alert(self, now: datetime, phase: AlertPhase) -> Alert:
        free_mb = self.free_bytes() / 1024 / 1024
        floor_mb = self.min_free / 1024 / 1024
        log.log(
            logging.ERROR if phase is AlertPhase.RAISED else logging.WARNING,
            "event=disk_%s free_mb=%.1f floor_mb=%.1f evicted=%d",
            "low" if phase is AlertPhase.RAISED else "ok",
            free_mb,
            floor_mb,
            self.evicted,
        )
        return Alert(
            alert_id=Alert.make_id(self.box_id, RULE, self.place.place_id, now),
            category=CATEGORY,
            place=self.place,
            source_kind=SourceKind.BOX,
            source_id=self.box_id,
            rule_id=RULE,
            rule_text=f"free space on the evidence disk under {floor_mb:.0f} MB "
            f"({free_mb:.1f} MB free)",
            first_seen=self.low_since or now,
            observed_at=now,
            confidence=1.0,
            phase=phase,
        )
