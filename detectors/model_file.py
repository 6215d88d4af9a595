"""Model files are checked against a known sha256 before they are loaded."""

from __future__ import annotations

import hashlib
from pathlib import Path


class ModelFileError(Exception):
    """The model file is missing or is not the file it claims to be."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verified_model(path: Path, expected_sha256: str) -> Path:
    """Return ``path`` if it exists and its sha256 is ``expected_sha256``."""
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    actual = sha256_of(path)
    if actual != expected_sha256.lower():
        raise ModelFileError(
            f"model file {path} has sha256 {actual}, expected {expected_sha256}: "
            "refusing to load a file that is not the model it is configured as"
        )
    return path
