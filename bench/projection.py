"""Path 4: events/s from a pre-filled outbox to searchable documents.

System: `FeedWorker.run_until_caught_up` (the worker as `api.bootstrap` builds
it: batch 500, growing to 2,000 while batches come back full, the next one
read while the last is written; batches of 2,000 that come back full are
written unrefreshed and refreshed together once caught up or once a second,
FEED_REFRESH_INTERVAL, has passed) from checkpoint 0 over a fresh set of indexes. Baseline:
`elasticsearch.helpers.async_bulk` of the same final documents (read back from
the system's index beforehand, untimed), in chunks of as many documents as a
worker batch yields, into a fresh index with the same mapping, then one
refresh. A second baseline refreshes every chunk, as the worker did before it
deferred the refresh in a backlog, to tell the design's cost (searchable per
batch) from the code's.

The worker's time is split by wrapping its bulk writer and its projections in
this process (timing only; no behaviour changes): each part's share is the
time it was in progress over the wall time. In a backlog the worker reads and
projects the next batch while it writes the current one, so the parts overlap
and their shares can add up to more than 1; the rest (the write database's
leases, checkpoints and outbox reads, and the loop) is given only when the
parts leave some time uncovered.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_bulk, async_scan

from bench.report import Figure, Target
from bench.services import Deployment, elasticsearch_client
from bench.stats import median

__all__ = ["copy_documents", "fresh_index", "measure"]


def build_app(deployment: Deployment, elasticsearch_url: str) -> Any:
    from api.bootstrap import build
    from api.settings import Settings

    settings = Settings(
        database_url=deployment.database_url,
        elasticsearch_url=elasticsearch_url,
        index_prefix=deployment.index_prefix,
        embedded_worker=False,
    )
    return build(settings, embedded_worker=False)


async def copy_documents(es: AsyncElasticsearch, index: str) -> list[tuple[str, dict[str, Any]]]:
    """Every document of an index, as (id, source): the final documents a baseline writes."""
    return [
        (hit["_id"], hit["_source"])
        async for hit in async_scan(es, index=index, query={"query": {"match_all": {}}}, size=2000)
    ]


async def fresh_index(es: AsyncElasticsearch, name: str) -> None:
    """An empty index with the products mapping and settings (the definition, not its code)."""
    from readmodel.indexes import PRODUCTS

    await es.indices.delete(index=name, ignore_unavailable=True)
    await es.indices.create(index=name, mappings=PRODUCTS.mappings, settings=PRODUCTS.settings)
    await es.cluster.health(index=name, wait_for_status="yellow", timeout="30s")


async def bulk_load(
    es: AsyncElasticsearch,
    index: str,
    documents: list[tuple[str, dict[str, Any]]],
    chunk: int,
    *,
    refresh_each: bool,
) -> float:
    """Seconds to bulk-load the documents and make them searchable."""
    await fresh_index(es, index)
    actions = ({"_index": index, "_id": id, "_source": doc} for id, doc in documents)
    began = time.perf_counter()
    if refresh_each:
        await async_bulk(es, actions, chunk_size=chunk, refresh=True)
    else:
        await async_bulk(es, actions, chunk_size=chunk)
        await es.indices.refresh(index=index)
    return time.perf_counter() - began


def _timed(spent: dict[str, float], key: str, fn: Callable[..., Awaitable[Any]]) -> Any:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            spent[key] = spent.get(key, 0.0) + time.perf_counter() - began

    return wrapper


async def _system_round(
    deployment: Deployment, elasticsearch_url: str, events: int
) -> tuple[float, dict[str, float]]:
    from readmodel.setup import ensure_indexes

    app = build_app(deployment, elasticsearch_url)
    try:
        await app.search.indices.delete(
            index=f"{deployment.index_prefix}-*", ignore_unavailable=True, expand_wildcards="all"
        )
        await ensure_indexes(app.search, deployment.index_prefix)
        for projection in app.worker.projections:
            await app.checkpoints.reset(projection.name, 0, datetime.now(UTC))
        spent: dict[str, float] = {}
        worker = app.worker
        worker.writer.write_all = _timed(
            spent, "elasticsearch bulk + refresh", worker.writer.write_all
        )
        for projection in worker.projections:
            projection.project = _timed(spent, "projections (SQL)", projection.project)
        began = time.perf_counter()
        await worker.run_until_caught_up(timeout=1800)
        elapsed = time.perf_counter() - began
        reached = min([(await app.checkpoints.get(p.name)).position for p in worker.projections])
        if reached < events:
            raise RuntimeError(f"the worker reached {reached} of {events} events")
        rest = elapsed - sum(spent.values())
        if rest > 0:  # else the parts overlapped (read-ahead) and cover the wall time
            spent["write database, loop (the rest)"] = rest
        return elapsed, spent
    finally:
        await app.stop()


async def measure(
    deployment: Deployment, elasticsearch_url: str, *, products: int, events: int, rounds: int
) -> list[Figure]:
    from readmodel.indexes import PRODUCTS

    batch = 500  # FEED_BATCH_SIZE's default, which the worker above runs with
    chunk = max(1, round(batch * products / events))
    print(
        f"[4] projection ({deployment.name}): {events} events ({products} products), "
        f"{rounds} round(s); baseline chunks of {chunk}",
        flush=True,
    )
    es = elasticsearch_client(elasticsearch_url)
    baseline_index = f"{deployment.index_prefix}-baseline-projection"
    system: list[float] = []
    baseline: list[float] = []
    baseline_refreshing: list[float] = []
    splits: list[dict[str, float]] = []
    documents: list[tuple[str, dict[str, Any]]] = []
    try:
        for r in range(rounds):
            elapsed, spent = await _system_round(deployment, elasticsearch_url, events)
            system.append(events / elapsed)
            splits.append({k: round(v / elapsed, 3) for k, v in spent.items()})
            print(f"    system: {events / elapsed:,.0f} events/s", flush=True)
            if not documents:
                documents = await copy_documents(es, PRODUCTS.alias(deployment.index_prefix))
                if len(documents) != products:
                    raise RuntimeError(f"{len(documents)} documents indexed, not {products}")
            seconds = await bulk_load(es, baseline_index, documents, chunk, refresh_each=False)
            baseline.append(events / seconds)
            print(f"    baseline: {events / seconds:,.0f} events/s", flush=True)
            if r == 0:
                seconds = await bulk_load(es, baseline_index, documents, chunk, refresh_each=True)
                baseline_refreshing.append(events / seconds)
                print(f"    baseline, refresh per chunk: {events / seconds:,.0f} events/s")
        await es.indices.delete(index=baseline_index, ignore_unavailable=True)
    finally:
        await es.close()
    return [
        Figure(
            path="4",
            measure="projection throughput, FeedWorker / async_bulk",
            database=deployment.name,
            system=median(system),
            baseline=median(baseline),
            unit="events/s",
            target=Target(">=", 0.7),
            system_is="FeedWorker.run_until_caught_up, batch 500 growing to 2000 in a "
            "backlog, one refresh per FEED_REFRESH_INTERVAL (1 s) or when caught up",
            baseline_is=f"async_bulk of the final documents, chunks of {chunk}, one refresh",
            details={
                "events": events,
                "documents": products,
                "rounds": {"system": system, "baseline": baseline},
                "baseline_refresh_per_chunk_events_per_s": median(baseline_refreshing),
                "system_time_split": splits,
            },
        )
    ]
