"""Path w: one read model shared by 1, 2 and 4 worker processes, and failover.

Throughput: on PostgreSQL, a pre-filled outbox (the catalog's events, two per
product, at least 10,000 products) and N `bicameral worker` processes
(FEED_PARTITIONS=4). The workers start with every checkpoint at the head and
are left to share the partitions (each holds about 4/N of each read model);
then every checkpoint is set to 0 (and the workers woken, as a commit would)
and the clock runs until every read model's furthest-behind partition is back
at the head: events/s with the process start-up left out. The baseline of
each row is the one-worker figure, so the ratio is the speed-up.

Failover: two workers caught up; one is SIGKILLed. Timed from the kill: until
every partition is held by the survivor (FEED_LEASE_SECONDS stays at its 15 s
default, so only the advisory locks can move them sooner), and until a product
created just after the kill in one of the dead worker's partitions is
searchable. The reference is the lease.

The machine the bench runs on may be shared (2 cores): more workers than
cores compete with PostgreSQL and Elasticsearch for them, which the figures
show as they are.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from bench.data import PROJECTIONS, head, insert_catalog
from bench.projection import build_app
from bench.report import Figure
from bench.services import ChildProcess, Deployment, Services
from bench.sizes import Size

__all__ = ["measure"]

PARTITIONS = 4
LEASE_SECONDS = 15.0
WORKERS = (1, 2, 4)
MIN_PRODUCTS = 10_000


def _env(services: Services, deployment: Deployment) -> dict[str, str]:
    return deployment.env(
        DATA_DIR=str(services.workdir),
        ELASTICSEARCH_URL=services.elasticsearch_url,
        FEED_PARTITIONS=str(PARTITIONS),
        FEED_LEASE_SECONDS=str(LEASE_SECONDS),
    )


def _start(services: Services, deployment: Deployment, n: int) -> list[ChildProcess]:
    env = _env(services, deployment)
    # Started by pid through Services, so its teardown stops them whatever happens.
    return [
        services._start(f"worker-w{i} (postgres)", [str(_bicameral()), "worker"], env, None)
        for i in range(n)
    ]


def _bicameral() -> str:
    import sys
    from pathlib import Path

    return str(Path(sys.executable).parent / "bicameral")


async def _until(probe: Any, what: str, timeout: float, workers: list[ChildProcess]) -> float:
    """Poll `probe` until true; the seconds it took."""
    began = time.monotonic()
    while not await probe():
        for worker in workers:
            worker.check_alive()
        if time.monotonic() - began > timeout:
            raise RuntimeError(f"not within {timeout:.0f}s: {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - began


def _live_owners(rows: list[Any]) -> dict[str, int]:
    now = datetime.now(UTC)
    owners: dict[str, int] = {}
    for row in rows:
        if (
            row.read_model in PROJECTIONS
            and row.owner
            and row.lease_until
            and row.lease_until > now
        ):
            owners[row.owner] = owners.get(row.owner, 0) + 1
    return owners


def _pid(owner: str) -> int:
    return int(owner.split(":")[-2])


async def _throughput(
    services: Services, deployment: Deployment, app: Any, n: int, events: int
) -> float:
    from readmodel.checkpoints import Checkpoints

    checkpoints = Checkpoints(app.engine)
    names = list(PROJECTIONS)
    await checkpoints.seed(names, PARTITIONS, datetime.now(UTC))
    for name in names:
        await checkpoints.reset(name, events, datetime.now(UTC))
    workers = _start(services, deployment, n)
    try:
        total = PARTITIONS * len(names)
        pids = {w.pid for w in workers}

        async def shared() -> bool:
            owners = _live_owners(await checkpoints.rows())
            held = {_pid(o): c for o, c in owners.items()}
            return set(held) == pids and sum(held.values()) == total

        await _until(shared, f"{n} workers to share the partitions", 120, workers)
        began = time.monotonic()
        for name in names:
            await checkpoints.reset(name, 0, datetime.now(UTC))
        await _wake(app.engine)  # or they would notice the reset at their next poll (1 s)

        async def caught_up() -> bool:
            return await checkpoints.reached(names) >= events

        await _until(caught_up, f"{n} workers to catch up", 1800, workers)
        return events / (time.monotonic() - began)
    finally:
        for worker in workers:
            services.stop_child(worker)


async def _wake(engine: Any) -> None:
    """What a commit does: NOTIFY the workers' channel, so they look now."""
    from sqlalchemy import func, select

    from writemodel.outbox import NOTIFY_CHANNEL

    async with engine.begin() as conn:
        await conn.execute(select(func.pg_notify(NOTIFY_CHANNEL, "")))


async def _failover(
    services: Services, deployment: Deployment, app: Any
) -> tuple[float, float, dict[str, Any]]:
    from domain import commands as c
    from readmodel.checkpoints import Checkpoints
    from readmodel.indexes import PRODUCTS
    from readmodel.partitions import partition_of, read_model_of
    from writemodel.access import SYSTEM

    checkpoints = Checkpoints(app.engine)
    names = list(PROJECTIONS)
    workers = _start(services, deployment, 2)
    try:
        total = PARTITIONS * len(names)
        pids = {w.pid for w in workers}
        top = await head(app.engine)

        async def ready() -> bool:
            held = {_pid(o) for o in _live_owners(await checkpoints.rows())}
            return held == pids and await checkpoints.reached(names) >= top

        await _until(ready, "2 workers to share and catch up", 120, workers)
        rows = await checkpoints.rows()
        doomed = workers[0]
        lost = {
            int(r.name.split(":")[1].split("/")[0])
            for r in rows
            if read_model_of(r.name) == "products" and r.owner and _pid(r.owner) == doomed.pid
        }
        doomed.process.kill()
        killed = time.monotonic()
        doomed.process.wait(timeout=10)
        # Products created after the kill; those in the dead worker's partitions count.
        ids = []
        for i in range(16):
            outcome = await app.commands.execute(
                c.CreateProduct(sku=f"FAILOVER-{i}", name="Failover", price=100, currency="EUR"),
                actor=SYSTEM,
            )
            ids.append(str(outcome.snapshot["id"]))
        mine = [i for i in ids if partition_of(i, PARTITIONS) in lost] or ids
        survivor = workers[1]

        async def moved() -> bool:
            owners = _live_owners(await checkpoints.rows())
            return set(map(_pid, owners)) == {survivor.pid} and sum(owners.values()) == total

        await _until(moved, "the survivor to take every partition", 60, [survivor])
        taken = time.monotonic() - killed
        alias = PRODUCTS.alias(deployment.index_prefix)

        async def searchable() -> bool:
            found = await app.search.count(index=alias, query={"ids": {"values": mine}})
            return int(found["count"]) == len(mine)

        await _until(searchable, "the products to be searchable", 60, [survivor])
        visible = time.monotonic() - killed
        return (
            taken,
            visible,
            {"dead_worker_products_partitions": sorted(lost), "products": len(mine)},
        )
    finally:
        for worker in workers:
            services.stop_child(worker)


async def measure(services: Services, size: Size) -> list[Figure]:
    url = await services.postgres_database("bench_partitions")
    deployment = services.deployment("partitions", url)
    app = build_app(deployment, services.elasticsearch_url)
    figures: list[Figure] = []
    try:
        await app.start(subscriptions=False)
        # Enough events for a catch-up of a few seconds even at the smoke size.
        await insert_catalog(app.engine, 0, max(size.projected, MIN_PRODUCTS))
        events = await head(app.engine)
        print(f"[w] partitions: {events} events, {PARTITIONS} partitions", flush=True)
        rates: dict[int, float] = {}
        for n in WORKERS:
            rates[n] = await _throughput(services, deployment, app, n, events)
            print(f"    {n} worker(s): {rates[n]:,.0f} events/s", flush=True)
        for n in WORKERS:
            figures.append(
                Figure(
                    path="w",
                    measure=f"projection throughput, {n} worker processes / 1",
                    database="postgres",
                    system=rates[n],
                    baseline=rates[1],
                    unit="events/s",
                    target=None,
                    system_is=f"{n} `bicameral worker` processes, FEED_PARTITIONS={PARTITIONS}, "
                    "checkpoints reset to 0 once they share the partitions",
                    baseline_is="the same with 1 worker process",
                    details={"events": events, "partitions": PARTITIONS},
                )
            )
        taken, visible, details = await _failover(services, deployment, app)
        print(f"    failover: partitions moved {taken:.2f}s, write searchable {visible:.2f}s")
        figures.append(
            Figure(
                path="w",
                measure="failover after SIGKILL: partitions moved (s) / lease",
                database="postgres",
                system=taken,
                baseline=LEASE_SECONDS,
                unit="s",
                target=None,
                system_is="2 workers, one SIGKILLed: until the survivor holds every partition",
                baseline_is="FEED_LEASE_SECONDS, what a takeover waited for before",
                details=details,
            )
        )
        figures.append(
            Figure(
                path="w",
                measure="failover after SIGKILL: a write in a dead partition searchable (s)",
                database="postgres",
                system=visible,
                baseline=LEASE_SECONDS,
                unit="s",
                target=None,
                system_is="from the kill until products created after it, in the dead "
                "worker's partitions, are found by a search",
                baseline_is="FEED_LEASE_SECONDS",
                details=details,
            )
        )
    finally:
        await app.search.indices.delete(
            index=f"{deployment.index_prefix}-*", ignore_unavailable=True, expand_wildcards="all"
        )
        await app.stop()
    return figures
