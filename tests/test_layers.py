"""The layers: the dispatch service loads none of the edge box's stack, and the
import contracts in pyproject.toml catch an import that breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT

PACKAGES = ("core", "detectors", "ingest", "edge", "pipeline", "centre", "streetwatch")
EDGE_STACK = ("cv2", "onnxruntime", "av", "edge", "ingest", "detectors")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def loaded_after(code: str, cwd: Path = ROOT) -> list[str]:
    """Which of :data:`EDGE_STACK` a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {EDGE_STACK!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, check=True
    )
    return list(eval(out.stdout.strip().splitlines()[-1]))


def test_the_dispatch_service_entry_loads_no_edge_stack() -> None:
    assert loaded_after("import pipeline.app") == []


def test_the_cli_reads_a_dispatch_only_file_without_the_edge_stack(tmp_path: Path) -> None:
    path = tmp_path / "dispatch.toml"
    path.write_text('[kafka]\nbootstrap = "127.0.0.1:1"\n[sla]\ntimezone = "Asia/Shanghai"\n')
    code = (
        "import pipeline.app, streetwatch.cli\n"
        "from streetwatch.service_config import load_dispatch_config\n"
        f"load_dispatch_config(__import__('pathlib').Path({str(path)!r}))"
    )
    assert loaded_after(code) == []


def test_the_edge_config_is_read_by_the_edge_alone(tmp_path: Path) -> None:
    from edge.config import EdgeServiceConfig
    from streetwatch.config import Config
    from streetwatch.service_config import load_edge_config

    path = tmp_path / "box.toml"
    path.write_text('[edge]\nbox_id = "ws-1"\n[[places]]\nplace_id = "bay"\n')
    cfg = load_edge_config(path)
    assert type(cfg) is EdgeServiceConfig and cfg.edge.box_id == "ws-1"
    path.write_text('[edge]\nbox_id = "ws-1"\n[sla]\ntimezone = "Asia/Shanghai"\n')
    assert type(load_edge_config(path)) is Config  # a whole file is read whole


def _copy_tree(tmp: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp / "pyproject.toml")
    return tmp


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("module", "added", "broken"),
    [
        ("pipeline/routing.py", "import edge.config", "pipeline is not allowed to import edge"),
        ("pipeline/routing.py", "import cv2", "pipeline is not allowed to import cv2"),
        ("core/records.py", "import streetwatch.cli", "core is not allowed to import streetwatch"),
        ("ingest/frames.py", "import edge.zones", "ingest is not allowed to import edge"),
        ("edge/zones.py", "import pipeline.routing", "edge is not allowed to import pipeline"),
        ("centre/config.py", "import edge.config", "centre is not allowed to import edge"),
    ],
)
def test_an_import_against_the_layers_fails_lint(
    tmp_path: Path, module: str, added: str, broken: str
) -> None:
    tree = _copy_tree(tmp_path)
    with (tree / module).open("a", encoding="utf-8") as f:
        f.write(f"\n{added}  # noqa\n")
    result = lint_imports(tree)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout and broken in result.stdout, result.stdout


def test_the_tree_as_it_is_keeps_every_contract(tmp_path: Path) -> None:
    result = lint_imports(_copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout
    assert "0 broken" in result.stdout
