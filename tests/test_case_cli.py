"""The case commands of the CLI: reports from a real SQLite store."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from core.records import CaseStatus, StatusUpdate
from pipeline.case_engine import CaseEngine
from pipeline.store import open_store
from streetwatch.cli import main
from streetwatch.config import load_config
from tests.support.factories import sighting


def test_report_commands_print_tables_and_write_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "box.toml"
    conf.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "cases.db"}"\n')
    cfg = load_config(conf)
    store = open_store(cfg.store.url)
    engine = CaseEngine.from_config(cfg, store)
    first = engine.on_alerts([sighting(0, "cam-1", "market-gate", category="illegal_stall")])
    case_id = first[0].case_id
    for n, status in enumerate((CaseStatus.DISPATCHED, CaseStatus.CLOSED)):
        engine.on_updates(
            [
                StatusUpdate(
                    update_id=f"u{n}",
                    case_id=case_id,
                    status=status,
                    at=first[0].case.filed_at.replace(minute=5 + n),
                )
            ]
        )
    for week in (1, 2):  # back twice after closing: 3 cases at one site
        opened = engine.on_alerts(
            [sighting(week * 8 * 86400, "cam-1", "market-gate", category="illegal_stall")]
        )
        engine.on_updates(
            [
                StatusUpdate(
                    update_id=f"close-{week}",
                    case_id=opened[0].case_id,
                    status=CaseStatus.SELF_HANDLED,
                    at=opened[0].case.filed_at.replace(minute=30),
                )
            ]
        )
    store.close()
    window = ["--since", "2026-11-01T00:00+08:00", "--until", "2026-12-31T00:00+08:00"]

    out_csv = tmp_path / "hotspots.csv"
    assert main(["report", "hotspots", "--config", str(conf), *window, "--csv", str(out_csv)]) == 0
    table = capsys.readouterr().out
    assert "market-gate" in table and "illegal_stall" in table
    rows = list(csv.DictReader(out_csv.open(encoding="utf-8-sig")))
    assert len(rows) == 1 and rows[0]["cases"] == "3" and rows[0]["chronic"] == "true"

    assert main(["report", "sla", "--config", str(conf), *window]) == 0
    table = capsys.readouterr().out
    assert "城管中队" in table and "dispatch" in table


def test_a_report_on_a_bad_store_url_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "box.toml"
    conf.write_text('[store]\nurl = "mysql://nowhere"\n')
    assert main(["report", "sla", "--config", str(conf)]) != 0
    assert "store url" in capsys.readouterr().err
