"""Where evidence is kept at the centre: by content (sha256), each file once.

:class:`EvidenceStore` is the seam: :class:`FilesystemEvidenceStore` keeps a
file under ``root/ab/cd/<sha256>`` with its media type beside it; an
S3-compatible object store (MinIO, OSS) would implement the same three
methods with the sha256 as the object key. Nothing here takes a path from a
caller: a key is a sha256, checked before it names a file, so no request can
reach outside the store.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

SHA256 = re.compile(r"[0-9a-f]{64}")


class BadDigest(ValueError):
    """The bytes do not hash to the sha256 they were sent with."""


@dataclass(frozen=True)
class Stored:
    sha256: str
    size: int
    media_type: str
    created: bool  # False: the same bytes were there already


class EvidenceStore(Protocol):
    def put(self, sha256: str, data: bytes, media_type: str) -> Stored:
        """Keep ``data`` under its sha256 (once); raise :class:`BadDigest` if it is not."""
        ...

    def find(self, sha256: str) -> tuple[Path, str] | None:
        """The file and media type of ``sha256``, if kept."""
        ...


class FilesystemEvidenceStore:
    """Content-addressed files under ``root``; writes are atomic (temp file, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, sha256: str) -> Path:
        if not SHA256.fullmatch(sha256):
            raise ValueError("not a sha256")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, sha256: str, data: bytes, media_type: str) -> Stored:
        if hashlib.sha256(data).hexdigest() != sha256:
            raise BadDigest(f"the body does not hash to {sha256}")
        path = self._path(sha256)
        if path.is_file():
            return Stored(sha256, len(data), self._media_type(path), created=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"media_type": media_type, "size": len(data)})
        for target, body in ((path.with_suffix(".json"), meta.encode()), (path, data)):
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
            with os.fdopen(fd, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            Path(tmp).replace(target)  # the file appears whole or not at all
        return Stored(sha256, len(data), media_type, created=True)

    def _media_type(self, path: Path) -> str:
        meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        return str(meta["media_type"])

    def find(self, sha256: str) -> tuple[Path, str] | None:
        try:
            path = self._path(sha256)
        except ValueError:
            return None
        if not path.is_file():
            return None
        return path, self._media_type(path)
