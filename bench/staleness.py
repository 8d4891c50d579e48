"""Paths 6 and 7: from a mutation's commit to a search that sees it, and to a subscriber.

createProduct over HTTP at a paced rate (half the sustainable rate path 8
found). The commit time of each is when its answer arrives here: the service
answers after the commit, so this is a little late, and the figures a little
short, by the answer's way back (a few ms; the mutation's latency is reported
beside them).

- Staleness (6): a prober in this process asks Elasticsearch every 10 ms for
  the skus not yet seen (one `terms` search on the products alias for all of
  them); a product counts as seen at the moment the search that found it was
  sent. Reference: the index's refresh interval plus the feed's poll interval,
  the wait a write could face with no wake-up and no forced refresh. The bulk
  writer refreshes on every batch, and commits wake the worker (in process on
  SQLite, by NOTIFY on PostgreSQL), so Bicameral is expected well under it.
- Staleness at a trickle (6, its own row): the same at 20 createProduct/s
  (`TRICKLE`), where a cycle of the worker (one bulk request with its refresh,
  about 20 ms) is shorter than the time between commits. The worker lingers
  only when commits arrive during a cycle, so a trickle should pay no linger;
  the row holds its p50 to a fixed budget of 50 ms (`TRICKLE_BUDGET_MS`).
- Delivery (7): one WebSocket subscriber (graphql-transport-ws, `changes`
  for products) receives the notifications; a product counts as delivered at
  its first notification. Reference: the staleness p99 of the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import Any

from elasticsearch import AsyncElasticsearch
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from bench.graphql import CHANGES, http_client
from bench.load import paced
from bench.mutations import CONCURRENCY, http_create_product
from bench.report import Figure, Target
from bench.stats import Distribution

__all__ = ["measure", "refresh_interval"]

PROBE_EVERY = 0.01
SETTLE_TIMEOUT = 30.0
TRICKLE = 20.0  # createProduct/s
TRICKLE_BUDGET_MS = 50.0


async def refresh_interval(es: AsyncElasticsearch, alias: str) -> float:
    """The index's refresh interval in seconds (Elasticsearch's default: 1s)."""
    found = await es.indices.get_settings(
        index=alias, name="index.refresh_interval", include_defaults=True, flat_settings=True
    )
    settings = next(iter(found.body.values()))
    raw = settings.get("settings", {}).get("index.refresh_interval") or settings.get(
        "defaults", {}
    ).get("index.refresh_interval", "1s")
    units = {"ms": 0.001, "s": 1.0, "m": 60.0}
    for suffix in ("ms", "s", "m"):
        if raw.endswith(suffix):
            return float(raw[: -len(suffix)]) * units[suffix]
    return float(raw)


class _Subscriber:
    """One `changes` subscription; the first arrival time of each product id."""

    def __init__(self, url: str, bearer: str) -> None:
        self.url = url
        # `changes` is staff work: the token rides in `connection_init`.
        self.init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {bearer}"}}
        self.first: dict[str, float] = {}
        self.ready = asyncio.Event()
        self.arrived = asyncio.Event()  # set at every notification, and when it ends
        self.error: str | None = None

    async def wait_for(self, ids: list[str], timeout: float) -> bool:
        """Until every id has had a notification (True), the subscription ends, or time's up."""
        deadline = time.monotonic() + timeout
        while any(id not in self.first for id in ids):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.error:
                return False
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)
        return True

    async def run(self) -> None:
        try:
            async with connect(
                self.url,
                subprotocols=[Subprotocol("graphql-transport-ws")],
                proxy=None,
                max_size=None,
            ) as ws:
                await ws.send(json.dumps(self.init))
                ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if ack.get("type") != "connection_ack":
                    raise RuntimeError(f"no connection_ack: {ack}")
                await ws.send(
                    json.dumps({"id": "1", "type": "subscribe", "payload": {"query": CHANGES}})
                )
                self.ready.set()
                async for raw in ws:
                    received = time.perf_counter()
                    message = json.loads(raw)
                    if message["type"] == "next":
                        change = message["payload"]["data"]["changes"]
                        self.first.setdefault(change["id"], received)
                        self.arrived.set()
                    elif message["type"] == "ping":
                        await ws.send(json.dumps({"type": "pong"}))
                    elif message["type"] in ("error", "complete"):
                        raise RuntimeError(f"subscription ended: {message}")
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.error = f"{type(error).__name__}: {error}"[:300]
            self.ready.set()
            self.arrived.set()


def _histogram(seconds: list[float]) -> dict[str, int]:
    """Counts by 100 ms bucket up to 1.5 s (a lost wake-up waits for the 1 s poll)."""
    edges = [i / 10 for i in range(1, 16)]
    counts = dict.fromkeys([f"<{int(e * 1000)}" for e in edges] + [">=1500"], 0)
    for value in seconds:
        for edge in edges:
            if value < edge:
                counts[f"<{int(edge * 1000)}"] += 1
                break
        else:
            counts[">=1500"] += 1
    return counts


async def measure(
    database: str,
    api_url: str,
    es: AsyncElasticsearch,
    alias: str,
    *,
    bearer: str,
    rate: float,
    duration: float,
    poll_interval: float,
    trickle: bool = False,
) -> list[Figure]:
    """Paths 6 and 7 at `rate`; with `trickle`, only the trickle row of path 6
    (at `TRICKLE` writes/s, whatever `rate` says)."""
    refresh = await refresh_interval(es, alias)
    reference = refresh + poll_interval
    if trickle:
        rate = TRICKLE
    print(
        f"[6{'' if trickle else '/7'}] staleness{' at a trickle' if trickle else ' and delivery'} "
        f"({database}): {rate:,.1f} createProduct/s for "
        f"{duration:.0f}s; reference refresh {refresh:g}s + poll {poll_interval:g}s",
        flush=True,
    )
    # Skus are upper case (the service upper-cases them), and new in every call.
    prefix = f"T{database[0]}{uuid.uuid4().hex[:6]}".upper()
    committed: dict[str, float] = {}  # product id -> commit (answer) time
    sku_of: dict[str, str] = {}  # sku -> product id
    pending: set[str] = set()  # skus not yet seen by a search
    seen: dict[str, float] = {}  # product id -> first search that found it
    latencies: list[float] = []
    subscriber = _Subscriber(api_url.replace("http://", "ws://") + "/graphql", bearer)
    listening = asyncio.create_task(subscriber.run())
    writing_done = asyncio.Event()

    async def probe() -> None:
        deadline: float | None = None
        while True:
            if writing_done.is_set():
                deadline = deadline or time.monotonic() + SETTLE_TIMEOUT
                if not pending or time.monotonic() > deadline:
                    return
            if pending:
                skus = sorted(pending)
                sent = time.perf_counter()
                found = await es.search(
                    index=alias,
                    query={"terms": {"sku": skus}},
                    size=len(skus),
                    source_includes=["sku"],
                )
                for hit in found["hits"]["hits"]:
                    sku = hit["_source"]["sku"]
                    if sku in pending:
                        pending.discard(sku)
                        seen[sku_of[sku]] = sent
            await asyncio.sleep(PROBE_EVERY)

    try:
        await asyncio.wait_for(subscriber.ready.wait(), 15)
        if subscriber.error:
            raise RuntimeError(subscriber.error)
        async with http_client(CONCURRENCY, bearer) as client:
            # A canary through the whole path: the subscription is live once it arrives.
            canary = await http_create_product(client, api_url, f"{prefix}-CANARY", 0)
            if not await subscriber.wait_for([canary["product"]["id"]], 30):
                raise RuntimeError(f"no notification for the canary: {subscriber.error}")
            prober = asyncio.create_task(probe())

            async def create(n: int) -> None:
                sku = f"{prefix}-{n:07d}"
                began = time.perf_counter()
                payload = await http_create_product(client, api_url, sku, n)
                done = time.perf_counter()
                latencies.append(done - began)
                id = payload["product"]["id"]
                committed[id] = done
                sku_of[sku] = id
                pending.add(sku)

            result = await paced(create, rate=rate, duration=duration, max_in_flight=CONCURRENCY)
            writing_done.set()
            await prober
        await subscriber.wait_for(list(committed), SETTLE_TIMEOUT)
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
    staleness = [seen[id] - t for id, t in committed.items() if id in seen]
    delivery = [subscriber.first[id] - t for id, t in committed.items() if id in subscriber.first]
    stale = Distribution.of(staleness)
    delivered = Distribution.of(delivery)
    histograms = {"staleness": _histogram(staleness), "delivery": _histogram(delivery)}
    common: dict[str, Any] = {
        "rate_per_s": rate,
        "achieved_per_s": result.rate,
        "mutations": len(committed),
        "never_seen": len(committed) - len(staleness),
        "never_delivered": len(committed) - len(delivery),
        "mutation_latency_ms": Distribution.of(latencies).as_dict(),
        "probe_every_ms": PROBE_EVERY * 1000,
        "histogram_ms": histograms,
    }
    if trickle:
        return [
            Figure(
                path="6",
                measure=f"staleness p50 at a trickle ({TRICKLE:g} writes/s), commit -> "
                "searchable / 50 ms budget",
                database=database,
                system=stale.p50,
                baseline=TRICKLE_BUDGET_MS,
                unit="ms",
                target=Target("<=", 1.0),
                system_is="commit to a search seeing it, at a trickle",
                baseline_is=f"a fixed budget of {TRICKLE_BUDGET_MS:g} ms (about two cycles "
                "of one bulk request and its refresh)",
                details={**common, "staleness_ms": stale.as_dict()},
            )
        ]
    return [
        Figure(
            path="6",
            measure="staleness p50, commit -> searchable / (refresh + poll interval)",
            database=database,
            system=stale.p50,
            baseline=reference * 1000,
            unit="ms",
            target=None,
            system_is="commit to a search seeing it",
            baseline_is=f"index.refresh_interval {refresh:g}s + FEED_POLL_INTERVAL "
            f"{poll_interval:g}s",
        ),
        Figure(
            path="6",
            measure="staleness p99, commit -> searchable / (refresh + poll interval)",
            database=database,
            system=stale.p99,
            baseline=reference * 1000,
            unit="ms",
            target=Target("<=", 1.5),
            system_is="commit to a search seeing it",
            baseline_is=f"index.refresh_interval {refresh:g}s + FEED_POLL_INTERVAL "
            f"{poll_interval:g}s",
            details={**common, "staleness_ms": stale.as_dict()},
        ),
        Figure(
            path="7",
            measure="subscription delivery p99 / staleness p99",
            database=database,
            system=delivered.p99,
            baseline=stale.p99,
            unit="ms",
            target=Target("<=", 1.2),
            system_is="commit to the WebSocket notification (changes)",
            baseline_is="path 6 staleness p99, same run",
            details={**common, "delivery_ms": delivered.as_dict()},
        ),
    ]
