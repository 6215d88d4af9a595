"""The docs generated from code: JSON Schemas and the config reference."""

from __future__ import annotations

from pathlib import Path

from streetwatch import config_docs
from streetwatch.schemas import schema_documents


def documents() -> dict[str, str]:
    """Path under docs/ -> text."""
    docs = {f"schemas/{name}": text for name, text in schema_documents().items()}
    docs["config.md"] = config_docs.render()
    return docs


def write_docs(root: Path) -> list[Path]:
    written = []
    for rel, text in documents().items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_docs(root: Path) -> list[str]:
    return [
        rel
        for rel, text in documents().items()
        if not (root / rel).is_file() or (root / rel).read_text(encoding="utf-8") != text
    ]
