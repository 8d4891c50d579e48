"""One benchmark run: services up, every path against its baseline, services down.

The order matters only for setup: the projection (4) feeds the first part of
the catalog, the rebuild (5) indexes the whole catalog that the queries (1, 2)
then search; mutations (3) give the throughput the sustained load (8) is
compared with; staleness and delivery (6, 7) run at half the rate (8) found.
PostgreSQL runs the API and the worker as separate processes; SQLite runs them
as one (the embedded worker), except for (3), where no worker runs on either.
"""

from __future__ import annotations

import os
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from bench import (
    fanout,
    full_rebuild,
    mutations,
    partitions,
    projection,
    query,
    staleness,
    sustained,
    writers,
)
from bench.data import (
    PROJECTIONS,
    advance_checkpoints,
    head,
    insert_catalog,
    insert_customers,
    search_words,
)
from bench.mutations import OrderFixtures, baseline_engine
from bench.report import RESULTS, Report, package_versions
from bench.services import Deployment, Services, elasticsearch_client, peak_rss_mib
from bench.sizes import Size

__all__ = ["PATHS", "run"]

# "3w": commits/s against concurrent writers, on a durable PostgreSQL of its own.
# "f": subscription fan-out, 1,000 to 10,000 subscribers of one serve process (SQLite).
# "w": one read model shared by 1, 2 and 4 worker processes, and failover (PostgreSQL).
PATHS = ("1", "2", "3", "3w", "4", "5", "6", "7", "8", "f", "w")
# What a path needs measured first: 8 compares with 3; 6 and 7 run together.
_NEEDS = {"8": {"3"}, "6": {"3", "7"}, "7": {"3", "6"}}

FEED_POLL_INTERVAL = 1.0  # the service's default, which every child process runs with
FEED_BATCH_SIZE = 500


def expand(only: set[str]) -> set[str]:
    wanted = set(only)
    for path in only:
        wanted |= _NEEDS.get(path, set())
    return wanted


async def run(size: Size, only: set[str], databases: tuple[str, ...]) -> Report:
    wanted = expand(only)
    report = Report(
        size=size.name,
        settings={
            **size.as_dict(),
            "paths": sorted(wanted),
            "databases": list(databases),
            "concurrency": query.CONCURRENCY,
            "feed_batch_size": FEED_BATCH_SIZE,
            "feed_poll_interval_s": FEED_POLL_INTERVAL,
            "postgres_server": "tools.pg_server defaults: fsync, synchronous_commit and "
            "full_page_writes off (both sides alike)",
            "sqlite": "WAL, synchronous=NORMAL (both sides alike)",
            "elasticsearch": "the suite's node, 127.0.0.1:9250, 512 MB heap, 1 shard 0 replicas",
        },
    )
    services = Services.create()
    began = time.monotonic()
    try:
        with report.timed("setup: PostgreSQL, Elasticsearch, write databases"):
            services.start()
            report.versions = {**package_versions(), **services.versions}
            deployments: dict[str, Deployment] = {}
            if "postgres" in databases:
                url = await services.postgres_database("bench_system")
                deployments["postgres"] = services.deployment("postgres", url)
            if "sqlite" in databases:
                url = await services.sqlite_database("system")
                deployments["sqlite"] = services.deployment("sqlite", url)
        for deployment in deployments.values():
            await _phase(report, services, deployment, size, wanted)
        if "3w" in wanted and "postgres" in databases:
            with report.timed("3w writers (postgres, durable)"):
                curve, figures = await writers.measure(
                    seconds=size.mutation_seconds, rounds=size.rounds
                )
            report.add(*figures)
            png = RESULTS / "writers.png"
            png.parent.mkdir(parents=True, exist_ok=True)
            writers.draw({"this run": curve}, png)
            report.notes.append(f"3w: the writer curve is drawn in {png}")
        if "f" in wanted:
            # SQLite with the embedded worker, as the demo runs: a database of its own.
            with report.timed("f subscription fan-out (sqlite)"):
                url = await services.sqlite_database("fanout")
                deployment = services.deployment("fanout", url)
                report.add(*await fanout.measure(services, deployment, fanout.counts(size.name)))
        if "w" in wanted and "postgres" in databases:
            with report.timed("w partitions (postgres)"):
                report.add(*await partitions.measure(services, size))
    except Exception as error:  # report what was measured, and why the rest was not
        import traceback

        traceback.print_exc()
        report.error = f"{type(error).__name__}: {error}"[:2000]
    finally:
        own = peak_rss_mib(os.getpid())
        with report.timed("teardown"):
            await services.stop()
        report.memory.update(services.memory)
        if own is not None:
            report.memory["bench process (in-process worker for 4, rebuild for 5, clients)"] = own
        report.notes.append(f"run took {time.monotonic() - began:.0f}s")
    return report


async def _phase(
    report: Report, services: Services, deployment: Deployment, size: Size, wanted: set[str]
) -> None:
    from writemodel.database import create_engine

    name = deployment.name
    es_url = services.elasticsearch_url
    print(f"\n== {name} ==", flush=True)
    engine = create_engine(deployment.database_url)
    try:
        with report.timed(f"prefill {size.projected} products ({name})"):
            await insert_catalog(engine, 0, size.projected)
        if "4" in wanted:
            events = await head(engine)
            with report.timed(f"4 projection ({name})"):
                report.add(
                    *await projection.measure(
                        deployment,
                        es_url,
                        products=size.projected,
                        events=events,
                        rounds=size.rounds,
                    )
                )
        queries = {"1", "2"} & wanted
        if name == "postgres" and ("5" in wanted or queries):
            with report.timed(f"prefill up to {size.catalog} products ({name})"):
                await insert_catalog(engine, size.projected, size.catalog)
                await advance_checkpoints(engine, list(PROJECTIONS))
            rounds = size.rebuild_rounds if "5" in wanted else 1
            with report.timed(f"5 rebuild ({name})"):
                figures = await full_rebuild.measure(
                    deployment, es_url, products=size.catalog, rounds=rounds
                )
            if "5" in wanted:
                report.add(*figures)
        if name == "postgres" and queries:
            await _queries(report, services, deployment, size, wanted)
        if "3" in wanted:
            await _writes(report, services, deployment, engine, size, wanted)
    finally:
        await engine.dispose()


async def _queries(
    report: Report, services: Services, deployment: Deployment, size: Size, wanted: set[str]
) -> None:
    from readmodel.indexes import PRODUCTS

    alias = PRODUCTS.alias(deployment.index_prefix)
    api = await services.serve(deployment, embedded_worker=False)
    bare = await services.baseline_app(alias)
    es = elasticsearch_client(services.elasticsearch_url)
    app = projection.build_app(deployment, services.elasticsearch_url)
    try:
        setup = query.QuerySetup(
            api.url or "",
            services.admin_token(),
            bare.url or "",
            api.pid,
            bare.pid,
            es,
            alias,
            app,
            search_words(),
        )
        if "1" in wanted:
            with report.timed("1 query latency"):
                report.add(*await query.latency(setup, size.latency_requests))
        if "2" in wanted:
            with report.timed("2 query throughput"):
                report.add(
                    *await query.throughput(
                        setup, size.throughput_requests, size.throughput_seconds, size.rounds
                    )
                )
    finally:
        await app.stop()
        await es.close()
        services.stop_child(bare)
        services.stop_child(api)


async def _writes(
    report: Report,
    services: Services,
    deployment: Deployment,
    engine: AsyncEngine,
    size: Size,
    wanted: set[str],
) -> None:
    from readmodel.indexes import PRODUCTS

    name = deployment.name
    es_url = services.elasticsearch_url
    fixtures = OrderFixtures(
        products=min(size.order_products, size.projected), customers=size.customers
    )
    if name == "postgres":
        baseline_url = await services.postgres_database("bench_baseline")
    else:
        baseline_url = await services.sqlite_database("baseline")
    base = baseline_engine(baseline_url)
    try:
        await insert_catalog(base, 0, fixtures.products)
        await insert_customers(base, fixtures.customers)
    finally:
        await base.dispose()
    await insert_customers(engine, fixtures.customers)

    # (3) with no worker anywhere: the write path alone, as the baseline has it.
    api = await services.serve(deployment, embedded_worker=False)
    try:
        with report.timed(f"3 mutations ({name})"):
            figures, rates = await mutations.measure(
                deployment,
                api.url or "",
                api.pid,
                services.admin_token(),
                baseline_url,
                es_url,
                fixtures,
                requests=size.mutations,
                seconds=size.mutation_seconds,
                rounds=size.rounds,
            )
        report.add(*figures)
    finally:
        if name == "sqlite":
            services.stop_child(api)
    # (8), (6), (7) with the worker: its own process on PostgreSQL, embedded on SQLite.
    if not {"6", "8"} & wanted:
        if name == "postgres":
            services.stop_child(api)
        return
    worker = None
    if name == "postgres":
        worker = await services.worker(deployment)
    else:
        api = await services.serve(deployment, embedded_worker=True)
    processes = {"api": api.pid, "bench client": os.getpid()}
    if worker is not None:
        processes["worker"] = worker.pid
    es = elasticsearch_client(es_url)
    try:
        throughput = rates["createProduct"]
        sustainable = throughput * 0.5
        if "8" in wanted:
            with report.timed(f"8 sustained load ({name})"):
                figures, sustainable = await sustained.measure(
                    name,
                    api.url or "",
                    engine,
                    throughput,
                    bearer=services.admin_token(),
                    window=size.sustain_window,
                    max_steps=size.sustain_steps,
                    processes=processes,
                )
            report.add(*figures)
        if "6" in wanted:
            caught_up = await sustained.wait_caught_up(engine, 120)
            if caught_up is None:
                raise RuntimeError("the feed did not catch up before measuring staleness")
            # The trickle is its own row: there the linger should cost nothing.
            runs = (
                (f"6, 7 staleness and delivery ({name})", max(1.0, sustainable * 0.5), False),
                (f"6 staleness at a trickle ({name})", staleness.TRICKLE, True),
            )
            for title, rate, trickle in runs:
                with report.timed(title):
                    figures = await staleness.measure(
                        name,
                        api.url or "",
                        es,
                        PRODUCTS.alias(deployment.index_prefix),
                        bearer=services.admin_token(),
                        rate=rate,
                        duration=size.staleness_seconds,
                        poll_interval=FEED_POLL_INTERVAL,
                        trickle=trickle,
                    )
                report.add(*figures)
    finally:
        await es.close()
        if worker is not None:
            services.stop_child(worker)
        services.stop_child(api)
