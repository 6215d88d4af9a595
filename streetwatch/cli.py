"""The ``streetwatch`` command.

Every failure a user can cause (bad config, missing video or model, missing
broker binary) ends with one message on stderr and a non-zero exit code,
never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.resources
import logging
import signal
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from core.config import ConfigError
from core.logs import LOG_FORMATS, LogFormat, formatter
from core.memory import limit_arenas
from core.records import CaseStatus, StatusUpdate
from core.version import streetwatch_version
from streetwatch.service_config import (
    load_centre_config,
    load_dispatch_config,
    load_edge_config,
)

if TYPE_CHECKING:
    from edge.config import EdgeServiceConfig
    from pipeline.config import DispatchServiceConfig
    from streetwatch.config import Config

EXIT_CONFIG = 2
EXIT_RUNTIME = 1
EDGE_MALLOC_ARENAS = 2  # malloc arenas of the edge box (core/memory.py; python -m bench.box)


def _demo_config() -> Path:
    return Path(str(importlib.resources.files("streetwatch") / "demo.toml"))


def _setup_logging(level: str, logfile: Path | None = None, fmt: LogFormat = "text") -> None:
    """Every handler writes ``fmt``: text lines, or JSON objects (``--log-format json``)."""
    handlers: list[logging.Handler] = []
    if logfile is not None:
        logfile.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(logfile)
        fh.setLevel(logging.INFO)
        handlers.append(fh)
    sh = logging.StreamHandler(sys.stderr)
    sh.setLevel(level.upper())
    handlers.append(sh)
    for h in handlers:
        h.setFormatter(formatter(fmt))
    logging.basicConfig(
        level=logging.INFO if logfile else level.upper(), handlers=handlers, force=True
    )
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _aware(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a time zone, e.g. {text}+08:00")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streetwatch", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {streetwatch_version()}",
        help="print the installed release and exit",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument(
        "--log-format",
        default="text",
        choices=LOG_FORMATS,
        help="text lines, or one JSON object a line (time, level, logger, message and the "
        "event's key=value pairs as fields)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the whole path on embedded brokers and the demo video")
    d.add_argument("--config", type=Path, help="config file (default: the embedded demo config)")
    d.add_argument("--fast", action="store_true", help="read the video as fast as possible")
    d.add_argument("--duration", type=float, default=120.0, help="stop after this many seconds")
    d.add_argument("--run-dir", type=Path, help="where brokers and workers write their logs")
    d.add_argument(
        "--keep-open",
        action="store_true",
        help="after the run, keep the services (and the review workbench) running until Ctrl-C",
    )

    e = sub.add_parser("edge", help="run the edge worker: cameras and sensors to alerts")
    e.add_argument("--config", type=Path, required=True)
    e.add_argument("--fast", action="store_true", help="read video files as fast as possible")

    r = sub.add_parser("replay", help="analyse a recorded video offline into cases and evidence")
    r.add_argument("video", type=Path)
    r.add_argument("--config", type=Path, required=True)
    r.add_argument("--camera", help="camera whose zones and rules to use (if several)")
    r.add_argument("--out", type=Path, default=Path("var/replay"), help="output folder")
    r.add_argument("--start", type=datetime.fromisoformat, help="wall time of the first frame")

    w = sub.add_parser("dispatch", help="run the dispatch worker: alerts to case events")
    w.add_argument("--config", type=Path, required=True)

    o = sub.add_parser("open311", help="bridge case events to a GeoReport v2 (Open311) server")
    o.add_argument("--config", type=Path, required=True)

    st = sub.add_parser("status", help="move a case: publish a status update on the status topic")
    st.add_argument("case_id")
    st.add_argument("status", choices=[s.value for s in CaseStatus])
    st.add_argument("--config", type=Path, required=True)
    st.add_argument("--by", default="", help="department or person")
    st.add_argument("--note", default="")
    st.add_argument("--merged-into", help="target case, for status merged")

    sy = sub.add_parser(
        "store-sync", help="keep another case store (a read model) from the dispatch topic"
    )
    sy.add_argument("--config", type=Path, required=True)
    sy.add_argument("--to", required=True, help="target store url, e.g. postgresql://...")
    sy.add_argument("--group", default="streetwatch-store-sync", help="Kafka consumer group")

    rep = sub.add_parser("report", help="reports from the case store: hotspots, SLA")
    rep.add_argument("kind", choices=["hotspots", "sla"])
    rep.add_argument("--config", type=Path, required=True)
    rep.add_argument("--since", type=_aware, help="start (ISO 8601 with zone; default 30 days ago)")
    rep.add_argument("--until", type=_aware, help="end (default now)")
    rep.add_argument("--csv", type=Path, help="also write the table as CSV here")

    t = sub.add_parser("tail", help="print case events from the dispatch topic")
    t.add_argument("--config", type=Path, required=True)
    t.add_argument("--json", action="store_true", help="print the raw JSON events")

    ev = sub.add_parser("evidence", help="the evidence service at the centre")
    evs = ev.add_subparsers(dest="evidence_command", required=True)
    serve = evs.add_parser("serve", help="store uploaded evidence and serve it by signed links")
    serve.add_argument("--config", type=Path, required=True)
    tok = evs.add_parser(
        "token",
        help="make an upload token for a box: the token for the box, its sha256 for "
        "[[evidence.boxes]]",
    )
    tok.add_argument("box_id")

    rv = sub.add_parser("review", help="the review workbench for video-patrol staff")
    rvs = rv.add_subparsers(dest="review_command", required=True)
    rserve = rvs.add_parser("serve", help="serve the workbench ([review] host:port)")
    rserve.add_argument("--config", type=Path, required=True)
    add = rvs.add_parser(
        "add-user", help="add a workbench user (the password is read from standard input)"
    )
    add.add_argument("--config", type=Path, required=True)
    add.add_argument("username")
    add.add_argument("--role", choices=["patrol", "supervisor", "admin"], default="patrol")
    add.add_argument(
        "--grid", action="append", default=[], help="a grid of the user's workstation (repeat)"
    )
    add.add_argument("--name", default="", help="the name shown in the workbench")
    add.add_argument("--replace", action="store_true", help="change an existing user")
    exp = rvs.add_parser(
        "export-dataset",
        help="write reviewed frames as a YOLO dataset (hard negatives from rejections)",
    )
    exp.add_argument("--config", type=Path, required=True)
    exp.add_argument("out", type=Path)
    exp.add_argument(
        "--reason",
        action="append",
        default=[],
        help="rejection reasons that make hard negatives (repeat; default wrong_object)",
    )
    exp.add_argument(
        "--confirmed", action="store_true", help="also export confirmed cases as positives"
    )

    c = sub.add_parser("check-config", help="validate a config file")
    c.add_argument("config", type=Path)

    s = sub.add_parser(
        "docs", help="write or check the generated docs: JSON Schemas and config reference"
    )
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", type=Path, metavar="DIR")
    g.add_argument("--check", type=Path, metavar="DIR")
    return p


def _cmd_demo(args: argparse.Namespace) -> int:
    from streetwatch.config import load_config
    from streetwatch.demo import DemoError, default_run_dir, run_demo

    cfg = load_config(args.config or _demo_config())
    run_dir = args.run_dir or default_run_dir()
    _setup_logging("WARNING", run_dir / "demo.log", args.log_format)
    try:
        return asyncio.run(
            run_demo(
                cfg,
                pace="fast" if args.fast else "realtime",
                duration=args.duration,
                run_dir=run_dir,
                keep_open=args.keep_open,
            )
        )
    except DemoError as exc:
        print(f"streetwatch demo: {exc}", file=sys.stderr)
        return EXIT_RUNTIME


async def _edge(cfg: EdgeServiceConfig, fast: bool, path: Path | None = None) -> int:
    from core.kafka import ensure_topics
    from edge.alert_sink import KafkaAlertSink
    from edge.dead_letters import KafkaDeadLetterSink
    from edge.metrics import edge_ops_server
    from edge.worker import EdgeWorker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    k = cfg.kafka
    worker = EdgeWorker(
        cfg,
        KafkaAlertSink(k, cfg.site_map()),
        pace="fast" if fast else "realtime",
        dead_letters=KafkaDeadLetterSink(k, k.sensor_dead_letter_topic, k.partitions),
        prepare=lambda: ensure_topics(k, attempts=1),  # (retried by the worker, in the background)
    )
    if path is not None:
        reloads: set[asyncio.Task[object]] = set()

        def reload() -> None:  # SIGHUP: cameras added, removed or changed; the rest run on
            try:
                new = load_edge_config(path)
            except ConfigError as exc:
                logging.getLogger("streetwatch.edge").error(
                    "event=reload_refused error=%s: the running cameras stay", exc
                )
                return
            task = loop.create_task(worker.reload(new))  # (not in the signal handler: it waits)
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, reload)
    ops = edge_ops_server(worker)  # first: /readyz tells why the box waits (Kafka, say)
    if ops is not None:
        await ops.start()
    try:
        stats = await worker.run(stop)
    finally:
        if ops is not None:
            await ops.stop()
    return EXIT_RUNTIME if stats.camera_errors else 0


async def _tail(cfg: DispatchServiceConfig, raw: bool) -> int:
    from pipeline.dispatch_tail import case_events, describe

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async for data, event in case_events(cfg.kafka, stop):
        print(data.decode() if raw else describe(event, ZoneInfo(cfg.sla.timezone)), flush=True)
    return 0


async def _open311(cfg: DispatchServiceConfig) -> int:
    from pipeline.open311_bridge import run_bridge

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_bridge(cfg, stop)
    return 0


async def _store_sync(cfg: DispatchServiceConfig, target: str, group: str) -> int:
    from pipeline.store_sync import sync_store

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stats = await sync_store(cfg, target, stop, group)
    print(f"{stats.events} case event(s) read, {stats.changed} changed the store")
    return 0


async def _status(cfg: DispatchServiceConfig, args: argparse.Namespace) -> int:
    from core.kafka import ensure_topics
    from pipeline.status_topic import publish_updates

    update = StatusUpdate(
        update_id=f"cli-{uuid.uuid4().hex}",
        case_id=args.case_id,
        status=CaseStatus(args.status),
        at=datetime.now(UTC),
        by=args.by,
        note=args.note,
        merged_into=args.merged_into,
    )
    await ensure_topics(cfg.kafka)
    await publish_updates(cfg.kafka, [update])
    print(f"{update.update_id}: {update.case_id} -> {update.status}")
    return 0


def _report(cfg: DispatchServiceConfig, args: argparse.Namespace) -> int:
    from pipeline.reports import run_report
    from pipeline.store import open_store

    now = datetime.now(ZoneInfo(cfg.sla.timezone))  # tables show the town's time
    until = args.until or now
    since = args.since or until - timedelta(days=30)
    store = open_store(cfg.store.url)
    try:
        print(run_report(args.kind, store, since, until, now, args.csv))
    finally:
        store.close()
    return 0


def _cmd_replay(cfg: Config, args: argparse.Namespace) -> int:
    from streetwatch.replay import ReplayError, print_summary, replay

    start = args.start or datetime.now(UTC)
    if start.tzinfo is None:
        print(
            "streetwatch replay: --start needs a time zone, e.g. 2026-11-22T09:00+08:00",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    _setup_logging("WARNING", fmt=args.log_format)
    try:
        result = replay(
            cfg, args.video, args.out, camera_id=args.camera, start=start, progress=sys.stderr
        )
    except ReplayError as exc:
        print(f"streetwatch replay: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    print_summary(result, args.out, ZoneInfo(cfg.sla.timezone))
    return 0


def _runtime_errors(command: str) -> tuple[type[Exception], ...]:
    """What a command can fail with at run time that a user causes: one line each.

    Imported here, per command, so that the central commands never load the
    edge box's stack (OpenCV, onnxruntime)."""
    from pipeline.store import StoreError

    errors: tuple[type[Exception], ...] = (StoreError, OSError)
    if command in ("demo", "edge", "replay", "check-config"):
        from detectors.model_file import ModelFileError
        from ingest.frames import SourceError
        from streetwatch.brokers import BrokerUnavailable

        errors += (ModelFileError, SourceError, BrokerUnavailable)
    return errors


def _check_config(path: Path) -> int:
    from streetwatch.config import load_config

    cfg = load_config(path)
    devices = len(cfg.device_registry())
    print(f"{path}: ok ({len(cfg.cameras)} camera(s), {devices} sensor device(s))")
    return 0


def _docs(args: argparse.Namespace) -> int:
    from streetwatch.generated_docs import stale_docs, write_docs

    if args.write:
        for path in write_docs(args.write):
            print(path)
        return 0
    stale = stale_docs(args.check)
    if stale:
        print(
            f"generated docs out of date in {args.check}: {', '.join(stale)}; "
            f"run: streetwatch docs --write {args.check}",
            file=sys.stderr,
        )
        return 1
    return 0


def _evidence(args: argparse.Namespace) -> int:
    from centre.evidence_service import new_token, serve, token_digest

    if args.evidence_command == "token":
        token = new_token()
        print(f"# on the box {args.box_id} (keep it secret): the upload token")
        print(token)
        print("# at the centre, in the evidence service's config:")
        print(
            f'[[evidence.boxes]]\nbox_id = "{args.box_id}"\ntoken_sha256 = "{token_digest(token)}"'
        )
        return 0
    cfg = load_centre_config(args.config)
    _setup_logging(args.log_level, fmt=args.log_format)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(cfg.evidence, stop)

    asyncio.run(run())
    return 0


def _review(args: argparse.Namespace) -> int:
    cfg = load_centre_config(args.config)
    _setup_logging(args.log_level, fmt=args.log_format)
    if args.review_command == "add-user":
        import getpass

        from centre.review.db import Role, UserError, WorkbenchDb

        if sys.stdin.isatty():
            password = getpass.getpass(f"password for {args.username}: ")
        else:
            password = sys.stdin.readline().rstrip("\n")
        db = WorkbenchDb(cfg.review.db)
        try:
            user = db.add_user(
                args.username,
                password,
                Role(args.role),
                args.grid,
                args.name,
                replace=args.replace,
            )
        except UserError as exc:
            print(f"streetwatch: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        finally:
            db.close()
        grids = ", ".join(user.grids) or "every grid"
        print(f"user {user.username} ({user.role}, {grids}) saved in {cfg.review.db}")
        return 0
    if args.review_command == "export-dataset":
        from centre.evidence_store import FilesystemEvidenceStore
        from centre.review.dataset import export_dataset
        from pipeline.store import open_store

        with open_store(cfg.store.url) as store:
            summary = export_dataset(
                store.all_cases(),
                FilesystemEvidenceStore(Path(cfg.evidence.store_dir)),
                args.out,
                reasons=frozenset(args.reason or ["wrong_object"]),
                include_confirmed=args.confirmed,
            )
        print(summary)
        return 0
    from centre.review.serve import serve

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(cfg, stop)

    asyncio.run(run())
    return 0


def _dispatch_command(args: argparse.Namespace) -> int:
    cfg = load_dispatch_config(args.config)
    _setup_logging(args.log_level, fmt=args.log_format)
    if args.command == "tail":
        return asyncio.run(_tail(cfg, args.json))
    if args.command == "dispatch":
        from pipeline.app import run_worker

        run_worker(cfg, loglevel=args.log_level, log_format=args.log_format)
        return 0
    if args.command == "open311":
        return asyncio.run(_open311(cfg))
    if args.command == "status":
        return asyncio.run(_status(cfg, args))
    if args.command == "report":
        return _report(cfg, args)
    if args.command == "store-sync":
        return asyncio.run(_store_sync(cfg, args.to, args.group))
    raise AssertionError(f"unhandled command {args.command}")


def _run(args: argparse.Namespace) -> int:
    try:
        if args.command == "demo":
            return _cmd_demo(args)
        if args.command == "check-config":
            return _check_config(args.config)
        if args.command == "docs":
            return _docs(args)
        if args.command == "replay":
            from streetwatch.config import load_config

            return _cmd_replay(load_config(args.config), args)
        if args.command == "evidence":
            return _evidence(args)
        if args.command == "review":
            return _review(args)
        if args.command == "edge":
            cfg = load_edge_config(args.config)
            _setup_logging(args.log_level, fmt=args.log_format)
            limit_arenas(EDGE_MALLOC_ARENAS)  # before the camera threads (core/memory.py)
            return asyncio.run(_edge(cfg, args.fast, args.config))
        return _dispatch_command(args)
    except ConfigError as exc:
        print(f"streetwatch: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except _runtime_errors(args.command) as exc:
        print(f"streetwatch: {exc}", file=sys.stderr)
        return EXIT_RUNTIME


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
