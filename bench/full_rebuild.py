"""Path 5: a full rebuild of the products index, documents/s.

System: `readmodel.rebuild.rebuild("products", ...)` as the CLI calls it
(page 1000, the 1 s grace before retiring the old index included), against a
write database holding the whole catalog. Baseline: `async_bulk` of the same
final documents (read back from the rebuilt index, untimed) in chunks of 1000
into a fresh index with the same mapping, then one refresh.

The rebuild's time is split with its progress callback (the count before the
first call, the load between the first and the last) and a timing wrapper
around `BulkWriter.write` while it runs (timing only).
"""

from __future__ import annotations

import time
from typing import Any

from bench.projection import build_app, bulk_load, copy_documents
from bench.report import Figure, Target
from bench.services import Deployment, elasticsearch_client
from bench.stats import median

__all__ = ["measure"]

PAGE = 1000  # rebuild()'s default page size


async def _system_round(deployment: Deployment, elasticsearch_url: str) -> dict[str, Any]:
    from readmodel import bulk
    from readmodel.rebuild import rebuild

    app = build_app(deployment, elasticsearch_url)
    marks: list[float] = []
    in_bulk = 0.0
    original = bulk.BulkWriter.write

    async def timed_write(self: Any, *args: Any, **kwargs: Any) -> None:
        nonlocal in_bulk
        began = time.perf_counter()
        try:
            await original(self, *args, **kwargs)
        finally:
            in_bulk += time.perf_counter() - began

    bulk.BulkWriter.write = timed_write  # type: ignore[method-assign]
    try:
        began = time.perf_counter()
        result = await rebuild(
            "products",
            engine=app.engine,
            client=app.search,
            prefix=deployment.index_prefix,
            worker=app.worker,
            checkpoints=app.checkpoints,
            progress=lambda loaded, total: marks.append(time.perf_counter()),
        )
        elapsed = time.perf_counter() - began
    finally:
        bulk.BulkWriter.write = original  # type: ignore[method-assign]
        await app.stop()
    loading = marks[-1] - marks[0] if marks else elapsed
    return {
        "documents": result.documents,
        "seconds": elapsed,
        "new_index": result.new_index,
        "split_s": {
            "prepare + count ids": (marks[0] - began) if marks else 0.0,
            "load (SQL pages + bulk)": loading,
            "of which bulk requests": in_bulk,
            "refresh, catch-up, swap, 1 s grace, retire": (
                elapsed - (marks[-1] - began) if marks else 0.0
            ),
        },
    }


async def measure(
    deployment: Deployment, elasticsearch_url: str, *, products: int, rounds: int
) -> list[Figure]:
    print(f"[5] rebuild ({deployment.name}): {products} products, {rounds} round(s)", flush=True)
    es = elasticsearch_client(elasticsearch_url)
    baseline_index = f"{deployment.index_prefix}-baseline-rebuild"
    system: list[float] = []
    baseline: list[float] = []
    splits: list[dict[str, float]] = []
    documents: list[tuple[str, dict[str, Any]]] = []
    try:
        for _ in range(rounds):
            run = await _system_round(deployment, elasticsearch_url)
            if run["documents"] != products:
                raise RuntimeError(f"the rebuild loaded {run['documents']}, not {products}")
            system.append(products / run["seconds"])
            splits.append(run["split_s"])
            print(f"    system: {products / run['seconds']:,.0f} documents/s", flush=True)
            if not documents:
                documents = await copy_documents(es, run["new_index"])
            seconds = await bulk_load(es, baseline_index, documents, PAGE, refresh_each=False)
            baseline.append(products / seconds)
            print(f"    baseline: {products / seconds:,.0f} documents/s", flush=True)
        await es.indices.delete(index=baseline_index, ignore_unavailable=True)
    finally:
        await es.close()
    return [
        Figure(
            path="5",
            measure="full rebuild of products, rebuild() / async_bulk",
            database=deployment.name,
            system=median(system),
            baseline=median(baseline),
            unit="docs/s",
            target=Target(">=", 0.8),
            system_is="readmodel.rebuild.rebuild, page 1000, from the write database",
            baseline_is="async_bulk of the same documents from memory, chunks of 1000",
            details={
                "documents": products,
                "rounds": {"system": system, "baseline": baseline},
                "system_time_split_s": splits,
            },
        )
    ]
