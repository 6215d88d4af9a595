"""Review workbench benchmark: the queue page with 10,000 open cases, and how soon a case
event on the dispatch topic reaches a connected browser.

    python -m bench.review [--cases 10000] [--pages 200] [--events 60]

Starts its own Tansu and a real ``streetwatch review serve`` process on a SQLite
case store holding ``--cases`` open cases (five grids, six categories, urgencies
1-4, filed over the last two days, so the queue has red, yellow and green cards).

1. **Queue page**: ``--pages`` sequential ``GET /`` as a supervisor (every grid,
   so the whole 10,000 are filtered and sorted for each page) and as a patrol
   user (one grid), and as the supervisor with a category filter; the server
   time of each is read from the app's ``Server-Timing`` header (request in to
   first byte out, no network). Target p95 <= 100 ms.
2. **Event to browser**: headless Chromium (Debian's) signed in on the queue
   page. For ``--events`` cases shown on it, one after another 150 ms apart, a
   new version of the case is committed to the store and published on the
   dispatch topic, as the dispatch worker does; a MutationObserver in the page
   stamps the moment the card with that version is in the DOM (server-sent
   event, then the card fetched and swapped in). The delay is that stamp minus
   the moment before the send (one clock: same machine). Also, for new cases,
   the delay until the "N new" bar counts them. Target p95 <= 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaProducer

from core.kafka import KafkaConfig, ensure_topics
from core.records import (
    Case,
    CaseEvent,
    CaseEventType,
    GridRef,
    Place,
    Route,
)
from pipeline.cloudevents import case_event_bytes
from pipeline.store import Change, open_store
from streetwatch.brokers import start_tansu
from tests.support import review
from tests.support.browser import chromium
from tests.support.cases import clocks
from tests.support.kafka_helpers import fresh_kafka

GRIDS = ("曹杨新村街道", "长风新村街道", "甘泉路街道", "宜川路街道", "石泉路街道")
CATEGORIES = (
    "illegal_stall",
    "illegal_parking",
    "piled_goods",
    "crowd_gathering",
    "water_level_high",
    "bin_overflow",
)
ARRIVALS = """
window.arrivals = {};
window.newCounts = {};
new MutationObserver((muts) => {
  const now = Date.now();
  for (const m of muts) for (const n of m.addedNodes) {
    if (n.nodeType === 1 && n.dataset && n.dataset.case && n.dataset.version) {
      window.arrivals[n.dataset.case + ":" + n.dataset.version] = now;
    }
  }
  const c = document.getElementById("new-count");
  if (c && !(c.textContent in window.newCounts)) window.newCounts[c.textContent] = now;
}).observe(document.body, {subtree: true, childList: true, characterData: true});
"""


def make_case(i: int, now: datetime) -> Case:
    filed = now - timedelta(seconds=(i * 17) % (2 * 86400))
    grid = GRIDS[i % len(GRIDS)]
    site = f"site-{i:05d}"
    return Case(
        case_id=f"case-bench-{i:05d}",
        category=CATEGORIES[i % len(CATEGORIES)],
        site_id=site,
        place=Place(place_id=site, name=f"{grid} {i} 号", grids=GridRef(large=grid)),
        place_ids=(site,),
        filed_at=filed,
        status_at=filed,
        first_seen=filed,
        last_seen=filed,
        alert_count=1,
        confidence=0.7,
        source_confidence={f"camera:cam-{i % 40}": 0.7},
        rule_texts=("vehicle still 5 min",),
        sources={f"camera:cam-{i % 40}": filed},
        evidence=(),
        route=Route(owner="城管中队", urgency=1 + i % 4, matched="m"),
        sla=clocks(filed),
        version=1,
    )


def fill_store(url: str, n: int, now: datetime) -> list[Case]:
    cases = [make_case(i, now) for i in range(n)]
    with open_store(url) as store:
        for start in range(0, n, 500):
            store.commit(
                [
                    Change(CaseEvent.of_case(c, CaseEventType.OPENED, f"a-{c.case_id}", now), None)
                    for c in cases[start : start + 500]
                ]
            )
    return cases


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def page_times(base: str, user: str, path: str, n: int) -> list[float]:
    async with review.Session(base) as s:
        assert await s.sign_in(user) == 303
        times = []
        for _ in range(n):
            async with s.http.get(base + path) as r:
                assert r.status == 200, r.status
                await r.read()
                times.append(float(r.headers["Server-Timing"].split("dur=")[1]))
        return times


def browser_delays(
    base: str, kafka: KafkaConfig, store_url: str, events: int, loop: asyncio.AbstractEventLoop
) -> tuple[list[float], list[float]]:
    """Run in a thread: Playwright's sync API drives the page while ``loop`` publishes."""
    with chromium() as context:
        tab = context.new_page()
        tab.goto(f"{base}/login", wait_until="load")
        tab.fill('input[name="username"]', "chief")
        tab.fill('input[name="password"]', review.PASSWORD)
        tab.click('button[type="submit"]')
        tab.wait_for_url(f"{base}/", wait_until="load")
        tab.wait_for_function("document.body.classList.contains('live')", timeout=15000)
        tab.evaluate(ARRIVALS)
        shown = tab.eval_on_selector_all("#list .card", "els => els.map(e => e.dataset.case)")
        targets = shown[:events]
        sent = asyncio.run_coroutine_threadsafe(
            publish(kafka, store_url, targets, events), loop
        ).result(timeout=600)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            arrivals = tab.evaluate("window.arrivals")
            counts = tab.evaluate("window.newCounts")
            if all(key in arrivals for key in sent["update"]) and str(len(sent["new"])) in counts:
                break
            time.sleep(0.2)
        updates = [arrivals[k] - t for k, t in sent["update"].items() if k in arrivals]
        missing = len(sent["update"]) - len(updates)
        assert missing == 0, f"{missing} card updates never reached the browser"
        news = []
        for k, (_, t) in enumerate(sorted(sent["new"].items(), key=lambda kv: kv[1]), 1):
            if str(k) in counts:
                news.append(counts[str(k)] - t)
        return updates, news


async def publish(
    kafka: KafkaConfig, store_url: str, case_ids: list[str], events: int
) -> dict[str, dict[str, float]]:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()
    sent: dict[str, dict[str, float]] = {"update": {}, "new": {}}
    now = datetime.now(UTC)
    try:
        with open_store(store_url) as store:
            for i, case_id in enumerate(case_ids):
                case = store.get(case_id)
                assert case is not None
                moved = case.model_copy(
                    update={"alert_count": case.alert_count + 1, "version": case.version + 1}
                )
                event = CaseEvent.of_case(moved, CaseEventType.UPDATED, f"b-{i}", now)
                store.commit([Change(event, (case.case_id, case.version))])
                sent["update"][f"{case_id}:{moved.version}"] = time.time() * 1000
                await producer.send_and_wait(
                    kafka.dispatch_topic, case_event_bytes(event, "bench"), key=case_id.encode()
                )
                await asyncio.sleep(0.15)
            for i in range(min(20, events)):
                case = make_case(100_000 + i, datetime.now(UTC))
                event = CaseEvent.of_case(case, CaseEventType.OPENED, f"n-{i}", now)
                store.commit([Change(event, None)])
                sent["new"][case.case_id] = time.time() * 1000
                await producer.send_and_wait(
                    kafka.dispatch_topic,
                    case_event_bytes(event, "bench"),
                    key=case.case_id.encode(),
                )
                await asyncio.sleep(0.15)
    finally:
        await producer.stop()
    return sent


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "tansu").mkdir()
        broker = start_tansu(tmp / "tansu")
        wb = None
        try:
            kafka = fresh_kafka(broker.address)
            await ensure_topics(kafka)
            store_url = f"sqlite:///{tmp / 'cases.db'}"
            started = time.perf_counter()
            fill_store(store_url, args.cases, datetime.now(UTC))
            print(f"store: {args.cases} open cases written in {time.perf_counter() - started:.1f}s")
            config = review.write_config(tmp, kafka, store_url, tmp / "evidence")
            review.add_users(
                config, {"chief": ("supervisor", ()), "patrol1": ("patrol", (GRIDS[0],))}
            )
            started = time.perf_counter()
            wb = review.start(config, tmp / "review.log")
            print(f"workbench ready (queue loaded) in {time.perf_counter() - started:.1f}s")
            rows = [
                ("supervisor, all grids", "chief", "/"),
                ("patrol, one grid", "patrol1", "/"),
                ("supervisor, one category", "chief", "/?category=illegal_stall"),
            ]
            print(f"\nqueue page server time over {args.pages} requests (target p95 <= 100 ms)")
            for label, user, path in rows:
                times = await page_times(wb.url, user, path, args.pages)
                print(
                    f"  {label:26s} p50 {statistics.median(times):6.1f} ms"
                    f"  p95 {pct(times, 0.95):6.1f} ms  max {max(times):6.1f} ms"
                )
            loop = asyncio.get_running_loop()
            updates, news = await asyncio.to_thread(
                browser_delays, wb.url, kafka, store_url, args.events, loop
            )
            print("\ncase event on the dispatch topic -> browser (target p95 <= 2000 ms)")
            print(
                f"  card updated in place ({len(updates)}): "
                f"p50 {statistics.median(updates):6.0f} ms"
                f"  p95 {pct(updates, 0.95):6.0f} ms  max {max(updates):6.0f} ms"
            )
            if news:
                print(
                    f"  new case counted in the bar ({len(news)}): p50 "
                    f"{statistics.median(news):6.0f} ms  p95 {pct(news, 0.95):6.0f} ms"
                )
        finally:
            if wb is not None:
                wb.stop()
            broker.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--cases", type=int, default=10_000)
    p.add_argument("--pages", type=int, default=200)
    p.add_argument("--events", type=int, default=60)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
